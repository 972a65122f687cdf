//! One quota, many processes: the pacer's buckets kept in Redis (feature `redis`).
//!
//! The API's rate limits belong to the organisation, not to a process: four replicas each
//! pacing alone over-admit up to four times at every ramp and after every 429. A
//! [`SharedPacer`] keeps each quota's three buckets (their learned limits, levels, the 429 gate
//! and the cold start) in one Redis hash, updated by two Lua scripts:
//!
//! - **admit** (one round trip per attempt): refills the buckets by the time passed *on the
//!   Redis clock*, and either reserves the attempt's cost (1 request, the estimated input
//!   tokens, `max_tokens` output tokens) or answers how long to wait and which bucket says so;
//!   the caller sleeps that long (or fails at once with [`Error::Paced`] when the wait is past
//!   its deadline or `max_wait`) and asks again;
//! - **update** (one round trip when the answer ends): learns the limits and the server's
//!   `remaining` from the response's headers (the shared level never goes above what the
//!   server says is left), gives back what was not used (the output under `max_tokens`, the
//!   input overestimate, the whole cost of a call the API refused), and on a 429 closes the
//!   gate until its `retry-after` (nothing refills before then).
//!
//! Each bucket holds a quarter of a second's refill less than its limit, as the local
//! pacer's do ([module docs](super)): a call may reach the server that much after its
//! admission without a 429.
//!
//! Every time decision is made with Redis's `TIME`, and only durations travel between client
//! and server, so machines whose clocks differ agree. Scripts go by `EVALSHA` (loaded once).
//! Keys are `{prefix}:quota:<endpoint hash>:<key hash>:<model class>` and expire after 10
//! minutes unused; the API key is never stored, only a hash of it.
//!
//! **Redis trouble never takes the client down.** Each Redis call has a short timeout (500 ms).
//! When Redis fails, the pacer logs the switch once and paces locally ([`Pacer`], learning
//! from the headers as usual) starting from a share of the last limits it knew (default 1/4,
//! for four processes); it looks for Redis again at most once a second and logs its return.
//! With [`SharedPacer::fail_closed`] it refuses instead, with [`Error::Paced`] whose bucket is
//! `shared store`.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use tower_anthropic::{Client, pacing::SharedPacer};
//! let shared = SharedPacer::redis("redis://127.0.0.1:6379")?;
//! let client = Client::builder()
//!     .api_key(std::env::var("ANTHROPIC_API_KEY")?)
//!     .shared_pacer(shared)
//!     .build()?;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::quota::{BUCKETS, Cost, NAMES};
use super::{Pacer, PacingLayer, QuotaLimits, RateLimited, RequestCost, Settle, Settlement, lock};
use crate::breaker::CircuitBreakers;
use crate::error::{BoxError, Error, PacedError};
use crate::rate_limit::RateLimitHeaders;
use crate::retry::RetryBudget;

/// How long a quota's key lives in Redis after its last use.
const KEY_TTL: Duration = Duration::from_secs(600);
/// How long connecting to Redis may take (each call then has the store timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the first call of an unknown quota goes alone (across every process).
const COLD_START: Duration = Duration::from_secs(2);

/// Admits a call on a quota (on the Redis clock), or says how long until it fits. Levels are
/// stored to four decimals, so a level within a thousandth of a unit of the need is enough (a
/// full bucket's level, its capacity rounded down, against a need of that capacity).
const ADMIT: &str = r"
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000 + math.floor(tonumber(t0[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'l0', 'l1', 'l2', 'v0', 'v1', 'v2', 't', 'g', 'p')
local t = tonumber(h[7]) or now
local g = tonumber(h[8]) or 0
local p = tonumber(h[9]) or 0
local F = 0.9958333333333333
local lim, lev = {}, {}
local known = false
for i = 1, 3 do
  lim[i] = tonumber(h[i])
  lev[i] = tonumber(h[i + 3])
  if lim[i] then
    known = true
    if lev[i] == nil then lev[i] = lim[i] * F end
    if now > t then lev[i] = math.min(lim[i] * F, lev[i] + (now - t) * lim[i] / 60000) end
  end
end
local wait, bound = 0, -1
if g > now then wait = g - now; bound = 3 end
if not known then
  if p > now and p - now > wait then wait = p - now; bound = 4 end
else
  for i = 1, 3 do
    if lim[i] and lim[i] > 0 then
      local need = math.min(tonumber(ARGV[i]), lim[i] * F)
      if lev[i] + 0.001 < need then
        local w = math.ceil((need - lev[i]) * 60000 / lim[i])
        if w > wait then wait = w; bound = i - 1 end
      end
    end
  end
end
local admitted = 0
if wait <= 0 then
  admitted = 1
  wait = 0
  if known then
    for i = 1, 3 do if lim[i] then lev[i] = lev[i] - tonumber(ARGV[i]) end end
  else
    redis.call('HSET', KEYS[1], 'p', now + tonumber(ARGV[5]))
  end
end
for i = 1, 3 do
  if lim[i] then redis.call('HSET', KEYS[1], 'v' .. (i - 1), string.format('%.4f', lev[i])) end
end
redis.call('HSET', KEYS[1], 't', math.max(t, now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return {admitted, wait, bound}
";

const UPDATE: &str = r"
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000 + math.floor(tonumber(t0[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'l0', 'l1', 'l2', 'v0', 'v1', 'v2', 't', 'g')
local t = tonumber(h[7]) or now
local g = tonumber(h[8]) or 0
local F = 0.9958333333333333
local lim, lev = {}, {}
for i = 1, 3 do
  lim[i] = tonumber(h[i])
  lev[i] = tonumber(h[i + 3])
  if lim[i] then
    if lev[i] == nil then lev[i] = lim[i] * F end
    if now > t then lev[i] = math.min(lim[i] * F, lev[i] + (now - t) * lim[i] / 60000) end
  end
end
t = math.max(t, now)
for i = 1, 3 do
  local L = tonumber(ARGV[i])
  local R = tonumber(ARGV[i + 3])
  if L >= 0 and R >= 0 then
    if lim[i] then lev[i] = math.min(lev[i], R) else lev[i] = R end
    lim[i] = L
  end
  if lim[i] then lev[i] = math.min(lim[i] * F, lev[i] + tonumber(ARGV[i + 6])) end
end
if ARGV[11] == '1' then
  for i = 1, 3 do if lim[i] then lev[i] = math.min(lev[i], 0) end end
end
local gate = tonumber(ARGV[10])
local opened = 0
if gate > 0 then
  if g <= now then opened = 1 end
  g = math.max(g, now + gate)
  redis.call('HSET', KEYS[1], 'g', g)
  for i = 1, 3 do
    if lim[i] and lim[i] > 0 then
      lev[i] = math.max(lev[i], math.min(tonumber(ARGV[i + 6]), lim[i] * F))
    end
  end
  t = math.max(t, g)
end
if ARGV[13] == '1' then redis.call('HDEL', KEYS[1], 'p') end
for i = 1, 3 do
  if lim[i] then
    redis.call('HSET', KEYS[1], 'l' .. (i - 1), lim[i], 'v' .. (i - 1), string.format('%.4f', lev[i]))
  end
end
redis.call('HSET', KEYS[1], 't', t)
redis.call('PEXPIRE', KEYS[1], ARGV[12])
local out = {}
for i = 1, 3 do out[i] = lim[i] or -1 end
out[4] = opened
return out
";

/// How often breaker and budget state is exchanged.
const SYNC_EVERY: Duration = Duration::from_millis(250);

const BUDGET: &str = r"
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000 + math.floor(tonumber(t0[2]) / 1000)
local h = redis.call('HMGET', KEYS[1], 'b', 't')
local max = tonumber(ARGV[3])
local b = tonumber(h[1]) or max
local t = tonumber(h[2]) or now
if now > t then b = b + (now - t) * tonumber(ARGV[2]) / 1000 end
b = math.max(0, math.min(max, b + tonumber(ARGV[1])))
redis.call('HSET', KEYS[1], 'b', string.format('%.4f', b), 't', math.max(t, now))
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return tostring(b)
";

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
    admit: Script,
    update: Script,
    mode: Mutex<Mode>,
    /// The limits last seen per quota key (for the local fallback).
    known: Mutex<HashMap<String, [f64; BUCKETS]>>,
    /// Circuit breakers and a retry budget shared through the same Redis.
    breakers: Mutex<Option<CircuitBreakers>>,
    budget: Mutex<Option<RetryBudget>>,
    syncing: std::sync::atomic::AtomicBool,
    budget_script: Script,
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
                admit: Script::new(ADMIT),
                update: Script::new(UPDATE),
                mode: Mutex::new(Mode::Shared),
                known: Mutex::default(),
                breakers: Mutex::default(),
                budget: Mutex::default(),
                syncing: std::sync::atomic::AtomicBool::new(false),
                budget_script: Script::new(BUDGET),
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
            admit: Script::new(ADMIT),
            update: Script::new(UPDATE),
            mode: Mutex::new(Mode::Shared),
            known: Mutex::default(),
            breakers: Mutex::new(lock(&shared.breakers).clone()),
            budget: Mutex::new(lock(&shared.budget).clone()),
            syncing: std::sync::atomic::AtomicBool::new(false),
            budget_script: Script::new(BUDGET),
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

    /// Refuse calls while Redis is unreachable, with [`Error::Paced`] (bucket
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

    /// Starts the exchange of breaker and budget state (once, from a runtime).
    fn start_sync(&self) {
        use std::sync::atomic::Ordering;
        let wanted = lock(&self.inner.breakers).is_some() || lock(&self.inner.budget).is_some();
        if !wanted || self.inner.syncing.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            self.inner.syncing.store(false, Ordering::SeqCst);
            return;
        };
        let weak = Arc::downgrade(&self.inner);
        rt.spawn(async move {
            let mut tick = tokio::time::interval(SYNC_EVERY);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else {
                    return;
                };
                let me = SharedPacer { inner };
                me.sync_once().await;
            }
        });
    }

    /// One exchange of breaker and budget state with Redis.
    pub(crate) async fn sync_once(&self) {
        let breakers = lock(&self.inner.breakers).clone();
        let budget = lock(&self.inner.budget).clone();
        let mut con = match self.con().await {
            Ok(c) => c,
            Err(_) => {
                if let Some(b) = &budget {
                    b.set_shared(None);
                }
                return;
            }
        };
        if let Some(b) = breakers {
            let circuit = |key: &str| {
                let k: String = key.chars().take(200).collect();
                format!("{}:circuit:{k}", self.inner.prefix)
            };
            let mut pipe = redis::pipe();
            for (key, open_for) in b.take_opened() {
                pipe.cmd("SET")
                    .arg(circuit(&key))
                    .arg(1)
                    .arg("PX")
                    .arg(open_for.as_millis().max(1) as u64)
                    .ignore();
            }
            let keys = b.keys();
            for key in &keys {
                pipe.cmd("PTTL").arg(circuit(key));
            }
            let call = pipe.query_async::<Vec<i64>>(&mut con);
            if let Ok(Ok(ttls)) = tokio::time::timeout(self.inner.timeout, call).await {
                for (key, ttl) in keys.iter().zip(ttls) {
                    if ttl > 0 {
                        b.opened_elsewhere(key, Duration::from_millis(ttl as u64));
                    }
                }
            }
        }
        if let Some(b) = budget {
            let (floor, max) = b.settings();
            let delta = b.take_unsent();
            let mut inv = self
                .inner
                .budget_script
                .key(format!("{}:retry-budget", self.inner.prefix));
            inv.arg(delta)
                .arg(floor)
                .arg(max)
                .arg(KEY_TTL.as_millis() as u64);
            let call = inv.invoke_async::<f64>(&mut con);
            match tokio::time::timeout(self.inner.timeout, call).await {
                Ok(Ok(balance)) => b.set_shared(Some(balance)),
                _ => b.set_shared(None),
            }
        }
    }

    /// Whether the quota is being paced through Redis now (false while pacing locally).
    pub fn is_shared(&self) -> bool {
        matches!(*lock(&self.inner.mode), Mode::Shared)
    }

    /// A layer pacing every attempt through this pacer (below retry, above the attempt
    /// timeout, where a [`PacingLayer`] would go).
    pub fn layer(&self) -> SharedPacingLayer {
        SharedPacingLayer {
            pacer: self.clone(),
        }
    }

    /// The Redis key of a request's quota.
    fn key<B>(&self, req: &Request<B>, model: &str) -> String {
        let id = self.inner.local.quota_id(req, model);
        let key = super::request_key(req).unwrap_or_default();
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
                let mut pacer = self
                    .inner
                    .local
                    .clone_settings()
                    .configure(|c| c.share = share);
                if let Some(l) = known {
                    let part = |n: f64| (n * share).floor().max(1.0) as u64;
                    // Empty buckets, refilling at this process's share: whatever the shared
                    // level was, taking over adds no burst.
                    pacer = pacer
                        .limits(QuotaLimits {
                            requests_per_minute: part(l[0]),
                            input_tokens_per_minute: part(l[1]),
                            output_tokens_per_minute: part(l[2]),
                        })
                        .configure(|c| c.start_empty = true);
                }
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

    async fn admit(&self, key: &str, cost: &Cost) -> Result<(bool, Duration, i64), String> {
        let mut con = self.con().await?;
        let mut inv = self.inner.admit.key(key);
        inv.arg(cost[0])
            .arg(cost[1])
            .arg(cost[2])
            .arg(KEY_TTL.as_millis() as u64)
            .arg(COLD_START.as_millis() as u64);
        let call = inv.invoke_async::<(i64, i64, i64)>(&mut con);
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok((admitted, wait, bound))) => Ok((
                admitted == 1,
                Duration::from_millis(wait.max(0) as u64),
                bound,
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.inner.timeout)),
        }
    }

    async fn update(&self, key: String, u: Update) {
        let mut con = match self.con().await {
            Ok(c) => c,
            Err(e) => {
                self.failed(&key, &e);
                return;
            }
        };
        let h = &u.headers;
        let pairs = [&h.requests, &h.input_tokens, &h.output_tokens];
        let mut inv = self.inner.update.key(&key);
        for p in pairs {
            inv.arg(p.limit.map_or(-1, |l| l as i64));
        }
        for p in pairs {
            inv.arg(p.remaining.map_or(-1, |r| r as i64));
        }
        for r in u.refund {
            inv.arg(r);
        }
        inv.arg(u.gate.map_or(0, |g| g.as_millis().max(1) as u64))
            .arg(if u.drain { "1" } else { "0" })
            .arg(KEY_TTL.as_millis() as u64)
            .arg(if u.answered { "1" } else { "0" });
        let call = inv.invoke_async::<Vec<f64>>(&mut con);
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(limits)) if limits.len() == BUCKETS => {
                if limits.iter().all(|l| *l >= 0.0) {
                    lock(&self.inner.known).insert(key, [limits[0], limits[1], limits[2]]);
                }
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                self.failed(&key, &e.to_string());
            }
            Err(_) => {
                self.failed(&key, "update timed out");
            }
        }
    }
}

impl Pacer {
    /// A pacer with these settings and none of the state.
    fn clone_settings(&self) -> Pacer {
        Pacer::with_config(self.shared.config.clone())
    }
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

/// What the end of an attempt tells the shared quota.
struct Update {
    headers: RateLimitHeaders,
    refund: Cost,
    gate: Option<Duration>,
    drain: bool,
    answered: bool,
}

/// The shared quota's settlement of one admitted call: applied once, when the answer ends
/// (or when dropped unsettled, with nothing refunded).
struct SharedSettle {
    pacer: SharedPacer,
    key: String,
    cost: Cost,
    raw_input: f64,
    headers: RateLimitHeaders,
    input_from_headers: bool,
    done: bool,
}

impl SharedSettle {
    fn send(&mut self, refund: Cost) {
        self.done = true;
        let u = Update {
            headers: self.headers,
            refund,
            gate: None,
            drain: false,
            answered: true,
        };
        let (pacer, key) = (self.pacer.clone(), self.key.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move { pacer.update(key, u).await });
        }
    }
}

impl Settle for SharedSettle {
    fn settle(&mut self, input: u64, output: u64) {
        self.pacer
            .inner
            .local
            .learn_input(self.raw_input, input as f64);
        let input_refund = if self.input_from_headers {
            0.0
        } else {
            self.cost[1] - input as f64
        };
        self.send([0.0, input_refund, self.cost[2] - output as f64]);
    }
}

impl Drop for SharedSettle {
    fn drop(&mut self) {
        if !self.done {
            self.send([0.0; BUCKETS]);
        }
    }
}

/// Paces every attempt through a [`SharedPacer`].
#[derive(Debug, Clone)]
pub struct SharedPacingLayer {
    pacer: SharedPacer,
}

impl SharedPacingLayer {
    /// A layer over `pacer`.
    pub fn new(pacer: SharedPacer) -> Self {
        Self { pacer }
    }
}

impl<S> Layer<S> for SharedPacingLayer {
    type Service = SharedPacing<S>;
    fn layer(&self, inner: S) -> SharedPacing<S> {
        SharedPacing {
            inner,
            pacer: self.pacer.clone(),
        }
    }
}

/// The service of [`SharedPacingLayer`].
#[derive(Debug, Clone)]
pub struct SharedPacing<S> {
    inner: S,
    pacer: SharedPacer,
}

impl<S> SharedPacing<S> {
    crate::macros::define_inner_service_accessors!();
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

impl<S, B, RB> Service<Request<B>> for SharedPacing<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = Error;
    type Future = BoxFuture<Response<RB>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // As the local pacer: the inner service is made ready after admission.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let pacer = self.pacer.clone();
        Box::pin(async move { pacer.paced(inner, req).await })
    }
}

impl SharedPacer {
    async fn paced<S, B, RB>(&self, inner: S, req: Request<B>) -> Result<Response<RB>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Send + 'static,
        RB: Send + 'static,
    {
        self.start_sync();
        let Some(cost) = req.extensions().get::<RequestCost>().cloned() else {
            return inner.oneshot(req).await.map_err(Error::from_service_error);
        };
        let key = self.key(&req, &cost.model);
        let local = &self.inner.local;
        let class = local.quota_id(&req, &cost.model).class;
        let (cost_v, raw) = local.cost(&cost);
        let start = Instant::now();
        let limit = super::longest_wait(&req, local.shared.config.max_wait, start);
        let mut bound = -1;
        loop {
            if let Some(p) = self.local_now() {
                return self.locally(p, inner, req, &class).await;
            }
            let (admitted, wait, b) = match self.admit(&key, &cost_v).await {
                Ok(r) => {
                    self.rejoined();
                    r
                }
                Err(e) => {
                    let p = self.failed(&key, &e);
                    return self.locally(p, inner, req, &class).await;
                }
            };
            if admitted {
                break;
            }
            bound = b;
            let waited = start.elapsed();
            if waited + wait > limit {
                let bucket = bucket_name(bound);
                tracing::info!(wait = ?(waited + wait), bucket, class = %class,
                    "predicted shared quota wait too long: refusing at once");
                return Err(Error::Paced(PacedError::new(waited + wait, bucket, class)));
            }
            // A little spread, so processes told the same wait do not all ask at once.
            let spread = wait.mul_f64(
                0.02 * f64::from(fnv1a(&start.elapsed().as_nanos().to_le_bytes()) as u8) / 255.0,
            );
            tokio::time::sleep(wait + spread).await;
        }
        let waited = start.elapsed();
        if waited > Duration::from_millis(1) {
            tracing::info!(wait = ?waited, bucket = bucket_name(bound), class = %class,
                "paced: waited for the shared quota");
        }
        let result = inner.oneshot(req).await.map_err(Error::from_service_error);
        let mut result = result;
        match &mut result {
            Ok(resp) => {
                let headers = RateLimitHeaders::counts_from_headers(resp.headers());
                resp.extensions_mut().insert(Settlement::new(SharedSettle {
                    pacer: self.clone(),
                    key,
                    cost: cost_v,
                    raw_input: raw,
                    input_from_headers: headers.input_tokens.remaining.is_some(),
                    headers,
                    done: false,
                }));
            }
            Err(Error::Api(api)) => {
                let told = RateLimited::of(api);
                let gate = told.and_then(|t| t.wait);
                let drain = told.is_some_and(|t| t.drain);
                if let Some(g) = gate {
                    tracing::info!(retry_after = ?g, request_id = api.request_id(), class = %class,
                        "429: closing the shared quota until its retry-after");
                }
                // Not charged: the whole reservation comes back. Awaited, so the next call
                // of this task already sees a gate.
                let u = Update {
                    headers: *api.rate_limits(),
                    refund: cost_v,
                    gate,
                    drain,
                    answered: true,
                };
                self.update(key, u).await;
            }
            // No answer: the server may have charged it; the reservation stays.
            Err(_) => {}
        }
        result
    }

    async fn locally<S, B, RB>(
        &self,
        pacer: Pacer,
        inner: S,
        req: Request<B>,
        class: &str,
    ) -> Result<Response<RB>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Send + 'static,
        RB: Send + 'static,
    {
        if !self.inner.fail_open {
            let e = PacedError::new(Duration::from_secs(1), "shared store", class.to_owned());
            return Err(Error::Paced(e));
        }
        PacingLayer::new(pacer).layer(inner).oneshot(req).await
    }
}

fn bucket_name(bound: i64) -> &'static str {
    match bound {
        0..=2 => NAMES[bound as usize],
        3 => "quota",
        4 => "cold start",
        _ => "quota",
    }
}

#[cfg(test)]
mod tests {
    use super::super::quota::capacity;
    use super::*;

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
                http::HeaderName::try_from(format!("anthropic-ratelimit-{name}-remaining"))
                    .unwrap(),
                remaining[i].into(),
            );
        }
        RateLimitHeaders::from_headers(&h)
    }

    fn learn(limits: [u64; 3], remaining: [u64; 3]) -> Update {
        Update {
            headers: headers(limits, remaining),
            refund: [0.0; BUCKETS],
            gate: None,
            drain: false,
            answered: true,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_admissions_never_exceed_the_bucket() {
        let Some(p) = pacer("bucket").await else {
            return;
        };
        let key = format!("{}:quota:test", p.inner.prefix);
        p.update(key.clone(), learn([10, 1000, 1000], [10, 1000, 1000]))
            .await;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..50 {
            let (p, key) = (p.clone(), key.clone());
            // 1.5 requests each: what a full bucket leaves over is far from the next call's
            // need, so the count below holds however slowly the admissions run.
            tasks.spawn(async move { p.admit(&key, &[1.5, 1.0, 1.0]).await.unwrap() });
        }
        let mut admitted = 0;
        while let Some(r) = tasks.join_next().await {
            let (ok, wait, bound) = r.unwrap();
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
        assert_eq!((capacity(10.0) / 1.5).floor(), 6.0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settlement_refunds_and_the_gate_holds() {
        let Some(p) = pacer("refund").await else {
            return;
        };
        let key = format!("{}:quota:test", p.inner.prefix);
        p.update(key.clone(), learn([1000, 1000, 100], [1000, 1000, 100]))
            .await;
        // max_tokens 100 reserves the whole output bucket...
        assert!(p.admit(&key, &[1.0, 1.0, 100.0]).await.unwrap().0);
        let (ok, _, bound) = p.admit(&key, &[1.0, 1.0, 100.0]).await.unwrap();
        assert!(!ok);
        assert_eq!(bound, 2, "output tokens");
        // ...until the answer says it used 10: 90 come back.
        let mut u = learn([1000, 1000, 100], [999, 999, 90]);
        u.refund = [0.0, 0.0, 90.0];
        p.update(key.clone(), u).await;
        assert!(p.admit(&key, &[1.0, 1.0, 50.0]).await.unwrap().0);
        // A 429 closes the gate for its retry-after, on the Redis clock.
        let mut u = learn([1000, 1000, 100], [0, 0, 0]);
        u.gate = Some(Duration::from_secs(5));
        p.update(key.clone(), u).await;
        let (ok, wait, bound) = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
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

    #[test]
    fn the_scripts_keep_the_local_pacers_capacity() {
        let f = capacity(1.0);
        for script in [ADMIT, UPDATE] {
            let line = script
                .lines()
                .find_map(|l| l.strip_prefix("local F = "))
                .expect("the script names its capacity factor");
            assert_eq!(line.parse::<f64>(), Ok(f));
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
        on_time.block_on(p.update(key.clone(), learn([6, 1000, 1000], [6, 1000, 1000])));
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
                on_time.block_on(p.admit(&key, &[1.6, 0.0, 0.0])).unwrap()
            } else {
                ahead.block_on(p2.admit(&key, &[1.6, 0.0, 0.0])).unwrap()
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
}
