//! `shared_quota`: the shared pacer's acceptance runs (BENCHMARKS.md, section 10).
//!
//! - `shared_quota run URL MODE N CONCURRENCY`: N calls at CONCURRENCY against the mock at
//!   URL, paced `shared` (through Redis at `REDIS_URL`) or `local`; one JSON line.
//!   With `START_AT` (Unix milliseconds) in the environment, the calls start at that instant
//!   (processes started together then burst together); the wall time counts from it.
//! - `shared_quota overhead URL`: latency per call (p50/p99) with local and with shared
//!   pacing, one call at a time, and calls per second at concurrency 64; one JSON line.
//! - `shared_quota cold URL`: 8 calls at once on a quota nobody knows yet (a fresh prefix),
//!   with local and with shared pacing: the cold start's cost; one JSON line.
//!
//! `benches/peers/shared_quota.py` starts the mock and four processes of `run` at once.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::pacing::Pacer;
use tower_anthropic::shared::SharedPacer;

fn client(url: &str, mode: &str, prefix: &str) -> Client {
    let b = Client::builder().api_key("sk-bench-shared").base_url(url);
    let b = match mode {
        "shared" => {
            let redis =
                std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
            let local = Pacer::new().max_wait(Duration::from_secs(600));
            b.shared_pacer(
                SharedPacer::redis(&redis)
                    .expect("a valid REDIS_URL")
                    .prefix(prefix)
                    .local(local),
            )
        }
        _ => b.pacer(Pacer::new().max_wait(Duration::from_secs(600))),
    };
    b.build().expect("a valid client")
}

fn req(i: usize) -> CreateMessageRequest {
    CreateMessageRequest::new("claude-bench", 64).user(format!("shared quota {i}"))
}

async fn run(c: &Client, n: usize, concurrency: usize) -> (usize, usize, Vec<Duration>) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (c, next) = (c.clone(), next.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= n {
                    return out;
                }
                let t = Instant::now();
                let ok = c.messages().create(req(i)).await.is_ok();
                out.push((ok, t.elapsed()));
            }
        });
    }
    let (mut ok, mut failed, mut lat) = (0, 0, Vec::new());
    while let Some(r) = set.join_next().await {
        for (good, l) in r.expect("a worker finished") {
            if good {
                ok += 1;
            } else {
                failed += 1;
            }
            lat.push(l);
        }
    }
    lat.sort();
    (ok, failed, lat)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Runtime::new().expect("a runtime");
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["run", url, mode, n, conc] => {
            // The library's warnings (a switch to local pacing) and the notice of its return.
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::INFO)
                .with_writer(std::io::stderr)
                .with_target(false)
                .init();
            let (n, conc) = (n.parse().unwrap_or(225), conc.parse().unwrap_or(8));
            let prefix = std::env::var("QUOTA_PREFIX").unwrap_or_else(|_| "bench".into());
            let c = client(url, mode, &prefix);
            if let Some(at) = std::env::var("START_AT")
                .ok()
                .and_then(|v| v.parse::<u64>().ok())
            {
                let at = std::time::UNIX_EPOCH + Duration::from_millis(at);
                if let Ok(d) = at.duration_since(std::time::SystemTime::now()) {
                    std::thread::sleep(d);
                }
            }
            let t = Instant::now();
            let (ok, failed, _) = rt.block_on(run(&c, n, conc));
            println!(
                "{}",
                serde_json::json!({"mode": mode, "ok": ok, "failed": failed,
                    "wall_s": t.elapsed().as_secs_f64()})
            );
            ExitCode::SUCCESS
        }
        ["overhead", url] => {
            let prefix = format!("bench-overhead-{}", std::process::id());
            let mut out = serde_json::Map::new();
            for mode in ["local", "shared"] {
                let c = client(url, mode, &prefix);
                // Warm up (connections, the quota's first answer).
                rt.block_on(run(&c, 50, 1));
                let (_, _, lat) = rt.block_on(run(&c, 2000, 1));
                out.insert(format!("{mode}_p50_ms"), pct(&lat, 0.5).into());
                out.insert(format!("{mode}_p99_ms"), pct(&lat, 0.99).into());
                let t = Instant::now();
                let (ok, _, _) = rt.block_on(run(&c, 10_000, 64));
                out.insert(
                    format!("{mode}_calls_per_s_c64"),
                    (ok as f64 / t.elapsed().as_secs_f64()).into(),
                );
            }
            println!("{}", serde_json::Value::Object(out));
            ExitCode::SUCCESS
        }
        ["cold", url] => {
            let mut out = serde_json::Map::new();
            for mode in ["local", "shared"] {
                let prefix = format!("bench-cold-{}-{mode}", std::process::id());
                let c = client(url, mode, &prefix);
                let t = Instant::now();
                let (ok, _, _) = rt.block_on(run(&c, 8, 8));
                out.insert(format!("{mode}_ok"), ok.into());
                out.insert(format!("{mode}_s"), t.elapsed().as_secs_f64().into());
            }
            println!("{}", serde_json::Value::Object(out));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "usage: shared_quota run URL shared|local N CONCURRENCY | shared_quota overhead URL | shared_quota cold URL"
            );
            ExitCode::from(2)
        }
    }
}
