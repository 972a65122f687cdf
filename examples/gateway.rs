//! A gateway: an axum server that looks like the Messages API to its callers (any SDK, with
//! its base URL pointed here) and forwards `POST /v1/messages` through the resilient stack,
//! whole answers as JSON and streams as server-sent events passed through event by event.
//!
//! What it adds in front of the API:
//! - one `Client` for every caller: pacing to the quota, retries with a budget, timeouts, a
//!   deadline per call (`ClientBuilder::for_request_handlers`), so callers see fewer 429s
//!   and a fast, typed answer when capacity is short (`429`/`503` with `Retry-After`);
//! - answers, streams (`web::sse`: server-sent events with keep-alive, an `event: error` in
//!   the API's shape when a stream fails) and errors in the API's own shape (`ErrorReply`,
//!   `impl IntoResponse for Error`, feature `axum`): the caller's fault stays a 4xx with the
//!   API's message, the gateway's own key, account or spend limit becomes a `502` that
//!   leaks nothing;
//! - `tower_http`'s `TraceLayer` (with this crate's classifier), an `x-request-id` per
//!   request (`SetRequestIdLayer`, echoed by `PropagateRequestIdLayer`), and the upstream's
//!   `request-id` passed back, so the SDKs' `_request_id` names the API's request;
//! - `GET /metrics`: the library's metrics (feature `metrics`) for Prometheus.
//!
//! The caller's own `x-api-key` is not forwarded: the gateway calls the API with its key
//! (`ANTHROPIC_API_KEY`). Put your own authentication in front (for example tower-http's
//! `ValidateRequestHeaderLayer`).
//!
//! ```text
//! cargo run --example gateway                  # embedded mock, serves until Ctrl-C
//! cargo run --example gateway -- --demo        # embedded mock, a few calls through itself, exits
//! ANTHROPIC_API_KEY=... cargo run --example gateway -- --listen 127.0.0.1:8080
//! ```
//!
//! Then, for example, with the official Python SDK:
//! `anthropic.Anthropic(base_url="http://127.0.0.1:8080", api_key="unused")`.

use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tower::ServiceBuilder;
use tower_anthropic::classify::ApiClassifier;
use tower_anthropic::error::ErrorReply;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::{Client, ClientBuilder, web};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

/// The largest request body the gateway reads (the API's own limit for Messages).
pub(crate) const MAX_BODY: usize = 32 * 1024 * 1024;

/// What every handler shares: the client (one stack, one quota) and the metrics handle.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub(crate) struct Gateway {
    client: Client,
    metrics: Option<PrometheusHandle>,
}

/// The gateway's routes and layers around `client`; `metrics` renders `GET /metrics`.
pub(crate) fn app(client: Client, metrics: Option<PrometheusHandle>) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .route("/v1/messages", post(messages))
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            api_error(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "no such route on this gateway",
            )
        })
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(Gateway { client, metrics })
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                // Failures as this crate classifies them; a caller's 4xx is a warning here,
                // not an error of the gateway.
                .layer(
                    TraceLayer::new(ApiClassifier::make())
                        .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
                )
                .layer(PropagateRequestIdLayer::new(request_id)),
        )
}

/// An error in the API's shape (the gateway's own: a route it does not have, a body it
/// cannot read).
fn api_error(status: StatusCode, error_type: &'static str, message: &str) -> Response {
    let reply = ErrorReply {
        status,
        error_type,
        message: message.to_owned(),
        retry_after: None,
    };
    reply.into_response()
}

/// `POST /v1/messages`: a whole answer, or a stream when the body says `"stream": true`.
/// The answer, the stream (`web::sse`) and the errors (`ErrorReply`) are this library's
/// responses as they are: the API's shape, its `request-id` passed back, nothing leaked.
async fn messages(State(gw): State<Gateway>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return api_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "request exceeds the maximum allowed size",
            );
        }
        Err(rejection) => {
            return api_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                &rejection.body_text(),
            );
        }
    };
    let mut req: CreateMessageRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("the body is not a valid Messages request: {e}");
            return api_error(StatusCode::BAD_REQUEST, "invalid_request_error", &msg);
        }
    };
    if req.stream.take() == Some(true) {
        match gw.client.messages().stream(req).await {
            Ok(stream) => web::sse(stream).into_response(),
            Err(e) => e.into_response(),
        }
    } else {
        gw.client.messages().create(req).await.into_response()
    }
}

/// `GET /metrics`: the Prometheus text format.
async fn render_metrics(State(gw): State<Gateway>) -> Response {
    match gw.metrics {
        Some(h) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            h.render(),
        )
            .into_response(),
        None => api_error(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "metrics are off on this gateway",
        ),
    }
}

/// How each call may wait in all (retries, pacing) before the caller gets a typed answer.
const DEADLINE: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_target(false)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let demo = args.iter().any(|a| a == "--demo");
    let listen = args
        .iter()
        .position(|a| a == "--listen")
        .and_then(|i| args.get(i + 1))
        .map_or("127.0.0.1:8080", String::as_str);
    let listen = if demo { "127.0.0.1:0" } else { listen };

    // Upstream: the real API with a key, else the embedded mock (no key, no network).
    let (builder, _mock) = match ClientBuilder::from_env() {
        Ok(b) if !demo => (b, None),
        _ => {
            let mock = anthropic_mock::MockServer::start(Default::default()).await?;
            let b = Client::builder()
                .api_key("sk-ant-mock")
                .base_url(mock.url());
            (b, Some(mock))
        }
    };
    let upstream = if _mock.is_some() {
        "the embedded mock"
    } else {
        "the API"
    };
    let client = builder.for_request_handlers(DEADLINE).build()?;
    let metrics = PrometheusBuilder::new().install_recorder()?;

    let listener = tokio::net::TcpListener::bind(listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    println!("gateway on {url}, forwarding to {upstream}");
    let server = axum::serve(listener, app(client, Some(metrics)));
    if !demo {
        server.with_graceful_shutdown(ctrl_c()).await?;
        return Ok(());
    }
    tokio::spawn(async move { server.await });
    demo_calls(&url).await
}

async fn ctrl_c() {
    let _ = tokio::signal::ctrl_c().await;
}

/// `--demo`: this library's own client, pointed at the gateway as at the API.
async fn demo_calls(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let caller = Client::builder().api_key("unused").base_url(url).build()?;
    let req = CreateMessageRequest::new("claude-sonnet-4-6", 64).user("Hello through the gateway");
    let answer = caller.messages().create(req.clone()).await?;
    println!(
        "whole answer: {:?} (request-id {})",
        answer.text(),
        answer.request_id().unwrap_or("-")
    );
    let mut stream = caller.messages().stream(req).await?;
    let mut events = 0;
    while let Some(event) = stream.next().await {
        event?;
        events += 1;
    }
    let text = stream.message().map(|m| m.text()).unwrap_or_default();
    println!("stream: {events} events, text {text:?}");
    let metrics = caller_get(url, "/metrics").await?;
    // (The demo's caller runs in the gateway's process: its own calls are counted too.)
    println!("metrics exported (a few lines):");
    let lines = metrics
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty());
    for line in lines.take(8) {
        println!("  {line}");
    }
    Ok(())
}

async fn caller_get(url: &str, path: &str) -> Result<String, Box<dyn std::error::Error>> {
    use http_body_util::{BodyExt, Empty};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Empty<Bytes>>();
    let resp = client.get(format!("{url}{path}").parse()?).await?;
    let body = resp.into_body().collect().await?.to_bytes();
    Ok(String::from_utf8_lossy(&body).into_owned())
}
