//! Streaming: typed server-sent events through the whole stack.
//!
//! [`MessageStream`] yields `Result<StreamEvent, Error>`:
//!
//! - events are typed ([`StreamEvent`]); unknown event types are kept, not dropped;
//! - `event: error` becomes [`Error::Stream`] typed by its `error.type` (an
//!   `overloaded_error` is an `Overloaded` error with the request id), and a stream that ends
//!   without `message_stop` is an error too, never a silently short answer;
//! - a stream that fails (error event, reset, idle timeout, cut off) before any content
//!   delta was handed over is re-sent under the same retry policy and budget, transparently:
//!   events before the first content are held back until it arrives, so nothing is handed
//!   over twice. Once content has been handed over, errors surface and the request is never
//!   re-sent (a silent re-POST would burn tokens);
//! - errors before the stream starts (a 429 or 529 to the request) take the normal retry
//!   path, and a concurrency permit is held until the stream ends.
//!
//! ```no_run
//! use tower_anthropic::{Client, messages::CreateMessageRequest, stream::{Delta, StreamEvent}};
//!
//! # async fn run() -> Result<(), tower_anthropic::Error> {
//! # let client: Client = todo!();
//! let req = CreateMessageRequest::new("claude-sonnet-4-6", 1024).user("Tell me a story");
//! let mut stream = client.messages().stream(req).await?;
//! while let Some(event) = stream.next().await {
//!     if let StreamEvent::ContentBlockDelta { delta: Delta::TextDelta { text }, .. } = event? {
//!         print!("{text}");
//!     }
//! }
//! let message = stream.message().expect("a complete message");
//! println!("\n{} output tokens", message.usage.output_tokens);
//! # Ok(()) }
//! ```

mod events;
pub mod sse;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::Response;
use http_body::Body;
use tokio::time::Sleep;
use tower::ServiceExt;

pub use events::{Delta, MessageAccumulator, MessageDeltaBody, StreamEvent};

use crate::body::{ResponseBody, ResponseMode};
use crate::client::HttpStack;
use crate::error::{Error, InvalidRequestError, StreamError, StreamFailure};
use crate::messages::{Attempts, CreateMessageRequest, Message};
use crate::retry::{AttemptIndex, RetryPolicy};
use crate::transport::Endpoint;
use sse::{SseDecoder, SseEvent};

type Connecting = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Error>> + Send>>;

/// A stream of typed events; see the [module docs](self).
pub struct MessageStream {
    stack: HttpStack,
    endpoint: Endpoint,
    body: Bytes,
    retry: Option<RetryPolicy>,
    state: State,
    decoder: SseDecoder,
    raw: Vec<SseEvent>,
    pending: VecDeque<Result<StreamEvent, Error>>,
    held: Vec<StreamEvent>,
    content_started: bool,
    saw_stop: bool,
    attempts: u32,
    request_id: Option<String>,
    accumulator: MessageAccumulator,
}

enum State {
    Connecting(Connecting),
    Waiting(Pin<Box<Sleep>>),
    Reading(ResponseBody),
    Done,
}

impl std::fmt::Debug for MessageStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStream")
            .field("request_id", &self.request_id)
            .field("attempts", &self.attempts)
            .field("content_started", &self.content_started)
            .finish_non_exhaustive()
    }
}

impl MessageStream {
    /// Sends `req` as a stream through `stack` and waits for the response head; errors
    /// before the stream starts (after the stack's own retries) are returned here. `retry`
    /// re-sends a stream that fails before its first content (`None`: never).
    pub async fn start(
        stack: HttpStack,
        endpoint: Endpoint,
        mut req: CreateMessageRequest,
        retry: Option<RetryPolicy>,
    ) -> Result<MessageStream, Error> {
        req.stream = Some(true);
        let body = serde_json::to_vec(&req).map_err(|e| {
            Error::InvalidRequest(InvalidRequestError::new(format!(
                "cannot serialize the request: {e}"
            )))
        })?;
        let mut s = MessageStream {
            stack,
            endpoint,
            body: Bytes::from(body),
            retry,
            state: State::Done,
            decoder: SseDecoder::default(),
            raw: Vec::new(),
            pending: VecDeque::new(),
            held: Vec::new(),
            content_started: false,
            saw_stop: false,
            attempts: 0,
            request_id: None,
            accumulator: MessageAccumulator::new(),
        };
        let resp = s.connect().await?;
        s.on_response(resp)?;
        Ok(s)
    }

    fn connect(&self) -> Connecting {
        let mut req = self.endpoint.post("/v1/messages", self.body.clone());
        req.headers_mut().insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("text/event-stream"),
        );
        req.extensions_mut().insert(ResponseMode::Streaming);
        // Attempts continue counting across re-sends (and the retry-count header with them).
        req.extensions_mut().insert(AttemptIndex(self.attempts));
        Box::pin(self.stack.clone().oneshot(req))
    }

    fn on_response(&mut self, resp: Response<ResponseBody>) -> Result<(), Error> {
        self.attempts = resp
            .extensions()
            .get::<Attempts>()
            .map_or(self.attempts + 1, |a| a.0);
        self.request_id = crate::classify::parse_request_id(resp.headers());
        let is_sse = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if !is_sse {
            let mut e = StreamError::new(
                StreamFailure::InvalidEvent,
                "the response is not an event stream",
            );
            e.set_request_id(self.request_id.clone());
            return Err(Error::Stream(Box::new(e)));
        }
        self.decoder = SseDecoder::default();
        self.held.clear();
        self.saw_stop = false;
        self.state = State::Reading(resp.into_body());
        Ok(())
    }

    /// The `request-id` of the (latest) response.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Attempts made so far (re-sends before content included).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The message accumulated from the events handed over so far.
    pub fn message(&self) -> Option<&Message> {
        self.accumulator.message()
    }

    /// The next event.
    pub async fn next(&mut self) -> Option<Result<StreamEvent, Error>> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    /// Reads the stream to its end and returns the whole message (text joined, tool input
    /// assembled, usage merged), or the first error.
    pub async fn final_message(mut self) -> Result<Message, Error> {
        while let Some(ev) = self.next().await {
            ev?;
        }
        self.accumulator.into_message().ok_or_else(|| {
            Error::Stream(Box::new(StreamError::new(
                StreamFailure::Truncated,
                "no message_start",
            )))
        })
    }

    /// Handles one decoded event: typed, held back before content, or failed.
    fn handle(&mut self, raw: SseEvent) -> Result<(), Error> {
        if raw.event == "error" {
            let body = crate::classify::ErrorBody::parse(raw.data.as_bytes());
            let msg = body
                .message
                .unwrap_or_else(|| crate::error::excerpt(raw.data.as_bytes(), 200));
            let mut e = StreamError::error_event(body.error_type, msg);
            e.set_request_id(body.request_id);
            return Err(Error::Stream(Box::new(e)));
        }
        let event: StreamEvent = match serde_json::from_str(&raw.data) {
            Ok(ev) => ev,
            Err(e) => {
                let msg = format!(
                    "{} event: {}",
                    raw.event,
                    crate::error::excerpt(raw.data.as_bytes(), 120)
                );
                return Err(Error::Stream(Box::new(
                    StreamError::new(StreamFailure::InvalidEvent, msg).with_source(e),
                )));
            }
        };
        if matches!(event, StreamEvent::MessageStop) {
            self.saw_stop = true;
        }
        if !self.content_started {
            let starts = event.is_content()
                || matches!(
                    event,
                    StreamEvent::MessageDelta { .. } | StreamEvent::MessageStop
                );
            if !starts {
                self.held.push(event);
                return Ok(());
            }
            self.content_started = true;
            for ev in std::mem::take(&mut self.held) {
                self.hand_over(ev);
            }
        }
        self.hand_over(event);
        Ok(())
    }

    fn hand_over(&mut self, ev: StreamEvent) {
        self.accumulator.apply(&ev);
        self.pending.push_back(Ok(ev));
    }

    /// A failure mid-stream: re-send if nothing was handed over and the policy allows,
    /// otherwise surface it.
    fn fail(&mut self, mut err: Error) {
        if !self.content_started {
            if let Some(wait) = self
                .retry
                .as_ref()
                .and_then(|p| p.stream_retry(self.attempts, &err))
            {
                tracing::warn!(attempt = self.attempts, wait = ?wait, reason = %err,
                    request_id = self.request_id.as_deref(), "stream failed before content: re-sending");
                self.state = State::Waiting(Box::pin(tokio::time::sleep(wait)));
                return;
            }
        }
        if let Error::Stream(s) = &mut err {
            s.set_request_id(self.request_id.clone());
            s.set_after_content(self.content_started);
        }
        err.set_attempts(self.attempts);
        self.pending.push_back(Err(err));
        self.state = State::Done;
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<StreamEvent, Error>>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Poll::Ready(Some(ev));
            }
            match &mut self.state {
                State::Done => return Poll::Ready(None),
                State::Waiting(sleep) => {
                    std::task::ready!(sleep.as_mut().poll(cx));
                    self.state = State::Connecting(self.connect());
                }
                State::Connecting(fut) => match std::task::ready!(fut.as_mut().poll(cx)) {
                    Ok(resp) => {
                        if let Err(e) = self.on_response(resp) {
                            self.fail(e);
                        }
                    }
                    Err(e) => {
                        // The stack already retried what it could before a response.
                        self.attempts = self.attempts.max(e.attempts());
                        self.pending.push_back(Err(e));
                        self.state = State::Done;
                    }
                },
                State::Reading(body) => match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let mut raw = std::mem::take(&mut self.raw);
                        let fed = self.decoder.feed(&data, &mut raw);
                        let mut failed = None;
                        for ev in raw.drain(..) {
                            if let Err(e) = self.handle(ev) {
                                failed = Some(e);
                                break;
                            }
                        }
                        raw.clear();
                        self.raw = raw;
                        if let Err(too_large) = fed {
                            let msg = too_large.to_string();
                            let e = StreamError::new(StreamFailure::TooLarge, msg)
                                .with_source(too_large);
                            failed = failed.or(Some(Error::Stream(Box::new(e))));
                        }
                        if let Some(e) = failed {
                            self.fail(e);
                        }
                    }
                    Some(Err(e)) => self.fail(e),
                    None => {
                        if self.saw_stop {
                            // Nothing held back can remain: message_stop flushes it.
                            self.state = State::Done;
                        } else {
                            let what = if self.decoder.has_partial() {
                                "mid-event"
                            } else {
                                "between events"
                            };
                            let e = StreamError::new(
                                StreamFailure::Truncated,
                                format!("the body ended {what}"),
                            );
                            self.fail(Error::Stream(Box::new(e)));
                        }
                    }
                },
            }
        }
    }
}

impl futures_core::Stream for MessageStream {
    type Item = Result<StreamEvent, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_event(cx)
    }
}
