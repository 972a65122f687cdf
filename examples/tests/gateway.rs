//! The gateway example (`examples/gateway.rs`) over real HTTP on loopback, in front of the
//! mock with injected faults: it must look like the API to a caller. Paused time.
//!
//! The official Python SDK's side of this is `python_sdk_against_the_gateway` below.

#[path = "../gateway.rs"]
#[allow(dead_code)]
mod gateway;

use std::sync::OnceLock;
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde_json::{Value, json};
use tower_anthropic::Client;

/// The process's Prometheus recorder (one per test binary).
fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .install_recorder()
                .expect("the only recorder")
        })
        .clone()
}

/// A mock, and the gateway in front of it (its client marks its calls `x-mock-key: gw`, so
/// the tests can script faults), served on loopback. Returns the mock and the gateway's URL.
async fn start(config: MockConfig) -> (MockServer, String) {
    let mock = MockServer::start(config).await.unwrap();
    let client = Client::builder()
        .api_key("sk-ant-gateway-secret")
        .base_url(mock.url())
        .default_header("x-mock-key", "gw")
        .for_request_handlers(Duration::from_secs(20))
        .build()
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = gateway::app(client, Some(metrics()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (mock, url)
}

fn http() -> HyperClient<HttpConnector, Full<Bytes>> {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

struct Answer {
    status: u16,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    /// `(event name, data)` of each SSE frame.
    fn events(&self) -> Vec<(String, Value)> {
        self.body
            .split("\n\n")
            .filter(|f| !f.trim().is_empty())
            .map(|f| {
                let name = f
                    .lines()
                    .find_map(|l| l.strip_prefix("event: "))
                    .unwrap_or_else(|| panic!("no event line in {f:?}"));
                let data = f
                    .lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap_or_else(|| panic!("no data line in {f:?}"));
                (name.to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }
}

async fn send(method: &str, url: &str, body: &str) -> Answer {
    let req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json")
        .header("x-api-key", "the-callers-own-key")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let resp = http().request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

fn request(stream: bool) -> String {
    json!({"model": "claude-sonnet-4-6", "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": "Hello through the gateway"}]})
    .to_string()
}

fn gw_attempts(mock: &MockServer) -> usize {
    mock.log()
        .iter()
        .filter(|e| e.headers.get("x-mock-key").map(String::as_str) == Some("gw"))
        .count()
}

#[tokio::test(start_paused = true)]
async fn whole_answers_pass_through_with_both_request_ids() {
    let (mock, url) = start(MockConfig::default()).await;
    let a = send("POST", &format!("{url}/v1/messages"), &request(false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let m = a.json();
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "claude-sonnet-4-6");
    assert!(!m["content"][0]["text"].as_str().unwrap().is_empty());
    assert!(m["usage"]["output_tokens"].as_u64().unwrap() > 0);
    // The API's request id, as the mock logged it, and the gateway's own.
    let upstream = a.headers["request-id"].to_str().unwrap();
    assert_eq!(upstream, mock.log()[0].request_id);
    let own = a.headers["x-request-id"].to_str().unwrap();
    assert_eq!(own.len(), 36, "a UUID: {own}");
    // The gateway called the API with its own key, not the caller's.
    assert_eq!(mock.log()[0].headers.get("x-mock-key").unwrap(), "gw");
}

#[tokio::test(start_paused = true)]
async fn streams_pass_through_event_by_event() {
    let (_mock, url) = start(MockConfig::default()).await;
    let a = send("POST", &format!("{url}/v1/messages"), &request(true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    assert!(a.headers.contains_key("request-id"));
    let events = a.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(names.contains(&"content_block_delta"), "{names:?}");
    // Each frame's name is its data's type, as the API sends them.
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let text: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert!(text.len() > 20, "{text:?}");
}

#[tokio::test(start_paused = true)]
async fn faults_upstream_are_absorbed_or_answered_in_the_api_shape() {
    let (mock, url) = start(MockConfig::default()).await;
    let messages = format!("{url}/v1/messages");

    // Two 529s: retried inside the gateway; the caller sees one 200.
    mock.script("gw", [ScriptEntry::status(529), ScriptEntry::status(529)]);
    let a = send("POST", &messages, &request(false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(gw_attempts(&mock), 3);

    // A stream that fails before any content is sent again; the caller sees a whole stream.
    mock.script(
        "gw",
        [ScriptEntry::StreamError {
            after: 1,
            error_type: None,
        }],
    );
    let a = send("POST", &messages, &request(true)).await;
    let names: Vec<String> = a.events().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names.last().map(String::as_str), Some("message_stop"));
    assert!(!names.iter().any(|n| n == "error"), "{names:?}");

    // After content, a failure cannot be hidden: an `error` event in the API's shape ends it.
    mock.script(
        "gw",
        [ScriptEntry::StreamError {
            after: 5,
            error_type: None,
        }],
    );
    let a = send("POST", &messages, &request(true)).await;
    assert_eq!(a.status, 200);
    let events = a.events();
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "error", "{events:?}");
    assert_eq!(data["type"], "error");
    assert!(data["error"]["type"].is_string(), "{data}");
    assert!(events.iter().any(|(n, _)| n == "content_block_delta"));

    // The gateway's own key refused upstream: a 502 that says nothing about it.
    mock.script(
        "gw",
        [ScriptEntry::Status {
            status: 401,
            error_type: None,
            error_code: None,
            message: Some("invalid x-api-key sk-ant-gateway-secret".into()),
            headers: Default::default(),
            body: None,
        }],
    );
    let a = send("POST", &messages, &request(false)).await;
    assert_eq!(a.status, 502);
    assert_eq!(a.json()["error"]["type"], "api_error");
    assert!(!a.body.contains("sk-ant") && !a.body.contains("x-api-key"));

    // The caller's own mistakes: 4xx with the API's message.
    let a = send("POST", &messages, "{\"model\": 3").await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["error"]["type"], "invalid_request_error");
    let unknown = request(false).replace("claude-sonnet-4-6", "gpt-unknown");
    let a = send("POST", &messages, &unknown).await;
    assert_eq!(a.status, 404, "{}", a.body);
    assert_eq!(a.json()["error"]["type"], "not_found_error");
    let a = send("GET", &format!("{url}/v1/nothing"), "").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json()["type"], "error");

    // A 429 whose wait is past the caller's deadline: returned at once, with Retry-After.
    let retry_after = [("retry-after".to_owned(), "45".to_owned())].into();
    mock.script(
        "gw",
        [ScriptEntry::Status {
            status: 429,
            error_type: None,
            error_code: None,
            message: None,
            headers: retry_after,
            body: None,
        }],
    );
    let a = send("POST", &messages, &request(false)).await;
    assert_eq!(a.status, 429, "{}", a.body);
    assert_eq!(a.json()["error"]["type"], "rate_limit_error");
    let secs: u64 = a.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((40..=45).contains(&secs), "{secs}");
    // The quota is closed now: the next caller is told at once, without a call upstream.
    let before = gw_attempts(&mock);
    let a = send("POST", &messages, &request(false)).await;
    assert_eq!(a.status, 429);
    assert!(a.headers.contains_key("retry-after"));
    assert_eq!(gw_attempts(&mock), before);
}

#[tokio::test(start_paused = true)]
async fn metrics_are_exported_for_prometheus() {
    let (_mock, url) = start(MockConfig::default()).await;
    let a = send("POST", &format!("{url}/v1/messages"), &request(false)).await;
    assert_eq!(a.status, 200);
    let m = send("GET", &format!("{url}/metrics"), "").await;
    assert_eq!(m.status, 200);
    for name in [
        "gen_ai_client_operation_duration",
        "gen_ai_client_token_usage",
        "anthropic_client_attempts",
        "anthropic_client_pacer_remaining",
        "anthropic_client_calls_in_flight",
    ] {
        assert!(m.body.contains(name), "{name} missing in:\n{}", m.body);
    }
    assert!(
        m.body
            .contains("gen_ai_request_model=\"claude-sonnet-4-6\"")
    );
}

/// The official Python SDK pointed at the gateway, with faults injected upstream: it must
/// take the gateway for the API. Needs a Python with `anthropic` installed: the one in
/// `TOWER_ANTHROPIC_SDK_PYTHON`, else `benches/peers/.venv/bin/python` (`.ci/run` makes it).
/// Skips with a message when there is none, except under `CI=true`, where it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_against_the_gateway() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let python = std::env::var("TOWER_ANTHROPIC_SDK_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| root.join("benches/peers/.venv/bin/python"));
    let has_sdk = std::process::Command::new(&python)
        .args(["-c", "import anthropic"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_sdk {
        let msg = format!(
            "no Python with the anthropic SDK at {} (set TOWER_ANTHROPIC_SDK_PYTHON, or run benches/peers/compare.sh once)",
            python.display()
        );
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("skipping: {msg}");
        return;
    }
    let (mock, url) = start(MockConfig::default()).await;
    let script = root.join("examples/tests/gateway_sdk.py");
    let out = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&url)
        .arg(mock.url())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "the SDK's checks failed:\n{stdout}\n{stderr}"
    );
    let passed = stdout.lines().filter(|l| l.starts_with("ok ")).count();
    assert_eq!(passed, 15, "every check ran and passed:\n{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}
