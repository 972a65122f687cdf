//! `load URL KEY N CONCURRENCY [stream]`: N `POST /v1/messages` calls to URL (a mock, a
//! gateway, a proxy: anything that answers the Messages API) with `x-api-key: KEY`,
//! CONCURRENCY at a time over kept-alive HTTP/1.1 connections, and one JSON line of figures:
//! calls answered 200, failed, calls per second, latency p50 and p99 (ms).
//!
//! With `stream`, each call asks for a stream and reads it whole (with N = CONCURRENCY and a
//! slow mock: N streams open at once, for memory per open stream).

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

fn body(stream: bool) -> Bytes {
    Bytes::from(format!(
        r#"{{"model":"claude-sonnet-4-6","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"load"}}]}}"#
    ))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        eprintln!("usage: load URL KEY N CONCURRENCY [stream]");
        std::process::exit(2);
    }
    let (url, key) = (args[0].clone(), args[1].clone());
    let n: usize = args[2].parse().expect("N");
    let conc: usize = args[3].parse().expect("CONCURRENCY");
    let stream = args.get(4).is_some_and(|a| a == "stream");
    let mut http = Client::builder(TokioExecutor::new());
    http.pool_max_idle_per_host(conc.max(1));
    let http = http.build_http::<Full<Bytes>>();
    let uri = format!("{url}/v1/messages");
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..conc)
        .map(|_| {
            let (http, uri, key, next) = (http.clone(), uri.clone(), key.clone(), next.clone());
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut failed = 0usize;
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                    let req = http::Request::post(&uri)
                        .header("content-type", "application/json")
                        .header("anthropic-version", "2023-06-01")
                        .header("x-api-key", &key)
                        .body(Full::new(body(stream)))
                        .expect("a request");
                    let t = Instant::now();
                    let ok = match http.request(req).await {
                        Ok(resp) => {
                            let status = resp.status();
                            resp.into_body().collect().await.is_ok() && status == 200
                        }
                        Err(_) => false,
                    };
                    if ok {
                        lat.push(t.elapsed());
                    } else {
                        failed += 1;
                    }
                }
                (lat, failed)
            })
        })
        .collect();
    let mut lat: Vec<Duration> = Vec::new();
    let mut failed = 0;
    for w in workers {
        let (l, f) = w.await.expect("a worker");
        lat.extend(l);
        failed += f;
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    println!(
        "{}",
        serde_json::json!({
            "ok": lat.len(), "failed": failed, "wall_s": wall,
            "rps": lat.len() as f64 / wall, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
        })
    );
}
