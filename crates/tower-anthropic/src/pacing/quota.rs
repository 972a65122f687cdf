//! The state of one quota: three token buckets learned from the API's headers, what is
//! reserved by calls in flight, the 429 gate, and the FIFO line of waiting calls.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use super::GateSnapshot;
use super::allowance::Allowance;
use crate::rate_limit::RateLimitHeaders;

/// The three buckets, in this order everywhere: requests, input tokens, output tokens.
pub(crate) const BUCKETS: usize = 3;
pub(crate) const NAMES: [&str; BUCKETS] = ["requests", "input tokens", "output tokens"];

/// What one attempt costs, per bucket.
pub(crate) type Cost = [f64; BUCKETS];

/// The most a bucket of `limit` per minute holds in this pacer's accounting: `hold` seconds
/// of refill less than the limit (the dispatch allowance: see [`Allowance`]).
pub(crate) fn capacity(limit: f64, hold: f64) -> f64 {
    limit * (1.0 - hold / 60.0)
}

/// One token bucket as the API keeps it: `limit` per minute, refilled continuously (by its
/// [`Quota`], which keeps the one clock its three buckets share), up to its [`capacity`]
/// (`hold` is the quota's dispatch allowance in seconds).
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    /// Per minute; `None` until learned (or configured): the bucket does not pace.
    pub(crate) limit: Option<f64>,
    /// What our accounting says is left now (may go negative: output is settled later).
    pub(crate) level: f64,
    /// Reserved by admitted calls not yet settled.
    pub(crate) reserved: f64,
}

impl Bucket {
    fn new(limit: Option<f64>, hold: f64) -> Self {
        Self {
            limit,
            level: limit.map_or(0.0, |l| capacity(l, hold)),
            reserved: 0.0,
        }
    }

    /// Adds what `dt` seconds bring, up to the capacity.
    fn refill(&mut self, dt: f64, hold: f64) {
        if let Some(limit) = self.limit {
            self.level = (self.level + dt * limit / 60.0).min(capacity(limit, hold));
        }
    }

    /// How long until `need` fits (a need above the capacity fits when the bucket is full, so
    /// the server, not this pacer, has the last word on it).
    fn wait_for(&self, need: f64, hold: f64) -> Duration {
        match self.limit {
            Some(limit) if limit > 0.0 => {
                let need = need.min(capacity(limit, hold));
                if self.level >= need {
                    Duration::ZERO
                } else {
                    secs((need - self.level) * 60.0 / limit)
                }
            }
            _ => Duration::ZERO,
        }
    }
}

/// What a level moved by from `before` to `after` when `asked` was added: less than `asked`
/// when the bucket was full. (A bucket with no limit, configured as infinite, counts
/// `asked`.)
fn moved(before: f64, after: f64, asked: f64) -> f64 {
    let m = after - before;
    if m.is_finite() { m } else { asked }
}

/// Seconds as a `Duration`, saturating (a bad number never panics).
pub(crate) fn secs(s: f64) -> Duration {
    if s.is_finite() && s > 0.0 {
        Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX)
    } else {
        Duration::ZERO
    }
}

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

/// What the pacer recorded when it admitted a call: its levels right after the reservation
/// and the corrections applied so far, so the server's answer can be compared with the state
/// it saw, without counting other calls twice.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Admission {
    pub(crate) levels: [f64; BUCKETS],
    pub(crate) corrections: [f64; BUCKETS],
    /// What other calls held reserved when this one was admitted.
    pub(crate) ahead: [f64; BUCKETS],
    /// Everything admitted on this quota so far, this call included.
    pub(crate) admitted: [f64; BUCKETS],
    /// When it was admitted.
    pub(crate) at: Instant,
    /// Admitted before the limits were known.
    pub(crate) unpaced: bool,
}

/// When the head of the line may go.
#[derive(Debug)]
enum Ready {
    Now,
    At(Instant, Option<usize>),
}

/// One quota (key identity x model class).
#[derive(Debug)]
pub(crate) struct Quota {
    pub(crate) buckets: [Bucket; BUCKETS],
    /// When the buckets were last refilled (or, under a 429's gate, when they start to be:
    /// nothing accrues before then).
    updated: Instant,
    /// Limits known (learned or configured). Until then calls go out unpaced (but counted,
    /// so the first answer's `remaining` can be reconciled with them).
    pub(crate) learned: bool,
    /// An answer carried no rate-limit headers before any did: nothing to pace by until
    /// then (when the next call is paced again, and its answer decides anew: a proxy that
    /// strips the headers costs one paced call a minute, a server that sent garbage once
    /// does not turn pacing off for good).
    pub(crate) unmanaged_until: Option<Instant>,
    /// While unlearned: when the first call went out, and how long the others wait for its
    /// answer before going out unpaced.
    first_sent: Option<Instant>,
    cold_start: Duration,
    /// The last 429's gate (kept after it opens, for the snapshot; [`gate_until`] is what
    /// holds calls back).
    ///
    /// [`gate_until`]: Self::gate_until
    pub(crate) gate: Option<GateSnapshot>,
    /// After a 429's gate, until the line that waited has drained: the line goes at the
    /// refill rate, whatever the server's `remaining` says it saved up meanwhile.
    slow_start: Option<Instant>,
    pub(crate) queue: VecDeque<Arc<Waiter>>,
    corrections: [f64; BUCKETS],
    /// Everything ever admitted (calls admitted after a given one are the difference).
    admitted: [f64; BUCKETS],
    /// How late after admission a call may reach the server: the buckets hold that much
    /// refill less than their limits.
    pub(crate) allowance: Allowance,
    pub(crate) last_used: Instant,
    /// When the metrics last got this quota's headroom.
    headroom_at: Option<Instant>,
}

/// How long a quota whose answers carry no rate-limit headers goes unpaced before a call is
/// paced again to see.
pub(crate) const UNMANAGED_FOR: Duration = Duration::from_secs(60);

/// The largest per-minute limits taken from an answer's headers (requests, input tokens,
/// output tokens): a thousand times the API's largest published tiers and above the mock's
/// "no limit" defaults (10^8 requests, 10^11 tokens). A larger one is no limit the API could
/// mean (a header of 2^64 - 1, 10^13): the pair is ignored, as an unparsable one is.
pub(crate) const MAX_LIMIT: [f64; BUCKETS] = [1e9, 1e12, 1e12];

/// A bucket's `(limit, remaining)` from an answer's headers, if the API could mean them: a
/// limit from 1 to [`MAX_LIMIT`], and a remaining count no larger than the limit (token counts
/// are rounded to the nearest thousand, so up to a thousand over is the limit itself).
pub(crate) fn sane_counts(bucket: usize, limit: u64, remaining: u64) -> Option<(f64, f64)> {
    let (l, r) = (limit as f64, remaining as f64);
    ((1.0..=MAX_LIMIT[bucket]).contains(&l) && r <= l + 1000.0).then_some((l, r.min(l)))
}

/// How often at most a quota's headroom goes to the metrics (a scraper reads gauges every
/// few seconds; setting them on every call would cost more than the call's pacing).
const HEADROOM_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

impl Quota {
    pub(crate) fn new(
        configured: Option<[f64; BUCKETS]>,
        cold_start: Duration,
        now: Instant,
    ) -> Self {
        let allowance = Allowance::default();
        let hold = allowance.secs();
        let b = |i: usize| Bucket::new(configured.map(|c| c[i]), hold);
        Self {
            buckets: [b(0), b(1), b(2)],
            updated: now,
            learned: configured.is_some(),
            unmanaged_until: None,
            first_sent: None,
            cold_start,
            gate: None,
            slow_start: None,
            queue: VecDeque::new(),
            corrections: [0.0; BUCKETS],
            admitted: [0.0; BUCKETS],
            allowance,
            last_used: now,
            headroom_at: None,
        }
    }

    /// Refills the buckets up to `now` (nothing when no time has passed, or under a gate).
    fn refill(&mut self, now: Instant) {
        if now <= self.updated {
            return;
        }
        let dt = (now - self.updated).as_secs_f64();
        self.allowance.update(now);
        let hold = self.allowance.secs();
        for b in &mut self.buckets {
            b.refill(dt, hold);
        }
        self.updated = now;
    }

    /// Whether this quota paces at all.
    pub(crate) fn paces(&self, now: Instant) -> bool {
        self.unmanaged_until.is_none_or(|until| now >= until)
    }

    /// An answer without rate-limit headers came before any with them.
    pub(crate) fn unmanaged(&mut self, now: Instant) {
        if !self.learned {
            self.unmanaged_until = Some(now + UNMANAGED_FOR);
        }
    }

    fn ready(&self, cost: &Cost, now: Instant) -> Ready {
        let mut at = now;
        let mut bound = None;
        if let Some(gate) = self.gate_until() {
            if gate > now {
                at = gate;
            }
        }
        if !self.learned {
            // Cold start: the first call goes; the others wait for its answer (which teaches
            // the limits) for a while, then go unpaced.
            if let Some(first) = self.first_sent {
                let until = first + self.cold_start;
                if until > at {
                    at = until;
                    bound = None;
                }
            }
            return if at > now {
                Ready::At(at, bound)
            } else {
                Ready::Now
            };
        }
        for (i, b) in self.buckets.iter().enumerate() {
            let wait = b.wait_for(cost[i], self.allowance.secs());
            // The usual case, room now: no instant to compute.
            if wait.is_zero() {
                continue;
            }
            let t = now + wait;
            if t > at {
                at = t;
                bound = Some(i);
            }
        }
        if at > now {
            Ready::At(at, bound)
        } else {
            Ready::Now
        }
    }

    /// The wait a new call of `cost` would have behind everyone in line (FIFO), and the
    /// bucket that sets it.
    pub(crate) fn predicted_wait(
        &mut self,
        cost: &Cost,
        now: Instant,
    ) -> (Duration, Option<usize>) {
        self.refill(now);
        let mut ahead = [0.0; BUCKETS];
        for w in &self.queue {
            self.add_capped(&mut ahead, &w.cost);
        }
        self.wait_behind(&ahead, cost, now)
    }

    /// Adds `cost` to `sum`, each bucket's part at most its capacity (as [`Bucket::wait_for`]
    /// counts a need).
    fn add_capped(&self, sum: &mut Cost, cost: &Cost) {
        let hold = self.allowance.secs();
        for (i, b) in self.buckets.iter().enumerate() {
            let full = b.limit.map_or(f64::INFINITY, |l| capacity(l, hold));
            sum[i] += cost[i].min(full);
        }
    }

    /// The wait of a call of `cost` behind calls that need `ahead` (the gate, or the refill
    /// the buckets need for both), and the bucket that sets it (`None` for the gate).
    fn wait_behind(&self, ahead: &Cost, cost: &Cost, now: Instant) -> (Duration, Option<usize>) {
        let mut wait = self
            .gate_until()
            .map_or(Duration::ZERO, |g| g.saturating_duration_since(now));
        let mut bound = None;
        if self.learned {
            let hold = self.allowance.secs();
            for (i, b) in self.buckets.iter().enumerate() {
                let Some(limit) = b.limit.filter(|l| *l > 0.0) else {
                    continue;
                };
                let need = ahead[i] + cost[i].min(capacity(limit, hold));
                let t = secs((need - b.level) * 60.0 / limit);
                if t > wait {
                    wait = t;
                    bound = Some(i);
                }
            }
        }
        (wait, bound)
    }

    /// After a 429 closed the gate: every call in line whose predicted start now lies past
    /// the longest it may wait leaves the line, refused (woken with its predicted wait), as a
    /// new call would be.
    pub(crate) fn rejudge(&mut self, now: Instant) {
        self.refill(now);
        let line = std::mem::take(&mut self.queue);
        let mut ahead = [0.0; BUCKETS];
        for w in line {
            let (wait, bound) = self.wait_behind(&ahead, &w.cost, now);
            if now + wait > w.give_up_at {
                let mut slot = w.slot.lock().unwrap_or_else(|e| e.into_inner());
                slot.refused = Some((wait, bound));
                if let Some(waker) = slot.waker.take() {
                    waker.wake();
                }
            } else {
                self.add_capped(&mut ahead, &w.cost);
                self.queue.push_back(w);
            }
        }
    }

    /// After a settlement's refund: [`pump`](Self::pump), which admits whoever the refund
    /// makes room for. With nobody in line and no gate, all it would do is end a slow start
    /// and refill the buckets, which the next call does as well as this one: done without a
    /// clock (`now` is read only when needed).
    pub(crate) fn settled(&mut self, now: impl FnOnce() -> Instant) {
        if self.queue.is_empty() && self.gate.is_none() {
            self.slow_start = None;
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
        self.refill(now);
        self.last_used = now;
        if self.slow_start.is_some_and(|end| {
            now >= end || (self.queue.is_empty() && self.gate_until().is_none_or(|g| g <= now))
        }) {
            self.slow_start = None;
        }
        if self.slow_start.is_none() && self.gate_until().is_some_and(|g| g <= now) {
            // Open, and its slow start over: forgotten (a settlement with nobody in line and
            // no gate reads no clock again).
            self.gate = None;
        }
        while let Some(head) = self.queue.front().cloned() {
            match self.ready(&head.cost, now) {
                Ready::Now => {
                    self.queue.pop_front();
                    let admission = self.admit(&head.cost, now);
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
        self.refill(now);
        if !self.queue.is_empty() || !matches!(self.ready(cost, now), Ready::Now) {
            return None;
        }
        self.last_used = now;
        // As `pump` has it, with the line empty.
        if self
            .slow_start
            .is_some_and(|end| now >= end || self.gate_until().is_none_or(|g| g <= now))
        {
            self.slow_start = None;
        }
        Some(self.admit(cost, now))
    }

    /// Reserves `cost` for a call that goes now; what the pacer saw, for its answer.
    fn admit(&mut self, cost: &Cost, now: Instant) -> Admission {
        let unpaced = !self.learned;
        if unpaced && self.first_sent.is_none() {
            self.first_sent = Some(now);
        }
        let ahead = [0, 1, 2].map(|i| self.buckets[i].reserved);
        self.reserve(cost);
        Admission {
            levels: self.levels(),
            corrections: self.corrections,
            ahead,
            admitted: self.admitted,
            at: now,
            unpaced,
        }
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
        Some(crate::metrics::Headroom {
            quota: class.to_owned(),
            remaining: self.levels(),
            limits: [0, 1, 2].map(|i| self.buckets[i].limit.filter(|l| l.is_finite())),
            waiting: self.queue.len(),
        })
    }

    fn levels(&self) -> [f64; BUCKETS] {
        [
            self.buckets[0].level,
            self.buckets[1].level,
            self.buckets[2].level,
        ]
    }

    fn reserve(&mut self, cost: &Cost) {
        for (i, (b, c)) in self.buckets.iter_mut().zip(cost).enumerate() {
            b.level -= c;
            b.reserved += c;
            self.admitted[i] += c;
        }
    }

    /// Gives back part of a reservation (what the API did not charge, or will not). A refund
    /// counts as a correction: the server gave it back too, and a later answer's `remaining`
    /// may already show it.
    pub(crate) fn refund(&mut self, amounts: &Cost, release: &Cost) {
        let hold = self.allowance.secs();
        for (i, b) in self.buckets.iter_mut().enumerate() {
            let before = b.level;
            b.level += amounts[i];
            if let Some(limit) = b.limit {
                b.level = b.level.min(capacity(limit, hold));
            }
            b.reserved = (b.reserved - release[i]).max(0.0);
            self.corrections[i] += moved(before, b.level, amounts[i]);
        }
    }

    /// Learns from a response's headers. `admission` is what the pacer saw when it admitted
    /// the call; `charged` says whether the server charged it (a 2xx) or not (an error
    /// status), and `cost` what was reserved for it. Returns whether anything was learned.
    pub(crate) fn learn(
        &mut self,
        headers: &RateLimitHeaders,
        admission: &Admission,
        cost: &Cost,
        charged: bool,
        now: Instant,
    ) -> bool {
        self.refill(now);
        let limits = [
            &headers.requests,
            &headers.input_tokens,
            &headers.output_tokens,
        ];
        let mut learned = false;
        let hold = self.allowance.secs();
        for (i, h) in limits.iter().enumerate() {
            let Some((limit, remaining)) = h
                .limit
                .zip(h.remaining)
                .and_then(|(l, r)| sane_counts(i, l, r))
            else {
                continue;
            };
            learned = true;
            let b = &mut self.buckets[i];
            // A limit other than the one known replaces it, and what was learned under it.
            let first = b.limit != Some(limit);
            b.limit = Some(limit);
            if first || admission.unpaced {
                // The first answer (under this limit): the server's view is the whole truth,
                // less what other calls admitted since hold.
                let others = (b.reserved - if charged { cost[i] } else { 0.0 }).max(0.0);
                b.level = (remaining - others).min(capacity(limit, hold));
                continue;
            }
            // What the server saw at admission, against what we saw then (corrected by what
            // was applied since): the difference is drift (another user of the quota, or an
            // estimate that was off), applied once.
            let ours = admission.levels[i]
                + (self.corrections[i] - admission.corrections[i])
                + if charged { 0.0 } else { cost[i] };
            // Calls in flight reach the server in another order than this pacer admitted
            // them, so a difference up to what they explain is noise, not drift: only what
            // lies beyond it is applied. The server may show more than this pacer saw because
            // calls admitted before this one had not reached it yet (they were in flight at
            // this call's admission), and because it refilled while this call was on its
            // way, which this pacer counts too; it may show less because calls admitted after
            // this one reached it first. Those calls may have been settled by the time this
            // answer is read (on a busy host, long after it arrived), so what is in flight
            // now is not enough: taken for it, a late answer applied a burst's reordering as
            // drift (the level sank by hundreds, then leapt back: stalls, then herds).
            let in_flight = (b.reserved - cost[i]).max(0.0);
            let raw = remaining - ours;
            let drift = if raw > 0.0 {
                let refilled =
                    now.saturating_duration_since(admission.at).as_secs_f64() * limit / 60.0;
                (raw - in_flight.max(admission.ahead[i]) - refilled).max(0.0)
            } else {
                let after = self.admitted[i] - admission.admitted[i];
                (raw + in_flight.max(after)).min(0.0)
            };
            if drift > 0.0 && self.slow_start.is_some() {
                continue;
            }
            if drift.is_finite() && drift != 0.0 {
                let before = b.level;
                b.level = (b.level + drift).min(capacity(limit, hold));
                self.corrections[i] += moved(before, b.level, drift);
            }
        }
        if learned {
            self.learned = true;
        }
        learned
    }

    /// After a 429 that did not say which bucket ran out (no rate-limit headers, or an
    /// acceleration limit): nothing is left, so calls after it go at the refill rate.
    pub(crate) fn drain(&mut self) {
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if b.limit.is_some() {
                let before = b.level;
                b.level = b.level.min(0.0);
                self.corrections[i] += moved(before, b.level, 0.0);
            }
        }
    }

    /// Whether a call was admitted with its limits known and room in every bucket (a 429 for
    /// it then means calls reach the server later than the allowance covers).
    pub(crate) fn admitted_with_room(&self, admission: &Admission) -> bool {
        !admission.unpaced
            && self
                .buckets
                .iter()
                .zip(admission.levels)
                .all(|(b, level)| b.limit.is_none() || level >= 0.0)
    }

    /// Until when a 429 holds every call of this quota back, if one does.
    pub(crate) fn gate_until(&self) -> Option<Instant> {
        self.gate.as_ref().map(|g| g.until)
    }

    /// A 429 that named a wait (`retry-after`) for a call of `cost`, as `gate` says: nothing
    /// on this quota goes before `gate.until`. Returns whether this closed the quota (false
    /// when a gate was already closed: one log line per gate).
    ///
    /// The wait and the buckets' refill overlap instead of adding up: the server's wait is
    /// its word that this call fits once it is over (`remaining` is rounded down, so a
    /// `remaining: 0` with `retry-after: 1` on a 50-a-minute quota is a level of at least 0.17,
    /// not 0), so each bucket holds at least this call's cost when the gate opens. What the
    /// buckets would refill beyond that during the gate is not counted: the calls that waited
    /// go one by one at the refill rate (a slow start, never a herd).
    pub(crate) fn close_gate(&mut self, gate: GateSnapshot, cost: &Cost, now: Instant) -> bool {
        self.refill(now);
        let until = gate.until;
        let opened = self.gate_until().is_none_or(|g| g <= now);
        let hold = self.allowance.secs();
        if self.gate_until().is_none_or(|g| g < until) {
            self.gate = Some(gate);
        }
        for (i, b) in self.buckets.iter_mut().enumerate() {
            if let Some(limit) = b.limit.filter(|l| *l > 0.0) {
                let before = b.level;
                b.level = b.level.max(cost[i].min(capacity(limit, hold)));
                self.corrections[i] += moved(before, b.level, 0.0);
            }
        }
        // The slow start lasts until the line that waited has drained, at most four times
        // the gate (at least 4 s) after it opens.
        let len = until
            .saturating_duration_since(now)
            .max(Duration::from_secs(1));
        self.slow_start = Some(until + len * 4);
        self.updated = self.updated.max(until);
        opened
    }

    /// An answer came while the limits are still unknown (an error status carries no
    /// rate-limit headers): the next call in line may go, alone again.
    pub(crate) fn first_answered(&mut self) {
        if !self.learned {
            self.first_sent = None;
        }
    }

    /// Whether nothing holds on to this quota any more (it may be forgotten).
    pub(crate) fn is_idle(&self, now: Instant, idle: Duration) -> bool {
        self.queue.is_empty()
            && self.buckets.iter().all(|b| b.reserved <= 0.0)
            && now.saturating_duration_since(self.last_used) > idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quota(now: Instant) -> Quota {
        Quota::new(Some([10.0, 1000.0, 1000.0]), Duration::from_secs(1), now)
    }

    #[test]
    fn corrections_count_what_a_level_moved_by() {
        let now = Instant::now();
        let mut q = Quota::new(Some([10.0, f64::INFINITY, 1000.0]), Duration::ZERO, now);
        // Full: a refund moves nothing (requests, output), and a bucket without a limit
        // counts the refund as it is.
        q.refund(&[1.0, 5.0, 100.0], &[0.0; BUCKETS]);
        assert_eq!(q.corrections, [0.0, 5.0, 0.0]);
        assert_eq!(q.buckets[0].level, capacity(10.0, q.allowance.secs()));
        // Below full: all of it, up to the capacity.
        q.buckets[2].level = capacity(1000.0, q.allowance.secs()) - 40.0;
        q.refund(&[0.0, 0.0, 100.0], &[0.0; BUCKETS]);
        assert!(
            (q.corrections[2] - 40.0).abs() < 1e-9,
            "{:?}",
            q.corrections
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
        let mut q = Quota::new(None, Duration::ZERO, now);
        let first = q.try_admit(&[1.0, 0.0, 0.0], now).unwrap();
        assert!(q.learn(
            &requests_left(limit, limit - 1),
            &first,
            &[1.0, 0.0, 0.0],
            true,
            now
        ));
        q.refund(&[0.0; BUCKETS], &[1.0, 0.0, 0.0]);
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
        let before = q.buckets[0].level;
        let mut others = Vec::new();
        for _ in 0..100 {
            others.push(q.try_admit(&ONE, t0).unwrap());
        }
        let server_after_a = a.levels[0] - 100.0;
        for (k, o) in others.iter().enumerate() {
            let seen = (a.levels[0] + 1.0 - 1.0 - k as f64).floor() as u64;
            assert!(q.learn(&requests_left(600, seen), o, &ONE, true, t0));
            q.refund(&[0.0; BUCKETS], &ONE);
        }
        let level = q.buckets[0].level;
        assert!(q.learn(
            &requests_left(600, server_after_a.floor() as u64),
            &a,
            &ONE,
            true,
            t0
        ));
        assert!(
            (q.buckets[0].level - level).abs() < 1.0,
            "{level} -> {}: the reordering was applied as drift",
            q.buckets[0].level
        );
        assert!((before - 100.0 - q.buckets[0].level).abs() < 1.0);
    }

    #[test]
    fn the_refill_while_a_call_was_on_its_way_is_not_counted_twice() {
        // 600 a minute, used up. A call admitted when one request is there reaches the
        // server half a second later (a busy host): the server has refilled 5 by then, and so
        // has this pacer. Its answer (5 left) is no drift.
        let t0 = Instant::now();
        let mut q = learned(600, t0);
        q.buckets[0].level = 1.0;
        let a = q.try_admit(&ONE, t0).unwrap();
        let t1 = t0 + Duration::from_millis(500);
        assert!(q.learn(&requests_left(600, 5), &a, &ONE, true, t1));
        assert!(
            (q.buckets[0].level - 5.0).abs() < 1e-6,
            "the refill, once: {}",
            q.buckets[0].level
        );
        // Another user of the quota is drift all the same: the server shows 3 fewer.
        q.refund(&[0.0; BUCKETS], &ONE);
        let b = q.try_admit(&ONE, t1).unwrap();
        assert!(q.learn(&requests_left(600, 1), &b, &ONE, true, t1));
        assert!(
            (q.buckets[0].level - 1.0).abs() < 1e-6,
            "{}",
            q.buckets[0].level
        );
    }

    #[test]
    fn a_429_for_a_call_admitted_with_room_is_a_surprise() {
        let t0 = Instant::now();
        let mut q = learned(600, t0);
        let a = q.try_admit(&ONE, t0).unwrap();
        assert!(q.admitted_with_room(&a));
        q.buckets[0].level = 0.5;
        let b = q.try_admit(&[0.4, 0.0, 0.0], t0).unwrap();
        assert!(q.admitted_with_room(&b));
        // Admitted unpaced (before the limits were known): no expectation to be surprised by.
        let mut fresh = Quota::new(None, Duration::ZERO, t0);
        let c = fresh.try_admit(&ONE, t0).unwrap();
        assert!(!fresh.admitted_with_room(&c));
    }

    #[test]
    fn a_gate_opens_with_room_for_the_call_it_held_and_no_more() {
        let t0 = Instant::now();
        let mut q = learned(50, t0);
        q.buckets[0].level = -0.5;
        let gate = GateSnapshot {
            until: t0 + Duration::from_secs(1),
            closed_at: t0,
            retry_after: Duration::from_secs(1),
            request_id: None,
        };
        assert!(q.close_gate(gate.clone(), &ONE, t0), "a new gate");
        assert!(
            !q.close_gate(gate, &ONE, t0),
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
        q.refill(now);
        let a = q.admit(&ONE, now);
        q.learn(headers, &a, &ONE, true, now);
        q.refund(&[0.0; BUCKETS], &ONE);
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
        let mut alone = Quota::new(None, Duration::ZERO, t0);
        answered(&mut alone, &sane, t0);
        for case in 0..2000 {
            let mut q = Quota::new(None, Duration::ZERO, t0);
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
                let (got, want) = (&q.buckets[i], &alone.buckets[i]);
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
        q.close_gate(gate, &ONE, t0);
        q.pump(t0 + Duration::from_millis(500), true);
        assert!(q.gate.is_some(), "still closed");
        q.pump(t0 + Duration::from_secs(2), true);
        assert!(q.gate.is_none(), "open, nobody in line: forgotten");
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
        q.refund(&[5.0, 0.0, 0.0], &[10.0, 0.0, 0.0]);
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
        q.slow_start = Some(now + Duration::from_secs(60));
        q.settled(|| panic!("no clock to read"));
        assert_eq!(
            q.slow_start, None,
            "as pump ends it with nobody in line and no gate"
        );
        // Under a gate, pump's rules need the time.
        q.gate = Some(GateSnapshot {
            until: now + Duration::from_secs(1),
            closed_at: now,
            retry_after: Duration::from_secs(1),
            request_id: None,
        });
        q.slow_start = Some(now + Duration::from_secs(60));
        let mut read = false;
        q.settled(|| {
            read = true;
            now
        });
        assert!(read);
        assert!(
            q.slow_start.is_some(),
            "the gate is still closed: the slow start goes on"
        );
    }
}
