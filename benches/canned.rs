//! The default stack over an in-memory service that answers at once with a canned `Message`
//! and the API's headers: the stack's own CPU, without a network. Shared by the `stack_cpu`
//! bench (time) and the `calls` binary's `canned-*` modes (instructions, under callgrind).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_anthropic::ServiceBuilderExt;
use tower_anthropic::client::HttpStack;
use tower_anthropic::limit::ConcurrencyLimitLayer;
use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
use tower_anthropic::pacing::{Pacer, PacingLayer};
use tower_anthropic::retry::RetryPolicy;
use tower_anthropic::transport::{ApiKey, Endpoint};

/// The canned answer's body.
pub const MESSAGE: &str = r#"{"content":[{"text":"systems expect failure and recover from it gracefully.","type":"text"}],"id":"msg_1","model":"claude-bench","role":"assistant","stop_reason":"end_turn","stop_sequence":null,"type":"message","usage":{"input_tokens":6,"output_tokens":48}}"#;

/// The canned answer.
pub type Canned = http::Response<Full<Bytes>>;

/// An HTTP service answering at once with [`MESSAGE`], a request id and the API's twelve
/// rate-limit headers (each answer gets a copy of one map, as a service answering from its
/// own buffer would; cloning the service does not copy the map).
pub fn canned() -> impl Service<
    http::Request<Full<Bytes>>,
    Response = Canned,
    Error = Infallible,
    Future = std::future::Ready<Result<Canned, Infallible>>,
> + Clone
+ Send
+ Sync
+ 'static {
    let mut h = http::HeaderMap::new();
    h.insert("request-id", http::HeaderValue::from_static("req_bench"));
    for bucket in ["requests", "tokens", "input-tokens", "output-tokens"] {
        let name = |f: &str| {
            http::HeaderName::try_from(format!("anthropic-ratelimit-{bucket}-{f}"))
                .expect("a header name")
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
    let h = Arc::new(h);
    tower::service_fn(move |_req: http::Request<Full<Bytes>>| {
        let mut resp = http::Response::new(Full::new(Bytes::from_static(MESSAGE.as_bytes())));
        *resp.headers_mut() = (*h).clone();
        std::future::ready(Ok(resp))
    })
}

/// The stack over [`canned`] as `Client::build` composes it by default (retry, pacing when
/// `pacer` is given, the boxed body, attempt and idle timeouts, the unlimited concurrency
/// limit, classify, a boxed service).
pub fn default_stack(pacer: Option<Pacer>) -> MessagesService<HttpStack> {
    default_stack_over(canned(), pacer)
}

/// The default stack over `http`.
pub fn default_stack_over<S>(http: S, pacer: Option<Pacer>) -> MessagesService<HttpStack>
where
    S: Service<http::Request<Full<Bytes>>, Response = Canned, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    let stack = ServiceBuilder::new()
        .retry_api_errors(RetryPolicy::new())
        .option_layer(pacer.map(PacingLayer::new))
        .map_response(|r: http::Response<_>| r.map(BodyExt::boxed_unsync))
        .attempt_timeout(Duration::from_secs(600))
        .stream_idle_timeout(Duration::from_secs(120))
        .layer(ConcurrencyLimitLayer::unlimited())
        .classify_responses()
        .service(http);
    MessagesService::new(BoxCloneSyncService::new(stack), endpoint())
}

/// [`canned`], answering only after one wait (its future is pending once, as a call over a
/// network always is), so the layers that arm timers while an attempt waits do.
pub fn canned_after_a_wait() -> impl Service<
    http::Request<Full<Bytes>>,
    Response = Canned,
    Error = Infallible,
    Future = AfterAWait<std::future::Ready<Result<Canned, Infallible>>>,
> + Clone
+ Send
+ Sync
+ 'static {
    let mut inner = canned();
    tower::service_fn(move |req| AfterAWait {
        waited: false,
        inner: inner.call(req),
    })
}

/// A future pending once (waking its task at once) before it polls `inner`.
#[derive(Debug)]
pub struct AfterAWait<F> {
    waited: bool,
    inner: F,
}

impl<F: std::future::Future + Unpin> std::future::Future for AfterAWait<F> {
    type Output = F::Output;
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        if !self.waited {
            self.waited = true;
            cx.waker().wake_by_ref();
            return std::task::Poll::Pending;
        }
        std::pin::Pin::new(&mut self.inner).poll(cx)
    }
}

/// An endpoint for the canned service (never dialled), with the headers `Client::build`
/// gives its own (the first attempt's retry count among them).
pub fn endpoint() -> Endpoint {
    let mut e = Endpoint::new(
        "http://127.0.0.1:9",
        ApiKey::new("sk-bench").expect("a key"),
    )
    .expect("an endpoint");
    e.set_header(
        http::HeaderName::from_static(tower_anthropic::retry::RETRY_COUNT_HEADER),
        http::HeaderValue::from_static("0"),
    );
    e
}

/// The request the stack sends.
pub fn request() -> CreateMessageRequest {
    CreateMessageRequest::new("claude-bench", 16).user("Hello")
}

/// The floor: the bare call over the same answer, parsed into a `Value`.
pub async fn bare_once<S>(svc: &S) -> serde_json::Value
where
    S: Service<http::Request<Full<Bytes>>, Response = Canned, Error = Infallible> + Clone,
{
    let resp = svc
        .clone()
        .oneshot(http::Request::new(Full::new(Bytes::new())))
        .await
        .expect("infallible");
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("infallible")
        .to_bytes();
    serde_json::from_slice(&body).expect("JSON")
}
