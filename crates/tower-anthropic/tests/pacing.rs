//! Pacing against the mock's token buckets: headers drive the rate, a 429 gates the line,
//! waits are FIFO, bounded and cancel-safe, reservations settle to real usage. Paused time.

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, RateLimits};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
use tower_anthropic::pacing::{Pacer, QuotaLimits};
use tower_anthropic::retry::{JitterSource, RetryPolicy};
use tower_anthropic::transport::{ApiKey, Endpoint};
use tower_anthropic::{Client, Error, ServiceBuilderExt};

mod support;

async fn mock(rpm: u64, itpm: u64, otpm: u64) -> MockServer {
    MockServer::start(MockConfig {
        limits: RateLimits {
            requests_per_minute: rpm,
            input_tokens_per_minute: itpm,
            output_tokens_per_minute: otpm,
            max_burst_from_idle: None,
        },
        ..Default::default()
    })
    .await
    .unwrap()
}

fn client(s: &MockServer, pacer: &Pacer) -> Client {
    support::builder(s, "p", 3)
        .pacer(pacer.clone())
        .build()
        .unwrap()
}

fn count_429(s: &MockServer) -> u64 {
    s.stats().by_status.get(&429).copied().unwrap_or(0)
}

/// Runs `n` calls at once through `c`; every result.
async fn burst(c: &Client, n: usize, req: CreateMessageRequest) -> Vec<Result<(), Error>> {
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (c, req) = (c.clone(), req.clone());
        set.spawn(async move { c.messages().create(req).await.map(|_| ()) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn the_headers_drive_the_rate_and_no_call_meets_a_429() {
    let s = mock(60, 1_000_000, 1_000_000).await;
    let pacer = Pacer::new().max_wait(Duration::from_secs(120));
    let c = client(&s, &pacer);
    c.messages().create(support::req(16)).await.unwrap(); // teaches the quota
    let start = Instant::now();
    let results = burst(&c, 80, support::req(16)).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(count_429(&s), 0);
    // 59 requests were left; the other 21 go at the refill rate of one a second.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_secs(20) && took <= Duration::from_secs(23),
        "{took:?}"
    );
    let q = &pacer.snapshot()[0];
    assert_eq!(q.requests.limit, Some(60));
    assert_eq!(q.waiting, 0);
    assert_eq!(q.requests.reserved, 0.0);
}

#[tokio::test(start_paused = true)]
async fn without_pacing_the_same_burst_meets_429s() {
    // The comparison that shows the test above can fail: same burst, pacing off.
    let s = mock(60, 1_000_000, 1_000_000).await;
    let c = support::builder(&s, "p", 3).pacing(false).build().unwrap();
    c.messages().create(support::req(16)).await.unwrap();
    let results = burst(&c, 80, support::req(16)).await;
    assert!(count_429(&s) > 0);
    assert!(results.iter().any(Result::is_err));
}

/// A call through a hand-built stack sharing `pacer`, tagged `tag` for the mock's log.
fn tagged(
    s: &MockServer,
    pacer: &Pacer,
    tag: &str,
) -> impl std::future::Future<Output = Result<(), Error>> + Send + 'static {
    let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let stack = ServiceBuilder::new()
        .retry_api_errors(RetryPolicy::new().jitter_source(JitterSource::seeded(1)))
        .pace(pacer.clone())
        .classify_responses()
        .service(http);
    let mut e = Endpoint::new(&s.url(), ApiKey::new(support::KEY).unwrap()).unwrap();
    e.set_header("x-mock-key".parse().unwrap(), tag.parse().unwrap());
    let messages = MessagesService::new(stack, e);
    async move { messages.create(support::req(16)).await.map(|_| ()) }
}

#[tokio::test(start_paused = true)]
async fn a_429_gates_every_waiter_then_releases_them_in_order_at_the_refill_rate() {
    let s = mock(600, 1_000_000, 1_000_000).await; // 10 a second
    let pacer = Pacer::new();
    tagged(&s, &pacer, "warm").await.unwrap();
    // Another process (unpaced) uses the server's quota up behind this pacer's back.
    let other = support::builder(&s, "other", 1)
        .pacing(false)
        .max_retries(0)
        .build()
        .unwrap();
    let _ = burst(&other, 600, support::req(16)).await;
    // The paced call meets the server's 429 (retry-after 1 s, remaining 0) ...
    let h0 = tokio::spawn(tagged(&s, &pacer, "first"));
    tokio::time::sleep(Duration::from_millis(10)).await;
    // ... and 20 calls arrive while the gate is closed.
    let mut handles = vec![h0];
    for i in 0..20 {
        handles.push(tokio::spawn(tagged(&s, &pacer, &format!("c{i:02}"))));
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    for h in handles {
        h.await.unwrap().unwrap();
    }
    let log = s.log();
    let key =
        |l: &anthropic_mock::LogEntry| l.headers.get("x-mock-key").cloned().unwrap_or_default();
    let gate = log
        .iter()
        .find(|l| key(l) == "first" && l.status == Some(429))
        .expect("the paced call met the server's 429")
        .at_ms;
    let after: Vec<_> = log.iter().filter(|l| key(l).starts_with('c')).collect();
    assert_eq!(after.len(), 20, "each waiter sent once: none met a 429");
    assert!(after.iter().all(|l| l.status == Some(200)));
    // Nobody went before the gate opened (retry-after 1 s) ...
    let times: Vec<_> = after.iter().map(|l| l.at_ms - gate).collect();
    assert!(times.iter().all(|t| *t >= 1_000), "{times:?}");
    // ... then in arrival order, at the refill rate (one per 100 ms): no herd.
    let keys: Vec<_> = after.iter().map(|l| key(l)).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "FIFO");
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 90, "{times:?}");
    }
}

/// A 60/min quota, learned and used up (the next call waits about a second).
async fn used_up_quota() -> (MockServer, Pacer, Client) {
    let s = mock(60, 1_000_000, 1_000_000).await;
    let pacer = Pacer::new();
    let c = client(&s, &pacer);
    c.messages().create(support::req(16)).await.unwrap();
    let results = burst(&c, 59, support::req(16)).await;
    assert!(results.iter().all(Result::is_ok));
    (s, pacer, c)
}

#[tokio::test(start_paused = true)]
async fn dropping_a_waiting_call_frees_its_place() {
    let (_mock, pacer, c) = used_up_quota().await;
    let c1 = c.clone();
    let a = tokio::spawn(async move { c1.messages().create(support::req(16)).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    let c2 = c.clone();
    let start = Instant::now();
    let b = tokio::spawn(async move { c2.messages().create(support::req(16)).await });
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(pacer.snapshot()[0].waiting, 2);
    a.abort();
    assert!(a.await.unwrap_err().is_cancelled());
    assert_eq!(
        pacer.snapshot()[0].waiting,
        1,
        "the dropped call left the line"
    );
    b.await.unwrap().unwrap();
    // B took A's place: about one refill interval, not two.
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    let q = &pacer.snapshot()[0];
    assert_eq!((q.waiting, q.requests.reserved), (0, 0.0));
}

#[tokio::test(start_paused = true)]
async fn a_deadline_shorter_than_the_predicted_wait_fails_at_once() {
    let (s, pacer, c) = used_up_quota().await;
    let sent = s.stats().requests;
    // 30 more queued: the last one would wait about 30 s.
    let busy = burst(&c, 30, support::req(16));
    let hurried = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let c = support::builder(&s, "p", 3)
            .pacer(pacer.clone())
            .deadline(Duration::from_secs(5))
            .build()
            .unwrap();
        let start = Instant::now();
        let e = c.messages().create(support::req(16)).await.unwrap_err();
        (e, start.elapsed())
    };
    let (results, (e, took)) = tokio::join!(busy, hurried);
    assert!(results.iter().all(Result::is_ok));
    match &e {
        Error::Paced(p) => assert_eq!(p.bucket(), "requests"),
        other => panic!("expected a pacing refusal, got {other:?}"),
    }
    assert!(!e.is_retryable());
    let wait = e.retry_after().unwrap();
    assert!(wait > Duration::from_secs(25), "{wait:?}");
    assert!(
        took < Duration::from_millis(1),
        "refused at once, not after a wait: {took:?}"
    );
    assert_eq!(
        s.stats().requests,
        sent + 30,
        "the refused call was never sent"
    );
    assert_eq!(count_429(&s), 0);
}

#[tokio::test(start_paused = true)]
async fn reservations_settle_to_real_usage_streaming_or_not() {
    // The mock answers 48 output tokens; max_tokens reserves 1000. (An output quota of
    // 3,000: the pacer's bucket holds 2,987.5, a quarter of a second's refill less, so 48
    // less than full is below that and shows.)
    let s = mock(1_000, 1_000_000, 3_000).await;
    let pacer = Pacer::new();
    let c = client(&s, &pacer);
    let req = support::req(1000);
    c.messages().create(req.clone()).await.unwrap();
    let q = &pacer.snapshot()[0];
    assert_eq!(q.output_tokens.reserved, 0.0);
    let after_create = q.output_tokens.remaining;
    assert!(
        (3_000.0 - after_create - 48.0).abs() < 5.0,
        "settled to 48 tokens, not 1000: {after_create}"
    );
    let msg = c
        .messages()
        .stream(req)
        .await
        .unwrap()
        .final_message()
        .await
        .unwrap();
    assert_eq!(msg.usage.output_tokens, 48);
    let q = &pacer.snapshot()[0];
    assert_eq!(
        (q.output_tokens.reserved, q.input_tokens.reserved),
        (0.0, 0.0)
    );
    assert!(
        (after_create - q.output_tokens.remaining - 48.0).abs() < 5.0,
        "{after_create} -> {}",
        q.output_tokens.remaining
    );
}

#[tokio::test(start_paused = true)]
async fn no_pacing_when_the_headers_show_plenty() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let pacer = Pacer::new();
    let c = client(&s, &pacer);
    c.messages().create(support::req(16)).await.unwrap();
    let start = Instant::now();
    let results = burst(&c, 200, support::req(16)).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(start.elapsed(), Duration::ZERO, "nobody waited");
}

#[tokio::test(start_paused = true)]
async fn configured_limits_pace_even_the_first_burst() {
    let s = mock(60, 1_000_000, 1_000_000).await;
    let c = support::builder(&s, "p", 3)
        .rate_limits(QuotaLimits {
            requests_per_minute: 60,
            input_tokens_per_minute: 0,
            output_tokens_per_minute: 0,
        })
        .build()
        .unwrap();
    let results = burst(&c, 70, support::req(16)).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(count_429(&s), 0);
}

/// A small seeded generator for the property test.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

#[tokio::test(start_paused = true)]
async fn property_random_sizes_and_arrivals_never_exceed_the_quota() {
    for seed in 1..=6u64 {
        let mut rng = Rng(seed);
        let rpm = rng.range(30, 300);
        let itpm = rng.range(20_000, 80_000);
        let otpm = rng.range(5_000, 20_000);
        let s = mock(rpm, itpm, otpm).await;
        let pacer = Pacer::new().max_wait(Duration::from_secs(3600));
        let c = client(&s, &pacer);
        c.messages().create(support::req(16)).await.unwrap();
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..60 {
            let words = rng.range(5, 3_000) as usize;
            let max_tokens = rng.range(16, 2_000) as u32;
            let req = CreateMessageRequest::new("claude-test", max_tokens)
                .user("lorem ipsum ".repeat(words));
            let c = c.clone();
            set.spawn(async move { c.messages().create(req).await.map(|_| ()) });
            tokio::time::sleep(Duration::from_millis(rng.range(0, 400))).await;
        }
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap_or_else(|e| {
                panic!("seed {seed} (rpm {rpm}, itpm {itpm}, otpm {otpm}): {e}")
            });
        }
        assert_eq!(
            count_429(&s),
            0,
            "seed {seed}: rpm {rpm}, itpm {itpm}, otpm {otpm}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn quotas_are_per_key_and_model_class_and_idle_ones_are_forgotten() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    // Models `claude-family-*` share one pool; any other model is its own.
    let pacer = Pacer::new().model_class(|m| {
        if m.starts_with("claude-family-") {
            "family".to_owned()
        } else {
            m.to_owned()
        }
    });
    let a = client(&s, &pacer);
    let b = support::builder(&s, "p", 3)
        .api_key("sk-ant-other-key")
        .pacer(pacer.clone())
        .build()
        .unwrap();
    let call = |c: &Client, model: &str| {
        let (c, req) = (
            c.clone(),
            CreateMessageRequest::new(model, 16).user("Hello"),
        );
        async move { c.messages().create(req).await.unwrap() }
    };
    // Each twice: the second finds its quota by its cached route.
    for _ in 0..2 {
        call(&a, "claude-family-one").await;
        call(&a, "claude-family-two").await;
        call(&b, "claude-family-one").await;
        call(&a, "claude-other").await;
    }
    let quotas = pacer.snapshot();
    let names: Vec<_> = quotas
        .iter()
        .map(|q| (q.id.class.as_str(), q.id.key_id))
        .collect();
    assert_eq!(quotas.len(), 3, "{names:?}");
    let family: Vec<_> = quotas.iter().filter(|q| q.id.class == "family").collect();
    assert_eq!(family.len(), 2, "one per key");
    assert_ne!(family[0].id.key_id, family[1].id.key_id);
    assert!(quotas.iter().all(|q| q.id.endpoint == s.url()));
    // All settled: nothing reserved, nothing waiting.
    assert!(
        quotas
            .iter()
            .all(|q| q.waiting == 0 && q.requests.reserved == 0.0)
    );

    // Past 64 quotas, those idle for 10 minutes are forgotten; a busy one is kept.
    for i in 0..70 {
        call(&a, &format!("claude-m{i}")).await;
    }
    assert_eq!(pacer.snapshot().len(), 73);
    tokio::time::advance(Duration::from_secs(601)).await;
    call(&a, "claude-family-one").await;
    let left: Vec<_> = pacer.snapshot().into_iter().map(|q| q.id.class).collect();
    assert!(left.len() <= 2, "{left:?}");
    assert!(left.contains(&"family".to_owned()), "{left:?}");
    // A forgotten quota comes back on its next call, found anew.
    call(&a, "claude-m3").await;
    call(&a, "claude-m3").await;
    assert!(pacer.snapshot().iter().any(|q| q.id.class == "claude-m3"));
}
