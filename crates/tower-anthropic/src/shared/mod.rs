//! One quota, many processes: the pacer's state kept in Redis (feature `redis`), and the
//! circuit breakers and retry budget exchanged through it.
//!
//! The API's rate limits belong to the organisation, not to a process: four replicas each
//! pacing alone over-admit up to four times at every ramp and after every 429. A
//! [`SharedPacer`] keeps each quota's state (its learned limits, levels, reservations, the 429
//! gate and the cold start: the very state the local [`Pacer`] keeps, moved by the same
//! rules) in Redis, as one JSON document by bucket name, and changes it by compare-and-set:
//!
//! - **admission** (one round trip per attempt in the usual case): the state is refilled by
//!   the time passed *on the Redis clock*, and either the attempt's cost is reserved (1
//!   request, the estimated input tokens, `max_tokens` output tokens) or the call is told how
//!   long to wait and which bucket says so; it sleeps that long (or fails at once with
//!   [`Error::Paced`](crate::Error::Paced) when the wait is past its deadline or
//!   `max_wait`) and asks again;
//! - **the answer** (one round trip when it ends): the limits and the server's `remaining`
//!   are learned as the local pacer learns them (the drift rule compares the answer with the
//!   state the call was admitted on, so calls in flight in any process are not counted
//!   twice), what was not used is given back (the output under `max_tokens`, the input
//!   overestimate, the whole cost of a call the API refused), and a 429 that names a wait
//!   closes the gate until then ([`pacing`](crate::pacing) module docs).
//!
//! Each process holds back its own dispatch allowance, learned as the local pacer's is. Before
//! a quota's first answer its first call goes alone (across every process); the others are
//! released as soon as an answer teaches the limits (woken at once in the process that got
//! it, asking again every 10 to 200 ms in the others), at most the local pacer's
//! [`cold_start`](Pacer::cold_start) later. An answer without rate-limit headers before any
//! with them leaves the quota unpaced for a minute, in every process. A stored state that is
//! not one this library writes (not JSON of its shape, a number not finite or out of range)
//! is replaced by a cold start, with a warning.
//!
//! Times are stored on Redis's clock (`TIME`, which every answer reports), so machines whose
//! clocks differ agree. Keys are `{prefix}:quota:<endpoint hash>:<key hash>:<model class>`
//! and expire after 10 minutes unused; the API key is never stored, only a hash of it. A
//! process killed with calls in flight leaves their reservations counted as in flight until
//! the key expires (that only widens the band in which the drift rule takes a difference
//! for noise).
//!
//! **Redis trouble never takes the client down.** Each Redis call has a short timeout (500 ms).
//! When Redis fails, the pacer logs the switch once and paces locally ([`Pacer`], learning
//! from the headers as usual) starting from a share of the last limits it knew (default 1/4,
//! for four processes); it looks for Redis again at most once a second and logs its return.
//! With [`SharedPacer::fail_closed`] it refuses instead, with
//! [`Error::Paced`](crate::Error::Paced) whose bucket is `shared store`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_anthropic::{Client, shared::SharedPacer};
//! let shared = SharedPacer::redis("redis://127.0.0.1:6379")?;
//! let client = Client::builder()
//!     .api_key(std::env::var("ANTHROPIC_API_KEY")?)
//!     .shared_pacer(shared)
//!     .build()?;
//! # Ok(()) }
//! ```

mod exchange;
mod layer;
mod store;
#[cfg(test)]
mod tests;

pub use layer::{SharedPacing, SharedPacingLayer};

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;

use crate::breaker::CircuitBreakers;
use crate::pacing::Pacer;
use crate::pacing::allowance::Allowance;
use crate::pacing::state::{BUCKETS, secs};
use crate::retry::RetryBudget;
use store::QuotaStore;

/// How long a quota's key lives in Redis after its last use.
const KEY_TTL: Duration = Duration::from_secs(600);
/// How long connecting to Redis may take (each call then has the store timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Why a [`SharedPacer`] could not be made.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid Redis URL for the shared pacer: {0}")]
pub struct SharedPacerError(String);

/// The pacer of a quota shared by many processes through Redis; see the [module
/// docs](self). Clones share the connection and the state.
///
/// | setting | default |
/// |---|---|
/// | `prefix` | `tower-anthropic` |
/// | `store_timeout` | 500 ms per Redis call (2 s to connect) |
/// | fail-open / fail-closed | fail-open: pace locally on a share of the last known limits |
/// | `local_share` | 0.25 |
/// | `max_wait`, estimator, model classes | those of the [`Pacer`] given with [`local`](Self::local) |
#[derive(Clone)]
pub struct SharedPacer {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// Made on first use (in the runtime), kept once it connected.
    con: Arc<tokio::sync::OnceCell<ConnectionManager>>,
    prefix: String,
    local: Pacer,
    timeout: Duration,
    fail_open: bool,
    share: f64,
    store: QuotaStore,
    mode: Mutex<Mode>,
    /// The limits last seen per quota key (for the local fallback).
    known: Mutex<HashMap<String, [f64; BUCKETS]>>,
    /// Circuit breakers and a retry budget shared through the same Redis.
    breakers: Mutex<Option<CircuitBreakers>>,
    budget: Mutex<Option<RetryBudget>>,
    syncing: std::sync::atomic::AtomicBool,
    /// The compare-and-set script (the retry budget's changes).
    cas: Script,
    /// This process's dispatch allowance (as the local pacer's, one for all its quotas).
    allowance: Mutex<Allowance>,
    /// Woken when an answer teaches this process a quota's limits, or a 429 of this process
    /// closes a quota: the calls waiting ask again at once (released by the cold start's end,
    /// or refused when the gate is longer than they may wait).
    changed: tokio::sync::Notify,
    /// Milliseconds added to the Redis clock: zero but in tests, which move it.
    shift_ms: AtomicI64,
}

#[derive(Clone)]
enum Mode {
    Shared,
    /// Redis failed: pacing locally with this pacer until `retry_at`, when Redis is tried again.
    Local {
        pacer: Pacer,
        retry_at: Instant,
    },
}

impl fmt::Debug for SharedPacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPacer")
            .field("prefix", &self.inner.prefix)
            .field("shared", &self.is_shared())
            .field("fail_open", &self.inner.fail_open)
            .finish_non_exhaustive()
    }
}

impl SharedPacer {
    /// A shared pacer on the Redis at `url` (`redis://host:port/db`, `rediss://` for TLS).
    /// It connects on first use, so a Redis that is down now does not stop the client from
    /// being built (it paces locally until Redis answers).
    pub fn redis(url: &str) -> Result<Self, SharedPacerError> {
        let client =
            redis::Client::open(url).map_err(|e| SharedPacerError(redact(url, &e.to_string())))?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                con: Arc::default(),
                prefix: "tower-anthropic".to_owned(),
                local: Pacer::new(),
                timeout: Duration::from_millis(500),
                fail_open: true,
                share: 0.25,
                store: QuotaStore::new(),
                mode: Mutex::new(Mode::Shared),
                known: Mutex::default(),
                breakers: Mutex::default(),
                budget: Mutex::default(),
                syncing: std::sync::atomic::AtomicBool::new(false),
                cas: Script::new(store::CAS),
                allowance: Mutex::default(),
                changed: tokio::sync::Notify::new(),
                shift_ms: AtomicI64::new(0),
            }),
        })
    }

    fn configure(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            client: shared.client.clone(),
            con: shared.con.clone(),
            prefix: shared.prefix.clone(),
            local: shared.local.clone(),
            timeout: shared.timeout,
            fail_open: shared.fail_open,
            share: shared.share,
            store: QuotaStore::new(),
            mode: Mutex::new(Mode::Shared),
            known: Mutex::default(),
            breakers: Mutex::new(lock(&shared.breakers).clone()),
            budget: Mutex::new(lock(&shared.budget).clone()),
            syncing: std::sync::atomic::AtomicBool::new(false),
            cas: Script::new(store::CAS),
            allowance: Mutex::default(),
            changed: tokio::sync::Notify::new(),
            shift_ms: AtomicI64::new(shared.shift_ms.load(Ordering::Relaxed)),
        });
        f(&mut inner);
        Self {
            inner: Arc::new(inner),
        }
    }

    /// The key prefix (quotas of different prefixes are separate).
    pub fn prefix(self, prefix: impl Into<String>) -> Self {
        let p = prefix.into();
        self.configure(|i| i.prefix = p)
    }

    /// The timeout of each Redis call (1 ms to 10 s).
    pub fn store_timeout(self, d: Duration) -> Self {
        let d = d.clamp(Duration::from_millis(1), Duration::from_secs(10));
        self.configure(|i| i.timeout = d)
    }

    /// Refuse calls while Redis is unreachable, with [`Error::Paced`](crate::Error::Paced) (bucket
    /// `shared store`), instead of pacing locally.
    pub fn fail_closed(self) -> Self {
        self.configure(|i| i.fail_open = false)
    }

    /// The share (0.01 to 1) of the last known limits this process paces to on its own while
    /// Redis is unreachable (default 0.25: one of four processes).
    pub fn local_share(self, share: f64) -> Self {
        let s = if share.is_finite() {
            share.clamp(0.01, 1.0)
        } else {
            0.25
        };
        self.configure(|i| i.share = s)
    }

    /// The local pacer whose settings (`max_wait`, token estimator, model classes) apply, and
    /// which paces while Redis is unreachable.
    pub fn local(self, pacer: Pacer) -> Self {
        self.configure(|i| i.local = pacer)
    }

    /// Shares these circuit breakers' open circuits with the other processes on this Redis:
    /// a circuit one process opens opens in every process that knows the target, for the rest
    /// of its interval (each process then probes on its own). Exchanged every 250 ms.
    /// [`ClientBuilder::shared_pacer`](crate::ClientBuilder::shared_pacer) does this for the
    /// client's breakers.
    pub fn share_breakers(self, breakers: CircuitBreakers) -> Self {
        *lock(&self.inner.breakers) = Some(breakers);
        self
    }

    /// Shares this retry budget with the other processes on this Redis: one balance for all,
    /// refilled once by its floor, to which every process adds its deposits and from which
    /// it takes its retries (exchanged every 250 ms; between exchanges a process spends from
    /// the last balance it saw). While Redis is away each process refills its own again.
    /// [`ClientBuilder::shared_pacer`](crate::ClientBuilder::shared_pacer) does this for the
    /// client's budget.
    pub fn share_retry_budget(self, budget: RetryBudget) -> Self {
        *lock(&self.inner.budget) = Some(budget);
        self
    }

    /// This process's dispatch allowance: how late after its admission a call may reach the
    /// server without a 429 (the buckets hold that much refill less than their limits);
    /// learned as the local pacer's is (see [`QuotaSnapshot::dispatch_allowance`]).
    ///
    /// [`QuotaSnapshot::dispatch_allowance`]: crate::pacing::QuotaSnapshot::dispatch_allowance
    pub fn dispatch_allowance(&self) -> Duration {
        let mut a = lock(&self.inner.allowance);
        a.update(Instant::now());
        secs(a.secs())
    }

    /// Whether the quota is being paced through Redis now (false while pacing locally).
    pub fn is_shared(&self) -> bool {
        matches!(*lock(&self.inner.mode), Mode::Shared)
    }

    /// A layer pacing every attempt through this pacer (below retry, above the attempt
    /// timeout, where a [`PacingLayer`](crate::pacing::PacingLayer) would go).
    pub fn layer(&self) -> SharedPacingLayer {
        SharedPacingLayer::new(self.clone())
    }

    /// The Redis key of a request's quota.
    fn key<B>(&self, req: &Request<B>, model: &str) -> String {
        let id = self.inner.local.quota_id(req, model);
        let key = crate::pacing::request_key(req).unwrap_or_default();
        let class: String = id.class.chars().take(200).collect();
        format!(
            "{}:quota:{:016x}:{:016x}:{class}",
            self.inner.prefix,
            fnv1a(id.endpoint.as_bytes()),
            fnv1a(key)
        )
    }

    /// The pacer to use now: `None` for Redis, or the local one (after a failure, until it is
    /// time to try Redis again).
    fn local_now(&self) -> Option<Pacer> {
        match &*lock(&self.inner.mode) {
            Mode::Shared => None,
            Mode::Local { pacer, retry_at } => (Instant::now() < *retry_at).then(|| pacer.clone()),
        }
    }

    /// Redis failed: switch to local pacing (logged once), or stay there a second more.
    fn failed(&self, key: &str, e: &str) -> Pacer {
        let mut mode = lock(&self.inner.mode);
        let retry_at = Instant::now() + Duration::from_secs(1);
        match &mut *mode {
            Mode::Local { pacer, retry_at: r } => {
                *r = retry_at;
                pacer.clone()
            }
            Mode::Shared => {
                let known = lock(&self.inner.known).get(key).copied();
                let share = self.inner.share;
                let pacer = self.inner.local.fallback(share, known);
                if self.inner.fail_open {
                    tracing::warn!(error = e, share, limits = ?known,
                        "shared quota store unreachable: pacing locally on a share of the last known limits");
                } else {
                    tracing::warn!(
                        error = e,
                        "shared quota store unreachable: refusing calls (fail-closed)"
                    );
                }
                *mode = Mode::Local {
                    pacer: pacer.clone(),
                    retry_at,
                };
                pacer
            }
        }
    }

    fn rejoined(&self) {
        let mut mode = lock(&self.inner.mode);
        if matches!(*mode, Mode::Local { .. }) {
            tracing::info!("shared quota store reachable again: pacing through it");
            *mode = Mode::Shared;
        }
    }

    /// The connection (made on first use; it reconnects by itself after that).
    async fn con(&self) -> Result<ConnectionManager, String> {
        let make = async {
            let config = ConnectionManagerConfig::new()
                .set_number_of_retries(1)
                .set_max_delay(Duration::from_millis(500))
                .set_connection_timeout(Some(CONNECT_TIMEOUT))
                .set_response_timeout(Some(Duration::from_secs(2)));
            self.inner
                .client
                .get_connection_manager_with_config(config)
                .await
        };
        // Connecting takes longer than a call: it has a bound of its own.
        let made = tokio::time::timeout(CONNECT_TIMEOUT, self.inner.con.get_or_try_init(|| make));
        match made.await {
            Ok(Ok(c)) => Ok(c.clone()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {CONNECT_TIMEOUT:?}")),
        }
    }
}

/// The stored state of a quota was corrupt and was replaced by a cold start (logged each time
/// it is found: once per corruption, since the state is replaced).
fn corrupt(key: &str) {
    tracing::warn!(
        key,
        "shared quota state was corrupt (not one this library writes: not its JSON, or a number not finite or out of range): replaced by a cold start"
    );
}

/// FNV-1a, 64 bits: a hash that is the same in every process and every build.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// An error message about a URL, with any password in the URL left out.
fn redact(url: &str, msg: &str) -> String {
    let shown = crate::transport::redact_userinfo(url);
    let msg = if url.contains('@') {
        msg.replace(url, &shown)
    } else {
        msg.to_owned()
    };
    format!("{shown}: {msg}")
}
