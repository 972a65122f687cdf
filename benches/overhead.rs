//! What the stack costs per request: the default `Client` against a bare hyper-util client
//! doing the same POST (and parsing the same JSON) to the mock on loopback, with the same
//! pool settings, at concurrency 1 and 64. The mock runs on its own runtime thread, the
//! client on the bench thread.
//!
//! The two are measured in alternating batches (bare, stack, stack, bare, ...) over several
//! rounds, so a drift of the machine's speed lands on both alike; each round gives a ratio,
//! and the median ratio is reported with its range.
//!
//! `cargo bench --bench overhead` (`-- --rounds N` to change the 15 rounds).

use std::time::Duration;

use benches::per_call::{bare, bare_once, client, client_once, run_concurrent};

fn main() {
    let rounds = benches::per_call::rounds_arg(15);
    let mock_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let mock = mock_rt
        .block_on(anthropic_mock::MockServer::start(Default::default()))
        .expect("the mock");
    let url = mock.url();
    // The client side on the bench thread alone: two busy threads (client, mock) on the two
    // cores, so scheduling noise stays low.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let bare = bare();
    let uri: http::Uri = format!("{url}/v1/messages").parse().expect("a URI");
    let client = rt.block_on(async { client(&url, true) });

    println!(
        "concurrency | rounds | bare per request (median) | stack per request (median) | ratio stack/bare: median | min | max"
    );
    println!("---|---|---|---|---|---|---");
    for (concurrency, batch) in [(1u64, 400u64), (64, 4000)] {
        let time_bare = |n: u64| {
            let (bare, uri) = (bare.clone(), uri.clone());
            rt.block_on(run_concurrent(n, concurrency, move || {
                let (bare, uri) = (bare.clone(), uri.clone());
                async move { bare_once(&bare, &uri).await }
            }))
        };
        let time_stack = |n: u64| {
            let client = client.clone();
            rt.block_on(run_concurrent(n, concurrency, move || {
                let client = client.clone();
                async move { client_once(&client).await }
            }))
        };
        // Warm up both (connections, allocator, the pacer's first answer).
        time_bare(batch / 4);
        time_stack(batch / 4);
        let per = |d: Duration| d.as_secs_f64() / batch as f64;
        let (mut b, mut s, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            // ABBA: alternate which goes first.
            let (tb, ts) = if round % 2 == 0 {
                let tb = time_bare(batch);
                (tb, time_stack(batch))
            } else {
                let ts = time_stack(batch);
                (time_bare(batch), ts)
            };
            b.push(per(tb));
            s.push(per(ts));
            ratios.push(per(ts) / per(tb));
        }
        let median = |v: &mut Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let (mb, ms) = (median(&mut b), median(&mut s));
        let mr = median(&mut ratios);
        println!(
            "{concurrency} | {rounds} | {:.1} µs | {:.1} µs | {mr:.3} | {:.3} | {:.3}",
            mb * 1e6,
            ms * 1e6,
            ratios[0],
            ratios[ratios.len() - 1],
        );
    }
    drop(mock);
}
