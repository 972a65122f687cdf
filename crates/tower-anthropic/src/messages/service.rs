//! The typed service: a request in, a decoded answer (or a [`MessageStream`]) out.

use std::future::Future;
use std::ops::Deref;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http::{HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tower::{Service, ServiceExt};

use super::types::{CountTokensRequest, CreateMessageRequest, Message, TokenCount};
use crate::body::{AtBound, Buffered, Collect, DEFAULT_MAX_RESPONSE_BODY, ResponseMode};
use crate::classify;
use crate::error::{BoxError, DecodeError, Error, InvalidRequestError};
use crate::extensions::RequestCost;
use crate::fallback::FallbackDepth;
use crate::pacing::Reservation;
use crate::rate_limit::RateLimitHeaders;
use crate::retry::Attempts;
use crate::stream::{Connect, MessageStream};
use crate::transport::{Endpoint, RequestBody};

/// Most JSON values a response body may hold: a `Message` has a few hundred; a body of
/// millions of tiny values would cost tens of times its size once decoded.
pub(crate) const MAX_JSON_VALUES: usize = 1_000_000;

/// Most JSON values one stream event may hold.
pub(crate) const MAX_EVENT_JSON_VALUES: usize = 100_000;

/// Default time a stream may take to its first content.
pub(crate) const DEFAULT_FIRST_CONTENT_TIMEOUT: Duration = Duration::from_secs(120);

/// A decoded response with what its headers said.
#[derive(Debug, Clone)]
pub struct ApiResponse<T> {
    value: T,
    headers: HeaderMap,
    attempts: u32,
    fallback_depth: u32,
    degraded: Option<Error>,
}

/// Serializes as the answer itself (a `Message` as the API's JSON): what a handler returns.
impl<T: serde::Serialize> serde::Serialize for ApiResponse<T> {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        self.value.serialize(s)
    }
}

impl<T> ApiResponse<T> {
    /// A stand-in answer for a call that failed with `error`: a cached or canned value, as
    /// [`DegradeLayer`](crate::degrade::DegradeLayer) makes it. [`is_degraded`](Self::is_degraded)
    /// is true and [`degraded_by`](Self::degraded_by) keeps the error; there are no headers.
    pub fn degraded(value: T, error: Error) -> Self {
        Self {
            value,
            headers: HeaderMap::new(),
            attempts: error.attempts(),
            fallback_depth: 0,
            degraded: Some(error),
        }
    }
    /// Whether this is a stand-in answer rather than the API's.
    pub fn is_degraded(&self) -> bool {
        self.degraded.is_some()
    }
    /// For a stand-in answer, the error it stands in for.
    pub fn degraded_by(&self) -> Option<&Error> {
        self.degraded.as_ref()
    }
    /// How far down its fallback chain the call was answered: 0 for the requested model, 1
    /// for the first fallback model... (see [`crate::fallback`]).
    pub fn fallback_depth(&self) -> u32 {
        self.fallback_depth
    }
    /// The `request-id` header.
    pub fn request_id(&self) -> Option<&str> {
        classify::headers::request_id(&self.headers)
    }
    /// The `anthropic-ratelimit-*` headers (parsed on each call).
    pub fn rate_limits(&self) -> RateLimitHeaders {
        RateLimitHeaders::from_headers(&self.headers)
    }
    /// All response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// How many attempts the call took (1 when the first succeeded).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
    /// The decoded value.
    pub fn into_inner(self) -> T {
        self.value
    }
}

impl<T> Deref for ApiResponse<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

/// The typed Messages service over any HTTP service to the API.
///
/// It serves three requests, each the one place its JSON is made and its path known:
///
/// | request | answer |
/// |---|---|
/// | [`CreateMessageRequest`] | [`ApiResponse<Message>`] |
/// | [`CountTokensRequest`] | [`ApiResponse<TokenCount>`] |
/// | [`StreamRequest`] | [`MessageStream`] |
///
/// The inner service gets complete `http::Request`s (URL, key, version, JSON body) and may be
/// any stack of layers over any HTTP client whose error converts into a `BoxError`; when it
/// has no [`ClassifyLayer`] an error status is still turned into a typed error here. When a
/// [`RetryLayer`] is in the stack, a stream that fails before its first content is re-sent
/// under that layer's own policy and budget.
///
/// The inherent methods ([`create`](Self::create), [`stream`](Self::stream),
/// [`count_tokens`](Self::count_tokens)) call a clone, so no `ready()` is needed:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use anthropic_mock::{MockConfig, MockServer};
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client as HyperClient;
/// use hyper_util::rt::TokioExecutor;
/// use tower::ServiceBuilder;
/// use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
/// use tower_anthropic::retry::RetryPolicy;
/// use tower_anthropic::transport::{ApiKey, Endpoint};
/// use tower_anthropic::ServiceBuilderExt;
///
/// let mock = MockServer::start(MockConfig::default()).await?;
/// let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let stack = ServiceBuilder::new()
///     .retry_api_errors(RetryPolicy::new())
///     .classify_responses()
///     .service(http);
/// let endpoint = Endpoint::new(&mock.url(), ApiKey::new("sk-ant-test").unwrap())?;
/// let messages = MessagesService::new(stack, endpoint);
///
/// let req = CreateMessageRequest::new("claude-sonnet-4-6", 64).user("Hello");
/// let whole = messages.create(req.clone()).await?;
/// let streamed = messages.stream(req).await?.final_message().await?;
/// assert!(!whole.text().is_empty() && !streamed.text().is_empty());
/// assert_eq!(whole.stop_reason, streamed.stop_reason);
/// # Ok(()) }
/// ```
///
/// [`ClassifyLayer`]: crate::classify::ClassifyLayer
/// [`RetryLayer`]: crate::retry::RetryLayer
#[derive(Debug, Clone)]
pub struct MessagesService<S> {
    inner: S,
    endpoint: Arc<Endpoint>,
    max_body: usize,
    long_request_guard: bool,
    resend_streams: bool,
    first_content: Option<Duration>,
}

impl<S> MessagesService<S> {
    /// Sends through `inner` to `endpoint`.
    pub fn new(inner: S, endpoint: Endpoint) -> Self {
        Self {
            inner,
            endpoint: Arc::new(endpoint),
            max_body: DEFAULT_MAX_RESPONSE_BODY,
            long_request_guard: false,
            resend_streams: true,
            first_content: Some(DEFAULT_FIRST_CONTENT_TIMEOUT),
        }
    }
    /// Reads at most `bytes` of a successful response body, when no layer below (the attempt
    /// timeout) has read it already under its own bound.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
    /// Refuse non-streaming calls whose `max_tokens` would take longer than 10 minutes
    /// (`3600 * max_tokens / 128000` s), as the SDKs do when no explicit timeout is set.
    pub fn long_request_guard(mut self, on: bool) -> Self {
        self.long_request_guard = on;
        self
    }
    /// Whether a stream that fails before its first content is re-sent under the stack's
    /// retry policy (default: yes; needs a [`RetryLayer`](crate::retry::RetryLayer)).
    pub fn resend_streams_before_content(mut self, on: bool) -> Self {
        self.resend_streams = on;
        self
    }
    /// How long a stream may go without content (its first content delta; pings and other
    /// events are not progress) before the attempt fails with a `FirstContent` timeout and,
    /// under a retry layer, is re-sent. Default 120 s; `None`: no limit.
    pub fn first_content_timeout(mut self, limit: Option<Duration>) -> Self {
        self.first_content = limit;
        self
    }
    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// The same calls (endpoint and settings) over `f(inner)`: a layer added under the typed
    /// calls, for example one that puts a shorter [`Deadline`](crate::extensions::Deadline)
    /// in each request of one caller.
    pub fn map_inner<T>(self, f: impl FnOnce(S) -> T) -> MessagesService<T> {
        MessagesService {
            inner: f(self.inner),
            endpoint: self.endpoint,
            max_body: self.max_body,
            long_request_guard: self.long_request_guard,
            resend_streams: self.resend_streams,
            first_content: self.first_content,
        }
    }

    /// The bound on a successful body read here.
    pub(crate) fn max_body(&self) -> usize {
        self.max_body
    }

    crate::macros::define_inner_service_accessors!();

    /// The one place a request becomes an `http::Request`: JSON, path, headers, and for a
    /// stream the `Accept` header and the streaming mode the layers read.
    fn encode<R: Serialize>(
        &self,
        path: &str,
        req: &R,
        mode: ResponseMode,
        paced: Option<(&str, u32)>,
    ) -> Result<Request<RequestBody>, Error> {
        let json = to_json(req)?;
        let cost = paced.map(|(model, max_tokens)| RequestCost {
            model: Arc::from(model),
            max_tokens,
            body: json.clone(),
        });
        Ok(http_request(&self.endpoint, path, json, mode, cost))
    }
}

/// A request's JSON body.
fn to_json<R: Serialize>(req: &R) -> Result<Bytes, Error> {
    let json = serde_json::to_vec(req).map_err(|e| {
        Error::InvalidRequest(InvalidRequestError::new(format!(
            "cannot serialize the request: {e}"
        )))
    })?;
    Ok(Bytes::from(json))
}

/// The HTTP request of an encoded call: its JSON, what the pacer reads of it, and for a stream
/// the `accept` header and the mode.
fn http_request(
    endpoint: &Endpoint,
    path: &str,
    json: Bytes,
    mode: ResponseMode,
    cost: Option<RequestCost>,
) -> Request<RequestBody> {
    let mut http_req = endpoint.post(path, json);
    if let Some(cost) = cost {
        http_req.extensions_mut().insert(cost);
    }
    if mode == ResponseMode::Streaming {
        http_req.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/event-stream"),
        );
        http_req.extensions_mut().insert(ResponseMode::Streaming);
    }
    http_req
}

impl<S, RB> MessagesService<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    /// Sends `req` as a stream through this service's stack, which must be ready; the stack
    /// is then kept for re-sends before the first content.
    fn into_stream(mut self, mut req: CreateMessageRequest) -> ResponseFuture<MessageStream> {
        req.stream = Some(true);
        const PATH: &str = <CreateMessageRequest as ApiRequest>::PATH;
        let json = match to_json(&req) {
            Ok(json) => json,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let cost = RequestCost {
            model: Arc::from(req.model.as_str()),
            max_tokens: req.max_tokens,
            body: json.clone(),
        };
        let (endpoint, mode) = (self.endpoint.clone(), ResponseMode::Streaming);
        let first = http_request(&endpoint, PATH, json.clone(), mode, Some(cost.clone()));
        let first = erase(self.inner.call(first));
        // Re-sends make the request again from the same JSON (shared bytes: no copy kept of
        // the request) and go through the same stack.
        let svc = self.inner;
        let connect: Connect = Box::new(move |index, log| {
            let mut req = http_request(&endpoint, PATH, json.clone(), mode, Some(cost.clone()));
            req.extensions_mut().insert(index);
            req.extensions_mut().insert(log);
            erase(svc.clone().oneshot(req))
        });
        let resend = self.resend_streams;
        let limit = self.first_content;
        let span = chat_span(&req.model, req.max_tokens, true);
        Box::pin(async move {
            // The span covers the call up to the stream's start (its events are the caller's).
            // The stream is made once the answer is in, so this future holds only the request
            // while it is in flight.
            let first = tracing::Instrument::instrument(first, span.clone()).await;
            let result = span.in_scope(|| MessageStream::started(first, connect, resend, limit));
            match &result {
                Ok(s) => record_attempts(&span, s.attempts(), s.request_id()),
                Err(e) => record_error(&span, e),
            }
            result
        })
    }

    /// `POST /v1/messages`: a whole `Message`, or a typed error. The future does not borrow
    /// the service.
    pub fn create(
        &self,
        req: CreateMessageRequest,
    ) -> impl Future<Output = Result<ApiResponse<Message>, Error>> + Send + 'static + use<S, RB>
    {
        // Not an `async fn`: its argument would take its room in the future twice. As
        // `oneshot`, with the call's future awaited in place (not boxed).
        let mut svc = self.clone();
        async move {
            std::future::poll_fn(|cx| svc.inner.poll_ready(cx))
                .await
                .map_err(Error::from_service_error)?;
            svc.send(req).await
        }
    }

    /// `POST /v1/messages` with `stream: true`: typed events as they arrive; see
    /// [`crate::stream`]. The future does not borrow the service.
    pub fn stream(
        &self,
        req: CreateMessageRequest,
    ) -> impl Future<Output = Result<MessageStream, Error>> + Send + 'static + use<S, RB> {
        // As `oneshot`, but the readied clone is then kept for re-sends (no second clone).
        // Not an `async fn`: its argument would take its room in the future twice.
        let mut svc = self.clone();
        async move {
            std::future::poll_fn(|cx| svc.inner.poll_ready(cx))
                .await
                .map_err(Error::from_service_error)?;
            svc.into_stream(req).await
        }
    }

    /// `POST /v1/messages/count_tokens`.
    pub async fn count_tokens(
        &self,
        req: impl Into<CountTokensRequest>,
    ) -> Result<ApiResponse<TokenCount>, Error> {
        self.clone().oneshot(req.into()).await
    }
}

/// The future of [`MessagesService`].
pub type ResponseFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

/// Longest expected generation time of a non-streaming call without an explicit timeout.
const MAX_NON_STREAMING: f64 = 600.0;

/// The SDKs' guard: `3600 * max_tokens / 128000` seconds must not exceed 10 minutes.
fn check_expected_time(max_tokens: u32) -> Result<(), Error> {
    let expected = 3600.0 * f64::from(max_tokens) / 128_000.0;
    if expected > MAX_NON_STREAMING {
        let msg = format!(
            "max_tokens {max_tokens} may take about {:.0} minutes, longer than the 10-minute \
             limit for a non-streaming call: stream it, or set an explicit timeout",
            expected / 60.0
        );
        return Err(Error::InvalidRequest(InvalidRequestError::new(msg)));
    }
    Ok(())
}

/// Reads and decodes a response; a non-2xx becomes a typed error even without the classify
/// layer. A body the attempt layer already read (marked [`Buffered`]) is taken as it is.
async fn read_response<RB, R>(
    resp: Response<RB>,
    max_body: usize,
) -> Result<ApiResponse<R::Output>, Error>
where
    RB: Body,
    RB::Error: Into<BoxError>,
    R: ApiRequest,
{
    let (parts, body) = resp.into_parts();
    if !parts.status.is_success() {
        // Boxed: the error's reading would otherwise size every call's future (about half
        // of it) for a path few calls take.
        return Err(Box::pin(classify::read_api_error(parts, body)).await);
    }
    // A body the attempt already read (within its bound) is taken whole.
    let bound = if parts.extensions.get::<Buffered>().is_some() {
        usize::MAX
    } else {
        max_body
    };
    let bytes = Collect::new(body, bound, AtBound::Fail).await?;
    let value: R::Output = decode(&bytes)?;
    if let (Some(settlement), Some((input, output))) =
        (parts.extensions.get::<Reservation>(), R::usage(&value))
    {
        settlement.settle(input, output);
    }
    let attempts = parts.extensions.get::<Attempts>().map_or(1, |a| a.0);
    let fallback_depth = parts.extensions.get::<FallbackDepth>().map_or(0, |d| d.0);
    Ok(ApiResponse {
        value,
        headers: parts.headers,
        attempts,
        fallback_depth,
        degraded: None,
    })
}

/// Decodes a 2xx body: bounded in what it may cost (JSON values counted first), a typed
/// error for anything that is not a `T`.
pub(crate) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if crate::text::too_many_json_values(bytes, MAX_JSON_VALUES) {
        let msg = format!(
            "the response body holds more than {MAX_JSON_VALUES} JSON values (refused before decoding)"
        );
        return Err(Error::Decode(DecodeError::new(msg, bytes, None)));
    }
    serde_json::from_slice(bytes).map_err(|e| {
        let what = std::any::type_name::<T>()
            .rsplit("::")
            .next()
            .unwrap_or("value");
        Error::Decode(DecodeError::new(
            format!("the response body is not a {what}"),
            bytes,
            Some(Box::new(e)),
        ))
    })
}

/// A request body of the Messages API answered with JSON: where it goes, what comes back,
/// and what is checked before it is sent. Implemented by [`CreateMessageRequest`] and
/// [`CountTokensRequest`]; streams go as a [`StreamRequest`].
pub trait ApiRequest: Serialize + sealed::Sealed {
    /// The decoded response.
    type Output: DeserializeOwned + Send + 'static;
    /// The path under the base URL.
    const PATH: &'static str;
    /// Refuses a request before sending (`long_request_guard` as configured).
    fn check(&self, _long_request_guard: bool) -> Result<(), Error> {
        Ok(())
    }
    /// The model and `max_tokens`, for requests the pacer counts against a quota.
    #[doc(hidden)]
    fn paced(&self) -> Option<(&str, u32)> {
        None
    }
    /// Input and output tokens an answer reports, to settle its quota reservation.
    #[doc(hidden)]
    fn usage(_output: &Self::Output) -> Option<(u64, u64)> {
        None
    }
    /// Records what an answer says on the call's span (GenAI conventions).
    #[doc(hidden)]
    fn record(_output: &Self::Output, _span: &tracing::Span) {}
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::CreateMessageRequest {}
    impl Sealed for super::CountTokensRequest {}
}

impl ApiRequest for CreateMessageRequest {
    type Output = Message;
    const PATH: &'static str = "/v1/messages";

    fn check(&self, long_request_guard: bool) -> Result<(), Error> {
        if self.stream == Some(true) {
            let e = InvalidRequestError::new(
                "`stream: true` needs the streaming call; `create` returns a whole Message",
            );
            return Err(Error::InvalidRequest(e));
        }
        if long_request_guard {
            check_expected_time(self.max_tokens)?;
        }
        Ok(())
    }

    fn paced(&self) -> Option<(&str, u32)> {
        Some((&self.model, self.max_tokens))
    }

    fn usage(message: &Message) -> Option<(u64, u64)> {
        Some((message.usage.input_tokens, message.usage.output_tokens))
    }

    fn record(m: &Message, span: &tracing::Span) {
        span.record("gen_ai.response.id", m.id.as_str());
        span.record("gen_ai.response.model", m.model.as_str());
        if let Some(r) = &m.stop_reason {
            let reason = serde_json::to_value(r).ok();
            let reason = reason
                .as_ref()
                .and_then(serde_json::Value::as_str)
                .unwrap_or("other");
            span.record("gen_ai.response.finish_reasons", reason);
        }
        span.record("gen_ai.usage.input_tokens", m.usage.input_tokens);
        span.record("gen_ai.usage.output_tokens", m.usage.output_tokens);
        if let Some(n) = m.usage.cache_read_input_tokens {
            span.record("gen_ai.usage.cache_read.input_tokens", n);
        }
        if let Some(n) = m.usage.cache_creation_input_tokens {
            span.record("gen_ai.usage.cache_creation.input_tokens", n);
        }
    }
}

/// The span of one call, named `chat` with `otel.name` = `chat {model}`, its fields those of
/// the OpenTelemetry GenAI semantic conventions (never the prompt or the answer).
pub(crate) fn chat_span(model: &str, max_tokens: u32, streaming: bool) -> tracing::Span {
    use tracing::field::Empty;
    tracing::info_span!(
        "chat",
        otel.name = %format_args!("chat {model}"),
        gen_ai.provider.name = "anthropic",
        gen_ai.operation.name = "chat",
        gen_ai.request.model = model,
        gen_ai.request.max_tokens = max_tokens,
        gen_ai.request.stream = streaming,
        gen_ai.response.id = Empty,
        gen_ai.response.model = Empty,
        gen_ai.response.finish_reasons = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        gen_ai.usage.cache_read.input_tokens = Empty,
        gen_ai.usage.cache_creation.input_tokens = Empty,
        error.type = Empty,
        anthropic.request_id = Empty,
        anthropic.attempts = Empty,
    )
}

/// Records the end of a call on its span.
fn record_end<T>(span: &tracing::Span, result: &Result<ApiResponse<T>, Error>) {
    match result {
        Ok(r) => record_attempts(span, r.attempts(), r.request_id()),
        Err(e) => record_error(span, e),
    }
}

/// Records how many attempts a call took and its request id on its span.
fn record_attempts(span: &tracing::Span, attempts: u32, request_id: Option<&str>) {
    span.record("anthropic.attempts", attempts);
    if let Some(id) = request_id {
        span.record("anthropic.request_id", id);
    }
}

/// Records a failed call on its span: the error's type, its attempts and request id.
fn record_error(span: &tracing::Span, e: &Error) {
    span.record("error.type", error_type(e).as_str());
    record_attempts(span, e.attempts(), e.request_id());
}

/// The `error.type` of a failed call: the API's kind, or the error's class.
fn error_type(e: &Error) -> String {
    e.kind()
        .map_or_else(|| e.class().to_owned(), |k| format!("{k:?}"))
}

impl ApiRequest for CountTokensRequest {
    type Output = TokenCount;
    const PATH: &'static str = "/v1/messages/count_tokens";
}

/// A [`CreateMessageRequest`] to be answered as a stream of events (`stream: true` is set
/// when it is sent). [`MessagesService`] answers it with a [`MessageStream`].
#[derive(Debug, Clone, PartialEq)]
pub struct StreamRequest(pub CreateMessageRequest);

impl From<CreateMessageRequest> for StreamRequest {
    fn from(req: CreateMessageRequest) -> Self {
        Self(req)
    }
}

impl<S, RB, R> Service<R> for MessagesService<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
    R: ApiRequest,
{
    type Response = ApiResponse<R::Output>;
    type Error = Error;
    type Future = ResponseFuture<ApiResponse<R::Output>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, req: R) -> Self::Future {
        Box::pin(self.send(req))
    }
}

impl<S, RB> MessagesService<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    /// Sends `req` through the inner service, which must be ready: the call's future, not
    /// boxed (the `Service` impl boxes it; [`create`](Self::create) awaits it in place).
    fn send<R: ApiRequest>(
        &mut self,
        req: R,
    ) -> impl Future<Output = Result<ApiResponse<R::Output>, Error>> + Send + 'static + use<S, RB, R>
    {
        let sent = req
            .check(self.long_request_guard)
            .and_then(|()| self.encode(R::PATH, &req, ResponseMode::Buffered, req.paced()))
            .map(|http_req| {
                let span = req
                    .paced()
                    .map(|(model, max_tokens)| chat_span(model, max_tokens, false));
                // The model's name for the metrics, shared with the pacer's cost (no copy).
                let model = http_req
                    .extensions()
                    .get::<RequestCost>()
                    .map(|c| c.model.clone());
                // The inner service was made ready: call it now, await later.
                let call = {
                    let _entered = span.as_ref().map(tracing::Span::enter);
                    self.inner.call(http_req)
                };
                (call, span, model)
            });
        let max_body = self.max_body;
        async move {
            let (call, span, model) = sent?;
            // The answer's future is made where it is awaited, not captured: a captured
            // future would take its room in the call's future twice.
            match (span, model) {
                (Some(span), Some(model)) => {
                    let _in_flight = crate::metrics::InFlight::start();
                    let started = crate::metrics::RECORDS.then(tokio::time::Instant::now);
                    let fut = async move {
                        let resp = call.await.map_err(Error::from_service_error)?;
                        read_response::<_, R>(resp, max_body).await
                    };
                    let result = tracing::Instrument::instrument(fut, span.clone()).await;
                    // Nothing to record on a span no subscriber wants (and the finish
                    // reason's text costs an allocation).
                    if !span.is_disabled() {
                        if let Ok(r) = &result {
                            R::record(r, &span);
                        }
                        record_end(&span, &result);
                    }
                    if let Some(started) = started {
                        let error = result.as_ref().err().map(error_type);
                        let usage = result.as_ref().ok().and_then(|r| R::usage(r));
                        let took = started.elapsed();
                        crate::metrics::call_finished(&model, took, error.as_deref(), usage);
                    }
                    result
                }
                _ => {
                    let resp = call.await.map_err(Error::from_service_error)?;
                    read_response::<_, R>(resp, max_body).await
                }
            }
        }
    }
}

impl<S, RB> Service<StreamRequest> for MessagesService<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    type Response = MessageStream;
    type Error = Error;
    type Future = ResponseFuture<MessageStream>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, StreamRequest(req): StreamRequest) -> Self::Future {
        // The readied service goes with the call (and its re-sends); a clone stays, to be
        // readied for the next.
        let fresh = self.inner.clone();
        let ready = MessagesService {
            inner: std::mem::replace(&mut self.inner, fresh),
            endpoint: self.endpoint.clone(),
            ..*self
        };
        ready.into_stream(req)
    }
}

/// A response future of any stack, its body boxed, so one [`MessageStream`] type serves every
/// stack (a user stores it, passes it between tasks, without naming the stack's types).
fn erase<F, RB, E>(
    fut: F,
) -> Pin<Box<dyn Future<Output = Result<Response<crate::body::ResponseBody>, Error>> + Send>>
where
    F: Future<Output = Result<Response<RB>, E>> + Send + 'static,
    E: Into<BoxError>,
    RB: Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<BoxError>,
{
    Box::pin(async move {
        let resp = fut.await.map_err(Error::from_service_error)?;
        Ok(resp.map(|b| {
            b.map_frame(|f| f.map_data(|mut d| d.copy_to_bytes(d.remaining())))
                .map_err(Error::from_service_error)
                .boxed_unsync()
        }))
    })
}
