//! One call, two ways, for the per-call benches (`overhead`, and `calls` under callgrind):
//! the default `Client`, and a bare hyper-util client doing the same POST and parsing the
//! same JSON, with the same pool settings.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;

/// The request both send.
pub const BODY: &str =
    r#"{"model":"claude-bench","max_tokens":16,"messages":[{"role":"user","content":"Hello"}]}"#;

/// The bare client.
pub type Bare = HyperClient<HttpConnector, Full<Bytes>>;

/// A bare client with the `Client`'s pool settings: 90 s idle timeout with a timer.
pub fn bare() -> Bare {
    HyperClient::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build_http()
}

/// The default `Client` at `url` (with its pacer when `pacing`, as by default).
pub fn client(url: &str, pacing: bool) -> Client {
    Client::builder()
        .api_key("sk-bench")
        .base_url(url)
        .pacing(pacing)
        .build()
        .expect("a client")
}

/// One bare call: POST, collect, parse into a `Value`.
pub async fn bare_once(bare: &Bare, uri: &http::Uri) {
    let req = http::Request::post(uri.clone())
        .header("x-api-key", "sk-bench")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .expect("a request");
    let resp = bare.request(req).await.expect("an answer");
    assert!(resp.status().is_success());
    let body = resp.into_body().collect().await.expect("a body").to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    assert_eq!(v["type"], "message");
}

/// One call through the `Client`: a typed request and `Message`.
pub async fn client_once(client: &Client) {
    let req = CreateMessageRequest::new("claude-bench", 16).user("Hello");
    let msg = client.messages().create(req).await.expect("a message");
    assert_eq!(msg.kind, "message");
}

/// Runs `iters` calls of `f` spread over `concurrency` tasks; returns the elapsed time.
pub async fn run_concurrent<F, Fut>(iters: u64, concurrency: u64, f: F) -> Duration
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let left = Arc::new(AtomicU64::new(iters));
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (left, f) = (left.clone(), f.clone());
        set.spawn(async move {
            while left
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                f().await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    start.elapsed()
}

/// The value of `--rounds N` on the command line, or `default`.
pub fn rounds_arg(default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
