//! The mock server over real HTTP on loopback.

use std::time::Duration;

use anthropic_mock::{
    MockConfig, MockServer, OutageKind, RandomFaults, RateLimits, ScriptEntry, Stats,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>;

fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

struct Reply {
    status: u16,
    headers: http::HeaderMap,
    body: Result<Bytes, String>,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_slice(self.body.as_ref().expect("a whole body")).expect("a JSON body")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap())
            .unwrap_or("")
    }
}

async fn send(
    c: &HttpClient,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Result<Reply, String> {
    let mut req = http::Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = c
        .request(req.body(Full::new(body.into())).unwrap())
        .await
        .map_err(|e| format!("{e:?}"))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("{e:?}"));
    Ok(Reply {
        status,
        headers,
        body,
    })
}

const AUTH: &[(&str, &str)] = &[
    ("x-api-key", "sk-test"),
    ("anthropic-version", "2023-06-01"),
];

fn msg_body(max_tokens: u64, stream: bool) -> String {
    json!({"model": "claude-test", "max_tokens": max_tokens, "stream": stream,
           "messages": [{"role": "user", "content": "Hello there"}]})
    .to_string()
}

async fn messages(
    c: &HttpClient,
    s: &MockServer,
    extra: &[(&str, &str)],
    body: String,
) -> Result<Reply, String> {
    let mut h = AUTH.to_vec();
    h.extend_from_slice(extra);
    send(c, &format!("{}/v1/messages", s.url()), &h, body).await
}

fn sse_events(body: &[u8]) -> Vec<(String, Value)> {
    std::str::from_utf8(body)
        .unwrap()
        .split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            let mut lines = b.lines();
            let name = lines
                .next()
                .unwrap()
                .strip_prefix("event: ")
                .unwrap()
                .to_owned();
            let data = serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                .unwrap();
            (name, data)
        })
        .collect()
}

#[tokio::test]
async fn success_has_the_apis_shape_and_headers() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client();
    let r = messages(&c, &s, &[], msg_body(1000, false)).await.unwrap();
    assert_eq!(r.status, 200);
    let m = r.json();
    assert!(m["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(m["type"], "message");
    assert_eq!(m["role"], "assistant");
    assert_eq!(m["model"], "claude-test");
    assert_eq!(m["stop_reason"], "end_turn");
    assert_eq!(m["usage"]["output_tokens"], 48);
    assert!(m["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        m["content"][0]["text"].as_str().unwrap().split(' ').count(),
        48
    );
    assert!(r.header("request-id").starts_with("req_"));
    assert_eq!(r.header("content-type"), "application/json");
    for k in ["requests", "tokens", "input-tokens", "output-tokens"] {
        for f in ["limit", "remaining", "reset"] {
            assert!(
                !r.header(&format!("anthropic-ratelimit-{k}-{f}")).is_empty(),
                "{k}-{f}"
            );
        }
    }
    // Output follows max_tokens.
    let r = messages(&c, &s, &[], msg_body(5, false)).await.unwrap();
    assert_eq!(r.json()["usage"]["output_tokens"], 5);
    assert_eq!(r.json()["stop_reason"], "max_tokens");
    // Authorization: Bearer works too.
    let r = send(
        &c,
        &format!("{}/v1/messages", s.url()),
        &[
            ("authorization", "Bearer sk-x"),
            ("anthropic-version", "2023-06-01"),
        ],
        msg_body(8, false),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    // count_tokens.
    let r = send(
        &c,
        &format!("{}/v1/messages/count_tokens", s.url()),
        AUTH,
        json!({"model": "claude-m", "messages": [{"role": "user", "content": "x".repeat(40)}]})
            .to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["input_tokens"], 10 + 1 + 3);
}

/// Request headers, body, expected status, error type, and a word the message must hold.
type Case<'a> = (Vec<(&'a str, &'a str)>, String, u16, &'a str, &'a str);

#[tokio::test]
async fn every_validation_error_names_its_field() {
    let config = MockConfig {
        api_keys: vec!["sk-good".into()],
        max_body_bytes: 4096,
        ..Default::default()
    };
    let s = MockServer::start(config).await.unwrap();
    let c = client();
    let url = format!("{}/v1/messages", s.url());
    let ok = [
        ("x-api-key", "sk-good"),
        ("anthropic-version", "2023-06-01"),
    ];
    let user = json!({"role": "user", "content": "hi"});
    let asst = json!({"role": "assistant", "content": "yo"});
    let cases: Vec<Case> = vec![
        (
            vec![("anthropic-version", "2023-06-01")],
            msg_body(8, false),
            401,
            "authentication_error",
            "x-api-key",
        ),
        (
            vec![("x-api-key", "sk-bad"), ("anthropic-version", "2023-06-01")],
            msg_body(8, false),
            401,
            "authentication_error",
            "invalid x-api-key",
        ),
        (
            vec![("x-api-key", "sk-good")],
            msg_body(8, false),
            400,
            "invalid_request_error",
            "anthropic-version",
        ),
        (
            ok.to_vec(),
            "{not json".into(),
            400,
            "invalid_request_error",
            "JSON",
        ),
        (
            ok.to_vec(),
            json!({"max_tokens": 8, "messages": [user]}).to_string(),
            400,
            "invalid_request_error",
            "model",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "messages": [user]}).to_string(),
            400,
            "invalid_request_error",
            "max_tokens: Field required",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 0, "messages": [user]}).to_string(),
            400,
            "invalid_request_error",
            "max_tokens",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 8}).to_string(),
            400,
            "invalid_request_error",
            "messages: Field required",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 8, "messages": []}).to_string(),
            400,
            "invalid_request_error",
            "messages",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 8, "messages": [asst]}).to_string(),
            400,
            "invalid_request_error",
            "messages.0.role",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 8, "messages": [user, user]}).to_string(),
            400,
            "invalid_request_error",
            "messages.1.role",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 8, "messages": [{"role": "user"}]}).to_string(),
            400,
            "invalid_request_error",
            "messages.0.content",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 8, "messages": [{"role": "user", "content": ""}]})
                .to_string(),
            400,
            "invalid_request_error",
            "messages.0: all messages must have non-empty content",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 8, "messages": [
                {"role": "user", "content": [{"type": "text", "text": ""}]}]})
            .to_string(),
            400,
            "invalid_request_error",
            "text content blocks must be non-empty",
        ),
        (
            ok.to_vec(),
            json!({"model": "claude-m", "max_tokens": 8, "messages": [{"role": "bot", "content": "x"}]})
                .to_string(),
            400,
            "invalid_request_error",
            "messages.0.role",
        ),
    ];
    for (headers, body, status, error_type, needle) in cases {
        let r = send(&c, &url, &headers, body.clone()).await.unwrap();
        assert_eq!(r.status, status, "{body}");
        let v = r.json();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], error_type, "{body}");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
        assert_eq!(v["request_id"].as_str().unwrap(), r.header("request-id"));
    }
    // Over the size limit: the edge's HTML 413, not JSON.
    let r = send(&c, &url, &ok, "x".repeat(5000)).await.unwrap();
    assert_eq!(r.status, 413);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(
        std::str::from_utf8(r.body.as_ref().unwrap())
            .unwrap()
            .contains("<html>")
    );
}

#[tokio::test]
async fn stream_sends_the_apis_event_sequence() {
    let s = MockServer::start(MockConfig {
        ping_every: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let r = messages(&c, &s, &[], msg_body(30, true)).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").starts_with("text/event-stream"));
    let events = sse_events(r.body.as_ref().unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        &names[..3],
        ["message_start", "content_block_start", "ping"]
    );
    assert_eq!(
        &names[names.len() - 3..],
        ["content_block_stop", "message_delta", "message_stop"]
    );
    let deltas = names
        .iter()
        .filter(|n| **n == "content_block_delta")
        .count();
    assert_eq!(deltas, 10);
    assert_eq!(names.iter().filter(|n| **n == "ping").count(), 1 + 2);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| d["delta"]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text.split(' ').count(), 30);
    assert_eq!(events[names.len() - 2].1["usage"]["output_tokens"], 30);
    assert_eq!(s.stats().max_open_streams, 1);
}

#[tokio::test(start_paused = true)]
async fn scripted_faults_are_served_in_order_then_normal_behaviour_resumes() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client();
    let key = [("x-mock-key", "t1")];
    s.script("t1", [
        ScriptEntry::status_with_headers(429, [("retry-after", "7"), ("x-should-retry", "false")]),
        serde_json::from_value(json!({"kind": "status", "status": 429, "error_code": "enforced_spend_limit_reached"})).unwrap(),
        ScriptEntry::Html { status: 502 },
        ScriptEntry::Reset,
        ScriptEntry::Stall { ms: 60_000 },
        ScriptEntry::Delay { ms: 30_000 },
        ScriptEntry::CutBody,
        ScriptEntry::StallBody { ms: 45_000 },
        serde_json::from_value(json!({"kind": "status", "status": 200, "body": "{\"not\": \"a message\"}"})).unwrap(),
    ]);
    let r = messages(&c, &s, &key, msg_body(8, false)).await.unwrap();
    assert_eq!(
        (
            r.status,
            r.header("retry-after"),
            r.header("x-should-retry")
        ),
        (429, "7", "false")
    );
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    let r = messages(&c, &s, &key, msg_body(8, false)).await.unwrap();
    assert_eq!(
        r.json()["error"]["details"]["error_code"],
        "enforced_spend_limit_reached"
    );
    let r = messages(&c, &s, &key, msg_body(8, false)).await.unwrap();
    assert_eq!(r.status, 502);
    assert!(r.header("content-type").starts_with("text/html"));
    assert!(
        messages(&c, &s, &key, msg_body(8, false)).await.is_err(),
        "reset gives no response"
    );
    assert!(
        messages(&c, &s, &key, msg_body(8, false)).await.is_err(),
        "stall then reset gives no response"
    );
    assert_eq!(
        messages(&c, &s, &key, msg_body(8, false))
            .await
            .unwrap()
            .status,
        200
    ); // delay
    let cut = messages(&c, &s, &key, msg_body(8, false)).await.unwrap();
    assert_eq!(cut.status, 200);
    assert!(cut.body.is_err(), "a cut body fails mid-way");
    let stalled = messages(&c, &s, &key, msg_body(8, false)).await.unwrap();
    assert_eq!(stalled.json()["type"], "message");
    let weird = messages(&c, &s, &key, msg_body(8, false)).await.unwrap();
    assert_eq!(
        (weird.status, weird.json()["not"].as_str()),
        (200, Some("a message"))
    );
    // The queue is used up: normal behaviour.
    assert_eq!(
        messages(&c, &s, &key, msg_body(8, false))
            .await
            .unwrap()
            .json()["type"],
        "message"
    );
    let stats = s.stats();
    for f in [
        "script_status",
        "script_html",
        "script_reset",
        "script_stall",
        "script_delay",
        "script_cut_body",
        "script_stall_body",
    ] {
        assert!(
            stats.by_fault.contains_key(f),
            "{f} not counted: {:?}",
            stats.by_fault
        );
    }
}

#[tokio::test(start_paused = true)]
async fn scripted_stream_faults() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client();
    // Scripts can be posted over HTTP too.
    let script = json!({"key": "st", "responses": [
        {"kind": "stream_error", "after": 3},
        {"kind": "stream_cut", "after": 4},
        {"kind": "stream_stall", "after": 2, "ms": 90000}
    ]});
    let r = send(
        &c,
        &format!("{}/_mock/script", s.url()),
        &[],
        script.to_string(),
    )
    .await
    .unwrap();
    assert_eq!(r.json()["queued"], 3);
    let key = [("x-mock-key", "st")];
    let ev = sse_events(
        messages(&c, &s, &key, msg_body(30, true))
            .await
            .unwrap()
            .body
            .as_ref()
            .unwrap(),
    );
    assert_eq!(ev.len(), 4);
    assert_eq!(ev[3].0, "error");
    assert_eq!(ev[3].1["error"]["type"], "overloaded_error");
    let ev = sse_events(
        messages(&c, &s, &key, msg_body(30, true))
            .await
            .unwrap()
            .body
            .as_ref()
            .unwrap(),
    );
    assert_eq!(ev.len(), 4);
    assert!(ev.iter().all(|(n, _)| n != "message_stop"));
    let ev = sse_events(
        messages(&c, &s, &key, msg_body(30, true))
            .await
            .unwrap()
            .body
            .as_ref()
            .unwrap(),
    );
    assert_eq!(ev.last().unwrap().0, "message_stop");
}

async fn statuses_of_a_seeded_run(seed: u64) -> (Vec<String>, Stats) {
    let faults = RandomFaults {
        seed,
        p529: 0.2,
        p500: 0.1,
        p503: 0.05,
        p502_html: 0.05,
        p_reset: 0.05,
        ..Default::default()
    };
    let s = MockServer::start(MockConfig {
        faults,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    let mut out = Vec::new();
    for _ in 0..200 {
        out.push(match messages(&c, &s, &[], msg_body(4, false)).await {
            Ok(r) => r.status.to_string(),
            Err(_) => "reset".to_owned(),
        });
    }
    (out, s.stats())
}

#[tokio::test]
async fn a_seeded_random_run_is_reproducible() {
    let (a, stats_a) = statuses_of_a_seeded_run(42).await;
    let (b, _) = statuses_of_a_seeded_run(42).await;
    let (c, _) = statuses_of_a_seeded_run(43).await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    let count = |s: &str| a.iter().filter(|x| *x == s).count();
    // Roughly the configured shares (200 draws).
    assert!((20..=60).contains(&count("529")), "{}", count("529"));
    assert!(count("500") > 5 && count("reset") > 0 && count("502") > 0 && count("503") > 0);
    assert_eq!(
        stats_a.by_status.get(&529).copied().unwrap_or(0) as usize,
        count("529")
    );
    assert_eq!(stats_a.by_fault["random_reset"] as usize, count("reset"));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_429_then_admitted_after_retry_after() {
    let limits = RateLimits {
        requests_per_minute: 3,
        ..Default::default()
    };
    let s = MockServer::start(MockConfig {
        limits,
        ..Default::default()
    })
    .await
    .unwrap();
    let c = client();
    for i in 0..3 {
        let r = messages(&c, &s, &[], msg_body(4, false)).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("anthropic-ratelimit-requests-remaining"),
            (2 - i).to_string()
        );
    }
    let r = messages(&c, &s, &[], msg_body(4, false)).await.unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_error");
    assert_eq!(r.header("retry-after"), "20"); // 3 a minute: one every 20 s
    assert_eq!(r.header("anthropic-ratelimit-requests-remaining"), "0");
    tokio::time::advance(Duration::from_secs(20)).await;
    assert_eq!(
        messages(&c, &s, &[], msg_body(4, false))
            .await
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn outages_and_stats_endpoints_agree() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client();
    s.outage_for(Duration::from_secs(3600), OutageKind::Overloaded);
    let r = messages(&c, &s, &[], msg_body(4, false)).await.unwrap();
    assert_eq!(r.status, 529);
    assert_eq!(r.json()["error"]["type"], "overloaded_error");
    s.outage_for(Duration::from_secs(3600), OutageKind::Reset);
    assert!(messages(&c, &s, &[], msg_body(4, false)).await.is_err());
    s.outage_for(Duration::ZERO, OutageKind::Reset);
    let r = messages(
        &c,
        &s,
        &[("x-stainless-retry-count", "2")],
        msg_body(4, false),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 200);

    let get = |path: &'static str| {
        let c = c.clone();
        let url = format!("{}{path}", s.url());
        async move {
            let resp = c
                .request(
                    http::Request::get(url)
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
                .await
                .unwrap();
            resp.into_body().collect().await.unwrap().to_bytes()
        }
    };
    let over_http: Stats = serde_json::from_slice(&get("/_mock/stats").await).unwrap();
    let direct = s.stats();
    assert_eq!(over_http.requests, 3);
    assert_eq!(over_http.by_fault["outage"], 2);
    assert_eq!(over_http.requests, direct.requests);
    assert_eq!(over_http.by_status, direct.by_status);
    assert_eq!(over_http.by_fault, direct.by_fault);
    let log: Vec<anthropic_mock::LogEntry> =
        serde_json::from_slice(&get("/_mock/log").await).unwrap();
    assert_eq!(log, s.log());
    assert_eq!(log.len(), 3);
    assert_eq!(log[2].headers["x-stainless-retry-count"], "2");
    assert_eq!(log[2].headers["api-key-sent"], "true");
    assert!(
        !format!("{log:?}").contains("sk-test"),
        "the log never keeps a key"
    );
    let r = send(&c, &format!("{}/_mock/reset", s.url()), &[], "")
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(s.stats().requests, 0);
    assert!(s.log().is_empty());
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let h2: HttpClient = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let mut req = http::Request::post(format!("{}/v1/messages", s.url()));
    for (k, v) in AUTH {
        req = req.header(*k, *v);
    }
    let resp = h2
        .request(
            req.body(Full::new(Bytes::from(msg_body(8, false))))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.version(), http::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap()["type"],
        "message"
    );
}

#[tokio::test(start_paused = true)]
async fn the_script_queue_is_bounded_and_huge_outages_do_not_panic() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    s.script(
        "a",
        std::iter::repeat_n(ScriptEntry::Ok, anthropic_mock::MAX_SCRIPTED + 50),
    );
    // Full: the control endpoint says what it dropped.
    let body = json!({"key": "b", "responses": [{"kind": "ok"}, {"kind": "ok"}]}).to_string();
    let req = http::Request::post(format!("{}/_mock/script", s.url()))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = client().request(req).await.unwrap();
    let v: Value =
        serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(
        (v["queued"].as_u64(), v["dropped"].as_u64()),
        (Some(0), Some(2))
    );
    s.reset();
    s.outage_for(Duration::MAX, OutageKind::Overloaded);
    let c = client();
    let url = format!("{}/v1/messages", s.url());
    let body = json!({"model": "claude-m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
    let headers = [("x-api-key", "k"), ("anthropic-version", "2023-06-01")];
    let r = send(&c, &url, &headers, body.to_string()).await.unwrap();
    assert_eq!(r.status, 529);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let addr = s.url().trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(31)).await;
    let mut buf = [0u8; 1024];
    // The mock closed it (an EOF, or a 408 before it).
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut buf))
        .await
        .expect("closed, not held open")
        .unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{text}");
}

async fn get(c: &HttpClient, url: &str) -> Reply {
    let resp = c
        .request(
            http::Request::get(url)
                .header("x-api-key", "sk-test")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = Ok(resp.into_body().collect().await.unwrap().to_bytes());
    Reply {
        status,
        headers,
        body,
    }
}

#[tokio::test]
async fn paths_are_matched_exactly_as_the_api_does() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client();
    // A base URL ending in /v1 doubles it: the API answers 404 not_found_error.
    for path in [
        "/v1/v1/messages",
        "/proxy/v1/messages",
        "/v1/message",
        "/v1/messages/",
    ] {
        let r = send(&c, &format!("{}{path}", s.url()), AUTH, msg_body(8, false))
            .await
            .unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["error"]["type"], "not_found_error", "{path}");
    }
    assert_eq!(s.stats().requests, 0, "none reached the API handler");
    // Behind a gateway prefix, the same exactness under the prefix.
    let g = MockServer::start(MockConfig {
        path_prefix: Some("/gw/".into()),
        ..Default::default()
    })
    .await
    .unwrap();
    let ok = send(
        &c,
        &format!("{}/gw/v1/messages", g.url()),
        AUTH,
        msg_body(8, false),
    )
    .await
    .unwrap();
    assert_eq!(ok.status, 200);
    let r = send(
        &c,
        &format!("{}/v1/messages", g.url()),
        AUTH,
        msg_body(8, false),
    )
    .await
    .unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn lists_models_in_pages() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client();
    let first = get(&c, &format!("{}/v1/models?limit=2", s.url())).await;
    assert_eq!(first.status, 200);
    let j = first.json();
    assert_eq!(j["data"].as_array().unwrap().len(), 2);
    assert_eq!(j["has_more"], true);
    assert_eq!(j["data"][0]["type"], "model");
    let last = j["last_id"].as_str().unwrap().to_owned();
    let next = get(
        &c,
        &format!("{}/v1/models?limit=100&after_id={last}", s.url()),
    )
    .await;
    let n = next.json();
    assert_eq!(n["has_more"], false);
    let before = get(
        &c,
        &format!("{}/v1/models?limit=1&before_id={last}", s.url()),
    )
    .await;
    assert_eq!(before.json()["data"][0]["id"], j["data"][0]["id"]);
    let all = 2 + n["data"].as_array().unwrap().len();
    let everything = get(&c, &format!("{}/v1/models?limit=1000", s.url())).await;
    assert_eq!(everything.json()["data"].as_array().unwrap().len(), all);
    let one = get(&c, &format!("{}/v1/models/claude-sonnet-4-6", s.url())).await;
    assert_eq!(one.json()["display_name"], "Claude Sonnet 4.6");
    let missing = get(&c, &format!("{}/v1/models/claude-nope", s.url())).await;
    assert_eq!(missing.status, 404);
    assert_eq!(missing.json()["error"]["type"], "not_found_error");
    let bad = get(&c, &format!("{}/v1/models?limit=0", s.url())).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn unknown_models_are_not_found() {
    let c = client();
    let body = |model: &str| {
        json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
            .to_string()
    };
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let url = format!("{}/v1/messages", s.url());
    let r = send(&c, &url, AUTH, body("gpt-4")).await.unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("gpt-4")
    );
    // Any claude-* id is accepted by default; the listed ones always.
    for m in ["claude-next-9", "claude-haiku-4-5"] {
        assert_eq!(
            send(&c, &url, AUTH, body(m)).await.unwrap().status,
            200,
            "{m}"
        );
    }
    // Known models only.
    let strict = MockServer::start(MockConfig {
        accept_any_claude_model: false,
        ..Default::default()
    })
    .await
    .unwrap();
    let url = format!("{}/v1/messages", strict.url());
    assert_eq!(
        send(&c, &url, AUTH, body("claude-next-9"))
            .await
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        send(&c, &url, AUTH, body("claude-sonnet-4-6"))
            .await
            .unwrap()
            .status,
        200
    );
}
