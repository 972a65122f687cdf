//! The routes: what a caller's request goes through before, during and after its call.
//!
//! For every `/v1/` route, in this order, and nothing sent upstream for a refusal:
//! 1. the key (`x-api-key`, or `Authorization: Bearer`), before the body is read: missing or
//!    unknown, a 401 `authentication_error`; an address past `limits.failed_auth_per_minute`
//!    such requests gets a 429 at once for the rest of its minute (no key looked up);
//! 2. the body, at most `limits.max_body_bytes` (a larger `Content-Length` is refused at once,
//!    a body that grows past it stops being read; 413 `request_too_large`) within
//!    `limits.body_timeout_secs` (408); not JSON of the route's shape: 400;
//! 3. the model: one the key may not use, a 403 `permission_error`;
//! 4. the key's budget (403) and its requests and tokens per minute (429 with `retry-after`);
//! 5. the queue: past `pacing.max_queued` requests admitted and not yet answered, a 429 with
//!    `retry-after` the time the requests ahead need to leave (at the rate the queue has been
//!    emptying, else at the quota's);
//! 6. the call, through the library's stack: pacing (a request that meets a full quota
//!    waits, up to `pacing.max_wait_secs` and its deadline; past them, a 429 with an honest
//!    `retry-after`), retries with a budget, the breakers and fallback chains, timeouts.
//!
//! The caller's headers are not forwarded, but `anthropic-version` and `anthropic-beta`;
//! `x-gateway-deadline` (seconds) shortens the call's deadline. Answers come back in the
//! API's shape with its `request-id`; this gateway's own id is `x-request-id` (the caller's,
//! when it sent one).

// Each step of a request answers its refusal as the response itself (axum's way); the
// response is large, and made once per refused request.
#![allow(clippy::result_large_err)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use http_body_util::BodyExt;
use metrics_exporter_prometheus::PrometheusHandle;
use redis::aio::ConnectionManager;
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt};
use tower_anthropic::error::ErrorReply;
use tower_anthropic::extensions::{Deadline, ResponseMode};
use tower_anthropic::messages::{CountTokensRequest, CreateMessageRequest};
use tower_anthropic::web::{self, SseEnd};
use tower_anthropic::{Client, Error};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use crate::config::Config;
use crate::keys::{Accounts, Caller, Keys, Lookup, Refusal};
use crate::server::PeerAddr;
use crate::telemetry::{Outcome, Record, Telemetry};

/// The header a caller shortens its call's deadline with (seconds).
pub const DEADLINE_HEADER: &str = "x-gateway-deadline";

/// What may change on SIGHUP besides the keys and prices.
#[derive(Debug, Clone)]
struct Settings {
    max_body: u64,
    body_timeout: Duration,
    max_queued: usize,
    failed_auth_per_minute: u32,
}

impl Settings {
    fn of(config: &Config) -> Self {
        Settings {
            max_body: config.limits.max_body_bytes.get(),
            body_timeout: config.limits.body_timeout_secs.duration(),
            max_queued: config.pacing.max_queued.get() as usize,
            failed_auth_per_minute: config.limits.failed_auth_per_minute.get(),
        }
    }
}

/// Everything the handlers share; cloning shares it.
#[derive(Clone, Debug)]
pub struct Gateway {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    client: Client,
    keys: Keys,
    accounts: Accounts,
    settings: RwLock<Settings>,
    deadline: Duration,
    queued: AtomicUsize,
    drain: Drain,
    failed_auth: FailedAuth,
    metrics: Option<PrometheusHandle>,
    telemetry: Telemetry,
    ready: AtomicBool,
    redis: Option<ConnectionManager>,
}

impl Gateway {
    /// A gateway calling through `client`, configured by `config`; `redis` (when the
    /// configuration uses Redis) holds the keys and the per-key counters.
    pub fn new(
        client: Client,
        config: &Config,
        redis: Option<ConnectionManager>,
        metrics: Option<PrometheusHandle>,
    ) -> Self {
        let accounts = match (&redis, config.pacing.store) {
            (Some(con), crate::config::Store::Redis) => Accounts::redis(con.clone(), config),
            _ => Accounts::local(config),
        };
        Gateway {
            inner: Arc::new(Inner {
                client,
                keys: Keys::new(config, redis.clone()),
                accounts,
                settings: RwLock::new(Settings::of(config)),
                deadline: config.upstream.deadline_secs.duration(),
                queued: AtomicUsize::new(0),
                drain: Drain::new(),
                failed_auth: FailedAuth::default(),
                metrics: metrics.filter(|_| config.telemetry.metrics),
                telemetry: Telemetry::new(config.telemetry.access_log),
                ready: AtomicBool::new(true),
                redis,
            }),
        }
    }

    /// Takes what a reloaded configuration changes without a restart: the keys, their
    /// limits and budgets, the prices, the body bound and timeout, the queue's bound.
    pub fn reload(&self, config: &Config) {
        self.inner.keys.reload(config);
        self.inner.accounts.reload(config);
        *self
            .inner
            .settings
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Settings::of(config);
    }

    /// Says "not ready" from now on (shutting down), for `/readyz`.
    pub fn set_unready(&self) {
        self.inner.ready.store(false, Ordering::SeqCst);
    }

    /// The client calls go through.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// The accounts (per-key limits and spend).
    pub fn accounts(&self) -> &Accounts {
        &self.inner.accounts
    }

    fn settings(&self) -> Settings {
        self.inner
            .settings
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The routes and layers.
    pub fn router(&self) -> Router {
        let request_id = HeaderName::from_static("x-request-id");
        Router::new()
            .route("/v1/messages", post(messages))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/models", get(forward))
            .route("/v1/models/{id}", get(forward))
            .route("/v1/messages/batches", post(forward).get(forward))
            .route("/v1/messages/batches/{id}", get(forward).delete(forward))
            .route("/v1/messages/batches/{id}/cancel", post(forward))
            .route("/v1/messages/batches/{id}/results", get(forward))
            .route("/metrics", get(render_metrics))
            .route("/healthz", get(|| async { "ok" }))
            .route("/readyz", get(readyz))
            .fallback(|| async {
                reply(
                    StatusCode::NOT_FOUND,
                    "not_found_error",
                    "no such route",
                    None,
                )
            })
            .with_state(self.clone())
            .layer(
                ServiceBuilder::new()
                    .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                    .layer(PropagateRequestIdLayer::new(request_id)),
            )
    }
}

/// An error in the API's shape.
fn reply(
    status: StatusCode,
    error_type: &'static str,
    message: &str,
    retry_after: Option<u64>,
) -> Response {
    ErrorReply {
        status,
        error_type,
        message: message.to_owned(),
        retry_after,
    }
    .into_response()
}

/// The record of a request, from its head.
fn record(req: &Request) -> Record {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .chars()
        .take(128)
        .collect();
    Record {
        start: Instant::now(),
        request_id,
        client: req
            .extensions()
            .get::<PeerAddr>()
            .map(|p| p.0.ip().to_string()),
        method: req.method().to_string(),
        path: req.uri().path().chars().take(256).collect(),
        key: None,
        model: None,
        stream: false,
    }
}

/// The secret a caller presents.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(k) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(k.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A request on its way: who sent it, its record, and what is left to read.
struct Incoming {
    caller: Arc<Caller>,
    record: Record,
    headers: HeaderMap,
    body: Body,
    path_and_query: String,
    method: Method,
}

impl Gateway {
    /// Ends a request refused or failed here: its record, and the response.
    fn end(&self, record: &Record, resp: Response, outcome: &str) -> Response {
        let o = Outcome {
            status: resp.status().as_u16(),
            outcome,
            ..Outcome::default()
        };
        self.inner.telemetry.finish(record, &o);
        resp
    }

    /// Ends a request whose call failed: its record, and the error in the API's shape.
    fn failed(&self, record: &Record, e: Error) -> Response {
        let o = Outcome {
            status: ErrorReply::of(&e).status.as_u16(),
            upstream_request_id: e.request_id(),
            outcome: "error",
            ..Outcome::default()
        };
        self.inner.telemetry.finish(record, &o);
        e.into_response()
    }

    /// Step 1: the key, from the head alone.
    async fn authenticate(&self, req: Request) -> Result<Incoming, Response> {
        let mut record = record(&req);
        let peer = req.extensions().get::<PeerAddr>().map(|p| p.0.ip());
        let limit = self.settings().failed_auth_per_minute;
        if let Some(retry_after) = peer.and_then(|ip| self.inner.failed_auth.blocked(ip, limit)) {
            let r = reply(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "too many requests without a valid key from this address",
                Some(retry_after),
            );
            return Err(self.end(&record, r, "auth_throttled"));
        }
        let lookup = match presented_key(req.headers()) {
            None => None,
            Some(secret) => Some(self.inner.keys.lookup(secret).await),
        };
        let caller = match lookup {
            Some(Lookup::Found(c)) => c,
            Some(Lookup::StoreDown) => {
                let r = reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    "the gateway cannot check keys now",
                    Some(1),
                );
                return Err(self.end(&record, r, "key_store_down"));
            }
            Some(Lookup::Unknown) | None => {
                if let Some(ip) = peer {
                    self.inner.failed_auth.failed(ip);
                }
                let message = match lookup {
                    None => "x-api-key header is required",
                    _ => "invalid x-api-key",
                };
                let r = reply(
                    StatusCode::UNAUTHORIZED,
                    "authentication_error",
                    message,
                    None,
                );
                return Err(self.end(&record, r, "unauthenticated"));
            }
        };
        record.key = Some(caller.name.to_string());
        let (parts, body) = req.into_parts();
        let path_and_query = parts
            .uri
            .path_and_query()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        Ok(Incoming {
            caller,
            record,
            headers: parts.headers,
            body,
            path_and_query,
            method: parts.method,
        })
    }

    /// Steps 1 and 2: the caller's key, then its body.
    async fn receive(&self, req: Request) -> Result<(Incoming, Bytes), Response> {
        let mut inc = self.authenticate(req).await?;
        let body = self.read_body(&mut inc).await?;
        Ok((inc, body))
    }

    /// Step 2: the body, bounded in size and time.
    async fn read_body(&self, inc: &mut Incoming) -> Result<Bytes, Response> {
        let settings = self.settings();
        let too_large = || {
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                "request exceeds the maximum allowed size",
                None,
            )
        };
        let declared = inc
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > settings.max_body) {
            return Err(self.end(&inc.record, too_large(), "too_large"));
        }
        let body = std::mem::replace(&mut inc.body, Body::empty());
        let limited = http_body_util::Limited::new(body, settings.max_body as usize);
        match tokio::time::timeout(settings.body_timeout, limited.collect()).await {
            Ok(Ok(collected)) => Ok(collected.to_bytes()),
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                Err(self.end(&inc.record, too_large(), "too_large"))
            }
            Ok(Err(_)) => {
                let r = reply(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "the request body could not be read",
                    None,
                );
                Err(self.end(&inc.record, r, "body_failed"))
            }
            Err(_) => {
                let r = reply(
                    StatusCode::REQUEST_TIMEOUT,
                    "invalid_request_error",
                    "the request body took too long to arrive",
                    None,
                );
                Err(self.end(&inc.record, r, "body_timeout"))
            }
        }
    }

    /// Steps 3 and 4: the models the key may use, its budget and per-minute limits.
    async fn admit(
        &self,
        caller: &Caller,
        record: &Record,
        models: &[&str],
    ) -> Result<(), Response> {
        if let Some(m) = models.iter().find(|m| !caller.may_use(m)) {
            let msg = format!("this key may not use the model {m:?}");
            let r = reply(StatusCode::FORBIDDEN, "permission_error", &msg, None);
            return Err(self.end(record, r, "model_not_allowed"));
        }
        match self.inner.accounts.admit(caller).await {
            Ok(()) => Ok(()),
            Err(Refusal::Budget) => {
                let r = reply(
                    StatusCode::FORBIDDEN,
                    "permission_error",
                    "this key has spent its budget",
                    None,
                );
                Err(self.end(record, r, "budget_spent"))
            }
            Err(Refusal::Rate { what, retry_after }) => {
                let msg = format!("this key has used its {what} for this minute");
                let r = reply(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    &msg,
                    Some(retry_after),
                );
                Err(self.end(record, r, "key_rate_limited"))
            }
        }
    }

    /// Step 5: a place in the queue for a call to `model`.
    fn enqueue(&self, record: &Record, model: &str) -> Result<QueueSlot, Response> {
        let max = self.settings().max_queued;
        let before = self.inner.queued.fetch_add(1, Ordering::SeqCst);
        if before < max {
            metrics::gauge!("anthropic_gateway_queue_depth").set((before + 1) as f64);
            return Ok(QueueSlot(self.clone()));
        }
        // Refused: it never was in the queue (and does not count as having left it).
        self.inner.queued.fetch_sub(1, Ordering::SeqCst);
        // The time the requests ahead need to leave: at the rate the queue has been emptying,
        // else at the quota's rate (this process's pacer), else a second.
        let per_sec = self.inner.drain.per_sec().or_else(|| {
            let p = self.inner.client.pacer()?;
            let q = p.snapshot().into_iter().find(|q| q.id.class == model)?;
            Some(q.requests.limit? as f64 / 60.0)
        });
        let retry_after = per_sec
            .filter(|r| *r > 0.0)
            .map_or(1, |r| (before as f64 / r).ceil().clamp(1.0, 60.0) as u64);
        let r = reply(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            "the gateway's queue is full",
            Some(retry_after),
        );
        Err(self.end(record, r, "queue_full"))
    }

    /// The Messages service for one caller's calls: its deadline (the configured one, or
    /// shorter by `x-gateway-deadline`) and the `anthropic-version` and `anthropic-beta`
    /// it sent.
    fn service_for(
        &self,
        headers: &HeaderMap,
    ) -> tower_anthropic::messages::MessagesService<
        impl tower::Service<
            http::Request<tower_anthropic::transport::RequestBody>,
            Response = http::Response<tower_anthropic::body::ResponseBody>,
            Error = Error,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static,
    > {
        let deadline = self.deadline_for(headers);
        let forwarded = forwarded_headers(headers);
        self.inner.client.service().map_inner(move |s| {
            s.map_request(move |mut r: http::Request<_>| {
                r.extensions_mut().insert(deadline);
                for (k, v) in &forwarded {
                    r.headers_mut().insert(k.clone(), v.clone());
                }
                r
            })
        })
    }

    fn deadline_for(&self, headers: &HeaderMap) -> Deadline {
        let asked = headers
            .get(DEADLINE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s > 0.0)
            .map(|s| Duration::from_secs_f64(s.min(31_536_000.0)));
        Deadline::after(asked.map_or(self.inner.deadline, |a| a.min(self.inner.deadline)))
    }
}

/// `anthropic-version` and `anthropic-beta`, as the caller sent them.
fn forwarded_headers(headers: &HeaderMap) -> Vec<(HeaderName, HeaderValue)> {
    ["anthropic-version", "anthropic-beta"]
        .into_iter()
        .filter_map(|name| {
            let v = headers.get(name)?;
            Some((HeaderName::from_static(name), v.clone()))
        })
        .collect()
}

/// Requests without a valid key, by address, in windows of a minute (at most 10,000
/// addresses: when full, past windows go, then all).
#[derive(Debug, Default)]
struct FailedAuth(std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, (Instant, u32)>>);

/// The window of [`FailedAuth`].
const AUTH_WINDOW: Duration = Duration::from_secs(60);

impl FailedAuth {
    /// Seconds until `ip` may try again, when it made `limit` failed requests this window.
    fn blocked(&self, ip: std::net::IpAddr, limit: u32) -> Option<u64> {
        let now = Instant::now();
        let map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (start, count) = map.get(&ip)?;
        let elapsed = now.duration_since(*start);
        (elapsed < AUTH_WINDOW && *count >= limit)
            .then(|| (AUTH_WINDOW - elapsed).as_secs_f64().ceil().max(1.0) as u64)
    }

    /// One more failed request from `ip`.
    fn failed(&self, ip: std::net::IpAddr) {
        let now = Instant::now();
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 10_000 && !map.contains_key(&ip) {
            map.retain(|_, (start, _)| now.duration_since(*start) < AUTH_WINDOW);
            if map.len() >= 10_000 {
                map.clear();
            }
        }
        let entry = map.entry(ip).or_insert((now, 0));
        if now.duration_since(entry.0) >= AUTH_WINDOW {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
    }
}

/// A place in the queue, given back when dropped.
struct QueueSlot(Gateway);

/// How fast the queue empties: requests leaving it per second, over windows of at least a
/// second while it is in use (smoothed; a gap of 10 s without one starts afresh).
#[derive(Debug)]
struct Drain(std::sync::Mutex<DrainState>);

#[derive(Debug)]
struct DrainState {
    since: Instant,
    left: u64,
    per_sec: Option<f64>,
}

impl Drain {
    fn new() -> Self {
        Drain(std::sync::Mutex::new(DrainState {
            since: Instant::now(),
            left: 0,
            per_sec: None,
        }))
    }

    /// One request left the queue.
    fn left_one(&self) {
        let now = Instant::now();
        let mut s = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = now.duration_since(s.since);
        if elapsed > Duration::from_secs(10) {
            (s.since, s.left) = (now, 1);
            return;
        }
        s.left += 1;
        if elapsed >= Duration::from_secs(1) {
            let rate = s.left as f64 / elapsed.as_secs_f64();
            s.per_sec = Some(s.per_sec.map_or(rate, |p| 0.5 * p + 0.5 * rate));
            (s.since, s.left) = (now, 0);
        }
    }

    fn per_sec(&self) -> Option<f64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).per_sec
    }
}

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.inner.drain.left_one();
        let after = self.0.inner.queued.fetch_sub(1, Ordering::SeqCst) - 1;
        metrics::gauge!("anthropic_gateway_queue_depth").set(after as f64);
    }
}

/// `POST /v1/messages`.
async fn messages(State(gw): State<Gateway>, req: Request) -> Response {
    let (mut inc, body) = match gw.receive(req).await {
        Ok(received) => received,
        Err(r) => return r,
    };
    let mut req: CreateMessageRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("the body is not a valid Messages request: {e}");
            let r = reply(StatusCode::BAD_REQUEST, "invalid_request_error", &msg, None);
            return gw.end(&inc.record, r, "invalid_request");
        }
    };
    drop(body);
    inc.record.model = Some(req.model.clone());
    if let Err(r) = gw
        .admit(&inc.caller, &inc.record, &[req.model.as_str()])
        .await
    {
        return r;
    }
    let slot = match gw.enqueue(&inc.record, &req.model) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let svc = gw.service_for(&inc.headers);
    if req.stream.take() == Some(true) {
        inc.record.stream = true;
        let started = svc.stream(req).await;
        drop(slot);
        match started {
            Ok(stream) => {
                let (gw2, caller, record) = (gw.clone(), inc.caller.clone(), inc.record.clone());
                web::sse(stream)
                    .on_end(move |s, end| stream_ended(gw2, caller, record, s, end))
                    .into_response()
            }
            Err(e) => gw.failed(&inc.record, e),
        }
    } else {
        let answer = svc.create(req).await;
        drop(slot);
        match answer {
            Ok(answer) => {
                let usage = (answer.usage.input_tokens, answer.usage.output_tokens);
                let spend = gw
                    .inner
                    .accounts
                    .cost_micros(&answer.model, usage.0, usage.1);
                gw.inner
                    .accounts
                    .answered(&inc.caller, &answer.model, usage.0, usage.1)
                    .await;
                let o = Outcome {
                    status: 200,
                    upstream_request_id: answer.request_id(),
                    answered_by: Some(&answer.model),
                    usage: Some(usage),
                    attempts: answer.attempts(),
                    outcome: "ok",
                    spend_micros: spend,
                };
                gw.inner.telemetry.finish(&inc.record, &o);
                answer.into_response()
            }
            Err(e) => gw.failed(&inc.record, e),
        }
    }
}

/// A stream's end: its usage counted, its record written.
fn stream_ended(
    gw: Gateway,
    caller: Arc<Caller>,
    record: Record,
    stream: &tower_anthropic::stream::MessageStream,
    end: SseEnd<'_>,
) {
    let message = stream.message();
    let usage = message.map(|m| (m.usage.input_tokens, m.usage.output_tokens));
    let model = message.map(|m| m.model.clone());
    let outcome = match end {
        SseEnd::Complete => "ok",
        SseEnd::Failed(_) => "stream_failed",
        _ => "caller_hung_up",
    };
    let spend = match (&model, usage) {
        (Some(m), Some((i, o))) => gw.inner.accounts.cost_micros(m, i, o),
        _ => 0,
    };
    let o = Outcome {
        status: 200,
        upstream_request_id: stream.request_id(),
        answered_by: model.as_deref(),
        usage,
        attempts: stream.attempts(),
        outcome,
        spend_micros: spend,
    };
    gw.inner.telemetry.finish(&record, &o);
    // Counted off the response's task (which may be ending), where a runtime is at hand (the
    // body may be dropped elsewhere: then the usage is logged above, and not counted).
    if let (Some(model), Some((i, o)), Ok(rt)) =
        (model, usage, tokio::runtime::Handle::try_current())
    {
        rt.spawn(async move { gw.inner.accounts.answered(&caller, &model, i, o).await });
    }
}

/// `POST /v1/messages/count_tokens`.
async fn count_tokens(State(gw): State<Gateway>, req: Request) -> Response {
    let (mut inc, body) = match gw.receive(req).await {
        Ok(received) => received,
        Err(r) => return r,
    };
    let req: CountTokensRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            let msg = format!("the body is not a valid token count request: {e}");
            let r = reply(StatusCode::BAD_REQUEST, "invalid_request_error", &msg, None);
            return gw.end(&inc.record, r, "invalid_request");
        }
    };
    inc.record.model = Some(req.model.clone());
    if let Err(r) = gw
        .admit(&inc.caller, &inc.record, &[req.model.as_str()])
        .await
    {
        return r;
    }
    let answer = gw.service_for(&inc.headers).count_tokens(req).await;
    let status = match &answer {
        Ok(_) => 200,
        Err(e) => ErrorReply::of(e).status.as_u16(),
    };
    let o = Outcome {
        status,
        upstream_request_id: answer.as_ref().ok().and_then(|a| a.request_id()),
        attempts: answer.as_ref().map_or(0, |a| a.attempts()),
        outcome: if status == 200 { "ok" } else { "error" },
        ..Outcome::default()
    };
    gw.inner.telemetry.finish(&inc.record, &o);
    answer.into_response()
}

/// The models a batch's requests ask for (`None`: not a batch body).
fn batch_models(body: &[u8]) -> Option<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Batch {
        requests: Vec<Item>,
    }
    #[derive(serde::Deserialize)]
    struct Item {
        params: Params,
    }
    #[derive(serde::Deserialize)]
    struct Params {
        model: String,
    }
    let batch: Batch = serde_json::from_slice(body).ok()?;
    let mut models: Vec<String> = batch.requests.into_iter().map(|i| i.params.model).collect();
    models.sort();
    models.dedup();
    Some(models)
}

/// The models and batches routes: passed through the stack as they are (a batch's results
/// as they arrive).
async fn forward(State(gw): State<Gateway>, req: Request) -> Response {
    let (inc, body) = match gw.receive(req).await {
        Ok(received) => received,
        Err(r) => return r,
    };
    let creates_batch = inc.method == Method::POST && inc.record.path == "/v1/messages/batches";
    let models = if creates_batch {
        match batch_models(&body) {
            Some(m) => m,
            None => {
                let r = reply(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "the body is not a valid batch: requests[].params.model is required",
                    None,
                );
                return gw.end(&inc.record, r, "invalid_request");
            }
        }
    } else {
        Vec::new()
    };
    let models: Vec<&str> = models.iter().map(String::as_str).collect();
    if let Err(r) = gw.admit(&inc.caller, &inc.record, &models).await {
        return r;
    }
    let svc = gw.inner.client.service();
    let mut up = svc
        .endpoint()
        .request(inc.method.clone(), &inc.path_and_query, body);
    up.extensions_mut().insert(gw.deadline_for(&inc.headers));
    if inc.record.path.ends_with("/results") {
        up.extensions_mut().insert(ResponseMode::Streaming);
    }
    for (k, v) in forwarded_headers(&inc.headers) {
        up.headers_mut().insert(k, v);
    }
    let answer = svc.get_ref().clone().oneshot(up).await;
    match answer {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let upstream_id = parts
                .headers
                .get("request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let o = Outcome {
                status: parts.status.as_u16(),
                upstream_request_id: upstream_id.as_deref(),
                attempts: 0,
                outcome: "ok",
                ..Outcome::default()
            };
            gw.inner.telemetry.finish(&inc.record, &o);
            let mut out = Response::new(Body::new(body));
            *out.status_mut() = parts.status;
            for name in [header::CONTENT_TYPE, HeaderName::from_static("request-id")] {
                if let Some(v) = parts.headers.get(&name) {
                    out.headers_mut().insert(name, v.clone());
                }
            }
            out
        }
        Err(e) => gw.failed(&inc.record, e),
    }
}

/// `GET /readyz`: 200 while serving (and Redis answers, when used), 503 once shutting down.
async fn readyz(State(gw): State<Gateway>) -> Response {
    if !gw.inner.ready.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response();
    }
    if let Some(con) = &gw.inner.redis {
        let mut con = con.clone();
        let ping = redis::cmd("PING");
        let ping = ping.query_async::<String>(&mut con);
        match tokio::time::timeout(Duration::from_millis(500), ping).await {
            Ok(Ok(_)) => {}
            _ => return (StatusCode::SERVICE_UNAVAILABLE, "redis unreachable").into_response(),
        }
    }
    "ready".into_response()
}

/// `GET /metrics`: the Prometheus text format.
async fn render_metrics(State(gw): State<Gateway>) -> Response {
    match &gw.inner.metrics {
        Some(h) => {
            gw.inner.telemetry.pacer_gauges(&gw.inner.client);
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                h.render(),
            )
                .into_response()
        }
        None => reply(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "metrics are off on this gateway",
            None,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_drain_rate_is_measured_over_seconds() {
        let d = Drain::new();
        assert_eq!(d.per_sec(), None);
        for _ in 0..20 {
            tokio::time::advance(Duration::from_millis(100)).await;
            d.left_one();
        }
        let r = d.per_sec().unwrap();
        assert!((9.0..=11.0).contains(&r), "{r}");
        // After a quiet spell the last rate stays until a new window ends.
        tokio::time::advance(Duration::from_secs(30)).await;
        d.left_one();
        assert_eq!(d.per_sec(), Some(r));
        for _ in 0..8 {
            tokio::time::advance(Duration::from_millis(250)).await;
            d.left_one();
        }
        let slower = d.per_sec().unwrap();
        assert!(slower < r, "{slower} after {r}");
    }

    #[test]
    fn keys_are_read_from_either_header() {
        let mut h = HeaderMap::new();
        assert_eq!(presented_key(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer sk-gw-1"),
        );
        assert_eq!(presented_key(&h), Some("sk-gw-1"));
        h.insert("x-api-key", HeaderValue::from_static("sk-gw-2"));
        assert_eq!(presented_key(&h), Some("sk-gw-2"));
        let mut basic = HeaderMap::new();
        basic.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(presented_key(&basic), None);
    }

    #[test]
    fn only_version_and_beta_are_forwarded() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("anthropic-version", "2023-06-01"),
            ("anthropic-beta", "x"),
            ("x-api-key", "secret"),
            ("cookie", "c"),
            ("x-forwarded-for", "1.2.3.4"),
        ] {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        let names: Vec<_> = forwarded_headers(&h)
            .into_iter()
            .map(|(k, _)| k.to_string())
            .collect();
        assert_eq!(names, ["anthropic-version", "anthropic-beta"]);
    }

    #[test]
    fn batch_models_are_read_from_the_body() {
        let body = br#"{"requests":[{"custom_id":"a","params":{"model":"m2","max_tokens":1,"messages":[]}},
            {"custom_id":"b","params":{"model":"m1","max_tokens":1,"messages":[]}},
            {"custom_id":"c","params":{"model":"m2","max_tokens":1,"messages":[]}}]}"#;
        assert_eq!(batch_models(body).unwrap(), ["m1", "m2"]);
        assert!(batch_models(b"{}").is_none());
    }
}
