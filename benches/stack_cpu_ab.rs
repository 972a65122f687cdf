//! The default stack's CPU over the bare call, without a network, measured in alternating
//! batches: the canned answer of `stack_cpu` (`benches::canned`), the bare call and the
//! default stack (with and without the pacer) timed in turn (ABBA) over several rounds on
//! one thread, so a drift of the shared machine's speed lands on all alike. The stack is
//! called as `Client::messages().create` calls it (`MessagesService::create`).
//!
//! Then the same with an answer that comes after one wait (pending once, as over a network),
//! bare and through the default stack: the stack's extra time when its attempt arms its
//! timer, as every call over a network does. Each round gives
//! the stack's extra time per call; the median is reported with its range.
//!
//! `cargo bench --bench stack_cpu_ab` (`-- --rounds N` to change the 21 rounds).

use std::time::{Duration, Instant};

use benches::canned;
use tower_anthropic::client::HttpStack;
use tower_anthropic::messages::MessagesService;
use tower_anthropic::pacing::Pacer;

/// Calls per batch.
const BATCH: u32 = 20_000;

fn main() {
    let rounds = benches::per_call::rounds_arg(21);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!("# stack_cpu_ab: {rounds} rounds of {BATCH} calls each, bare and stack alternating");
    println!("what | median | min | max");
    println!("---|---|---|---");
    let at_once = canned::canned();
    let after_a_wait = canned::canned_after_a_wait();
    measure(&rt, rounds, "answered at once", &at_once, || {
        [
            ("default stack", canned::default_stack(Some(Pacer::new()))),
            (
                "default stack without the pacer",
                canned::default_stack(None),
            ),
        ]
    });
    measure(
        &rt,
        rounds,
        "answered after one wait",
        &after_a_wait,
        || {
            [
                (
                    "default stack",
                    canned::default_stack_over(after_a_wait.clone(), Some(Pacer::new())),
                ),
                (
                    "default stack without the pacer",
                    canned::default_stack_over(after_a_wait.clone(), None),
                ),
            ]
        },
    );
}

/// Bare calls to `bare` and calls through each stack, in alternating batches; prints the
/// bare time per call and each stack's extra time per call (median, min, max).
fn measure<S>(
    rt: &tokio::runtime::Runtime,
    rounds: usize,
    what: &str,
    bare: &S,
    stacks: impl FnOnce() -> [(&'static str, MessagesService<HttpStack>); 2],
) where
    S: tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = canned::Canned,
            Error = std::convert::Infallible,
        > + Clone,
{
    let stacks = stacks();
    let time_bare = || {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..BATCH {
                std::hint::black_box(canned::bare_once(bare).await);
            }
            start.elapsed()
        })
    };
    let time_stack = |svc: &MessagesService<HttpStack>| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..BATCH {
                let msg = svc.create(canned::request()).await;
                std::hint::black_box(msg.expect("a message"));
            }
            start.elapsed()
        })
    };
    // Warm up (allocator, the pacer's first answer).
    time_bare();
    for (_, s) in &stacks {
        time_stack(s);
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(BATCH);
    let mut b = Vec::new();
    let mut over = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // ABBA: which goes first alternates.
        let (tb, t) = if round % 2 == 0 {
            let tb = time_bare();
            (tb, [time_stack(&stacks[0].1), time_stack(&stacks[1].1)])
        } else {
            let t1 = time_stack(&stacks[1].1);
            let t0 = time_stack(&stacks[0].1);
            (time_bare(), [t0, t1])
        };
        b.push(per(tb));
        for i in 0..2 {
            over[i].push(per(t[i]) - per(tb));
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let (mb, _, _) = stats(&mut b);
    println!("{what}: bare call + parse, per call | {mb:.2} µs | | ");
    for (i, (name, _)) in stacks.iter().enumerate() {
        let (m, lo, hi) = stats(&mut over[i]);
        println!("{what}: {name} over bare, per call | {m:.2} µs | {lo:.2} µs | {hi:.2} µs");
    }
}
