//! The state of one quota and every rule that moves it: three token buckets learned from the
//! API's headers, what calls in flight hold reserved, the 429 gate, the cold start.
//!
//! A plain value with pure functions: no lock, no clock (each rule is given the instant),
//! no store. The local pacer keeps it under a mutex beside its line of waiting calls
//! ([`line`](super::line)); the shared pacer keeps it in Redis and changes it by
//! compare-and-set ([`crate::shared`]). Both run these functions, so each rule is written
//! once.

use std::time::Duration;

use tokio::time::Instant;

use super::allowance::Allowance;
use super::{GateSnapshot, RateLimited};
use crate::rate_limit::RateLimitHeaders;

/// The three buckets, in this order everywhere: requests, input tokens, output tokens.
pub(crate) const BUCKETS: usize = 3;
/// The buckets' names, as errors and logs give them.
pub(crate) const NAMES: [&str; BUCKETS] = ["requests", "input tokens", "output tokens"];

/// What one attempt costs, per bucket.
pub(crate) type Cost = [f64; BUCKETS];

/// The buckets by name, as indexes of a [`Cost`] (and of every per-bucket array).
pub(crate) const REQUESTS: usize = 0;
/// See [`REQUESTS`].
pub(crate) const INPUT: usize = 1;
/// See [`REQUESTS`].
pub(crate) const OUTPUT: usize = 2;

/// What comes back of a call's reservation `cost` when its answer reports `input` and
/// `output` tokens: the output under `max_tokens`, and the input overestimate unless the
/// answer's own headers already corrected the input level (`input_from_headers`).
pub(crate) fn settlement(cost: &Cost, input: u64, output: u64, input_from_headers: bool) -> Cost {
    let mut refund = [0.0; BUCKETS];
    if !input_from_headers {
        refund[INPUT] = cost[INPUT] - input as f64;
    }
    refund[OUTPUT] = cost[OUTPUT] - output as f64;
    refund
}

/// The most a bucket of `limit` per minute holds in this pacer's accounting: `hold` seconds
/// of refill less than the limit (the dispatch allowance: see [`Allowance`]).
pub(crate) fn capacity(limit: f64, hold: f64) -> f64 {
    limit * (1.0 - hold / 60.0)
}

/// One token bucket as the API keeps it: `limit` per minute, refilled continuously (by its
/// [`QuotaState`], which keeps the one clock its three buckets share), up to its [`capacity`]
/// (`hold` is the quota's dispatch allowance in seconds).
#[derive(Debug, Clone, PartialEq)]
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

/// When a call may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ready {
    Now,
    /// At this instant; held back by this bucket (`None`: the gate or the cold start).
    At(Instant, Option<usize>),
}

/// One quota (key identity x model class): the buckets, the gate, the cold start, and the
/// counters the drift rule compares answers with.
#[derive(Debug, Clone)]
pub(crate) struct QuotaState {
    pub(crate) buckets: [Bucket; BUCKETS],
    /// When the buckets were last refilled (or, under a 429's gate, when they start to be:
    /// nothing accrues before then).
    pub(crate) updated: Instant,
    /// Limits known (learned or configured). Until then calls go out unpaced (but counted,
    /// so the first answer's `remaining` can be reconciled with them).
    pub(crate) learned: bool,
    /// An answer carried no rate-limit headers before any did: nothing to pace by until
    /// then (when the next call is paced again, and its answer decides anew: a proxy that
    /// strips the headers costs one paced call a minute, a server that sent garbage once
    /// does not turn pacing off for good).
    pub(crate) unmanaged_until: Option<Instant>,
    /// While unlearned: when the first call went out (the others wait for its answer at
    /// most [`cold_start`](Self::cold_start) before going out unpaced).
    pub(crate) first_sent: Option<Instant>,
    /// The pacer's setting, not part of what a store keeps.
    pub(crate) cold_start: Duration,
    /// The last 429's gate (kept after it opens, for the snapshot; [`gate_until`] is what
    /// holds calls back).
    ///
    /// [`gate_until`]: Self::gate_until
    pub(crate) gate: Option<GateSnapshot>,
    /// After a 429's gate, until the line that waited has drained: the line goes at the
    /// refill rate, whatever the server's `remaining` says it saved up meanwhile.
    pub(crate) slow_start: Option<Instant>,
    /// Every correction applied to the levels (refunds, drift), per bucket.
    pub(crate) corrections: [f64; BUCKETS],
    /// Everything ever admitted (calls admitted after a given one are the difference).
    pub(crate) admitted: [f64; BUCKETS],
    /// How late after admission a call may reach the server: the buckets hold that much
    /// refill less than their limits. (The shared pacer's is its process's: not stored.)
    pub(crate) allowance: Allowance,
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

/// How an attempt ended, as its quota learns from it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Answer<'a> {
    /// The answer's rate-limit headers (scaled to the pacer's share); `None`: no answer.
    pub(crate) headers: Option<&'a RateLimitHeaders>,
    /// The server charged the call (a success, or no answer: it may have); an error status
    /// is not charged.
    pub(crate) charged: bool,
    /// A success status.
    pub(crate) success: bool,
    /// What a 429 said ([`RateLimited::of`]).
    pub(crate) rate_limited: Option<RateLimited>,
    /// The 429's `request-id`.
    pub(crate) request_id: Option<&'a str>,
}

/// What [`QuotaState::answered`] did, for the logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Told {
    /// A 429 for a call admitted with room: the dispatch allowance grew.
    pub(crate) surprise: bool,
    /// A 429 named a wait: `Some(true)` when it closed the quota, `Some(false)` when it was
    /// already closed.
    pub(crate) gate: Option<bool>,
}

impl Told {
    /// Whether [`log`](Self::log) has anything to say.
    pub(crate) fn says_anything(&self) -> bool {
        self.surprise || self.gate.is_some()
    }

    /// Logs what happened to quota `class` (one line per gate, one per surprise).
    pub(crate) fn log(&self, class: &str, answer: &Answer<'_>, allowance: Duration) {
        if self.surprise {
            tracing::info!(allowance = ?allowance, class = %class,
                "429 for a call admitted with room: more dispatch allowance");
        }
        let wait = answer.rate_limited.and_then(|r| r.wait);
        match self.gate {
            Some(true) => {
                tracing::info!(retry_after = ?wait, request_id = answer.request_id, class = %class,
                    "429: closing the quota until its retry-after");
            }
            Some(false) => {
                tracing::debug!(retry_after = ?wait, request_id = answer.request_id, class = %class,
                    "429 while the quota is closed");
            }
            None => {}
        }
    }
}

impl QuotaState {
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
            corrections: [0.0; BUCKETS],
            admitted: [0.0; BUCKETS],
            allowance,
        }
    }

    /// Refills the buckets up to `now` (nothing when no time has passed, or under a gate).
    pub(crate) fn refill(&mut self, now: Instant) {
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

    /// Until when the cold start holds calls back (while the limits are unknown and the
    /// first call's answer has not come).
    pub(crate) fn cold_start_until(&self) -> Option<Instant> {
        if self.learned {
            return None;
        }
        self.first_sent.map(|first| first + self.cold_start)
    }

    /// When a call of `cost` may go, with nobody ahead of it (the buckets refilled to `now`).
    pub(crate) fn ready(&self, cost: &Cost, now: Instant) -> Ready {
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
            if let Some(until) = self.cold_start_until() {
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

    /// Adds `cost` to `sum`, each bucket's part at most its capacity (as [`Bucket::wait_for`]
    /// counts a need).
    pub(crate) fn add_capped(&self, sum: &mut Cost, cost: &Cost) {
        let hold = self.allowance.secs();
        for (i, b) in self.buckets.iter().enumerate() {
            let full = b.limit.map_or(f64::INFINITY, |l| capacity(l, hold));
            sum[i] += cost[i].min(full);
        }
    }

    /// The wait of a call of `cost` behind calls that need `ahead` (the gate, or the refill
    /// the buckets need for both), and the bucket that sets it (`None` for the gate).
    pub(crate) fn wait_behind(
        &self,
        ahead: &Cost,
        cost: &Cost,
        now: Instant,
    ) -> (Duration, Option<usize>) {
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

    /// Ends the slow start after a gate (at its bound, or once the line that waited has gone
    /// and the gate is open), then forgets the open gate.
    pub(crate) fn open_gate(&mut self, now: Instant, line_empty: bool) {
        if self.slow_start.is_some_and(|end| {
            now >= end || (line_empty && self.gate_until().is_none_or(|g| g <= now))
        }) {
            self.slow_start = None;
        }
        if self.slow_start.is_none() && self.gate_until().is_some_and(|g| g <= now) {
            // Open, and its slow start over: forgotten (a settlement with nobody in line and
            // no gate reads no clock again).
            self.gate = None;
        }
    }

    /// Reserves `cost` for a call that goes now; what the pacer saw, for its answer.
    pub(crate) fn admit(&mut self, cost: &Cost, now: Instant) -> Admission {
        let unpaced = !self.learned;
        if unpaced && self.first_sent.is_none() {
            self.first_sent = Some(now);
        }
        let ahead = self.buckets.each_ref().map(|b| b.reserved);
        for (i, (b, c)) in self.buckets.iter_mut().zip(cost).enumerate() {
            b.level -= c;
            b.reserved += c;
            self.admitted[i] += c;
        }
        Admission {
            levels: self.levels(),
            corrections: self.corrections,
            ahead,
            admitted: self.admitted,
            at: now,
            unpaced,
        }
    }

    /// The levels, as of the last refill.
    pub(crate) fn levels(&self) -> [f64; BUCKETS] {
        self.buckets.each_ref().map(|b| b.level)
    }

    /// Gives back part of a reservation (what the API did not charge, or will not) and
    /// releases `release` of it. A refund counts as a correction: the server gave it back
    /// too, and a later answer's `remaining` may already show it.
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

    /// A call admitted as `admission` with `cost` reserved ended as `answer` said, at `now`:
    /// the dispatch allowance, the limits and levels, the cold start, the refund of a call
    /// the API refused, and what a 429 tells the quota (its gate, or empty buckets). The one
    /// place a 429 changes a quota, for both pacers.
    pub(crate) fn answered(
        &mut self,
        answer: &Answer<'_>,
        admission: &Admission,
        cost: &Cost,
        now: Instant,
    ) -> Told {
        let told = answer.rate_limited;
        let drain = told.is_some_and(|t| t.drain);
        let wait = told.and_then(|t| t.wait);
        if answer.headers.is_some() {
            // An answer's head: the way to the server was part of its latency.
            self.allowance
                .answered(now.saturating_duration_since(admission.at), now);
        }
        let surprise = wait.is_some() && !drain && self.admitted_with_room(admission);
        let learned = answer
            .headers
            .is_some_and(|h| self.learn(h, admission, cost, answer.charged, now));
        if !learned && answer.success && !self.learned {
            // An answer without rate-limit headers before any with: nothing to pace by.
            self.unmanaged(now);
        }
        self.first_answered();
        if !answer.charged {
            self.refund(cost, cost);
        }
        if drain {
            self.drain();
        }
        if surprise {
            self.allowance.surprised(now);
        }
        let gate = wait.map(|wait| {
            let gate = GateSnapshot {
                until: now + wait,
                closed_at: now,
                retry_after: wait,
                request_id: answer.request_id.map(|id| id.chars().take(200).collect()),
            };
            self.close_gate(gate, cost, now)
        });
        Told { surprise, gate }
    }

    /// A reservation settled: with no gate, the slow start (if any) is over.
    pub(crate) fn settled(&mut self) {
        if self.gate.is_none() {
            self.slow_start = None;
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
}
