//! PNG timelines of a scenario run (plotters, drawn in pure Rust; the text in DejaVu Sans,
//! read at run time): per second, calls made by the caller, attempts the mock received,
//! calls answered and failed, and the 429s and 529s the mock sent; below, the client's own
//! view: calls waiting in the pacer, the tightest bucket's headroom, and (scenario h)
//! whether the primary's circuit is open. Rates are counted in bins of 1 s (250 ms for runs
//! under 15 s).

use std::path::Path;
use std::time::Duration;

use plotters::prelude::*;
use plotters::style::FontStyle;

use crate::Report;

/// Where the font is looked for (`BENCH_FONT` overrides).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
];

/// Registers the font once; an error says where it was looked for.
fn font() -> Result<(), String> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let env = std::env::var("BENCH_FONT").ok();
        let paths: Vec<&str> = env
            .iter()
            .map(String::as_str)
            .chain(FONTS.iter().copied())
            .collect();
        let bytes = paths
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| format!("no TrueType font at {paths:?} (set BENCH_FONT)"))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the font did not load".to_owned())
    })
    .clone()
}

/// Counts of `times` in bins of `bin` seconds, `bins` of them.
fn binned(times: impl Iterator<Item = Duration>, bin: f64, bins: usize) -> Vec<u32> {
    let mut v = vec![0u32; bins];
    for t in times {
        if let Some(c) = v.get_mut((t.as_secs_f64() / bin) as usize) {
            *c += 1;
        }
    }
    v
}

/// The series' legend, upper right, on a chart of either kind.
macro_rules! legend {
    ($chart:expr, $e:expr) => {
        $chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 13))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(|x| $e(&x))?
    };
}

/// Draws `report`'s timeline to `path` (a PNG, 1100 x 720) under `title`.
pub fn timeline(report: &Report, title: &str, path: &Path) -> Result<(), String> {
    font()?;
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let end = report
        .lives
        .iter()
        .map(|l| l.finished)
        .chain(report.server.iter().map(|s| s.0))
        .max()
        .unwrap_or_default();
    // Bins of 1 s (250 ms for a run under 15 s), at most 120 of them; counts shown as rates
    // per second.
    let least = if end.as_secs_f64() < 15.0 { 0.25 } else { 1.0 };
    let bin = (end.as_secs_f64() / 120.0).max(least);
    let bins = (end.as_secs_f64() / bin) as usize + 1;
    let started = binned(report.lives.iter().map(|l| l.started), bin, bins);
    let answered = binned(
        report.lives.iter().filter(|l| l.ok).map(|l| l.finished),
        bin,
        bins,
    );
    let failed = binned(
        report.lives.iter().filter(|l| !l.ok).map(|l| l.finished),
        bin,
        bins,
    );
    let sent = binned(report.server.iter().map(|s| s.0), bin, bins);
    let status = |code: u16| {
        binned(
            report
                .server
                .iter()
                .filter(move |s| s.1 == Some(code))
                .map(|s| s.0),
            bin,
            bins,
        )
    };
    let (s429, s529) = (status(429), status(529));
    // The y axis fits the bins after the first: a burst at the start would flatten the
    // rest; a clipped peak is named in the caption.
    let series_all = [&started, &answered, &failed, &sent, &s429, &s529];
    let peak = series_all
        .iter()
        .flat_map(|v| v.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64
        / bin;
    let rest = series_all
        .iter()
        .flat_map(|v| v.iter().skip(1))
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64
        / bin;
    let top = if peak > rest * 1.45 { rest } else { peak };
    let caption = if peak > top * 1.45 {
        format!(
            "per second: calls made, answered, failed; attempts the server received, its 429s and 529s (peak of {peak:.0}/s clipped)"
        )
    } else {
        "per second: calls made, answered, failed; attempts the server received, its 429s and 529s"
            .to_owned()
    };

    let root = BitMapBackend::new(path, (1100, 720)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(|x| e(&x))?;
    let (upper, lower) = root.split_vertically(440);

    let x_max = bins as f64 * bin;
    let int = |v: &f64| format!("{v:.0}");
    let rate = move |v: &f64| {
        if top < 10.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        }
    };
    let secs = move |v: &f64| {
        if x_max <= 12.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        }
    };
    let mut chart = ChartBuilder::on(&upper)
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .caption(caption, ("sans-serif", 15))
        .build_cartesian_2d(0f64..x_max, 0f64..(top * 1.45))
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("per second")
        .x_label_formatter(&secs)
        .y_label_formatter(&rate)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    let series: [(&str, &Vec<u32>, RGBColor); 6] = [
        ("calls made", &started, RGBColor(31, 119, 180)),
        (
            "attempts received by the server",
            &sent,
            RGBColor(140, 86, 75),
        ),
        ("answered", &answered, RGBColor(44, 160, 44)),
        ("failed", &failed, RGBColor(214, 39, 40)),
        ("429s from the server", &s429, RGBColor(255, 127, 14)),
        ("529s from the server", &s529, RGBColor(148, 103, 189)),
    ];
    for (name, data, color) in series {
        if data.iter().all(|&c| c == 0) && name != "failed" && name != "429s from the server" {
            continue;
        }
        let points = data
            .iter()
            .enumerate()
            .map(|(i, &c)| ((i as f64 + 0.5) * bin, c as f64 / bin));
        chart
            .draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(format!("{name} ({} in all)", data.iter().sum::<u32>()))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(3)));
    }
    legend!(chart, e);

    // The client's view.
    let max_wait = report
        .views
        .iter()
        .map(|v| v.waiting)
        .max()
        .unwrap_or(0)
        .max(4) as f64;
    let mut chart = ChartBuilder::on(&lower)
        .margin(10)
        .x_label_area_size(32)
        .y_label_area_size(56)
        .right_y_label_area_size(56)
        .caption(
            if !report.views.iter().any(|v| v.headroom.is_some() || v.waiting > 0) {
                "the client's view: no pacer in this run"
            } else {
                "the client's view: headroom of the tightest bucket (left), calls waiting in the pacer (right)"
            },
            ("sans-serif", 15),
        )
        .build_cartesian_2d(0f64..x_max, -20f64..150f64)
        .map_err(|x| e(&x))?
        .set_secondary_coord(0f64..x_max, 0f64..(max_wait * 1.5));
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("headroom %")
        .x_label_formatter(&secs)
        .y_label_formatter(&int)
        .y_labels(8)
        .label_style(("sans-serif", 13))
        .draw()
        .map_err(|x| e(&x))?;
    let paced = report
        .views
        .iter()
        .any(|v| v.headroom.is_some() || v.waiting > 0);
    if paced {
        chart
            .configure_secondary_axes()
            .y_desc("waiting")
            .y_label_formatter(&int)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(|x| e(&x))?;
    }
    let headroom: Vec<(f64, f64)> = report
        .views
        .iter()
        .filter_map(|v| {
            v.headroom
                .map(|h| (v.at.as_secs_f64(), (h * 100.0).clamp(-20.0, 105.0)))
        })
        .collect();
    let mut labelled = false;
    if !headroom.is_empty() {
        labelled = true;
        let c = RGBColor(23, 190, 207);
        chart
            .draw_series(LineSeries::new(headroom, c.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label("headroom, tightest bucket (%)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(3)));
    }
    if report.views.iter().any(|v| v.circuit_open) {
        labelled = true;
        let c = RGBColor(214, 39, 40);
        let open = report
            .views
            .iter()
            .map(|v| (v.at.as_secs_f64(), if v.circuit_open { 100.0 } else { 0.0 }));
        chart
            .draw_series(LineSeries::new(open, c.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label("primary's circuit open (100) or closed (0)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(3)));
    }
    if report.views.iter().any(|v| v.waiting > 0) {
        labelled = true;
        let c = RGBColor(127, 127, 127);
        let waiting = report
            .views
            .iter()
            .map(|v| (v.at.as_secs_f64(), v.waiting as f64));
        chart
            .draw_secondary_series(LineSeries::new(waiting, c.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label("calls waiting in the pacer (right axis)")
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], c.stroke_width(3)));
    }
    if labelled {
        legend!(chart, e);
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}
