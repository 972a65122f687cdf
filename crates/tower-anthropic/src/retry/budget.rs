//! A retry budget shared by every clone of a stack.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Bounds the extra load retries add while the API is failing.
///
/// Only retries after a backoff the client chose draw from it: a wait the server directed
/// (`retry-after-ms` / `retry-after`) is the server pacing its clients and is obeyed as is.
///
/// A token bucket: every request deposits `ratio` tokens, every retry withdraws one, and a
/// small floor of `floor_per_sec` tokens a second trickles in; the balance never exceeds
/// `max_balance` and starts full. An isolated failing request therefore gets all its retries
/// (the balance starts at `max_balance`), while under a sustained outage the retries of `N`
/// requests over `t` seconds number at most `max_balance + ratio * N + floor_per_sec * t`:
/// about 1.2 attempts per request with the defaults.
///
/// Why not `tower::retry::budget::TpsBudget` (tower 0.5.3; it too uses tokio's clock): it
/// stores the withdrawal cost as the integer `1 / percent` (a 30% budget becomes 1 in 3, i.e.
/// 33%), panics (`assert!`) on a percent outside 0..=1000 or a `ttl` outside 1..=60 s, and
/// starts empty but for its per-second reserve, so a burst of isolated failures right after
/// start-up loses retries. This one keeps exact ratios, clamps absurd settings, and starts
/// full.
///
/// Cloning shares the bucket.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    ratio: f64,
    floor_per_sec: f64,
    max_balance: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    balance: f64,
    updated: Instant,
    /// While shared with other processes: deposits less withdrawals not yet sent, and no
    /// local refill (the shared store refills the floor once for everyone).
    shared: bool,
    unsent: f64,
}

impl Default for RetryBudget {
    /// 20% of requests, a floor of one retry a second, at most 10 retries banked.
    fn default() -> Self {
        Self::new(0.2, 1.0, 10.0)
    }
}

impl Shared {
    /// `balance` after `secs` of the floor's earnings, at most the most banked.
    fn earned(&self, balance: f64, secs: f64) -> f64 {
        (balance + secs * self.floor_per_sec).min(self.max_balance)
    }
}

impl RetryBudget {
    /// A budget allowing retries for `ratio` of requests, plus `floor_per_sec` retries a
    /// second, banking at most `max_balance` (at least 1).
    pub fn new(ratio: f64, floor_per_sec: f64, max_balance: f64) -> Self {
        let max_balance = if max_balance.is_finite() {
            max_balance.max(1.0)
        } else {
            1.0
        };
        Self {
            shared: Arc::new(Shared {
                ratio: if ratio.is_finite() {
                    ratio.max(0.0)
                } else {
                    0.0
                },
                floor_per_sec: if floor_per_sec.is_finite() {
                    floor_per_sec.max(0.0)
                } else {
                    0.0
                },
                max_balance,
                state: Mutex::new(State {
                    balance: max_balance,
                    updated: Instant::now(),
                    shared: false,
                    unsent: 0.0,
                }),
            }),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut State, &Shared) -> T) -> T {
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let dt = now.saturating_duration_since(st.updated).as_secs_f64();
        if !st.shared {
            st.balance = self.shared.earned(st.balance, dt);
        }
        st.updated = now;
        f(&mut st, &self.shared)
    }

    /// Records a new request (its first attempt).
    pub fn deposit(&self) {
        // No clock read: what the floor earned since the last update is added by the next
        // call that reads the clock. Deposits and earnings only add, each capped at
        // `max_balance`, so their order does not change the balance.
        let mut st = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
        st.balance = (st.balance + self.shared.ratio).min(self.shared.max_balance);
        st.unsent += self.shared.ratio;
    }

    /// Takes the token for one retry; `false` when the budget is spent.
    pub fn withdraw(&self) -> bool {
        self.with_state(|st, _| {
            if st.balance >= 1.0 {
                st.balance -= 1.0;
                st.unsent -= 1.0;
                true
            } else {
                false
            }
        })
    }

    /// The balance a store shared by processes holds after `elapsed` more and this process's
    /// `delta` ([`take_unsent`](Self::take_unsent)): what the floor earned meanwhile (as this
    /// budget earns it alone), then `delta`, within 0 and the most banked. `stored` is `None`
    /// when the store holds nothing yet (a full budget).
    ///
    /// Sharing a budget between processes: a store (the `redis` feature's
    /// `shared::SharedPacer::share_retry_budget` does, every 250 ms) keeps one balance,
    /// changes it with this rule, and hands it back with [`set_shared`](Self::set_shared).
    pub fn shared_balance(&self, stored: Option<f64>, elapsed: Duration, delta: f64) -> f64 {
        let sh = &self.shared;
        let stored = stored.filter(|b| b.is_finite()).unwrap_or(sh.max_balance);
        let earned = sh.earned(stored.clamp(0.0, sh.max_balance), elapsed.as_secs_f64());
        if delta.is_finite() {
            (earned + delta).clamp(0.0, sh.max_balance)
        } else {
            earned
        }
    }

    /// The deposits less the withdrawals since the last call (reset to none), for a shared
    /// store.
    pub fn take_unsent(&self) -> f64 {
        self.with_state(|st, _| std::mem::take(&mut st.unsent))
    }

    /// Shared mode on (`Some(balance)`: the store's balance after this process's changes
    /// were applied; no local refill) or off (`None`: back to refilling locally, as when the
    /// store is away).
    pub fn set_shared(&self, balance: Option<f64>) {
        self.with_state(|st, sh| match balance {
            Some(b) => {
                st.shared = true;
                st.balance = b.clamp(0.0, sh.max_balance);
            }
            None => st.shared = false,
        });
    }

    /// The current balance, in retries.
    pub fn balance(&self) -> f64 {
        self.with_state(|st, _| st.balance)
    }

    /// The most retries `requests` requests over `elapsed` may take.
    pub fn bound(&self, requests: u64, elapsed: Duration) -> f64 {
        let sh = &self.shared;
        sh.max_balance + sh.ratio * requests as f64 + sh.floor_per_sec * elapsed.as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn isolated_failures_get_their_retries_and_outages_are_bounded() {
        let b = RetryBudget::new(0.2, 0.0, 10.0);
        b.deposit();
        assert!(
            b.withdraw() && b.withdraw(),
            "a lone failing request retries"
        );
        // Spend everything, then each 5 requests earn one retry.
        while b.withdraw() {}
        for _ in 0..4 {
            b.deposit();
        }
        assert!(!b.withdraw());
        b.deposit();
        assert!(b.withdraw());
        assert!(!b.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn the_floor_refills_with_time_up_to_the_cap() {
        let b = RetryBudget::new(0.0, 2.0, 3.0);
        while b.withdraw() {}
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(b.withdraw());
        assert!(!b.withdraw());
        tokio::time::advance(Duration::from_secs(60)).await;
        assert_eq!(b.balance(), 3.0);
        let clone = b.clone();
        assert!(clone.withdraw());
        assert_eq!(b.balance(), 2.0, "clones share the bucket");
    }

    #[test]
    fn a_shared_balance_earns_and_spends_by_the_local_rule() {
        let b = RetryBudget::new(0.1, 2.0, 10.0);
        let s = Duration::from_secs;
        assert_eq!(
            b.shared_balance(None, s(0), 0.0),
            10.0,
            "nothing stored: full"
        );
        assert_eq!(
            b.shared_balance(Some(4.0), s(1), 0.0),
            6.0,
            "the floor earned 2"
        );
        assert_eq!(
            b.shared_balance(Some(4.0), s(60), 0.0),
            10.0,
            "at most the most banked"
        );
        assert_eq!(
            b.shared_balance(Some(4.0), s(0), -7.0),
            0.0,
            "never below zero"
        );
        assert_eq!(b.shared_balance(Some(4.0), s(0), 0.5), 4.5);
        assert_eq!(b.shared_balance(Some(f64::NAN), s(0), f64::NAN), 10.0);
        assert_eq!(b.shared_balance(Some(-5.0), s(1), 0.0), 2.0);
    }
}
