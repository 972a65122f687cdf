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
//!
//! With the `axum` feature, `Error` is an `axum` response (`error::ErrorReply` is the same mapping
//! as a value, and `web::sse` sends it as an `event: error`). What a handler's caller gets:
//!
//! | the error | status | `error.type` | message |
//! |---|---|---|---|
//! | refused before sending; upstream 400, 404, 413, 422 | the same 4xx (400 for a local refusal) | `invalid_request_error`, `not_found_error`, `request_too_large` | the request's fault, as described |
//! | upstream 429, the pacer's refusal, shed load; a stream's `rate_limit_error` event | 429 with `Retry-After` when known | `rate_limit_error` | generic |
//! | 529, upstream 503, an open circuit; a stream's `overloaded_error` event | 503 with `Retry-After` when known | `overloaded_error` | generic |
//! | every timeout | 504 | `timeout_error` | generic |
//! | our key or account (401, 402, 403, a spend limit) | 502 | `api_error` | generic: nothing about the key or the account |
//! | other upstream failures | 502 | `api_error` | generic |

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

mod api;
#[cfg(feature = "axum")]
mod axum;
mod connection;
mod other;
mod timeout;

pub use api::{ApiError, ApiErrorKind, SPEND_LIMIT_CODES};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use axum::ErrorReply;
pub use connection::ConnectionError;
pub(crate) use other::StreamFailure;
pub use other::{CircuitOpenError, DecodeError, InvalidRequestError, PacedError, StreamError};
pub use timeout::{LimitReachedError, TimeoutError, TimeoutKind};

/// A boxed error, as tower services use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything that can go wrong calling the Messages API.
///
/// Match on the variant for the broad class, or use the predicates ([`Error::is_retryable`],
/// [`Error::status`], [`Error::request_id`], [`Error::retry_after`]). Causes stay reachable
/// through [`std::error::Error::source`]. Cloning is cheap: causes are shared.
///
/// A call that took several attempts returns the last attempt's error; what the earlier ones
/// met is in [`Error::earlier_attempts`].
#[derive(Debug, Clone, thiserror::Error)]
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
    /// The local pacer refused the call before sending: the quota could not take it within
    /// the call's deadline or the pacer's `max_wait` (see [`crate::pacing`]).
    #[error(transparent)]
    Paced(PacedError),
    /// A circuit breaker refused the call without sending it: the target has been failing
    /// (see [`crate::breaker`]).
    #[error(transparent)]
    CircuitOpen(CircuitOpenError),
}

/// What a call's attempts came to: how many were made, and the errors of those before the
/// last (kept by the retry layer, in order).
#[derive(Debug, Clone)]
pub(crate) struct Trail {
    pub(crate) attempts: u32,
    pub(crate) earlier: Option<Arc<[Error]>>,
}

impl Default for Trail {
    fn default() -> Self {
        Self {
            attempts: 1,
            earlier: None,
        }
    }
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
        match self {
            Error::Paced(p) => Some(p.retry_after()),
            Error::CircuitOpen(c) => Some(c.retry_after()),
            _ => self.as_api().and_then(ApiError::retry_after),
        }
    }

    /// Whether the official SDKs' rules (with this crate's deliberate differences) would
    /// retry this error: `x-should-retry` decides outright; spend-limit 429s are not retried;
    /// 408, 409, 429 and every 5xx are; connection errors and attempt timeouts are.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Api(e) => e.is_retryable(),
            Error::Connection(_) => true,
            Error::Timeout(t) => t.kind() != TimeoutKind::Deadline,
            Error::Decode(_)
            | Error::InvalidRequest(_)
            | Error::LimitReached(_)
            | Error::Paced(_)
            | Error::CircuitOpen(_) => false,
            Error::Stream(s) => s.is_retryable(),
        }
    }

    /// Whether this error says the *service* is unhealthy, as a circuit breaker counts it: a
    /// 529 or any 5xx, a connection error (but an HTTP/2 stream the server refused unprocessed),
    /// an attempt timeout (or a stream that stalled or
    /// broke with an overloaded or server error event). Not 4xx, not 429 (rate limits are the
    /// pacer's business), not a refusal made locally. An open circuit is not itself counted.
    pub fn is_unhealthy(&self) -> bool {
        match self {
            Error::Api(e) => e.status().is_server_error() || e.kind() == ApiErrorKind::Overloaded,
            // A refused HTTP/2 stream was never processed: flow control, not ill health.
            Error::Connection(c) => !c.is_stream_refused(),
            Error::Timeout(t) => t.kind() != TimeoutKind::Deadline,
            Error::Stream(s) => {
                s.is_truncated()
                    || s.kind().is_some_and(|k| {
                        matches!(
                            k,
                            ApiErrorKind::Overloaded
                                | ApiErrorKind::InternalServer
                                | ApiErrorKind::ServiceUnavailable
                                | ApiErrorKind::GatewayTimeout
                        )
                    })
            }
            Error::Decode(_)
            | Error::InvalidRequest(_)
            | Error::LimitReached(_)
            | Error::Paced(_)
            | Error::CircuitOpen(_) => false,
        }
    }

    /// Whether the caller must change the request (or its key, or its account) before trying
    /// again: refused locally, or a 4xx other than 408, 409 and 429.
    pub fn is_caller_error(&self) -> bool {
        match self {
            Error::InvalidRequest(_) => true,
            Error::Api(e) => {
                let s = e.status();
                s.is_client_error() && !matches!(s.as_u16(), 408 | 409 | 429)
            }
            _ => false,
        }
    }

    /// The error's class, as a short stable name: `api`, `connection`, `timeout`, `decode`,
    /// `invalid_request`, `limit_reached`, `stream`, `paced`, `circuit_open` (for logs,
    /// metrics and stored records).
    pub fn class(&self) -> &'static str {
        match self {
            Error::Api(_) => "api",
            Error::Connection(_) => "connection",
            Error::Timeout(_) => "timeout",
            Error::Decode(_) => "decode",
            Error::InvalidRequest(_) => "invalid_request",
            Error::LimitReached(_) => "limit_reached",
            Error::Stream(_) => "stream",
            Error::Paced(_) => "paced",
            Error::CircuitOpen(_) => "circuit_open",
        }
    }

    /// How many attempts were made before this error was returned (1 without retries, 0 when
    /// nothing was sent).
    pub fn attempts(&self) -> u32 {
        self.trail().map_or(0, |t| t.attempts)
    }

    /// The errors of the attempts before the last, oldest first (empty without retries):
    /// e.g. the 429s a call met before the 529 it returns.
    pub fn earlier_attempts(&self) -> &[Error] {
        self.trail()
            .and_then(|t| t.earlier.as_deref())
            .unwrap_or(&[])
    }

    fn trail(&self) -> Option<&Trail> {
        match self {
            Error::Api(e) => Some(&e.trail),
            Error::Connection(e) => Some(&e.trail),
            Error::Timeout(e) => Some(&e.trail),
            Error::Decode(e) => Some(&e.trail),
            Error::Stream(e) => Some(&e.trail),
            Error::Paced(e) => Some(&e.trail),
            Error::CircuitOpen(e) => Some(&e.trail),
            Error::InvalidRequest(_) | Error::LimitReached(_) => None,
        }
    }

    fn trail_mut(&mut self) -> Option<&mut Trail> {
        match self {
            Error::Api(e) => Some(&mut e.trail),
            Error::Connection(e) => Some(&mut e.trail),
            Error::Timeout(e) => Some(&mut e.trail),
            Error::Decode(e) => Some(&mut e.trail),
            Error::Stream(e) => Some(&mut e.trail),
            Error::Paced(e) => Some(&mut e.trail),
            Error::CircuitOpen(e) => Some(&mut e.trail),
            Error::InvalidRequest(_) | Error::LimitReached(_) => None,
        }
    }

    /// Records that this error ends a call of `attempts` attempts, after `earlier`.
    pub(crate) fn set_trail(&mut self, attempts: u32, earlier: &[Error]) {
        if let Some(t) = self.trail_mut() {
            t.attempts = attempts;
            t.earlier = (!earlier.is_empty()).then(|| Arc::from(earlier));
        }
    }

    /// Moves the attempt record out (leaving a fresh one).
    pub(crate) fn take_trail(&mut self) -> Trail {
        self.trail_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Turns any error a service returned into an `Error`: one of ours is kept as it is, even
    /// when a layer in between boxed it or wrapped it in an error of its own (found by walking
    /// the `source()` chain, as `tonic::Status` does, so a `tower::buffer` or a user's error
    /// type cannot turn a refused request into a retryable connection error); anything else
    /// means no response was had and becomes [`Error::Connection`] with the error as its
    /// source. tower's own timeout (`tower::timeout::error::Elapsed`) becomes an attempt
    /// timeout.
    pub fn from_service_error(e: impl Into<BoxError>) -> Error {
        let boxed: BoxError = e.into();
        let other = match boxed.downcast::<Error>() {
            Ok(ours) => return *ours,
            Err(other) => other,
        };
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&*other);
        while let Some(err) = cur {
            if let Some(ours) = err.downcast_ref::<Error>() {
                return ours.clone();
            }
            if err.is::<tower::timeout::error::Elapsed>() {
                return Error::Timeout(TimeoutError::new(TimeoutKind::Attempt, None));
            }
            cur = err.source();
        }
        Error::Connection(ConnectionError::new(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A user's own error type that wraps ours as its source.
    #[derive(Debug)]
    struct Wrapper(Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("my layer failed")
        }
    }
    impl std::error::Error for Wrapper {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn our_error_is_found_anywhere_in_the_source_chain() {
        let refused = Error::InvalidRequest(InvalidRequestError::new("no"));
        let found = Error::from_service_error(Wrapper(refused.clone()));
        assert!(matches!(found, Error::InvalidRequest(_)), "{found:?}");
        assert!(!found.is_retryable());
        // Two levels deep, boxed in between.
        let inner: BoxError = Box::new(Wrapper(refused));
        let outer = ConnectionError::new(inner);
        let found = Error::from_service_error(Wrapper(Error::Connection(outer)));
        assert!(
            matches!(found, Error::Connection(_)),
            "the outermost of ours wins"
        );
        // Not ours at all: a connection error keeping the cause.
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        match Error::from_service_error(io) {
            Error::Connection(c) => assert!(c.is_refused()),
            e => panic!("{e:?}"),
        }
    }
}
