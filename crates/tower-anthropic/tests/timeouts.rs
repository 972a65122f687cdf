//! Timeouts and the concurrency limit in the default `Client`, against the mock. Paused time.

use std::time::Duration;

use anthropic_mock::{Latency, MockConfig, MockServer, ScriptEntry};
use tokio::time::Instant;
use tower_anthropic::error::TimeoutKind;
use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
use tower_anthropic::stream::MessageStream;
use tower_anthropic::{ApiErrorKind, Client, ClientBuilder, Error};

mod support;
use support::{drain, names, timeout_kind};

fn builder(s: &MockServer, key: &str) -> ClientBuilder {
    support::builder(s, key, 9)
}

fn req(max_tokens: u32) -> CreateMessageRequest {
    support::req(max_tokens)
}

/// A stream through the client's stack, its requests tagged with `key` for the mock.
async fn open_stream(c: &Client, key: &str) -> Result<MessageStream, Error> {
    let mut endpoint = c.service().endpoint().clone();
    endpoint.set_header("x-mock-key".parse().unwrap(), key.parse().unwrap());
    let svc = MessagesService::new(c.service().into_inner(), endpoint);
    svc.stream(CreateMessageRequest::new("claude-m", 60).user("Hi"))
        .await
}

#[tokio::test(start_paused = true)]
async fn an_attempt_timeout_is_retried_then_the_call_succeeds() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s, "t")
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    s.script("t", [ScriptEntry::Stall { ms: 60_000 }]);
    let start = Instant::now();
    let msg = c.messages().create(req(64)).await.unwrap();
    assert_eq!(msg.attempts(), 2);
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(10) && took < Duration::from_secs(12),
        "{took:?}"
    );

    // With no retries left the timeout is the error.
    let c = builder(&s, "t")
        .timeout(Duration::from_secs(10))
        .max_retries(0)
        .build()
        .unwrap();
    s.script("t", [ScriptEntry::Stall { ms: 60_000 }]);
    let e = c.messages().create(req(64)).await.unwrap_err();
    assert_eq!(timeout_kind(&e), Some(TimeoutKind::Attempt));
    assert!(e.is_retryable());
    assert_eq!(e.to_string(), "attempt timed out after 10s");
}

#[tokio::test(start_paused = true)]
async fn a_body_that_stalls_mid_way_is_retried() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s, "b")
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    s.script("b", [ScriptEntry::StallBody { ms: 60_000 }]);
    let msg = c.messages().create(req(64)).await.unwrap();
    assert_eq!(msg.attempts(), 2);
    assert_eq!(s.stats().requests, 2);
}

#[tokio::test(start_paused = true)]
async fn a_deadline_cuts_a_retry_wait_short() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s, "d")
        .deadline(Duration::from_secs(3))
        .build()
        .unwrap();
    s.script(
        "d",
        [ScriptEntry::status_with_headers(
            529,
            [("retry-after", "5")],
        )],
    );
    let start = Instant::now();
    let e = c.messages().create(req(64)).await.unwrap_err();
    assert_eq!(Instant::now(), start, "no wait was started");
    assert_eq!(timeout_kind(&e), Some(TimeoutKind::Deadline));
    assert_eq!(
        e.kind(),
        Some(ApiErrorKind::Overloaded),
        "the last error is kept"
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    assert!(!e.is_retryable());
    assert!(std::error::Error::source(&e).is_some());

    // A deadline also bounds an attempt in flight.
    s.script("d", [ScriptEntry::Stall { ms: 60_000 }]);
    let start = Instant::now();
    let e = c.messages().create(req(64)).await.unwrap_err();
    assert_eq!(timeout_kind(&e), Some(TimeoutKind::Deadline));
    assert_eq!(start.elapsed(), Duration::from_secs(3));
}

#[tokio::test(start_paused = true)]
async fn a_stalled_stream_ends_with_the_idle_timeout() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s, "i")
        .stream_idle_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // Stalled once content has been handed over (a stall before it is re-sent instead).
    s.script(
        "i",
        [ScriptEntry::StreamStall {
            after: 5,
            ms: 600_000,
        }],
    );
    let (events, err) = drain(open_stream(&c, "i").await.unwrap()).await;
    let err = err.expect("the stream ended without an error");
    assert_eq!(timeout_kind(&err), Some(TimeoutKind::StreamIdle), "{err}");
    assert!(
        names(&events).contains(&"content_block_delta"),
        "content came first: {:?}",
        names(&events)
    );
    // A healthy stream passes.
    let (events, err) = drain(open_stream(&c, "none").await.unwrap()).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(names(&events).last(), Some(&"message_stop"));
}

#[tokio::test(start_paused = true)]
async fn the_long_request_guard() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s, "g").build().unwrap();
    let e = c.messages().create(req(21_334)).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
    assert!(e.to_string().contains("stream"), "{e}");
    assert_eq!(s.stats().requests, 0, "refused before sending");
    c.messages().create(req(21_333)).await.unwrap();
    // An explicit timeout lifts the guard, as in the SDKs.
    let c = builder(&s, "g")
        .timeout(Duration::from_secs(3600))
        .build()
        .unwrap();
    c.messages().create(req(21_334)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_limit_of_2_holds_streams_until_they_end() {
    let config = MockConfig {
        latency: Latency {
            tokens_per_second: 30,
            ..Default::default()
        },
        ..Default::default()
    };
    let s = MockServer::start(config).await.unwrap();
    let c = builder(&s, "l").concurrency_limit(2).build().unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..5 {
        let c = c.clone();
        set.spawn(async move { drain(open_stream(&c, "none").await.unwrap()).await });
    }
    let mut done = 0;
    while let Some(r) = set.join_next().await {
        let (events, err) = r.unwrap();
        assert!(err.is_none(), "{err:?}");
        assert_eq!(names(&events).last(), Some(&"message_stop"));
        done += 1;
    }
    assert_eq!(done, 5);
    let stats = s.stats();
    assert_eq!(
        stats.max_open_streams, 2,
        "never more than 2 streams at once"
    );
    assert_eq!(c.available_permits(), 2);
}

#[tokio::test(start_paused = true)]
async fn load_shedding_fails_fast_when_full() {
    let config = MockConfig {
        latency: Latency {
            tokens_per_second: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    let s = MockServer::start(config).await.unwrap();
    let c = builder(&s, "ls")
        .concurrency_limit(1)
        .load_shed(true)
        .build()
        .unwrap();
    let held = open_stream(&c, "none").await.unwrap();
    assert_eq!(c.available_permits(), 0);
    let e = c.messages().create(req(16)).await.unwrap_err();
    assert!(matches!(e, Error::LimitReached(_)), "{e:?}");
    assert!(!e.is_retryable());
    drop(held);
    assert_eq!(
        c.available_permits(),
        1,
        "dropping the stream frees the permit"
    );
    c.messages().create(req(16)).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dropping_calls_mid_flight_returns_every_permit_and_connection() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s, "x").concurrency_limit(3).build().unwrap();
    s.script("x", (0..3).map(|_| ScriptEntry::Delay { ms: 60_000 }));
    let mut handles = Vec::new();
    // Three calls in flight (held 60 s by the mock), two queued behind the limit.
    for _ in 0..5 {
        let c = c.clone();
        handles.push(tokio::spawn(
            async move { c.messages().create(req(16)).await },
        ));
    }
    // Past the pacer's cold start (2 s without an answer from the new quota): all go out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(c.available_permits(), 0);
    assert_eq!(s.stats().requests, 3, "two calls wait in line");
    for h in &handles {
        h.abort();
    }
    for h in handles {
        assert!(h.await.unwrap_err().is_cancelled());
    }
    assert_eq!(c.available_permits(), 3);
    // The aborted requests' connections are closed, not leaked: the mock sees them go.
    for _ in 0..100 {
        if s.stats().open_connections == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(s.stats().open_connections, 0);
    // The client still works, and its pooled connection is the only one left open.
    c.messages().create(req(16)).await.unwrap();
    assert_eq!(s.stats().open_connections, 1);
    assert_eq!(c.available_permits(), 3);
}
