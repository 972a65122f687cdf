//! Graceful degradation against the mock: the circuit breaker's state machine, which errors
//! count, the fallback chain and its refusals, degrade-to-default. Paused time.

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, OutageKind, ScriptEntry};
use tower::{Layer, ServiceExt};
use tower_anthropic::breaker::{CircuitBreakerConfig, CircuitBreakers, CircuitKey, CircuitState};
use tower_anthropic::degrade::{DegradeLayer, DegradeRequest};
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::{Client, ClientBuilder, Error, Message};

mod support;

const PRIMARY: &str = "claude-sonnet-4-6";
const SECOND: &str = "claude-haiku-4-5";
const THIRD: &str = "claude-haiku-3-5";

async fn mock() -> MockServer {
    MockServer::start(MockConfig::default()).await.unwrap()
}

fn req(model: &str) -> CreateMessageRequest {
    CreateMessageRequest::new(model, 16).user("Hello")
}

/// Four outcomes are judged, half failing opens; open 5 s, then 10 s, capped at 12 s; two probes.
fn config() -> CircuitBreakerConfig {
    CircuitBreakerConfig::new()
        .minimum_calls(4)
        .window_calls(50)
        .failure_rate_threshold(0.5)
        .window(Duration::from_secs(10))
        .open_for(Duration::from_secs(5))
        .max_open_for(Duration::from_secs(12))
        .half_open_probes(2)
}

/// A client without retries (each call is one attempt) guarded by `breakers`.
fn client(s: &MockServer, key: &str, breakers: &CircuitBreakers) -> ClientBuilder {
    support::builder(s, key, 1)
        .max_retries(0)
        .pacing(false)
        .circuit_breakers(breakers.clone())
}

fn open_error(r: Result<impl std::fmt::Debug, Error>) -> tower_anthropic::error::CircuitOpenError {
    match r {
        Err(Error::CircuitOpen(e)) => e,
        other => panic!("expected an open circuit, got {other:?}"),
    }
}

/// `n` calls for the primary, their results ignored (scripted failures, usually).
async fn calls(c: &Client, n: usize) {
    for _ in 0..n {
        let _ = c.messages().create(req(PRIMARY)).await;
    }
}

fn model_requests(s: &MockServer, model: &str) -> u64 {
    s.stats().by_model.get(model).copied().unwrap_or(0)
}

#[tokio::test(start_paused = true)]
async fn opens_at_the_threshold_once_the_window_holds_minimum_calls() {
    let s = mock().await;
    let b = CircuitBreakers::new(config());
    let c = client(&s, "open", &b).build().unwrap();
    s.script(
        "open",
        [
            ScriptEntry::status(529),
            ScriptEntry::Ok,
            ScriptEntry::status(500),
        ],
    );
    calls(&c, 3).await;
    // Two failures in three: over the threshold, but under the minimum number of calls.
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Closed));
    s.script("open", [ScriptEntry::Ok]);
    c.messages().create(req(PRIMARY)).await.unwrap();
    // 2 of 4 failed: 50% reaches the threshold.
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Open));
    let e = open_error(c.messages().create(req(PRIMARY)).await);
    assert_eq!(e.key(), PRIMARY);
    assert_eq!(e.retry_after(), Duration::from_secs(5));
    assert!(!e.is_half_open());
    assert_eq!(
        s.stats().requests,
        4,
        "the refused call never reached the server"
    );
    let snap = &b.snapshot()[0];
    assert_eq!(snap.times_opened, 1);
    assert_eq!(snap.retry_after, Some(Duration::from_secs(5)));
    // Another model has its own circuit.
    c.messages().create(req(SECOND)).await.unwrap();
    assert_eq!(b.state(SECOND), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn failures_leave_the_rolling_window() {
    let s = mock().await;
    let b = CircuitBreakers::new(config());
    let c = client(&s, "win", &b).build().unwrap();
    s.script("win", std::iter::repeat_n(ScriptEntry::status(529), 3));
    calls(&c, 3).await;
    tokio::time::advance(Duration::from_secs(12)).await;
    // The three failures are older than the window: one more failure is 1 of 1, under minimum.
    s.script("win", [ScriptEntry::status(529)]);
    let _ = c.messages().create(req(PRIMARY)).await;
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Closed));
    assert_eq!(b.snapshot()[0].calls, 1);
    assert_eq!(b.snapshot()[0].failures, 1);
}

#[tokio::test(start_paused = true)]
async fn a_busy_targets_earlier_successes_do_not_dilute_an_outage() {
    let s = mock().await;
    let b = CircuitBreakers::new(config().window_calls(20));
    let c = client(&s, "busy", &b).build().unwrap();
    for _ in 0..100 {
        c.messages().create(req(PRIMARY)).await.unwrap();
    }
    s.script("busy", std::iter::repeat_n(ScriptEntry::status(529), 10));
    for i in 0..10 {
        assert_eq!(
            b.state(PRIMARY),
            Some(CircuitState::Closed),
            "after {i} failures"
        );
        let _ = c.messages().create(req(PRIMARY)).await;
    }
    // Ten failures among the last twenty outcomes: open, however many successes came before.
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Open));
}

#[tokio::test(start_paused = true)]
async fn half_open_bounds_probes_reopens_longer_and_closes_on_success() {
    let s = mock().await;
    let b = CircuitBreakers::new(config());
    let c = client(&s, "half", &b).build().unwrap();
    s.script("half", std::iter::repeat_n(ScriptEntry::status(529), 4));
    calls(&c, 4).await;
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Open));
    tokio::time::advance(Duration::from_secs(5)).await;
    assert_eq!(b.state(PRIMARY), Some(CircuitState::HalfOpen));

    // Two probes in flight (slow answers); a third call is refused while they are.
    s.script(
        "half",
        [
            ScriptEntry::Delay { ms: 1000 },
            ScriptEntry::Delay { ms: 1000 },
        ],
    );
    let p1 = tokio::spawn({
        let c = c.clone();
        async move { c.messages().create(req(PRIMARY)).await }
    });
    let p2 = tokio::spawn({
        let c = c.clone();
        async move { c.messages().create(req(PRIMARY)).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(b.snapshot()[0].probes_in_flight, 2);
    let e = open_error(c.messages().create(req(PRIMARY)).await);
    assert!(e.is_half_open());
    assert_eq!(e.retry_after(), Duration::ZERO);
    p1.await.unwrap().unwrap();
    p2.await.unwrap().unwrap();
    // Both probes succeeded: closed, with a fresh window and the first interval again.
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Closed));
    assert_eq!(b.snapshot()[0].open_interval, Duration::from_secs(5));

    // Open it again; this time a probe fails: reopened for twice as long.
    s.script("half", std::iter::repeat_n(ScriptEntry::status(503), 5));
    calls(&c, 4).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let _ = c.messages().create(req(PRIMARY)).await; // the failing probe
    let e = open_error(c.messages().create(req(PRIMARY)).await);
    assert_eq!(e.retry_after(), Duration::from_secs(10));
    // And again: doubled to 20 s, capped at 12 s.
    tokio::time::advance(Duration::from_secs(10)).await;
    s.script("half", [ScriptEntry::Reset]);
    let _ = c.messages().create(req(PRIMARY)).await;
    let e = open_error(c.messages().create(req(PRIMARY)).await);
    assert_eq!(e.retry_after(), Duration::from_secs(12));
    assert_eq!(b.snapshot()[0].times_opened, 4);
}

#[tokio::test(start_paused = true)]
async fn client_errors_and_rate_limits_never_open_it() {
    let s = mock().await;
    let b = CircuitBreakers::new(config());
    let c = client(&s, "4xx", &b).build().unwrap();
    let spend = ScriptEntry::status_with_code(429, "enforced_spend_limit_reached");
    let mut entries = Vec::new();
    for _ in 0..5 {
        entries.extend([
            ScriptEntry::status(400),
            ScriptEntry::status(401),
            ScriptEntry::status_with_headers(429, [("retry-after", "1")]),
            spend.clone(),
            ScriptEntry::status(404),
        ]);
    }
    let n = entries.len();
    s.script("4xx", entries);
    for _ in 0..n {
        let e = c.messages().create(req(PRIMARY)).await.unwrap_err();
        assert!(e.status().is_some_and(|s| s.is_client_error()), "{e:?}");
    }
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Closed));
    assert_eq!(b.snapshot()[0].failures, 0);
    assert_eq!(
        b.snapshot()[0].calls,
        n as u32,
        "answered calls count as successes"
    );
    // Connection resets and 5xx do count.
    s.script(
        "4xx",
        [
            ScriptEntry::Reset,
            ScriptEntry::status(502),
            ScriptEntry::status(529),
            ScriptEntry::status(500),
        ],
    );
    calls(&c, 4).await;
    assert_eq!(b.snapshot()[0].failures, 4);
}

#[tokio::test(start_paused = true)]
async fn clones_and_clients_share_circuits() {
    let s = mock().await;
    let b = CircuitBreakers::new(config());
    let a = client(&s, "share", &b).build().unwrap();
    let other = client(&s, "share", &b).build().unwrap();
    s.script("share", std::iter::repeat_n(ScriptEntry::status(529), 4));
    for _ in 0..2 {
        let _ = a.messages().create(req(PRIMARY)).await;
        let _ = a.clone().messages().create(req(PRIMARY)).await;
    }
    open_error(other.messages().create(req(PRIMARY)).await);
    let seen = other.circuit_breakers().unwrap().snapshot();
    assert_eq!(seen[0].state, CircuitState::Open);
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_probe_frees_its_slot() {
    let s = mock().await;
    let b = CircuitBreakers::new(config().half_open_probes(1));
    let c = client(&s, "cancel", &b).build().unwrap();
    s.script("cancel", std::iter::repeat_n(ScriptEntry::status(529), 4));
    calls(&c, 4).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    // The only probe hangs, and its caller gives up on it.
    s.script("cancel", [ScriptEntry::Delay { ms: 60_000 }]);
    let probe =
        tokio::time::timeout(Duration::from_secs(1), c.messages().create(req(PRIMARY))).await;
    assert!(probe.is_err(), "the probe was cut short");
    assert_eq!(b.snapshot()[0].probes_in_flight, 0);
    // The slot is free: the next call is a probe, succeeds, and closes the circuit.
    c.messages().create(req(PRIMARY)).await.unwrap();
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn a_key_of_the_callers_choosing() {
    use tower_anthropic::breaker::CircuitBreakerLayer;
    let b = CircuitBreakers::new(config().minimum_calls(2));
    // Any HTTP service: here one that always fails to connect.
    let failing = tower::service_fn(|_req: http::Request<()>| async {
        Err::<http::Response<()>, _>(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "refused",
        ))
    });
    let svc = CircuitBreakerLayer::new(b.clone()).layer(failing);
    let keyed = |k: &str| {
        let mut r = http::Request::new(());
        r.extensions_mut().insert(CircuitKey::new(k));
        r
    };
    for _ in 0..2 {
        let e = svc.clone().oneshot(keyed("tenant-a")).await.unwrap_err();
        assert!(matches!(e, Error::Connection(_)));
    }
    open_error(svc.clone().oneshot(keyed("tenant-a")).await);
    // Another key, and a request with no key at all, go through to the service.
    let e = svc.clone().oneshot(keyed("tenant-b")).await.unwrap_err();
    assert!(matches!(e, Error::Connection(_)));
    let e = svc.oneshot(http::Request::new(())).await.unwrap_err();
    assert!(matches!(e, Error::Connection(_)));
    assert_eq!(b.state("default"), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn falls_back_down_the_chain_in_order() {
    let s = mock().await;
    s.model_outage_for(PRIMARY, Duration::from_secs(600), OutageKind::Overloaded);
    s.model_outage_for(SECOND, Duration::from_secs(600), OutageKind::Reset);
    let c = support::builder(&s, "chain", 2)
        .fallback_models([SECOND, THIRD])
        .build()
        .unwrap();
    let msg = c.messages().create(req(PRIMARY)).await.unwrap();
    assert_eq!(msg.model, THIRD);
    assert_eq!(msg.fallback_depth(), 2);
    // Each model got its retries (1 + 2) before the next was tried.
    assert_eq!(model_requests(&s, PRIMARY), 3);
    assert_eq!(model_requests(&s, SECOND), 3);
    assert_eq!(model_requests(&s, THIRD), 1);
    // A call for a model of the chain skips that model, and a healthy model answers itself.
    let msg = c.messages().create(req(THIRD)).await.unwrap();
    assert_eq!((msg.model.as_str(), msg.fallback_depth()), (THIRD, 0));
    // Streams fall back too, before anything is handed over.
    let stream = c.messages().stream(req(SECOND)).await.unwrap();
    assert_eq!(
        stream.fallback_depth(),
        1,
        "{SECOND} failed, the chain skips it"
    );
    assert_eq!(stream.final_message().await.unwrap().model, THIRD);
}

#[tokio::test(start_paused = true)]
async fn with_breakers_a_down_model_is_skipped_at_once() {
    let s = mock().await;
    s.model_outage_for(PRIMARY, Duration::from_secs(600), OutageKind::Overloaded);
    let b = CircuitBreakers::new(config());
    let c = support::builder(&s, "skip", 3)
        .circuit_breakers(b.clone())
        .fallback_models([SECOND])
        .build()
        .unwrap();
    for _ in 0..20 {
        let msg = c.messages().create(req(PRIMARY)).await.unwrap();
        assert_eq!(msg.model, SECOND);
    }
    // Four failed attempts opened the primary's circuit; the rest never reached it.
    assert_eq!(model_requests(&s, PRIMARY), 4);
    assert_eq!(model_requests(&s, SECOND), 20);
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Open));
}

#[tokio::test(start_paused = true)]
async fn never_falls_back_on_client_errors_spend_limits_or_after_content() {
    let s = mock().await;
    let c = support::builder(&s, "refuse", 4)
        .fallback_models([SECOND])
        .build()
        .unwrap();
    let spend = ScriptEntry::status_with_code(429, "enforced_spend_limit_reached");
    for (entry, status) in [
        (ScriptEntry::status(400), 400),
        (ScriptEntry::status(401), 401),
        (ScriptEntry::status(403), 403),
        (spend, 429),
    ] {
        s.reset();
        s.script("refuse", [entry]);
        let e = c.messages().create(req(PRIMARY)).await.unwrap_err();
        assert_eq!(e.status().map(|s| s.as_u16()), Some(status));
        assert_eq!(s.stats().requests, 1, "{status}: no fallback request");
    }
    // An overloaded error after content: the stream fails, nothing is re-issued.
    s.reset();
    s.script(
        "refuse",
        [ScriptEntry::StreamError {
            after: 6,
            error_type: Some("overloaded_error".into()),
        }],
    );
    let stream = c.messages().stream(req(PRIMARY)).await.unwrap();
    let (_, err) = support::drain(stream).await;
    match err {
        Some(Error::Stream(e)) => assert!(e.after_content(), "{e:?}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(s.stats().requests, 1);
}

fn canned(req: &CreateMessageRequest, _e: &Error) -> Option<Message> {
    Some(Message::canned(&req.model, "busy; try again soon"))
}

#[tokio::test(start_paused = true)]
async fn degrades_chosen_errors_and_marks_the_answer() {
    let s = mock().await;
    s.model_outage_for(PRIMARY, Duration::from_secs(600), OutageKind::Overloaded);
    let c = support::builder(&s, "deg", 5)
        .max_retries(1)
        .degrade(canned)
        .build()
        .unwrap();
    let answer = c.messages().create(req(PRIMARY)).await.unwrap();
    assert!(answer.is_degraded());
    assert_eq!(answer.text(), "busy; try again soon");
    let cause = answer.degraded_by().unwrap();
    assert_eq!(cause.status().map(|s| s.as_u16()), Some(529));
    assert_eq!(answer.attempts(), 2);
    // A healthy model's answer is not marked.
    let answer = c.messages().create(req(SECOND)).await.unwrap();
    assert!(!answer.is_degraded());
    assert!(answer.degraded_by().is_none());
    // The caller's own errors are not degraded.
    s.script("deg", [ScriptEntry::status(400)]);
    let e = c.messages().create(req(SECOND)).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(400));
    // A closure returning None keeps the error; a narrower predicate leaves the rest alone.
    let none = support::builder(&s, "deg", 5)
        .max_retries(0)
        .degrade(|_, _| None)
        .build()
        .unwrap();
    assert!(none.messages().create(req(PRIMARY)).await.is_err());
    let only_open = support::builder(&s, "deg", 5)
        .max_retries(0)
        .degrade(canned)
        .degrade_when(|e| matches!(e, Error::CircuitOpen(_)))
        .build()
        .unwrap();
    let e = only_open.messages().create(req(PRIMARY)).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(529));
}

#[tokio::test(start_paused = true)]
async fn degrades_through_a_service_of_yours() {
    let s = mock().await;
    s.outage_for(Duration::from_secs(600), OutageKind::Reset);
    let c = support::builder(&s, "svc", 6)
        .max_retries(0)
        .build()
        .unwrap();
    // An asynchronous source of stand-ins (a cache, say), as a tower service.
    let cache = tower::service_fn(|ask: DegradeRequest<CreateMessageRequest>| async move {
        assert!(ask.error.is_unhealthy());
        Ok::<_, Error>(Some(Message::canned(&ask.request.model, "from the cache")))
    });
    let svc = DegradeLayer::service(cache).layer(c.service());
    let answer = svc.oneshot(req(PRIMARY)).await.unwrap();
    assert!(answer.is_degraded());
    assert_eq!(answer.text(), "from the cache");
    assert!(matches!(answer.degraded_by(), Some(Error::Connection(_))));
}

#[tokio::test(start_paused = true)]
async fn a_model_outage_hits_only_that_model() {
    let s = mock().await;
    s.model_outage_for(PRIMARY, Duration::from_secs(10), OutageKind::Overloaded);
    let c: Client = support::builder(&s, "mo", 7)
        .max_retries(0)
        .build()
        .unwrap();
    let e = c.messages().create(req(PRIMARY)).await.unwrap_err();
    assert_eq!(e.status().map(|s| s.as_u16()), Some(529));
    c.messages().create(req(SECOND)).await.unwrap();
    tokio::time::advance(Duration::from_secs(10)).await;
    c.messages().create(req(PRIMARY)).await.unwrap();
    assert_eq!(s.stats().by_fault.get("outage"), Some(&1));
}

#[tokio::test(start_paused = true)]
async fn streams_count_when_they_end() {
    let s = mock().await;
    let b = CircuitBreakers::new(config());
    let c = client(&s, "sc", &b)
        .retry_streams_before_content(false)
        .build()
        .unwrap();
    // A whole stream: one success.
    let stream = c.messages().stream(req(PRIMARY)).await.unwrap();
    stream.final_message().await.unwrap();
    assert_eq!((b.snapshot()[0].calls, b.snapshot()[0].failures), (1, 0));
    // An overloaded error event before content, a cut stream, and an error event after
    // content: three failures, though each began with a 200.
    s.script(
        "sc",
        [
            ScriptEntry::StreamError {
                after: 1,
                error_type: Some("overloaded_error".into()),
            },
            ScriptEntry::StreamCut { after: 3 },
            ScriptEntry::StreamError {
                after: 6,
                error_type: Some("api_error".into()),
            },
        ],
    );
    for i in 0..3 {
        let stream = c.messages().stream(req(PRIMARY)).await.unwrap();
        assert!(stream.final_message().await.is_err());
        if i < 2 {
            assert_eq!(
                (b.snapshot()[0].calls, b.snapshot()[0].failures),
                (i + 2, i + 1)
            );
        }
    }
    // 3 of 4 failed: open (its window starts afresh).
    assert_eq!(b.state(PRIMARY), Some(CircuitState::Open));
    assert_eq!(b.snapshot()[0].times_opened, 1);

    // Half-open, a stream probe holds its slot until the stream ends.
    tokio::time::advance(Duration::from_secs(5)).await;
    let one = CircuitBreakers::new(config().half_open_probes(1));
    let c1 = client(&s, "sc1", &one).build().unwrap();
    s.script("sc1", std::iter::repeat_n(ScriptEntry::status(529), 4));
    calls(&c1, 4).await;
    tokio::time::advance(Duration::from_secs(5)).await;
    let probe = c1.messages().stream(req(PRIMARY)).await.unwrap();
    let e = open_error(c1.messages().create(req(PRIMARY)).await);
    assert!(e.is_half_open(), "the open stream is the probe");
    probe.final_message().await.unwrap();
    assert_eq!(one.state(PRIMARY), Some(CircuitState::Closed));
}

#[tokio::test(start_paused = true)]
async fn with_the_default_breakers_traffic_returns_within_two_seconds_of_an_outages_end() {
    let s = mock().await;
    let b = CircuitBreakers::new(CircuitBreakerConfig::new());
    let c = support::builder(&s, "back", 3)
        .circuit_breakers(b.clone())
        .fallback_models([SECOND])
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    s.model_outage_for(PRIMARY, Duration::from_secs(10), OutageKind::Overloaded);
    // Ten calls a second for 20 s: the outage, then 10 s after it.
    let mut set = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        tokio::time::sleep_until(start + Duration::from_millis(100 * i)).await;
        let c = c.clone();
        set.spawn(async move {
            let sent = start.elapsed();
            let msg = c.messages().create(req(PRIMARY)).await.unwrap();
            (sent, msg.model == PRIMARY)
        });
    }
    let mut answered = Vec::new();
    while let Some(r) = set.join_next().await {
        answered.push(r.unwrap());
    }
    assert!(
        answered
            .iter()
            .any(|(sent, primary)| *sent > Duration::from_secs(2)
                && *sent < Duration::from_secs(9)
                && !primary),
        "the outage was answered by the fallback"
    );
    let back = answered
        .iter()
        .filter(|(sent, primary)| *primary && *sent >= Duration::from_secs(10))
        .map(|(sent, _)| *sent)
        .min()
        .expect("traffic came back to the primary");
    assert!(back <= Duration::from_secs(12), "back at {back:?}");
}
