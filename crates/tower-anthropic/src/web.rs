//! Answering web callers from a handler (feature `axum`): a whole answer as JSON, a stream
//! as server-sent events, an error in the API's own shape, all through
//! `axum::response::IntoResponse` (`axum-core`'s, which axum re-exports).
//!
//! - `Result<ApiResponse<T>, Error>` is a response as it is: the answer as JSON with the
//!   API's `request-id` passed back, or the error's [`ErrorReply`].
//! - [`sse`] turns a [`MessageStream`] into `text/event-stream`, one `event: {type}` frame
//!   per event as it arrives (read only as fast as the caller reads), a `: keep-alive`
//!   comment after 15 s without one, and, when the stream fails after its head, an
//!   `event: error` whose data is the API's error shape ([`ErrorReply`]: nothing the caller
//!   should not see), then the end. A caller that hangs up drops the response body, and with
//!   it the upstream stream: its connection and its concurrency permit are freed at once.
//!
//! ```no_run
//! use axum::{Json, Router, extract::State, response::Response, routing::post};
//! use axum::response::IntoResponse;
//! use tower_anthropic::{Client, Error, Message, messages::ApiResponse, web};
//! use tower_anthropic::messages::CreateMessageRequest;
//!
//! async fn ask(State(client): State<Client>, Json(req): Json<CreateMessageRequest>)
//!     -> Result<ApiResponse<Message>, Error> {
//!     client.messages().create(req).await
//! }
//!
//! async fn ask_streaming(State(client): State<Client>, Json(req): Json<CreateMessageRequest>)
//!     -> Response {
//!     match client.messages().stream(req).await {
//!         Ok(stream) => web::sse(stream).into_response(),
//!         Err(e) => e.into_response(),
//!     }
//! }
//!
//! # fn app(client: Client) -> Router {
//! Router::new()
//!     .route("/ask", post(ask))
//!     .route("/ask/stream", post(ask_streaming))
//!     .with_state(client)
//! # }
//! ```

use std::convert::Infallible;
use std::future::Future as _;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum_core::body::Body;
use axum_core::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, header};
use serde::Serialize;
use tokio::time::{Instant, Sleep};

pub use crate::error::ErrorReply;
use crate::messages::ApiResponse;
use crate::stream::{MessageStream, StreamEvent};

/// How long a stream may go without an event before a `: keep-alive` comment is sent (a
/// proxy between the caller and here may close a connection it sees idle).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A stream as server-sent events; see the [module docs](self).
pub fn sse(stream: MessageStream) -> Sse {
    Sse {
        stream,
        keep_alive: Some(DEFAULT_KEEP_ALIVE),
        on_end: None,
    }
}

/// What [`Sse::on_end`] is called with.
type OnEnd = Box<dyn FnOnce(&MessageStream, SseEnd<'_>) + Send>;

/// How an [`Sse`] response ended, for [`Sse::on_end`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SseEnd<'a> {
    /// The stream's last event was sent.
    Complete,
    /// The stream failed after its head; an `event: error` was sent.
    Failed(&'a crate::Error),
    /// The body was dropped before the end: the caller hung up (or the server shut down).
    Dropped,
}

/// The response of [`sse`].
pub struct Sse {
    stream: MessageStream,
    keep_alive: Option<Duration>,
    on_end: Option<OnEnd>,
}

impl std::fmt::Debug for Sse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sse")
            .field("stream", &self.stream)
            .field("keep_alive", &self.keep_alive)
            .field("on_end", &self.on_end.is_some())
            .finish()
    }
}

impl Sse {
    /// The longest gap without a frame before a `: keep-alive` comment (`None`: never; a
    /// zero is taken as one millisecond).
    pub fn keep_alive(mut self, every: Option<Duration>) -> Self {
        self.keep_alive = every.map(|d| d.max(Duration::from_millis(1)));
        self
    }

    /// Calls `f` once when the response ends: after its last event, after a failure's
    /// `error` event, or when its body is dropped first (the caller hung up). `f` sees the
    /// stream as it ended ([`MessageStream::message`]: the usage the events reported so far),
    /// for accounting and access logs.
    pub fn on_end(mut self, f: impl FnOnce(&MessageStream, SseEnd<'_>) + Send + 'static) -> Self {
        self.on_end = Some(Box::new(f));
        self
    }
}

impl IntoResponse for Sse {
    fn into_response(self) -> Response {
        let request_id = self.stream.request_id().map(str::to_owned);
        let frames = Frames {
            stream: Some(self.stream),
            every: self.keep_alive,
            tick: None,
            on_end: self.on_end,
        };
        let mut resp = Response::new(Body::from_stream(frames));
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        set_request_id(&mut resp, request_id.as_deref());
        resp
    }
}

/// The frames of an [`Sse`] response.
struct Frames {
    /// `None` once it ended (after its last event, or the `error` event).
    stream: Option<MessageStream>,
    every: Option<Duration>,
    /// The keep-alive's timer, made at the first poll (in the runtime that serves the body,
    /// so making the response needs none).
    tick: Option<Pin<Box<Sleep>>>,
    on_end: Option<OnEnd>,
}

impl Frames {
    /// The stream ended (`how`): [`Sse::on_end`] is told, the stream dropped.
    fn end(&mut self, how: SseEnd<'_>) {
        if let (Some(stream), Some(f)) = (self.stream.as_ref(), self.on_end.take()) {
            f(stream, how);
        }
        self.stream = None;
    }
}

impl Drop for Frames {
    fn drop(&mut self) {
        self.end(SseEnd::Dropped);
    }
}

impl futures_core::Stream for Frames {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let Some(stream) = this.stream.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = match Pin::new(stream).poll_next(cx) {
            Poll::Ready(Some(Ok(event))) => event_frame(&event),
            Poll::Ready(Some(Err(e))) => {
                this.end(SseEnd::Failed(&e));
                error_frame(&ErrorReply::of(&e))
            }
            Poll::Ready(None) => {
                this.end(SseEnd::Complete);
                return Poll::Ready(None);
            }
            Poll::Pending => {
                let Some(every) = this.every else {
                    return Poll::Pending;
                };
                let tick = this
                    .tick
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
                if tick.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                tick.as_mut().reset(Instant::now() + every);
                // Registers the new deadline with this task.
                let _ = tick.as_mut().poll(cx);
                return Poll::Ready(Some(Ok(Bytes::from_static(b": keep-alive\n\n"))));
            }
        };
        if let (Some(tick), Some(every)) = (this.tick.as_mut(), this.every) {
            tick.as_mut().reset(Instant::now() + every);
        }
        Poll::Ready(Some(Ok(frame)))
    }
}

/// `event: {type}\ndata: {json}\n\n`.
fn event_frame(event: &StreamEvent) -> Bytes {
    let data = serde_json::to_string(event).unwrap_or_else(|_| "{}".to_owned());
    let name = event_name(&data);
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

/// The `type` of an event's JSON (its first field, as the events serialize).
fn event_name(data: &str) -> &str {
    data.strip_prefix("{\"type\":\"")
        .and_then(|rest| rest.split('"').next())
        .filter(|name| !name.is_empty() && !name.contains(['\n', '\r']))
        .unwrap_or("unknown")
}

/// The API's error shape as an `error` event.
fn error_frame(reply: &ErrorReply) -> Bytes {
    Bytes::from(format!("event: error\ndata: {}\n\n", reply.body()))
}

/// Passes the API's `request-id` back (what the SDKs report as the request's id).
fn set_request_id(resp: &mut Response, id: Option<&str>) {
    if let Some(v) = id.and_then(|id| HeaderValue::from_str(id).ok()) {
        resp.headers_mut().insert("request-id", v);
    }
}

/// The answer as JSON, with the API's `request-id` passed back.
impl<T: Serialize> IntoResponse for ApiResponse<T> {
    fn into_response(self) -> Response {
        let body = match serde_json::to_vec(&self) {
            Ok(b) => b,
            Err(_) => {
                let reply = ErrorReply {
                    status: http::StatusCode::INTERNAL_SERVER_ERROR,
                    error_type: "api_error",
                    message: "the answer could not be written as JSON".to_owned(),
                    retry_after: None,
                };
                return reply.into_response();
            }
        };
        let mut resp = Response::new(Body::from(body));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        set_request_id(&mut resp, self.request_id());
        resp
    }
}
