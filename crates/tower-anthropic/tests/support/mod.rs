//! Helpers shared by the integration tests (each test file uses a part of them).
#![allow(dead_code)]

use anthropic_mock::MockServer;
use tower_anthropic::error::TimeoutKind;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::retry::{JitterSource, RetryPolicy};
use tower_anthropic::stream::{MessageStream, StreamEvent};
use tower_anthropic::{Client, ClientBuilder, Error};

/// The key every test client sends; tests check it never shows.
pub(crate) const KEY: &str = "sk-ant-test-SECRET-0123456789";

/// A client builder for the mock at `s`, its requests tagged with `mock_key` (the mock's
/// script queue), jitter seeded with `seed`.
pub(crate) fn builder(s: &MockServer, mock_key: &str, seed: u64) -> ClientBuilder {
    Client::builder()
        .api_key(KEY)
        .base_url(s.url())
        .default_header("x-mock-key", mock_key)
        .retry_policy(RetryPolicy::new().jitter_source(JitterSource::seeded(seed)))
}

/// A small request.
pub(crate) fn req(max_tokens: u32) -> CreateMessageRequest {
    CreateMessageRequest::new("claude-test", max_tokens).user("Hello")
}

/// Which timeout an error is, if it is one.
pub(crate) fn timeout_kind(e: &Error) -> Option<TimeoutKind> {
    match e {
        Error::Timeout(t) => Some(t.kind()),
        _ => None,
    }
}

/// Every event of a stream, or the events and then the error.
pub(crate) async fn drain(mut s: MessageStream) -> (Vec<StreamEvent>, Option<Error>) {
    let mut events = Vec::new();
    while let Some(ev) = s.next().await {
        match ev {
            Ok(ev) => events.push(ev),
            Err(e) => return (events, Some(e)),
        }
    }
    (events, None)
}

/// The event types, in order.
pub(crate) fn names(events: &[StreamEvent]) -> Vec<&'static str> {
    events
        .iter()
        .map(|e| match e {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
            StreamEvent::Ping => "ping",
            _ => "other",
        })
        .collect()
}
