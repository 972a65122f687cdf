//! Errors the API answered with: [`ApiError`] and its [`ApiErrorKind`].

use std::fmt;
use std::time::Duration;

use http::{HeaderMap, StatusCode};

use super::Trail;
use crate::rate_limit::RateLimitHeaders;

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

    pub(crate) fn describe(self) -> &'static str {
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
    pub(crate) trail: Trail,
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
