//! The overall deadline of a call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Request;
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::error::{BoxError, Error, TimeoutError, TimeoutKind};
use crate::retry::Deadline;

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
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for OverallDeadline<S>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    type Response = S::Response;
    type Error = Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        let start = Instant::now();
        let mut deadline = start + self.timeout;
        match req.extensions().get::<Deadline>() {
            Some(Deadline(earlier)) if *earlier < deadline => deadline = *earlier,
            _ => {
                req.extensions_mut().insert(Deadline(deadline));
            }
        }
        ResponseFuture {
            future: self.inner.call(req),
            sleep: tokio::time::sleep_until(deadline),
            limit: deadline - start,
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
