//! The one error type of the whole stack, mirroring the official SDKs' hierarchy.
//!
//! | status | [`ApiErrorKind`] | retried by default |
//! |---|---|---|
//! | 400 | `BadRequest` | no |
//! | 401 | `Authentication` | no |
//! | 402 | `PaymentRequired` | no |
//! | 403 | `PermissionDenied` | no |
//! | 404 | `NotFound` | no |
//! | 408 | `RequestTimeout` | yes |
//! | 409 | `Conflict` | yes |
//! | 412 | `PreconditionFailed` | no |
//! | 413 | `RequestTooLarge` | no |
//! | 422 | `UnprocessableEntity` | no |
//! | 429 | `RateLimit` | yes, except spend limits |
//! | 431 | `RequestHeaderFieldsTooLarge` | no |
//! | 499 | `ClientClosedRequest` | no |
//! | 500 and other 5xx | `InternalServer` | yes |
//! | 501 | `NotImplemented` | yes |
//! | 503 | `ServiceUnavailable` | yes |
//! | 504 | `GatewayTimeout` | yes |
//! | 529 | `Overloaded` | yes |
//! | other | `Other` | no |
//!
//! `x-should-retry: true` or `false` on the response overrides the table, as in the SDKs.

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use crate::rate_limit::RateLimitHeaders;

/// A boxed error, as tower services use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong calling the Messages API.
///
/// Match on the variant for the broad class, or use the predicates ([`Error::is_retryable`],
/// [`Error::status`], [`Error::request_id`], [`Error::retry_after`]). Causes stay reachable
/// through [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The API answered with a non-2xx status.
    #[error(transparent)]
    Api(Box<ApiError>),
    /// No response: connection refused, reset, TLS or DNS failure, or the connection closed
    /// before the response (or its body) was complete.
    #[error(transparent)]
    Connection(ConnectionError),
    /// A timeout fired.
    #[error(transparent)]
    Timeout(TimeoutError),
    /// A 2xx whose body is not what the API promises.
    #[error(transparent)]
    Decode(DecodeError),
    /// Refused before sending.
    #[error(transparent)]
    InvalidRequest(InvalidRequestError),
    /// The local concurrency limit was full and load shedding is on.
    #[error(transparent)]
    LimitReached(LimitReachedError),
    /// A stream broke after its 200: an `event: error` (typed by its `error.type`), an end
    /// before `message_stop`, or an event that could not be read.
    #[error(transparent)]
    Stream(Box<StreamError>),
}

impl Error {
    /// The API error, if the API answered with an error status.
    pub fn as_api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            // A deadline that stopped retries keeps the last error it cut short.
            Error::Timeout(t) => t.last_error().and_then(Error::as_api),
            _ => None,
        }
    }

    /// The kind of API error: from the status of an error response, or from the
    /// `error.type` of an error event in a stream.
    pub fn kind(&self) -> Option<ApiErrorKind> {
        match self {
            Error::Stream(s) => s.kind(),
            _ => self.as_api().map(ApiError::kind),
        }
    }

    /// The HTTP status, if there was a response.
    pub fn status(&self) -> Option<StatusCode> {
        self.as_api().map(ApiError::status)
    }

    /// The `request-id` of the response, if there was one.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            Error::Stream(s) => s.request_id(),
            _ => self.as_api().and_then(ApiError::request_id),
        }
    }

    /// How long the server asked to wait before retrying (`retry-after-ms` or `retry-after`).
    pub fn retry_after(&self) -> Option<Duration> {
        self.as_api().and_then(ApiError::retry_after)
    }

    /// Whether the official SDKs' rules (with this crate's deliberate differences) would
    /// retry this error: `x-should-retry` decides outright; spend-limit 429s are not retried;
    /// 408, 409, 429 and every 5xx are; connection errors and attempt timeouts are.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(e) => e.is_retryable(),
            Error::Connection(_) => true,
            Error::Timeout(t) => t.kind() != TimeoutKind::Deadline,
            Error::Decode(_) | Error::InvalidRequest(_) | Error::LimitReached(_) => false,
            Error::Stream(s) => s.is_retryable(),
        }
    }

    /// How many attempts were made before this error was returned (1 without retries).
    pub fn attempts(&self) -> u32 {
        match self {
            Error::Api(e) => e.attempts,
            Error::Connection(e) => e.attempts,
            Error::Timeout(e) => e.attempts,
            Error::Decode(e) => e.attempts,
            Error::Stream(e) => e.attempts,
            Error::InvalidRequest(_) | Error::LimitReached(_) => 0,
        }
    }

    pub(crate) fn set_attempts(&mut self, n: u32) {
        match self {
            Error::Api(e) => e.attempts = n,
            Error::Connection(e) => e.attempts = n,
            Error::Timeout(e) => e.attempts = n,
            Error::Decode(e) => e.attempts = n,
            Error::Stream(e) => e.attempts = n,
            Error::InvalidRequest(_) | Error::LimitReached(_) => {}
        }
    }

    /// Turns any error a service returned into an `Error`: one of ours (even boxed by a
    /// layer in between) is kept as it is; anything else means no response was had and
    /// becomes [`Error::Connection`] with the error as its source.
    pub fn from_service_error(e: impl Into<BoxError>) -> Error {
        let boxed: BoxError = e.into();
        match boxed.downcast::<Error>() {
            Ok(ours) => *ours,
            Err(other) => {
                if other.is::<tower::timeout::error::Elapsed>() {
                    return Error::Timeout(TimeoutError::new(TimeoutKind::Attempt, None));
                }
                Error::Connection(ConnectionError::new(other))
            }
        }
    }
}

/// The kind of an API error: one per status the official SDKs special-case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ApiErrorKind {
    /// 400 `invalid_request_error`.
    BadRequest,
    /// 401 `authentication_error`.
    Authentication,
    /// 402 `billing_error`.
    PaymentRequired,
    /// 403 `permission_error`.
    PermissionDenied,
    /// 404 `not_found_error`.
    NotFound,
    /// 408.
    RequestTimeout,
    /// 409 `conflict_error`.
    Conflict,
    /// 412.
    PreconditionFailed,
    /// 413 `request_too_large` (often an HTML page from the edge).
    RequestTooLarge,
    /// 422.
    UnprocessableEntity,
    /// 429 `rate_limit_error`.
    RateLimit,
    /// 431.
    RequestHeaderFieldsTooLarge,
    /// 499.
    ClientClosedRequest,
    /// 500 `api_error` and any 5xx without a kind of its own.
    InternalServer,
    /// 501.
    NotImplemented,
    /// 503.
    ServiceUnavailable,
    /// 504 `timeout_error`.
    GatewayTimeout,
    /// 529 `overloaded_error`.
    Overloaded,
    /// Any other status (other 4xx, 3xx, 1xx).
    Other,
}

impl ApiErrorKind {
    /// The kind for an HTTP status.
    pub fn from_status(status: StatusCode) -> Self {
        use ApiErrorKind::*;
        match status.as_u16() {
            400 => BadRequest,
            401 => Authentication,
            402 => PaymentRequired,
            403 => PermissionDenied,
            404 => NotFound,
            408 => RequestTimeout,
            409 => Conflict,
            412 => PreconditionFailed,
            413 => RequestTooLarge,
            422 => UnprocessableEntity,
            429 => RateLimit,
            431 => RequestHeaderFieldsTooLarge,
            499 => ClientClosedRequest,
            501 => NotImplemented,
            503 => ServiceUnavailable,
            504 => GatewayTimeout,
            529 => Overloaded,
            500..=599 => InternalServer,
            _ => Other,
        }
    }

    /// The kind for an `error.type` (as sent in an `event: error` of a stream).
    pub fn from_error_type(error_type: &str) -> Self {
        use ApiErrorKind::*;
        match error_type {
            "invalid_request_error" => BadRequest,
            "authentication_error" => Authentication,
            "billing_error" => PaymentRequired,
            "permission_error" => PermissionDenied,
            "not_found_error" => NotFound,
            "request_too_large" => RequestTooLarge,
            "rate_limit_error" => RateLimit,
            "api_error" => InternalServer,
            "timeout_error" => GatewayTimeout,
            "overloaded_error" => Overloaded,
            _ => Other,
        }
    }

    /// Whether the status table says to retry (`x-should-retry` and spend limits aside).
    pub fn is_retryable(self) -> bool {
        use ApiErrorKind::*;
        matches!(
            self,
            RequestTimeout
                | Conflict
                | RateLimit
                | InternalServer
                | NotImplemented
                | ServiceUnavailable
                | GatewayTimeout
                | Overloaded
        )
    }

    fn describe(self) -> &'static str {
        use ApiErrorKind::*;
        match self {
            BadRequest => "bad request",
            Authentication => "authentication failed",
            PaymentRequired => "payment required",
            PermissionDenied => "permission denied",
            NotFound => "not found",
            RequestTimeout => "request timeout",
            Conflict => "conflict",
            PreconditionFailed => "precondition failed",
            RequestTooLarge => "request too large",
            UnprocessableEntity => "unprocessable entity",
            RateLimit => "rate limited",
            RequestHeaderFieldsTooLarge => "request header fields too large",
            ClientClosedRequest => "client closed request",
            InternalServer => "internal server error",
            NotImplemented => "not implemented",
            ServiceUnavailable => "service unavailable",
            GatewayTimeout => "gateway timeout",
            Overloaded => "overloaded",
            Other => "API error",
        }
    }
}

/// `error_code`s of 429s that waiting cannot fix: a spend limit stays until access resumes.
pub const SPEND_LIMIT_CODES: &[&str] = &[
    "enforced_spend_limit_reached",
    "contract_spend_limit_reached",
];

/// An error status from the API, with everything the response told about it.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub(crate) kind: ApiErrorKind,
    pub(crate) status: StatusCode,
    pub(crate) error_type: Option<String>,
    pub(crate) error_code: Option<String>,
    pub(crate) message: String,
    pub(crate) request_id: Option<String>,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) should_retry: Option<bool>,
    pub(crate) rate_limits: RateLimitHeaders,
    pub(crate) headers: HeaderMap,
    pub(crate) attempts: u32,
}

impl ApiError {
    /// The kind, from the status.
    pub fn kind(&self) -> ApiErrorKind {
        self.kind
    }
    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
    /// `error.type` of the body (an open set: new values appear), if the body was the API's.
    pub fn error_type(&self) -> Option<&str> {
        self.error_type.as_deref()
    }
    /// `error.details.error_code`, e.g. `enforced_spend_limit_reached`.
    pub fn error_code(&self) -> Option<&str> {
        self.error_code.as_deref()
    }
    /// `error.message`, or a short sanitized excerpt of a body that was not the API's JSON.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The `request-id` header, else `request_id` of the body.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    /// The server-directed wait: `retry-after-ms`, else `retry-after` in seconds, else
    /// `retry-after` as an HTTP-date; only values greater than zero count.
    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
    /// `x-should-retry: true` or `false` (exactly these lowercase values, as the SDKs read it).
    pub fn should_retry(&self) -> Option<bool> {
        self.should_retry
    }
    /// The `anthropic-ratelimit-*` headers.
    pub fn rate_limits(&self) -> &RateLimitHeaders {
        &self.rate_limits
    }
    /// All response headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
    /// Whether this is a 429 for a spend limit (no wait will fix it).
    pub fn is_spend_limit(&self) -> bool {
        self.status == StatusCode::TOO_MANY_REQUESTS
            && self
                .error_code
                .as_deref()
                .is_some_and(|c| SPEND_LIMIT_CODES.contains(&c))
    }
    /// `x-should-retry` decides outright; else spend-limit 429s are not retried; else the
    /// status table.
    pub fn is_retryable(&self) -> bool {
        match self.should_retry {
            Some(decided) => decided,
            None => !self.is_spend_limit() && self.kind.is_retryable(),
        }
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}", self.kind.describe(), self.status.as_u16())?;
        if let Some(t) = &self.error_type {
            write!(f, " {t}")?;
        }
        write!(f, "): {}", self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// What kind of connection failure, found by walking the source chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectionErrorKind {
    /// The server refused the connection.
    Refused,
    /// The connection was reset or aborted.
    Reset,
    /// The connection closed before the response (or its body) was complete.
    Closed,
    /// The TLS handshake or session failed.
    Tls,
    /// The host name did not resolve.
    Dns,
    /// Connecting took longer than the connect timeout.
    ConnectTimeout,
    /// Anything else.
    Other,
}

/// No (complete) response was had.
#[derive(Debug)]
pub struct ConnectionError {
    kind: ConnectionErrorKind,
    source: BoxError,
    pub(crate) attempts: u32,
}

impl ConnectionError {
    /// Wraps a transport error, classifying it by walking its source chain.
    pub fn new(source: impl Into<BoxError>) -> Self {
        let source = source.into();
        let kind = classify_connection(&*source);
        Self {
            kind,
            source,
            attempts: 1,
        }
    }

    /// What kind of failure it was.
    pub fn kind(&self) -> ConnectionErrorKind {
        self.kind
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ConnectionErrorKind::Refused => "connection refused",
            ConnectionErrorKind::Reset => "connection reset",
            ConnectionErrorKind::Closed => "connection closed before the response was complete",
            ConnectionErrorKind::Tls => "TLS failure",
            ConnectionErrorKind::Dns => "DNS lookup failed",
            ConnectionErrorKind::ConnectTimeout => "connect timed out",
            ConnectionErrorKind::Other => "connection error",
        };
        // The innermost cause says the most; the chain stays in `source()`.
        let mut inner: &(dyn std::error::Error + 'static) = &*self.source;
        while let Some(next) = inner.source() {
            inner = next;
        }
        write!(f, "{what}: {inner}")
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

fn classify_connection(e: &(dyn std::error::Error + 'static)) -> ConnectionErrorKind {
    use std::io::ErrorKind as Io;
    let mut kind = ConnectionErrorKind::Other;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // An io::Error's `source()` skips the error it wraps (a TLS failure arrives as
            // io::Errors wrapping the rustls error): descend through `get_ref()` instead.
            if let Some(inner) = io.get_ref() {
                let inner_kind = classify_connection(inner);
                if inner_kind != ConnectionErrorKind::Other {
                    return inner_kind;
                }
            }
            match io.kind() {
                Io::ConnectionRefused => return ConnectionErrorKind::Refused,
                Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe => {
                    return ConnectionErrorKind::Reset;
                }
                Io::TimedOut => kind = ConnectionErrorKind::ConnectTimeout,
                Io::UnexpectedEof => kind = ConnectionErrorKind::Closed,
                _ => {}
            }
        }
        if err.downcast_ref::<rustls::Error>().is_some() {
            return ConnectionErrorKind::Tls;
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                kind = ConnectionErrorKind::Closed;
            }
        }
        let text = err.to_string();
        if text.starts_with("dns error") {
            return ConnectionErrorKind::Dns;
        }
        if text.contains("connect timeout") || text.contains("HTTP connect timeout") {
            kind = ConnectionErrorKind::ConnectTimeout;
        }
        cur = err.source();
    }
    kind
}

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// One attempt (request, response and, for non-streaming calls, the body) took too long.
    Attempt,
    /// The overall deadline of the call (waits between attempts included) passed.
    Deadline,
    /// A stream went quiet for longer than the idle timeout.
    StreamIdle,
}

/// A timeout fired.
#[derive(Debug)]
pub struct TimeoutError {
    kind: TimeoutKind,
    after: Option<Duration>,
    last: Option<Box<Error>>,
    pub(crate) attempts: u32,
}

impl TimeoutError {
    /// A timeout of `kind` that fired after `after` (when known).
    pub fn new(kind: TimeoutKind, after: Option<Duration>) -> Self {
        Self {
            kind,
            after,
            last: None,
            attempts: 1,
        }
    }

    /// The deadline left only `left`, not enough to wait and retry after `last`.
    pub(crate) fn deadline_after(last: Error, left: Duration) -> Self {
        let attempts = last.attempts();
        Self {
            kind: TimeoutKind::Deadline,
            after: Some(left),
            last: Some(Box::new(last)),
            attempts,
        }
    }

    /// For a deadline that stopped retries: the last attempt's error (also its `source()`).
    pub fn last_error(&self) -> Option<&Error> {
        self.last.as_deref()
    }

    /// Which timeout fired.
    pub fn kind(&self) -> TimeoutKind {
        self.kind
    }
    /// After how long.
    pub fn after(&self) -> Option<Duration> {
        self.after
    }
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let which = match self.kind {
            TimeoutKind::Attempt => "attempt timed out",
            TimeoutKind::Deadline => "deadline exceeded",
            TimeoutKind::StreamIdle => "stream idle timeout",
        };
        match (&self.last, self.after) {
            (Some(_), Some(left)) => write!(
                f,
                "{which}: {left:?} left, not enough to retry the last error"
            ),
            (None, Some(d)) => write!(f, "{which} after {d:?}"),
            _ => f.write_str(which),
        }
    }
}

impl std::error::Error for TimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The local concurrency limit was full (load shedding).
#[derive(Debug, Clone)]
pub struct LimitReachedError {
    max: usize,
}

impl LimitReachedError {
    pub(crate) fn new(max: usize) -> Self {
        Self { max }
    }
    /// The limit that was full.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl fmt::Display for LimitReachedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "concurrency limit of {} reached: request shed", self.max)
    }
}

impl std::error::Error for LimitReachedError {}

/// A 2xx whose body is not what the API promises.
#[derive(Debug)]
pub struct DecodeError {
    message: String,
    excerpt: String,
    source: Option<BoxError>,
    pub(crate) attempts: u32,
}

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>, body: &[u8], source: Option<BoxError>) -> Self {
        Self {
            message: message.into(),
            excerpt: excerpt(body, 200),
            source,
            attempts: 1,
        }
    }
    /// A short, sanitized excerpt of the body.
    pub fn excerpt(&self) -> &str {
        &self.excerpt
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: body starts {:?}", self.message, self.excerpt)
    }
}

impl std::error::Error for DecodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A request refused before it was sent.
#[derive(Debug, Clone)]
pub struct InvalidRequestError {
    message: String,
}

impl InvalidRequestError {
    /// A refusal with this explanation.
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for InvalidRequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid request: {}", self.message)
    }
}

impl std::error::Error for InvalidRequestError {}

/// How a stream broke after its 200.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamFailure {
    /// The server sent `event: error`.
    ErrorEvent,
    /// The stream ended before `message_stop`: the answer is incomplete.
    Truncated,
    /// An event could not be read as the API's JSON.
    InvalidEvent,
    /// A line or event went past the decoder's bound.
    TooLarge,
}

/// A stream that broke after its 200.
#[derive(Debug)]
pub struct StreamError {
    failure: StreamFailure,
    kind: Option<ApiErrorKind>,
    error_type: Option<String>,
    message: String,
    request_id: Option<String>,
    after_content: bool,
    source: Option<BoxError>,
    pub(crate) attempts: u32,
}

impl StreamError {
    pub(crate) fn new(failure: StreamFailure, message: impl Into<String>) -> Self {
        Self {
            failure,
            kind: None,
            error_type: None,
            message: message.into(),
            request_id: None,
            after_content: false,
            source: None,
            attempts: 1,
        }
    }

    /// From an `event: error` with this `error.type`.
    pub(crate) fn error_event(error_type: Option<String>, message: String) -> Self {
        let mut e = Self::new(StreamFailure::ErrorEvent, message);
        e.kind = Some(
            error_type
                .as_deref()
                .map_or(ApiErrorKind::Other, ApiErrorKind::from_error_type),
        );
        e.error_type = error_type;
        e
    }

    pub(crate) fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    pub(crate) fn set_request_id(&mut self, id: Option<String>) {
        if self.request_id.is_none() {
            self.request_id = id;
        }
    }

    pub(crate) fn set_after_content(&mut self, after: bool) {
        self.after_content = after;
    }

    /// How the stream broke.
    pub fn failure(&self) -> StreamFailure {
        self.failure
    }
    /// For an error event: the kind from its `error.type` (an `overloaded_error` is
    /// [`ApiErrorKind::Overloaded`]).
    pub fn kind(&self) -> Option<ApiErrorKind> {
        self.kind
    }
    /// For an error event: its `error.type`.
    pub fn error_type(&self) -> Option<&str> {
        self.error_type.as_deref()
    }
    /// What went wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The request id of the stream's response.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }
    /// Whether content had already been handed to the caller (then it is never re-sent).
    pub fn after_content(&self) -> bool {
        self.after_content
    }
    /// Whether re-sending could help: never after content; otherwise for transient error
    /// events and cut streams.
    pub fn is_retryable(&self) -> bool {
        !self.after_content
            && match self.failure {
                StreamFailure::ErrorEvent => self.kind.is_some_and(ApiErrorKind::is_retryable),
                StreamFailure::Truncated => true,
                StreamFailure::InvalidEvent | StreamFailure::TooLarge => false,
            }
    }
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.failure, self.kind) {
            (StreamFailure::ErrorEvent, Some(kind)) => {
                write!(f, "{} (stream", kind.describe())?;
                if let Some(t) = &self.error_type {
                    write!(f, " {t}")?;
                }
                write!(f, "): {}", self.message)?;
            }
            (StreamFailure::Truncated, _) => {
                write!(f, "stream cut off before message_stop: {}", self.message)?
            }
            (StreamFailure::TooLarge, _) => write!(f, "stream event too large: {}", self.message)?,
            _ => write!(f, "invalid stream event: {}", self.message)?,
        }
        if let Some(id) = &self.request_id {
            write!(f, " [request {id}]")?;
        }
        Ok(())
    }
}

impl std::error::Error for StreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// A short, printable excerpt of a body: HTML tags removed, whitespace folded, control
/// characters dropped, at most `max` characters.
pub(crate) fn excerpt(body: &[u8], max: usize) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(max * 8)]);
    let mut out = String::new();
    let mut in_tag = false;
    let mut last_space = true;
    for c in text.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            _ if in_tag => {}
            c if c.is_whitespace() => {
                if !last_space {
                    out.push(' ');
                    last_space = true;
                }
            }
            c if c.is_control() => {}
            c => {
                out.push(c);
                last_space = false;
            }
        }
        if out.chars().count() >= max {
            break;
        }
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_sanitizes_html() {
        let page = b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\x07<h1>502</h1></body></html>";
        assert_eq!(excerpt(page, 200), "502 Bad Gateway 502");
        assert_eq!(excerpt("x".repeat(1000).as_bytes(), 10).len(), 10);
    }

    #[test]
    fn kinds_from_error_types() {
        assert_eq!(
            ApiErrorKind::from_error_type("overloaded_error"),
            ApiErrorKind::Overloaded
        );
        assert_eq!(
            ApiErrorKind::from_error_type("brand_new_error"),
            ApiErrorKind::Other
        );
    }
}
