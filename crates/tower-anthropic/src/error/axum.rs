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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (status, kind, message, retry) = self.public_view();
        let body =
            serde_json::json!({"type": "error", "error": {"type": kind, "message": message}});
        let mut resp = (status, body.to_string()).into_response();
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Some(secs) = retry {
            h.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}
