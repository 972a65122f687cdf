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
//!   input overestimate, the whole cost of a call the API refused), and on a 429 that names a
//!   wait closes the gate until then, with room for the refused call when it opens and no
//!   more (the wait and the refill overlap; the calls behind go at the refill rate), as the
//!   local pacer does ([module docs](super)).
//!
//! Each bucket holds the process's dispatch allowance less than its limit, learned as the
//! local pacer's is ([module docs](super)): a call may reach the server that much after its
//! admission without a 429. Before a quota's first answer its first call goes alone (across
//! every process); the others are released as soon as an answer teaches the limits (woken at
//! once in the process that got it, asking again every 10 to 200 ms in the others), at most
//! the local pacer's [`cold_start`](Pacer::cold_start) later. An answer without rate-limit
//! headers before any with them leaves the quota unpaced for a minute, in every process.
//! Only counts the local pacer would take reach the store, and the scripts check what they
//! read: a quota whose stored state is not one this library writes (a field not a number,
//! not finite, or out of range) is replaced by a cold start, with a warning.
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
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use redis::Script;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::allowance::Allowance;
use super::quota::{BUCKETS, Cost, NAMES, sane_counts, secs};
use super::{Pacer, PacingLayer, QuotaLimits, RateLimited, RequestCost, Settle, Settlement, lock};
use crate::breaker::CircuitBreakers;
use crate::error::{BoxError, Error, PacedError};
use crate::rate_limit::RateLimitHeaders;
use crate::retry::RetryBudget;

/// How long a quota's key lives in Redis after its last use.
const KEY_TTL: Duration = Duration::from_secs(600);
/// How long connecting to Redis may take (each call then has the store timeout).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What [`ADMIT`] and [`UPDATE`] do with the fields they read of a quota (`h`, in their
/// order: limits, levels, then times): a state this library does not write (a field not a
/// number, not finite, or out of its range: limits 1 to 10^12, levels within 10^13, times
/// within a day of now) is deleted and read as a cold start, and `corrupt` says so.
macro_rules! validate_state {
    () => {
        r"local corrupt = 0
for i = 1, #h do
  if h[i] then
    local x = tonumber(h[i])
    local lo, hi = -1e13, 1e13
    if i <= 3 then lo, hi = 1, 1e12 elseif i >= 7 then lo, hi = 0, now + 86400000 end
    if x == nil or x ~= x or x < lo or x > hi then corrupt = 1 end
  end
end
if corrupt == 1 then
  redis.call('DEL', KEYS[1])
  for i = 1, #h do h[i] = false end
end
"
    };
}

/// Admits a call on a quota (on the Redis clock), or says how long until it fits. Levels are
/// stored to four decimals, so a level within a thousandth of a unit of the need is enough (a
/// full bucket's level, its capacity rounded down, against a need of that capacity).
///
/// `ARGV`: the cost (three buckets), the key's TTL (ms), the cold start's bound (ms), the
/// capacity factor (the dispatch allowance), a shift of the clock (ms; zero but in tests).
/// Returns `{admitted, wait (ms), bound, known, corrupt}`: `bound` 0-2 a bucket, 3 the gate, 4
/// the cold start; `known` whether the limits are (a call admitted without them is not
/// paced); `corrupt` 1 when the stored state was not one this library writes (a field not a
/// number, not finite, or out of its range: limits 1 to 10^12, levels within ±10^13, times
/// within a day of now) and was replaced by a cold start, as [`UPDATE`] does.
const ADMIT: &str = concat!(
    r"
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000 + math.floor(tonumber(t0[2]) / 1000) + tonumber(ARGV[7])
local h = redis.call('HMGET', KEYS[1], 'l0', 'l1', 'l2', 'v0', 'v1', 'v2', 't', 'g', 'p', 'u')
",
    validate_state!(),
    r"local u = tonumber(h[10])
if u and u > now then
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  return {1, 0, -1, 0, 0}
end
local t = tonumber(h[7]) or now
local g = tonumber(h[8]) or 0
local p = tonumber(h[9]) or 0
local F = tonumber(ARGV[6])
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
return {admitted, wait, bound, known and 1 or 0, corrupt}
"
);

/// Learns from an answer. `ARGV`: the limits and the remaining counts of the three buckets (-1
/// when absent), what to give back of each (on a 429, the call's whole cost), the 429's gate
/// (ms, 0 for none), `1` to empty the buckets (a 429 that says nothing of them), the key's
/// TTL (ms), `0` (no answer), `1` (an error answer) or `2` (a success), the capacity factor,
/// the clock's shift (ms). Returns the limits (-1 when unknown), whether the 429 closed the
/// quota (1) or found it closed (0), and whether the stored state was corrupt (1) and
/// replaced, as in [`ADMIT`].
///
/// A 429's wait and the refill overlap: each bucket holds at least the call's cost when the
/// gate opens (the server's word that the call fits then), and nothing more refills before.
/// A success without any limit before any with them marks the quota unmanaged for a minute
/// (`u`: admitted at once until then; the next call after it is paced to see), as the local
/// pacer does.
const UPDATE: &str = concat!(
    r"
local t0 = redis.call('TIME')
local now = tonumber(t0[1]) * 1000 + math.floor(tonumber(t0[2]) / 1000) + tonumber(ARGV[15])
local h = redis.call('HMGET', KEYS[1], 'l0', 'l1', 'l2', 'v0', 'v1', 'v2', 't', 'g')
",
    validate_state!(),
    r"local t = tonumber(h[7]) or now
local g = tonumber(h[8]) or 0
local F = tonumber(ARGV[14])
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
  local back = tonumber(ARGV[i + 6])
  if lim[i] and ARGV[13] == '1' then
    -- An error answer's remaining already leaves the refused call out: give it back first.
    lev[i] = lev[i] + back
    back = 0
  end
  if L >= 0 and R >= 0 then
    if lim[i] then lev[i] = math.min(lev[i], R) else lev[i] = R end
    lim[i] = L
  end
  if lim[i] then lev[i] = math.min(lim[i] * F, lev[i] + back) end
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
if ARGV[13] ~= '0' then redis.call('HDEL', KEYS[1], 'p') end
if not (lim[1] or lim[2] or lim[3]) then
  if ARGV[13] == '2' then redis.call('HSET', KEYS[1], 'u', now + 60000) end
else
  redis.call('HDEL', KEYS[1], 'u')
end
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
out[5] = corrupt
return out
"
);

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
                admit: Script::new(ADMIT),
                update: Script::new(UPDATE),
                mode: Mutex::new(Mode::Shared),
                known: Mutex::default(),
                breakers: Mutex::default(),
                budget: Mutex::default(),
                syncing: std::sync::atomic::AtomicBool::new(false),
                budget_script: Script::new(BUDGET),
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
            admit: Script::new(ADMIT),
            update: Script::new(UPDATE),
            mode: Mutex::new(Mode::Shared),
            known: Mutex::default(),
            breakers: Mutex::new(lock(&shared.breakers).clone()),
            budget: Mutex::new(lock(&shared.budget).clone()),
            syncing: std::sync::atomic::AtomicBool::new(false),
            budget_script: Script::new(BUDGET),
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

    /// This process's dispatch allowance: how late after its admission a call may reach the
    /// server without a 429 (the buckets hold that much refill less than their limits);
    /// learned as the local pacer's is (see [`QuotaSnapshot::dispatch_allowance`]).
    ///
    /// [`QuotaSnapshot::dispatch_allowance`]: super::QuotaSnapshot::dispatch_allowance
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

    async fn admit(&self, key: &str, cost: &Cost) -> Result<Admit, String> {
        let mut con = self.con().await?;
        let factor = lock(&self.inner.allowance).factor();
        let mut inv = self.inner.admit.key(key);
        inv.arg(cost[0])
            .arg(cost[1])
            .arg(cost[2])
            .arg(KEY_TTL.as_millis() as u64)
            .arg(self.inner.local.shared.config.cold_start.as_millis() as u64)
            .arg(factor)
            .arg(self.inner.shift_ms.load(Ordering::Relaxed));
        let call = inv.invoke_async::<(i64, i64, i64, i64, i64)>(&mut con);
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok((admitted, wait, bound, known, corrupt))) => Ok(Admit {
                corrupt: corrupt == 1,
                admitted: admitted == 1,
                wait: Duration::from_millis(wait.max(0) as u64),
                bound,
                known: known == 1,
            }),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {:?}", self.inner.timeout)),
        }
    }

    /// Tells the shared quota what an answer said; `Some(true)` when a 429 closed it (it
    /// was open), `None` when Redis did not answer.
    async fn update(&self, key: String, u: Update) -> Option<bool> {
        let mut con = match self.con().await {
            Ok(c) => c,
            Err(e) => {
                self.failed(&key, &e);
                return None;
            }
        };
        let h = &u.headers;
        // Only counts the API could mean (the local pacer's bounds) reach the store.
        let pairs = [&h.requests, &h.input_tokens, &h.output_tokens];
        let counts: [(f64, f64); BUCKETS] = [0, 1, 2].map(|i| {
            pairs[i]
                .limit
                .zip(pairs[i].remaining)
                .and_then(|(l, r)| sane_counts(i, l, r))
                .unwrap_or((-1.0, -1.0))
        });
        let mut inv = self.inner.update.key(&key);
        for (l, _) in counts {
            inv.arg(l as i64);
        }
        for (_, r) in counts {
            inv.arg(r as i64);
        }
        for r in u.refund {
            inv.arg(r);
        }
        let factor = lock(&self.inner.allowance).factor();
        inv.arg(u.gate.map_or(0, |g| g.as_millis().max(1) as u64))
            .arg(if u.drain { "1" } else { "0" })
            .arg(KEY_TTL.as_millis() as u64)
            .arg(match u.answered {
                Answered::No => "0",
                Answered::Error => "1",
                Answered::Success => "2",
            })
            .arg(factor)
            .arg(self.inner.shift_ms.load(Ordering::Relaxed));
        let call = inv.invoke_async::<Vec<f64>>(&mut con);
        match tokio::time::timeout(self.inner.timeout, call).await {
            Ok(Ok(out)) if out.len() == BUCKETS + 2 => {
                if out[4] == 1.0 {
                    corrupt(&key);
                }
                let limits = [out[0], out[1], out[2]];
                let mut known = lock(&self.inner.known);
                if (!known.contains_key(&key) && u.answered != Answered::No) || out[3] == 1.0 {
                    // Calls held by this quota's cold start need not wait any longer, and a
                    // new gate may be longer than the waiting calls may wait.
                    self.inner.changed.notify_waiters();
                }
                if limits.iter().all(|l| *l >= 0.0) {
                    known.insert(key, limits);
                }
                Some(out[3] == 1.0)
            }
            Ok(Ok(_)) => None,
            Ok(Err(e)) => {
                self.failed(&key, &e.to_string());
                None
            }
            Err(_) => {
                self.failed(&key, "update timed out");
                None
            }
        }
    }
}

/// What a call of a shared quota was told ([`ADMIT`]).
#[derive(Debug, Clone, Copy)]
struct Admit {
    admitted: bool,
    wait: Duration,
    /// 0-2 a bucket, 3 the gate, 4 the cold start.
    bound: i64,
    /// The limits were known (the call is paced, so a 429 for it was not expected).
    known: bool,
    /// The stored state was corrupt, and was replaced by a cold start.
    corrupt: bool,
}

/// The bound [`ADMIT`] names for the cold start.
const COLD_START_BOUND: i64 = 4;
/// How often at most a call held by the cold start asks again (from 10 ms, doubling): the
/// first answer of a quota may come from another process, which cannot wake this one.
const COLD_START_POLL: Duration = Duration::from_millis(200);

/// Whether an update reports an answer, and which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answered {
    /// No answer (a reservation released unsettled).
    No,
    /// An error status.
    Error,
    /// A success.
    Success,
}

impl Pacer {
    /// A pacer with these settings and none of the state.
    fn clone_settings(&self) -> Pacer {
        Pacer::with_config(self.shared.config.clone())
    }
}

/// The stored state of a quota was corrupt and was replaced by a cold start (logged each time
/// it is found: once per corruption, since the script replaces it).
fn corrupt(key: &str) {
    tracing::warn!(
        key,
        "shared quota state was corrupt (a field not a number, not finite, or out of range): replaced by a cold start"
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

/// What the end of an attempt tells the shared quota.
struct Update {
    headers: RateLimitHeaders,
    refund: Cost,
    gate: Option<Duration>,
    drain: bool,
    answered: Answered,
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
            answered: Answered::Success,
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
        let mut poll = Duration::from_millis(10);
        let known = loop {
            if let Some(p) = self.local_now() {
                return self.locally(p, inner, req, &class).await;
            }
            // Registered before asking, so an answer that teaches the limits while the
            // question is on its way still wakes this call.
            let changed = self.inner.changed.notified();
            let a = match self.admit(&key, &cost_v).await {
                Ok(r) => {
                    self.rejoined();
                    if r.corrupt {
                        corrupt(&key);
                    }
                    r
                }
                Err(e) => {
                    let p = self.failed(&key, &e);
                    return self.locally(p, inner, req, &class).await;
                }
            };
            if a.admitted {
                break a.known;
            }
            bound = a.bound;
            let waited = start.elapsed();
            // A cold start ends with the quota's first answer (or its bound, when the calls
            // go unpaced): no wait to refuse a call for.
            if bound != COLD_START_BOUND && waited + a.wait > limit {
                let bucket = bucket_name(bound);
                tracing::info!(wait = ?(waited + a.wait), bucket, class = %class,
                    "predicted shared quota wait too long: refusing at once");
                return Err(Error::Paced(PacedError::new(
                    waited + a.wait,
                    bucket,
                    class,
                )));
            }
            let pause = if bound == COLD_START_BOUND {
                // Held until the quota's first answer teaches its limits: woken by this
                // process's answer, else asking again soon (another process's answer).
                let pause = a.wait.min(poll);
                poll = (poll * 2).min(COLD_START_POLL);
                pause
            } else {
                // A little spread, so processes told the same wait do not all ask at once.
                let spread = a.wait.mul_f64(
                    0.02 * f64::from(fnv1a(&start.elapsed().as_nanos().to_le_bytes()) as u8)
                        / 255.0,
                );
                a.wait + spread
            };
            // Never asking again without a pause (a store that answers "not yet, wait 0");
            // woken early when this process learns the limits or meets a 429.
            let sleep = tokio::time::sleep(pause.max(Duration::from_millis(1)));
            let mut sleep = std::pin::pin!(sleep);
            let mut changed = std::pin::pin!(changed);
            std::future::poll_fn(|cx| {
                if sleep.as_mut().poll(cx).is_ready() || changed.as_mut().poll(cx).is_ready() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        };
        let admitted_at = Instant::now();
        let waited = start.elapsed();
        if waited > Duration::from_millis(1) {
            tracing::info!(wait = ?waited, bucket = bucket_name(bound), class = %class,
                "paced: waited for the shared quota");
        }
        let mut result = inner.oneshot(req).await.map_err(Error::from_service_error);
        let now = Instant::now();
        if matches!(&result, Ok(_) | Err(Error::Api(_))) {
            // An answer's head: the way to the server was part of its latency.
            lock(&self.inner.allowance).answered(now.saturating_duration_since(admitted_at), now);
        }
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
                if told.is_some() && known && !drain {
                    // Admitted with room (the script admits no other way): calls reach the
                    // server later than the allowance covers.
                    let mut a = lock(&self.inner.allowance);
                    a.surprised(now);
                    tracing::info!(allowance = ?secs(a.secs()), class = %class,
                        "429 for a call admitted with room: more dispatch allowance");
                }
                // Not charged: the whole reservation comes back. Awaited, so the next call
                // of this task already sees a gate.
                let u = Update {
                    headers: *api.rate_limits(),
                    refund: cost_v,
                    gate,
                    drain,
                    answered: Answered::Error,
                };
                let opened = self.update(key, u).await;
                if let Some(g) = gate {
                    if opened != Some(false) {
                        tracing::info!(retry_after = ?g, request_id = api.request_id(), class = %class,
                            "429: closing the shared quota until its retry-after");
                    } else {
                        tracing::debug!(retry_after = ?g, request_id = api.request_id(), class = %class,
                            "429 while the shared quota is closed");
                    }
                }
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
    use super::super::allowance::FLOOR;
    use super::super::quota::capacity;
    use super::*;

    impl Admit {
        fn t(self) -> (bool, Duration, i64) {
            (self.admitted, self.wait, self.bound)
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
            answered: Answered::Success,
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
        assert!(p.admit(&key, &[1.0, 1.0, 100.0]).await.unwrap().admitted);
        let (ok, _, bound) = p.admit(&key, &[1.0, 1.0, 100.0]).await.unwrap().t();
        assert!(!ok);
        assert_eq!(bound, 2, "output tokens");
        // ...until the answer says it used 10: 90 come back.
        let mut u = learn([1000, 1000, 100], [999, 999, 90]);
        u.refund = [0.0, 0.0, 90.0];
        p.update(key.clone(), u).await;
        assert!(p.admit(&key, &[1.0, 1.0, 50.0]).await.unwrap().admitted);
        // A 429 closes the gate for its retry-after, on the Redis clock.
        let mut u = learn([1000, 1000, 100], [0, 0, 0]);
        u.gate = Some(Duration::from_secs(5));
        p.update(key.clone(), u).await;
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
        assert!(p.admit(key, &cost).await.unwrap().admitted);
        if let Some((l, r)) = first {
            p.update(key.to_owned(), learn(l, r)).await;
            assert!(p.admit(key, &cost).await.unwrap().admitted);
        }
        let u = Update {
            headers,
            refund: cost,
            gate: told.wait,
            drain: told.drain,
            answered: Answered::Error,
        };
        p.update(key.to_owned(), u).await;
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
        p.update(key.clone(), learn([60, 1000, 1000], [60, 1000, 1000]))
            .await;
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
        p.update(key.clone(), learn([60, 1000, 1000], [60, 1000, 1000]))
            .await;
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
        for (n, (field, value)) in [
            ("v0", "inf"),
            ("v1", "1e300"),
            ("v2", "-inf"),
            ("l0", "nan"),
            ("l1", "0"),
            ("t", "1e300"),
            ("g", "not a number"),
        ]
        .into_iter()
        .enumerate()
        {
            let key = format!("{}:quota:corrupt-{n}", p.inner.prefix);
            p.update(key.clone(), learn([60, 1000, 1000], [60, 1000, 1000]))
                .await;
            let _: () = redis::cmd("HSET")
                .arg(&key)
                .arg(field)
                .arg(value)
                .query_async(&mut con)
                .await
                .unwrap();
            // Found and replaced: a cold start (the first call goes, the next waits for its
            // answer), not a call looping against the store.
            let a = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
            assert!(
                a.corrupt && a.admitted && !a.known,
                "{field}={value}: {a:?}"
            );
            let b = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
            assert!(!b.corrupt && !b.admitted, "{field}={value}: {b:?}");
            assert_eq!(b.bound, COLD_START_BOUND);
            // The first answer teaches the limits again.
            p.update(key.clone(), learn([60, 1000, 1000], [59, 1000, 1000]))
                .await;
            let c = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
            assert!(
                c.admitted && c.known && !c.corrupt,
                "{field}={value}: {c:?}"
            );
        }
        // Counts the API could not mean never reach the store.
        let key = format!("{}:quota:hostile", p.inner.prefix);
        p.update(
            key.clone(),
            learn([u64::MAX, 1000, 1000], [u64::MAX, 1000, 1000]),
        )
        .await;
        let l0: Option<String> = redis::cmd("HGET")
            .arg(&key)
            .arg("l0")
            .query_async(&mut con)
            .await
            .unwrap();
        assert_eq!(l0, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn answers_without_headers_leave_the_quota_unpaced() {
        let Some(p) = pacer("unmanaged").await else {
            return;
        };
        let key = format!("{}:quota:unmanaged", p.inner.prefix);
        assert!(p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap().admitted);
        let a = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
        assert_eq!((a.admitted, a.bound), (false, COLD_START_BOUND));
        // A success without rate-limit headers (a proxy strips them): nothing to pace by.
        let mut u = learn([0; 3], [0; 3]);
        u.headers = RateLimitHeaders::default();
        p.update(key.clone(), u).await;
        for _ in 0..20 {
            let a = p.admit(&key, &[1.0, 0.0, 0.0]).await.unwrap();
            assert!(a.admitted && !a.known, "{a:?}");
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
}
