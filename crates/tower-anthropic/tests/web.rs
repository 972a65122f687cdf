//! `tower_anthropic::web` (feature `axum`): answers as JSON, streams as server-sent events with
//! keep-alive and an `event: error` in the API's shape, and a caller who hangs up freeing the
//! upstream stream and its permit. Paused time.
#![cfg(feature = "axum")]

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use axum_core::response::IntoResponse;
use http_body_util::BodyExt;
use tower_anthropic::{Client, web};

mod support;

fn client(s: &MockServer, key: &str) -> Client {
    support::builder(s, key, 3)
        .concurrency_limit(1)
        .stream_idle_timeout(Duration::from_secs(3600))
        .build()
        .unwrap()
}

/// The frames of an SSE body, one `String` per frame.
async fn frames(resp: axum_core::response::Response) -> Vec<String> {
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec())
        .unwrap()
        .split("\n\n")
        .filter(|f| !f.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(start_paused = true)]
async fn an_answer_is_json_with_its_request_id() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "json");
    let answer = c.messages().create(support::req(16)).await;
    let id = answer.as_ref().unwrap().request_id().unwrap().to_owned();
    let resp = answer.into_response();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["request-id"], id.as_str());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    // Serialize alone gives the same JSON.
    let again = c.messages().create(support::req(16)).await.unwrap();
    assert_eq!(serde_json::to_value(&again).unwrap()["type"], "message");
}

#[tokio::test(start_paused = true)]
async fn a_stream_is_one_frame_per_event() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "sse");
    let stream = c.messages().stream(support::req(16)).await.unwrap();
    let resp = web::sse(stream).into_response();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    assert!(resp.headers().contains_key("request-id"));
    let frames = frames(resp).await;
    assert!(
        frames[0].starts_with("event: message_start\ndata: {"),
        "{frames:?}"
    );
    assert!(
        frames.last().unwrap().starts_with("event: message_stop\n"),
        "{frames:?}"
    );
    for f in &frames {
        let (name, data) = f.split_once('\n').unwrap();
        let v: serde_json::Value =
            serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
        assert_eq!(
            name.strip_prefix("event: ").unwrap(),
            v["type"].as_str().unwrap()
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_failure_after_the_head_is_an_error_event_in_the_api_shape() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "err");
    s.script(
        "err",
        [ScriptEntry::StreamError {
            after: 5,
            error_type: Some("overloaded_error".into()),
        }],
    );
    let stream = c.messages().stream(support::req(64)).await.unwrap();
    let frames = frames(web::sse(stream).into_response()).await;
    let last = frames.last().unwrap();
    let data = last.strip_prefix("event: error\ndata: ").expect(last);
    let v: serde_json::Value = serde_json::from_str(data).unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "overloaded_error");
    // The caller's message is the library's, not the upstream's.
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("retry later"), "{msg}");
    assert!(
        !last.contains("req_"),
        "no upstream request id in the event: {last}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_quiet_stream_sends_keep_alives_and_a_caller_who_leaves_frees_the_permit() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "quiet");
    s.script(
        "quiet",
        // Past the first content: MessageStream holds nothing back any more.
        [ScriptEntry::StreamStall {
            after: 6,
            ms: 600_000,
        }],
    );
    let stream = c.messages().stream(support::req(64)).await.unwrap();
    assert_eq!(c.available_permits(), 0, "the stream holds the only permit");
    let resp = web::sse(stream)
        .keep_alive(Some(Duration::from_secs(10)))
        .into_response();
    let mut body = resp.into_body();
    let mut seen = String::new();
    while seen.matches(": keep-alive").count() < 2 {
        let frame = tokio::time::timeout(Duration::from_secs(30), body.frame())
            .await
            .expect("a frame or a keep-alive within 30 s")
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(frame.data_ref().unwrap()).unwrap());
    }
    assert!(seen.starts_with("event: message_start"), "{seen}");
    // The caller hangs up: the body goes, and with it the upstream stream and its permit.
    drop(body);
    tokio::task::yield_now().await;
    assert_eq!(c.available_permits(), 1);
}

#[tokio::test(start_paused = true)]
async fn on_end_is_told_once_how_the_response_ended() {
    use std::sync::{Arc, Mutex};
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "end");
    let ends: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let record = |ends: &Arc<Mutex<Vec<(String, u64)>>>| {
        let ends = ends.clone();
        move |stream: &tower_anthropic::stream::MessageStream, end: web::SseEnd<'_>| {
            let how = match end {
                web::SseEnd::Complete => "complete".to_owned(),
                web::SseEnd::Failed(e) => format!("failed: {e}"),
                _ => "dropped".to_owned(),
            };
            let output = stream.message().map_or(0, |m| m.usage.output_tokens);
            ends.lock().unwrap().push((how, output));
        }
    };

    // Read to the end: `Complete`, with the usage the events reported.
    let stream = c.messages().stream(support::req(16)).await.unwrap();
    let resp = web::sse(stream).on_end(record(&ends)).into_response();
    frames(resp).await;
    // Failed after content: `Failed`, once (the body then ends without another call).
    s.script(
        "end",
        [ScriptEntry::StreamError {
            after: 5,
            error_type: None,
        }],
    );
    let stream = c.messages().stream(support::req(16)).await.unwrap();
    let resp = web::sse(stream).on_end(record(&ends)).into_response();
    frames(resp).await;
    // Dropped before the end: `Dropped`.
    let stream = c.messages().stream(support::req(16)).await.unwrap();
    let resp = web::sse(stream).on_end(record(&ends)).into_response();
    drop(resp);

    let ends = ends.lock().unwrap().clone();
    assert_eq!(ends.len(), 3, "{ends:?}");
    assert_eq!(ends[0].0, "complete");
    assert!(ends[0].1 > 0, "{ends:?}");
    assert!(ends[1].0.starts_with("failed"), "{ends:?}");
    assert_eq!(ends[2].0, "dropped");
}
