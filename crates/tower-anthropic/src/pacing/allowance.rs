//! The dispatch allowance: how late after its admission a call may reach the server without
//! costing a 429, learned from what the host and the network take.
//!
//! The server takes a call from its bucket when the call arrives, the pacer when it admits
//! it. While the server's bucket is full (a burst after idle), the refill between the two is
//! lost on the server's side, so each of the pacer's buckets holds this many seconds of refill
//! less than its limit. How long "between the two" is depends on the host (a busy one runs
//! an admitted call's task late) and on the network, so the allowance follows them:
//!
//! - **Measured.** Every answer's head arrives some time after its call's admission: the way
//!   to the server is part of it, so that time bounds it from above. The allowance follows an
//!   average of those times (each counted up to [`MEASURED_MAX`]: the rest of a slow head is
//!   the server generating, not the way there).
//! - **Surprised.** A 429 for a call the pacer admitted with room in every bucket is direct
//!   evidence that calls arrive later than the allowance covers: it doubles (at least a
//!   quarter of a second more, at most [`MAX`]).
//! - **Decaying.** What a surprise added halves every [`HALF_LIFE`] without another one;
//!   the measured part follows the answers as they come.
//! - **Bounded.** Never below [`FLOOR`] (a quarter of a second, enough for a quiet host and a
//!   near server) nor above [`MAX`] (two seconds of refill: what a burst from idle gives up
//!   at most).

use std::time::Duration;

use tokio::time::Instant;

/// The least allowance, in seconds.
pub(crate) const FLOOR: f64 = 0.25;
/// The most, in seconds.
pub(crate) const MAX: f64 = 2.0;
/// The most one answer's head latency counts for, in seconds.
pub(crate) const MEASURED_MAX: f64 = 1.0;
/// How fast what a surprise added decays.
pub(crate) const HALF_LIFE: Duration = Duration::from_secs(30);
/// The weight of a new answer in the measured average.
const WEIGHT: f64 = 0.1;

/// See the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Allowance {
    /// The average time from admission to an answer's head (each capped), in seconds.
    measured: f64,
    /// What the last surprise raised it to, in seconds, and when.
    surprise: Option<(f64, Instant)>,
    /// The allowance as of the last update, in seconds.
    secs: f64,
}

impl Default for Allowance {
    fn default() -> Self {
        Self {
            measured: 0.0,
            surprise: None,
            secs: FLOOR,
        }
    }
}

impl Allowance {
    /// The allowance in seconds, as of the last [`update`](Self::update).
    pub(crate) fn secs(&self) -> f64 {
        self.secs
    }

    /// An answer's head arrived `latency` after its call's admission.
    pub(crate) fn answered(&mut self, latency: Duration, now: Instant) {
        let s = latency.as_secs_f64().min(MEASURED_MAX);
        self.measured += WEIGHT * (s - self.measured);
        self.update(now);
    }

    /// A 429 for a call admitted with room in every bucket.
    pub(crate) fn surprised(&mut self, now: Instant) {
        self.update(now);
        let raised = (self.secs * 2.0).max(self.secs + FLOOR).min(MAX);
        self.surprise = Some((raised, now));
        self.update(now);
    }

    /// Brings the allowance to `now` (the surprise's decay).
    pub(crate) fn update(&mut self, now: Instant) {
        let surprise = self.surprise.map_or(0.0, |(s, at)| {
            let halves = now.saturating_duration_since(at).as_secs_f64() / HALF_LIFE.as_secs_f64();
            s * 0.5f64.powf(halves)
        });
        if surprise < FLOOR / 16.0 {
            self.surprise = None;
        }
        self.secs = self.measured.max(surprise).clamp(FLOOR, MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_floor_holds_on_a_quiet_host() {
        let now = Instant::now();
        let mut a = Allowance::default();
        for _ in 0..100 {
            a.answered(Duration::from_millis(2), now);
        }
        assert_eq!(a.secs(), FLOOR);
    }

    #[test]
    fn slow_answers_raise_it_up_to_the_measured_cap() {
        let now = Instant::now();
        let mut a = Allowance::default();
        for _ in 0..100 {
            a.answered(Duration::from_millis(600), now);
        }
        assert!((a.secs() - 0.6).abs() < 0.01, "{}", a.secs());
        // A head that took a minute (the server generating) counts for a second at most.
        for _ in 0..200 {
            a.answered(Duration::from_secs(60), now);
        }
        assert!((a.secs() - MEASURED_MAX).abs() < 1e-6, "{}", a.secs());
        // Fast answers bring it back.
        for _ in 0..200 {
            a.answered(Duration::from_millis(1), now);
        }
        assert_eq!(a.secs(), FLOOR);
    }

    #[test]
    fn a_surprise_doubles_it_and_the_addition_decays() {
        let t0 = Instant::now();
        let mut a = Allowance::default();
        a.surprised(t0);
        assert_eq!(a.secs(), 2.0 * FLOOR);
        a.surprised(t0);
        assert_eq!(a.secs(), 4.0 * FLOOR);
        for _ in 0..10 {
            a.surprised(t0);
        }
        assert_eq!(a.secs(), MAX, "bounded");
        a.update(t0 + HALF_LIFE);
        assert!((a.secs() - MAX / 2.0).abs() < 1e-9, "{}", a.secs());
        a.update(t0 + HALF_LIFE * 10);
        assert_eq!(a.secs(), FLOOR, "back to the floor when the evidence stops");
        assert!(a.surprise.is_none());
    }
}
