//! The retry layer: decisions, waits, the cap, the deadline, the budget and the attempt
//! header; through fake HTTP services and against the mock. Paused time throughout.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::json;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_anthropic::classify::ClassifyLayer;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::retry::{JitterSource, RetryBudget, RetryLayer, RetryPolicy};
use tower_anthropic::timeout::Deadline;
use tower_anthropic::{ApiErrorKind, Client, Error};

type Reply = (u16, Vec<(&'static str, String)>, &'static str);

/// A request as the fake saw it: its retry-count header and arrival.
type Seen = (Option<String>, Instant);

/// A fake HTTP service answering from a script (then 200s), recording each request's
/// retry-count header and arrival time.
#[derive(Clone, Default)]
struct Fake {
    script: Arc<Mutex<std::collections::VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Fake {
    fn new(replies: impl IntoIterator<Item = Reply>) -> Self {
        let f = Fake::default();
        f.script.lock().unwrap().extend(replies);
        f
    }
    fn service(
        &self,
    ) -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = std::io::Error,
        Future = impl Send,
    > + Clone
    + Send
    + 'static {
        let f = self.clone();
        tower::service_fn(move |req: Request<Full<Bytes>>| {
            let count = req
                .headers()
                .get("x-stainless-retry-count")
                .map(|v| v.to_str().unwrap().to_owned());
            f.seen.lock().unwrap().push((count, Instant::now()));
            let next = f.script.lock().unwrap().pop_front();
            async move {
                let (status, headers, body) = next.unwrap_or((200, vec![], "ok"));
                let mut b = Response::builder().status(status);
                for (k, v) in headers {
                    b = b.header(k, v);
                }
                Ok(b.body(Full::new(Bytes::from_static(body.as_bytes())))
                    .unwrap())
            }
        })
    }
    fn attempts(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
    fn counts(&self) -> Vec<Option<String>> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(c, _)| c.clone())
            .collect()
    }
    fn gaps(&self) -> Vec<Duration> {
        let seen = self.seen.lock().unwrap();
        seen.windows(2).map(|w| w[1].1 - w[0].1).collect()
    }
}

fn policy() -> RetryPolicy {
    RetryPolicy::new()
        .jitter_source(JitterSource::seeded(1))
        .budget(None)
}

async fn call(policy: RetryPolicy, fake: &Fake) -> Result<Response<Full<Bytes>>, Error> {
    call_with(
        policy,
        fake,
        Request::new(Full::new(Bytes::from_static(b"{}"))),
    )
    .await
}

async fn call_with(
    policy: RetryPolicy,
    fake: &Fake,
    req: Request<Full<Bytes>>,
) -> Result<Response<Full<Bytes>>, Error> {
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy))
        .layer(ClassifyLayer::new())
        .service(fake.service());
    svc.oneshot(req).await
}

fn status(s: u16) -> Reply {
    (s, vec![], "{}")
}

fn with_header(s: u16, k: &'static str, v: &str) -> Reply {
    (s, vec![(k, v.to_owned())], "{}")
}

#[tokio::test(start_paused = true)]
async fn should_retry_matrix_for_every_status() {
    let statuses = [
        400, 401, 402, 403, 404, 408, 409, 412, 413, 422, 429, 431, 499, 500, 501, 502, 503, 504,
        529, 418,
    ];
    for s in statuses {
        let table = matches!(s, 408 | 409 | 429 | 500..=599);
        for (header, expect_retry) in [
            (None, table),
            (Some("true"), true),
            (Some("false"), false),
            (Some("TRUE"), table),
        ] {
            let reply = match header {
                Some(h) => with_header(s, "x-should-retry", h),
                None => status(s),
            };
            let fake = Fake::new([reply.clone(), reply]);
            let e = call(policy().max_retries(1), &fake).await.unwrap_err();
            let want = if expect_retry { 2 } else { 1 };
            assert_eq!(
                fake.attempts(),
                want,
                "status {s}, x-should-retry {header:?}"
            );
            assert_eq!(e.attempts() as usize, want);
            assert_eq!(e.status().unwrap().as_u16(), s);
        }
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_for_0_2_and_4_failures_with_the_retry_count_header() {
    for failures in [0usize, 2, 4] {
        let fake = Fake::new(std::iter::repeat_n(status(500), failures));
        let resp = call(policy().max_retries(4), &fake).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(fake.attempts(), failures + 1);
        let want: Vec<Option<String>> = (0..=failures).map(|i| Some(i.to_string())).collect();
        assert_eq!(fake.counts(), want);
    }
    // Five failures exhaust four retries.
    let fake = Fake::new(std::iter::repeat_n(status(500), 5));
    let e = call(policy().max_retries(4), &fake).await.unwrap_err();
    assert_eq!((fake.attempts(), e.attempts()), (5, 5));
}

#[tokio::test(start_paused = true)]
async fn backoff_follows_the_sdk_formula_with_fresh_jitter() {
    let fake = Fake::new(std::iter::repeat_n(status(529), 5));
    call(policy().max_retries(4), &fake).await.unwrap_err();
    let gaps = fake.gaps();
    let ranges = [(0.375, 0.5), (0.75, 1.0), (1.5, 2.0), (3.0, 4.0)];
    for (g, (lo, hi)) in gaps.iter().zip(ranges) {
        let s = g.as_secs_f64();
        assert!(s > lo && s <= hi, "{s} not in ({lo}, {hi}]");
    }
    // Each wait has its own draw: the jitter fractions are not all equal.
    let fractions: Vec<f64> = gaps
        .iter()
        .zip(ranges)
        .map(|(g, (_, hi))| g.as_secs_f64() / hi)
        .collect();
    assert!(
        fractions.windows(2).any(|w| (w[0] - w[1]).abs() > 1e-6),
        "{fractions:?}"
    );
    // The same seed gives the same waits.
    let again = Fake::new(std::iter::repeat_n(status(529), 5));
    call(policy().max_retries(4), &again).await.unwrap_err();
    assert_eq!(again.gaps(), gaps);
    // Past the cap the backoff stays at (6, 8].
    let p = policy();
    for n in 4..10 {
        let d = p.backoff_delay(n).as_secs_f64();
        assert!(d > 6.0 && d <= 8.0, "{d}");
    }
}

#[tokio::test(start_paused = true)]
async fn server_directed_waits() {
    // retry-after seconds, retry-after-ms, and an HTTP-date 20 s ahead.
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(20));
    let cases: [(Reply, f64); 4] = [
        (with_header(429, "retry-after", "7"), 7.0),
        (with_header(429, "retry-after-ms", "1500"), 1.5),
        (
            (
                429,
                vec![("retry-after-ms", "0".into()), ("retry-after", "3".into())],
                "{}",
            ),
            3.0,
        ),
        (with_header(529, "retry-after", &date), 20.0),
    ];
    for (reply, want) in cases {
        let fake = Fake::new([reply]);
        call(policy(), &fake).await.unwrap();
        let gap = fake.gaps()[0].as_secs_f64();
        // An HTTP-date has whole seconds: allow the sub-second part of "now".
        assert!(
            (gap - want).abs() < 1.0 && gap <= want + 1e-9,
            "waited {gap}, want {want}"
        );
    }
    // Garbage falls back to backoff.
    let fake = Fake::new([with_header(429, "retry-after", "20abc")]);
    call(policy(), &fake).await.unwrap();
    assert!(fake.gaps()[0] <= Duration::from_millis(500));
}

#[tokio::test(start_paused = true)]
async fn a_long_retry_after_is_surfaced_at_once() {
    let fake = Fake::new([with_header(429, "retry-after", "120")]);
    let start = Instant::now();
    let e = call(policy(), &fake).await.unwrap_err();
    assert_eq!(Instant::now(), start, "nothing was slept");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(120)));
    assert_eq!(e.kind(), Some(ApiErrorKind::RateLimit));
    assert_eq!(fake.attempts(), 1);
    // A higher cap sleeps it.
    let fake = Fake::new([with_header(429, "retry-after", "120")]);
    call(policy().max_retry_after(Duration::from_secs(300)), &fake)
        .await
        .unwrap();
    assert_eq!(fake.gaps(), [Duration::from_secs(120)]);
}

#[tokio::test(start_paused = true)]
async fn absurd_backoffs_are_not_slept() {
    // A backoff of Duration::MAX (and a cap to match) would sleep without end: the wait is
    // over max_retry_after (at most a day), so the error comes back at once.
    for cap in [Duration::from_secs(60), Duration::MAX] {
        let fake = Fake::new([status(529), status(200)]);
        let p = policy()
            .max_retries(1)
            .backoff(Duration::MAX, Duration::MAX, 0.0)
            .max_retry_after(cap);
        let start = Instant::now();
        let e = call(p, &fake).await.unwrap_err();
        assert_eq!(Instant::now(), start, "nothing was slept");
        assert_eq!(e.status(), Some(http::StatusCode::from_u16(529).unwrap()));
        assert_eq!(fake.attempts(), 1);
    }
    // Zero backoff retries at once.
    let fake = Fake::new([status(529), status(200)]);
    call(policy().backoff(Duration::ZERO, Duration::ZERO, 0.0), &fake)
        .await
        .unwrap();
    assert_eq!(fake.gaps(), [Duration::ZERO]);
}

#[tokio::test(start_paused = true)]
async fn spend_limits_are_not_retried() {
    let body = r#"{"type":"error","error":{"type":"rate_limit_error","message":"spend cap","details":{"error_code":"enforced_spend_limit_reached"}}}"#;
    let fake = Fake::new([(429, vec![], body), status(200)]);
    let e = call(policy(), &fake).await.unwrap_err();
    assert_eq!(fake.attempts(), 1);
    assert_eq!(
        e.as_api().unwrap().error_code(),
        Some("enforced_spend_limit_reached")
    );
    assert!(e.as_api().unwrap().is_spend_limit());
}

#[tokio::test(start_paused = true)]
async fn no_wait_ends_after_the_deadline() {
    let fake = Fake::new([with_header(529, "retry-after", "5")]);
    let mut req = Request::new(Full::new(Bytes::new()));
    req.extensions_mut()
        .insert(Deadline::at(Instant::now() + Duration::from_secs(2)));
    let start = Instant::now();
    let e = call_with(policy(), &fake, req).await.unwrap_err();
    assert_eq!(Instant::now(), start);
    assert_eq!(e.kind(), Some(ApiErrorKind::Overloaded));
    assert_eq!(e.retry_after(), Some(Duration::from_secs(5)));
    // A deadline far enough away allows the wait.
    let fake = Fake::new([with_header(529, "retry-after", "5")]);
    let mut req = Request::new(Full::new(Bytes::new()));
    req.extensions_mut()
        .insert(Deadline::at(Instant::now() + Duration::from_secs(6)));
    call_with(policy(), &fake, req).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn header_can_be_renamed_or_removed() {
    let fake = Fake::new([status(500)]);
    call(policy().retry_count_header(None), &fake)
        .await
        .unwrap();
    assert_eq!(fake.counts(), [None, None]);
}

/// Every attempt fails; 1,000 requests arrive over a second, 50 at a time, each with up to 2
/// retries. Returns total attempts and the virtual time taken.
async fn outage(budget: Option<RetryBudget>) -> (usize, Duration) {
    let fake = Fake::new([]);
    let always_529 = {
        let f = fake.clone();
        tower::service_fn(move |_req: Request<Full<Bytes>>| {
            f.seen.lock().unwrap().push((None, Instant::now()));
            async {
                Ok::<_, std::io::Error>(
                    Response::builder()
                        .status(529)
                        .body(Full::new(Bytes::new()))
                        .unwrap(),
                )
            }
        })
    };
    let svc = ServiceBuilder::new()
        .layer(RetryLayer::new(policy().budget(budget)))
        .layer(ClassifyLayer::new())
        .service(always_529);
    let start = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for i in 0..1000u64 {
        if i % 50 == 0 && i > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let svc = svc.clone();
        set.spawn(async move {
            svc.oneshot(Request::new(Full::new(Bytes::new())))
                .await
                .unwrap_err()
        });
    }
    while let Some(e) = set.join_next().await {
        assert_eq!(e.unwrap().kind(), Some(ApiErrorKind::Overloaded));
    }
    (fake.attempts(), start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn the_budget_bounds_an_outage() {
    let budget = RetryBudget::default();
    let (with, elapsed) = outage(Some(budget.clone())).await;
    let (without, _) = outage(None).await;
    let n = 1000.0;
    let bound = n + budget.bound(1000, elapsed);
    println!(
        "outage amplification: {:.3} attempts/request with the budget (bound {:.3}), {:.3} without",
        with as f64 / n,
        bound / n,
        without as f64 / n
    );
    assert_eq!(
        without, 3000,
        "without a budget every request takes its 3 attempts"
    );
    assert!((with as f64) <= bound, "{with} attempts > bound {bound}");
    assert!(with as f64 / n <= 1.25, "{with} attempts for 1000 requests");
    // An isolated failure afterwards, once the floor has refilled, still gets its retries.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let fake = Fake::new([status(529), status(529)]);
    call(policy().budget(Some(budget)), &fake).await.unwrap();
    assert_eq!(fake.attempts(), 3);
}

#[tokio::test(start_paused = true)]
async fn server_directed_waits_draw_nothing_from_the_budget() {
    let budget = RetryBudget::new(0.0, 0.0, 1.0);
    assert!(budget.withdraw(), "spend the only token");
    let p = policy().budget(Some(budget.clone()));
    let fake = Fake::new([
        with_header(429, "retry-after", "1"),
        with_header(529, "retry-after-ms", "200"),
    ]);
    call(p.clone(), &fake).await.unwrap();
    assert_eq!(fake.attempts(), 3, "both server-directed retries taken");
    let fake = Fake::new([status(529)]);
    call(p, &fake).await.unwrap_err();
    assert_eq!(fake.attempts(), 1, "a backoff retry needs a token");
}

mod support;

fn mock_client(s: &MockServer, key: &str) -> Client {
    support::builder(s, key, 3).build().unwrap()
}

fn req() -> CreateMessageRequest {
    support::req(32)
}

#[tokio::test(start_paused = true)]
async fn the_default_client_against_the_mock() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = mock_client(&s, "a");
    s.script("a", [ScriptEntry::status(529), ScriptEntry::status(529)]);
    let msg = c.messages().create(req()).await.unwrap();
    assert_eq!(msg.attempts(), 3);
    let counts: Vec<String> = s
        .log()
        .iter()
        .map(|e| e.headers["x-stainless-retry-count"].clone())
        .collect();
    assert_eq!(counts, ["0", "1", "2"]);

    s.reset();
    s.script(
        "a",
        [
            ScriptEntry::status(529),
            ScriptEntry::status(529),
            ScriptEntry::status(529),
        ],
    );
    let e = c.messages().create(req()).await.unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::Overloaded));
    assert_eq!(e.attempts(), 3);
    assert_eq!(s.stats().requests, 3);

    s.reset();
    s.script("a", [ScriptEntry::status(400)]);
    let e = c.messages().create(req()).await.unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::BadRequest));
    assert_eq!(e.attempts(), 1);
    assert_eq!(s.stats().requests, 1);
}

#[tokio::test(start_paused = true)]
async fn resets_and_rate_limits_against_the_mock() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Client::builder()
        .api_key("sk-test")
        .base_url(s.url())
        .default_header("x-mock-key", "r")
        .retry_policy(
            RetryPolicy::new()
                .max_retries(4)
                .jitter_source(JitterSource::seeded(5)),
        )
        .build()
        .unwrap();
    for failures in [0, 2, 4] {
        s.reset();
        s.script("r", std::iter::repeat_n(ScriptEntry::Reset, failures));
        let msg = c.messages().create(req()).await.unwrap();
        assert_eq!(msg.attempts() as usize, failures + 1);
        let counts: Vec<String> = s
            .log()
            .iter()
            .map(|e| e.headers["x-stainless-retry-count"].clone())
            .collect();
        let want: Vec<String> = (0..=failures).map(|i| i.to_string()).collect();
        assert_eq!(counts, want);
    }
    // A 429 with retry-after 2 is waited out exactly.
    s.reset();
    s.script(
        "r",
        [serde_json::from_value(
            json!({"kind": "status", "status": 429, "headers": {"retry-after": "2"}}),
        )
        .unwrap()],
    );
    let start = Instant::now();
    c.messages().create(req()).await.unwrap();
    assert!(start.elapsed() >= Duration::from_secs(2));
    let log = s.log();
    // Exactly 2 s, plus at most the 1 ms timer tick the pacer's refill needs after a 429
    // that did not say which bucket ran out.
    let gap = log[1].at_ms - log[0].at_ms;
    assert!((2000..=2001).contains(&gap), "{gap}");
}

#[test]
fn the_client_sends_the_first_retry_count_once_and_none_when_turned_off() {
    // The client's endpoint carries the first attempt's count, so the retry layer finds it
    // in place: one header, "0"; retries replace it (`the_default_client_against_the_mock`).
    let c = Client::builder().api_key("sk-test").build().unwrap();
    let req = c.service().endpoint().post("/v1/messages", Bytes::new());
    let counts: Vec<_> = req
        .headers()
        .get_all(tower_anthropic::retry::RETRY_COUNT_HEADER)
        .iter()
        .collect();
    assert_eq!(counts, ["0"]);
    // Turned off in the policy: not sent at all.
    let c = Client::builder()
        .api_key("sk-test")
        .retry_policy(RetryPolicy::new().retry_count_header(None))
        .build()
        .unwrap();
    let req = c.service().endpoint().post("/v1/messages", Bytes::new());
    assert!(
        req.headers()
            .get(tower_anthropic::retry::RETRY_COUNT_HEADER)
            .is_none()
    );
}
