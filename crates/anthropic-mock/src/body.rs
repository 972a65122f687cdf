//! The response body of the mock: a whole buffer, or frames fed by a task (streams, cut and
//! stalled bodies), counting open streams until dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

use crate::stats::Counters;

/// The body type of every mock response.
#[derive(Debug)]
pub struct MockBody {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Full(Option<Bytes>),
    Channel {
        rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
        len: Option<u64>,
        _guard: Option<StreamGuard>,
    },
}

impl MockBody {
    pub(crate) fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        Self {
            inner: Inner::Full((!b.is_empty()).then_some(b)),
        }
    }

    /// A body fed through a channel; `len` is announced as the exact size when known; a
    /// `guard` counts the body as an open stream until it is dropped.
    pub(crate) fn channel(
        len: Option<u64>,
        guard: Option<StreamGuard>,
    ) -> (mpsc::Sender<Result<Bytes, std::io::Error>>, Self) {
        let (tx, rx) = mpsc::channel(16);
        (
            tx,
            Self {
                inner: Inner::Channel {
                    rx,
                    len,
                    _guard: guard,
                },
            },
        )
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match &mut self.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Channel { rx, .. } => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.inner, Inner::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Channel { len: Some(n), .. } => SizeHint::with_exact(*n),
            Inner::Channel { .. } => SizeHint::default(),
        }
    }
}

/// Counts an open event stream while alive.
#[derive(Debug)]
pub(crate) struct StreamGuard(Arc<Counters>);

impl StreamGuard {
    pub(crate) fn new(c: Arc<Counters>) -> Self {
        c.stream_opened();
        Self(c)
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.stream_closed();
    }
}
