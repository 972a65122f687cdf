//! This crate's failure rules as a `tower_http` classifier, so `tower_http::trace::TraceLayer`
//! (or any layer built on [`MakeClassifier`]) marks API failures the way the retry layer
//! sees them.
//!
//! ```
//! use tower_anthropic::classify::ApiClassifier;
//! use tower_http::trace::TraceLayer;
//!
//! // A trace layer for a stack that calls the API: failures carry the status and whether the
//! // SDKs' rules would retry them.
//! let trace = TraceLayer::new(ApiClassifier::make());
//! # let _ = trace;
//! ```
//!
//! The library marks `x-api-key` and `authorization` sensitive with tower-http's
//! `SetSensitiveRequestHeadersLayer` (at the bottom of [`Client`](crate::Client)'s stack), so a
//! `TraceLayer` or a logger below never prints them. The body and stream timeouts stay this
//! crate's own: tower-http's `TimeoutBody` has no notion of the first content of a stream (pings
//! are not progress) nor of a whole body read inside one attempt.

use std::fmt;

use http::{Response, StatusCode};
use tower_http::classify::{
    ClassifiedResponse, ClassifyResponse, NeverClassifyEos, SharedClassifier,
};

use super::headers::parse_should_retry;
use crate::error::ApiErrorKind;

/// Classifies responses of the API as this crate does: any non-2xx is a failure, retryable
/// by the SDKs' rules (408, 409, 429 except spend limits, 5xx; `x-should-retry` decides when
/// present). Errors (no response) are retryable failures.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiClassifier;

impl ApiClassifier {
    /// The classifier as a `MakeClassifier` (for `TraceLayer::new`).
    pub fn make() -> SharedClassifier<ApiClassifier> {
        SharedClassifier::new(ApiClassifier)
    }
}

/// A failure as [`ApiClassifier`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailureClass {
    /// The status, if there was a response.
    pub status: Option<StatusCode>,
    /// Its kind, from the status.
    pub kind: Option<ApiErrorKind>,
    /// Whether the SDKs' rules would retry it (a spend limit is only known from the body: a
    /// 429 reads as retryable here).
    pub retryable: bool,
    /// For a failure without a response, what went wrong.
    pub error: Option<String>,
}

impl fmt::Display for ApiFailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.status, &self.error) {
            (Some(s), _) => write!(f, "status {} (retryable: {})", s.as_u16(), self.retryable),
            (None, Some(e)) => write!(f, "{e} (retryable: {})", self.retryable),
            (None, None) => f.write_str("failure"),
        }
    }
}

impl ClassifyResponse for ApiClassifier {
    type FailureClass = ApiFailureClass;
    type ClassifyEos = NeverClassifyEos<ApiFailureClass>;

    fn classify_response<B>(
        self,
        res: &Response<B>,
    ) -> ClassifiedResponse<Self::FailureClass, Self::ClassifyEos> {
        let status = res.status();
        if status.is_success() {
            return ClassifiedResponse::Ready(Ok(()));
        }
        let kind = ApiErrorKind::from_status(status);
        let retryable = parse_should_retry(res.headers()).unwrap_or_else(|| kind.is_retryable());
        ClassifiedResponse::Ready(Err(ApiFailureClass {
            status: Some(status),
            kind: Some(kind),
            retryable,
            error: None,
        }))
    }

    fn classify_error<E>(self, error: &E) -> Self::FailureClass
    where
        E: fmt::Display + 'static,
    {
        ApiFailureClass {
            status: None,
            kind: None,
            retryable: true,
            error: Some(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(status: u16, should_retry: Option<&str>) -> Result<(), ApiFailureClass> {
        let mut r = Response::builder().status(status);
        if let Some(v) = should_retry {
            r = r.header("x-should-retry", v);
        }
        match ApiClassifier.classify_response(&r.body(()).unwrap()) {
            ClassifiedResponse::Ready(r) => r,
            ClassifiedResponse::RequiresEos(_) => unreachable!("never waits for the end"),
        }
    }

    #[test]
    fn classifies_as_the_retry_layer_does() {
        assert!(class(200, None).is_ok());
        let c = class(529, None).unwrap_err();
        assert_eq!(
            (c.kind, c.retryable),
            (Some(ApiErrorKind::Overloaded), true)
        );
        assert!(!class(400, None).unwrap_err().retryable);
        assert!(class(429, None).unwrap_err().retryable);
        assert!(!class(529, Some("false")).unwrap_err().retryable);
        assert!(class(400, Some("true")).unwrap_err().retryable);
        let e = ApiClassifier.classify_error(&"connection reset");
        assert!(e.retryable && e.to_string().contains("connection reset"));
    }
}
