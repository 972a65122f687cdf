//! Response bodies through the stack: read whole inside the attempt, or streamed.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::error::{BoxError, Error};

/// Whether a request's response is read whole inside the attempt (the default) or handed
/// on as a stream. Set as a request extension by the streaming call.
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
    pub fn full(data: Bytes) -> Self {
        Self {
            inner: Inner::Full {
                data: (!data.is_empty()).then_some(data),
            },
        }
    }
    /// A streaming body.
    pub fn stream(body: B) -> Self {
        Self {
            inner: Inner::Stream { body },
        }
    }
    /// Whether the body was read whole inside the attempt.
    pub fn is_buffered(&self) -> bool {
        matches!(self.inner, Inner::Full { .. })
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
