//! Response bodies through the stack: read whole inside the attempt, or streamed.
//!
//! This module owns buffering: one private reader (`Collect`) is the only reader of a whole body under a size
//! bound, used by the attempt timeout (which buffers non-streaming bodies inside the attempt),
//! by the classifier (a bounded prefix of an error body) and by the typed service (only when
//! no layer below buffered the body already).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::{BoxError, DecodeError, Error};

/// Largest successful (non-streaming) response body read by default (64 MiB).
pub const DEFAULT_MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;

/// A response extension: the body was already read whole, under its size bound, inside the
/// attempt. The typed service then takes it as it is instead of reading it again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Buffered;

/// Whether a request's response is read whole inside the attempt (the default) or handed
/// on as a stream: a request extension, set by the streaming call, and by a caller that
/// forwards a response as it arrives (a large `results` file, say); see
/// [`crate::extensions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ResponseMode {
    /// Read the body to the end inside the attempt (so a stall or reset mid-body is a
    /// retryable attempt failure).
    #[default]
    Buffered,
    /// Hand the body on as it arrives.
    Streaming,
}

impl ResponseMode {
    /// The mode a request asks for.
    pub fn of<B>(req: &http::Request<B>) -> Self {
        req.extensions()
            .get::<ResponseMode>()
            .copied()
            .unwrap_or_default()
    }
}

pin_project! {
    /// A response body that is either already read whole, or still streaming.
    #[derive(Debug)]
    pub struct ApiBody<B> {
        #[pin]
        inner: Inner<B>,
    }
}

pin_project! {
    #[project = InnerProj]
    #[derive(Debug)]
    enum Inner<B> {
        Full { data: Option<Bytes> },
        Stream { #[pin] body: B },
    }
}

impl<B> ApiBody<B> {
    /// A body already read whole.
    pub(crate) fn full(data: Bytes) -> Self {
        Self {
            inner: Inner::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
    /// A streaming body.
    pub(crate) fn stream(body: B) -> Self {
        Self {
            inner: Inner::Stream { body },
        }
    }
}

impl<B> Body for ApiBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        match self.project().inner.project() {
            InnerProj::Full { data } => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            InnerProj::Stream { body } => body.poll_frame(cx).map(|opt| {
                opt.map(|res| match res {
                    Ok(frame) => Ok(frame.map_data(|mut d| d.copy_to_bytes(d.remaining()))),
                    Err(e) => Err(Error::from_service_error(e)),
                })
            }),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full { data } => data.is_none(),
            Inner::Stream { body } => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full { data } => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            Inner::Stream { body } => body.size_hint(),
        }
    }
}

/// The body type of a boxed stack (what [`Client`](crate::Client) uses).
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, Error>;

/// A body read so far: a single chunk is kept as it came (no copy); more are joined.
#[derive(Debug, Default)]
struct Chunks {
    first: Bytes,
    rest: Option<BytesMut>,
}

impl Chunks {
    fn len(&self) -> usize {
        self.rest.as_ref().map_or(self.first.len(), BytesMut::len)
    }

    fn push(&mut self, b: Bytes) {
        match &mut self.rest {
            Some(rest) => rest.extend_from_slice(&b),
            None if self.first.is_empty() => self.first = b,
            None => {
                let mut rest = BytesMut::with_capacity(self.first.len() + b.len());
                rest.extend_from_slice(&self.first);
                rest.extend_from_slice(&b);
                self.rest = Some(rest);
            }
        }
    }

    fn take(&mut self) -> Bytes {
        match self.rest.take() {
            Some(rest) => rest.freeze(),
            None => std::mem::take(&mut self.first),
        }
    }
}

/// What [`Collect`] does at its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AtBound {
    /// A body over the bound is a decode error (a 2xx must be whole to be used).
    Fail,
    /// Keep the prefix up to the bound and stop reading; a body error also ends the read
    /// with what was had (for error bodies: the status already says what happened).
    KeepPrefix,
}

pin_project! {
    /// Reads a body to its end (or its bound) into one `Bytes`, copying only when it came in
    /// several chunks. Never holds more than `max` bytes, whatever the server sends.
    #[derive(Debug)]
    pub(crate) struct Collect<B> {
        #[pin]
        body: B,
        buf: Chunks,
        max: usize,
        at_bound: AtBound,
    }
}

impl<B> Collect<B> {
    pub(crate) fn new(body: B, max: usize, at_bound: AtBound) -> Self {
        Self {
            body,
            buf: Chunks::default(),
            max,
            at_bound,
        }
    }
}

impl<B> Future for Collect<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Output = Result<Bytes, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            if *this.at_bound == AtBound::KeepPrefix && this.buf.len() >= *this.max {
                return Poll::Ready(Ok(this.buf.take()));
            }
            let frame = match ready!(this.body.as_mut().poll_frame(cx)) {
                None => return Poll::Ready(Ok(this.buf.take())),
                Some(Err(_)) if *this.at_bound == AtBound::KeepPrefix => {
                    return Poll::Ready(Ok(this.buf.take()));
                }
                Some(Err(e)) => return Poll::Ready(Err(Error::from_service_error(e))),
                Some(Ok(frame)) => frame,
            };
            let Ok(mut data) = frame.into_data() else {
                continue;
            };
            let room = this.max.saturating_sub(this.buf.len());
            if data.remaining() > room {
                if *this.at_bound == AtBound::Fail {
                    let msg = format!("response body larger than {} bytes", this.max);
                    let seen = this.buf.take();
                    return Poll::Ready(Err(Error::Decode(DecodeError::new(msg, &seen, None))));
                }
                this.buf.push(data.copy_to_bytes(room));
                continue;
            }
            this.buf.push(data.copy_to_bytes(data.remaining()));
        }
    }
}
