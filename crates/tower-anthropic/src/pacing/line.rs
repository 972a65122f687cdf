//! The local store of a quota: its [`QuotaState`] under the pacer's mutex, and the FIFO line
//! of the calls that wait for it (woken as the state makes room).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::state::{Admission, BUCKETS, Cost, QuotaState, Ready};

/// A call waiting in line.
#[derive(Debug)]
pub(crate) struct Waiter {
    pub(crate) cost: Cost,
    /// Past this instant the call does not wait (its deadline, or the pacer's `max_wait`).
    pub(crate) give_up_at: Instant,
    pub(crate) slot: Mutex<Slot>,
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) admitted: Option<Admission>,
    /// Taken out of line: its predicted wait grew past what it may wait (and the bucket that
    /// sets it, `None` for the gate).
    pub(crate) refused: Option<(Duration, Option<usize>)>,
    pub(crate) waker: Option<Waker>,
}

/// One quota of the local pacer: its state and the line of calls waiting for it.
#[derive(Debug)]
pub(crate) struct Quota {
    pub(crate) state: QuotaState,
    pub(crate) queue: VecDeque<Arc<Waiter>>,
    pub(crate) last_used: Instant,
    /// When the metrics last got this quota's headroom.
    headroom_at: Option<Instant>,
}

/// How often at most a quota's headroom goes to the metrics (a scraper reads gauges every
/// few seconds; setting them on every call would cost more than the call's pacing).
const HEADROOM_EVERY: Duration = Duration::from_millis(250);

impl Quota {
    pub(crate) fn new(state: QuotaState, now: Instant) -> Self {
        Self {
            state,
            queue: VecDeque::new(),
            last_used: now,
            headroom_at: None,
        }
    }

    /// The wait a new call of `cost` would have behind everyone in line (FIFO), and the
    /// bucket that sets it.
    pub(crate) fn predicted_wait(
        &mut self,
        cost: &Cost,
        now: Instant,
    ) -> (Duration, Option<usize>) {
        self.state.refill(now);
        let mut ahead = [0.0; BUCKETS];
        for w in &self.queue {
            self.state.add_capped(&mut ahead, &w.cost);
        }
        self.state.wait_behind(&ahead, cost, now)
    }

    /// After a 429 closed the gate: every call in line whose predicted start now lies past
    /// the longest it may wait leaves the line, refused (woken with its predicted wait), as a
    /// new call would be.
    pub(crate) fn rejudge(&mut self, now: Instant) {
        self.state.refill(now);
        let line = std::mem::take(&mut self.queue);
        let mut ahead = [0.0; BUCKETS];
        for w in line {
            let (wait, bound) = self.state.wait_behind(&ahead, &w.cost, now);
            if now + wait > w.give_up_at {
                let mut slot = w.slot.lock().unwrap_or_else(|e| e.into_inner());
                slot.refused = Some((wait, bound));
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            } else {
                self.state.add_capped(&mut ahead, &w.cost);
                self.queue.push_back(w);
            }
        }
    }

    /// After a settlement's refund: [`pump`](Self::pump), which admits whoever the refund
    /// makes room for. With nobody in line and no gate, all it would do is end a slow start
    /// and refill the buckets, which the next call does as well as this one: done without a
    /// clock (`now` is read only when needed).
    pub(crate) fn settled(&mut self, now: impl FnOnce() -> Instant) {
        if self.queue.is_empty() && self.state.gate.is_none() {
            self.state.settled();
            return;
        }
        self.pump(now(), true);
    }

    /// Admits whoever can go from the head of the line; returns when the (new) head may go,
    /// if it waits on time, and the bucket that holds it back. Wakes every call it admits,
    /// and (with `wake_head`, when called on anyone else's behalf) the head, to re-arm.
    pub(crate) fn pump(
        &mut self,
        now: Instant,
        wake_head: bool,
    ) -> Option<(Instant, Option<usize>)> {
        self.state.refill(now);
        self.last_used = now;
        self.state.open_gate(now, self.queue.is_empty());
        while let Some(head) = self.queue.front().cloned() {
            match self.state.ready(&head.cost, now) {
                Ready::Now => {
                    self.queue.pop_front();
                    let admission = self.state.admit(&head.cost, now);
                    let mut slot = head.slot.lock().unwrap_or_else(|e| e.into_inner());
                    slot.admitted = Some(admission);
                    if let Some(w) = slot.waker.take() {
                        w.wake();
                    }
                }
                Ready::At(at, bound) => {
                    if wake_head {
                        self.wake_head();
                    }
                    return Some((at, bound));
                }
            }
        }
        None
    }

    /// Admits a call of `cost` at once if no one is in line and nothing holds it back (the
    /// usual case: no waiter to make, no line to join, no wait to predict: a call admitted
    /// now is one whose [`predicted_wait`](Self::predicted_wait) is zero).
    pub(crate) fn try_admit(&mut self, cost: &Cost, now: Instant) -> Option<Admission> {
        self.state.refill(now);
        if !self.queue.is_empty() || self.state.ready(cost, now) != Ready::Now {
            return None;
        }
        self.last_used = now;
        // As `pump` has it, with the line empty.
        self.state.open_gate(now, true);
        Some(self.state.admit(cost, now))
    }

    fn wake_head(&self) {
        if let Some(head) = self.queue.front() {
            let mut slot = head.slot.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(w) = slot.waker.take() {
                w.wake();
            }
        }
    }

    /// The quota's headroom for the metrics (levels as of the last refill), when the metrics
    /// are on and it was last given at least [`HEADROOM_EVERY`] ago.
    pub(crate) fn headroom(
        &mut self,
        class: &str,
        now: Instant,
    ) -> Option<crate::metrics::Headroom> {
        if !crate::metrics::RECORDS_HEADROOM
            || self
                .headroom_at
                .is_some_and(|at| now.saturating_duration_since(at) < HEADROOM_EVERY)
        {
            return None;
        }
        self.headroom_at = Some(now);
        let b = &self.state.buckets;
        Some(crate::metrics::Headroom {
            quota: class.to_owned(),
            remaining: self.state.levels(),
            limits: b.each_ref().map(|b| b.limit.filter(|l| l.is_finite())),
            waiting: self.queue.len(),
        })
    }

    /// Whether nothing holds on to this quota any more (it may be forgotten).
    pub(crate) fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        self.queue.is_empty()
            && self.state.buckets.iter().all(|b| b.reserved <= 0.0)
            && now.saturating_duration_since(self.last_used) > idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::GateSnapshot;
    use crate::pacing::state::{capacity, sane_counts};
    use crate::rate_limit::RateLimitHeaders;

    fn quota_of(configured: Option<[f64; BUCKETS]>, cold_start: Duration, now: Instant) -> Quota {
        Quota::new(QuotaState::new(configured, cold_start, now), now)
    }

    fn quota(now: Instant) -> Quota {
        quota_of(Some([10.0, 1000.0, 1000.0]), Duration::from_secs(1), now)
    }

    #[test]
    fn corrections_count_what_a_level_moved_by() {
        let now = Instant::now();
        let mut q = quota_of(Some([10.0, f64::INFINITY, 1000.0]), Duration::ZERO, now);
        // Full: a refund moves nothing (requests, output), and a bucket without a limit
        // counts the refund as it is.
        q.state.refund(&[1.0, 5.0, 100.0], &[0.0; BUCKETS]);
        assert_eq!(q.state.corrections, [0.0, 5.0, 0.0]);
        assert_eq!(
            q.state.buckets[0].level,
            capacity(10.0, q.state.allowance.secs())
        );
        // Below full: all of it, up to the capacity.
        q.state.buckets[2].level = capacity(1000.0, q.state.allowance.secs()) - 40.0;
        q.state.refund(&[0.0, 0.0, 100.0], &[0.0; BUCKETS]);
        assert!(
            (q.state.corrections[2] - 40.0).abs() < 1e-9,
            "{:?}",
            q.state.corrections
        );
    }

    /// Headers saying `remaining` requests of `limit` are left (tokens unlimited).
    fn requests_left(limit: u64, remaining: u64) -> RateLimitHeaders {
        let mut h = RateLimitHeaders::default();
        h.requests.limit = Some(limit);
        h.requests.remaining = Some(remaining);
        h
    }

    /// A quota of `limit` requests a minute, learned with the bucket full.
    fn learned(limit: u64, now: Instant) -> Quota {
        let mut q = quota_of(None, Duration::ZERO, now);
        let first = q.try_admit(&[1.0, 0.0, 0.0], now).unwrap();
        assert!(q.state.learn(
            &requests_left(limit, limit - 1),
            &first,
            &[1.0, 0.0, 0.0],
            true,
            now
        ));
        q.state.refund(&[0.0; BUCKETS], &[1.0, 0.0, 0.0]);
        q
    }

    const ONE: Cost = [1.0, 0.0, 0.0];

    #[test]
    fn a_late_read_answer_of_an_early_call_is_no_drift() {
        // 600 a minute. Call A is admitted, then 100 more; the 100 reach the server first, are
        // answered and settled; A's answer, read last, shows 100 fewer than the pacer saw
        // when it admitted A. They were admitted after A: reordering, not drift.
        let t0 = Instant::now();
        let mut q = learned(600, t0);
        let a = q.try_admit(&ONE, t0).unwrap();
        let before = q.state.buckets[0].level;
        let mut others = Vec::new();
        for _ in 0..100 {
            others.push(q.try_admit(&ONE, t0).unwrap());
        }
        let server_after_a = a.levels[0] - 100.0;
        for (k, o) in others.iter().enumerate() {
            let seen = (a.levels[0] + 1.0 - 1.0 - k as f64).floor() as u64;
            assert!(q.state.learn(&requests_left(600, seen), o, &ONE, true, t0));
            q.state.refund(&[0.0; BUCKETS], &ONE);
        }
        let level = q.state.buckets[0].level;
        assert!(q.state.learn(
            &requests_left(600, server_after_a.floor() as u64),
            &a,
            &ONE,
            true,
            t0
        ));
        assert!(
            (q.state.buckets[0].level - level).abs() < 1.0,
            "{level} -> {}: the reordering was applied as drift",
            q.state.buckets[0].level
        );
        assert!((before - 100.0 - q.state.buckets[0].level).abs() < 1.0);
    }

    #[test]
    fn the_refill_while_a_call_was_on_its_way_is_not_counted_twice() {
        // 600 a minute, used up. A call admitted when one request is there reaches the
        // server half a second later (a busy host): the server has refilled 5 by then, and so
        // has this pacer. Its answer (5 left) is no drift.
        let t0 = Instant::now();
        let mut q = learned(600, t0);
        q.state.buckets[0].level = 1.0;
        let a = q.try_admit(&ONE, t0).unwrap();
        let t1 = t0 + Duration::from_millis(500);
        assert!(q.state.learn(&requests_left(600, 5), &a, &ONE, true, t1));
        assert!(
            (q.state.buckets[0].level - 5.0).abs() < 1e-6,
            "the refill, once: {}",
            q.state.buckets[0].level
        );
        // Another user of the quota is drift all the same: the server shows 3 fewer.
        q.state.refund(&[0.0; BUCKETS], &ONE);
        let b = q.try_admit(&ONE, t1).unwrap();
        assert!(q.state.learn(&requests_left(600, 1), &b, &ONE, true, t1));
        assert!(
            (q.state.buckets[0].level - 1.0).abs() < 1e-6,
            "{}",
            q.state.buckets[0].level
        );
    }

    #[test]
    fn a_429_for_a_call_admitted_with_room_is_a_surprise() {
        let t0 = Instant::now();
        let mut q = learned(600, t0);
        let a = q.try_admit(&ONE, t0).unwrap();
        assert!(q.state.admitted_with_room(&a));
        q.state.buckets[0].level = 0.5;
        let b = q.try_admit(&[0.4, 0.0, 0.0], t0).unwrap();
        assert!(q.state.admitted_with_room(&b));
        // Admitted unpaced (before the limits were known): no expectation to be surprised by.
        let mut fresh = quota_of(None, Duration::ZERO, t0);
        let c = fresh.try_admit(&ONE, t0).unwrap();
        assert!(!fresh.state.admitted_with_room(&c));
    }

    #[test]
    fn a_gate_opens_with_room_for_the_call_it_held_and_no_more() {
        let t0 = Instant::now();
        let mut q = learned(50, t0);
        q.state.buckets[0].level = -0.5;
        let gate = GateSnapshot {
            until: t0 + Duration::from_secs(1),
            closed_at: t0,
            retry_after: Duration::from_secs(1),
            request_id: None,
        };
        assert!(q.state.close_gate(gate.clone(), &ONE, t0), "a new gate");
        assert!(
            !q.state.close_gate(gate, &ONE, t0),
            "the same gate: not logged again"
        );
        // At the gate's opening one call goes, the next 1.2 s later (50 a minute).
        let open = t0 + Duration::from_secs(1);
        assert_eq!(q.predicted_wait(&ONE, t0).0, Duration::from_secs(1));
        assert!(q.try_admit(&ONE, open).is_some());
        let (wait, bound) = q.predicted_wait(&ONE, open);
        assert_eq!(bound, Some(0));
        assert!((wait.as_secs_f64() - 1.2).abs() < 1e-6, "{wait:?}");
    }

    /// A call of one request admitted at `now` (waited for, if it had to), answered with
    /// `headers`, and settled.
    fn answered(q: &mut Quota, headers: &RateLimitHeaders, now: Instant) {
        q.state.refill(now);
        let a = q.state.admit(&ONE, now);
        q.state.learn(headers, &a, &ONE, true, now);
        q.state.refund(&[0.0; BUCKETS], &ONE);
    }

    #[test]
    fn property_hostile_headers_then_one_sane_answer_are_the_sane_answer_alone() {
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let t0 = Instant::now();
        let sane = {
            let mut h = RateLimitHeaders::default();
            for (b, (l, r)) in [
                (&mut h.requests, (50, 40)),
                (&mut h.input_tokens, (40_000, 39_000)),
                (&mut h.output_tokens, (8_000, 7_000)),
            ] {
                b.limit = Some(l);
                b.remaining = Some(r);
            }
            h
        };
        let mut alone = quota_of(None, Duration::ZERO, t0);
        answered(&mut alone, &sane, t0);
        for case in 0..2000 {
            let mut q = quota_of(None, Duration::ZERO, t0);
            for _ in 0..next() % 6 {
                let mut h = RateLimitHeaders::default();
                for b in [&mut h.requests, &mut h.input_tokens, &mut h.output_tokens] {
                    let pick = |n: u64, r: u64| match n % 7 {
                        0 => None,
                        1 => Some(0),
                        2 => Some(u64::MAX),
                        3 => Some(10_000_000_000_000),
                        4 => Some(r % 100),
                        5 => Some(40_000),
                        _ => Some(r),
                    };
                    b.limit = pick(next(), next());
                    b.remaining = pick(next(), next());
                }
                answered(&mut q, &h, t0);
            }
            answered(&mut q, &sane, t0);
            for i in 0..BUCKETS {
                let (got, want) = (&q.state.buckets[i], &alone.state.buckets[i]);
                assert_eq!(got.limit, want.limit, "case {case}, bucket {i}");
                assert!(
                    (got.level - want.level).abs() < 1e-6 && got.reserved == 0.0,
                    "case {case}, bucket {i}: {got:?} against {want:?}"
                );
            }
        }
    }

    #[test]
    fn counts_the_api_could_not_mean_are_ignored() {
        assert_eq!(sane_counts(0, 50, 40), Some((50.0, 40.0)));
        assert_eq!(sane_counts(0, 0, 0), None, "no limit of zero");
        assert_eq!(sane_counts(0, 2_000_000_000, 0), None);
        assert_eq!(sane_counts(1, u64::MAX, 0), None);
        assert_eq!(sane_counts(1, 10_000_000_000_000, 5), None);
        assert_eq!(sane_counts(0, 50, 5000), None, "more left than the limit");
        // Token counts are rounded to the nearest thousand: a little over is the limit.
        assert_eq!(sane_counts(1, 1500, 2000), Some((1500.0, 1500.0)));
    }

    #[test]
    fn an_open_gate_is_forgotten_once_its_line_has_gone() {
        let t0 = Instant::now();
        let mut q = learned(600, t0);
        let gate = GateSnapshot {
            until: t0 + Duration::from_secs(1),
            closed_at: t0,
            retry_after: Duration::from_secs(1),
            request_id: None,
        };
        q.state.close_gate(gate, &ONE, t0);
        q.pump(t0 + Duration::from_millis(500), true);
        assert!(q.state.gate.is_some(), "still closed");
        q.pump(t0 + Duration::from_secs(2), true);
        assert!(q.state.gate.is_none(), "open, nobody in line: forgotten");
        q.settled(|| panic!("no clock to read"));
    }

    #[test]
    fn a_settlement_admits_whoever_its_refund_makes_room_for() {
        let now = Instant::now();
        let mut q = quota(now);
        assert!(q.try_admit(&[10.0, 0.0, 0.0], now).is_some());
        assert!(
            q.try_admit(&[1.0, 0.0, 0.0], now).is_none(),
            "no request left"
        );
        let waiter = Arc::new(Waiter {
            cost: [1.0, 0.0, 0.0],
            give_up_at: now + Duration::from_secs(60),
            slot: Mutex::new(Slot::default()),
        });
        q.queue.push_back(waiter.clone());
        q.state.refund(&[5.0, 0.0, 0.0], &[10.0, 0.0, 0.0]);
        let mut read = false;
        q.settled(|| {
            read = true;
            now
        });
        assert!(
            read,
            "someone in line: the clock is read and the line pumped"
        );
        assert!(waiter.slot.lock().unwrap().admitted.is_some());
        assert!(q.queue.is_empty());
    }

    #[test]
    fn a_settlement_with_nobody_in_line_reads_no_clock_and_ends_a_slow_start() {
        let now = Instant::now();
        let mut q = quota(now);
        q.state.slow_start = Some(now + Duration::from_secs(60));
        q.settled(|| panic!("no clock to read"));
        assert_eq!(
            q.state.slow_start, None,
            "as pump ends it with nobody in line and no gate"
        );
        // Under a gate, pump's rules need the time.
        q.state.gate = Some(GateSnapshot {
            until: now + Duration::from_secs(1),
            closed_at: now,
            retry_after: Duration::from_secs(1),
            request_id: None,
        });
        q.state.slow_start = Some(now + Duration::from_secs(60));
        let mut read = false;
        q.settled(|| {
            read = true;
            now
        });
        assert!(read);
        assert!(
            q.state.slow_start.is_some(),
            "the gate is still closed: the slow start goes on"
        );
    }
}
