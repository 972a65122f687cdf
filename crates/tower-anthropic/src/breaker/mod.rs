//! Circuit breaking per target: stop sending to a model that is failing, fail fast with a
//! typed error, probe it now and then, and send again once it answers.
//!
//! A **circuit** is kept per target: the request's model (read from what
//! [`MessagesService`](crate::messages::MessagesService) attaches), or any key the caller
//! chooses by putting a [`CircuitKey`] in the request's extensions. All clones of a
//! [`CircuitBreakers`] (and every layer made from it) share the circuits.
//!
//! - **What counts.** Only outcomes that say the *service* is unhealthy count as failures
//!   ([`Error::is_unhealthy`]): 529 and every 5xx, connection errors, attempt timeouts. A 4xx
//!   (400, 401, 404...) and a 429 are answers from a healthy service (rate limits are the
//!   pacer's business) and count as successes; a call dropped before its outcome counts as
//!   nothing. A stream counts when it ends: `message_stop` is a success; an overloaded or
//!   server error event, a cut or stalled stream is a failure (read by
//!   [`MessageStream`](crate::stream::MessageStream); a streamed body read by hand counts as a
//!   success once its head arrived).
//! - **Closed.** Outcomes go into a rolling window: the last `window_calls` outcomes, none
//!   older than `window`. Once it holds at least `minimum_calls` outcomes and the share of
//!   failures reaches `failure_rate_threshold`, the circuit opens.
//! - **Open.** Calls fail at once with [`Error::CircuitOpen`], whose `retry_after()` is the time
//!   until the circuit half-opens. The first open interval is `open_for`; each reopening
//!   without a close in between doubles it, up to `max_open_for`.
//! - **Half-open.** At most `half_open_probes` calls go through at once; the others fail fast.
//!   When that many probes have succeeded the circuit closes (with a fresh window and the
//!   first interval again); one failed probe reopens it for a longer interval. A probe dropped
//!   before its outcome (a caller's timeout, a cancelled task) frees its slot.
//!
//! Every change of state logs a `tracing` event (`warn` on opening, `info` otherwise), and
//! [`CircuitBreakers::snapshot`] reads every circuit.
//!
//! **Placement: below retry, above pacing.** The breaker sees each attempt, not each whole
//! retried call. Under the SDKs' backoff a whole call that fails takes at least a second and
//! a half (0.5 s then 1 s of waiting), so a breaker above retry could not open sooner than
//! that however fast the failures come; here it opens as soon as `minimum_calls` failed
//! attempts are in the window. Each attempt is genuine evidence (every 529 is the server
//! saying it is overloaded), and an attempt refused by an open circuit ends the retries at
//! once ([`Error::CircuitOpen`] is not retryable) instead of spending their backoff on a
//! target known to be down, so a [`FallbackLayer`](crate::fallback::FallbackLayer) above moves
//! on to the next model without delay. Above pacing, a refused call never waits for quota.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use anthropic_mock::{MockConfig, MockServer, OutageKind};
//! use tower_anthropic::breaker::{CircuitBreakerConfig, CircuitBreakers, CircuitState};
//! use tower_anthropic::{Client, Error, messages::CreateMessageRequest};
//!
//! let mock = MockServer::start(MockConfig::default()).await?;
//! mock.outage_for(Duration::from_secs(60), OutageKind::Overloaded);
//! let breakers = CircuitBreakers::new(CircuitBreakerConfig::default().minimum_calls(5));
//! let client = Client::builder()
//!     .api_key("sk-ant-test")
//!     .base_url(mock.url())
//!     .max_retries(0)
//!     .circuit_breakers(breakers.clone())
//!     .build()?;
//! let req = CreateMessageRequest::new("claude-sonnet-4-6", 16).user("Hi");
//! for _ in 0..5 {
//!     assert!(client.messages().create(req.clone()).await.is_err()); // five 529s
//! }
//! // Open: the sixth call is refused without reaching the server.
//! match client.messages().create(req).await {
//!     Err(Error::CircuitOpen(e)) => assert!(e.retry_after() > Duration::ZERO),
//!     other => panic!("{other:?}"),
//! }
//! assert_eq!(mock.stats().requests, 5);
//! assert_eq!(breakers.state("claude-sonnet-4-6"), Some(CircuitState::Open));
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service};

use crate::body::ResponseMode;
use crate::error::{BoxError, CircuitOpenError, Error};
use crate::extensions::RequestCost;

/// Most outcomes a window keeps.
const MAX_WINDOW_CALLS: u32 = 1000;

/// Most circuits kept: past this, circuits that are closed and idle are dropped to make room,
/// and a call whose key finds no room goes unguarded (a flood of distinct keys cannot grow
/// memory without bound).
pub const MAX_CIRCUITS: usize = 1000;

pub use crate::extensions::CircuitKey;

/// The key used when a request names no model and carries no [`CircuitKey`].
const DEFAULT_KEY: &str = "default";

/// The settings of every circuit of a [`CircuitBreakers`].
///
/// | setting | default |
/// |---|---|
/// | `failure_rate_threshold` | 0.5 |
/// | `minimum_calls` | 10 in the window |
/// | `window_calls` | the last 20 outcomes... |
/// | `window` | ...none older than 10 s |
/// | `open_for` | 1 s, doubling on each reopening |
/// | `max_open_for` | 2 s: a recovered model gets traffic back within 2 s of the outage's end, however long it lasted (a probe is one call; between probes calls still fail fast) |
/// | `half_open_probes` | 3 |
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CircuitBreakerConfig {
    failure_rate_threshold: f64,
    minimum_calls: u32,
    window_calls: u32,
    window: Duration,
    open_for: Duration,
    max_open_for: Duration,
    half_open_probes: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            failure_rate_threshold: 0.5,
            minimum_calls: 10,
            window_calls: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(1),
            max_open_for: Duration::from_secs(2),
            half_open_probes: 3,
        }
    }
}

impl CircuitBreakerConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// The share of failures (0 to 1) at which a closed circuit opens; clamped to
    /// `0.01..=1.0` (a NaN keeps the default).
    pub fn failure_rate_threshold(mut self, rate: f64) -> Self {
        if !rate.is_nan() {
            self.failure_rate_threshold = rate.clamp(0.01, 1.0);
        }
        self
    }
    /// How many outcomes the window must hold before the rate is judged (at least 1, at most
    /// `window_calls`).
    pub fn minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n.clamp(1, MAX_WINDOW_CALLS);
        self.window_calls = self.window_calls.max(self.minimum_calls);
        self
    }
    /// How many of the latest outcomes a closed circuit judges (at least `minimum_calls`, at
    /// most 1,000). Counting calls rather than seconds keeps a busy target's window short:
    /// at 50 calls a second, 20 outcomes are the last 0.4 s, so an outage opens the circuit
    /// within a fraction of a second instead of waiting for the failures to outweigh ten
    /// seconds of earlier successes.
    pub fn window_calls(mut self, n: u32) -> Self {
        self.window_calls = n.clamp(self.minimum_calls, MAX_WINDOW_CALLS);
        self
    }
    /// The oldest an outcome may be and still count (at least 10 ms, at most a day): a quiet
    /// target's old outcomes do not linger.
    pub fn window(mut self, d: Duration) -> Self {
        self.window = d.clamp(Duration::from_millis(10), Duration::from_secs(86_400));
        self
    }
    /// The first open interval (at least 1 ms, at most a day); each reopening doubles it.
    pub fn open_for(mut self, d: Duration) -> Self {
        self.open_for = d.clamp(Duration::from_millis(1), Duration::from_secs(86_400));
        self.max_open_for = self.max_open_for.max(self.open_for);
        self
    }
    /// The longest open interval (never below `open_for`, at most a day).
    pub fn max_open_for(mut self, d: Duration) -> Self {
        self.max_open_for = d.clamp(self.open_for, Duration::from_secs(86_400));
        self
    }
    /// How many probes a half-open circuit lets through at once, and how many must succeed
    /// to close it (at least 1).
    pub fn half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n.max(1);
        self
    }
}

/// The state of one circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    /// Calls go through; outcomes are counted.
    Closed,
    /// Calls fail fast.
    Open,
    /// A bounded number of probes go through.
    HalfOpen,
}

/// One circuit, as [`CircuitBreakers::snapshot`] reads it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CircuitSnapshot {
    /// The circuit's key (the model, or a [`CircuitKey`]).
    pub key: Arc<str>,
    /// Its state now (an open circuit whose interval is over reads `HalfOpen`).
    pub state: CircuitState,
    /// Outcomes in the window (closed circuits; pruned when read).
    pub calls: u32,
    /// Failures among them.
    pub failures: u32,
    /// For an open circuit, the time until it half-opens.
    pub retry_after: Option<Duration>,
    /// The interval the circuit is (or was last) open for.
    pub open_interval: Duration,
    /// How many times it has opened since it was created.
    pub times_opened: u64,
    /// Probes in flight (half-open).
    pub probes_in_flight: u32,
}

/// Per-target circuits, shared by every clone and every layer made from it.
#[derive(Clone, Default)]
pub struct CircuitBreakers {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    config: CircuitBreakerConfig,
    circuits: Mutex<HashMap<Arc<str>, Circuit>>,
    /// Circuits opened here and not yet taken by [`CircuitBreakers::take_opened`]: (key,
    /// open for), at most [`MAX_CIRCUITS`].
    opened: Mutex<Vec<(Arc<str>, Duration)>>,
}

impl fmt::Debug for CircuitBreakers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakers")
            .field("config", &self.inner.config)
            .field("circuits", &self.lock().len())
            .finish()
    }
}

impl CircuitBreakers {
    /// Circuits with these settings.
    pub fn new(config: CircuitBreakerConfig) -> Self {
        Self {
            inner: Arc::new(Shared {
                config,
                circuits: Mutex::default(),
                opened: Mutex::default(),
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CircuitBreakerConfig {
        &self.inner.config
    }

    /// A layer guarding calls with these circuits.
    pub fn layer(&self) -> CircuitBreakerLayer {
        CircuitBreakerLayer::new(self.clone())
    }

    /// The state of the circuit for `key`, if it exists (an open circuit whose interval is
    /// over reads `HalfOpen`).
    pub fn state(&self, key: &str) -> Option<CircuitState> {
        let now = Instant::now();
        self.lock().get(key).map(|c| c.visible_state(now))
    }

    /// Every circuit, sorted by key.
    pub fn snapshot(&self) -> Vec<CircuitSnapshot> {
        let now = Instant::now();
        let cfg = &self.inner.config;
        let mut all: Vec<CircuitSnapshot> = self
            .lock()
            .iter_mut()
            .map(|(key, c)| {
                c.window.prune(now, cfg.window);
                let (calls, failures) = c.window.totals();
                CircuitSnapshot {
                    key: key.clone(),
                    state: c.visible_state(now),
                    calls,
                    failures,
                    retry_after: match c.state {
                        Phase::Open { until } if until > now => Some(until - now),
                        _ => None,
                    },
                    open_interval: c.interval,
                    times_opened: c.times_opened,
                    probes_in_flight: match c.state {
                        Phase::HalfOpen { in_flight, .. } => in_flight,
                        _ => 0,
                    },
                }
            })
            .collect();
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Circuit>> {
        // A panic while holding the lock cannot leave a circuit half-updated in a way that
        // matters more than losing it: keep going with the data.
        self.inner
            .circuits
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to send a call keyed `key`: a permit, or the refusal.
    fn acquire(&self, key: &Arc<str>) -> Result<Option<Permit>, Error> {
        let cfg = self.inner.config;
        let now = Instant::now();
        let mut circuits = self.lock();
        if !circuits.contains_key(key) {
            if circuits.len() >= MAX_CIRCUITS {
                circuits.retain(|_, c| !c.is_idle(now, cfg.window));
            }
            if circuits.len() >= MAX_CIRCUITS {
                return Ok(None);
            }
            circuits.insert(key.clone(), Circuit::new(cfg.open_for, now));
        }
        let Some(c) = circuits.get_mut(key) else {
            return Ok(None);
        };
        c.last_used = now;
        if let Phase::Open { until } = c.state {
            if now < until {
                let e = CircuitOpenError::new(key.clone(), until - now, false);
                return Err(Error::CircuitOpen(e));
            }
            c.state = Phase::HalfOpen {
                in_flight: 0,
                succeeded: 0,
            };
            c.generation += 1;
            tracing::info!(circuit = %key, probes = cfg.half_open_probes,
                "circuit half-open: letting probes through");
        }
        let probe = match &mut c.state {
            Phase::Closed => false,
            Phase::HalfOpen {
                in_flight,
                succeeded,
            } => {
                if *in_flight + *succeeded >= cfg.half_open_probes {
                    let e = CircuitOpenError::new(key.clone(), Duration::ZERO, true);
                    return Err(Error::CircuitOpen(e));
                }
                *in_flight += 1;
                true
            }
            // Half-opened above when its interval was over; never open here.
            Phase::Open { until } => {
                let e =
                    CircuitOpenError::new(key.clone(), until.saturating_duration_since(now), false);
                return Err(Error::CircuitOpen(e));
            }
        };
        Ok(Some(Permit {
            breakers: self.clone(),
            key: key.clone(),
            generation: c.generation,
            probe,
            done: false,
            on_drop: Outcome::Cancelled,
        }))
    }

    fn record(&self, permit: &Permit, outcome: Outcome) {
        let cfg = self.inner.config;
        let now = Instant::now();
        let mut circuits = self.lock();
        let Some(c) = circuits.get_mut(&permit.key) else {
            return;
        };
        // An outcome of a call let through under an earlier state says nothing about this one.
        if c.generation != permit.generation {
            return;
        }
        let key = &permit.key;
        match (&mut c.state, permit.probe) {
            (Phase::Closed, false) => {
                if outcome == Outcome::Cancelled {
                    return;
                }
                c.window.prune(now, cfg.window);
                c.window
                    .add(now, cfg.window_calls, outcome == Outcome::Failure);
                let (calls, failures) = c.window.totals();
                let rate = f64::from(failures) / f64::from(calls.max(1));
                if calls >= cfg.minimum_calls && rate >= cfg.failure_rate_threshold {
                    c.open(now);
                    tracing::warn!(circuit = %key, calls, failures, rate,
                        open_for = ?c.interval, "circuit opened: failing fast");
                    self.tell(key, c.interval);
                }
            }
            (
                Phase::HalfOpen {
                    in_flight,
                    succeeded,
                },
                true,
            ) => {
                *in_flight = in_flight.saturating_sub(1);
                match outcome {
                    Outcome::Cancelled => {}
                    Outcome::Success => {
                        *succeeded += 1;
                        if *succeeded >= cfg.half_open_probes {
                            c.close(cfg.open_for);
                            tracing::info!(circuit = %key, "circuit closed: probes succeeded");
                        }
                    }
                    Outcome::Failure => {
                        c.interval = (c.interval * 2).min(cfg.max_open_for);
                        c.open(now);
                        tracing::warn!(circuit = %key, open_for = ?c.interval,
                            "circuit reopened: a probe failed");
                        self.tell(key, c.interval);
                    }
                }
            }
            _ => {}
        }
    }
}

/// Sharing circuits between processes: what a store exchanges (the `redis` feature's
/// `shared::SharedPacer::share_breakers` does, every 250 ms). The breakers keep their state in
/// memory; a store takes the circuits opened here with [`take_opened`](Self::take_opened),
/// and tells each process of the circuits opened elsewhere with
/// [`opened_elsewhere`](Self::opened_elsewhere).
impl CircuitBreakers {
    /// Notes a circuit this process opened, for [`take_opened`](Self::take_opened).
    fn tell(&self, key: &Arc<str>, open_for: Duration) {
        let mut opened = self.inner.opened.lock().unwrap_or_else(|e| e.into_inner());
        if opened.len() < MAX_CIRCUITS {
            opened.push((key.clone(), open_for));
        }
    }

    /// The circuits this process opened since the last call, each with how long it stays
    /// open (at most [`MAX_CIRCUITS`] are kept between calls).
    pub fn take_opened(&self) -> Vec<(Arc<str>, Duration)> {
        std::mem::take(&mut *self.inner.opened.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The keys of the circuits this process knows.
    pub fn keys(&self) -> Vec<Arc<str>> {
        self.lock().keys().cloned().collect()
    }

    /// Another process opened `key` for `left` more: a closed circuit here opens until then
    /// (an open or probing one keeps its own course; an unknown key is ignored).
    pub fn opened_elsewhere(&self, key: &str, left: Duration) {
        let now = Instant::now();
        let mut circuits = self.lock();
        if let Some(c) = circuits.get_mut(key) {
            if matches!(c.state, Phase::Closed) {
                c.state = Phase::Open { until: now + left };
                c.generation += 1;
                c.times_opened += 1;
                c.window.clear();
                tracing::warn!(circuit = %key, open_for = ?left,
                    "circuit opened by another process: failing fast");
            }
        }
    }
}

/// How a call ended, for its circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    Failure,
    Cancelled,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed,
    Open { until: Instant },
    HalfOpen { in_flight: u32, succeeded: u32 },
}

#[derive(Debug)]
struct Circuit {
    state: Phase,
    window: Window,
    /// The current (or next) open interval.
    interval: Duration,
    /// Bumped on every change of state: outcomes of calls let through before it are ignored.
    generation: u64,
    times_opened: u64,
    last_used: Instant,
}

impl Circuit {
    fn new(open_for: Duration, now: Instant) -> Self {
        Self {
            state: Phase::Closed,
            window: Window::default(),
            interval: open_for,
            generation: 0,
            times_opened: 0,
            last_used: now,
        }
    }

    fn open(&mut self, now: Instant) {
        self.state = Phase::Open {
            until: now + self.interval,
        };
        self.generation += 1;
        self.times_opened += 1;
        self.window.clear();
    }

    fn close(&mut self, open_for: Duration) {
        self.state = Phase::Closed;
        self.generation += 1;
        self.interval = open_for;
        self.window.clear();
    }

    fn visible_state(&self, now: Instant) -> CircuitState {
        match self.state {
            Phase::Closed => CircuitState::Closed,
            Phase::Open { until } if now < until => CircuitState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => CircuitState::HalfOpen,
        }
    }

    fn is_idle(&mut self, now: Instant, window: Duration) -> bool {
        self.window.prune(now, window);
        matches!(self.state, Phase::Closed)
            && self.window.totals() == (0, 0)
            && now.duration_since(self.last_used) > window
    }
}

/// The most recent outcomes, oldest first: at most `window_calls`, none older than `window`.
#[derive(Debug, Default)]
struct Window {
    outcomes: VecDeque<(Instant, bool)>,
    failures: u32,
}

impl Window {
    fn prune(&mut self, now: Instant, window: Duration) {
        while let Some(&(at, failed)) = self.outcomes.front() {
            if now.duration_since(at) < window {
                break;
            }
            self.pop(failed);
        }
    }

    fn pop(&mut self, failed: bool) {
        self.outcomes.pop_front();
        self.failures -= u32::from(failed);
    }

    fn add(&mut self, now: Instant, max_calls: u32, failure: bool) {
        while self.outcomes.len() >= max_calls as usize {
            let failed = self.outcomes.front().is_some_and(|o| o.1);
            self.pop(failed);
        }
        self.outcomes.push_back((now, failure));
        self.failures += u32::from(failure);
    }

    fn totals(&self) -> (u32, u32) {
        (self.outcomes.len() as u32, self.failures)
    }

    fn clear(&mut self) {
        self.outcomes.clear();
        self.failures = 0;
    }
}

/// Leave to send one call; records its outcome once, or `on_drop` when dropped first
/// ("cancelled" until a stream's head arrived, then "success").
struct Permit {
    breakers: CircuitBreakers,
    key: Arc<str>,
    generation: u64,
    probe: bool,
    done: bool,
    on_drop: Outcome,
}

impl Permit {
    fn finish(mut self, outcome: Outcome) {
        self.done = true;
        self.breakers.record(&self, outcome);
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done {
            self.breakers.record(self, self.on_drop);
        }
    }
}

/// A streamed call's outcome, still to be told: the circuit's permit travels in the response's
/// extensions and [`MessageStream`](crate::stream::MessageStream) reports how the stream
/// ended (an overloaded error event or a cut stream is a failure; `message_stop` a success).
/// Dropped untold (a stream read by hand, or abandoned), the call counts as a success: its
/// head arrived. A half-open probe that is a stream holds its slot until then.
#[derive(Clone)]
pub(crate) struct StreamVerdict(Arc<Mutex<Option<Permit>>>);

impl StreamVerdict {
    /// Records how the stream ended (once; later reports are ignored).
    pub(crate) fn report(&self, error: Option<&Error>) {
        let permit = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(p) = permit {
            let outcome = match error {
                Some(e) if e.is_unhealthy() => Outcome::Failure,
                _ => Outcome::Success,
            };
            p.finish(outcome);
        }
    }
}

impl fmt::Debug for StreamVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StreamVerdict")
    }
}

/// Guards calls with per-target circuits (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct CircuitBreakerLayer {
    breakers: CircuitBreakers,
}

impl CircuitBreakerLayer {
    /// A layer over these circuits (clones share them).
    pub fn new(breakers: CircuitBreakers) -> Self {
        Self { breakers }
    }
    /// The circuits.
    pub fn breakers(&self) -> &CircuitBreakers {
        &self.breakers
    }
}

impl<S> Layer<S> for CircuitBreakerLayer {
    type Service = CircuitBreaker<S>;
    fn layer(&self, inner: S) -> CircuitBreaker<S> {
        CircuitBreaker {
            inner,
            breakers: self.breakers.clone(),
        }
    }
}

/// The service of [`CircuitBreakerLayer`].
#[derive(Debug, Clone)]
pub struct CircuitBreaker<S> {
    inner: S,
    breakers: CircuitBreakers,
}

impl<S> CircuitBreaker<S> {
    crate::macros::define_inner_service_accessors!();

    /// The circuits.
    pub fn breakers(&self) -> &CircuitBreakers {
        &self.breakers
    }
}

/// The key a request is guarded by: its [`CircuitKey`], else its model, else `"default"`.
fn key_of<B>(req: &Request<B>) -> Arc<str> {
    if let Some(CircuitKey(k)) = req.extensions().get::<CircuitKey>() {
        return k.clone();
    }
    if let Some(cost) = req.extensions().get::<RequestCost>() {
        return cost.model.clone();
    }
    Arc::from(DEFAULT_KEY)
}

impl<S, B, RB> Service<Request<B>> for CircuitBreaker<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let key = key_of(&req);
        let permit = match self.breakers.acquire(&key) {
            Ok(p) => p,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let streaming = ResponseMode::of(&req) == ResponseMode::Streaming;
        let fut = self.inner.call(req);
        Box::pin(async move {
            let mut result = fut.await.map_err(Error::from_service_error);
            let Some(mut permit) = permit else {
                return result;
            };
            match &mut result {
                // A stream's outcome is known when it ends: the stream reports it.
                Ok(resp) if streaming && resp.status().is_success() => {
                    permit.on_drop = Outcome::Success;
                    let verdict = StreamVerdict(Arc::new(Mutex::new(Some(permit))));
                    resp.extensions_mut().insert(verdict);
                }
                Ok(_) => permit.finish(Outcome::Success),
                Err(e) if e.is_unhealthy() => permit.finish(Outcome::Failure),
                Err(_) => permit.finish(Outcome::Success),
            }
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_keeps_the_latest_outcomes_within_its_time() {
        let mut w = Window::default();
        let t0 = Instant::now();
        let win = Duration::from_secs(10);
        w.add(t0, 3, true);
        w.add(t0 + Duration::from_secs(5), 3, false);
        assert_eq!(w.totals(), (2, 1));
        w.prune(t0 + Duration::from_secs(12), win);
        assert_eq!(w.totals(), (1, 0));
        w.prune(t0 + Duration::from_secs(17), win);
        assert_eq!(w.totals(), (0, 0));
        // At most three: the oldest make room.
        for i in 0..5 {
            w.add(t0, 3, i < 2);
        }
        assert_eq!(w.totals(), (3, 0));
    }

    #[test]
    fn settings_are_clamped() {
        let c = CircuitBreakerConfig::new()
            .failure_rate_threshold(f64::INFINITY)
            .minimum_calls(0)
            .half_open_probes(0)
            .open_for(Duration::from_secs(120))
            .window(Duration::ZERO);
        assert_eq!(c.failure_rate_threshold, 1.0);
        assert_eq!(c.minimum_calls, 1);
        assert_eq!(c.half_open_probes, 1);
        assert_eq!(c.max_open_for, Duration::from_secs(120));
        assert_eq!(c.window, Duration::from_millis(10));
        let w = CircuitBreakerConfig::new()
            .minimum_calls(30)
            .window_calls(5);
        assert_eq!((w.minimum_calls, w.window_calls), (30, 30));
        let w = CircuitBreakerConfig::new()
            .window_calls(u32::MAX)
            .minimum_calls(u32::MAX);
        assert_eq!((w.minimum_calls, w.window_calls), (1000, 1000));
        let nan = CircuitBreakerConfig::new().failure_rate_threshold(f64::NAN);
        assert_eq!(nan.failure_rate_threshold, 0.5);
    }
}
