//! Streaming through the default `Client` against the mock, and through a fake stack for
//! what the mock does not send. Paused time.

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::json;
use tower::util::BoxCloneSyncService;
use tower_anthropic::__private::SseDecoder;
use tower_anthropic::body::ResponseBody;
use tower_anthropic::error::TimeoutKind;
use tower_anthropic::messages::{CreateMessageRequest, MessagesService, StopReason};
use tower_anthropic::stream::{Delta, StreamEvent};
use tower_anthropic::transport::{ApiKey, Endpoint};
use tower_anthropic::{ApiErrorKind, Client, Error};

mod support;
use support::{drain, names};

fn client(s: &MockServer, key: &str) -> Client {
    support::builder(s, key, 11)
        .stream_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn req() -> CreateMessageRequest {
    CreateMessageRequest::new("claude-test", 30).user("Tell me something")
}

/// A stream read to its end: the accumulated message.
async fn whole_message(c: &Client) -> tower_anthropic::Message {
    let stream = c.messages().stream(req()).await.unwrap();
    stream.final_message().await.unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_stream_yields_typed_events_and_the_final_message() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "none");
    let stream = c.messages().stream(req()).await.unwrap();
    assert!(stream.request_id().unwrap().starts_with("req_"));
    let (events, err) = drain(stream).await;
    assert!(err.is_none(), "{err:?}");
    let n = names(&events);
    assert_eq!(&n[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(
        &n[n.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let text: String = events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ContentBlockDelta {
                delta: Delta::TextDelta { text },
                ..
            } => Some(text.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(text.split(' ').count(), 30);
    // final_message accumulates the same.
    let m = whole_message(&c).await;
    assert_eq!(m.usage.output_tokens, 30);
    assert_eq!(
        m.stop_reason,
        Some(StopReason::MaxTokens),
        "30 tokens asked, 48 configured"
    );
    assert_eq!(m.text().split(' ').count(), 30);
    assert_eq!(
        s.log().last().unwrap().headers["x-stainless-retry-count"],
        "0"
    );
}

#[tokio::test(start_paused = true)]
async fn an_error_event_before_content_is_retried_transparently() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "e");
    // message_start, content_block_start, then `event: error` (overloaded).
    s.script(
        "e",
        [ScriptEntry::StreamError {
            after: 2,
            error_type: None,
        }],
    );
    let stream = c.messages().stream(req()).await.unwrap();
    let (events, err) = drain(stream).await;
    assert!(err.is_none(), "{err:?}");
    let n = names(&events);
    assert_eq!(
        n.iter().filter(|x| **x == "message_start").count(),
        1,
        "nothing handed over twice"
    );
    assert_eq!(n.iter().filter(|x| **x == "content_block_start").count(), 1);
    assert_eq!(*n.last().unwrap(), "message_stop");
    let counts: Vec<String> = s
        .log()
        .iter()
        .map(|e| e.headers["x-stainless-retry-count"].clone())
        .collect();
    assert_eq!(counts, ["0", "1"]);
}

#[tokio::test(start_paused = true)]
async fn an_error_after_content_is_a_typed_overloaded_error_and_never_resent() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "a");
    s.script(
        "a",
        [ScriptEntry::StreamError {
            after: 5,
            error_type: None,
        }],
    );
    let stream = c.messages().stream(req()).await.unwrap();
    let rid = stream.request_id().unwrap().to_owned();
    let (events, err) = drain(stream).await;
    let err = err.expect("an error");
    assert!(events.iter().any(StreamEvent::is_content));
    assert_eq!(err.kind(), Some(ApiErrorKind::Overloaded));
    assert_eq!(err.request_id(), Some(rid.as_str()));
    match &err {
        Error::Stream(se) => {
            assert!(se.is_error_event());
            assert_eq!(se.error_type(), Some("overloaded_error"));
            assert!(se.after_content());
        }
        other => panic!("expected a stream error, got {other:?}"),
    }
    assert!(!err.is_retryable());
    assert!(
        err.to_string()
            .starts_with("overloaded (stream overloaded_error): Overloaded [request req_"),
        "{err}"
    );
    assert_eq!(
        s.stats().requests,
        1,
        "exactly one request reached the mock"
    );
}

#[tokio::test(start_paused = true)]
async fn truncated_streams_are_errors() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "t");
    s.script("t", [ScriptEntry::StreamCut { after: 6 }]);
    let (events, err) = drain(c.messages().stream(req()).await.unwrap()).await;
    assert!(events.iter().any(StreamEvent::is_content));
    match err {
        Some(Error::Stream(se)) => assert!(se.is_truncated()),
        other => panic!("expected a truncated stream, got {other:?}"),
    }
    assert_eq!(s.stats().requests, 1);
    // Cut before any content: re-sent, and the answer is whole.
    s.reset();
    s.script("t", [ScriptEntry::StreamCut { after: 1 }]);
    let m = whole_message(&c).await;
    assert_eq!(m.usage.output_tokens, 30);
    assert_eq!(s.stats().requests, 2);
}

#[tokio::test(start_paused = true)]
async fn an_idle_stall_ends_with_the_idle_timeout() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "i");
    s.script(
        "i",
        [ScriptEntry::StreamStall {
            after: 5,
            ms: 600_000,
        }],
    );
    let (events, err) = drain(c.messages().stream(req()).await.unwrap()).await;
    assert!(events.iter().any(StreamEvent::is_content));
    match err {
        Some(Error::Timeout(t)) => assert_eq!(t.kind(), TimeoutKind::StreamIdle),
        other => panic!("expected the idle timeout, got {other:?}"),
    }
    // Before any content the stall is retried.
    s.reset();
    s.script(
        "i",
        [ScriptEntry::StreamStall {
            after: 1,
            ms: 600_000,
        }],
    );
    let m = whole_message(&c).await;
    assert_eq!(m.usage.output_tokens, 30);
}

#[tokio::test(start_paused = true)]
async fn errors_before_the_stream_take_the_normal_retry_path() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "b");
    s.script(
        "b",
        [
            ScriptEntry::status(529),
            ScriptEntry::status_with_headers(429, [("retry-after", "1")]),
        ],
    );
    let stream = c.messages().stream(req()).await.unwrap();
    assert_eq!(stream.attempts(), 3);
    stream.final_message().await.unwrap();
    s.script("b", [ScriptEntry::status(400)]);
    let e = c.messages().stream(req()).await.unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::BadRequest));
    // The stream holds its concurrency permit until it ends.
    let c = Client::builder()
        .api_key("k")
        .base_url(s.url())
        .concurrency_limit(1)
        .build()
        .unwrap();
    let mut stream = c.messages().stream(req()).await.unwrap();
    assert_eq!(c.available_permits(), 0);
    while let Some(ev) = stream.next().await {
        ev.unwrap();
    }
    assert_eq!(c.available_permits(), 1);
}

#[tokio::test]
async fn the_mock_stream_split_at_every_byte_decodes_the_same() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "none");
    // Fetch the raw bytes of one stream.
    let svc = c.service();
    let body = json!({"model": "claude-m", "max_tokens": 12, "stream": true, "messages": [{"role": "user", "content": "x"}]});
    let http_req = svc
        .endpoint()
        .post("/v1/messages", Bytes::from(body.to_string()));
    // Sent through the plain (buffered) path: the raw event-stream bytes come back whole.
    let resp = tower::ServiceExt::oneshot(svc.into_inner(), http_req)
        .await
        .unwrap();
    let raw = resp.into_body().collect().await.unwrap().to_bytes();
    let decode = |chunks: &[&[u8]]| -> Vec<StreamEvent> {
        let mut d = SseDecoder::default();
        let mut out = Vec::new();
        for ch in chunks {
            d.feed(ch, &mut out).unwrap();
        }
        out.iter()
            .map(|e| serde_json::from_slice(e.data()).unwrap())
            .collect()
    };
    let whole = decode(&[&raw]);
    assert_eq!(*names(&whole).last().unwrap(), "message_stop");
    for i in 0..=raw.len() {
        assert_eq!(decode(&[&raw[..i], &raw[i..]]), whole, "split at {i}");
    }
}

/// A stack answering every request with this event-stream body.
fn fake_stack(body: &'static [u8]) -> tower_anthropic::client::HttpStack {
    let svc = tower::service_fn(move |_req: http::Request<Full<Bytes>>| async move {
        let resp = http::Response::builder()
            .header("content-type", "text/event-stream")
            .header("request-id", "req_fake")
            .body(
                Full::new(Bytes::from_static(body))
                    .map_err(|e| match e {})
                    .boxed_unsync(),
            )
            .unwrap();
        Ok::<http::Response<ResponseBody>, Error>(resp)
    });
    BoxCloneSyncService::new(svc)
}

fn endpoint() -> Endpoint {
    Endpoint::new("http://127.0.0.1:9", ApiKey::new("k").unwrap()).unwrap()
}

#[tokio::test]
async fn an_oversized_line_is_bounded_and_unknown_events_are_kept() {
    static HUGE: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let huge = HUGE.get_or_init(|| {
        let mut v = b"event: message_start\ndata: ".to_vec();
        v.extend(std::iter::repeat_n(b'x', 3 << 20));
        v.extend_from_slice(b"\n\n");
        v
    });
    let stream = MessagesService::new(fake_stack(huge), endpoint())
        .stream(req())
        .await
        .unwrap();
    let (events, err) = drain(stream).await;
    assert!(events.is_empty());
    match err {
        Some(Error::Stream(se)) => assert!(se.is_too_large()),
        other => panic!("expected a too-large error, got {other:?}"),
    }

    let body: &'static [u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":0}}}\n\n\
event: shiny_new_event\ndata: {\"type\":\"shiny_new_event\",\"n\":1}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"ok\"}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let stream = MessagesService::new(fake_stack(body), endpoint())
        .stream(req())
        .await
        .unwrap();
    let (events, err) = drain(stream).await;
    assert!(err.is_none());
    assert_eq!(
        events[1],
        StreamEvent::Unknown(json!({"type": "shiny_new_event", "n": 1}))
    );
    assert_eq!(events.len(), 5);

    // Garbage data is a typed error, not a panic.
    let stream = MessagesService::new(
        fake_stack(b"event: content_block_delta\ndata: {not json\n\n"),
        endpoint(),
    )
    .stream(req())
    .await
    .unwrap();
    let (_, err) = drain(stream).await;
    assert!(matches!(err, Some(Error::Stream(se)) if se.is_invalid_event()));
}

/// A body that sends `data`, then neither ends nor sends anything else (a server keeping the
/// connection open).
struct ThenSilence(Option<Bytes>);

impl http_body::Body for ThenSilence {
    type Data = Bytes;
    type Error = Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Error>>> {
        match self.0.take() {
            Some(b) => std::task::Poll::Ready(Some(Ok(http_body::Frame::data(b)))),
            None => std::task::Poll::Pending,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn message_stop_ends_the_stream_whatever_follows_or_stays_open() {
    let body: &'static [u8] = b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":0}}}\n\n\
event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"done\"}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n\
event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\" and more\"}}\n\n\
event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    let svc = tower::service_fn(move |_req: http::Request<Full<Bytes>>| async move {
        let resp = http::Response::builder()
            .header("content-type", "text/event-stream")
            .body(ThenSilence(Some(Bytes::from_static(body))).boxed_unsync())
            .unwrap();
        Ok::<http::Response<ResponseBody>, Error>(resp)
    });
    let stream = MessagesService::new(BoxCloneSyncService::new(svc), endpoint())
        .stream(req())
        .await
        .unwrap();
    let message = tokio::time::timeout(Duration::from_secs(60), stream.final_message())
        .await
        .expect("the stream ends at message_stop, not at a timeout")
        .unwrap();
    assert_eq!(
        message.text(),
        "done",
        "nothing after message_stop is appended"
    );
}

#[tokio::test]
async fn a_tool_call_whole_and_streamed_reads_the_same() {
    use tower_anthropic::messages::{ContentBlock, StopReason, Tool};
    let s = anthropic_mock::MockServer::start(anthropic_mock::MockConfig::default())
        .await
        .unwrap();
    let c = support::builder(&s, "tools", 1).build().unwrap();
    let mut req = support::req(64);
    req.tools = Some(vec![Tool {
        name: "get_weather".into(),
        description: None,
        input_schema: serde_json::json!({"type": "object", "properties": {
            "city": {"type": "string"}, "days": {"type": "integer"}}}),
        extra: Default::default(),
    }]);
    let whole = c.messages().create(req.clone()).await.unwrap();
    let streamed = c
        .messages()
        .stream(req)
        .await
        .unwrap()
        .final_message()
        .await
        .unwrap();
    for m in [&*whole, &streamed] {
        assert_eq!(m.stop_reason, Some(StopReason::ToolUse));
        match &m.content[1] {
            ContentBlock::ToolUse { name, input, .. } => {
                assert_eq!(name, "get_weather");
                assert_eq!(input["city"], "example");
                assert_eq!(input["days"], 1);
            }
            b => panic!("{b:?}"),
        }
        assert!(
            m.text().ends_with('.'),
            "the text ends a sentence: {}",
            m.text()
        );
    }
}
