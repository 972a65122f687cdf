//! Continuously refilling token buckets per API key, and the `anthropic-ratelimit-*` headers.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use http::HeaderValue;
use tokio::time::Instant;

use crate::config::RateLimits;

/// One bucket: `capacity` per minute, refilled continuously. The level may go below zero when
/// output turns out larger than what was left (the API adjusts output tokens after the fact).
#[derive(Debug, Clone)]
struct Bucket {
    capacity: f64,
    level: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: u64, now: Instant) -> Self {
        Self {
            capacity: capacity as f64,
            level: capacity as f64,
            updated: now,
        }
    }

    fn rate_per_sec(&self) -> f64 {
        self.capacity / 60.0
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.updated).as_secs_f64();
        self.level = (self.level + dt * self.rate_per_sec()).min(self.capacity);
        self.updated = now;
    }

    /// Seconds until `need` is available (0 when it already is).
    fn wait_for(&self, need: f64) -> f64 {
        if self.level >= need {
            0.0
        } else {
            (need - self.level) / self.rate_per_sec()
        }
    }

    fn remaining(&self) -> u64 {
        self.level.max(0.0).floor() as u64
    }

    fn until_full(&self) -> Duration {
        Duration::from_secs_f64(((self.capacity - self.level) / self.rate_per_sec()).max(0.0))
    }
}

/// The three buckets of one quota (key x model), and the acceleration window.
#[derive(Debug, Clone)]
struct Buckets {
    requests: Bucket,
    input: Bucket,
    output: Bucket,
    /// Start of the current one-second window, admissions in it, and whether it began with
    /// the requests bucket nearly full (usage ramping up from idle).
    window: (Instant, u32, bool),
    last_used: Instant,
}

/// What a rate-limit check decided, with the header values to send either way.
#[derive(Debug, Clone)]
pub(crate) struct Decision {
    /// `None` when admitted; otherwise the whole seconds to wait (rounded up, at least 1).
    pub(crate) retry_after: Option<u64>,
    /// Which bucket refused, for the error message.
    pub(crate) refused_by: Option<&'static str>,
    /// `error.details.error_code` of the refusal (`ramp_limit_exceeded` for an acceleration
    /// limit).
    pub(crate) error_code: Option<&'static str>,
    pub(crate) headers: Vec<(&'static str, HeaderValue)>,
}

/// Rate limiter state for all keys.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    limits: RateLimits,
    keys: HashMap<String, Buckets>,
}

impl RateLimiter {
    pub(crate) fn new(limits: RateLimits) -> Self {
        Self {
            limits,
            keys: HashMap::new(),
        }
    }

    pub(crate) fn reset(&mut self) {
        self.keys.clear();
    }

    /// Admits a request of `input` tokens and `max_tokens` output tokens on `quota` (API
    /// key x model), or refuses it, the way the API counts: one request, the input tokens, and
    /// output tokens estimated from `max_tokens` at admission (a `max_tokens` above the whole
    /// bucket is admitted when the bucket is full), corrected by [`settle`](Self::settle) when
    /// the answer ends. With an acceleration limit, more than that many admissions within a
    /// second of a ramp from idle are refused (`ramp_limit_exceeded`). Header values describe
    /// the buckets after the decision.
    pub(crate) fn check(
        &mut self,
        quota: &str,
        input: u64,
        max_tokens: u64,
        now: Instant,
    ) -> Decision {
        let limits = self.limits;
        if self.keys.len() >= MAX_QUOTAS && !self.keys.contains_key(quota) {
            self.evict(now);
        }
        let b = self
            .keys
            .entry(quota.to_owned())
            .or_insert_with(|| Buckets {
                requests: Bucket::new(limits.requests_per_minute, now),
                input: Bucket::new(limits.input_tokens_per_minute, now),
                output: Bucket::new(limits.output_tokens_per_minute, now),
                window: (now, 0, true),
                last_used: now,
            });
        b.last_used = now;
        b.requests.refill(now);
        b.input.refill(now);
        b.output.refill(now);
        let output_need = (max_tokens as f64).min(b.output.capacity);
        let waits = [
            ("requests", b.requests.wait_for(1.0)),
            ("input tokens", b.input.wait_for(input as f64)),
            ("output tokens", b.output.wait_for(output_need)),
        ];
        let worst = waits
            .iter()
            .copied()
            .fold(("", 0.0f64), |a, w| if w.1 > a.1 { w } else { a });
        if now.saturating_duration_since(b.window.0) >= Duration::from_secs(1) {
            let from_idle = b.requests.level >= 0.9 * b.requests.capacity;
            b.window = (now, 0, from_idle);
        }
        let ramp = limits
            .max_burst_from_idle
            .is_some_and(|n| b.window.2 && b.window.1 >= n);
        let (retry_after, refused_by, error_code) = if worst.1 > 0.0 {
            // Whole seconds, rounded up: waiting that long always suffices.
            (Some((worst.1.ceil() as u64).max(1)), Some(worst.0), None)
        } else if ramp {
            (Some(1), Some("acceleration"), Some("ramp_limit_exceeded"))
        } else {
            b.requests.level -= 1.0;
            b.input.level -= input as f64;
            b.output.level -= max_tokens as f64;
            b.window.1 += 1;
            (None, None, None)
        };
        Decision {
            retry_after,
            refused_by,
            error_code,
            headers: headers(b),
        }
    }

    /// The answer on `quota` ended: gives back the output tokens reserved from `max_tokens`
    /// and not produced.
    pub(crate) fn settle(&mut self, quota: &str, unused_output: u64, now: Instant) {
        if let Some(b) = self.keys.get_mut(quota) {
            b.output.refill(now);
            b.output.level = (b.output.level + unused_output as f64).min(b.output.capacity);
        }
    }

    /// Forgets quotas whose buckets are full again (they hold nothing a new one would not).
    fn evict(&mut self, now: Instant) {
        self.keys.retain(|_, b| {
            b.requests.refill(now);
            b.input.refill(now);
            b.output.refill(now);
            !(b.requests.level >= b.requests.capacity
                && b.input.level >= b.input.capacity
                && b.output.level >= b.output.capacity)
        });
        if self.keys.len() >= MAX_QUOTAS {
            // Still full: drop the least recently used half.
            let mut used: Vec<Instant> = self.keys.values().map(|b| b.last_used).collect();
            used.sort();
            let cut = used[used.len() / 2];
            self.keys.retain(|_, b| b.last_used > cut);
        }
    }
}

/// Quotas kept at most; past this, idle ones are forgotten.
const MAX_QUOTAS: usize = 10_000;

fn headers(b: &Buckets) -> Vec<(&'static str, HeaderValue)> {
    let now = SystemTime::now();
    let reset = |bk: &Bucket| {
        HeaderValue::from_str(&crate::time::rfc3339(now + bk.until_full()))
            .expect("an RFC 3339 timestamp is a valid header value")
    };
    let num = |n: u64| HeaderValue::from(n);
    // The combined "tokens" limit reports the more constrained of input and output.
    let tokens = if b.input.remaining() as f64 / b.input.capacity
        <= b.output.remaining() as f64 / b.output.capacity
    {
        &b.input
    } else {
        &b.output
    };
    vec![
        (
            "anthropic-ratelimit-requests-limit",
            num(b.requests.capacity as u64),
        ),
        (
            "anthropic-ratelimit-requests-remaining",
            num(b.requests.remaining()),
        ),
        ("anthropic-ratelimit-requests-reset", reset(&b.requests)),
        (
            "anthropic-ratelimit-tokens-limit",
            num(tokens.capacity as u64),
        ),
        (
            "anthropic-ratelimit-tokens-remaining",
            num(tokens.remaining()),
        ),
        ("anthropic-ratelimit-tokens-reset", reset(tokens)),
        (
            "anthropic-ratelimit-input-tokens-limit",
            num(b.input.capacity as u64),
        ),
        (
            "anthropic-ratelimit-input-tokens-remaining",
            num(b.input.remaining()),
        ),
        ("anthropic-ratelimit-input-tokens-reset", reset(&b.input)),
        (
            "anthropic-ratelimit-output-tokens-limit",
            num(b.output.capacity as u64),
        ),
        (
            "anthropic-ratelimit-output-tokens-remaining",
            num(b.output.remaining()),
        ),
        ("anthropic-ratelimit-output-tokens-reset", reset(&b.output)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header<'a>(d: &'a Decision, name: &str) -> &'a str {
        d.headers
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap()
            .1
            .to_str()
            .unwrap()
    }

    fn limits(rpm: u64, itpm: u64, otpm: u64) -> RateLimits {
        RateLimits {
            requests_per_minute: rpm,
            input_tokens_per_minute: itpm,
            output_tokens_per_minute: otpm,
            max_burst_from_idle: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn output_is_reserved_from_max_tokens_and_settled_to_the_real_output() {
        let mut rl = RateLimiter::new(limits(1000, 1_000_000, 600));
        let t0 = Instant::now();
        let d = rl.check("k", 1, 400, t0);
        assert!(d.retry_after.is_none());
        assert_eq!(
            header(&d, "anthropic-ratelimit-output-tokens-remaining"),
            "200"
        );
        // 250 more does not fit while 400 are reserved...
        assert_eq!(rl.check("k", 1, 250, t0).retry_after, Some(5));
        // ...and does once the answer settles at 100 real tokens.
        rl.settle("k", 300, t0);
        assert!(rl.check("k", 1, 250, t0).retry_after.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn quotas_are_bounded_however_many_keys_come() {
        let mut rl = RateLimiter::new(limits(10, 1_000, 1_000));
        let t0 = Instant::now();
        for i in 0..(MAX_QUOTAS + 5_000) {
            rl.check(&format!("key-{i}"), 1, 1, t0);
        }
        assert!(rl.keys.len() <= MAX_QUOTAS, "{}", rl.keys.len());
    }

    #[tokio::test(start_paused = true)]
    async fn a_sharp_ramp_from_idle_meets_the_acceleration_limit() {
        let mut rl = RateLimiter::new(RateLimits {
            max_burst_from_idle: Some(5),
            ..limits(20, 1_000_000, 1_000_000)
        });
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(rl.check("k", 1, 1, t0).retry_after.is_none());
        }
        let d = rl.check("k", 1, 1, t0);
        assert_eq!(
            (d.retry_after, d.error_code),
            (Some(1), Some("ramp_limit_exceeded"))
        );
        // The next second began busy (bucket under 90%): no acceleration limit then.
        let t1 = t0 + Duration::from_secs(1);
        for _ in 0..10 {
            assert!(rl.check("k", 1, 1, t1).retry_after.is_none());
        }
        // Another quota (another model) has buckets of its own.
        assert!(rl.check("k/other-model", 1, 1, t1).retry_after.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_bucket_refills_continuously() {
        let mut rl = RateLimiter::new(limits(60, 1_000_000, 1_000_000));
        let t0 = Instant::now();
        for i in 0..60 {
            let d = rl.check("k", 1, 1, t0);
            assert!(d.retry_after.is_none(), "request {i} refused");
            assert_eq!(
                header(&d, "anthropic-ratelimit-requests-remaining"),
                (59 - i).to_string()
            );
        }
        let d = rl.check("k", 1, 1, t0);
        assert_eq!(d.retry_after, Some(1));
        assert_eq!(d.refused_by, Some("requests"));
        assert_eq!(header(&d, "anthropic-ratelimit-requests-limit"), "60");
        // 60 per minute is one per second: after 999 ms still refused, after 1 s admitted.
        assert!(
            rl.check("k", 1, 1, t0 + Duration::from_millis(999))
                .retry_after
                .is_some()
        );
        assert!(
            rl.check("k", 1, 1, t0 + Duration::from_secs(1))
                .retry_after
                .is_none()
        );
        // Another key has its own buckets.
        assert!(rl.check("other", 1, 1, t0).retry_after.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn input_tokens_retry_after_rounds_up() {
        let mut rl = RateLimiter::new(limits(1000, 600, 1_000_000));
        let t0 = Instant::now();
        assert!(rl.check("k", 500, 1, t0).retry_after.is_none());
        // 100 left, 10 per second: 250 more needs 15 s.
        let d = rl.check("k", 250, 1, t0);
        assert_eq!(d.retry_after, Some(15));
        assert_eq!(d.refused_by, Some("input tokens"));
        assert_eq!(
            header(&d, "anthropic-ratelimit-input-tokens-remaining"),
            "100"
        );
        // 101 left needs 14.9 s: rounded up to 15.
        let d = rl.check("k", 249, 1, t0 + Duration::from_millis(100));
        assert_eq!(d.retry_after, Some(15));
        assert!(
            rl.check("k", 250, 1, t0 + Duration::from_secs(15))
                .retry_after
                .is_none()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn output_debt_blocks_until_repaid() {
        let mut rl = RateLimiter::new(limits(1000, 1_000_000, 60));
        let t0 = Instant::now();
        assert!(rl.check("k", 1, 120, t0).retry_after.is_none()); // level -60
        let d = rl.check("k", 1, 1, t0);
        assert_eq!(
            header(&d, "anthropic-ratelimit-output-tokens-remaining"),
            "0"
        );
        assert_eq!(d.retry_after, Some(61)); // needs 61 tokens at 1 per second
        assert!(
            rl.check("k", 1, 1, t0 + Duration::from_secs(61))
                .retry_after
                .is_none()
        );
    }

    /// A client that sends only when the headers say there is room never gets a 429.
    #[tokio::test(start_paused = true)]
    async fn obeying_the_headers_never_gets_refused() {
        let mut rl = RateLimiter::new(limits(30, 2_000, 600));
        let mut now = Instant::now();
        let mut remaining = (30u64, 2_000u64, 600u64);
        let mut admitted = 0;
        for i in 0..500u64 {
            let input = 50 + (i * 37) % 200;
            let output = 10 + (i * 13) % 60;
            if remaining.0 < 1 || remaining.1 < input || remaining.2 < output {
                now += Duration::from_millis(250);
                let probe_headers = {
                    let mut c = rl.clone_for_probe();
                    c.peek("k", now)
                };
                remaining = probe_headers;
                continue;
            }
            let d = rl.check("k", input, output, now);
            assert!(
                d.retry_after.is_none(),
                "refused at step {i} though the headers allowed it"
            );
            admitted += 1;
            remaining = (
                header(&d, "anthropic-ratelimit-requests-remaining")
                    .parse()
                    .unwrap(),
                header(&d, "anthropic-ratelimit-input-tokens-remaining")
                    .parse()
                    .unwrap(),
                header(&d, "anthropic-ratelimit-output-tokens-remaining")
                    .parse()
                    .unwrap(),
            );
        }
        assert!(admitted > 30, "only {admitted} admitted");
    }

    impl RateLimiter {
        fn clone_for_probe(&self) -> RateLimiter {
            RateLimiter {
                limits: self.limits,
                keys: self.keys.clone(),
            }
        }
        /// What the headers would say at `now` (by refilling a copy).
        fn peek(&mut self, key: &str, now: Instant) -> (u64, u64, u64) {
            let b = self.keys.get_mut(key).unwrap();
            b.requests.refill(now);
            b.input.refill(now);
            b.output.refill(now);
            (
                b.requests.remaining(),
                b.input.remaining(),
                b.output.remaining(),
            )
        }
    }
}
