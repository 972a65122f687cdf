//! What the stack costs per request: the default `Client` against a bare hyper-util client
//! doing the same POST (and parsing the same JSON) to the mock on loopback, with the same
//! pool settings, at concurrency 1 and 64. The mock runs on its own runtime thread, the
//! client on the bench thread.
//!
//! `cargo bench --bench overhead`

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;

const BODY: &str =
    r#"{"model":"claude-bench","max_tokens":16,"messages":[{"role":"user","content":"Hello"}]}"#;

type Bare = HyperClient<HttpConnector, Full<Bytes>>;

async fn bare_once(bare: &Bare, uri: &http::Uri) {
    let req = http::Request::post(uri.clone())
        .header("x-api-key", "sk-bench")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(BODY.as_bytes())))
        .unwrap();
    let resp = bare.request(req).await.unwrap();
    assert!(resp.status().is_success());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "message");
}

async fn client_once(client: &Client) {
    let req = CreateMessageRequest::new("claude-bench", 16).user("Hello");
    let msg = client.messages().create(req).await.unwrap();
    assert_eq!(msg.kind, "message");
}

/// Runs `iters` requests spread over `concurrency` tasks; returns the elapsed time.
async fn run_concurrent<F, Fut>(iters: u64, concurrency: u64, f: F) -> Duration
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

fn overhead(c: &mut Criterion) {
    let mock_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = mock_rt
        .block_on(anthropic_mock::MockServer::start(Default::default()))
        .unwrap();
    let url = mock.url();
    // The client side on the bench thread alone: two busy threads (client, mock) on the two
    // cores, so scheduling noise stays low.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    // Same pool settings as the Client's: 90 s idle timeout with a timer, no idle cap.
    let bare: Bare = HyperClient::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build_http();
    let uri: http::Uri = format!("{url}/v1/messages").parse().unwrap();
    let client = rt.block_on(async {
        Client::builder()
            .api_key("sk-bench")
            .base_url(&url)
            .build()
            .unwrap()
    });

    for concurrency in [1u64, 64] {
        let mut group = c.benchmark_group(format!("create_concurrency_{concurrency}"));
        group.throughput(Throughput::Elements(1));
        group.sample_size(30);
        group.measurement_time(Duration::from_secs(5));
        let (b2, u2) = (bare.clone(), uri.clone());
        group.bench_function("bare_hyper", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (bare, uri) = (b2.clone(), u2.clone());
                run_concurrent(iters, concurrency, move || {
                    let (bare, uri) = (bare.clone(), uri.clone());
                    async move { bare_once(&bare, &uri).await }
                })
            })
        });
        let c2 = client.clone();
        group.bench_function("tower_anthropic_client", |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let client = c2.clone();
                run_concurrent(iters, concurrency, move || {
                    let client = client.clone();
                    async move { client_once(&client).await }
                })
            })
        });
        group.finish();
    }
    drop(mock);
}

criterion_group!(benches, overhead);
criterion_main!(benches);
