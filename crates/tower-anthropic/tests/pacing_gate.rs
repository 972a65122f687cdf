//! A 429 through the whole default `Client`, pacer on: the retry starts when the server said
//! (or after the retry policy's own backoff when it named no usable wait), never the server's
//! wait plus a refill; the calls that wait behind the gate go at the refill rate. Paused time.

use std::collections::BTreeMap;
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, RateLimits, ScriptEntry};
use tower_anthropic::ClientBuilder;
use tower_anthropic::pacing::Pacer;

mod support;

/// A 429 with these headers (and no others).
fn status_429(headers: &[(&str, &str)]) -> ScriptEntry {
    let headers: BTreeMap<String, String> = headers
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    serde_json::from_value(serde_json::json!({
        "kind": "status", "status": 429, "headers": headers,
    }))
    .unwrap()
}

const FIFTY_A_MINUTE: [(&str, &str); 3] = [
    ("anthropic-ratelimit-requests-limit", "50"),
    ("anthropic-ratelimit-requests-remaining", "0"),
    ("anthropic-ratelimit-requests-reset", "2026-12-06T12:00:01Z"),
];

const TOKENS: [(&str, &str); 9] = [
    ("anthropic-ratelimit-tokens-limit", "90000"),
    ("anthropic-ratelimit-tokens-remaining", "0"),
    ("anthropic-ratelimit-tokens-reset", "2026-12-06T12:00:01Z"),
    ("anthropic-ratelimit-input-tokens-limit", "80000"),
    ("anthropic-ratelimit-input-tokens-remaining", "0"),
    (
        "anthropic-ratelimit-input-tokens-reset",
        "2026-12-06T12:00:01Z",
    ),
    ("anthropic-ratelimit-output-tokens-limit", "10000"),
    ("anthropic-ratelimit-output-tokens-remaining", "0"),
    (
        "anthropic-ratelimit-output-tokens-reset",
        "2026-12-06T12:00:01Z",
    ),
];

/// The time between the 429 and the retry, as the server saw them, for one call through a
/// client built by `builder` (a fresh quota) whose first attempt meets `first`.
async fn retry_gap(first: ScriptEntry, builder: impl FnOnce(&MockServer) -> ClientBuilder) -> u64 {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s).build().unwrap();
    s.script("p", [first]);
    let msg = c.messages().create(support::req(16)).await.unwrap();
    assert_eq!(msg.attempts(), 2);
    let log = s.log();
    assert_eq!(log[0].status, Some(429));
    log[1].at_ms - log[0].at_ms
}

/// A mock whose quota is `rpm` requests a minute (tokens unlimited).
async fn limited(rpm: u64) -> MockServer {
    MockServer::start(MockConfig {
        limits: RateLimits {
            requests_per_minute: rpm,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

fn paced(s: &MockServer) -> ClientBuilder {
    support::builder(s, "p", 7).pacer(Pacer::new())
}

fn unpaced(s: &MockServer) -> ClientBuilder {
    support::builder(s, "p", 7).pacing(false)
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_of_one_second_with_a_fifty_a_minute_quota_retries_after_one_second() {
    let gap = retry_gap(
        status_429(&[&[("retry-after", "1")][..], &FIFTY_A_MINUTE].concat()),
        paced,
    )
    .await;
    assert!((1000..=1050).contains(&gap), "{gap} ms");
}

#[tokio::test(start_paused = true)]
async fn the_same_with_every_token_header_present() {
    let gap = retry_gap(
        status_429(&[&[("retry-after", "1")][..], &FIFTY_A_MINUTE, &TOKENS].concat()),
        paced,
    )
    .await;
    assert!((1000..=1050).contains(&gap), "{gap} ms");
}

#[tokio::test(start_paused = true)]
async fn a_429_without_a_usable_wait_retries_after_the_policys_backoff() {
    let past = "Fri, 29 Sep 2023 16:26:37 GMT";
    for (name, headers) in [
        ("nothing", &[][..]),
        ("retry-after 0", &[("retry-after", "0")][..]),
        ("a past HTTP-date", &[("retry-after", past)][..]),
    ] {
        let with = retry_gap(status_429(headers), paced).await;
        let without = retry_gap(status_429(headers), unpaced).await;
        // The policy's first backoff (0.5 s less up to a quarter of jitter), pacer or not.
        assert!((375..=500).contains(&without), "{name}: {without} ms");
        assert!(
            with.abs_diff(without) <= 50,
            "{name}: {with} ms paced, {without} ms not"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn the_calls_behind_a_gate_go_at_the_refill_rate_from_the_gates_opening() {
    // A 50-a-minute quota (one request every 1.2 s), learned by a first call ...
    let s = limited(50).await;
    let pacer = Pacer::new().max_wait(Duration::from_secs(120));
    let c = support::builder(&s, "p", 7)
        .pacer(pacer.clone())
        .build()
        .unwrap();
    c.messages().create(support::req(16)).await.unwrap();
    // ... then used up behind this pacer's back (another process, unpaced).
    let other = support::builder(&s, "other", 1)
        .pacing(false)
        .max_retries(0)
        .build()
        .unwrap();
    for _ in 0..49 {
        other.messages().create(support::req(16)).await.unwrap();
    }
    // The next call meets the server's 429 (retry-after 2: 1.2 s rounded up to whole
    // seconds), and five more arrive while the gate is closed.
    let first = tokio::spawn({
        let c = c.clone();
        async move { c.messages().create(support::req(16)).await.map(|_| ()) }
    });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let gate = pacer.snapshot()[0]
        .gate
        .clone()
        .expect("the 429 closed the quota");
    assert_eq!(gate.retry_after, Duration::from_secs(2));
    assert!(gate.request_id.is_some());
    let mut rest = Vec::new();
    for _ in 0..5 {
        let c = c.clone();
        rest.push(tokio::spawn(async move {
            c.messages().create(support::req(16)).await.map(|_| ())
        }));
    }
    first.await.unwrap().unwrap();
    for r in rest {
        r.await.unwrap().unwrap();
    }
    let log = s.log();
    let at_429 = log
        .iter()
        .find(|l| l.status == Some(429))
        .expect("the server's 429")
        .at_ms;
    let after: Vec<_> = log.iter().filter(|l| l.at_ms > at_429).collect();
    assert_eq!(after.len(), 6, "each of the six sent once more");
    assert!(
        after.iter().all(|l| l.status == Some(200)),
        "none met a 429"
    );
    let times: Vec<u64> = after.iter().map(|l| l.at_ms - at_429).collect();
    // The first goes when the gate opens ...
    assert!((2000..=2050).contains(&times[0]), "{times:?}");
    // ... and the others at the refill rate (1.2 s apart), not in a herd.
    for w in times.windows(2) {
        assert!((1150..=1300).contains(&(w[1] - w[0])), "{times:?}");
    }
    assert!(pacer.snapshot()[0].gate.is_none(), "open again");
}

#[tokio::test(start_paused = true)]
async fn a_cold_start_ends_with_the_first_answer() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    // A cold start of an hour: a call held for its whole length would time out here.
    let pacer = Pacer::new().cold_start(Duration::from_secs(3600));
    let c = support::builder(&s, "p", 7)
        .pacer(pacer.clone())
        .build()
        .unwrap();
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let c = c.clone();
        set.spawn(async move { c.messages().create(support::req(16)).await.map(|_| ()) });
    }
    let all = async {
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("released by the first answer, not by the cold start's end");
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(s.stats().requests, 8);
}

#[tokio::test(start_paused = true)]
async fn a_429_the_pacer_did_not_expect_raises_the_dispatch_allowance() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let pacer = Pacer::new();
    let c = support::builder(&s, "p", 7)
        .pacer(pacer.clone())
        .build()
        .unwrap();
    c.messages().create(support::req(16)).await.unwrap();
    let floor = pacer.snapshot()[0].dispatch_allowance;
    assert_eq!(
        floor,
        Duration::from_millis(250),
        "answers at once: the floor"
    );
    // The quota has plenty of room, yet the server says 429: calls reach it later than
    // the pacer allowed for.
    s.script(
        "p",
        [status_429(
            &[
                ("retry-after", "1"),
                ("anthropic-ratelimit-requests-limit", "100000000"),
                ("anthropic-ratelimit-requests-remaining", "0"),
            ][..],
        )],
    );
    c.messages().create(support::req(16)).await.unwrap();
    // Doubled by the 429, and decaying since (the retry went a second later).
    let raised = pacer.snapshot()[0].dispatch_allowance;
    assert!(
        raised > floor * 2 * 95 / 100 && raised <= floor * 2,
        "{raised:?}"
    );
    // The evidence stops: back to the floor.
    tokio::time::sleep(Duration::from_secs(600)).await;
    c.messages().create(support::req(16)).await.unwrap();
    assert_eq!(pacer.snapshot()[0].dispatch_allowance, floor);
}

#[tokio::test(start_paused = true)]
async fn a_long_gate_refuses_the_calls_already_waiting_that_cannot_wait_it_out() {
    // 60 a minute, learned; 80 calls at once: 59 go, 21 wait in line (a second apart).
    let s = limited(60).await;
    let pacer = Pacer::new().max_wait(Duration::from_secs(30));
    let c = support::builder(&s, "p", 7)
        .pacer(pacer.clone())
        .build()
        .unwrap();
    c.messages().create(support::req(16)).await.unwrap();
    let start = tokio::time::Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..80 {
        let c = c.clone();
        set.spawn(async move { c.messages().create(support::req(16)).await.map(|_| ()) });
    }
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pacer.snapshot()[0].waiting, 21);
    // The first of them to go meets a 429 asking for an hour.
    s.script(
        "p",
        [status_429(&[
            ("retry-after", "3600"),
            ("anthropic-ratelimit-requests-limit", "60"),
            ("anthropic-ratelimit-requests-remaining", "0"),
        ])],
    );
    let (mut ok, mut paced, mut limited) = (0, 0, 0);
    let all = async {
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Ok(()) => ok += 1,
                Err(tower_anthropic::Error::Paced(p)) => {
                    assert!(p.retry_after() > Duration::from_secs(3500), "{p:?}");
                    paced += 1;
                }
                Err(e) => {
                    assert_eq!(e.status(), Some(http::StatusCode::TOO_MANY_REQUESTS), "{e}");
                    limited += 1;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("no call waits the hour");
    assert_eq!((ok, limited, paced), (59, 1, 20));
    // Refused when the 429 came (a second in), not when their own turn would have come.
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(pacer.snapshot()[0].waiting, 0);
}

#[tokio::test(start_paused = true)]
async fn an_answer_without_headers_turns_pacing_off_for_a_minute_not_for_good() {
    let s = limited(60).await;
    let pacer = Pacer::new();
    let c = support::builder(&s, "p", 7)
        .pacer(pacer.clone())
        .build()
        .unwrap();
    // A 200 without any rate-limit header (a proxy that strips them, or garbage).
    let body = serde_json::json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-test",
        "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
        "stop_sequence": null, "usage": {"input_tokens": 1, "output_tokens": 1}
    });
    s.script(
        "p",
        [serde_json::from_value(serde_json::json!({
            "kind": "status", "status": 200, "body": body.to_string(),
        }))
        .unwrap()],
    );
    c.messages().create(support::req(16)).await.unwrap();
    // Nothing to pace by: the next calls go unpaced and teach nothing ...
    c.messages().create(support::req(16)).await.unwrap();
    assert_eq!(pacer.snapshot()[0].requests.limit, None);
    // ... for a minute; then a call is paced again, and its answer's headers count.
    tokio::time::sleep(Duration::from_secs(61)).await;
    c.messages().create(support::req(16)).await.unwrap();
    assert_eq!(pacer.snapshot()[0].requests.limit, Some(60));
}
