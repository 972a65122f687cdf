//! CPU cost of each layer, without a network: the stack over an in-memory service that
//! answers at once with a canned `Message`.
//!
//! `cargo bench --bench stack_cpu`

// criterion's macros generate undocumented functions.
#![allow(missing_docs)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_anthropic::ServiceBuilderExt;
use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
use tower_anthropic::retry::RetryPolicy;
use tower_anthropic::transport::{ApiKey, Endpoint};

const MESSAGE: &str = r#"{"content":[{"text":"systems expect failure and recover from it gracefully.","type":"text"}],"id":"msg_1","model":"claude-bench","role":"assistant","stop_reason":"end_turn","stop_sequence":null,"type":"message","usage":{"input_tokens":6,"output_tokens":48}}"#;

type Canned = http::Response<Full<Bytes>>;

/// An HTTP service answering every request at once with the canned `Message`.
fn canned() -> impl Service<
    http::Request<Full<Bytes>>,
    Response = Canned,
    Error = Infallible,
    Future = std::future::Ready<Result<Canned, Infallible>>,
> + Clone {
    tower::service_fn(|_req: http::Request<Full<Bytes>>| {
        std::future::ready(Ok(http::Response::new(Full::new(Bytes::from_static(
            MESSAGE.as_bytes(),
        )))))
    })
}

fn endpoint() -> Endpoint {
    Endpoint::new("http://127.0.0.1:9", ApiKey::new("k").unwrap()).unwrap()
}

fn req() -> CreateMessageRequest {
    CreateMessageRequest::new("claude-bench", 16).user("Hello")
}

fn stack_cpu(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("stack_cpu");
    g.bench_function("bare_value_parse", |b| {
        b.to_async(&rt).iter(|| async {
            let resp = canned()
                .oneshot(http::Request::new(Full::new(Bytes::new())))
                .await
                .unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        })
    });
    let typed = MessagesService::new(
        ServiceBuilder::new().classify_responses().service(canned()),
        endpoint(),
    );
    g.bench_function("typed_classify", |b| {
        b.to_async(&rt).iter(|| typed.clone().oneshot(req()))
    });
    let retry = MessagesService::new(
        ServiceBuilder::new()
            .retry_api_errors(RetryPolicy::new())
            .classify_responses()
            .service(canned()),
        endpoint(),
    );
    g.bench_function("typed_retry_classify", |b| {
        b.to_async(&rt).iter(|| retry.clone().oneshot(req()))
    });
    let full = MessagesService::new(
        ServiceBuilder::new()
            .retry_api_errors(RetryPolicy::new())
            .attempt_timeout(Duration::from_secs(600))
            .stream_idle_timeout(Duration::from_secs(120))
            .concurrency_limit_until_body_end(1 << 20)
            .classify_responses()
            .service(canned()),
        endpoint(),
    );
    g.bench_function("typed_full_stack", |b| {
        b.to_async(&rt).iter(|| full.clone().oneshot(req()))
    });
    let no_limit = MessagesService::new(
        ServiceBuilder::new()
            .retry_api_errors(RetryPolicy::new())
            .attempt_timeout(Duration::from_secs(600))
            .stream_idle_timeout(Duration::from_secs(120))
            .classify_responses()
            .service(canned()),
        endpoint(),
    );
    g.bench_function("typed_stack_without_limit", |b| {
        b.to_async(&rt).iter(|| no_limit.clone().oneshot(req()))
    });
    let no_budget = MessagesService::new(
        ServiceBuilder::new()
            .retry_api_errors(RetryPolicy::new().budget(None))
            .classify_responses()
            .service(canned()),
        endpoint(),
    );
    g.bench_function("typed_retry_no_budget_classify", |b| {
        b.to_async(&rt).iter(|| no_budget.clone().oneshot(req()))
    });
    g.finish();
}

criterion_group!(benches, stack_cpu);
criterion_main!(benches);
