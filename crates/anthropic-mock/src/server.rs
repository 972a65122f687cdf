//! The HTTP server: accept loop, connection control (resets), routes and the API's behaviour.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::body::{MockBody, StreamGuard};
use crate::config::{MockConfig, OutageKind};
use crate::generate::{self, Answer};
use crate::ratelimit::RateLimiter;
use crate::rng::{self, SplitMix64};
use crate::script::{ScriptEntry, default_error};
use crate::stats::{Counters, LogEntry, Stats, lock, selected_headers};

/// A running mock server. Dropping the handle shuts the server down and closes its
/// connections.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
///
/// let server = MockServer::start(MockConfig::default()).await?;
/// // Requests carrying `x-mock-key: demo` get a 529, then normal answers.
/// server.script("demo", [ScriptEntry::status(529)]);
/// println!("{}", server.url());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug)]
struct State {
    config: MockConfig,
    start: Instant,
    counters: Arc<Counters>,
    limiter: Mutex<RateLimiter>,
    scripts: Mutex<HashMap<String, VecDeque<ScriptEntry>>>,
    rng: Mutex<SplitMix64>,
    ids: AtomicU64,
    manual_outage: Mutex<Option<(Instant, OutageKind)>>,
}

impl MockServer {
    /// Binds `config.addr` and starts serving HTTP/1.1 and HTTP/2 (h2c) on the current tokio
    /// runtime.
    pub async fn start(config: MockConfig) -> io::Result<MockServer> {
        let total = config.faults.total();
        if !(0.0..=1.0).contains(&total) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fault probabilities add up to {total}, more than 1"),
            ));
        }
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            start: Instant::now(),
            counters: Arc::new(Counters::new(config.log_capacity)),
            limiter: Mutex::new(RateLimiter::new(config.limits)),
            scripts: Mutex::new(HashMap::new()),
            rng: Mutex::new(SplitMix64::new(config.faults.seed)),
            ids: AtomicU64::new(config.faults.seed.wrapping_mul(1_000_003)),
            manual_outage: Mutex::new(None),
            config,
        });
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, state.clone(), rx));
        Ok(MockServer {
            addr,
            state,
            shutdown,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters, as `GET /_mock/stats` returns them.
    pub fn stats(&self) -> Stats {
        self.state.counters.snapshot()
    }

    /// The recent requests, oldest first, as `GET /_mock/log` returns them.
    pub fn log(&self) -> Vec<LogEntry> {
        self.state.counters.recent()
    }

    /// Queues `responses` for requests carrying `x-mock-key: key`, after any already queued.
    pub fn script(&self, key: &str, responses: impl IntoIterator<Item = ScriptEntry>) {
        self.state.script(key, responses);
    }

    /// Starts an outage now, lasting `duration`: every API request gets `kind`.
    pub fn outage_for(&self, duration: Duration, kind: OutageKind) {
        *lock(&self.state.manual_outage) = Some((Instant::now() + duration, kind));
    }

    /// Clears counters, log, scripts, rate-limit buckets and any manual outage, and reseeds the
    /// random source, as `POST /_mock/reset` does.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl State {
    fn script(&self, key: &str, responses: impl IntoIterator<Item = ScriptEntry>) {
        lock(&self.scripts)
            .entry(key.to_owned())
            .or_default()
            .extend(responses);
    }

    fn reset(&self) {
        self.counters.reset();
        lock(&self.scripts).clear();
        lock(&self.limiter).reset();
        *lock(&self.rng) = SplitMix64::new(self.config.faults.seed);
        *lock(&self.manual_outage) = None;
    }

    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    fn outage(&self) -> Option<OutageKind> {
        if let Some((until, kind)) = *lock(&self.manual_outage) {
            if Instant::now() < until {
                return Some(kind);
            }
        }
        let elapsed = self.start.elapsed();
        self.config
            .outages
            .iter()
            .find(|o| o.is_active(elapsed))
            .map(|o| o.kind)
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(serve_connection(stream, state.clone(), shutdown.clone()));
                }
                // Out of file descriptors or a connection gone before accept: back off a little.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            _ = shutdown.changed() => return,
        }
    }
}

/// Per-connection control: the handler asks for a reset, the connection task drops the
/// socket with `SO_LINGER` 0 so the peer sees a TCP RST.
#[derive(Debug, Default)]
struct ConnControl {
    reset: AtomicBool,
    notify: Notify,
}

impl ConnControl {
    fn reset_now(&self) {
        self.reset.store(true, Ordering::SeqCst);
        self.notify.notify_one();
    }
}

struct ConnGuard(Arc<Counters>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.0.connection_closed();
    }
}

async fn serve_connection(
    stream: TcpStream,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    state.counters.connection_opened();
    let _guard = ConnGuard(state.counters.clone());
    let control = Arc::new(ConnControl::default());
    let io = TokioIo::new(ResetOnDrop {
        stream,
        control: control.clone(),
    });
    let ctl = control.clone();
    let svc = service_fn(move |req| handle(state.clone(), ctl.clone(), req));
    let builder = auto::Builder::new(TokioExecutor::new());
    let conn = builder.serve_connection(io, svc);
    tokio::select! {
        _ = conn => {}
        _ = control.notify.notified() => {}
        _ = shutdown.changed() => {}
    }
}

/// A TCP stream that, when dropped after a reset was asked for, closes with an RST.
struct ResetOnDrop {
    stream: TcpStream,
    control: Arc<ConnControl>,
}

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if self.control.reset.load(Ordering::SeqCst) {
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
        }
    }
}

impl AsyncRead for ResetOnDrop {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResetOnDrop {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

type Resp = Response<MockBody>;

async fn handle(
    state: Arc<State>,
    control: Arc<ConnControl>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path();
    let route = if path.ends_with("/v1/messages") {
        Some(Route::Messages)
    } else if path.ends_with("/v1/messages/count_tokens") {
        Some(Route::CountTokens)
    } else {
        None
    };
    if let Some(route) = route {
        if req.method() == Method::POST {
            return Ok(api(&state, &control, req, route).await);
        }
        let rid = state.next_id("req_");
        return Ok(error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "Method not allowed",
            None,
            &rid,
        ));
    }
    Ok(match (req.method().clone(), path) {
        (Method::GET, "/_mock/stats") => json_response(StatusCode::OK, &state.counters.snapshot()),
        (Method::GET, "/_mock/log") => json_response(StatusCode::OK, &state.counters.recent()),
        (Method::POST, "/_mock/reset") => {
            state.reset();
            json_response(StatusCode::OK, &json!({"reset": true}))
        }
        (Method::POST, "/_mock/script") => match read_json::<crate::Script>(req).await {
            Ok(s) => {
                let n = s.responses.len();
                state.script(&s.key, s.responses);
                json_response(StatusCode::OK, &json!({"queued": n}))
            }
            Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"error": e})),
        },
        (Method::POST, "/_mock/outage") => match read_json::<Value>(req).await {
            Ok(v) => {
                let ms = v.get("ms").and_then(Value::as_u64).unwrap_or(0);
                let kind = match v.get("kind").and_then(Value::as_str) {
                    Some("reset") => OutageKind::Reset,
                    _ => OutageKind::Overloaded,
                };
                *lock(&state.manual_outage) =
                    Some((Instant::now() + Duration::from_millis(ms), kind));
                json_response(StatusCode::OK, &json!({"outage_ms": ms}))
            }
            Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"error": e})),
        },
        _ => {
            let rid = state.next_id("req_");
            error_response(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "Not found",
                None,
                &rid,
            )
        }
    })
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, String> {
    let body = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&body.to_bytes()).map_err(|e| e.to_string())
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Route {
    Messages,
    CountTokens,
}

/// What the API handler decided.
enum Outcome {
    Respond(Resp),
    /// Reset the connection, after `stall` without a byte.
    Reset {
        stall: Option<Duration>,
    },
}

impl State {
    fn next_id(&self, prefix: &str) -> String {
        rng::id(prefix, self.ids.fetch_add(1, Ordering::Relaxed))
    }
}

async fn api(
    state: &Arc<State>,
    control: &ConnControl,
    req: Request<Incoming>,
    route: Route,
) -> Resp {
    state.counters.request();
    let at_ms = state.elapsed_ms();
    let request_id = state.next_id("req_");
    let mut entry = LogEntry {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        at_ms,
        headers: selected_headers(req.headers()),
        status: None,
        fault: None,
        request_id: request_id.clone(),
    };
    let outcome = api_outcome(state, req, route, &request_id, &mut entry.fault).await;
    if let Some(f) = &entry.fault {
        state.counters.fault(f);
    }
    match outcome {
        Outcome::Respond(resp) => {
            let status = resp.status().as_u16();
            state.counters.status(status);
            entry.status = Some(status);
            state.counters.log(entry);
            resp
        }
        Outcome::Reset { stall } => {
            state.counters.log(entry);
            if let Some(d) = stall {
                tokio::time::sleep(d).await;
            }
            control.reset_now();
            // The connection task drops this future along with the connection.
            std::future::pending().await
        }
    }
}

/// How a success is to be delivered, from a scripted entry.
#[derive(Clone, Copy)]
enum Delivery {
    Normal,
    CutBody,
    StallBody(Duration),
    StreamError(usize),
    StreamCut(usize),
    StreamStall(usize, Duration),
}

async fn api_outcome(
    state: &Arc<State>,
    req: Request<Incoming>,
    route: Route,
    request_id: &str,
    fault: &mut Option<String>,
) -> Outcome {
    use Outcome::Respond;
    let mut delivery = Delivery::Normal;
    let mut stream_error_type = None;

    // 1. Scripted responses come first, whatever else the request says.
    let scripted = req
        .headers()
        .get("x-mock-key")
        .and_then(|k| k.to_str().ok())
        .and_then(|k| {
            lock(&state.scripts)
                .get_mut(k)
                .and_then(VecDeque::pop_front)
        });
    if let Some(entry) = scripted {
        *fault = Some(format!("script_{}", entry.name()));
        match entry {
            ScriptEntry::Ok => *fault = None,
            ScriptEntry::Status {
                status,
                error_type,
                error_code,
                message,
                headers,
                body,
            } => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let (dt, dm) = default_error(status.as_u16());
                let mut resp = match body {
                    Some(b) => {
                        let mut r = Response::new(MockBody::full(b));
                        *r.status_mut() = status;
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/json"),
                        );
                        r.headers_mut().insert("request-id", hv(request_id));
                        r
                    }
                    None => error_response(
                        status,
                        error_type.as_deref().unwrap_or(dt),
                        message.as_deref().unwrap_or(dm),
                        error_code.as_deref(),
                        request_id,
                    ),
                };
                for (k, v) in headers {
                    if let (Ok(k), Ok(v)) =
                        (http::HeaderName::try_from(k), HeaderValue::try_from(v))
                    {
                        resp.headers_mut().insert(k, v);
                    }
                }
                return Respond(resp);
            }
            ScriptEntry::Html { status } => return Respond(html_response(status, request_id)),
            ScriptEntry::Reset => return Outcome::Reset { stall: None },
            ScriptEntry::Stall { ms } => {
                return Outcome::Reset {
                    stall: Some(Duration::from_millis(ms)),
                };
            }
            ScriptEntry::Delay { ms } => tokio::time::sleep(Duration::from_millis(ms)).await,
            ScriptEntry::CutBody => delivery = Delivery::CutBody,
            ScriptEntry::StallBody { ms } => {
                delivery = Delivery::StallBody(Duration::from_millis(ms))
            }
            ScriptEntry::StreamError { after, error_type } => {
                delivery = Delivery::StreamError(after);
                stream_error_type = error_type;
            }
            ScriptEntry::StreamCut { after } => delivery = Delivery::StreamCut(after),
            ScriptEntry::StreamStall { after, ms } => {
                delivery = Delivery::StreamStall(after, Duration::from_millis(ms))
            }
        }
    }

    // 2. Authentication and version, as the API checks them before the body.
    let h = req.headers();
    let key = h
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            h.get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .map(str::trim)
        .unwrap_or("")
        .to_owned();
    if key.is_empty() {
        return Respond(error_response(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
            None,
            request_id,
        ));
    }
    if !state.config.api_keys.is_empty() && !state.config.api_keys.contains(&key) {
        return Respond(error_response(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid x-api-key",
            None,
            request_id,
        ));
    }
    if !h.contains_key("anthropic-version") {
        return Respond(error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "anthropic-version: header is required",
            None,
            request_id,
        ));
    }

    // 3. Outages and random faults.
    if let Some(kind) = state.outage() {
        *fault = Some("outage".to_owned());
        return match kind {
            OutageKind::Overloaded => Respond(overloaded(request_id)),
            OutageKind::Reset => Outcome::Reset { stall: None },
        };
    }
    let f = state.config.faults;
    if f.total() > 0.0 {
        let u = lock(&state.rng).next_f64();
        let mut acc = 0.0;
        let mut hit = |p: f64| {
            acc += p;
            u < acc
        };
        let outcome = if hit(f.p529) {
            Some(("random_529", Respond(overloaded(request_id))))
        } else if hit(f.p500) {
            Some((
                "random_500",
                Respond(error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "api_error",
                    "Internal server error",
                    None,
                    request_id,
                )),
            ))
        } else if hit(f.p503) {
            Some((
                "random_503",
                Respond(error_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "api_error",
                    "Service unavailable",
                    None,
                    request_id,
                )),
            ))
        } else if hit(f.p502_html) {
            Some(("random_502_html", Respond(html_response(502, request_id))))
        } else if hit(f.p_reset) {
            Some(("random_reset", Outcome::Reset { stall: None }))
        } else if hit(f.p_stall) {
            Some((
                "random_stall",
                Outcome::Reset {
                    stall: Some(f.stall),
                },
            ))
        } else {
            None
        };
        if let Some((name, outcome)) = outcome {
            *fault = Some(name.to_owned());
            return outcome;
        }
    }

    // 4. The body: size, JSON, fields.
    let too_large = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > state.config.max_body_bytes as u64);
    if too_large {
        return Respond(html_response(413, request_id));
    }
    let body = match Limited::new(req.into_body(), state.config.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return Respond(html_response(413, request_id));
        }
        Err(_) => return Outcome::Reset { stall: None },
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return Respond(invalid(request_id, "body: Input should be a JSON object")),
        Err(e) => return Respond(invalid(request_id, &format!("body: invalid JSON: {e}"))),
    };
    if let Err(msg) = validate(&body, route) {
        return Respond(invalid(request_id, &msg));
    }
    let input_tokens = generate::estimate_input_tokens(&body);
    if route == Route::CountTokens {
        let mut r = json_response(StatusCode::OK, &json!({"input_tokens": input_tokens}));
        r.headers_mut().insert("request-id", hv(request_id));
        return Respond(r);
    }

    // 5. Rate limits, then the answer.
    let max_tokens = body["max_tokens"].as_u64().unwrap_or(1);
    let output_tokens = (state.config.output_tokens as u64).min(max_tokens).max(1) as u32;
    let decision =
        lock(&state.limiter).check(&key, input_tokens, output_tokens as u64, Instant::now());
    if let Some(secs) = decision.retry_after {
        *fault = Some("rate_limited".to_owned());
        let msg = format!(
            "This request would exceed your organization's rate limit of {} per minute. Please retry after {secs} s.",
            decision.refused_by.unwrap_or("requests"),
        );
        let mut r = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            &msg,
            None,
            request_id,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        for (k, v) in decision.headers {
            r.headers_mut().insert(k, v);
        }
        return Respond(r);
    }
    state.counters.tokens(input_tokens, output_tokens as u64);
    let latency = state.config.latency;
    if !latency.time_to_first_byte.is_zero() {
        tokio::time::sleep(latency.time_to_first_byte).await;
    }
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    let answer = Answer {
        id: rng::id("msg_", n),
        model: body["model"].as_str().unwrap_or_default().to_owned(),
        input_tokens,
        output_tokens,
        stop_reason: if (state.config.output_tokens as u64) > max_tokens {
            "max_tokens"
        } else {
            "end_turn"
        },
        words: generate::answer_words(output_tokens, n),
    };
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let mut resp = if streaming {
        stream_response(state, answer, delivery, stream_error_type, request_id)
    } else {
        if latency.tokens_per_second > 0 {
            tokio::time::sleep(Duration::from_secs_f64(
                output_tokens as f64 / latency.tokens_per_second as f64,
            ))
            .await;
        }
        message_response(answer, delivery)
    };
    let headers = resp.headers_mut();
    headers.insert("request-id", hv(request_id));
    for (k, v) in decision.headers {
        headers.insert(k, v);
    }
    Respond(resp)
}

/// Field checks, each naming the field as the API does.
fn validate(body: &Value, route: Route) -> Result<(), String> {
    match body.get("model") {
        None | Some(Value::Null) => return Err("model: Field required".into()),
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => return Err("model: Input should be a non-empty string".into()),
    }
    if route == Route::Messages {
        match body.get("max_tokens") {
            None | Some(Value::Null) => return Err("max_tokens: Field required".into()),
            Some(v) => match v.as_i64() {
                Some(n) if n >= 1 => {}
                Some(_) => {
                    return Err("max_tokens: Input should be greater than or equal to 1".into());
                }
                None => return Err("max_tokens: Input should be a valid integer".into()),
            },
        }
        if let Some(s) = body.get("stream") {
            if !s.is_boolean() {
                return Err("stream: Input should be a valid boolean".into());
            }
        }
    }
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err("messages: Field required".into()),
        Some(Value::Array(m)) => m,
        Some(_) => return Err("messages: Input should be a valid list".into()),
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        match role {
            Some("user") | Some("assistant") => {}
            None => return Err(format!("messages.{i}.role: Field required")),
            Some(_) => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
        if i == 0 && role != Some("user") {
            return Err("messages.0.role: first message must use the \"user\" role".into());
        }
        if i > 0 && messages[i - 1].get("role").and_then(Value::as_str) == role {
            return Err(format!(
                "messages.{i}.role: roles must alternate between \"user\" and \"assistant\""
            ));
        }
        match m.get("content") {
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            None | Some(Value::Null) => {
                return Err(format!("messages.{i}.content: Field required"));
            }
            Some(_) => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid string or list"
                ));
            }
        }
    }
    Ok(())
}

fn message_response(answer: Answer, delivery: Delivery) -> Resp {
    let json = Bytes::from(answer.message_json());
    let body = match delivery {
        Delivery::CutBody | Delivery::StallBody(_) => {
            let len = json.len() as u64;
            let (tx, body) = MockBody::channel(Some(len), None);
            let half = json.len() / 2;
            tokio::spawn(async move {
                let _ = tx.send(Ok(json.slice(..half))).await;
                match delivery {
                    Delivery::StallBody(d) => {
                        tokio::time::sleep(d).await;
                        let _ = tx.send(Ok(json.slice(half..))).await;
                    }
                    _ => {
                        let e =
                            io::Error::new(io::ErrorKind::ConnectionReset, "body cut by the mock");
                        let _ = tx.send(Err(e)).await;
                    }
                }
            });
            body
        }
        _ => MockBody::full(json),
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn stream_response(
    state: &Arc<State>,
    answer: Answer,
    delivery: Delivery,
    error_type: Option<String>,
    request_id: &str,
) -> Resp {
    let events = answer.sse_events(state.config.ping_every);
    let (tx, body) = MockBody::channel(None, Some(StreamGuard::new(state.counters.clone())));
    let tps = state.config.latency.tokens_per_second;
    let request_id = request_id.to_owned();
    tokio::spawn(async move {
        for (i, ev) in events.into_iter().enumerate() {
            match delivery {
                Delivery::StreamError(after) if i == after => {
                    let et = error_type.as_deref().unwrap_or("overloaded_error");
                    let (_, msg) = default_error(match et {
                        "overloaded_error" => 529,
                        "rate_limit_error" => 429,
                        _ => 500,
                    });
                    let data = json!({"type": "error", "error": {"type": et, "message": msg}, "request_id": request_id});
                    let _ = tx.send(Ok(generate::event("error", &data))).await;
                    return;
                }
                Delivery::StreamCut(after) if i == after => return,
                Delivery::StreamStall(after, d) if i == after => tokio::time::sleep(d).await,
                _ => {}
            }
            let tokens = generate::event_tokens(&ev);
            if tps > 0 && tokens > 0 {
                tokio::time::sleep(Duration::from_secs_f64(tokens as f64 / tps as f64)).await;
            }
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

fn json_response<T: serde::Serialize>(status: StatusCode, v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(MockBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(
    status: StatusCode,
    error_type: &str,
    message: &str,
    code: Option<&str>,
    request_id: &str,
) -> Resp {
    let mut r = Response::new(MockBody::full(generate::error_body(
        error_type, message, code, request_id,
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert("request-id", hv(request_id));
    r
}

fn invalid(request_id: &str, message: &str) -> Resp {
    error_response(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
        None,
        request_id,
    )
}

fn overloaded(request_id: &str) -> Resp {
    let status = StatusCode::from_u16(529).expect("529 is a valid status");
    error_response(status, "overloaded_error", "Overloaded", None, request_id)
}

fn html_response(status: u16, _request_id: &str) -> Resp {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let page = generate::html_page(
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
    );
    let mut r = Response::new(MockBody::full(page));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}
