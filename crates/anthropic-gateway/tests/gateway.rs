//! The gateway in this process, over real HTTP on loopback, in front of the mock: keys,
//! limits, the queue, pass-through of every route, hostile callers. Paused time.

mod common;

use std::time::Duration;

use anthropic_gateway::config::{Config, KeyHash};
use anthropic_mock::{MockConfig, OutageKind, RateLimits};
use common::*;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn keys() -> String {
    format!(
        "{}\n[[key]]\nname = \"carol\"\nhash = \"sha256:{}\"\nrequests_per_minute = 2\n\n\
         [[key]]\nname = \"dave\"\nhash = \"sha256:{}\"\ntokens_per_minute = 50\n",
        keys_toml(),
        KeyHash::of("sk-gw-carol").hex(),
        KeyHash::of("sk-gw-dave").hex()
    )
}

#[tokio::test(start_paused = true)]
async fn callers_without_a_valid_key_get_a_401_and_nothing_goes_upstream() {
    let gw = start(&keys(), MockConfig::default()).await;
    let url = format!("{}/v1/messages", gw.url);
    let a = send("POST", &url, None, &request(SONNET, false)).await;
    assert_eq!(
        (a.status, a.error_type().as_str()),
        (401, "authentication_error")
    );
    let a = send("POST", &url, Some("sk-gw-wrong"), &request(SONNET, false)).await;
    assert_eq!(
        (a.status, a.error_type().as_str()),
        (401, "authentication_error")
    );
    assert_eq!(a.json()["type"], "error");
    // The key's secret in the body is no key either.
    let a = send("GET", &format!("{}/v1/models", gw.url), Some(""), "").await;
    assert_eq!(a.status, 401);
    assert_eq!(upstream_calls(&gw.mock), 0);
    // `Authorization: Bearer` works as `x-api-key` does.
    let bearer = format!("Bearer {ALICE}");
    let a = send_with(
        "POST",
        &url,
        None,
        &[("authorization", &bearer)],
        &request(SONNET, false),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(upstream_calls(&gw.mock), 1);
}

#[tokio::test(start_paused = true)]
async fn answers_and_streams_pass_through_with_only_version_and_beta_forwarded() {
    let gw = start(&keys(), MockConfig::default()).await;
    let url = format!("{}/v1/messages", gw.url);
    let headers = [
        ("anthropic-version", "2023-06-01"),
        ("anthropic-beta", "some-beta-2025"),
        ("user-agent", "callers-agent/1.0"),
        ("x-request-id", "callers-own-id"),
    ];
    let a = send_with("POST", &url, Some(ALICE), &headers, &request(SONNET, false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let m = a.json();
    assert_eq!(
        (m["type"].as_str(), m["model"].as_str()),
        (Some("message"), Some(SONNET))
    );
    let log = gw.mock.log();
    let upstream = &log[0];
    assert_eq!(a.headers["request-id"], upstream.request_id.as_str());
    assert_eq!(a.headers["x-request-id"], "callers-own-id");
    assert_eq!(upstream.headers["anthropic-beta"], "some-beta-2025");
    assert_eq!(upstream.headers["anthropic-version"], "2023-06-01");
    assert_ne!(upstream.headers["user-agent"], "callers-agent/1.0");
    assert_eq!(upstream.headers["api-key-sent"], "true");

    let a = send("POST", &url, Some(ALICE), &request(SONNET, true)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.headers["content-type"], "text/event-stream");
    let events = a.events();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
}

#[tokio::test(start_paused = true)]
async fn models_budgets_and_per_minute_limits_refuse_in_the_api_shape() {
    let gw = start(&keys(), MockConfig::default()).await;
    let url = format!("{}/v1/messages", gw.url);

    // bob may use Haiku only.
    let a = send("POST", &url, Some(BOB), &request(SONNET, false)).await;
    assert_eq!(
        (a.status, a.error_type().as_str()),
        (403, "permission_error")
    );
    assert_eq!(upstream_calls(&gw.mock), 0);
    // bob's budget (0.0001 USD) is spent by one answer (at 1 and 5 USD per million tokens).
    let a = send("POST", &url, Some(BOB), &request(HAIKU, false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send("POST", &url, Some(BOB), &request(HAIKU, false)).await;
    assert_eq!(
        (a.status, a.error_type().as_str()),
        (403, "permission_error")
    );
    assert!(a.body.contains("budget"), "{}", a.body);
    assert_eq!(upstream_calls(&gw.mock), 1);

    // carol: 2 requests a minute; dave: 50 tokens a minute (one answer uses more). A minute
    // of the wall clock may turn between two requests: then the scenario is tried again.
    for attempt in 0..2 {
        let before = upstream_calls(&gw.mock);
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let a = send("POST", &url, Some("sk-gw-carol"), &request(SONNET, false)).await;
            statuses.push((a.status, a.retry_after(), a.error_type()));
        }
        let d1 = send("POST", &url, Some("sk-gw-dave"), &request(SONNET, false)).await;
        let d2 = send("POST", &url, Some("sk-gw-dave"), &request(SONNET, false)).await;
        let expected = statuses[0].0 == 200 && statuses[1].0 == 200 && statuses[2].0 == 429;
        if (!expected || d2.status != 429) && attempt == 0 {
            continue;
        }
        assert_eq!(statuses[2].2, "rate_limit_error", "{statuses:?}");
        assert!((1..=60).contains(&statuses[2].1.unwrap()), "{statuses:?}");
        assert!(expected, "{statuses:?}");
        assert_eq!(d1.status, 200);
        assert_eq!(
            (d2.status, d2.error_type().as_str()),
            (429, "rate_limit_error")
        );
        assert!(d2.body.contains("tokens"), "{}", d2.body);
        assert_eq!(upstream_calls(&gw.mock) - before, 3);
        break;
    }
}

/// A mock whose quota is `rpm` requests a minute.
fn mock_allowing(rpm: u64) -> MockConfig {
    MockConfig {
        limits: RateLimits {
            requests_per_minute: rpm,
            ..RateLimits::default()
        },
        ..MockConfig::default()
    }
}

#[tokio::test(start_paused = true)]
async fn a_full_quota_makes_requests_wait_instead_of_failing() {
    // The API allows 60 requests a minute.
    let toml = format!("{}\n[pacing]\nmax_wait_secs = 60\n", keys());
    let gw = start(&toml, mock_allowing(60)).await;
    let url = format!("{}/v1/messages", gw.url);
    // 90 at once: a minute's burst of 60, then one a second.
    let started = tokio::time::Instant::now();
    for a in burst(&url, ALICE, 90).await {
        assert_eq!(a.status, 200, "{}", a.body);
    }
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(25),
        "{waited:?}: nothing waited"
    );
    let stats = gw.mock.stats();
    assert_eq!(stats.by_status.get(&429), None, "{stats:?}");
    assert_eq!(stats.by_status.get(&200), Some(&90));
}

/// Sends `n` requests at once with `key`; their answers in order.
async fn burst(url: &str, key: &'static str, n: usize) -> Vec<Answer> {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(
                async move { send("POST", &url, Some(key), &request(SONNET, false)).await },
            )
        })
        .collect();
    let mut answers = Vec::new();
    for c in calls {
        answers.push(c.await.unwrap());
    }
    answers
}

#[tokio::test(start_paused = true)]
async fn past_its_wait_or_the_queue_a_request_gets_a_429_with_an_honest_retry_after() {
    // 6 requests a minute (a burst of 6, then one every 10 s), known from the start.
    let mock = mock_allowing(6);
    let toml = format!(
        "{}\n[pacing]\nmax_wait_secs = 15\nmax_queued = 4\nrequests_per_minute = 6\n",
        keys()
    );
    let gw = start(&toml, mock).await;
    let url = format!("{}/v1/messages", gw.url);
    let is_queue_full = |a: &Answer| a.status == 429 && a.body.contains("queue is full");

    // 12 at once with room for 4: 8 refused at once, the time the quota needs for the 4
    // ahead as their retry-after (4 at 6 a minute: 40 s).
    let answers = burst(&url, ALICE, 12).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let full: Vec<_> = answers.iter().filter(|a| is_queue_full(a)).collect();
    assert_eq!((ok, full.len()), (4, 8), "{answers:?}");
    for a in &full {
        assert_eq!(a.error_type(), "rate_limit_error");
        assert_eq!(a.retry_after(), Some(40));
    }

    // 4 more: 2 left in the burst, one waits 10 s (within its 15), one would wait 20 s and
    // is told so at once: a 429 whose retry-after is that wait.
    let answers = burst(&url, ALICE, 4).await;
    let ok = answers.iter().filter(|a| a.status == 200).count();
    let paced: Vec<_> = answers
        .iter()
        .filter(|a| a.status == 429 && !is_queue_full(a))
        .collect();
    assert_eq!((ok, paced.len()), (3, 1), "{answers:?}");
    assert_eq!(paced[0].error_type(), "rate_limit_error");
    let secs = paced[0].retry_after().expect("a retry-after");
    assert!((10..=25).contains(&secs), "{secs}");
    assert_eq!(gw.mock.stats().by_status.get(&429), None, "no 429 upstream");

    // A caller's own deadline shortens the wait: refused at once.
    let a = send_with(
        "POST",
        &url,
        Some(ALICE),
        &[("x-gateway-deadline", "0.5")],
        &request(SONNET, false),
    )
    .await;
    assert_eq!(
        (a.status, a.error_type().as_str()),
        (429, "rate_limit_error"),
        "{}",
        a.body
    );
    assert!(a.retry_after().is_some());
    assert_eq!(gw.mock.stats().by_status.get(&429), None, "no 429 upstream");
}

#[tokio::test(start_paused = true)]
async fn count_tokens_models_and_batches_pass_through() {
    let gw = start(&keys(), MockConfig::default()).await;
    let u = &gw.url;
    let body = json!({"model": SONNET, "messages": [{"role": "user", "content": "count me"}]});
    let a = send(
        "POST",
        &format!("{u}/v1/messages/count_tokens"),
        Some(ALICE),
        &body.to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.json()["input_tokens"].as_u64().unwrap() > 0);
    let a = send(
        "POST",
        &format!("{u}/v1/messages/count_tokens"),
        Some(BOB),
        &body.to_string(),
    )
    .await;
    assert_eq!(a.status, 403);

    let a = send("GET", &format!("{u}/v1/models?limit=2"), Some(ALICE), "").await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["data"].as_array().unwrap().len(), 2);
    let a = send("GET", &format!("{u}/v1/models/{SONNET}"), Some(ALICE), "").await;
    assert_eq!(a.json()["id"], SONNET);

    let batch = json!({"requests": [
        {"custom_id": "one", "params": {"model": HAIKU, "max_tokens": 16,
            "messages": [{"role": "user", "content": "hi"}]}}]});
    // bob may use Haiku: but a Sonnet request in his batch is refused whole.
    let mixed = json!({"requests": [
        {"custom_id": "one", "params": {"model": HAIKU, "max_tokens": 16, "messages": []}},
        {"custom_id": "two", "params": {"model": SONNET, "max_tokens": 16, "messages": []}}]});
    let a = send(
        "POST",
        &format!("{u}/v1/messages/batches"),
        Some(BOB),
        &mixed.to_string(),
    )
    .await;
    assert_eq!(a.status, 403, "{}", a.body);
    let a = send(
        "POST",
        &format!("{u}/v1/messages/batches"),
        Some(ALICE),
        &batch.to_string(),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let id = a.json()["id"].as_str().unwrap().to_owned();
    let a = send(
        "GET",
        &format!("{u}/v1/messages/batches/{id}"),
        Some(ALICE),
        "",
    )
    .await;
    assert_eq!(a.json()["id"], id.as_str());
    let a = send(
        "GET",
        &format!("{u}/v1/messages/batches?limit=5"),
        Some(ALICE),
        "",
    )
    .await;
    assert!(
        a.json()["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == id.as_str())
    );
    // Ended (the mock's batches end soon); its results are JSON lines.
    let mut results = None;
    for _ in 0..100 {
        let b = send(
            "GET",
            &format!("{u}/v1/messages/batches/{id}"),
            Some(ALICE),
            "",
        )
        .await;
        if b.json()["processing_status"] == "ended" {
            let r = send(
                "GET",
                &format!("{u}/v1/messages/batches/{id}/results"),
                Some(ALICE),
                "",
            )
            .await;
            results = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
    let r = results.expect("the batch ended");
    assert_eq!(r.status, 200, "{}", r.body);
    let line: serde_json::Value = serde_json::from_str(r.body.lines().next().unwrap()).unwrap();
    assert_eq!(line["custom_id"], "one");
    let a = send(
        "DELETE",
        &format!("{u}/v1/messages/batches/{id}"),
        Some(ALICE),
        "",
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    let a = send(
        "GET",
        &format!("{u}/v1/messages/batches/msgbatch_nope"),
        Some(ALICE),
        "",
    )
    .await;
    assert_eq!(
        (a.status, a.error_type().as_str()),
        (404, "not_found_error")
    );
}

#[tokio::test(start_paused = true)]
async fn each_model_falls_back_along_its_own_chain() {
    let toml = format!(
        "{}\n[fallbacks]\n\"claude-sonnet-4-6\" = [\"claude-haiku-4-5\"]\n",
        keys()
    );
    let gw = start(&toml, MockConfig::default()).await;
    gw.mock
        .model_outage_for(SONNET, Duration::from_secs(600), OutageKind::Overloaded);
    gw.mock.model_outage_for(
        "claude-opus-4-6",
        Duration::from_secs(600),
        OutageKind::Overloaded,
    );
    let url = format!("{}/v1/messages", gw.url);
    let a = send("POST", &url, Some(ALICE), &request(SONNET, false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.json()["model"], HAIKU);
    // Opus has no chain: its outage reaches the caller, typed.
    let a = send(
        "POST",
        &url,
        Some(ALICE),
        &request("claude-opus-4-6", false),
    )
    .await;
    assert_eq!(
        (a.status, a.error_type().as_str()),
        (503, "overloaded_error"),
        "{}",
        a.body
    );
}

/// Opens a raw connection to the gateway.
async fn raw(gw: &Gw) -> tokio::net::TcpStream {
    let addr = gw.url.trim_start_matches("http://");
    tokio::net::TcpStream::connect(addr).await.unwrap()
}

/// Reads what the gateway sends until it closes or goes quiet for a minute (paused time).
async fn read_all(s: &mut tokio::net::TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends `bytes` on a new connection; what the gateway answers before it closes or goes quiet.
async fn exchange(gw: &Gw, bytes: &str) -> String {
    let mut s = raw(gw).await;
    s.write_all(bytes.as_bytes()).await.unwrap();
    read_all(&mut s).await
}

/// Whether the gateway closes `s` (within a minute of paused time), whatever it sends first.
async fn closed(s: &mut tokio::net::TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(60), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(start_paused = true)]
async fn hostile_callers_get_nothing() {
    let toml = format!(
        "{}\n[limits]\nmax_body_bytes = 4096\nbody_timeout_secs = 5\nheader_timeout_secs = 5\n",
        keys()
    );
    let gw = start(&toml, MockConfig::default()).await;

    let key = format!("x-api-key: {ALICE}\r\n");
    let post = "POST /v1/messages HTTP/1.1\r\nhost: x\r\n";
    // A huge body declared: 413 before a byte of it is read.
    let answer = exchange(
        &gw,
        &format!("{post}{key}content-length: 100000000\r\n\r\n"),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("request_too_large"), "{answer}");
    // No key and a huge body: 401, the body unread.
    let answer = exchange(&gw, &format!("{post}content-length: 100000000\r\n\r\n")).await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    // A chunked body that grows past the bound: 413 once it does.
    let chunk = format!("1000\r\n{}\r\n", "x".repeat(4096));
    let head = format!("{post}{key}transfer-encoding: chunked\r\n\r\n{chunk}{chunk}");
    let answer = exchange(&gw, &head).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    // A body that never comes: 408 after the body timeout.
    let head = format!("{post}{key}content-length: 100\r\n\r\n{{\"mod");
    let answer = exchange(&gw, &head).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Headers that never end: the connection is closed.
    let mut s = raw(&gw).await;
    s.write_all(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-ke")
        .await
        .unwrap();
    assert!(closed(&mut s).await, "slow headers keep the connection");

    // A connection that sends nothing, and one idle after its answer: closed (they would
    // otherwise hold a place among `limits.max_connections`).
    let mut silent = raw(&gw).await;
    assert!(closed(&mut silent).await, "a silent connection stays open");
    let mut idle = raw(&gw).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_all(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed(&mut idle).await, "an idle connection stays open");

    // Garbage: a 400 from the HTTP layer, nothing upstream.
    let answer = exchange(&gw, "\x16\x03\x01garbage\r\n\r\n").await;
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );
    assert_eq!(upstream_calls(&gw.mock), 0);
}

#[tokio::test(start_paused = true)]
async fn a_caller_hanging_up_mid_stream_frees_the_upstream_stream() {
    let mock = MockConfig {
        latency: anthropic_mock::Latency {
            tokens_per_second: 2,
            ..Default::default()
        },
        ..MockConfig::default()
    };
    let toml = format!("{}\n[upstream]\nconcurrency = 3\n", keys());
    let gw = start(&toml, mock).await;
    let client = gw.gateway.client().clone();
    let mut s = raw(&gw).await;
    let body = request(SONNET, true);
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: {ALICE}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    assert_eq!(client.available_permits(), 2, "the stream holds a permit");
    assert_eq!(gw.mock.stats().open_streams, 1);
    drop(s);
    for _ in 0..50 {
        if client.available_permits() == 3 && gw.mock.stats().open_streams == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(client.available_permits(), 3, "the permit came back");
    assert_eq!(
        gw.mock.stats().open_streams,
        0,
        "the upstream stream was dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn metrics_name_keys_and_models_never_secrets() {
    let gw = start(&keys(), MockConfig::default()).await;
    let url = format!("{}/v1/messages", gw.url);
    assert_eq!(
        send("POST", &url, Some(ALICE), &request(SONNET, false))
            .await
            .status,
        200
    );
    assert_eq!(
        send("POST", &url, Some("sk-gw-nobody"), "{}").await.status,
        401
    );
    let m = send("GET", &format!("{}/metrics", gw.url), None, "").await;
    assert_eq!(m.status, 200);
    for needle in [
        "anthropic_gateway_requests_total{key=\"alice\",model=\"claude-sonnet-4-6\",status=\"200\"}",
        "anthropic_gateway_request_duration_seconds_bucket",
        "anthropic_gateway_tokens_total",
        "anthropic_gateway_queue_depth",
        "anthropic_gateway_pacer_remaining",
        "anthropic_client_attempts",
    ] {
        assert!(m.body.contains(needle), "{needle} missing:\n{}", m.body);
    }
    for secret in [ALICE, "sk-gw-nobody", "sk-ant-upstream-secret"] {
        assert!(!m.body.contains(secret), "{secret} in the metrics");
    }
    let health = send("GET", &format!("{}/healthz", gw.url), None, "").await;
    assert_eq!(health.status, 200);
    let ready = send("GET", &format!("{}/readyz", gw.url), None, "").await;
    assert_eq!(ready.status, 200);
    gw.gateway.set_unready();
    let ready = send("GET", &format!("{}/readyz", gw.url), None, "").await;
    assert_eq!(ready.status, 503);
}

#[tokio::test(start_paused = true)]
async fn a_reload_replaces_keys_and_limits() {
    let gw = start(&keys(), MockConfig::default()).await;
    let url = format!("{}/v1/messages", gw.url);
    assert_eq!(
        send("POST", &url, Some(ALICE), &request(SONNET, false))
            .await
            .status,
        200
    );
    let text = format!(
        "[[key]]\nname = \"erin\"\nhash = \"sha256:{}\"\n\n[limits]\nmax_body_bytes = 64\n",
        KeyHash::of("sk-gw-erin").hex()
    );
    let new = Config::parse(&text, "reloaded.toml".as_ref(), std::iter::empty()).unwrap();
    gw.gateway.reload(&new);
    let a = send("POST", &url, Some(ALICE), &request(SONNET, false)).await;
    assert_eq!(a.status, 401);
    let a = send("POST", &url, Some("sk-gw-erin"), &request(SONNET, false)).await;
    assert_eq!(a.status, 413, "the new body bound: {}", a.body);
}

#[tokio::test(start_paused = true)]
async fn an_address_trying_keys_is_throttled_for_the_rest_of_its_minute() {
    let toml = format!("{}\n[limits]\nfailed_auth_per_minute = 3\n", keys());
    let gw = start(&toml, MockConfig::default()).await;
    let url = format!("{}/v1/messages", gw.url);
    for i in 0..3 {
        let a = send("POST", &url, Some(&format!("sk-gw-guess-{i}")), "{}").await;
        assert_eq!(a.status, 401);
    }
    // The fourth try, and then even a valid key from the same address: 429, no lookup.
    let a = send("POST", &url, Some("sk-gw-guess-3"), "{}").await;
    assert_eq!(
        (a.status, a.error_type().as_str()),
        (429, "rate_limit_error")
    );
    let wait = a.retry_after().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    let a = send("POST", &url, Some(ALICE), &request(SONNET, false)).await;
    assert_eq!(a.status, 429);
    assert_eq!(upstream_calls(&gw.mock), 0);
    // The next minute, the address starts afresh.
    tokio::time::sleep(Duration::from_secs(wait)).await;
    let a = send("POST", &url, Some(ALICE), &request(SONNET, false)).await;
    assert_eq!(a.status, 200, "{}", a.body);
}
