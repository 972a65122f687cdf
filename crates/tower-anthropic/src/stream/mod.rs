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
//!   path, and a concurrency permit is held until the stream ends;
//! - `message_stop` ends the stream (anything after it is ignored); what is held back before
//!   the first content is bounded (1,024 events, 1 MiB), and so is the time to the first
//!   content (pings are not progress: a `FirstContent` timeout, re-sent like any failure
//!   before content).
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
pub(crate) mod sse;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Response;
use http_body::Body;
use tokio::time::Sleep;

pub use events::{Delta, MessageAccumulator, MessageDeltaBody, StreamEvent};

use crate::body::ResponseBody;
use crate::breaker::StreamVerdict;
use crate::error::{Error, StreamError, StreamFailure, TimeoutError, TimeoutKind};
use crate::fallback::FallbackDepth;
use crate::messages::{MAX_EVENT_JSON_VALUES, Message};
use crate::pacing::Reservation;
use crate::retry::{AttemptIndex, AttemptLog, Attempts, Decision, RetryPolicy, StreamResend};
pub(crate) use events::parse as parse_event;
use sse::{SseDecoder, SseEvent};

/// Events held back before the first content at most (pings included).
const MAX_HELD_EVENTS: usize = 1024;
/// Bytes of event data before the first content at most.
const MAX_HELD_BYTES: usize = 1024 * 1024;

type Connecting = Pin<Box<dyn Future<Output = Result<Response<ResponseBody>, Error>> + Send>>;

/// Sends the streaming request again through a clone of the stack (for re-sends before
/// content), as attempt `AttemptIndex` after the errors of `AttemptLog`. It holds what the
/// request is made from (the shared JSON bytes), not a copy of the request.
pub(crate) type Connect = Box<dyn FnMut(AttemptIndex, AttemptLog) -> Connecting + Send>;

/// A stream of typed events; see the [module docs](self).
///
/// One type whatever stack it came through: the stack's response body is boxed, so a stream
/// can be stored and moved between tasks without naming the stack's types.
pub struct MessageStream {
    /// What a re-send needs (a clone of the stack, the request), until the first content:
    /// then it is dropped, so a long stream does not hold its request (the whole prompt).
    resend_with: Option<Connect>,
    /// The stack's retry policy (from the response), when re-sends are allowed.
    resend: Option<RetryPolicy>,
    resend_allowed: bool,
    state: State,
    decoder: SseDecoder,
    raw: Vec<SseEvent>,
    pending: VecDeque<Result<StreamEvent, Error>>,
    held: Vec<StreamEvent>,
    /// Bytes of event data seen before the first content (pings included).
    held_bytes: usize,
    /// The time allowed before the first content (pings are not progress).
    first_content_limit: Option<Duration>,
    first_content: Option<Pin<Box<Sleep>>>,
    content_started: bool,
    saw_stop: bool,
    attempts: u32,
    fallback_depth: u32,
    earlier: Vec<Error>,
    request_id: Option<String>,
    accumulator: MessageAccumulator,
    /// The quota reservation of the current attempt, settled at `message_stop`.
    settlement: Option<Reservation>,
    /// The circuit breaker's permit of the current attempt, told how it ended.
    verdict: Option<StreamVerdict>,
}

enum State {
    Waiting(Pin<Box<Sleep>>),
    Connecting(Connecting),
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
    /// The stream of the answer `first` (the response head of the first attempt, or the
    /// error that ended the stack's own retries); `connect` sends it again.
    ///
    /// Built once the answer is in: while the request is in flight (as long as it waits for
    /// the quota and for the server) the caller's future holds only the request, not the
    /// stream's buffers and state.
    pub(crate) fn started(
        first: Result<Response<ResponseBody>, Error>,
        connect: Connect,
        resend_allowed: bool,
        first_content_limit: Option<Duration>,
    ) -> Result<MessageStream, Error> {
        let resp = first?;
        let mut s = MessageStream {
            resend_with: resend_allowed.then_some(connect),
            resend: None,
            resend_allowed,
            state: State::Done,
            decoder: SseDecoder::default(),
            raw: Vec::new(),
            pending: VecDeque::new(),
            held: Vec::new(),
            held_bytes: 0,
            first_content_limit,
            first_content: None,
            content_started: false,
            saw_stop: false,
            attempts: 0,
            fallback_depth: 0,
            earlier: Vec::new(),
            request_id: None,
            accumulator: MessageAccumulator::new(),
            settlement: None,
            verdict: None,
        };
        s.on_response(resp)?;
        Ok(s)
    }

    fn reconnect(&mut self) -> Connecting {
        let Some(connect) = &mut self.resend_with else {
            // `fail` only waits to re-send while it has what a re-send needs.
            let e = Error::Stream(Box::new(StreamError::new(
                StreamFailure::Truncated,
                "nothing to re-send".to_owned(),
            )));
            return Box::pin(std::future::ready(Err(e)));
        };
        // Attempts continue counting across re-sends (and the retry-count header with them),
        // and so does the record of what the earlier ones met.
        connect(
            AttemptIndex(self.attempts),
            AttemptLog(self.earlier.clone()),
        )
    }

    fn on_response(&mut self, mut resp: Response<ResponseBody>) -> Result<(), Error> {
        let ext = resp.extensions_mut();
        self.attempts = ext.get::<Attempts>().map_or(self.attempts + 1, |a| a.0);
        if let Some(AttemptLog(log)) = ext.remove::<AttemptLog>() {
            self.earlier = log;
        }
        if let Some(StreamResend(policy)) = ext.remove::<StreamResend>() {
            self.resend = self.resend_allowed.then_some(policy);
        }
        self.settlement = ext.remove::<Reservation>();
        self.verdict = ext.remove::<StreamVerdict>();
        self.fallback_depth = ext.get::<FallbackDepth>().map_or(0, |d| d.0);
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
            let mut e = Error::Stream(Box::new(e));
            e.set_trail(self.attempts, &self.earlier);
            return Err(e);
        }
        self.decoder = SseDecoder::default();
        self.held.clear();
        self.held_bytes = 0;
        self.first_content = self
            .first_content_limit
            .filter(|_| !self.content_started)
            .map(|d| Box::pin(tokio::time::sleep(d)));
        self.saw_stop = false;
        self.state = State::Reading(resp.into_body());
        Ok(())
    }

    /// The answer is complete: settle its quota reservation to the usage it reported.
    fn settle(&mut self) {
        if let Some(v) = self.verdict.take() {
            v.report(None);
        }
        if let (Some(s), Some(m)) = (self.settlement.take(), self.accumulator.message()) {
            s.settle(m.usage.input_tokens, m.usage.output_tokens);
        }
    }

    /// The `request-id` of the (latest) response.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// Attempts made so far (re-sends before content included).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// How far down its fallback chain the stream was answered (0: the requested model; see
    /// [`crate::fallback`]).
    pub fn fallback_depth(&self) -> u32 {
        self.fallback_depth
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
        if raw.is("error") {
            return Err(crate::classify::stream_error_event(raw.data()));
        }
        let event = match events::parse(&raw) {
            Ok(ev) => ev,
            Err(events::ParseError::TooManyValues) => {
                let msg = format!(
                    "{} event holds more than {MAX_EVENT_JSON_VALUES} JSON values",
                    crate::text::excerpt(raw.event().as_bytes(), 40)
                );
                return Err(Error::Stream(Box::new(StreamError::new(
                    StreamFailure::TooLarge,
                    msg,
                ))));
            }
            Err(events::ParseError::Json(e)) => {
                let msg = format!(
                    "{} event: {}",
                    crate::text::excerpt(raw.event().as_bytes(), 40),
                    crate::text::excerpt(raw.data(), 120)
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
                self.held_bytes += raw.data().len();
                if self.held.len() >= MAX_HELD_EVENTS || self.held_bytes > MAX_HELD_BYTES {
                    let msg = format!(
                        "{} events ({} bytes) before the first content: more than the {} events or {} bytes held back",
                        self.held.len() + 1,
                        self.held_bytes,
                        MAX_HELD_EVENTS,
                        MAX_HELD_BYTES
                    );
                    return Err(Error::Stream(Box::new(StreamError::new(
                        StreamFailure::TooLarge,
                        msg,
                    ))));
                }
                self.held.push(event);
                return Ok(());
            }
            self.content_started = true;
            self.first_content = None;
            // Never re-sent from here on.
            self.resend_with = None;
            self.resend = None;
            for ev in std::mem::take(&mut self.held) {
                self.hand_over(ev)?;
            }
        }
        self.hand_over(event)
    }

    fn hand_over(&mut self, ev: StreamEvent) -> Result<(), Error> {
        self.accumulator.apply(&ev)?;
        self.pending.push_back(Ok(ev));
        Ok(())
    }

    /// A failure mid-stream: re-send if nothing was handed over and the stack's retry policy
    /// says so (its own decision code and budget), otherwise surface it.
    fn fail(&mut self, mut err: Error) {
        if let Some(v) = self.verdict.take() {
            v.report(Some(&err));
        }
        if let Error::Stream(s) = &mut err {
            s.set_request_id(self.request_id.clone());
            s.set_after_content(self.content_started);
        }
        if !self.content_started && self.resend_with.is_some() {
            if let Some(policy) = &self.resend {
                if let Decision::Retry { wait, .. } = policy.decide(self.attempts, None, &err) {
                    tracing::warn!(attempt = self.attempts, wait = ?wait, reason = %err,
                        request_id = self.request_id.as_deref(), "stream failed before content: re-sending");
                    self.earlier.push(err);
                    self.state = State::Waiting(Box::pin(tokio::time::sleep(wait)));
                    return;
                }
            }
        }
        err.set_trail(self.attempts, &self.earlier);
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
                    self.state = State::Connecting(self.reconnect());
                }
                State::Connecting(fut) => match std::task::ready!(fut.as_mut().poll(cx)) {
                    Ok(resp) => {
                        if let Err(e) = self.on_response(resp) {
                            self.fail(e);
                        }
                    }
                    Err(e) => {
                        // The stack already retried what it could before a response (its
                        // record continues ours).
                        self.attempts = self.attempts.max(e.attempts());
                        self.pending.push_back(Err(e));
                        self.state = State::Done;
                    }
                },
                State::Reading(_)
                    if self
                        .first_content
                        .as_mut()
                        .is_some_and(|s| s.as_mut().poll(cx).is_ready()) =>
                {
                    self.first_content = None;
                    let limit = self.first_content_limit;
                    let e = TimeoutError::new(TimeoutKind::FirstContent, limit);
                    self.fail(Error::Timeout(e));
                }
                State::Reading(body) => match std::task::ready!(Pin::new(body).poll_frame(cx)) {
                    Some(Ok(frame)) => {
                        let Ok(data) = frame.into_data() else {
                            continue;
                        };
                        let mut raw = std::mem::take(&mut self.raw);
                        let fed = self.decoder.feed_bytes(&data, &mut raw);
                        let mut failed = None;
                        for ev in raw.drain(..) {
                            if let Err(e) = self.handle(ev) {
                                failed = Some(e);
                                break;
                            }
                            if self.saw_stop {
                                break;
                            }
                        }
                        raw.clear();
                        self.raw = raw;
                        if self.saw_stop {
                            // `message_stop` ends the answer: whatever follows is ignored,
                            // and a server that keeps the connection open cannot turn a
                            // complete answer into an idle timeout.
                            self.state = State::Done;
                            self.settle();
                            continue;
                        }
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
                            self.settle();
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
