//! `cargo run --release -p benches --bin soak [CALLS] [CANCELS]`: a soak through one `Client`.
//! CALLS (default 10,000) calls at once, half of them streams, against an in-process mock
//! answering 30% of requests with a fault (529, 500, 503, an HTML 502, a reset, a stall);
//! CANCELS (default 5,000) of them are dropped at a random moment. Checks, and exits 1 if any
//! fails: every call not cancelled ended (success or a typed error; none lost), no task
//! panicked, every permit came back, and the mock's open connections fell back to at most the
//! pool. Prints the figures and the client's RSS.

use std::time::{Duration, Instant};

use anthropic_mock::{MockConfig, MockServer, RandomFaults};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("CALLS and CANCELS are numbers"))
        .collect();
    let calls = args.first().copied().unwrap_or(10_000);
    let cancels = args.get(1).copied().unwrap_or(5_000).min(calls);
    let mock_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let mock = mock_rt
        .block_on(MockServer::start(MockConfig {
            faults: RandomFaults {
                seed: 11,
                p529: 0.08,
                p500: 0.05,
                p503: 0.05,
                p502_html: 0.04,
                p_reset: 0.05,
                p_stall: 0.03,
                stall: Duration::from_secs(2),
            },
            log_capacity: 16,
            ..Default::default()
        }))
        .expect("the mock starts");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a runtime");
    let limit = 256;
    let rss_before = rss_kib();
    let report = rt.block_on(async {
        let client = Client::builder()
            .api_key("sk-soak")
            .base_url(mock.url())
            .timeout(Duration::from_secs(1))
            .stream_idle_timeout(Duration::from_secs(1))
            .deadline(Duration::from_secs(30))
            .concurrency_limit(limit)
            .pool_max_idle_per_host(limit)
            .build()
            .expect("a client");
        let start = Instant::now();
        let mut rng = 0x5EED_u64;
        let mut next = move || {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            rng >> 33
        };
        let mut handles = Vec::with_capacity(calls);
        for i in 0..calls {
            let c = client.clone();
            handles.push(tokio::spawn(async move {
                let req = CreateMessageRequest::new("claude-soak", 64).user("Hello from the soak");
                if i % 2 == 0 {
                    c.messages().create(req).await.map(|_| ())
                } else {
                    match c.messages().stream(req).await {
                        Ok(s) => s.final_message().await.map(|_| ()),
                        Err(e) => Err(e),
                    }
                }
            }));
        }
        // Cancel `cancels` calls, in random order, at random moments while they are in flight
        // or waiting (a millisecond's pause after about one in 16).
        let mut order: Vec<usize> = (0..calls).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, next() as usize % (i + 1));
        }
        let mut cancelled = vec![false; calls];
        for &i in order.iter().take(cancels) {
            if next() % 16 == 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            handles[i].abort();
            cancelled[i] = true;
        }
        let rss_peak = rss_kib();
        let (mut ok, mut failed, mut aborted, mut lost, mut panicked) = (0, 0, 0, 0, 0);
        let mut kinds = std::collections::BTreeMap::new();
        for (i, h) in handles.into_iter().enumerate() {
            match tokio::time::timeout(Duration::from_secs(120), h).await {
                Ok(Ok(Ok(()))) => ok += 1,
                Ok(Ok(Err(e))) => {
                    failed += 1;
                    let k = match &e {
                        tower_anthropic::Error::Api(_) => format!("{:?}", e.kind()),
                        tower_anthropic::Error::Timeout(t) => format!("Timeout({:?})", t.kind()),
                        other => format!("{}", other).chars().take(24).collect(),
                    };
                    *kinds.entry(k).or_insert(0) += 1;
                }
                Ok(Err(j)) if j.is_cancelled() && cancelled[i] => aborted += 1,
                // Asked to cancel, but it had already ended: counted by its outcome above.
                Ok(Err(j)) if j.is_panic() => panicked += 1,
                Ok(Err(_)) | Err(_) => lost += 1,
            }
        }
        let wall = start.elapsed();
        // Give the pool a moment to settle, then read what is left open.
        tokio::time::sleep(Duration::from_secs(3)).await;
        (
            ok,
            failed,
            aborted,
            lost,
            panicked,
            kinds,
            wall,
            client.available_permits(),
            rss_peak,
        )
    });
    let (ok, failed, aborted, lost, panicked, kinds, wall, permits, rss_peak) = report;
    let open = mock.stats().open_connections;
    let rss_after = rss_kib();
    println!(
        "soak: {calls} calls (half streams), {cancels} cancel requests, 30% faults, limit {limit}"
    );
    println!(
        "  ok {ok}, failed with a typed error {failed}, cancelled before they ended {aborted}, lost {lost}, panicked {panicked}"
    );
    println!("  errors by kind: {kinds:?}");
    println!(
        "  wall {:.2} s; permits back {permits}/{limit}; mock connections open {open} (pool at most {limit})",
        wall.as_secs_f64()
    );
    println!(
        "  client RSS: {rss_before} KiB before, {rss_peak} KiB with all calls in flight, {rss_after} KiB after"
    );
    let pass = lost == 0 && panicked == 0 && permits == limit && open <= limit as u64;
    println!("  {}", if pass { "PASS" } else { "FAIL" });
    std::process::exit(if pass { 0 } else { 1 });
}
