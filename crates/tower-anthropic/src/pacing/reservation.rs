//! A call's place in its quota: in line while it waits, a reservation once admitted, settled
//! to the real usage when the answer ends, released when dropped.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::task::Context;
use std::time::Duration;

use http::Response;
use tokio::time::Instant;

use super::line::{Quota, Waiter};
use super::state::{Admission, Answer, BUCKETS, Cost, secs, settlement};
use super::{Pacer, QuotaCell, RateLimited, lock};
use crate::error::Error;
use crate::rate_limit::RateLimitHeaders;

/// Where a waiting call stands.
pub(super) enum Turn {
    Admitted,
    /// Not yet; at the head, when to look again (and the bucket that holds it back).
    Wait(Option<(Instant, Option<usize>)>),
    /// Taken out of line: its wait (and the bucket that sets it) grew past what it may wait.
    Refused(Duration, Option<usize>),
}

/// A call's place in its quota: while waiting, its place in line; once admitted, its
/// reservation until settled. Dropping it frees whichever it holds.
///
/// Shared (in an `Arc<Mutex<_>>`) by the call's future and, once answered, its
/// [`Reservation`].
pub(super) struct Ticket {
    pub(super) pacer: Pacer,
    pub(super) cell: Arc<QuotaCell>,
    pub(super) cost: Cost,
    /// Its place in line, when it was not admitted at once.
    pub(super) waiter: Option<Arc<Waiter>>,
    pub(super) raw_input: f64,
    pub(super) since: Instant,
    pub(super) admission: Option<Admission>,
    /// The answer's own headers corrected the input level (settlement then only learns).
    pub(super) input_from_headers: bool,
    /// The bucket that last held the call back (for the trace of its wait).
    pub(super) bound: Option<usize>,
    pub(super) finished: bool,
}

impl Ticket {
    fn with_quota<T>(&self, f: impl FnOnce(&mut Quota) -> T) -> T {
        f(&mut self.cell.lock())
    }

    /// Whether the call was admitted, refused (taken out of line), or when to look again.
    pub(super) fn poll_admitted(&mut self, cx: &mut Context<'_>) -> Turn {
        if self.admission.is_some() {
            return Turn::Admitted;
        }
        let waiter = self
            .waiter
            .clone()
            .expect("a call not admitted has a place in line");
        {
            let mut slot = lock(&waiter.slot);
            if let Some(a) = slot.admitted {
                self.admission = Some(a);
                return Turn::Admitted;
            }
            if let Some((wait, bound)) = slot.refused {
                return Turn::Refused(wait, bound);
            }
            slot.waker = Some(cx.waker().clone());
        }
        let now = Instant::now();
        let next = self.with_quota(|q| q.pump(now, false));
        let slot = lock(&waiter.slot);
        match (slot.admitted, slot.refused) {
            (Some(a), _) => {
                self.admission = Some(a);
                Turn::Admitted
            }
            (None, Some((wait, bound))) => Turn::Refused(wait, bound),
            (None, None) => Turn::Wait(next),
        }
    }

    /// The attempt ended with `result`: learn from it, refund what was not charged.
    pub(super) fn on_result<RB>(&mut self, result: &Result<Response<RB>, Error>) {
        let Some(admission) = self.admission else {
            return;
        };
        let now = Instant::now();
        let cost = self.cost;
        let share = self.pacer.shared.config.share;
        let scaled = |h: RateLimitHeaders| if share < 1.0 { h.scaled(share) } else { h };
        let (headers, api) = match result {
            Ok(resp) => (
                Some(scaled(RateLimitHeaders::counts_from_headers(
                    resp.headers(),
                ))),
                None,
            ),
            Err(Error::Api(api)) => (Some(scaled(*api.rate_limits())), Some(api)),
            // No answer: the server may have charged it; keep the reservation until settled.
            Err(_) => (None, None),
        };
        let answer = Answer {
            headers: headers.as_ref(),
            charged: api.is_none(),
            success: result.is_ok(),
            rate_limited: api.and_then(|a| RateLimited::of(a)),
            request_id: api.and_then(|a| a.request_id()),
        };
        let charged = answer.charged;
        let headroom;
        {
            let class = &self.cell.id.class;
            let mut q = self.cell.lock();
            let told = q.state.answered(&answer, &admission, &cost, now);
            if told.says_anything() {
                told.log(class, &answer, secs(q.state.allowance.secs()));
            }
            if told.gate.is_some() {
                q.rejudge(now);
            }
            q.pump(now, true);
            headroom = q.headroom(class, now);
        }
        if let Some(h) = headroom {
            crate::metrics::pacer_headroom(&h);
        }
        if !charged {
            self.finished = true;
        }
        self.input_from_headers = answer
            .headers
            .is_some_and(|h| h.input_tokens.remaining.is_some());
    }

    /// Settles to the real usage (input and output tokens the answer reports).
    fn settle(&mut self, input: u64, output: u64) {
        if self.finished || self.admission.is_none() {
            return;
        }
        self.finished = true;
        let cost = self.cost;
        self.pacer.learn_input(self.raw_input, input as f64);
        let refund = settlement(&cost, input, output, self.input_from_headers);
        self.with_quota(|q| {
            q.state.refund(&refund, &cost);
            q.settled(Instant::now);
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.admission.is_some() && self.finished {
            // Settled: nothing held.
            return;
        }
        let now = Instant::now();
        match self.admission {
            // Never admitted: leave the line (and let the next call move up).
            None => {
                let Some(waiter) = self.waiter.clone() else {
                    return;
                };
                let admitted = lock(&waiter.slot).admitted.is_some();
                self.with_quota(|q| {
                    q.queue.retain(|w| !Arc::ptr_eq(w, &waiter));
                    if admitted {
                        // Admitted between the last poll and the drop: give it back.
                        q.state.refund(&waiter.cost, &waiter.cost);
                    }
                    q.pump(now, true);
                });
            }
            // Admitted, never settled: the API may have charged it all; release the
            // reservation without refunding anything.
            Some(_) if !self.finished => {
                let cost = self.cost;
                self.with_quota(|q| {
                    q.state.refund(&[0.0; BUCKETS], &cost);
                    q.pump(now, true);
                });
            }
            Some(_) => {}
        }
    }
}

/// The reservation of an admitted call, carried in the response's extensions until the
/// answer ends: [`MessagesService`](crate::messages::MessagesService) settles it with the
/// `usage` of the `Message`, a stream with the usage of its last `message_delta`. Settled
/// once (a second settlement does nothing); dropped unsettled (every clone), the
/// reservation is released with nothing refunded (the conservative reading), as a
/// semaphore permit is returned on drop.
#[derive(Clone)]
pub(crate) struct Reservation(Arc<dyn Settle>);

/// What settles one admitted call: a local [`Ticket`], or the shared pacer's reservation.
/// Settling twice does nothing; dropping unsettled releases.
pub(crate) trait Settle: Send + Sync {
    /// Settles to the real usage.
    fn settle(&self, input_tokens: u64, output_tokens: u64);
}

/// A ticket settles once: its own `finished` guards a second settlement.
impl Settle for Mutex<Ticket> {
    fn settle(&self, input_tokens: u64, output_tokens: u64) {
        lock(self).settle(input_tokens, output_tokens);
    }
}

impl fmt::Debug for Reservation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Reservation")
    }
}

impl Reservation {
    /// The reservation of any [`Settle`] (the shared pacer's, or a local ticket already in
    /// its shared cell: no new allocation).
    pub(crate) fn new(s: Arc<dyn Settle>) -> Self {
        Self(s)
    }

    pub(crate) fn settle(&self, input_tokens: u64, output_tokens: u64) {
        self.0.settle(input_tokens, output_tokens);
    }
}
