//! Scale: many calls at once through one `Client`, against a mock in another process (so
//! this process's memory and CPU are the client's alone).
//!
//! ```text
//! target/release/anthropic-mock --tps 20 --output-tokens 100 &   # slow: streams stay open
//! target/release/scale URL streams 10000 100               # 10,000 streams of 100 tokens
//! target/release/scale URL bare-streams 10000 100          # the same read raw by bare hyper
//! target/release/scale URL calls 10000 100                 # 10,000 whole answers at once
//! target/release/scale URL streams 10000 100 --h2 50       # over 50 HTTP/2 connections (h2c)
//! ```
//!
//! `benches/scale.sh` runs both with a fresh mock each. Prints one JSON line:
//! - streams: how many finished with the right text (TOKENS words, one per output token, the
//!   text equal to its deltas, `message_stop` seen), the most open at once (ours and the
//!   mock's count), the client's RSS before and when the most were open, RSS per open
//!   stream, CPU seconds, bytes of events read (one raw stream measured, times the
//!   streams), CPU per MB;
//! - calls: completions, p50 and p99 latency, RSS, CPU.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower_anthropic::Client;
use tower_anthropic::messages::{CreateMessageRequest, StopReason};
use tower_anthropic::stream::{Delta, StreamEvent};

/// This process's resident memory, in bytes (Linux: `/proc/self/statm`).
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// CPU seconds (user + system) this process has used (Linux: `/proc/self/stat`).
fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses).
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    ticks as f64 / 100.0
}

/// A running digest of a text given in pieces (FNV-1a over its bytes, and its length).
#[derive(Default, PartialEq, Eq)]
struct Digest {
    hash: u64,
    len: usize,
}

impl Digest {
    fn push_str(&mut self, s: &str) {
        if self.len == 0 {
            self.hash = 0xcbf2_9ce4_8422_2325;
        }
        for b in s.bytes() {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        self.len += s.len();
    }

    fn of(s: &str) -> Self {
        let mut d = Self::default();
        d.push_str(s);
        d
    }
}

fn request(tokens: u32, i: usize) -> CreateMessageRequest {
    CreateMessageRequest::new("claude-sonnet-4-6", tokens).user(format!("Scale test {i}"))
}

async fn mock_stat(url: &str, field: &str) -> u64 {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let resp = client
        .get(format!("{url}/_mock/stats").parse().expect("a URL"))
        .await
        .expect("the mock answers");
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    v[field].as_u64().unwrap_or(0)
}

type Bare = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

/// HTTP/2 connections to use (`--h2 C`), or none for HTTP/1.1.
static H2: std::sync::OnceLock<Option<usize>> = std::sync::OnceLock::new();

/// The bare hyper clients of the process (default settings): one, or one per HTTP/2
/// connection (with prior knowledge), as the `Client` has.
fn bare_clients() -> &'static [Bare] {
    static BARE: std::sync::OnceLock<Vec<Bare>> = std::sync::OnceLock::new();
    BARE.get_or_init(|| {
        let h2 = H2.get().copied().flatten();
        (0..h2.unwrap_or(1))
            .map(|_| {
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .http2_only(h2.is_some())
                    .build_http()
            })
            .collect()
    })
}

/// The bare client for request `i` (in turn over the connections).
fn bare_client_for(i: usize) -> &'static Bare {
    let clients = bare_clients();
    &clients[i % clients.len()]
}

/// The raw streaming request `i` of `tokens` tokens.
fn raw_stream_request(url: &str, tokens: u32, i: usize) -> http::Request<Full<Bytes>> {
    let mut body = serde_json::to_value(request(tokens, i)).expect("JSON");
    body["stream"] = true.into();
    http::Request::post(format!("{url}/v1/messages"))
        .header("x-api-key", "sk-scale")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a request")
}

/// Bytes of one raw stream of `tokens` tokens (no decoding), read with bare hyper.
async fn raw_stream_bytes(url: &str, tokens: u32) -> u64 {
    let req = raw_stream_request(url, tokens, 0);
    let resp = bare_client_for(0).request(req).await.expect("an answer");
    let body = resp.into_body().collect().await.expect("a body");
    body.to_bytes().len() as u64
}

/// One stream read raw by bare hyper: whether it ended with `message_stop`.
async fn bare_stream(url: &str, tokens: u32, i: usize, open: &AtomicUsize) -> bool {
    let Ok(resp) = bare_client_for(i)
        .request(raw_stream_request(url, tokens, i))
        .await
    else {
        return false;
    };
    open.fetch_add(1, Ordering::Relaxed);
    let mut body = resp.into_body();
    let mut tail = Vec::new();
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            tail.extend_from_slice(&data);
            let keep = tail.len().saturating_sub(64);
            tail.drain(..keep);
        }
    }
    open.fetch_sub(1, Ordering::Relaxed);
    String::from_utf8_lossy(&tail).contains("message_stop")
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: scale URL (streams|bare-streams|calls) N TOKENS [--h2 CONNECTIONS]";
    let (url, mode) = (args.first().expect(usage), args.get(1).expect(usage));
    let n: usize = args.get(2).and_then(|v| v.parse().ok()).expect(usage);
    let tokens: u32 = args.get(3).and_then(|v| v.parse().ok()).expect(usage);
    let h2: Option<usize> = match args.get(4).map(String::as_str) {
        Some("--h2") => Some(args.get(5).and_then(|v| v.parse().ok()).expect(usage)),
        Some(_) => panic!("{usage}"),
        None => None,
    };
    H2.set(h2).expect("set once");
    let mut builder = Client::builder()
        .api_key("sk-scale")
        .base_url(url)
        .pool_max_idle_per_host(n);
    if let Some(c) = h2 {
        builder = builder.http2_prior_knowledge().http2_connections(c);
    }
    let client = builder.build().expect("a client");
    // Warm up: the pool, the pacer's first answer, the allocator.
    client
        .messages()
        .create(request(tokens, 0))
        .await
        .expect("a first call");
    let rss0 = rss();
    let cpu0 = cpu();
    let open = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let peak_rss = Arc::new(std::sync::atomic::AtomicU64::new(rss0));
    // The most streams open at once, and the RSS at that moment.
    let sampler = {
        let (open, peak, peak_rss) = (open.clone(), peak.clone(), peak_rss.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let now_open = open.load(Ordering::Relaxed);
                if now_open >= peak.load(Ordering::Relaxed) {
                    peak.store(now_open, Ordering::Relaxed);
                    peak_rss.store(rss(), Ordering::Relaxed);
                }
            }
        })
    };
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let (client, open) = (client.clone(), open.clone());
        let streaming = mode == "streams";
        let bare_url = (mode == "bare-streams").then(|| url.clone());
        tasks.spawn(async move {
            let t0 = Instant::now();
            if let Some(url) = bare_url {
                // The floor: the same stream read raw by bare hyper, no decoding.
                let ok = bare_stream(&url, tokens, i, &open).await;
                return (ok, t0.elapsed());
            }
            if !streaming {
                let ok = client.messages().create(request(tokens, i)).await.is_ok();
                return (ok, t0.elapsed());
            }
            let Ok(mut stream) = client.messages().stream(request(tokens, i)).await else {
                return (false, t0.elapsed());
            };
            open.fetch_add(1, Ordering::Relaxed);
            // The deltas are checked against the final text by a running digest, not a copy:
            // the bench's own copy of every text would count as the client's memory.
            let mut text = Digest::default();
            let mut stop = false;
            let mut failed = false;
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(StreamEvent::ContentBlockDelta {
                        delta: Delta::TextDelta { text: t },
                        ..
                    }) => text.push_str(&t),
                    Ok(StreamEvent::MessageStop) => stop = true,
                    Ok(_) => {}
                    Err(_) => failed = true,
                }
            }
            open.fetch_sub(1, Ordering::Relaxed);
            let right = stream.message().is_some_and(|m| {
                let full = m.text();
                Digest::of(&full) == text
                    && m.usage.output_tokens == u64::from(tokens)
                    && full.split_whitespace().count() == tokens as usize
                    && !full.is_empty()
                    && matches!(
                        m.stop_reason,
                        Some(StopReason::EndTurn | StopReason::MaxTokens)
                    )
            });
            (right && stop && !failed, t0.elapsed())
        });
    }
    let mut ok = 0usize;
    let mut lat = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        let (good, took) = r.expect("a task finished");
        ok += usize::from(good);
        lat.push(took);
    }
    let wall = start.elapsed();
    let cpu_s = cpu() - cpu0;
    sampler.abort();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() - 1) as f64 * p) as usize].as_secs_f64() * 1e3;
    let peak_rss = peak_rss.load(Ordering::Relaxed);
    let peak_open = peak.load(Ordering::Relaxed);
    let max_open_streams = mock_stat(url, "max_open_streams").await;
    let mut out = serde_json::json!({
        "mode": mode, "n": n, "tokens": tokens, "ok": ok,
        "http2_connections": h2,
        "wall_s": wall.as_secs_f64(), "cpu_s": cpu_s,
        "p50_ms": pct(0.5), "p99_ms": pct(0.99),
        "rss_before_mib": rss0 as f64 / 1048576.0,
        "rss_at_most_open_mib": peak_rss as f64 / 1048576.0,
        "most_open": peak_open,
        "mock_max_open_streams": max_open_streams,
    });
    if mode.ends_with("streams") {
        let per = raw_stream_bytes(url, tokens).await;
        let mb = (per * n as u64) as f64 / 1e6;
        out["kib_per_open_stream"] =
            ((peak_rss.saturating_sub(rss0)) as f64 / 1024.0 / peak_open.max(1) as f64).into();
        out["stream_bytes"] = per.into();
        out["mb_streamed"] = mb.into();
        out["cpu_s_per_mb"] = (cpu_s / mb).into();
    } else {
        out["cpu_ms_per_call"] = (cpu_s * 1e3 / n as f64).into();
    }
    println!("{out}");
}
