//! The failure scenarios with the default `Client`, each against a fresh in-process mock
//! (on its own runtime) with fixed settings and seeds; prints a table.
//!
//! `cargo bench --bench scenarios` (all) or `cargo bench --bench scenarios -- overload`.
//! Each run's timeline is drawn to `target/plots/NAME.png`, outside the tracked tree
//! (`BENCH_PLOTS` names another folder: `BENCH_PLOTS=$PWD/benches/plots` from the workspace
//! refreshes the figures BENCHMARKS.md shows; `BENCH_PLOTS=off` draws none).
//! The side-by-side with the official Python SDK is `benches/peers/compare.sh`.

use std::time::{Duration, Instant};

use anthropic_mock::MockServer;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;

fn main() {
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mock_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    println!("scenario | requests | ok | failed | 429s | attempts/req | wall | p50 | p99 | notes");
    println!("---|---|---|---|---|---|---|---|---|---");
    for s in benches::scenarios() {
        if !filter.is_empty() && !filter.iter().any(|f| s.name.contains(f.as_str())) {
            continue;
        }
        let mock = mock_rt.block_on(MockServer::start(s.mock.clone())).unwrap();
        let url = mock.url();
        let r = rt.block_on(benches::run(&url, &s));
        let mut notes = String::new();
        let ideal = benches::rate_limited_ideal(&s);
        if !ideal.is_zero() || s.name.starts_with("burst") {
            notes = format!(
                "ideal {:.1} s; completion / ideal {:.3}",
                ideal.as_secs_f64(),
                r.wall.as_secs_f64() / ideal.as_secs_f64().max(1e-9)
            );
        }
        if s.name.starts_with("outage") {
            notes = format!(
                "outage: {} requests, {} attempts seen by the server ({:.2}/request); recovery {}",
                r.outage_requests,
                r.outage_attempts,
                r.outage_attempts as f64 / r.outage_requests.max(1) as f64,
                r.recovery
                    .map_or("n/a".to_owned(), |d| format!("{:.1} s", d.as_secs_f64())),
            );
        }
        if s.name.starts_with("model_outage") {
            notes = format!(
                "answered {:.1}% (primary {}, fallback {}); breaker opened {}; primary attempts/request from 1 s into the outage {}; outage p50 {:.0} ms, p99 {:.0} ms; back on the primary {}",
                100.0 * r.succeeded as f64 / r.requests.max(1) as f64,
                r.answered_primary,
                r.answered_fallback,
                r.breaker_opened.map_or("never".to_owned(), |d| format!(
                    "{:.2} s in",
                    d.as_secs_f64()
                )),
                r.primary_attempts_per_request
                    .map_or("n/a".to_owned(), |a| format!("{a:.3}")),
                r.outage_p50.as_secs_f64() * 1e3,
                r.outage_p99.as_secs_f64() * 1e3,
                r.recovery.map_or("n/a".to_owned(), |d| format!(
                    "{:.1} s after",
                    d.as_secs_f64()
                )),
            );
        }
        if s.name == "streaming" {
            let bare = rt.block_on(bare_streams(&url, 400, 50));
            let bytes = bare.1;
            notes = format!(
                "bare hyper reading the same streams: {:.2} s ({:.1} MB/s of events); tower-anthropic decodes {:.1} MB/s; per stream {:.2} ms vs {:.2} ms",
                bare.0.as_secs_f64(),
                bytes as f64 / 1e6 / bare.0.as_secs_f64(),
                bytes as f64 / 1e6 / r.wall.as_secs_f64(),
                r.wall.as_secs_f64() * 1e3 / 400.0 * 50.0,
                bare.0.as_secs_f64() * 1e3 / 400.0 * 50.0,
            );
        }
        println!(
            "{} | {} | {} | {} | {} | {:.3} | {:.2} s | {:.1} ms | {:.1} ms | {}",
            s.name,
            r.requests,
            r.succeeded,
            r.failed,
            r.rate_limited(),
            r.attempts_per_request(),
            r.wall.as_secs_f64(),
            r.p50.as_secs_f64() * 1e3,
            r.p99.as_secs_f64() * 1e3,
            notes
        );
        drop(mock);
        plot(&s, &r);
    }
}

/// Draws the run's timeline (see `benches::plot`).
fn plot(s: &benches::Scenario, r: &benches::Report) {
    let dir = std::env::var("BENCH_PLOTS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../target/plots").to_owned());
    if dir == "off" {
        return;
    }
    let dir = std::path::Path::new(&dir);
    let path = dir.join(format!("{}.png", s.name));
    let variant = if s.name.ends_with("_no_pacing") {
        " (pacing off)"
    } else if s.name.ends_with("_no_budget") {
        " (retry budget off)"
    } else if s.name.ends_with("_no_layers") {
        " (degradation layers off)"
    } else {
        ""
    };
    let title = format!("{}{variant}", s.title);
    let drawn = std::fs::create_dir_all(dir)
        .map_err(|e| e.to_string())
        .and_then(|()| benches::plot::timeline(r, &title, &path));
    match drawn {
        Ok(()) => eprintln!("timeline: {}", path.display()),
        Err(e) => eprintln!("timeline of {} not drawn: {e}", s.name),
    }
}

/// `n` streams read raw (no SSE decoding) by a bare hyper client at `concurrency`: the time
/// and the bytes.
async fn bare_streams(url: &str, n: usize, concurrency: usize) -> (Duration, u64) {
    let client: HyperClient<_, Full<Bytes>> =
        HyperClient::builder(TokioExecutor::new()).build_http();
    let body = r#"{"model":"claude-bench","max_tokens":1000,"stream":true,"messages":[{"role":"user","content":"Hello from the benchmark"}]}"#;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, url) = (client.clone(), next.clone(), url.to_owned());
        set.spawn(async move {
            let mut bytes = 0u64;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let req = http::Request::post(format!("{url}/v1/messages"))
                    .header("x-api-key", "sk-bench")
                    .header("anthropic-version", "2023-06-01")
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap();
                let resp = client.request(req).await.unwrap();
                bytes += resp.into_body().collect().await.unwrap().to_bytes().len() as u64;
            }
            bytes
        });
    }
    let mut total = 0;
    while let Some(b) = set.join_next().await {
        total += b.unwrap();
    }
    (start.elapsed(), total)
}
