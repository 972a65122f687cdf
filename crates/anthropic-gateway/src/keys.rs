//! Virtual keys: who a caller is, what it may call, how much it may use.
//!
//! A caller presents a secret in `x-api-key` (or `Authorization: Bearer`). The gateway keeps
//! only the SHA-256 of each secret: in the configuration file (`[[key]]`) and, with
//! `keys.redis = true`, in the Redis hash `{prefix}:keys` (field: the hex hash; value: the
//! key's settings as JSON, the fields of a `[[key]]` table), which every replica reads. A
//! key found in Redis is kept for 5 s, a secret found nowhere is remembered as unknown for as
//! long (at most 10,000 answers in all), so a caller retrying one key costs no Redis call per try.
//!
//! Each key may have requests and tokens per minute and a budget in USD. The rule is written
//! once ([`Accounts`]) over counters that live in this process or in Redis (shared by every
//! replica; `{prefix}:count:…`):
//! - a request is refused with a 429 while its key's minute (the wall clock's, in UTC) has
//!   used its requests or its tokens; `retry-after` is the rest of the minute;
//! - tokens are counted as the answers report them (input and output), after the answer;
//! - spend is the answers' usage at the `[prices]` of the model that answered (a model
//!   without a price costs nothing and is logged once), kept in micro-USD; a key that has
//!   spent its budget is refused with a 403 until the budget is raised, or, with
//!   `budget_period_days`, until the next period (periods of that many days counted from the
//!   Unix epoch, at UTC midnight) starts afresh.
//!
//! When Redis cannot be reached, keys in the file still work, a key only in Redis gets a 503,
//! and the per-key limits let calls through (each failure logged, at most once a minute):
//! the upstream quota is still paced.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::time::Instant;

use crate::config::{Config, KeyEntry, KeyHash, Price};

/// How long a key read from Redis (or found nowhere) is remembered.
const CACHE_FOR: Duration = Duration::from_secs(5);
/// Most entries of each cache.
const CACHE_MAX: usize = 10_000;
/// Each Redis call's bound.
const REDIS_TIMEOUT: Duration = Duration::from_millis(500);

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A caller, as its key says.
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The key's name (in logs and metrics; never the secret).
    pub name: Arc<str>,
    models: Option<HashSet<String>>,
    requests_per_minute: Option<u64>,
    tokens_per_minute: Option<u64>,
    budget_micros: Option<u64>,
    budget_period_days: Option<u32>,
}

impl Caller {
    fn from_entry(e: &KeyEntry) -> Self {
        Caller {
            name: Arc::from(e.name.0.as_str()),
            models: e
                .models
                .as_ref()
                .map(|m| m.iter().map(|m| m.0.clone()).collect()),
            requests_per_minute: e.requests_per_minute.map(|n| n.get()),
            tokens_per_minute: e.tokens_per_minute.map(|n| n.get()),
            budget_micros: e.budget_usd.map(|b| (b.0 * 1e6).round() as u64),
            budget_period_days: e.budget_period_days.map(|d| d.get()),
        }
    }

    /// Whether it may call `model`.
    pub fn may_use(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|m| m.contains(model))
    }
}

/// What a lookup found.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// A known key.
    Found(Arc<Caller>),
    /// No such key.
    Unknown,
    /// Not in the file, and Redis could not be asked.
    StoreDown,
}

/// The keys: the file's (replaced on reload) and, when configured, Redis's.
pub struct Keys {
    file: RwLock<Arc<HashMap<KeyHash, Arc<Caller>>>>,
    redis: Option<RedisKeys>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("in_file", &self.file.read().map(|m| m.len()).unwrap_or(0))
            .field("redis", &self.redis.is_some())
            .finish()
    }
}

/// A key read from Redis (`None`: found nowhere) and when.
type Cached = (Instant, Option<Arc<Caller>>);

struct RedisKeys {
    con: ConnectionManager,
    hash: String,
    cache: Mutex<HashMap<KeyHash, Cached>>,
}

impl Keys {
    /// The keys of `config`; Redis's through `con` when `keys.redis` is on.
    pub fn new(config: &Config, con: Option<ConnectionManager>) -> Self {
        let redis = con.filter(|_| config.keys.redis).map(|con| RedisKeys {
            con,
            hash: format!("{}:keys", config.pacing.prefix),
            cache: Mutex::new(HashMap::new()),
        });
        Keys {
            file: RwLock::new(Arc::new(file_keys(config))),
            redis,
        }
    }

    /// Takes the keys of a reloaded configuration.
    pub fn reload(&self, config: &Config) {
        let keys = Arc::new(file_keys(config));
        *self.file.write().unwrap_or_else(|e| e.into_inner()) = keys;
        if let Some(r) = &self.redis {
            lock(&r.cache).clear();
        }
    }

    /// Whether any key is configured (in the file, or possibly in Redis).
    pub fn any(&self) -> bool {
        self.redis.is_some() || !self.file.read().map(|m| m.is_empty()).unwrap_or(true)
    }

    /// The caller whose secret is `secret`.
    pub async fn lookup(&self, secret: &str) -> Lookup {
        let hash = KeyHash::of(secret);
        let found = self
            .file
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned();
        if let Some(c) = found {
            return Lookup::Found(c);
        }
        let Some(r) = &self.redis else {
            return Lookup::Unknown;
        };
        let now = Instant::now();
        if let Some((at, cached)) = lock(&r.cache).get(&hash)
            && now.duration_since(*at) < CACHE_FOR
        {
            return cached.clone().map_or(Lookup::Unknown, Lookup::Found);
        }
        let mut con = r.con.clone();
        let read = tokio::time::timeout(
            REDIS_TIMEOUT,
            con.hget::<_, _, Option<String>>(&r.hash, hash.hex()),
        )
        .await;
        let caller = match read {
            Ok(Ok(Some(json))) => match serde_json::from_str::<KeyEntry>(&json) {
                Ok(entry) => Some(Arc::new(Caller::from_entry(&entry))),
                Err(e) => {
                    tracing::warn!(error = %e, "a key in Redis is not valid; refused");
                    None
                }
            },
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot read keys from Redis");
                return Lookup::StoreDown;
            }
            Err(_) => {
                tracing::warn!("reading a key from Redis timed out");
                return Lookup::StoreDown;
            }
        };
        let mut cache = lock(&r.cache);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, (at, _)| now.duration_since(*at) < CACHE_FOR);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(hash, (now, caller.clone()));
        caller.map_or(Lookup::Unknown, Lookup::Found)
    }
}

fn file_keys(config: &Config) -> HashMap<KeyHash, Arc<Caller>> {
    config
        .key
        .iter()
        .filter_map(|e| Some((e.hash?, Arc::new(Caller::from_entry(e)))))
        .collect()
}

/// Stores a key in Redis (`anthropic-gateway key new --redis`).
pub async fn store_in_redis(
    con: &mut ConnectionManager,
    prefix: &str,
    hash: KeyHash,
    entry: &KeyEntry,
) -> redis::RedisResult<()> {
    let json = serde_json::to_string(entry).expect("a key entry serializes");
    con.hset::<_, _, _, ()>(format!("{prefix}:keys"), hash.hex(), json)
        .await
}

/// Why a caller is refused before anything goes upstream.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// Its minute's requests or tokens are used: retry after this many seconds.
    Rate {
        /// `requests` or `tokens`.
        what: &'static str,
        /// Seconds to the minute's end.
        retry_after: u64,
    },
    /// Its budget is spent.
    Budget,
}

/// Counters in this process or in Redis (see the [module docs](self)).
enum Counters {
    Local(Mutex<HashMap<String, (i64, Option<Instant>)>>),
    Redis {
        con: ConnectionManager,
        prefix: String,
    },
}

/// The per-key limits and spend: the rule, over the counters.
pub struct Accounts {
    counters: Counters,
    prices: RwLock<Arc<HashMap<String, Price>>>,
    /// When a failure was last logged (Redis trouble, a model without a price).
    logged: Mutex<HashMap<&'static str, Instant>>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let store = match self.counters {
            Counters::Local(_) => "local",
            Counters::Redis { .. } => "redis",
        };
        f.debug_struct("Accounts").field("store", &store).finish()
    }
}

/// Seconds since the epoch, as a float.
fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Accounts {
    /// Counters in this process.
    pub fn local(config: &Config) -> Self {
        Self::with(Counters::Local(Mutex::new(HashMap::new())), config)
    }

    /// Counters in Redis under the configured prefix.
    pub fn redis(con: ConnectionManager, config: &Config) -> Self {
        let prefix = format!("{}:count", config.pacing.prefix);
        Self::with(Counters::Redis { con, prefix }, config)
    }

    fn with(counters: Counters, config: &Config) -> Self {
        Accounts {
            counters,
            prices: RwLock::new(Arc::new(prices(config))),
            logged: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the prices of a reloaded configuration.
    pub fn reload(&self, config: &Config) {
        *self.prices.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(prices(config));
    }

    /// Logs `what` at most once a minute.
    fn warn_once(&self, what: &'static str, detail: &str) {
        let now = Instant::now();
        let mut logged = lock(&self.logged);
        let due = logged
            .get(what)
            .is_none_or(|at| now.duration_since(*at) >= Duration::from_secs(60));
        if due {
            logged.insert(what, now);
            tracing::warn!(detail, "{what}");
        }
    }

    /// A Redis call's answer, under the store's bound; `None` (logged) when it failed.
    async fn in_redis<T>(
        &self,
        call: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(REDIS_TIMEOUT, call).await {
            Ok(Ok(v)) => Some(v),
            Ok(Err(e)) => {
                self.warn_once("per-key counters: Redis failed", &e.to_string());
                None
            }
            Err(_) => {
                self.warn_once("per-key counters: Redis timed out", "");
                None
            }
        }
    }

    /// Adds `n` to the counter `name` (kept `ttl` after its last change; `None`: for good)
    /// and returns its new value; `None` when the store failed.
    async fn add(&self, name: &str, n: i64, ttl: Option<Duration>) -> Option<i64> {
        match &self.counters {
            Counters::Local(map) => {
                let now = Instant::now();
                let mut map = lock(map);
                if map.len() > 100_000 {
                    map.retain(|_, (_, exp)| exp.is_none_or(|e| e > now));
                }
                let entry = map.entry(name.to_owned()).or_insert((0, None));
                if entry.1.is_some_and(|e| e <= now) {
                    entry.0 = 0;
                }
                entry.0 = entry.0.saturating_add(n);
                entry.1 = ttl.map(|t| now + t);
                Some(entry.0)
            }
            Counters::Redis { con, prefix } => {
                let key = format!("{prefix}:{name}");
                let mut con = con.clone();
                let mut pipe = redis::pipe();
                pipe.atomic().incr(&key, n);
                if let Some(ttl) = ttl {
                    pipe.expire(&key, ttl.as_secs() as i64).ignore();
                }
                let v = self.in_redis(pipe.query_async::<(i64,)>(&mut con)).await?;
                Some(v.0)
            }
        }
    }

    /// The counter `name` (0 when absent; `None` when the store failed).
    async fn get(&self, name: &str) -> Option<i64> {
        match &self.counters {
            Counters::Local(map) => {
                let now = Instant::now();
                Some(
                    lock(map)
                        .get(name)
                        .filter(|(_, exp)| exp.is_none_or(|e| e > now))
                        .map_or(0, |(v, _)| *v),
                )
            }
            Counters::Redis { con, prefix } => {
                let mut con = con.clone();
                let key = format!("{prefix}:{name}");
                let v = self.in_redis(con.get::<_, Option<i64>>(key)).await?;
                Some(v.unwrap_or(0))
            }
        }
    }

    /// Admits one request of `caller`, or says why not (see the [module docs](self)).
    pub async fn admit(&self, caller: &Caller) -> Result<(), Refusal> {
        let now = unix_now();
        let minute = (now / 60.0).floor() as u64;
        let retry_after = (60.0 - now % 60.0).ceil().max(1.0) as u64;
        let name = &caller.name;
        if let Some(budget) = caller.budget_micros {
            let (key, _) = spend_counter(caller, now);
            let spent = self.get(&key).await.unwrap_or(0);
            if spent >= budget as i64 {
                return Err(Refusal::Budget);
            }
        }
        if let Some(tpm) = caller.tokens_per_minute {
            let used = self.get(&format!("tpm:{name}:{minute}")).await.unwrap_or(0);
            if used >= tpm as i64 {
                return Err(Refusal::Rate {
                    what: "tokens",
                    retry_after,
                });
            }
        }
        if let Some(rpm) = caller.requests_per_minute {
            let key = format!("rpm:{name}:{minute}");
            if let Some(n) = self.add(&key, 1, Some(Duration::from_secs(120))).await
                && n > rpm as i64
            {
                // Refused requests do not count: the minute holds `rpm` of them.
                self.add(&key, -1, Some(Duration::from_secs(120))).await;
                return Err(Refusal::Rate {
                    what: "requests",
                    retry_after,
                });
            }
        }
        Ok(())
    }

    /// What an answer of `model` used: counted against `caller`'s minute and budget.
    pub async fn answered(&self, caller: &Caller, model: &str, input: u64, output: u64) {
        let name = &caller.name;
        let tokens = i64::try_from(input.saturating_add(output)).unwrap_or(i64::MAX);
        if caller.tokens_per_minute.is_some() && tokens > 0 {
            let minute = (unix_now() / 60.0).floor() as u64;
            self.add(
                &format!("tpm:{name}:{minute}"),
                tokens,
                Some(Duration::from_secs(120)),
            )
            .await;
        }
        let micros = self.cost_micros(model, input, output);
        if micros > 0 {
            let (key, ttl) = spend_counter(caller, unix_now());
            self.add(&key, micros, ttl).await;
        }
    }

    /// What `input` and `output` tokens of `model` cost, in micro-USD.
    pub fn cost_micros(&self, model: &str, input: u64, output: u64) -> i64 {
        let prices = self
            .prices
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match prices.get(model) {
            // USD per million tokens is micro-USD per token.
            Some(p) => (p.input.0 * input as f64 + p.output.0 * output as f64)
                .round()
                .min(i64::MAX as f64) as i64,
            None => {
                if !prices.is_empty() && input + output > 0 {
                    self.warn_once("a model without a price costs nothing", model);
                }
                0
            }
        }
    }

    /// What `caller` has spent (this period, when its budget has one), in USD; `None` when
    /// the store failed.
    pub async fn spent_usd(&self, caller: &Caller) -> Option<f64> {
        let micros = self.get(&spend_counter(caller, unix_now()).0).await?;
        Some(micros as f64 / 1e6)
    }
}

/// The counter of `caller`'s spend at `now` (seconds since the epoch), and how long it is
/// kept: for good without a budget period, else a period and a day.
fn spend_counter(caller: &Caller, now: f64) -> (String, Option<Duration>) {
    let name = &caller.name;
    match caller.budget_period_days {
        None => (format!("spend:{name}"), None),
        Some(days) => {
            let period = (now / (86_400.0 * f64::from(days))).floor() as u64;
            let keep = Duration::from_secs(86_400 * (u64::from(days) + 1));
            (format!("spend:{name}:{days}d:{period}"), Some(keep))
        }
    }
}

fn prices(config: &Config) -> HashMap<String, Price> {
    config.prices.iter().map(|(m, p)| (m.clone(), *p)).collect()
}

/// A new secret: `sk-gw-` and 32 random bytes in hex.
pub fn new_secret() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sk-gw-{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config(text: &str) -> Config {
        Config::parse(text, Path::new("t.toml"), std::iter::empty()).unwrap()
    }

    fn keyed(extra: &str) -> (Config, String) {
        let secret = new_secret();
        let text = format!(
            "[[key]]\nname = \"a\"\nhash = \"sha256:{}\"\n{extra}\n[prices.m]\ninput = 3.0\noutput = 15.0\n",
            KeyHash::of(&secret).hex()
        );
        (config(&text), secret)
    }

    #[tokio::test]
    async fn file_keys_are_found_by_their_secret_only() {
        let (c, secret) = keyed("models = [\"m\"]");
        let keys = Keys::new(&c, None);
        let Lookup::Found(caller) = keys.lookup(&secret).await else {
            panic!("not found")
        };
        assert_eq!(&*caller.name, "a");
        assert!(caller.may_use("m") && !caller.may_use("other"));
        assert!(matches!(keys.lookup("sk-gw-wrong").await, Lookup::Unknown));
        keys.reload(&config(""));
        assert!(matches!(keys.lookup(&secret).await, Lookup::Unknown));
    }

    #[tokio::test]
    async fn requests_per_minute_refuse_past_the_limit() {
        let (c, _) = keyed("requests_per_minute = 3");
        let accounts = Accounts::local(&c);
        let caller = Caller::from_entry(&c.key[0]);
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            outcomes.push(accounts.admit(&caller).await.is_ok());
        }
        // (A minute may turn between two calls: then the count starts again.)
        let admitted = outcomes.iter().filter(|ok| **ok).count();
        assert!((3..=5).contains(&admitted) && !outcomes[..3].contains(&false));
        if admitted == 3 {
            let Err(Refusal::Rate { what, retry_after }) = accounts.admit(&caller).await else {
                panic!("admitted past the limit")
            };
            assert_eq!(what, "requests");
            assert!((1..=60).contains(&retry_after));
        }
    }

    #[test]
    fn a_budget_period_starts_a_new_counter() {
        let (c, _) = keyed("budget_usd = 1.0\nbudget_period_days = 7");
        let caller = Caller::from_entry(&c.key[0]);
        let week = 7.0 * 86_400.0;
        let (a, keep) = spend_counter(&caller, 3.0 * week + 10.0);
        let (b, _) = spend_counter(&caller, 4.0 * week - 10.0);
        let (next, _) = spend_counter(&caller, 4.0 * week + 10.0);
        assert_eq!(a, b);
        assert_ne!(a, next);
        assert_eq!(keep, Some(Duration::from_secs(8 * 86_400)));
        let (total, _) = keyed("budget_usd = 1.0");
        let (key, keep) = spend_counter(&Caller::from_entry(&total.key[0]), 0.0);
        assert_eq!((key.as_str(), keep), ("spend:a", None));
    }

    #[tokio::test]
    async fn tokens_and_spend_are_counted_from_answers() {
        let (c, _) = keyed("tokens_per_minute = 1000\nbudget_usd = 0.01");
        let accounts = Accounts::local(&c);
        let caller = Caller::from_entry(&c.key[0]);
        assert!(accounts.admit(&caller).await.is_ok());
        // 3 USD/M input, 15 USD/M output: 300 in + 500 out = 900 + 7500 micro-USD.
        assert_eq!(accounts.cost_micros("m", 300, 500), 8_400);
        accounts.answered(&caller, "m", 300, 500).await;
        assert_eq!(accounts.spent_usd(&caller).await, Some(0.0084));
        assert!(accounts.admit(&caller).await.is_ok());
        accounts.answered(&caller, "m", 100, 200).await;
        // 1,100 tokens this minute (past 1,000) and 0.0117 USD spent (past 0.01).
        assert_eq!(accounts.admit(&caller).await, Err(Refusal::Budget));
        accounts.reload(&config(""));
        assert_eq!(accounts.cost_micros("m", 300, 500), 0);
    }
}
