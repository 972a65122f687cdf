//! Failures after a 200 or before sending: broken streams, undecodable bodies, refused
//! requests.

use std::fmt;
use std::sync::Arc;

use super::{ApiErrorKind, BoxError, Trail};

/// A 2xx whose body is not what the API promises.
#[derive(Debug, Clone)]
pub struct DecodeError {
    message: String,
    excerpt: String,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    pub(crate) trail: Trail,
}

impl DecodeError {
    pub(crate) fn new(message: impl Into<String>, body: &[u8], source: Option<BoxError>) -> Self {
        Self {
            message: message.into(),
            excerpt: crate::text::excerpt(body, 200),
            source: source.map(Arc::from),
            trail: Trail::default(),
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

/// How a stream broke after its 200 (private: read through `StreamError`'s predicates).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamFailure {
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
#[derive(Debug, Clone)]
pub struct StreamError {
    failure: StreamFailure,
    kind: Option<ApiErrorKind>,
    error_type: Option<String>,
    message: String,
    request_id: Option<String>,
    after_content: bool,
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    pub(crate) trail: Trail,
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
            trail: Trail::default(),
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
        self.source = Some(Arc::from(source.into()));
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

    /// The server sent `event: error` (see [`kind`](Self::kind) for its type).
    pub fn is_error_event(&self) -> bool {
        self.failure == StreamFailure::ErrorEvent
    }
    /// The stream ended before `message_stop`: the answer is incomplete.
    pub fn is_truncated(&self) -> bool {
        self.failure == StreamFailure::Truncated
    }
    /// An event could not be read as the API's JSON, or the response was no event stream.
    pub fn is_invalid_event(&self) -> bool {
        self.failure == StreamFailure::InvalidEvent
    }
    /// A line, an event or what was held back went past its bound.
    pub fn is_too_large(&self) -> bool {
        self.failure == StreamFailure::TooLarge
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

/// A call the pacer refused before sending: its predicted wait for the quota ran past its
/// deadline or the pacer's `max_wait`. Not a server 429: nothing was sent, and
/// [`retry_after`](Self::retry_after) says when the quota should take it.
#[derive(Debug, Clone)]
pub struct PacedError {
    wait: std::time::Duration,
    bucket: &'static str,
    class: String,
    pub(crate) trail: Trail,
}

impl PacedError {
    pub(crate) fn new(wait: std::time::Duration, bucket: &'static str, class: String) -> Self {
        Self {
            wait,
            bucket,
            class,
            trail: Trail {
                attempts: 0,
                earlier: None,
            },
        }
    }
    /// The predicted wait for the quota.
    pub fn retry_after(&self) -> std::time::Duration {
        self.wait
    }
    /// The bucket that set the wait (`requests`, `input tokens`, `output tokens`, or `quota`
    /// for a 429's gate).
    pub fn bucket(&self) -> &str {
        self.bucket
    }
    /// The quota's model class.
    pub fn model_class(&self) -> &str {
        &self.class
    }
}

impl fmt::Display for PacedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rate limit ({}, {}) would need a wait of {:?}, longer than the call may wait: not sent",
            self.bucket, self.class, self.wait
        )
    }
}

impl std::error::Error for PacedError {}

/// A circuit breaker refused the call: the target (a model, or a key of the caller's) has
/// been failing, and the breaker fails fast instead of adding load (see [`crate::breaker`]).
#[derive(Debug, Clone)]
pub struct CircuitOpenError {
    key: Arc<str>,
    retry_after: std::time::Duration,
    half_open: bool,
    pub(crate) trail: Trail,
}

impl CircuitOpenError {
    pub(crate) fn new(key: Arc<str>, retry_after: std::time::Duration, half_open: bool) -> Self {
        Self {
            key,
            retry_after,
            half_open,
            trail: Trail {
                attempts: 0,
                earlier: None,
            },
        }
    }
    /// The breaker's key: the model, unless the request carried a
    /// [`CircuitKey`](crate::breaker::CircuitKey).
    pub fn key(&self) -> &str {
        &self.key
    }
    /// Time until the circuit half-opens and lets probes through; zero when it is half-open
    /// already and every probe slot is taken.
    pub fn retry_after(&self) -> std::time::Duration {
        self.retry_after
    }
    /// Whether the circuit was half-open (probing) rather than open.
    pub fn is_half_open(&self) -> bool {
        self.half_open
    }
}

impl fmt::Display for CircuitOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.half_open {
            write!(
                f,
                "circuit for {:?} is half-open and its probe slots are taken",
                self.key
            )
        } else {
            write!(
                f,
                "circuit for {:?} is open: failing fast for {:.1} s more",
                self.key,
                self.retry_after.as_secs_f64()
            )
        }
    }
}

impl std::error::Error for CircuitOpenError {}
