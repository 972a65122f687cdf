//! The attempt timeout, which also reads non-streaming bodies inside the attempt.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use pin_project_lite::pin_project;
use tokio::time::Sleep;
use tower::{Layer, Service};

use crate::body::{ApiBody, AtBound, Buffered, Collect, DEFAULT_MAX_RESPONSE_BODY, ResponseMode};
use crate::error::{BoxError, Error, TimeoutError, TimeoutKind};

/// Bounds one attempt; see the [module docs](super).
#[derive(Debug, Clone, Copy)]
pub struct AttemptTimeoutLayer {
    timeout: Duration,
    max_body: usize,
}

impl AttemptTimeoutLayer {
    /// An attempt timeout of `timeout`; non-streaming bodies are read up to 64 MiB.
    pub const fn new(timeout: Duration) -> Self {
        Self {
            timeout,
            max_body: DEFAULT_MAX_RESPONSE_BODY,
        }
    }
    /// Reads at most `bytes` of a non-streaming body (more is a decode error).
    pub const fn max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }
}

impl<S> Layer<S> for AttemptTimeoutLayer {
    type Service = AttemptTimeout<S>;
    fn layer(&self, inner: S) -> AttemptTimeout<S> {
        AttemptTimeout {
            inner,
            timeout: self.timeout,
            max_body: self.max_body,
        }
    }
}

/// The service of [`AttemptTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct AttemptTimeout<S> {
    inner: S,
    timeout: Duration,
    max_body: usize,
}

impl<S> AttemptTimeout<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for AttemptTimeout<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    type Response = Response<ApiBody<RB>>;
    type Error = Error;
    type Future = ResponseFuture<S::Future, RB>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let mode = ResponseMode::of(&req);
        ResponseFuture {
            state: State::Calling {
                future: self.inner.call(req),
            },
            sleep: tokio::time::sleep(self.timeout),
            timeout: self.timeout,
            mode,
            max_body: self.max_body,
        }
    }
}

pin_project! {
    /// Future of [`AttemptTimeout`].
    pub struct ResponseFuture<F, RB> {
        #[pin]
        state: State<F, RB>,
        #[pin]
        sleep: Sleep,
        timeout: Duration,
        mode: ResponseMode,
        max_body: usize,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, RB> {
        Calling { #[pin] future: F },
        Reading { parts: Option<http::response::Parts>, #[pin] body: Collect<RB> },
    }
}

impl<F, RB> std::fmt::Debug for ResponseFuture<F, RB> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .finish()
    }
}

impl<F, E, RB> Future for ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    type Output = Result<Response<ApiBody<RB>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        // The attempt first, the timer only when it waits (as `tokio::time::timeout` has
        // it): an answer complete when the timer fires is kept, and an attempt that never
        // waits arms no timer.
        if let Poll::Ready(r) =
            Self::poll_attempt(this.state.as_mut(), cx, this.mode, this.max_body)
        {
            return Poll::Ready(r);
        }
        if this.sleep.as_mut().poll(cx).is_ready() {
            let e = TimeoutError::new(TimeoutKind::Attempt, Some(*this.timeout));
            return Poll::Ready(Err(Error::Timeout(e)));
        }
        Poll::Pending
    }
}

impl<F, E, RB> ResponseFuture<F, RB>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    RB: Body,
    RB::Error: Into<BoxError>,
{
    /// The attempt: its answer, and for a buffered call its body read to the end.
    fn poll_attempt(
        mut state: Pin<&mut State<F, RB>>,
        cx: &mut Context<'_>,
        mode: &ResponseMode,
        max_body: &usize,
    ) -> Poll<Result<Response<ApiBody<RB>>, Error>> {
        loop {
            match state.as_mut().project() {
                StateProj::Calling { future } => {
                    let resp = ready!(future.poll(cx)).map_err(Error::from_service_error)?;
                    if *mode == ResponseMode::Streaming {
                        return Poll::Ready(Ok(resp.map(ApiBody::stream)));
                    }
                    let (parts, body) = resp.into_parts();
                    state.set(State::Reading {
                        parts: Some(parts),
                        body: Collect::new(body, *max_body, AtBound::Fail),
                    });
                }
                StateProj::Reading { parts, body } => {
                    let data = ready!(body.poll(cx))?;
                    let mut parts = parts.take().expect("polled after completion");
                    parts.extensions.insert(Buffered);
                    return Poll::Ready(Ok(Response::from_parts(parts, ApiBody::full(data))));
                }
            }
        }
    }
}
