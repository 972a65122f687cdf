//! A concurrency limit whose permit is held until the response body is finished or dropped.
//!
//! tower's `ConcurrencyLimit` releases its permit when the response head arrives, so a
//! streaming response escapes the limit. [`ConcurrencyLimitLayer`] moves the permit into the
//! response body ([`PermitBody`]): a stream counts until its end. Waiting requests are served
//! in arrival order (tokio's semaphore is fair). With [`ConcurrencyLimitLayer::load_shed`] a
//! full limit fails fast with [`Error::LimitReached`] instead of queueing.
//!
//! Place it below retry, so a request waiting between attempts holds no permit. All services
//! made by one layer share its limit.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use anthropic_mock::{MockConfig, MockServer};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client as HyperClient;
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//! use tower_anthropic::limit::ConcurrencyLimitLayer;
//! use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
//! use tower_anthropic::transport::{ApiKey, Endpoint};
//! use tower_anthropic::classify::ClassifyLayer;
//!
//! let mock = MockServer::start(MockConfig::default()).await?;
//! let limit = ConcurrencyLimitLayer::new(8);
//! let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let stack = ServiceBuilder::new()
//!     .layer(limit.clone())
//!     .layer(ClassifyLayer::new())
//!     .service(http);
//! let endpoint = Endpoint::new(&mock.url(), ApiKey::new("sk-ant-test").unwrap())?;
//! let messages = MessagesService::new(stack, endpoint);
//!
//! let req = CreateMessageRequest::new("claude-sonnet-4-6", 16).user("Hi");
//! let stream = messages.stream(req).await?;
//! assert_eq!(limit.available_permits(), 7, "the open stream holds its permit");
//! let message = stream.final_message().await?;
//! assert_eq!(limit.available_permits(), 8, "and frees it when it ends");
//! assert!(!message.text().is_empty());
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::PollSemaphore;
use tower::{Layer, Service};

use crate::error::{BoxError, Error, InvalidRequestError, LimitReachedError};

/// Limits concurrent calls; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ConcurrencyLimitLayer {
    /// `None`: no limit (the layer passes calls through).
    semaphore: Option<Arc<Semaphore>>,
    max: usize,
    load_shed: bool,
}

impl ConcurrencyLimitLayer {
    /// At most `max` calls at once (at least 1), queueing the rest in arrival order.
    pub fn new(max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            semaphore: Some(Arc::new(Semaphore::new(max))),
            max,
            load_shed: false,
        }
    }

    /// No limit: calls pass straight through (what a `Client` without a limit uses).
    pub fn unlimited() -> Self {
        Self {
            semaphore: None,
            max: Semaphore::MAX_PERMITS,
            load_shed: false,
        }
    }

    /// Fail fast with [`Error::LimitReached`] when full instead of queueing.
    pub fn load_shed(mut self, on: bool) -> Self {
        self.load_shed = on;
        self
    }

    /// Permits free now.
    pub fn available_permits(&self) -> usize {
        self.semaphore
            .as_ref()
            .map_or(Semaphore::MAX_PERMITS, |s| s.available_permits())
    }

    /// The limit, if there is one.
    pub fn max(&self) -> Option<usize> {
        self.semaphore.is_some().then_some(self.max)
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;
    fn layer(&self, inner: S) -> ConcurrencyLimit<S> {
        ConcurrencyLimit {
            inner,
            semaphore: self.semaphore.clone(),
            waiting: None,
            permit: None,
            max: self.max,
            load_shed: self.load_shed,
        }
    }
}

/// The service of [`ConcurrencyLimitLayer`].
#[derive(Debug)]
pub struct ConcurrencyLimit<S> {
    inner: S,
    semaphore: Option<Arc<Semaphore>>,
    /// Made only when a call has to wait in line (the fast path takes a free permit).
    waiting: Option<PollSemaphore>,
    permit: Option<OwnedSemaphorePermit>,
    max: usize,
    load_shed: bool,
}

impl<S> ConcurrencyLimit<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S: Clone> Clone for ConcurrencyLimit<S> {
    /// A clone shares the limit but holds no permit.
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            semaphore: self.semaphore.clone(),
            waiting: None,
            permit: None,
            max: self.max,
            load_shed: self.load_shed,
        }
    }
}

impl<S, B, RB> Service<Request<B>> for ConcurrencyLimit<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<PermitBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if let (Some(semaphore), None) = (&self.semaphore, &self.permit) {
            // A free permit is taken at once: tokio hands released permits to the waiters
            // first, so a free one means nobody is in line and arrival order holds.
            match semaphore.clone().try_acquire_owned() {
                Ok(p) => self.permit = Some(p),
                Err(_) if self.load_shed => {
                    return Poll::Ready(Err(Error::LimitReached(LimitReachedError::new(self.max))));
                }
                Err(_) => {
                    let waiting = self
                        .waiting
                        .get_or_insert_with(|| PollSemaphore::new(semaphore.clone()));
                    let permit =
                        ready!(waiting.poll_acquire(cx)).expect("the semaphore is never closed");
                    self.permit = Some(permit);
                }
            }
        }
        // The permit is held while the inner service gets ready: a queue in arrival order.
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if self.semaphore.is_some() && self.permit.is_none() {
            // A caller broke tower's contract (no `poll_ready` first): refuse the call rather
            // than run it past the limit or panic inside a library.
            let e = InvalidRequestError::new(
                "the concurrency limit was called before poll_ready returned Ready",
            );
            return ResponseFuture {
                future: None,
                refused: Some(Box::new(Error::InvalidRequest(e))),
                permit: None,
            };
        }
        ResponseFuture {
            future: Some(self.inner.call(req)),
            refused: None,
            permit: self.permit.take(),
        }
    }
}

pin_project! {
    /// Future of [`ConcurrencyLimit`]: moves the permit into the body.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        future: Option<F>,
        // Boxed: a broken contract is rare, and every call's future would carry its room.
        refused: Option<Box<Error>>,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<PermitBody<RB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(e) = this.refused.take() {
            return Poll::Ready(Err(*e));
        }
        let Some(future) = this.future.as_pin_mut() else {
            return Poll::Pending;
        };
        let resp = ready!(future.poll(cx)).map_err(Error::from_service_error)?;
        let permit = this.permit.take();
        Poll::Ready(Ok(resp.map(|inner| PermitBody { inner, permit })))
    }
}

pin_project! {
    /// A body holding a concurrency permit until it ends or is dropped.
    #[derive(Debug)]
    pub struct PermitBody<B> {
        #[pin]
        inner: B,
        permit: Option<OwnedSemaphorePermit>,
    }
}

impl<B: Body> Body for PermitBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = self.project();
        let r = ready!(this.inner.poll_frame(cx));
        if matches!(r, None | Some(Err(_))) {
            // Finished (or broken): free the slot now, not when the caller drops the body.
            this.permit.take();
        }
        Poll::Ready(r)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
