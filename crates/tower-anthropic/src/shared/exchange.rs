//! The circuit breakers and the retry budget, exchanged through the shared pacer's Redis.
//!
//! The layers keep their state in memory and offer what a store needs (the breakers: the
//! circuits opened here since the last exchange, and a way to open one another process
//! opened; the budget: the local changes since the last exchange, and the shared balance);
//! this module carries them to Redis and back every 250 ms.

use std::sync::Arc;
use std::time::Duration;

use super::{KEY_TTL, SharedPacer, lock};

/// How often breaker and budget state is exchanged.
pub(super) const SYNC_EVERY: Duration = Duration::from_millis(250);

pub(super) const BUDGET: &str = r"
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

impl SharedPacer {
    /// Starts the exchange of breaker and budget state (once, from a runtime).
    pub(super) fn start_sync(&self) {
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
}
