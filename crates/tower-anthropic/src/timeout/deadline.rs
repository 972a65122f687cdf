//! The overall deadline of a call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::util::Oneshot;
use tower::{Layer, Service};

use crate::error::{BoxError, Error, TimeoutError, TimeoutKind};

/// The overall deadline of one call, as a request extension: the deadline layer sets it, a
/// caller may too (the earlier one wins). The retry policy never starts a wait that would end
/// after it, and the pacing of later layers reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    limit: Option<Duration>,
}

/// How far ahead a deadline of "forever" (`Duration::MAX`) is put: tokio's clock cannot add
/// more without overflowing.
const FAR_FUTURE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Deadline {
    /// A deadline at `at`.
    pub fn at(at: Instant) -> Self {
        Self { at, limit: None }
    }
    /// A deadline `limit` from now (a huge `limit` is taken as about a century).
    pub fn after(limit: Duration) -> Self {
        let now = Instant::now();
        let at = now
            .checked_add(limit.min(FAR_FUTURE))
            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
        Self {
            at,
            limit: Some(limit),
        }
    }
    /// When it passes.
    pub fn instant(&self) -> Instant {
        self.at
    }
    /// The whole time the call was given, when the deadline was set as a duration.
    pub fn limit(&self) -> Option<Duration> {
        self.limit
    }
}

/// Bounds a whole call, waits between attempts included; see the [module docs](super).
///
/// An earlier [`Deadline`] already in the request's extensions (set by a caller) wins.
#[derive(Debug, Clone, Copy)]
pub struct OverallDeadlineLayer {
    timeout: Duration,
}

impl OverallDeadlineLayer {
    /// Each call must finish within `timeout`.
    pub const fn new(timeout: Duration) -> Self {
        Self { timeout }
    }
}

impl<S> Layer<S> for OverallDeadlineLayer {
    type Service = OverallDeadline<S>;
    fn layer(&self, inner: S) -> OverallDeadline<S> {
        OverallDeadline {
            inner,
            timeout: self.timeout,
        }
    }
}

/// The service of [`OverallDeadlineLayer`].
#[derive(Debug, Clone)]
pub struct OverallDeadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S> OverallDeadline<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, B> Service<Request<B>> for OverallDeadline<S>
where
    S: Service<Request<B>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<Oneshot<S, Request<B>>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // The inner service is made ready inside the call's future, so the deadline covers
        // that wait too (a concurrency permit held by a long stream, say).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let mut deadline = Deadline::after(self.timeout);
        match req.extensions().get::<Deadline>() {
            Some(earlier) if earlier.at < deadline.at => deadline = *earlier,
            _ => {
                req.extensions_mut().insert(deadline);
            }
        }
        let inner = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, inner);
        ResponseFuture {
            future: Oneshot::new(inner, req),
            sleep: tokio::time::sleep_until(deadline.at),
            limit: deadline.limit.unwrap_or(deadline.at - start),
        }
    }
}

pin_project! {
    /// Future of [`OverallDeadline`].
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        #[pin]
        sleep: Sleep,
        limit: Duration,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("limit", &self.limit)
            .finish()
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(r) = this.future.poll(cx) {
            return Poll::Ready(r.map_err(Error::from_service_error));
        }
        if this.sleep.poll(cx).is_ready() {
            let e = TimeoutError::new(TimeoutKind::Deadline, Some(*this.limit));
            return Poll::Ready(Err(Error::Timeout(e)));
        }
        Poll::Pending
    }
}
