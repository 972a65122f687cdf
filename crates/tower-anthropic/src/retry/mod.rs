//! Retries, as the official SDKs do them and safer: a [`RetryPolicy`] for
//! `tower::retry::Retry`, wrapped by [`RetryLayer`] so each attempt carries its number.
//!
//! Decisions, in order:
//! 1. `x-should-retry: true|false` decides outright;
//! 2. a 429 whose `error_code` is a spend limit is not retried (waiting cannot fix it);
//! 3. the status table: 408, 409, 429 and every 5xx (529 included) are retried, nothing else;
//! 4. connection errors and attempt timeouts are retried; decode errors, refused requests and
//!    deadline timeouts are not.
//!
//! The wait: `retry-after-ms` (> 0), else `retry-after` seconds (> 0), else a future
//! `retry-after` HTTP-date, else backoff `min(0.5 s * 2^n, 8 s) * (1 - 0.25 * U)` with `U`
//! drawn afresh each time. A server-directed wait over the cap (60 s), or one that would end
//! after the call's [`Deadline`](crate::timeout::Deadline), is not slept: the error is returned at once, its
//! `retry_after()` set, so the caller can reschedule. A [`RetryBudget`] shared by all clones
//! bounds the load retries add during an outage.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client as HyperClient;
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//! use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
//! use tower_anthropic::retry::{RetryBudget, RetryPolicy};
//! use tower_anthropic::transport::{ApiKey, Endpoint};
//! use tower_anthropic::{ApiErrorKind, ServiceBuilderExt};
//!
//! let mock = MockServer::start(MockConfig::default()).await?;
//! // A 529, then a 429 asking for 2 s: both retried; then a 400: not retried.
//! mock.script("doc", [ScriptEntry::status(529)]);
//! mock.script("doc", [ScriptEntry::status_with_headers(429, [("retry-after", "2")])]);
//! mock.script("doc", [ScriptEntry::status(400)]);
//! let policy = RetryPolicy::new()
//!     .max_retries(4)
//!     .max_retry_after(Duration::from_secs(30))
//!     .budget(Some(RetryBudget::new(0.1, 1.0, 20.0)));
//! let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let stack = ServiceBuilder::new().retry_api_errors(policy).classify_responses().service(http);
//! let mut endpoint = Endpoint::new(&mock.url(), ApiKey::new("sk-ant-test").unwrap())?;
//! endpoint.set_header("x-mock-key".parse()?, "doc".parse()?);
//! let messages = MessagesService::new(stack, endpoint);
//!
//! let req = CreateMessageRequest::new("claude-sonnet-4-6", 16).user("Hi");
//! let err = messages.create(req).await.unwrap_err();
//! assert_eq!(err.kind(), Some(ApiErrorKind::BadRequest));
//! assert_eq!(err.attempts(), 3);
//! let earlier: Vec<_> = err.earlier_attempts().iter().map(|e| e.kind()).collect();
//! assert_eq!(earlier, [Some(ApiErrorKind::Overloaded), Some(ApiErrorKind::RateLimit)]);
//! # Ok(()) }
//! ```

mod budget;
mod policy;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::Request;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

pub use budget::RetryBudget;
pub(crate) use policy::{AttemptIndex, AttemptLog, Decision, StreamResend};
pub use policy::{Attempts, JitterSource, RETRY_COUNT_HEADER, RetryPolicy};

use crate::error::{BoxError, Error};

/// Retries failed attempts under a [`RetryPolicy`]; marks each attempt with its number.
///
/// **Put a [`ClassifyLayer`](crate::classify::ClassifyLayer) below it**: the policy decides
/// from the typed [`Error`] the classifier builds out of a status (tower's `Policy::retry` is
/// synchronous and cannot read a body). Without one, an error *status* is a success to this
/// layer and is never retried. Any layer may stand between the two, tower's own included:
/// whatever error type the inner service returns is turned into [`Error`] with
/// [`Error::from_service_error`], which finds ours anywhere in the source chain.
#[derive(Debug, Clone, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer with this policy (its budget is shared by every service it makes).
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner: tower::retry::Retry::new(
                self.policy.clone(),
                IntoError {
                    inner,
                    count_header: self.policy.cfg.header.clone(),
                },
            ),
        }
    }
}

/// The service of [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: tower::retry::Retry<RetryPolicy, IntoError<S>>,
}

impl<S> Retry<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner.get_ref().inner
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner.get_mut().inner
    }
    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner.into_inner().inner
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = http::Response<RB>> + Clone,
    S::Error: Into<BoxError>,
    B: Clone,
{
    type Response = http::Response<RB>;
    type Error = Error;
    type Future = tower::retry::future::ResponseFuture<RetryPolicy, IntoError<S>, Request<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // A re-sent stream continues its count (its `AttemptIndex`); a new request, without
        // one, is attempt 0.
        self.inner.call(req)
    }
}

/// Makes any inner service's error an [`Error`], so tower's policy sees our type whatever
/// stands below (tower's timeout or buffer, a user's layer).
#[derive(Debug, Clone)]
pub struct IntoError<S> {
    inner: S,
    /// The retry-count header, set on each attempt as it is sent.
    count_header: Option<http::HeaderName>,
}

impl<S, B, RB> Service<Request<B>> for IntoError<S>
where
    S: Service<Request<B>, Response = http::Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = IntoErrorFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(h) = &self.count_header {
            policy::set_count_header(h, &mut req);
        }
        // One span per attempt (OpenTelemetry HTTP client conventions), a child of the call's.
        let resend = req
            .extensions()
            .get::<policy::AttemptIndex>()
            .map_or(0, |a| a.0);
        let span = tracing::info_span!(
            "attempt",
            http.request.method = %req.method(),
            http.request.resend_count = resend,
            http.response.status_code = tracing::field::Empty,
            anthropic.request_id = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        let future = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        IntoErrorFuture { future, span }
    }
}

pin_project! {
    /// Future of [`IntoError`].
    #[derive(Debug)]
    pub struct IntoErrorFuture<F> {
        #[pin]
        future: F,
        span: tracing::Span,
    }
}

impl<F, RB, E> Future for IntoErrorFuture<F>
where
    F: Future<Output = Result<http::Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<http::Response<RB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let r = {
            let _entered = this.span.enter();
            ready!(this.future.poll(cx))
        };
        let r = r.map_err(Error::from_service_error);
        let span = &*this.span;
        crate::metrics::attempt(match &r {
            Ok(resp) => Some(resp.status().as_u16()),
            Err(e) => e.status().map(|s| s.as_u16()),
        });
        if span.is_disabled() {
            // No subscriber wants it: nothing to look up for it.
            return Poll::Ready(r);
        }
        match &r {
            Ok(resp) => {
                span.record("http.response.status_code", resp.status().as_u16());
                if let Some(id) = resp
                    .headers()
                    .get(crate::classify::headers::REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                {
                    span.record("anthropic.request_id", id);
                }
            }
            Err(e) => {
                if let Some(s) = e.status() {
                    span.record("http.response.status_code", s.as_u16());
                }
                if let Some(id) = e.request_id() {
                    span.record("anthropic.request_id", id);
                }
                span.record("error.type", e.class());
            }
        }
        Poll::Ready(r)
    }
}
