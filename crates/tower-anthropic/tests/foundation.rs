//! The foundation end to end: the `Client` (retries off, so each error is seen as it comes)
//! and the layers one by one, against the mock server on loopback.

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use serde_json::json;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_anthropic::classify::ClassifyLayer;
use tower_anthropic::messages::{CreateMessageRequest, MessagesService, StopReason};
use tower_anthropic::transport::{ApiKey, Endpoint};
use tower_anthropic::{ApiErrorKind, Client, ConfigError, Error};

mod support;
use support::KEY;

/// One attempt per call, unpaced: these tests read how single answers are classified (a
/// scripted 429 would otherwise close the pacer's gate for the next call; pacing has tests
/// of its own).
fn client(server: &MockServer, mock_key: &str) -> Client {
    support::builder(server, mock_key, 1)
        .max_retries(0)
        .pacing(false)
        .build()
        .unwrap()
}

fn req() -> CreateMessageRequest {
    support::req(64)
}

#[tokio::test]
async fn create_returns_a_message_with_its_request_id_and_limits() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "none");
    let msg = c.messages().create(req()).await.unwrap();
    assert!(msg.id.starts_with("msg_"));
    assert_eq!(msg.model, "claude-test");
    assert_eq!(msg.stop_reason, Some(StopReason::EndTurn));
    assert_eq!(msg.usage.output_tokens, 48);
    assert!(!msg.text().is_empty());
    assert!(msg.request_id().unwrap().starts_with("req_"));
    assert_eq!(msg.attempts(), 1);
    assert!(msg.rate_limits().requests.remaining.is_some());
    assert!(msg.rate_limits().output_tokens.reset.is_some());
    let log = s.log();
    assert_eq!(log[0].headers["anthropic-version"], "2023-06-01");
    assert!(log[0].headers["user-agent"].starts_with("tower-anthropic/"));
    let count = c.messages().count_tokens(req()).await.unwrap();
    assert!(count.input_tokens > 0);
}

#[tokio::test]
async fn a_base_url_with_a_path_prefix_is_kept() {
    // The mock as behind a gateway that serves the API under a path.
    let s = MockServer::start(MockConfig {
        path_prefix: Some("/gateway/anthropic".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let c = Client::builder()
        .api_key(KEY)
        .base_url(format!("{}/gateway/anthropic/", s.url()))
        .build()
        .unwrap();
    c.messages().create(req()).await.unwrap();
    assert_eq!(s.log()[0].path, "/gateway/anthropic/v1/messages");
}

#[tokio::test]
async fn every_status_over_http_gets_its_kind() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "statuses");
    use ApiErrorKind::*;
    let table = [
        (400, BadRequest),
        (401, Authentication),
        (402, PaymentRequired),
        (403, PermissionDenied),
        (404, NotFound),
        (408, RequestTimeout),
        (409, Conflict),
        (412, PreconditionFailed),
        (413, RequestTooLarge),
        (422, UnprocessableEntity),
        (429, RateLimit),
        (431, RequestHeaderFieldsTooLarge),
        (499, ClientClosedRequest),
        (500, InternalServer),
        (501, NotImplemented),
        (502, InternalServer),
        (503, ServiceUnavailable),
        (504, GatewayTimeout),
        (529, Overloaded),
        (418, Other),
    ];
    s.script(
        "statuses",
        table.iter().map(|(st, _)| ScriptEntry::status(*st)),
    );
    for (status, kind) in table {
        let e = c.messages().create(req()).await.unwrap_err();
        assert_eq!(e.kind(), Some(kind), "{status}");
        assert_eq!(e.status().unwrap().as_u16(), status);
        assert_eq!(
            e.is_retryable(),
            matches!(status, 408 | 409 | 429 | 500..=599),
            "{status}"
        );
        assert!(e.request_id().unwrap().starts_with("req_"));
    }
}

#[tokio::test]
async fn html_pages_and_garbage_headers() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "html");
    s.script(
        "html",
        [
            ScriptEntry::Html { status: 502 },
            ScriptEntry::Html { status: 413 },
        ],
    );
    let e = c.messages().create(req()).await.unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::InternalServer));
    assert_eq!(
        e.as_api().unwrap().message(),
        "502 Bad Gateway 502 Bad Gateway edge"
    );
    assert!(e.is_retryable());
    let e = c.messages().create(req()).await.unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::RequestTooLarge));
    assert!(!e.is_retryable());

    for garbage in ["", "nan", "-5", "20abc", "Wed, 21 Oct 2015 07:28:00 GMT"] {
        s.script(
            "html",
            [ScriptEntry::status_with_headers(
                429,
                [("retry-after", garbage), ("retry-after-ms", garbage)],
            )],
        );
        let e = c.messages().create(req()).await.unwrap_err();
        assert_eq!(e.kind(), Some(ApiErrorKind::RateLimit));
        assert_eq!(e.retry_after(), None, "{garbage:?} gives no wait");
    }
    s.script(
        "html",
        [ScriptEntry::status_with_headers(
            529,
            [("retry-after", "2"), ("x-should-retry", "false")],
        )],
    );
    let e = c.messages().create(req()).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    assert!(!e.is_retryable(), "x-should-retry: false wins");
}

#[tokio::test]
async fn a_10_mb_error_body_is_read_only_up_to_the_bound() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Client::builder()
        .api_key(KEY)
        .base_url(s.url())
        .default_header("x-mock-key", "big")
        .max_error_body(4096)
        .max_retries(0)
        .build()
        .unwrap();
    let huge = format!(
        "{{\"type\":\"error\",\"error\":{{\"type\":\"api_error\",\"message\":\"{}\"}}}}",
        "x".repeat(10 << 20)
    );
    s.script(
        "big",
        [serde_json::from_value(json!({"kind": "status", "status": 500, "body": huge})).unwrap()],
    );
    let e = c.messages().create(req()).await.unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::InternalServer));
    // Only the first 4 KiB were read: not valid JSON, so the message is a short excerpt.
    assert!(e.as_api().unwrap().message().len() <= 200);
    assert!(
        e.as_api()
            .unwrap()
            .message()
            .starts_with("{\"type\":\"error\"")
    );
    // The connection was not kept for reuse with 10 MB unread; the next call still works.
    assert!(c.messages().create(req()).await.is_ok());
}

#[tokio::test]
async fn connection_refused_and_reset_are_connection_errors() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let c = Client::builder()
        .api_key(KEY)
        .base_url(format!("http://127.0.0.1:{port}"))
        .build()
        .unwrap();
    let e = c.messages().create(req()).await.unwrap_err();
    match &e {
        Error::Connection(ce) => assert!(ce.is_refused(), "{e}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
    assert!(e.is_retryable());
    // The cause chain reaches the io::Error.
    let mut src: Option<&dyn std::error::Error> = Some(&e);
    let mut found_io = false;
    while let Some(s) = src {
        found_io |= s
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::ConnectionRefused);
        src = s.source();
    }
    assert!(found_io, "io::Error kept in the source chain");

    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "reset");
    s.script("reset", [ScriptEntry::Reset, ScriptEntry::CutBody]);
    let e = c.messages().create(req()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Connection(ce) if ce.is_reset() || ce.is_closed()),
        "{e:?}"
    );
    let e = c.messages().create(req()).await.unwrap_err();
    assert!(
        matches!(&e, Error::Connection(_)),
        "a body cut mid-way: {e:?}"
    );
    assert!(e.is_retryable());
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_a_tls_error() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let url = s.url().replace("http://", "https://");
    let c = Client::builder()
        .api_key(KEY)
        .base_url(url)
        .max_retries(0)
        .build()
        .unwrap();
    let e = c.messages().create(req()).await.unwrap_err();
    match &e {
        Error::Connection(ce) => assert!(ce.is_tls(), "{e:?}"),
        other => panic!("expected a connection error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_200_that_is_not_a_message_is_a_decode_error() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "weird");
    s.script(
        "weird",
        [serde_json::from_value(
            json!({"kind": "status", "status": 200, "body": "<html>oops</html>"}),
        )
        .unwrap()],
    );
    let e = c.messages().create(req()).await.unwrap_err();
    match &e {
        Error::Decode(d) => assert_eq!(d.excerpt(), "oops"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert!(!e.is_retryable());
    assert!(
        std::error::Error::source(&e).is_some(),
        "the serde error is kept"
    );
}

#[tokio::test]
async fn the_key_never_shows() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "leak");
    s.script("leak", [ScriptEntry::status(401), ScriptEntry::Reset]);
    let e1 = c.messages().create(req()).await.unwrap_err();
    let e2 = c.messages().create(req()).await.unwrap_err();
    let builder = Client::builder().api_key(KEY).base_url(s.url());
    let texts = [
        format!("{c:?}"),
        format!("{builder:?}"),
        format!("{e1:?}"),
        format!("{e1}"),
        format!("{e2:?}"),
        format!("{e2}"),
        format!("{:?}", c.service()),
        format!("{:?}", ApiKey::new(KEY).unwrap()),
    ];
    for t in texts {
        assert!(!t.contains("SECRET"), "leaked in {t}");
    }
}

#[test]
fn the_client_is_clone_send_sync() {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    assert_shareable::<Client>();
    assert_shareable::<tower_anthropic::ClientBuilder>();
    assert_shareable::<tower_anthropic::retry::RetryPolicy>();
}

#[test]
fn a_missing_or_bad_key_fails_at_build() {
    assert!(matches!(
        Client::builder().build(),
        Err(ConfigError::MissingApiKey)
    ));
    assert!(matches!(
        Client::builder().api_key("  ").build(),
        Err(ConfigError::InvalidApiKey)
    ));
    assert!(matches!(
        Client::builder()
            .api_key("k")
            .base_url("localhost:80")
            .build(),
        Err(ConfigError::InvalidBaseUrl(_))
    ));
    let e = Client::builder()
        .api_key("k")
        .default_header("bad header", "v")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("bad header"));
}

/// The layers around an HTTP service that is not ours: a plain function answering like the API.
#[tokio::test]
async fn layers_compose_around_a_foreign_service() {
    use bytes::Bytes;
    use http_body_util::Full;
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = calls.clone();
    let foreign = tower::service_fn(move |req: http::Request<Full<Bytes>>| {
        let n = seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        async move {
            assert_eq!(req.uri().path(), "/v1/messages");
            assert!(req.headers()["x-api-key"].is_sensitive());
            let resp = if n == 0 {
                http::Response::builder().status(529).header("request-id", "req_foreign")
                    .body(Full::new(Bytes::from_static(br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)))
            } else {
                http::Response::builder().status(200).body(Full::new(Bytes::from_static(
                    br#"{"id":"msg_f","type":"message","role":"assistant","model":"claude-m","content":[{"type":"text","text":"hi"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":1,"output_tokens":1}}"#,
                )))
            };
            Ok::<_, std::io::Error>(resp.unwrap())
        }
    });
    let stack = ServiceBuilder::new()
        .layer(ClassifyLayer::new())
        .service(foreign);
    let endpoint = Endpoint::new("https://example.invalid", ApiKey::new("k").unwrap()).unwrap();
    let mut svc = MessagesService::new(stack, endpoint);
    let e = ServiceExt::<CreateMessageRequest>::ready(&mut svc)
        .await
        .unwrap()
        .call(req())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::Overloaded));
    assert_eq!(e.request_id(), Some("req_foreign"));
    let m = ServiceExt::<CreateMessageRequest>::ready(&mut svc)
        .await
        .unwrap()
        .call(req())
        .await
        .unwrap();
    assert_eq!(m.text(), "hi");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_typed_tool_round_trip_and_every_builder_field() {
    use tower_anthropic::messages::{StopReason, Tool, ToolChoice};
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "tools");
    let weather = Tool::new(
        "get_weather",
        "The weather in a city",
        serde_json::json!({"type": "object", "properties": {"city": {"type": "string"}}}),
    );
    let req = CreateMessageRequest::new("claude-sonnet-4-6", 256)
        .system("Be brief.")
        .user("Weather in Paris?")
        .tool(weather)
        .temperature(0.2)
        .top_p(0.9)
        .top_k(40)
        .stop_sequences(["END"])
        .user_id("user-42")
        .thinking(128);
    let json = serde_json::to_value(&req).unwrap();
    assert_eq!(json["thinking"]["budget_tokens"], 128);
    assert_eq!(json["metadata"]["user_id"], "user-42");
    assert_eq!(json["stop_sequences"][0], "END");
    assert_eq!(json["tools"][0]["name"], "get_weather");
    let first = c.messages().create(req.clone()).await.unwrap();
    assert_eq!(first.stop_reason, Some(StopReason::ToolUse));
    let (id, name, input) = first.tool_calls().next().unwrap();
    assert_eq!(
        (name, input["city"].as_str()),
        ("get_weather", Some("example"))
    );
    // Answer the call; no more tools this time.
    let follow = req
        .assistant_message(&first)
        .tool_result(id, serde_json::json!("18 C and sunny"), false)
        .tool_choice(ToolChoice::None);
    let sent = serde_json::to_value(&follow).unwrap();
    assert_eq!(sent["messages"][2]["content"][0]["type"], "tool_result");
    // Results of parallel calls share one user turn.
    let two = follow
        .clone()
        .tool_result("toolu_other", serde_json::json!("rain"), true);
    let sent2 = serde_json::to_value(&two).unwrap();
    assert_eq!(sent2["messages"].as_array().unwrap().len(), 3);
    assert_eq!(
        sent2["messages"][2]["content"][1]["tool_use_id"],
        "toolu_other"
    );
    assert_eq!(sent2["messages"][2]["content"][1]["is_error"], true);
    let last = c.messages().create(follow).await.unwrap();
    assert_eq!(last.stop_reason, Some(StopReason::EndTurn));
    assert_eq!(last.tool_calls().count(), 0);
    // Images and documents go as blocks.
    let img = CreateMessageRequest::new("claude-sonnet-4-6", 64).user_image(
        "image/png",
        "iVBORw0KGgo=",
        "What is this?",
    );
    let doc =
        CreateMessageRequest::new("claude-sonnet-4-6", 64).user_document("JVBERi0=", "Summarize.");
    assert_eq!(
        serde_json::to_value(&img).unwrap()["messages"][0]["content"][0]["type"],
        "image"
    );
    assert_eq!(
        serde_json::to_value(&doc).unwrap()["messages"][0]["content"][0]["type"],
        "document"
    );
    c.messages().create(img).await.unwrap();
    c.messages().create(doc).await.unwrap();
}
