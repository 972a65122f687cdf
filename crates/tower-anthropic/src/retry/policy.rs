//! The retry policy: which errors are retried, and how long to wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use tokio::time::{Instant, Sleep};

use super::budget::RetryBudget;
use crate::body::ResponseMode;
use crate::error::{Error, TimeoutError};
use crate::timeout::Deadline;

/// The header carrying the attempt number, as the official SDKs send it.
pub const RETRY_COUNT_HEADER: &str = "x-stainless-retry-count";

/// How many attempts a call took; a response extension set by the retry layer on an answer
/// that took more than one (absent: one), and read by
/// [`ApiResponse::attempts`](crate::messages::ApiResponse::attempts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attempts(pub u32);

/// Per-request retry state, kept in the request's extensions (never in the shared policy):
/// the index of the attempt this request is, absent for attempt 0. The copy kept for a retry
/// has the index of the attempt it was copied from until a retry is decided.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptIndex(pub(crate) u32);

/// Per-request record of the errors of the attempts so far (a request extension carried from
/// copy to copy; a response extension on a stream, so its re-sends continue it).
#[derive(Debug, Clone, Default)]
pub(crate) struct AttemptLog(pub(crate) Vec<Error>);

/// On a streaming response: the policy that retried its request, so a stream that fails
/// before its first content is re-sent under the same rules and budget.
#[derive(Debug, Clone)]
pub(crate) struct StreamResend(pub(crate) RetryPolicy);

/// What the policy decided about one failed attempt.
#[derive(Debug)]
pub(crate) enum Decision {
    /// Retry after this wait.
    Retry { wait: Duration, from: &'static str },
    /// Return the error.
    Stop,
    /// Return the error: the wait would end after the deadline.
    StopForDeadline,
}

/// A uniform random source for jitter that tests can seed; clones share it.
#[derive(Debug, Clone)]
pub struct JitterSource(Arc<AtomicU64>);

impl JitterSource {
    /// A source seeded with `seed`: the same seed gives the same draws in the same order.
    pub fn seeded(seed: u64) -> Self {
        Self(Arc::new(AtomicU64::new(seed)))
    }

    /// A source seeded from the process's random hasher keys.
    pub fn from_entropy() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x5EED);
        Self::seeded(h.finish())
    }

    /// The next draw, uniform in [0, 1) (SplitMix64).
    pub(crate) fn next_f64(&self) -> f64 {
        let mut z = self
            .0
            .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// The most [`RetryPolicy::max_retry_after`] can be: a day.
const MAX_WAIT_CAP: Duration = Duration::from_secs(86_400);

/// The SDK-compatible retry policy, with this crate's safer defaults.
///
/// | setting | default |
/// |---|---|
/// | `max_retries` | 2 (3 attempts) |
/// | backoff | `min(0.5 s * 2^n, 8 s) * (1 - 0.25 * U)` |
/// | `max_retry_after` | 60 s: a longer wait (server-directed, or a backoff set that long) is returned, not slept; at most a day |
/// | budget | [`RetryBudget::default`], shared by clones |
/// | retry-count header | `x-stainless-retry-count` |
///
/// A clone is a reference count: tower's `Retry` clones its policy into every call.
#[derive(Clone)]
pub struct RetryPolicy {
    pub(crate) cfg: Arc<PolicyConfig>,
}

impl std::fmt::Debug for RetryPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let c = &*self.cfg;
        f.debug_struct("RetryPolicy")
            .field("max_retries", &c.max_retries)
            .field("base", &c.base)
            .field("max_backoff", &c.max_backoff)
            .field("jitter", &c.jitter)
            .field("max_retry_after", &c.max_retry_after)
            .field("budget", &c.budget)
            .field("rng", &c.rng)
            .field("header", &c.header)
            .finish()
    }
}

/// The settings of a [`RetryPolicy`].
#[derive(Debug, Clone)]
pub(crate) struct PolicyConfig {
    pub(crate) max_retries: u32,
    pub(crate) base: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) jitter: f64,
    pub(crate) max_retry_after: Duration,
    pub(crate) budget: Option<RetryBudget>,
    pub(crate) rng: JitterSource,
    pub(crate) header: Option<HeaderName>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        let cfg = PolicyConfig {
            max_retries: 2,
            base: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            jitter: 0.25,
            max_retry_after: Duration::from_secs(60),
            budget: Some(RetryBudget::default()),
            rng: JitterSource::from_entropy(),
            header: Some(HeaderName::from_static(RETRY_COUNT_HEADER)),
        };
        Self { cfg: Arc::new(cfg) }
    }
}

impl RetryPolicy {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// At most `n` retries (`n + 1` attempts).
    pub fn max_retries(mut self, n: u32) -> Self {
        Arc::make_mut(&mut self.cfg).max_retries = n;
        self
    }
    /// Backoff `min(base * 2^n, max) * (1 - jitter * U)`. A backoff longer than
    /// [`max_retry_after`](Self::max_retry_after) is not slept: the error is returned.
    pub fn backoff(mut self, base: Duration, max: Duration, jitter: f64) -> Self {
        let cfg = Arc::make_mut(&mut self.cfg);
        cfg.base = base;
        cfg.max_backoff = max.max(base);
        cfg.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }
    /// A wait longer than this is not slept: the error is returned at once (with
    /// `retry_after()` set when the server named the wait). It bounds server-directed waits
    /// and the backoff alike, so no setting makes a call sleep without end. Capped at a day.
    pub fn max_retry_after(mut self, cap: Duration) -> Self {
        Arc::make_mut(&mut self.cfg).max_retry_after = cap.min(MAX_WAIT_CAP);
        self
    }
    /// The retry budget; `None` turns it off.
    pub fn budget(mut self, budget: Option<RetryBudget>) -> Self {
        Arc::make_mut(&mut self.cfg).budget = budget;
        self
    }
    /// The random source of the jitter.
    pub fn jitter_source(mut self, rng: JitterSource) -> Self {
        Arc::make_mut(&mut self.cfg).rng = rng;
        self
    }
    /// The header carrying the attempt number; `None` sends none.
    pub fn retry_count_header(mut self, header: Option<HeaderName>) -> Self {
        Arc::make_mut(&mut self.cfg).header = header;
        self
    }

    /// The backoff before retry `n` (0-based), with a fresh jitter draw.
    pub fn backoff_delay(&self, n: u32) -> Duration {
        let exp = self.cfg.base.as_secs_f64() * 2f64.powi(n.min(62) as i32);
        let capped = exp.min(self.cfg.max_backoff.as_secs_f64());
        let secs = capped * (1.0 - self.cfg.jitter * self.cfg.rng.next_f64());
        // Absurd settings saturate instead of panicking in the float conversion.
        Duration::try_from_secs_f64(secs).unwrap_or(if secs > 0.0 {
            Duration::MAX
        } else {
            Duration::ZERO
        })
    }

    /// Decides about a failed attempt, the `attempts`-th of its call: the one place that
    /// knows the rules (the retry layer and a stream's re-send before content both ask it).
    pub(crate) fn decide(
        &self,
        attempts: u32,
        deadline: Option<&Deadline>,
        error: &Error,
    ) -> Decision {
        if !error.is_retryable() || attempts > self.cfg.max_retries {
            return Decision::Stop;
        }
        let (wait, from) = match error.retry_after() {
            Some(server) if server > self.cfg.max_retry_after => {
                tracing::info!(wait = ?server, cap = ?self.cfg.max_retry_after, request_id = error.request_id(),
                    "server-directed wait over the cap: returning the error");
                return Decision::Stop;
            }
            Some(server) => (server, "retry-after"),
            // The server did nothing with it (RFC 9113 section 8.7): again at once, and
            // nothing drawn from the budget, as for a server-directed wait.
            None if matches!(error, Error::Connection(c) if c.is_stream_refused()) => {
                (Duration::ZERO, "refused")
            }
            None => {
                let backoff = self.backoff_delay(attempts.saturating_sub(1));
                if backoff > self.cfg.max_retry_after {
                    tracing::info!(wait = ?backoff, cap = ?self.cfg.max_retry_after, request_id = error.request_id(),
                        "backoff over the cap: returning the error");
                    return Decision::Stop;
                }
                (backoff, "backoff")
            }
        };
        if let Some(deadline) = deadline {
            if Instant::now()
                .checked_add(wait)
                .is_none_or(|end| end > deadline.instant())
            {
                tracing::info!(wait = ?wait, request_id = error.request_id(),
                    "the wait would end after the deadline: returning the error");
                return Decision::StopForDeadline;
            }
        }
        // The budget bounds the retries we decide on our own; a server-directed wait is the
        // server pacing its clients, so it draws nothing (a 429 with `retry-after` is obeyed,
        // not turned into a failure by an empty budget).
        if from == "backoff" {
            if let Some(budget) = &self.cfg.budget {
                if !budget.withdraw() {
                    tracing::warn!(
                        request_id = error.request_id(),
                        "retry budget spent: returning the error"
                    );
                    return Decision::Stop;
                }
            }
        }
        crate::metrics::retry(from);
        Decision::Retry { wait, from }
    }
}

impl<B: Clone, RB> tower::retry::Policy<Request<B>, Response<RB>, Error> for RetryPolicy {
    type Future = Sleep;

    fn retry(
        &mut self,
        req: &mut Request<B>,
        result: &mut Result<Response<RB>, Error>,
    ) -> Option<Sleep> {
        // `req` is the copy of the attempt just made: the attempts so far are its index + 1.
        let attempts = req.extensions().get::<AttemptIndex>().map_or(0, |a| a.0) + 1;
        match result {
            Ok(resp) => {
                let ext = resp.extensions_mut();
                // One attempt goes without saying (and without an allocation).
                if attempts > 1 {
                    ext.insert(Attempts(attempts));
                }
                if ResponseMode::of(req) == ResponseMode::Streaming {
                    ext.insert(StreamResend(self.clone()));
                    if let Some(log) = req.extensions().get::<AttemptLog>() {
                        ext.insert(log.clone());
                    }
                }
                None
            }
            Err(error) => match self.decide(attempts, req.extensions().get::<Deadline>(), error) {
                Decision::Retry { wait, from } => {
                    tracing::warn!(
                        attempt = attempts,
                        wait = ?wait,
                        wait_from = from,
                        reason = %error,
                        request_id = error.request_id(),
                        "retrying"
                    );
                    // The copy is the next attempt: numbered only now, so a copy kept for a
                    // retry that never comes costs nothing more. The retry-count header is set
                    // from the number when it is sent (`set_count_header`).
                    let ext = req.extensions_mut();
                    ext.insert(AttemptIndex(attempts));
                    match ext.get_mut::<AttemptLog>() {
                        Some(log) => log.0.push(error.clone()),
                        None => {
                            ext.insert(AttemptLog(vec![error.clone()]));
                        }
                    }
                    Some(tokio::time::sleep(wait))
                }
                decision => {
                    let earlier = req.extensions().get::<AttemptLog>();
                    error.set_trail(attempts, earlier.map_or(&[], |l| &l.0));
                    if let (Decision::StopForDeadline, Some(deadline)) =
                        (decision, req.extensions().get::<Deadline>())
                    {
                        // Surface the deadline as such, the last error kept as its source
                        // (moved out through a cheap placeholder overwritten at once).
                        let placeholder =
                            Error::LimitReached(crate::error::LimitReachedError::new(0));
                        let last = std::mem::replace(error, placeholder);
                        *error = Error::Timeout(TimeoutError::deadline_before_retry(
                            last,
                            deadline.limit(),
                        ));
                    }
                    None
                }
            },
        }
    }

    fn clone_request(&mut self, req: &Request<B>) -> Option<Request<B>> {
        let index = req.extensions().get::<AttemptIndex>().map_or(0, |a| a.0);
        if index == 0 {
            // The first attempt of a new request: it earns the budget its share.
            if let Some(b) = &self.cfg.budget {
                b.deposit();
            }
        }
        Some(crate::transport::copy_request(req))
    }
}

/// Sets the retry-count header `header` of an attempt about to be sent, from its
/// [`AttemptIndex`] (0 without one).
pub(crate) fn set_count_header<B>(header: &HeaderName, req: &mut Request<B>) {
    let index = req.extensions().get::<AttemptIndex>().map_or(0, |a| a.0);
    // The usual counts without an allocation.
    const SMALL: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];
    let value = match SMALL.get(index as usize) {
        Some(v) => HeaderValue::from_static(v),
        None => HeaderValue::from(index),
    };
    // Already there (a first attempt whose endpoint sends the count 0 by default): kept as is.
    if req.headers().get(header) != Some(&value) {
        req.headers_mut().insert(header.clone(), value);
    }
}
