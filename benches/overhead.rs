//! What the stack costs per request: the default `Client` against a bare hyper-util client
//! doing the same POST to the mock on loopback, one request at a time.
//!
//! `cargo bench --bench overhead`

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;

const BODY: &str =
    r#"{"model":"claude-bench","max_tokens":16,"messages":[{"role":"user","content":"Hello"}]}"#;

fn overhead(c: &mut Criterion) {
    // The mock runs on its own runtime so the client's runtime measures only the client.
    let mock_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mock = mock_rt
        .block_on(anthropic_mock::MockServer::start(Default::default()))
        .unwrap();
    let url = mock.url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("create_concurrency_1");
    let bare: HyperClient<_, Full<Bytes>> = HyperClient::builder(TokioExecutor::new()).build_http();
    let uri: http::Uri = format!("{url}/v1/messages").parse().unwrap();
    group.bench_function("bare_hyper", |b| {
        b.to_async(&rt).iter(|| {
            let bare = bare.clone();
            let uri = uri.clone();
            async move {
                let req = http::Request::post(uri)
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
        })
    });
    let client = rt.block_on(async {
        Client::builder()
            .api_key("sk-bench")
            .base_url(&url)
            .build()
            .unwrap()
    });
    group.bench_function("tower_anthropic_client", |b| {
        b.to_async(&rt).iter(|| {
            let client = client.clone();
            async move {
                let req = CreateMessageRequest::new("claude-bench", 16).user("Hello");
                let msg = client.messages().create(req).await.unwrap();
                assert_eq!(msg.kind, "message");
            }
        })
    });
    group.finish();
    drop(mock);
}

criterion_group!(benches, overhead);
criterion_main!(benches);
