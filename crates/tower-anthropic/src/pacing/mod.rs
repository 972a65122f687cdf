//! Rate-limit pacing: learn each quota from the API's `anthropic-ratelimit-*` headers and
//! admit an attempt only when the quota can take it, so a workload runs at its rate limit
//! instead of into it.
//!
//! A **quota** is (base URL, API key identity, model class): the key itself is never stored,
//! only a hash of it. Each quota keeps three token buckets the way the API counts them
//! (requests, input tokens, output tokens per minute, refilled continuously):
//!
//! - **Reservations.** Before an attempt goes out it reserves 1 request, its estimated input
//!   tokens (a cheap estimate from the request body, corrected by what answered requests
//!   report in `usage.input_tokens`; pluggable with [`TokenEstimator`]) and `max_tokens`
//!   output tokens, as the API itself estimates output at the start. When the answer ends
//!   (a `Message`, or the end of a stream) the reservation is settled to the real usage; an
//!   attempt the API refused (an error status) is refunded.
//! - **Learning.** Every response carrying the headers (200s and 429s, streaming or not)
//!   teaches the limits and corrects the levels: the server's `remaining` is compared with
//!   what this pacer saw when it admitted that very call, so calls in flight are never counted
//!   twice, nor calls that reached the server in another order than they were admitted (a
//!   difference is drift only beyond what the calls admitted around this one, and the refill
//!   while it was on its way, explain). Before a quota's first answer its first call goes
//!   alone and the others wait for that answer, released as soon as it teaches the limits
//!   (at most [`Pacer::cold_start`], 2 s, then unpaced but counted); limits configured with
//!   [`Pacer::limits`] pace even the first burst. An answer without the headers (a proxy that
//!   strips them) before any with them turns pacing off for that quota for a minute (then
//!   a call is paced again, and its answer decides anew). Counts the API could not mean are
//!   ignored: a limit of 0 or above 10^9 requests or 10^12 tokens a minute, or more left than
//!   the limit; an answer whose limit differs from the one known replaces what was learned
//!   under it, so one sane answer undoes any number of hostile ones.
//! - **A dispatch allowance in hand.** The server takes a call from its bucket when the call
//!   arrives, the pacer when it admits it; while the server's bucket is full (a burst after
//!   idle), the refill between the two is lost on the server's side. So each of the pacer's
//!   buckets holds that time's refill less than its limit. The time follows what the host
//!   and the network take: the average time from admission to an answer's head (each
//!   answer counted up to 1 s), doubled by a 429 for a call the pacer admitted with room (that
//!   addition halving every 30 s without another), never below a quarter of a second (a
//!   1,200 a minute quota bursts 1,195 from idle, then goes at the refill rate) nor above
//!   two. [`QuotaSnapshot::dispatch_allowance`] shows it. The shared pacer (feature `redis`)
//!   holds back the same.
//! - **The 429 gate.** A 429 that names a wait (`retry-after-ms`, `retry-after`) closes the
//!   quota until then. The wait and the refill overlap: the server's wait is its word that
//!   the call fits once it is over, so the call that met the 429 is retried when the server
//!   said (a `retry-after: 1` on a 50-a-minute quota with nothing left: after 1 s, not 1 s
//!   plus a refill), and the calls waiting behind the gate are released one by one in arrival
//!   order at the refill rate (a slow start, never a herd). A 429 that names no usable wait
//!   closes nothing: the retry policy's backoff spaces the retry, as the SDKs do, and when it
//!   says nothing of the buckets either they are taken as empty (the calls behind it go at
//!   the refill rate). [`QuotaSnapshot::gate`] shows a closed gate and the 429 that closed it
//!   (its `request-id`); the log says so once per gate. While a long gate is closed, every
//!   call on that quota whose deadline or [`Pacer::max_wait`] cannot cover the wait fails at
//!   once with [`Error::Paced`](crate::Error::Paced) (its `retry_after()` the rest of the gate), and calls that
//!   can wait, wait.
//! - **Bounded waiting.** Calls wait in FIFO order; dropping a waiting call frees its place.
//!   A call whose predicted start lies past its [`Deadline`] or past [`Pacer::max_wait`]
//!   (default 60 s) fails at once with [`Error::Paced`](crate::Error::Paced), its `retry_after()` set to the
//!   predicted wait: a local refusal a caller can tell from a server 429.
//!
//! Place it **below retry and above the attempt timeout**: every attempt (retries included)
//! is paced, and a wait for the quota never counts against the attempt timeout. [`Client`]
//! has it on by default (it acts only under pressure); [`Pacer::snapshot`] shows each quota,
//! and each paced wait logs a `tracing` event with the wait and the bucket that set it.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use anthropic_mock::{MockConfig, MockServer, RateLimits};
//! use tower_anthropic::pacing::Pacer;
//! use tower_anthropic::{Client, messages::CreateMessageRequest};
//!
//! // A quota of 60 requests a minute: one a second once the first second's burst is used.
//! let mock = MockServer::start(MockConfig {
//!     limits: RateLimits { requests_per_minute: 60, ..Default::default() },
//!     ..Default::default()
//! })
//! .await?;
//! let pacer = Pacer::new().max_wait(Duration::from_secs(120));
//! let client = Client::builder()
//!     .api_key("sk-ant-test")
//!     .base_url(mock.url())
//!     .pacer(pacer.clone())
//!     .build()?;
//! let mut calls = Vec::new();
//! for _ in 0..80 {
//!     let c = client.clone();
//!     let req = CreateMessageRequest::new("claude-sonnet-4-6", 16).user("Hi");
//!     calls.push(tokio::spawn(async move { c.messages().create(req).await }));
//! }
//! for call in calls {
//!     call.await??;
//! }
//! assert_eq!(mock.stats().by_status.get(&429), None, "80 calls over a 60/min quota, no 429");
//! let quota = &pacer.snapshot()[0];
//! assert_eq!(quota.requests.limit, Some(60));
//! # Ok(()) }
//! ```
//!
//! [`Client`]: crate::Client
//! [`Deadline`]: crate::timeout::Deadline

pub(crate) mod allowance;
mod estimate;
mod line;
pub(crate) mod reservation;
mod service;
pub(crate) mod state;

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use tokio::time::Instant;

pub use estimate::{BytesPerToken, TokenEstimator};
use line::Quota;
pub(crate) use reservation::Reservation;
pub use service::{Pacing, PacingLayer, ResponseFuture};
use state::{BUCKETS, Cost, QuotaState, secs};

use crate::extensions::RequestCost;
use crate::timeout::Deadline;

/// Per-minute limits to start a quota with, before its first answer teaches the real ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaLimits {
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Input tokens per minute.
    pub input_tokens_per_minute: u64,
    /// Output tokens per minute.
    pub output_tokens_per_minute: u64,
}

/// How a quota is named in a [`QuotaSnapshot`]: never the key, only a hash of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct QuotaId {
    /// Scheme and authority of the API (`https://api.anthropic.com`).
    pub endpoint: String,
    /// A hash of the API key (SipHash with fixed keys): tells keys apart, cannot be reversed
    /// into one.
    pub key_id: u64,
    /// The model class ([`Pacer::model_class`]; by default the model name).
    pub class: String,
}

/// One bucket of a quota as the pacer sees it now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketSnapshot {
    /// The per-minute limit, once learned or configured.
    pub limit: Option<u64>,
    /// What is left by this pacer's accounting (negative while output is settled later).
    pub remaining: f64,
    /// Reserved by calls in flight.
    pub reserved: f64,
}

/// A quota closed by a 429: nothing on it goes out before `until`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateSnapshot {
    /// When the gate opens: the 429's arrival plus its `retry-after`.
    pub until: Instant,
    /// When the 429 that closed it arrived.
    pub closed_at: Instant,
    /// The wait that 429 named (`retry-after-ms` or `retry-after`).
    pub retry_after: Duration,
    /// The `request-id` of that 429, if it had one.
    pub request_id: Option<String>,
}

/// A quota as the pacer sees it now; see [`Pacer::snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaSnapshot {
    /// Which quota.
    pub id: QuotaId,
    /// `anthropic-ratelimit-requests-*`.
    pub requests: BucketSnapshot,
    /// `anthropic-ratelimit-input-tokens-*`.
    pub input_tokens: BucketSnapshot,
    /// `anthropic-ratelimit-output-tokens-*`.
    pub output_tokens: BucketSnapshot,
    /// Calls waiting in line.
    pub waiting: usize,
    /// The 429 gate while it is closed: until when, and which 429 closed it.
    pub gate: Option<GateSnapshot>,
    /// The dispatch allowance: how late after its admission a call may reach the server
    /// without a 429 (each bucket holds that much refill less than its limit). Learned from
    /// the time answers take and from 429s the pacer did not expect; see the [module
    /// docs](self).
    pub dispatch_allowance: Duration,
    /// When a one-request call could start (now, when nothing holds it back).
    pub next_free: Instant,
}

#[derive(Clone)]
struct Config {
    max_wait: Duration,
    cold_start: Duration,
    limits: Option<[f64; BUCKETS]>,
    /// Configured limits start with empty buckets (refilling at the limit) instead of full
    /// ones: a fallback that takes over mid-run must not add a burst.
    start_empty: bool,
    /// The share of each quota this pacer paces to (the headers' limits and `remaining`
    /// scaled by it): 1 alone, 1/N for one of N processes pacing on their own.
    share: f64,
    class: Arc<dyn Fn(&str) -> String + Send + Sync>,
    estimator: Arc<dyn TokenEstimator>,
}

struct Shared {
    config: Config,
    quotas: Mutex<Quotas>,
    /// Learned ratio of real input tokens to the estimator's figure.
    /// (An `f64`'s bits: read on every call without a lock.)
    input_factor: AtomicU64,
    /// Seeds the routes' fingerprints (per pacer, random).
    routes_seed: foldhash::fast::RandomState,
    /// A Messages request without a [`RequestCost`] was let through (warned once).
    uncosted: std::sync::atomic::AtomicBool,
}

/// One quota and its name. A call holds on to its cell from admission to settlement, so it
/// never looks its quota up again.
struct QuotaCell {
    id: QuotaId,
    quota: Mutex<Quota>,
}

impl QuotaCell {
    fn lock(&self) -> std::sync::MutexGuard<'_, Quota> {
        lock(&self.quota)
    }
}

/// Every quota by name, and a cache of the routes to them.
#[derive(Default)]
struct Quotas {
    by_id: HashMap<QuotaId, Arc<QuotaCell>>,
    /// A fingerprint of (scheme, authority, key, model) -> that model's quota: how a call
    /// finds its quota without building a [`QuotaId`] (text, the model class, hashing two
    /// strings). A cache: cleared whenever quotas are evicted, or when it grows large.
    routes: HashMap<u64, Route, BuildFingerprint>,
    /// When idle quotas may next be looked for.
    next_eviction: Option<Instant>,
}

/// The longest a call may wait for its quota from `now`: the pacer's `max_wait`, or less
/// when the call's deadline comes sooner.
pub(crate) fn longest_wait<B>(req: &Request<B>, max_wait: Duration, now: Instant) -> Duration {
    req.extensions().get::<Deadline>().map_or(max_wait, |d| {
        d.instant().saturating_duration_since(now).min(max_wait)
    })
}

/// The credential a request is sent with: `x-api-key`, else `authorization`.
pub(crate) fn request_key<B>(req: &Request<B>) -> Option<&[u8]> {
    const X_API_KEY: http::HeaderName = http::HeaderName::from_static("x-api-key");
    let h = req.headers();
    h.get(X_API_KEY)
        .or_else(|| h.get(http::header::AUTHORIZATION))
        .map(|k| k.as_bytes())
}

struct Route {
    model: Arc<str>,
    cell: Arc<QuotaCell>,
}

/// The routes' keys are already hashes.
#[derive(Default, Clone, Copy)]
struct BuildFingerprint;

impl BuildHasher for BuildFingerprint {
    type Hasher = FingerprintHasher;
    fn build_hasher(&self) -> FingerprintHasher {
        FingerprintHasher(0)
    }
}

struct FingerprintHasher(u64);

impl Hasher for FingerprintHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (the key is a `u64`); any other input is folded in.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Most routes cached before the cache is cleared (a caller cycling through many keys or
/// models must not grow it without bound).
const MAX_ROUTES: usize = 1024;

/// The shared pacing state of every quota; cloning shares it. See the [module docs](self).
///
/// | setting | default |
/// |---|---|
/// | `max_wait` | 60 s (the retry layer's cap on server-directed waits) |
/// | `limits` | none: learned from the first answer |
/// | `cold_start` | 2 s: how long at most calls wait for a new quota's first answer |
/// | `model_class` | the model name |
/// | `estimator` | [`BytesPerToken`]`(4)`, corrected by the usage answers report |
#[derive(Clone)]
pub struct Pacer {
    shared: Arc<Shared>,
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacer")
            .field("max_wait", &self.shared.config.max_wait)
            .field("quotas", &lock(&self.shared.quotas).by_id.len())
            .finish_non_exhaustive()
    }
}

impl Default for Pacer {
    fn default() -> Self {
        Self::new()
    }
}

/// Quotas with nothing in flight are forgotten after this long unused.
const IDLE_QUOTA: Duration = Duration::from_secs(600);
/// How often at most idle quotas are looked for.
const EVICT_EVERY: Duration = Duration::from_secs(60);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Pacer {
    /// A pacer with the defaults.
    pub fn new() -> Self {
        Self::with_config(Config {
            max_wait: Duration::from_secs(60),
            cold_start: Duration::from_secs(2),
            limits: None,
            start_empty: false,
            share: 1.0,
            class: Arc::new(str::to_owned),
            estimator: Arc::new(BytesPerToken(4)),
        })
    }

    fn with_config(config: Config) -> Self {
        Self {
            shared: Arc::new(Shared {
                config,
                quotas: Mutex::new(Quotas::default()),
                input_factor: AtomicU64::new(1.0f64.to_bits()),
                routes_seed: foldhash::fast::RandomState::default(),
                uncosted: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    fn configure(self, f: impl FnOnce(&mut Config)) -> Self {
        let mut config = self.shared.config.clone();
        f(&mut config);
        Self::with_config(config)
    }

    /// A call predicted to wait longer than this fails at once with [`Error::Paced`](crate::Error::Paced).
    /// (Configure before sharing: setting it makes a fresh pacer.)
    pub fn max_wait(self, max_wait: Duration) -> Self {
        self.configure(|c| c.max_wait = max_wait)
    }

    /// How long at most, before a quota's first answer, the calls behind its first call wait
    /// for that answer (which teaches the limits; they are released as soon as it comes)
    /// before going out unpaced. Default 2 s; zero sends everything at once. The shared pacer
    /// uses the setting of its local pacer
    /// (`shared::SharedPacer::local`, feature `redis`).
    pub fn cold_start(self, wait: Duration) -> Self {
        self.configure(|c| c.cold_start = wait)
    }

    /// Limits every quota starts with, before its first answer teaches the real ones (so even
    /// the first burst is paced). Zero means "no such limit".
    pub fn limits(self, limits: QuotaLimits) -> Self {
        let f = |n: u64| if n == 0 { f64::INFINITY } else { n as f64 };
        self.configure(|c| {
            c.limits = Some([
                f(limits.requests_per_minute),
                f(limits.input_tokens_per_minute),
                f(limits.output_tokens_per_minute),
            ])
        })
    }

    /// Maps a model name to its quota class (models sharing a rate-limit pool map to one
    /// class). Default: the model name itself. The mapping must be a pure function of the
    /// name: it is asked once per model (and endpoint and key), and its answer is kept.
    pub fn model_class(self, class: impl Fn(&str) -> String + Send + Sync + 'static) -> Self {
        self.configure(|c| c.class = Arc::new(class))
    }

    /// How input tokens are estimated from a request body (before the learned correction).
    pub fn estimator(self, estimator: impl TokenEstimator + 'static) -> Self {
        self.configure(|c| c.estimator = Arc::new(estimator))
    }

    /// Every quota as the pacer sees it now.
    pub fn snapshot(&self) -> Vec<QuotaSnapshot> {
        let now = Instant::now();
        let quotas = lock(&self.shared.quotas);
        let mut out: Vec<QuotaSnapshot> = quotas
            .by_id
            .iter()
            .map(|(id, cell)| {
                let mut q = cell.lock();
                let (wait, _) = q.predicted_wait(&[1.0, 0.0, 0.0], now);
                let b = |i: usize| BucketSnapshot {
                    limit: q.state.buckets[i]
                        .limit
                        .filter(|l| l.is_finite())
                        .map(|l| l as u64),
                    remaining: q.state.buckets[i].level,
                    reserved: q.state.buckets[i].reserved,
                };
                QuotaSnapshot {
                    id: id.clone(),
                    requests: b(0),
                    input_tokens: b(1),
                    output_tokens: b(2),
                    waiting: q.queue.len(),
                    gate: q.state.gate.clone().filter(|g| g.until > now),
                    dispatch_allowance: secs(q.state.allowance.secs()),
                    next_free: now + wait,
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.class.cmp(&b.id.class));
        out
    }

    /// The quota of a request for `model`: scheme and authority of its URI, a hash of its
    /// key (`x-api-key`, else `authorization`), and the model's class.
    pub(crate) fn quota_id<B>(&self, req: &Request<B>, model: &str) -> QuotaId {
        let uri = req.uri();
        let endpoint = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str())
        );
        let mut h = std::hash::DefaultHasher::new();
        request_key(req).hash(&mut h);
        QuotaId {
            endpoint,
            key_id: h.finish(),
            class: (self.shared.config.class)(model),
        }
    }

    /// The cell of a request's quota, made if new. The usual call finds it by one hash of
    /// its route; only a new route builds the [`QuotaId`].
    fn quota_cell<B>(&self, req: &Request<B>, model: &Arc<str>, now: Instant) -> Arc<QuotaCell> {
        let uri = req.uri();
        let (scheme, authority) = (
            uri.scheme_str().unwrap_or("http"),
            uri.authority().map_or("", |a| a.as_str()),
        );
        let fingerprint =
            self.shared
                .routes_seed
                .hash_one((scheme, authority, request_key(req), &**model));
        let mut quotas = lock(&self.shared.quotas);
        self.evict(&mut quotas, now);
        if let Some(route) = quotas.routes.get(&fingerprint) {
            let endpoint = &route.cell.id.endpoint;
            // The fingerprint stands for the key (as `key_id`, a hash, does); the rest is
            // compared, so a collision of different models or hosts cannot share a quota.
            if *route.model == **model
                && endpoint.len() == scheme.len() + 3 + authority.len()
                && endpoint.starts_with(scheme)
                && endpoint[scheme.len()..].starts_with("://")
                && endpoint.ends_with(authority)
            {
                return route.cell.clone();
            }
        }
        let id = self.quota_id(req, model);
        let cell = match quotas.by_id.get(&id) {
            Some(cell) => cell.clone(),
            None => {
                let c = &self.shared.config;
                let mut state = QuotaState::new(c.limits, c.cold_start, now);
                if c.start_empty {
                    state.drain();
                }
                let cell = Arc::new(QuotaCell {
                    id: id.clone(),
                    quota: Mutex::new(Quota::new(state, now)),
                });
                quotas.by_id.insert(id, cell.clone());
                cell
            }
        };
        if quotas.routes.len() >= MAX_ROUTES {
            quotas.routes.clear();
        }
        quotas.routes.insert(
            fingerprint,
            Route {
                model: model.clone(),
                cell: cell.clone(),
            },
        );
        cell
    }

    pub(crate) fn cost(&self, c: &RequestCost) -> (Cost, f64) {
        let raw = self.shared.config.estimator.estimate(&c.body) as f64;
        let factor = f64::from_bits(self.shared.input_factor.load(Ordering::Relaxed));
        (
            [
                1.0,
                (raw * factor).max(1.0).round(),
                f64::from(c.max_tokens),
            ],
            raw,
        )
    }

    /// Learns the estimator's error from an answered request: an underestimate raises the
    /// correction at once (it risks 429s), an overestimate lowers it slowly, never below 1
    /// (it only costs some throughput, and the fixed overhead of small requests would
    /// otherwise drag large ones into underestimates).
    pub(crate) fn learn_input(&self, raw: f64, actual: f64) {
        if raw >= 1.0 && actual >= 1.0 {
            let ratio = (actual / raw).min(20.0);
            // Written only when it changes (at the floor of 1 it usually does not).
            let _ = self.shared.input_factor.fetch_update(
                Ordering::Relaxed,
                Ordering::Relaxed,
                |bits| {
                    let f = f64::from_bits(bits);
                    let next = if ratio > f {
                        ratio
                    } else {
                        (f * 0.98 + ratio * 0.02).max(1.0)
                    };
                    (next != f).then_some(next.to_bits())
                },
            );
        }
    }

    /// Forgets quotas nothing holds on to (no call, no route: the routes are dropped first).
    /// Looks when there are more than 64 quotas, at most once a minute.
    fn evict(&self, quotas: &mut Quotas, now: Instant) {
        if quotas.by_id.len() > 64 && quotas.next_eviction.is_none_or(|at| now >= at) {
            quotas.next_eviction = Some(now + EVICT_EVERY);
            quotas.routes.clear();
            quotas.by_id.retain(|_, cell| {
                Arc::strong_count(cell) > 1 || !cell.lock().is_idle(now, IDLE_QUOTA)
            });
        }
    }
}

/// A request without a [`RequestCost`] passes a pacer unpaced: fine for the other endpoints
/// (batches, token counts), a stack that cannot be paced for Messages (built without
/// [`MessagesService`](crate::messages::MessagesService)): said once per pacer.
pub(crate) fn uncosted<B>(req: &Request<B>, warned: &std::sync::atomic::AtomicBool) {
    use std::sync::atomic::Ordering::Relaxed;
    if req.uri().path().ends_with("/v1/messages")
        && !warned.load(Relaxed)
        && !warned.swap(true, Relaxed)
    {
        tracing::warn!(
            "a Messages request without a RequestCost extension passes the pacer unpaced: build \
             requests with MessagesService, or insert tower_anthropic::extensions::RequestCost"
        );
    }
}

impl Pacer {
    /// See [`uncosted`].
    pub(crate) fn warn_uncosted<B>(&self, req: &Request<B>) {
        uncosted(req, &self.shared.uncosted);
    }
}

/// What the shared pacer (feature `redis`) takes from its local pacer.
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
impl Pacer {
    /// The longest a call waits for its quota (see [`max_wait`](Self::max_wait)).
    pub(crate) fn max_wait_setting(&self) -> Duration {
        self.shared.config.max_wait
    }

    /// How long calls wait for a new quota's first answer (see
    /// [`cold_start`](Self::cold_start)).
    pub(crate) fn cold_start_setting(&self) -> Duration {
        self.shared.config.cold_start
    }

    /// A pacer with these settings and none of the state, pacing to `share` of each quota;
    /// with `known` limits, every quota starts from that share of them with empty buckets
    /// (refilling at the share: whatever the shared level was, taking over adds no burst).
    pub(crate) fn fallback(&self, share: f64, known: Option<[f64; BUCKETS]>) -> Pacer {
        let mut pacer =
            Self::with_config(self.shared.config.clone()).configure(|c| c.share = share);
        if let Some(l) = known {
            let part = |n: f64| (n * share).floor().max(1.0) as u64;
            pacer = pacer
                .limits(QuotaLimits {
                    requests_per_minute: part(l[state::REQUESTS]),
                    input_tokens_per_minute: part(l[state::INPUT]),
                    output_tokens_per_minute: part(l[state::OUTPUT]),
                })
                .configure(|c| c.start_empty = true);
        }
        pacer
    }
}

/// What a 429 tells a quota, the same for the local and the shared pacer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateLimited {
    /// The server-directed wait (`retry-after-ms`, `retry-after`), when it named a usable
    /// one: the quota is closed that long. Without one nothing is closed: the retry layer's
    /// own backoff spaces the retry, and the buckets (emptied below when the 429 says
    /// nothing of them) the calls behind it.
    pub(crate) wait: Option<Duration>,
    /// The 429 did not say which bucket ran out (no rate-limit headers), or it is an
    /// acceleration limit: the buckets are taken as empty, so calls go at the refill rate.
    pub(crate) drain: bool,
}

impl RateLimited {
    /// What `api` tells the quota, if it is a 429 for a rate limit (a spend limit is not one:
    /// no wait fixes it, and it says nothing of the buckets).
    pub(crate) fn of(api: &crate::error::ApiError) -> Option<Self> {
        (api.kind() == crate::ApiErrorKind::RateLimit && !api.is_spend_limit()).then(|| Self {
            wait: api.retry_after(),
            drain: api.rate_limits().is_empty() || api.error_code() == Some("ramp_limit_exceeded"),
        })
    }
}
