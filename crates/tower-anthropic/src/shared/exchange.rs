//! The circuit breakers and the retry budget, exchanged through the shared pacer's Redis.
//!
//! The layers keep their state in memory and offer what a store needs (the breakers: the
//! circuits opened here since the last exchange, and a way to open one another process
//! opened; the budget: the local changes since the last exchange, and the shared balance);
//! this module carries them to Redis and back every 250 ms.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{KEY_TTL, SharedPacer, lock};
use crate::retry::RetryBudget;

/// How often breaker and budget state is exchanged.
pub(super) const SYNC_EVERY: Duration = Duration::from_millis(250);

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
            let delta = b.take_unsent();
            let key = format!("{}:retry-budget", self.inner.prefix);
            let balance = self.exchange_budget(&mut con, &key, &b, delta).await;
            b.set_shared(balance);
        }
    }
}

/// The retry budget as Redis keeps it (its times on the Redis clock).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredBudget {
    balance: f64,
    updated_ms: f64,
}

impl SharedPacer {
    /// Adds this process's `delta` to the shared balance at `key`, by the budget's own rule
    /// ([`RetryBudget::shared_balance`]) and the quotas' compare-and-set; the balance after,
    /// or `None` when Redis did not answer (the budget then refills on its own).
    async fn exchange_budget(
        &self,
        con: &mut redis::aio::ConnectionManager,
        key: &str,
        budget: &RetryBudget,
        delta: f64,
    ) -> Option<f64> {
        let mut version = String::new();
        let mut state: Option<Vec<String>> = None;
        for _ in 0..8 {
            let new_version = self.inner.store.next_version();
            let (write, balance) = match &state {
                None => (String::new(), 0.0),
                Some(out) => {
                    let num = |i: usize| out.get(i).and_then(|s| s.parse::<f64>().ok());
                    let now_ms = num(1)? * 1000.0 + num(2)? / 1000.0;
                    let stored = out
                        .get(4)
                        .and_then(|s| serde_json::from_str::<StoredBudget>(s).ok())
                        .filter(|s| s.updated_ms.is_finite() && s.updated_ms <= now_ms);
                    let elapsed = stored.as_ref().map_or(0.0, |s| now_ms - s.updated_ms);
                    let elapsed = Duration::from_secs_f64((elapsed / 1000.0).min(86_400.0));
                    let balance = budget.shared_balance(stored.map(|s| s.balance), elapsed, delta);
                    let doc = StoredBudget {
                        balance,
                        updated_ms: now_ms,
                    };
                    (serde_json::to_string(&doc).ok()?, balance)
                }
            };
            let mut inv = self.inner.cas.key(key);
            inv.arg(&version)
                .arg(&write)
                .arg(&new_version)
                .arg(KEY_TTL.as_millis() as u64);
            let call = inv.invoke_async::<Vec<String>>(con);
            let out = tokio::time::timeout(self.inner.timeout, call)
                .await
                .ok()?
                .ok()?;
            if out.first().is_some_and(|s| s == "1") {
                return Some(balance);
            }
            version = out.get(3).cloned().unwrap_or_default();
            state = Some(out);
        }
        None
    }
}
