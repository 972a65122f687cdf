//! The default stack's CPU over the bare call, without a network, measured in alternating
//! batches: the canned answer of `stack_cpu` (`benches::canned`), the bare call and the
//! default stack (with and without the pacer) timed in turn (ABBA) over several rounds on
//! one thread, so a drift of the shared machine's speed lands on all alike. The stack is
//! called as `Client::messages().create` calls it (`MessagesService::create`). Each round gives
//! the stack's extra time per call; the median is reported with its range.
//!
//! `cargo bench --bench stack_cpu_ab` (`-- --rounds N` to change the 21 rounds).

use std::time::{Duration, Instant};

use benches::canned;
use tower_anthropic::pacing::Pacer;

/// Calls per batch.
const BATCH: u32 = 20_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds: usize = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(21);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let bare = canned::canned();
    let paced = canned::default_stack(Some(Pacer::new()));
    let unpaced = canned::default_stack(None);
    let time_bare = || {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..BATCH {
                std::hint::black_box(canned::bare_once(&bare).await);
            }
            start.elapsed()
        })
    };
    let time_stack = |svc: &tower_anthropic::messages::MessagesService<_>| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..BATCH {
                let msg = svc.create(canned::request()).await;
                std::hint::black_box(msg.expect("a message"));
            }
            start.elapsed()
        })
    };
    // Warm up all three (allocator, the pacer's first answer).
    time_bare();
    time_stack(&paced);
    time_stack(&unpaced);
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(BATCH);
    let (mut b, mut over, mut over_unpaced) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (tb, tp, tu) = if round % 2 == 0 {
            let tb = time_bare();
            let tp = time_stack(&paced);
            (tb, tp, time_stack(&unpaced))
        } else {
            let tu = time_stack(&unpaced);
            let tp = time_stack(&paced);
            (time_bare(), tp, tu)
        };
        b.push(per(tb));
        over.push(per(tp) - per(tb));
        over_unpaced.push(per(tu) - per(tb));
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (mb, _, _) = stats(&mut b);
    println!("# stack_cpu_ab: {rounds} rounds of {BATCH} calls each, bare and stack alternating");
    println!("what | median | min | max");
    println!("---|---|---|---");
    println!("bare call + parse, per call | {mb:.2} µs | | ");
    for (name, v) in [
        ("default stack over bare, per call", &mut over),
        (
            "default stack without the pacer over bare, per call",
            &mut over_unpaced,
        ),
    ] {
        let (m, lo, hi) = stats(v);
        println!("{name} | {m:.2} µs | {lo:.2} µs | {hi:.2} µs");
    }
}
