//! CPU cost of each layer, without a network: the stack over an in-memory service that
//! answers at once with a canned `Message`. `typed_default_stack` is composed as
//! `Client::build` composes it (retry, pacing, the boxed body, attempt and idle timeouts,
//! classify, sensitive headers, a boxed service), over a canned answer that carries the
//! API's twelve rate-limit headers, so the pacer does its per-answer work;
//! `bare_value_parse_api_headers` is the bare call over the same answer, its floor.
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
use tower_anthropic::pacing::Pacer;
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

/// The canned `Message` with a request id and the twelve rate-limit headers, as the API
/// sends them.
fn canned_with_headers() -> impl Service<
    http::Request<Full<Bytes>>,
    Response = Canned,
    Error = Infallible,
    Future = std::future::Ready<Result<Canned, Infallible>>,
> + Clone
+ Send
+ Sync
+ 'static {
    // Built once; each answer gets a copy, as a service answering from its own buffer would.
    let mut h = http::HeaderMap::new();
    h.insert("request-id", http::HeaderValue::from_static("req_bench"));
    for bucket in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let name = |f: &str| {
            http::HeaderName::try_from(format!("anthropic-ratelimit-{bucket}-{f}")).unwrap()
        };
        h.insert(name("limit"), http::HeaderValue::from_static("100000000"));
        h.insert(
            name("remaining"),
            http::HeaderValue::from_static("99999999"),
        );
        h.insert(
            name("reset"),
            http::HeaderValue::from_static("2026-11-28T12:00:00Z"),
        );
    }
    // Shared, as a real client's handles are: cloning the service must not copy the map.
    let h = std::sync::Arc::new(h);
    tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
        let mut resp = http::Response::new(Full::new(Bytes::from_static(MESSAGE.as_bytes())));
        *resp.headers_mut() = (*h).clone();
        std::future::ready(Ok(resp))
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
    // The same bare call, answered with the headers the default stack gets below: the floor
    // that `typed_default_stack` is compared with.
    g.bench_function("bare_value_parse_api_headers", |b| {
        let svc = canned_with_headers();
        b.to_async(&rt).iter(|| async {
            let resp = svc
                .clone()
                .oneshot(http::Request::new(Full::new(Bytes::new())))
                .await
                .unwrap();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).unwrap()
        })
    });
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
    // As `Client::build` composes it, with or without the pacer.
    let default_stack = |pacer: Option<Pacer>| {
        MessagesService::new(
            tower::util::BoxCloneSyncService::new(
                ServiceBuilder::new()
                    .retry_api_errors(RetryPolicy::new())
                    .option_layer(pacer.map(tower_anthropic::pacing::PacingLayer::new))
                    .map_response(|r: http::Response<_>| r.map(BodyExt::boxed_unsync))
                    .attempt_timeout(Duration::from_secs(600))
                    .stream_idle_timeout(Duration::from_secs(120))
                    .classify_responses()
                    .layer(
                        tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer::new([
                            http::HeaderName::from_static("x-api-key"),
                            http::header::AUTHORIZATION,
                        ]),
                    )
                    .service(canned_with_headers()),
            ),
            endpoint(),
        )
    };
    let paced = default_stack(Some(Pacer::new()));
    g.bench_function("typed_default_stack", |b| {
        b.to_async(&rt).iter(|| paced.clone().oneshot(req()))
    });
    // The same without the pacer: what pacing costs per call.
    let unpaced = default_stack(None);
    g.bench_function("typed_default_stack_unpaced", |b| {
        b.to_async(&rt).iter(|| unpaced.clone().oneshot(req()))
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
