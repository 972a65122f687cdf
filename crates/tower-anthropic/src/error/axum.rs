//! `impl IntoResponse for Error` (feature `axum`); the mapping is in the [`error`](super)
//! module docs.

use axum_core::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use super::{ApiErrorKind, Error};

impl Error {
    /// The status, `error.type`, message and `Retry-After` seconds this error answers a
    /// caller with (see the table in the `axum` feature's docs).
    fn public_view(&self) -> (StatusCode, &'static str, String, Option<u64>) {
        let retry = self
            .retry_after()
            .map(|d| d.as_secs_f64().ceil().max(1.0) as u64);
        let capacity =
            |status, kind: &'static str, msg: &str| (status, kind, msg.to_owned(), retry);
        let upstream = || {
            (
                StatusCode::BAD_GATEWAY,
                "api_error",
                "the model service failed to answer".to_owned(),
                None,
            )
        };
        match self {
            Error::InvalidRequest(e) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                e.to_string(),
                None,
            ),
            Error::Paced(_) | Error::LimitReached(_) => capacity(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "too many requests for the model service right now; retry later",
            ),
            Error::CircuitOpen(_) => capacity(
                StatusCode::SERVICE_UNAVAILABLE,
                "overloaded_error",
                "the model service is unavailable right now; retry later",
            ),
            // A stream that broke after its head with an error event: its type, when it is
            // one of capacity.
            Error::Stream(s) => match s.kind() {
                Some(ApiErrorKind::RateLimit) => capacity(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "too many requests for the model service right now; retry later",
                ),
                Some(ApiErrorKind::Overloaded | ApiErrorKind::ServiceUnavailable) => capacity(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded_error",
                    "the model service is overloaded right now; retry later",
                ),
                _ => upstream(),
            },
            Error::Timeout(_) => (
                StatusCode::GATEWAY_TIMEOUT,
                "timeout_error",
                "the model service did not answer in time".to_owned(),
                None,
            ),
            Error::Api(api) => match api.kind() {
                ApiErrorKind::RateLimit if !api.is_spend_limit() => capacity(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    "too many requests for the model service right now; retry later",
                ),
                ApiErrorKind::Overloaded | ApiErrorKind::ServiceUnavailable => capacity(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "overloaded_error",
                    "the model service is overloaded right now; retry later",
                ),
                ApiErrorKind::BadRequest
                | ApiErrorKind::NotFound
                | ApiErrorKind::RequestTooLarge
                | ApiErrorKind::UnprocessableEntity => {
                    let status = StatusCode::from_u16(api.status().as_u16())
                        .unwrap_or(StatusCode::BAD_REQUEST);
                    let kind = match api.kind() {
                        ApiErrorKind::NotFound => "not_found_error",
                        ApiErrorKind::RequestTooLarge => "request_too_large",
                        _ => "invalid_request_error",
                    };
                    (status, kind, api.message().to_owned(), None)
                }
                ApiErrorKind::RequestTimeout | ApiErrorKind::GatewayTimeout => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "timeout_error",
                    "the model service did not answer in time".to_owned(),
                    None,
                ),
                // Our key, our account, our spend limit, and every other failure upstream.
                _ => upstream(),
            },
            _ => upstream(),
        }
    }
}

/// What an [`Error`] answers a web caller with: the status, the API's error shape and a
/// `Retry-After`, and nothing of the key, the account or the upstream's own message where
/// the caller is not at fault (the table in the [`error`](super) module docs). One mapping
/// for `IntoResponse for Error`, the `event: error` of [`web::sse`](crate::web::sse), and a
/// handler of your own that answers in another shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReply {
    /// The HTTP status.
    pub status: StatusCode,
    /// The API's `error.type` (`rate_limit_error`, `overloaded_error`, `api_error`, ...).
    pub error_type: &'static str,
    /// A message that is safe to show the caller.
    pub message: String,
    /// Seconds for `Retry-After`, when waiting helps.
    pub retry_after: Option<u64>,
}

impl ErrorReply {
    /// The reply to `error`.
    pub fn of(error: &Error) -> Self {
        let (status, error_type, message, retry_after) = error.public_view();
        Self {
            status,
            error_type,
            message,
            retry_after,
        }
    }

    /// The body in the API's shape: `{"type": "error", "error": {"type", "message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"type": "error", "error": {"type": self.error_type, "message": self.message}})
    }
}

impl From<&Error> for ErrorReply {
    fn from(e: &Error) -> Self {
        Self::of(e)
    }
}

impl IntoResponse for ErrorReply {
    fn into_response(self) -> Response {
        let mut resp = (self.status, self.body().to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = self.retry_after {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        ErrorReply::of(&self).into_response()
    }
}
