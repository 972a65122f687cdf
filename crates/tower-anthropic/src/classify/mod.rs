//! Status classification: an HTTP response becomes `Ok(response)` or a typed [`Error`].
//!
//! [`ClassifyLayer`] wraps any `Service<http::Request<B>, Response = http::Response<RB>>`:
//!
//! - a 2xx passes through with its body unread, so streams stay streams;
//! - any other status reads at most a bounded prefix of the body (64 KiB by default, never
//!   more whatever the server sends) and becomes [`Error::Api`], JSON or not: an HTML 502 page
//!   gets its kind from the status and a short sanitized excerpt as its message;
//! - an error of the inner service becomes [`Error::Connection`] with its source kept (one of
//!   our own errors, even boxed by a layer in between, is passed on as it is).
//!
//! It sits below retry because `tower::retry::Policy::retry` is synchronous and cannot read a
//! body: the policy decides from the typed error built here.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client as HyperClient;
//! use hyper_util::rt::TokioExecutor;
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower_anthropic::classify::ClassifyLayer;
//! use tower_anthropic::transport::{ApiKey, Endpoint};
//! use tower_anthropic::{ApiErrorKind, Error};
//!
//! let mock = MockServer::start(MockConfig::default()).await?;
//! mock.script("doc", [ScriptEntry::status(529)]);
//! let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let service = ServiceBuilder::new()
//!     .layer(ClassifyLayer::new().max_error_body(16 * 1024))
//!     .service(http);
//!
//! let mut endpoint = Endpoint::new(&mock.url(), ApiKey::new("sk-ant-test").unwrap())?;
//! endpoint.set_header("x-mock-key".parse()?, "doc".parse()?);
//! let body = r#"{"model":"claude-sonnet-4-6","max_tokens":16,"messages":[{"role":"user","content":"Hi"}]}"#;
//! let err = service.oneshot(endpoint.post("/v1/messages", Bytes::from(body))).await.unwrap_err();
//! assert_eq!(err.kind(), Some(ApiErrorKind::Overloaded));
//! assert!(err.is_retryable() && err.request_id().is_some());
//! assert!(matches!(err, Error::Api(_)));
//! # Ok(()) }
//! ```

pub(crate) mod headers;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

pub(crate) use headers::parse_request_id;
mod http_classifier;
use headers::{parse_retry_after, parse_should_retry};
pub use http_classifier::{ApiClassifier, ApiFailureClass};

use crate::body::{AtBound, Collect};
use crate::error::{ApiError, ApiErrorKind, BoxError, Error, StreamError};
use crate::rate_limit::RateLimitHeaders;
use crate::text::excerpt;

/// Default bound on how much of an error body is read.
pub const DEFAULT_MAX_ERROR_BODY: usize = 64 * 1024;

/// Classifies responses; see the [module docs](self).
#[derive(Debug, Clone, Copy)]
pub struct ClassifyLayer {
    max_error_body: usize,
}

impl ClassifyLayer {
    /// A layer reading at most 64 KiB of an error body.
    pub const fn new() -> Self {
        Self {
            max_error_body: DEFAULT_MAX_ERROR_BODY,
        }
    }

    /// Reads at most `bytes` of an error body.
    pub const fn max_error_body(mut self, bytes: usize) -> Self {
        self.max_error_body = bytes;
        self
    }
}

impl Default for ClassifyLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for ClassifyLayer {
    type Service = Classify<S>;
    fn layer(&self, inner: S) -> Classify<S> {
        Classify {
            inner,
            max_error_body: self.max_error_body,
        }
    }
}

/// The service of [`ClassifyLayer`].
#[derive(Debug, Clone)]
pub struct Classify<S> {
    inner: S,
    max_error_body: usize,
}

impl<S> Classify<S> {
    /// Wraps `inner` with the default bound.
    pub fn new(inner: S) -> Self {
        ClassifyLayer::new().layer(inner)
    }
    crate::macros::define_inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for Classify<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        ResponseFuture {
            state: State::Waiting {
                future: self.inner.call(req),
            },
            max: self.max_error_body,
        }
    }
}

pin_project! {
    /// Future of [`Classify`].
    pub struct ResponseFuture<F, RB> {
        #[pin]
        state: State<F, RB>,
        max: usize,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, RB> {
        Waiting { #[pin] future: F },
        // Boxed: an error's head and body are the rare case, and inline they would take
        // their room in every call's future.
        ReadingError { reading: Pin<Box<ReadingError<RB>>> },
    }
}

pin_project! {
    struct ReadingError<RB> {
        parts: Option<http::response::Parts>,
        #[pin]
        body: Collect<RB>,
    }
}

impl<F, RB> std::fmt::Debug for ResponseFuture<F, RB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, E, RB> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Waiting { future } => {
                    let resp = ready!(future.poll(cx)).map_err(Error::from_service_error)?;
                    if resp.status().is_success() {
                        return Poll::Ready(Ok(resp));
                    }
                    let (parts, body) = resp.into_parts();
                    // Read until the end or the bound; a body error ends the read with what
                    // we have (the status already says what happened).
                    this.state.set(State::ReadingError {
                        reading: Box::pin(ReadingError {
                            parts: Some(parts),
                            body: Collect::new(body, *this.max, AtBound::KeepPrefix),
                        }),
                    });
                }
                StateProj::ReadingError { reading } => {
                    let reading = reading.as_mut().project();
                    let buf = ready!(reading.body.poll(cx))?;
                    let parts = reading.parts.take().expect("polled after completion");
                    return Poll::Ready(Err(api_error(parts, &buf)));
                }
            }
        }
    }
}

/// The fields of the API's error body
/// (`{"type":"error","error":{"type","message","details":{"error_code"}},"request_id"}`),
/// as far as a body has them; also the shape of an `event: error` in a stream.
#[derive(Debug, Default)]
struct ErrorBody {
    pub(crate) error_type: Option<String>,
    pub(crate) message: Option<String>,
    pub(crate) error_code: Option<String>,
    pub(crate) request_id: Option<String>,
}

impl ErrorBody {
    /// Reads what it can; a body that is not JSON gives all `None`.
    fn parse(body: &[u8]) -> Self {
        #[derive(serde::Deserialize)]
        struct Envelope {
            error: Option<Inner>,
            request_id: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Inner {
            #[serde(rename = "type")]
            error_type: Option<String>,
            message: Option<String>,
            details: Option<Details>,
        }
        #[derive(serde::Deserialize)]
        struct Details {
            error_code: Option<String>,
        }
        let Ok(env) = serde_json::from_slice::<Envelope>(body) else {
            return Self::default();
        };
        let inner = env.error;
        Self {
            error_code: inner
                .as_ref()
                .and_then(|i| i.details.as_ref())
                .and_then(|d| d.error_code.clone()),
            error_type: inner.as_ref().and_then(|i| i.error_type.clone()),
            message: inner.and_then(|i| i.message),
            request_id: env.request_id,
        }
    }
}

/// Longest upstream error message kept, in characters (sanitized: no control characters,
/// whitespace folded).
const MAX_MESSAGE: usize = 1000;

/// Builds the typed error of an `event: error` in a stream (same JSON as an error body).
pub(crate) fn stream_error_event(data: &[u8]) -> Error {
    let body = ErrorBody::parse(data);
    let msg = body
        .message
        .map(|m| excerpt(m.as_bytes(), MAX_MESSAGE))
        .unwrap_or_else(|| excerpt(data, 200));
    let mut e = StreamError::error_event(body.error_type, msg);
    e.set_request_id(body.request_id);
    Error::Stream(Box::new(e))
}

/// Builds the typed error from a non-2xx status, its headers and a (bounded) body prefix.
/// The typed error of a non-2xx response whose body has not been read: a bounded prefix of
/// the body is read and classified.
pub(crate) async fn read_api_error<B>(parts: http::response::Parts, body: B) -> Error
where
    B: http_body::Body,
    B::Error: Into<crate::error::BoxError>,
{
    let limit = DEFAULT_MAX_ERROR_BODY;
    match crate::body::Collect::new(body, limit, crate::body::AtBound::KeepPrefix).await {
        Ok(prefix) => api_error(parts, &prefix),
        Err(e) => e,
    }
}

pub(crate) fn api_error(parts: http::response::Parts, body: &[u8]) -> Error {
    let parsed = ErrorBody::parse(body);
    // The server's text reaches `Display` and logs: one line, printable, bounded.
    let message = parsed
        .message
        .map(|m| excerpt(m.as_bytes(), MAX_MESSAGE))
        .unwrap_or_else(|| {
            let ex = excerpt(body, 200);
            if ex.is_empty() {
                parts
                    .status
                    .canonical_reason()
                    .unwrap_or("no body")
                    .to_owned()
            } else {
                ex
            }
        });
    let headers = parts.headers;
    Error::Api(Box::new(ApiError {
        kind: ApiErrorKind::from_status(parts.status),
        status: parts.status,
        error_type: parsed.error_type,
        error_code: parsed.error_code,
        message,
        request_id: parse_request_id(&headers).or(parsed.request_id),
        retry_after: parse_retry_after(&headers, SystemTime::now()),
        should_retry: parse_should_retry(&headers),
        rate_limits: RateLimitHeaders::from_headers(&headers),
        headers,
        trail: Default::default(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};

    fn respond(
        status: u16,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<Error, Box<Response<Full<Bytes>>>> {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        let resp = b.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
        let svc = tower::service_fn(move |_req: Request<()>| {
            let r = resp.clone();
            async move { Ok::<_, std::convert::Infallible>(r) }
        });
        let fut = Classify::new(svc).call(Request::new(()));
        match futures_lite(fut) {
            Ok(r) => Err(Box::new(r)),
            Err(e) => Ok(e),
        }
    }

    /// Drives a future that never waits on I/O.
    fn futures_lite<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn every_status_maps_to_its_kind_and_retryability() {
        use ApiErrorKind::*;
        let table = [
            (400, BadRequest, false),
            (401, Authentication, false),
            (402, PaymentRequired, false),
            (403, PermissionDenied, false),
            (404, NotFound, false),
            (408, RequestTimeout, true),
            (409, Conflict, true),
            (412, PreconditionFailed, false),
            (413, RequestTooLarge, false),
            (422, UnprocessableEntity, false),
            (429, RateLimit, true),
            (431, RequestHeaderFieldsTooLarge, false),
            (499, ClientClosedRequest, false),
            (500, InternalServer, true),
            (501, NotImplemented, true),
            (502, InternalServer, true),
            (503, ServiceUnavailable, true),
            (504, GatewayTimeout, true),
            (507, InternalServer, true),
            (529, Overloaded, true),
            (418, Other, false),
            (302, Other, false),
            (450, Other, false),
        ];
        for (status, kind, retryable) in table {
            let e = respond(status, &[], "{}").unwrap();
            assert_eq!(e.kind(), Some(kind), "{status}");
            assert_eq!(e.is_retryable(), retryable, "{status}");
            assert_eq!(e.status().map(|s| s.as_u16()), Some(status));
        }
        let ok = respond(200, &[], "hello").unwrap_err();
        assert_eq!(ok.status(), 200);
        let body = futures_lite((*ok).into_body().collect())
            .unwrap()
            .to_bytes();
        assert_eq!(body, "hello", "a 2xx body is passed on unread");
    }

    #[test]
    fn api_json_body_is_parsed() {
        let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"Slow down","details":{"error_code":"ramp_limit_exceeded"}},"request_id":"req_body"}"#;
        let e = respond(
            429,
            &[
                ("retry-after", "7"),
                ("anthropic-ratelimit-requests-limit", "50"),
            ],
            body,
        )
        .unwrap();
        let api = e.as_api().unwrap();
        assert_eq!(api.error_type(), Some("rate_limit_error"));
        assert_eq!(api.error_code(), Some("ramp_limit_exceeded"));
        assert_eq!(api.message(), "Slow down");
        assert_eq!(
            api.request_id(),
            Some("req_body"),
            "from the body when the header is missing"
        );
        assert_eq!(e.retry_after(), Some(std::time::Duration::from_secs(7)));
        assert_eq!(api.rate_limits().requests.limit, Some(50));
        assert_eq!(
            e.to_string(),
            "rate limited (429 rate_limit_error): Slow down [request req_body]"
        );
        let e = respond(429, &[("request-id", "req_header")], body).unwrap();
        assert_eq!(e.request_id(), Some("req_header"), "the header wins");
    }

    #[test]
    fn spend_limits_and_should_retry() {
        let spend = r#"{"type":"error","error":{"type":"rate_limit_error","message":"cap","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
        assert!(!respond(429, &[], spend).unwrap().is_retryable());
        assert!(
            respond(429, &[("x-should-retry", "true")], spend)
                .unwrap()
                .is_retryable()
        );
        assert!(
            !respond(529, &[("x-should-retry", "false")], "{}")
                .unwrap()
                .is_retryable()
        );
        assert!(
            respond(400, &[("x-should-retry", "true")], "{}")
                .unwrap()
                .is_retryable()
        );
        assert!(
            !respond(400, &[("x-should-retry", "TRUE")], "{}")
                .unwrap()
                .is_retryable()
        );
    }

    #[test]
    fn html_and_empty_bodies() {
        let page = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body><center><h1>502 Bad Gateway</h1></center></body></html>";
        let e = respond(502, &[("content-type", "text/html")], page).unwrap();
        assert_eq!(e.kind(), Some(ApiErrorKind::InternalServer));
        assert_eq!(
            e.as_api().unwrap().message(),
            "502 Bad Gateway 502 Bad Gateway"
        );
        assert_eq!(e.as_api().unwrap().error_type(), None);
        assert_eq!(
            e.to_string(),
            "internal server error (502): 502 Bad Gateway 502 Bad Gateway"
        );
        let e = respond(413, &[], "").unwrap();
        assert_eq!(e.kind(), Some(ApiErrorKind::RequestTooLarge));
        assert_eq!(e.as_api().unwrap().message(), "Payload Too Large");
    }

    /// A body of 64 KiB frames that counts how many were pulled.
    #[derive(Debug)]
    struct Counted {
        left: usize,
        pulled: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }
    impl Body for Counted {
        type Data = Bytes;
        type Error = std::convert::Infallible;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            self.left -= 1;
            self.pulled
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(vec![
                b'x';
                64 * 1024
            ])))))
        }
    }

    #[test]
    fn a_huge_error_body_is_not_buffered_past_the_bound() {
        let pulled = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // 10 MB of error body.
        let body = Counted {
            left: 160,
            pulled: pulled.clone(),
        };
        let resp = std::sync::Mutex::new(Some(Response::builder().status(500).body(body).unwrap()));
        let svc = tower::service_fn(move |_req: Request<()>| {
            let r = resp.lock().unwrap().take().unwrap();
            async move { Ok::<_, std::convert::Infallible>(r) }
        });
        let layer = ClassifyLayer::new().max_error_body(100_000);
        let e = futures_lite(layer.layer(svc).call(Request::new(()))).unwrap_err();
        assert_eq!(
            pulled.load(std::sync::atomic::Ordering::SeqCst),
            2,
            "stopped at the bound"
        );
        assert!(e.as_api().unwrap().message().len() <= 200);
    }
}
