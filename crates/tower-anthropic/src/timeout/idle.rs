//! The stream idle timeout: a bound on the gap between chunks of a streaming response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Buf;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use crate::body::ResponseMode;
use crate::error::{BoxError, Error, TimeoutError, TimeoutKind};

/// Bounds the gap between chunks of streaming responses; see the [module docs](super).
/// Buffered (non-streaming) responses pass through with no idle bound (the attempt timeout
/// covers them).
#[derive(Debug, Clone, Copy)]
pub struct StreamIdleTimeoutLayer {
    idle: Duration,
}

impl StreamIdleTimeoutLayer {
    /// Streams may go quiet for at most `idle`.
    pub const fn new(idle: Duration) -> Self {
        Self { idle }
    }
}

impl<S> Layer<S> for StreamIdleTimeoutLayer {
    type Service = StreamIdleTimeout<S>;
    fn layer(&self, inner: S) -> StreamIdleTimeout<S> {
        StreamIdleTimeout {
            inner,
            idle: self.idle,
        }
    }
}

/// The service of [`StreamIdleTimeoutLayer`].
#[derive(Debug, Clone)]
pub struct StreamIdleTimeout<S> {
    inner: S,
    idle: Duration,
}

impl<S> StreamIdleTimeout<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for StreamIdleTimeout<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
{
    type Response = Response<IdleTimeoutBody<RB>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let idle = (ResponseMode::of(&req) == ResponseMode::Streaming).then_some(self.idle);
        ResponseFuture {
            future: self.inner.call(req),
            idle,
        }
    }
}

pin_project! {
    /// Future of [`StreamIdleTimeout`].
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        future: F,
        idle: Option<Duration>,
    }
}

impl<F, RB, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
{
    type Output = Result<Response<IdleTimeoutBody<RB>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let resp = ready!(this.future.poll(cx))?;
        Poll::Ready(Ok(resp.map(|b| IdleTimeoutBody::new(b, *this.idle))))
    }
}

pin_project! {
    /// A body whose chunks must arrive within `idle` of each other (when set).
    #[derive(Debug)]
    pub struct IdleTimeoutBody<B> {
        #[pin]
        inner: B,
        // Boxed: only a stream has one, and a whole message's body (read inside its attempt)
        // would otherwise carry its room in every call's future.
        sleep: Option<Pin<Box<Sleep>>>,
        idle: Option<Duration>,
        expired: bool,
    }
}

impl<B> IdleTimeoutBody<B> {
    /// Wraps `inner`; `None` means no bound.
    pub(crate) fn new(inner: B, idle: Option<Duration>) -> Self {
        Self {
            inner,
            sleep: idle.map(|d| Box::pin(tokio::time::sleep(d))),
            idle,
            expired: false,
        }
    }
}

impl<B> Body for IdleTimeoutBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = bytes::Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<bytes::Bytes>, Error>>> {
        let this = self.project();
        if *this.expired {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let (Some(sleep), Some(idle)) = (this.sleep.as_mut(), *this.idle) {
                    // A huge idle bound (`Duration::MAX`) means about forever, not a panic.
                    let now = Instant::now();
                    let at = now
                        .checked_add(idle)
                        .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365 * 30));
                    sleep.as_mut().reset(at);
                }
                Poll::Ready(frame.map(|r| match r {
                    Ok(f) => Ok(f.map_data(|mut d| d.copy_to_bytes(d.remaining()))),
                    Err(e) => Err(Error::from_service_error(e)),
                }))
            }
            Poll::Pending => {
                let expired = this
                    .sleep
                    .as_mut()
                    .is_some_and(|s| s.as_mut().poll(cx).is_ready());
                if expired {
                    *this.expired = true;
                    let e = TimeoutError::new(TimeoutKind::StreamIdle, *this.idle);
                    return Poll::Ready(Some(Err(Error::Timeout(e))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.expired || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
