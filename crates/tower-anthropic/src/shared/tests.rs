//! The shared pacer against the Redis at `REDIS_URL` (default 127.0.0.1:6379): skipped with
//! a message when it is unreachable, except under `CI=true`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use super::layer::{Admit, COLD_START_BOUND};
use super::*;
use crate::Error;
use crate::pacing::RateLimited;
use crate::pacing::allowance::FLOOR;
use crate::pacing::state::{Answer, Cost, capacity};
use crate::rate_limit::RateLimitHeaders;

impl Admit {
    fn t(self) -> (bool, Duration, i64) {
        (self.admitted, self.wait, self.bound)
    }

    /// Admitted with the limits known (paced).
    fn known(&self) -> bool {
        self.admission.is_some_and(|a| !a.unpaced)
    }
}

/// A pacer on the test Redis under a prefix of its own; `None` (with a message) when
/// Redis is unreachable outside CI.
async fn pacer(test: &str) -> Option<SharedPacer> {
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let reachable = async {
        let c = redis::Client::open(url.as_str()).ok()?;
        let mut con = c.get_multiplexed_async_connection().await.ok()?;
        redis::cmd("PING")
            .query_async::<String>(&mut con)
            .await
            .ok()
    };
    match tokio::time::timeout(Duration::from_secs(2), reachable).await {
        Ok(Some(_)) => {}
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("Redis at {url} is required under CI=true")
        }
        _ => {
            eprintln!("SKIPPED: Redis at {url} is unreachable; set REDIS_URL to run this test");
            return None;
        }
    }
    let prefix = format!("tower-anthropic-test:{test}:{}", std::process::id());
    Some(
        SharedPacer::redis(&url)
            .unwrap()
            .prefix(prefix)
            .store_timeout(Duration::from_secs(2)),
    )
}

fn headers(limits: [u64; 3], remaining: [u64; 3]) -> RateLimitHeaders {
    let mut h = http::HeaderMap::new();
    for (i, name) in ["requests", "input-tokens", "output-tokens"]
        .iter()
        .enumerate()
    {
        h.insert(
            http::HeaderName::try_from(format!("anthropic-ratelimit-{name}-limit")).unwrap(),
            limits[i].into(),
        );
        h.insert(
            http::HeaderName::try_from(format!("anthropic-ratelimit-{name}-remaining")).unwrap(),
            remaining[i].into(),
        );
    }
    RateLimitHeaders::from_headers(&h)
}

fn success(h: RateLimitHeaders) -> Answer<'static> {
    Answer {
        headers: Some(Box::leak(Box::new(h))),
        charged: true,
        success: true,
        rate_limited: None,
        request_id: None,
    }
}

fn refused(h: RateLimitHeaders, told: RateLimited) -> Answer<'static> {
    Answer {
        headers: Some(Box::leak(Box::new(h))),
        charged: false,
        success: false,
        rate_limited: Some(told),
        request_id: None,
    }
}

/// Admits a call of `cost` on `key`, which must go now.
async fn go(p: &SharedPacer, key: &str, cost: &Cost) -> crate::pacing::state::Admission {
    let a = p.admit(key, cost).await.unwrap();
    assert!(a.admitted, "{a:?}");
    a.admission.expect("paced")
}

/// The quota's first answer: a call of no cost, answered with these counts and settled.
async fn seed(p: &SharedPacer, key: &str, limits: [u64; 3], remaining: [u64; 3]) {
    let a = go(p, key, &[0.0; 3]).await;
    let answer = success(headers(limits, remaining));
    let settled = Some([0.0; 3]);
    p.answered(key.to_owned(), a, [0.0; 3], answer, Instant::now(), settled)
        .await
        .unwrap();
}

/// The stored state of `key`, as JSON.
async fn stored(p: &SharedPacer, key: &str) -> serde_json::Value {
    let mut con = p.con().await.unwrap();
    let raw: String = redis::cmd("HGET")
        .arg(key)
        .arg("state")
        .query_async(&mut con)
        .await
        .unwrap();
    serde_json::from_str(&raw).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_admissions_never_exceed_the_bucket() {
    let Some(p) = pacer("bucket").await else {
        return;
    };
    let key = format!("{}:quota:test", p.inner.prefix);
    seed(&p, &key, [10, 1000, 1000], [10, 1000, 1000]).await;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..50 {
        let (p, key) = (p.clone(), key.clone());
        // 1.5 requests each: what a full bucket leaves over is far from the next call's
        // need, so the count below holds however slowly the admissions run.
        tasks.spawn(async move { p.admit(&key, &[1.5, 1.0, 1.0]).await.unwrap() });
    }
    let mut admitted = 0;
    while let Some(r) = tasks.join_next().await {
        let (ok, wait, bound) = r.unwrap().t();
        if ok {
            admitted += 1;
        } else {
            assert_eq!(bound, 0, "the requests bucket holds them back");
            // 10 a minute: the next one fits in at most 6 s (in about 3.25 s).
            assert!(
                wait > Duration::ZERO && wait <= Duration::from_secs(6),
                "{wait:?}"
            );
        }
    }
    // A bucket of 10 holds 9.96 (a quarter of a second's refill kept back): 6 calls of
    // 1.5 go at once, and the 0.96 left needs 3.25 s more for a seventh.
    assert_eq!(admitted, 6);
    assert_eq!((capacity(10.0, FLOOR) / 1.5).floor(), 6.0);
    // Each reserved its cost, shown by bucket name in the store.
    let s = stored(&p, &key).await;
    assert_eq!(s["requests"]["reserved"], 9.0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_refunds_and_the_gate_holds() {
    let Some(p) = pacer("refund").await else {
        return;
    };
    let key = format!("{}:quota:test", p.inner.prefix);
    let limits = [1000, 1000, 100];
    seed(&p, &key, limits, [1000, 1000, 100]).await;
    // max_tokens 100 reserves the whole output bucket...
    let first = go(&p, &key, &[1.0, 1.0, 100.0]).await;
    let (ok, _, bound) = p.admit(&key, &[1.0, 1.0, 100.0]).await.unwrap().t();
    assert!(!ok);
    assert_eq!(bound, 2, "output tokens");
    // ...until the answer says it used 10: 90 come back.
    let answer = success(headers(limits, [999, 999, 0]));
    let settled = Some([0.0, 0.0, 90.0]);
    p.answered(
        key.clone(),
        first,
        [1.0, 1.0, 100.0],
        answer,
        Instant::now(),
        settled,
    )
    .await
    .unwrap();
    let second = go(&p, &key, &[1.0, 1.0, 50.0]).await;
    // A 429 closes the gate for its retry-after, on the Redis clock.
    let told = RateLimited {
        wait: Some(Duration::from_secs(5)),
        drain: false,
    };
    let answer = refused(headers(limits, [0, 0, 0]), told);
    p.answered(
        key.clone(),
        second,
        [1.0, 1.0, 50.0],
        answer,
        Instant::now(),
        None,
    )
    .await
    .unwrap();
    let (ok, wait, bound) = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap().t();
    assert!(!ok);
    assert_eq!(bound, 3);
    assert!(
        wait > Duration::from_secs(4) && wait <= Duration::from_secs(5),
        "{wait:?}"
    );
    // The key expires when unused.
    let mut con = p.con().await.unwrap();
    let ttl: i64 = redis::cmd("PTTL")
        .arg(&key)
        .query_async(&mut con)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= KEY_TTL.as_millis() as i64, "{ttl}");
}

/// The first answer of `key` (limits and remaining as given), then a 429 for a call of
/// one request with `gate` and `drain` as [`RateLimited`] reads them, all at the clock's
/// zero; how long a call asking `at` after the 429 must still wait.
async fn after_429(
    p: &SharedPacer,
    key: &str,
    first: Option<([u64; 3], [u64; 3])>,
    told: RateLimited,
    headers: RateLimitHeaders,
    at: Duration,
) -> Duration {
    p.inner.shift_ms.store(0, Ordering::Relaxed);
    let cost = [1.0, 10.0, 16.0];
    let mut a = go(p, key, &cost).await;
    if let Some((l, r)) = first {
        let answer = success(self::headers(l, r));
        p.answered(
            key.to_owned(),
            a,
            cost,
            answer,
            Instant::now(),
            Some([0.0; 3]),
        )
        .await
        .unwrap();
        a = go(p, key, &cost).await;
    }
    let answer = refused(headers, told);
    p.answered(key.to_owned(), a, cost, answer, Instant::now(), None)
        .await
        .unwrap();
    p.inner
        .shift_ms
        .store(at.as_millis() as i64, Ordering::Relaxed);
    let a = p.admit(key, &cost).await.unwrap();
    assert_eq!(a.admitted, a.wait.is_zero());
    a.wait
}

fn fifty_a_minute(tokens: bool) -> RateLimitHeaders {
    let mut h = http::HeaderMap::new();
    let mut set = |k: &str, v: &str| {
        h.insert(http::HeaderName::try_from(k).unwrap(), v.parse().unwrap());
    };
    set("anthropic-ratelimit-requests-limit", "50");
    set("anthropic-ratelimit-requests-remaining", "0");
    set("anthropic-ratelimit-requests-reset", "2026-12-06T12:00:01Z");
    if tokens {
        for b in ["input-tokens", "output-tokens", "tokens"] {
            set(&format!("anthropic-ratelimit-{b}-limit"), "10000");
            set(&format!("anthropic-ratelimit-{b}-remaining"), "0");
            set(
                &format!("anthropic-ratelimit-{b}-reset"),
                "2026-12-06T12:00:01Z",
            );
        }
    }
    RateLimitHeaders::from_headers(&h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429s_wait_and_the_refill_overlap() {
    let Some(p) = pacer("overlap").await else {
        return;
    };
    let wait_1s = RateLimited {
        wait: Some(Duration::from_secs(1)),
        drain: false,
    };
    let ms = Duration::from_millis;
    // retry-after 1 on a 50-a-minute quota with nothing left: the retry goes at 1.0 s,
    // not 1 s plus a refill (2.2 s), with or without the token headers.
    for (name, tokens) in [("requests", false), ("tokens", true)] {
        let key = format!("{}:quota:overlap-{name}", p.inner.prefix);
        let h = fifty_a_minute(tokens);
        let early = after_429(&p, &key, None, wait_1s, h, ms(0)).await;
        assert!(early.abs_diff(ms(1000)) <= ms(50), "{name}: {early:?}");
        let key = format!("{key}-b");
        let at_1s = after_429(&p, &key, None, wait_1s, h, ms(1000)).await;
        assert!(at_1s <= ms(50), "{name}: {at_1s:?} more at 1 s");
    }
    // No usable wait (none, 0, a past date: `RateLimited::wait` is `None`) and no
    // headers: nothing closed; the retry goes whenever its backoff ends (0.375-0.5 s).
    let key = format!("{}:quota:overlap-none", p.inner.prefix);
    let told = RateLimited {
        wait: None,
        drain: true,
    };
    let none = RateLimitHeaders::default();
    let w = after_429(&p, &key, None, told, none, ms(375)).await;
    assert_eq!(w, Duration::ZERO);
    // The same on a learned quota (60 a minute, plenty left): the buckets are taken as
    // empty, so the retry waits its share of the refill, the herd behind it more.
    let key = format!("{}:quota:overlap-learned", p.inner.prefix);
    let first = Some(([60, 100_000, 100_000], [59, 100_000, 100_000]));
    let w = after_429(&p, &key, first, told, none, ms(0)).await;
    assert!(w.abs_diff(ms(1000)) <= ms(50), "{w:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_calls_behind_a_shared_gate_go_at_the_refill_rate() {
    let Some(p) = pacer("herd").await else {
        return;
    };
    let key = format!("{}:quota:herd", p.inner.prefix);
    let told = RateLimited {
        wait: Some(Duration::from_secs(1)),
        drain: false,
    };
    let w = after_429(&p, &key, None, told, fifty_a_minute(false), Duration::ZERO).await;
    assert!(w.abs_diff(Duration::from_secs(1)) <= Duration::from_millis(50));
    // Five calls asking as the gate opens go 1.2 s apart (50 a minute), not at once.
    let mut at = 1000;
    for i in 0..5 {
        p.inner.shift_ms.store(at, Ordering::Relaxed);
        let a = p.admit(&key, &[1.0, 10.0, 16.0]).await.unwrap();
        assert!(a.admitted, "call {i} at {at} ms: {a:?}");
        let next = p.admit(&key, &[1.0, 10.0, 16.0]).await.unwrap();
        assert!(!next.admitted);
        assert!(
            next.wait.abs_diff(Duration::from_millis(1200)) <= Duration::from_millis(50),
            "{next:?}"
        );
        at += next.wait.as_millis() as i64;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_larger_dispatch_allowance_holds_more_back() {
    let Some(p) = pacer("allowance").await else {
        return;
    };
    let key = format!("{}:quota:allowance", p.inner.prefix);
    // 60 a minute: a quarter of a second holds a quarter of a request back (59 of 60
    // go at once), two seconds two (58).
    seed(&p, &key, [60, 1000, 1000], [60, 1000, 1000]).await;
    let burst = |p: SharedPacer, key: String| async move {
        let mut n = 0;
        while p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap().admitted {
            n += 1;
        }
        n
    };
    assert_eq!(burst(p.clone(), key.clone()).await, 59);
    let key = format!("{key}-2");
    let now = Instant::now();
    for _ in 0..3 {
        lock(&p.inner.allowance).surprised(now);
    }
    assert_eq!(lock(&p.inner.allowance).secs(), 2.0);
    assert!(p.dispatch_allowance() > Duration::from_millis(1990));
    seed(&p, &key, [60, 1000, 1000], [60, 1000, 1000]).await;
    assert_eq!(burst(p.clone(), key).await, 58);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_start_ends_with_the_first_answer() {
    use anthropic_mock::{MockConfig, MockServer};
    let Some(p) = pacer("cold").await else {
        return;
    };
    // A cold start of an hour: a call held by it for its whole length would hang here.
    let p = p.local(Pacer::new().cold_start(Duration::from_secs(3600)));
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let client = crate::Client::builder()
        .api_key("sk-ant-test")
        .base_url(mock.url())
        .shared_pacer(p)
        .build()
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..8 {
        let c = client.clone();
        set.spawn(async move {
            let req = crate::CreateMessageRequest::new("claude-cold", 8).user(format!("{i}"));
            c.messages().create(req).await.map(|_| ())
        });
    }
    let all = async {
        while let Some(r) = set.join_next().await {
            r.unwrap().unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("released by the first answer, not by the cold start's end");
    assert_eq!(mock.stats().requests, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_shared_state_is_replaced_by_a_cold_start() {
    let Some(p) = pacer("corrupt").await else {
        return;
    };
    let mut con = p.con().await.unwrap();
    let limits = [60, 1000, 1000];
    for (n, (from, to)) in [
        ("\"level\":", "\"level\":1e300,\"was\":"),
        ("\"limit\":60.0", "\"limit\":0.0"),
        ("\"limit\":60.0", "\"limit\":1e300"),
        ("\"reserved\":0.0", "\"reserved\":-5.0"),
        ("\"updated\":", "\"updated\":1e300,\"was\":"),
        ("{", "not json {"),
        ("\"learned\":true", "\"learned\":\"yes\""),
    ]
    .into_iter()
    .enumerate()
    {
        let key = format!("{}:quota:corrupt-{n}", p.inner.prefix);
        seed(&p, &key, limits, limits).await;
        let good = stored(&p, &key).await.to_string();
        let bad = good.replacen(from, to, 1);
        assert_ne!(good, bad, "{from}");
        let _: () = redis::cmd("HSET")
            .arg(&key)
            .arg("state")
            .arg(&bad)
            .arg("version")
            .arg("written by something else")
            .query_async(&mut con)
            .await
            .unwrap();
        // Found and replaced: a cold start (the first call goes, the next waits for its
        // answer), not a call looping against the store.
        let a = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
        assert!(a.corrupt && a.admitted && !a.known(), "{bad}: {a:?}");
        let b = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
        assert!(!b.corrupt && !b.admitted, "{bad}: {b:?}");
        assert_eq!(b.bound, COLD_START_BOUND);
        // The first answer teaches the limits again.
        let answer = success(headers(limits, [59, 1000, 1000]));
        let first = a.admission.unwrap();
        p.answered(
            key.clone(),
            first,
            [1.0, 0.0, 0.0],
            answer,
            Instant::now(),
            None,
        )
        .await
        .unwrap();
        let c = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
        assert!(c.admitted && c.known() && !c.corrupt, "{bad}: {c:?}");
    }
    // A key of another type, a state too large to be ours: deleted, a cold start.
    for (n, setup) in ["string", "large"].into_iter().enumerate() {
        let key = format!("{}:quota:other-{n}", p.inner.prefix);
        seed(&p, &key, limits, limits).await;
        let mut cmd = redis::cmd("DEL");
        cmd.arg(&key);
        let _: () = cmd.query_async(&mut con).await.unwrap();
        let cmd = if setup == "string" {
            let mut c = redis::cmd("SET");
            c.arg(&key).arg("x");
            c
        } else {
            let mut c = redis::cmd("HSET");
            c.arg(&key).arg("state").arg("x".repeat(100_000));
            c
        };
        let _: () = cmd.query_async(&mut con).await.unwrap();
        let a = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
        assert!(a.admitted && !a.known(), "{setup}: {a:?}");
        let b = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
        assert_eq!(b.bound, COLD_START_BOUND, "{setup}: {b:?}");
    }
    // Counts the API could not mean never reach the store.
    let key = format!("{}:quota:hostile", p.inner.prefix);
    seed(&p, &key, [u64::MAX, 1000, 1000], [u64::MAX, 1000, 1000]).await;
    let s = stored(&p, &key).await;
    assert_eq!(s["requests"]["limit"], serde_json::Value::Null, "{s}");
    assert_eq!(s["input_tokens"]["limit"], 1000.0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_without_headers_leave_the_quota_unpaced() {
    let Some(p) = pacer("unmanaged").await else {
        return;
    };
    let key = format!("{}:quota:unmanaged", p.inner.prefix);
    let first = go(&p, &key, &[1.0, 0.0, 0.0]).await;
    let a = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
    assert_eq!((a.admitted, a.bound), (false, COLD_START_BOUND));
    // A success without rate-limit headers (a proxy strips them): nothing to pace by.
    let answer = success(RateLimitHeaders::default());
    p.answered(
        key.clone(),
        first,
        [1.0, 0.0, 0.0],
        answer,
        Instant::now(),
        None,
    )
    .await
    .unwrap();
    for _ in 0..20 {
        let a = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
        assert!(a.admitted && !a.known(), "{a:?}");
    }
}

#[test]
fn local_clocks_do_not_matter() {
    // Two "machines": one runtime whose clock runs an hour ahead, one on time. Nothing
    // but durations crosses to Redis, so they share one bucket exactly.
    let ahead = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    let on_time = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let Some(p) = on_time.block_on(pacer("clocks")) else {
        return;
    };
    let key = format!("{}:quota:test", p.inner.prefix);
    on_time.block_on(seed(&p, &key, [6, 1000, 1000], [6, 1000, 1000]));
    ahead.block_on(async {
        tokio::time::advance(Duration::from_secs(3600)).await;
        tokio::time::resume();
    });
    let p2 = SharedPacer::redis(
        &std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
    )
    .unwrap()
    .prefix(p.inner.prefix.clone())
    .store_timeout(Duration::from_secs(2));
    let mut admitted = 0;
    for i in 0..10 {
        let (ok, _, _) = if i % 2 == 0 {
            on_time
                .block_on(p.admit(&key, &[1.6, 0.0, 0.0]))
                .unwrap()
                .t()
        } else {
            ahead
                .block_on(p2.admit(&key, &[1.6, 0.0, 0.0]))
                .unwrap()
                .t()
        };
        admitted += usize::from(ok);
    }
    // A bucket of 6 holds 5.975 (a quarter of a second's refill kept back): 3 calls of
    // 1.6 at once, and the 1.175 left needs 4.25 s more for a fourth.
    assert_eq!(
        admitted, 3,
        "one bucket of 6, whatever each machine's clock says"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_opening_a_circuit_opens_it_everywhere() {
    use crate::breaker::{CircuitBreakerConfig, CircuitBreakers, CircuitState};
    use anthropic_mock::{MockConfig, MockServer, OutageKind};
    let Some(p1) = pacer("circuits").await else {
        return;
    };
    let p2 = p1.clone().configure(|_| {});
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let client = |p: &SharedPacer, b: &CircuitBreakers| {
        crate::Client::builder()
            .api_key("sk-ant-test")
            .base_url(mock.url())
            .max_retries(0)
            .circuit_breakers(b.clone())
            .shared_pacer(p.clone())
            .build()
            .unwrap()
    };
    let cfg = CircuitBreakerConfig::new()
        .minimum_calls(3)
        .open_for(Duration::from_secs(30));
    let (b1, b2) = (CircuitBreakers::new(cfg), CircuitBreakers::new(cfg));
    let (c1, c2) = (client(&p1, &b1), client(&p2, &b2));
    let req = || crate::CreateMessageRequest::new("claude-down", 8).user("hi");
    // Process 2 knows the model (one good call), then it goes down.
    c2.messages().create(req()).await.unwrap();
    mock.model_outage_for(
        "claude-down",
        Duration::from_secs(60),
        OutageKind::Overloaded,
    );
    for _ in 0..3 {
        assert!(c1.messages().create(req()).await.is_err());
    }
    assert_eq!(b1.state("claude-down"), Some(CircuitState::Open));
    p1.sync_once().await;
    p2.sync_once().await;
    assert_eq!(b2.state("claude-down"), Some(CircuitState::Open));
    let before = mock.stats().requests;
    match c2.messages().create(req()).await {
        Err(Error::CircuitOpen(e)) => assert!(e.retry_after() > Duration::from_secs(25)),
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.stats().requests, before, "process 2 never sent it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_retry_budget_for_every_process() {
    let Some(p1) = pacer("budget").await else {
        return;
    };
    let p2 = p1.clone().configure(|_| {});
    let (b1, b2) = (
        RetryBudget::new(0.0, 0.0, 10.0),
        RetryBudget::new(0.0, 0.0, 10.0),
    );
    let p1 = p1.share_retry_budget(b1.clone());
    let p2 = p2.share_retry_budget(b2.clone());
    p1.sync_once().await;
    p2.sync_once().await;
    // Process 1 spends 8 of the 10 retries; process 2 then sees 2 left, not 10.
    for _ in 0..8 {
        assert!(b1.withdraw());
    }
    p1.sync_once().await;
    p2.sync_once().await;
    assert_eq!(b2.balance(), 2.0);
    assert!(b2.withdraw() && b2.withdraw());
    assert!(!b2.withdraw(), "the shared budget is spent");
    p2.sync_once().await;
    p1.sync_once().await;
    assert_eq!(b1.balance(), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_fails_open_or_closed() {
    use anthropic_mock::{MockConfig, MockServer};
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let down = || {
        SharedPacer::redis("redis://127.0.0.1:1")
            .unwrap()
            .store_timeout(Duration::from_millis(200))
    };
    let client = |p: SharedPacer| {
        crate::Client::builder()
            .api_key("sk-ant-test")
            .base_url(mock.url())
            .shared_pacer(p)
            .build()
            .unwrap()
    };
    let req = || crate::CreateMessageRequest::new("claude-m", 8).user("hi");
    let open = down();
    let c = client(open.clone());
    for _ in 0..3 {
        c.messages().create(req()).await.unwrap();
    }
    assert!(!open.is_shared(), "pacing locally");
    let closed = down().fail_closed();
    let c = client(closed);
    match c.messages().create(req()).await {
        Err(Error::Paced(p)) => assert_eq!(p.bucket(), "shared store"),
        other => panic!("{other:?}"),
    }
    assert_eq!(mock.stats().requests, 3, "fail-closed sent nothing");
}

#[test]
fn hashes_are_stable_and_urls_redacted() {
    assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    let e = SharedPacer::redis("nope://user:hunter2@host").unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_cancelled_mid_round_trip_leave_the_others_whole() {
    let Some(p) = pacer("cancel").await else {
        return;
    };
    let key = format!("{}:quota:cancel", p.inner.prefix);
    seed(&p, &key, [10, 1000, 1000], [10, 1000, 1000]).await;
    for round in 0..20 {
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let (p, key) = (p.clone(), key.clone());
            tasks.push(tokio::spawn(async move {
                p.admit(&key, &[0.001, 0.0, 0.0]).await
            }));
        }
        // Every other one dropped wherever it is (waiting, leading a round trip, or done).
        for t in tasks.iter().step_by(2) {
            t.abort();
        }
        for (i, t) in tasks.into_iter().enumerate() {
            match t.await {
                Ok(r) => assert!(r.unwrap().admitted, "round {round}, call {i}"),
                Err(e) => assert!(
                    e.is_cancelled() && i % 2 == 0,
                    "round {round}, call {i}: {e}"
                ),
            }
        }
    }
}
