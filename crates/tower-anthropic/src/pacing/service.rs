//! The local pacer's layer: each attempt admitted on its quota (at once, or after waiting in
//! line) before the inner service is called.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::{Request, Response};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service};

use super::line::{Slot, Waiter};
use super::reservation::{Reservation, Ticket, Turn};
use super::state::NAMES;
use super::{Pacer, RequestCost, lock, longest_wait};
use crate::error::{BoxError, Error, PacedError};

/// Adds a [`Pacer`] to a stack (below retry, above the attempt timeout).
#[derive(Debug, Clone, Default)]
pub struct PacingLayer {
    pacer: Pacer,
}

impl PacingLayer {
    /// Paces with `pacer` (its state is shared by every service the layer makes).
    pub fn new(pacer: Pacer) -> Self {
        Self { pacer }
    }
    /// The pacer, for snapshots.
    pub fn pacer(&self) -> &Pacer {
        &self.pacer
    }
}

impl<S> Layer<S> for PacingLayer {
    type Service = Pacing<S>;
    fn layer(&self, inner: S) -> Pacing<S> {
        Pacing {
            inner,
            pacer: self.pacer.clone(),
        }
    }
}

/// The service of [`PacingLayer`].
#[derive(Debug, Clone)]
pub struct Pacing<S> {
    inner: S,
    pacer: Pacer,
}

impl<S> Pacing<S> {
    crate::macros::define_inner_service_accessors!();
}

impl<S, B, RB> Service<Request<B>> for Pacing<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = Error;
    type Future = ResponseFuture<S, B>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // Readiness of the inner service is awaited after admission, in the call: waiting for
        // a permit must not hold a place in the quota's line, nor the other way round.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        // The inner service is asked for readiness only after admission: at once when the
        // call is admitted at once, else inside the future.
        let Some(cost) = req.extensions().get::<RequestCost>() else {
            self.pacer.warn_uncosted(&req);
            return ResponseFuture::now_or_later(&mut self.inner, req, None);
        };
        let now = Instant::now();
        let cell = self.pacer.quota_cell(&req, &cost.model, now);
        let (cost_v, raw) = self.pacer.cost(cost);
        let pacer = self.pacer.clone();
        let mut quota = cell.lock();
        if !quota.state.paces(now) {
            drop(quota);
            return ResponseFuture::now_or_later(&mut self.inner, req, None);
        }
        // The usual case: nobody in line and room now, so no wait to predict and no place in
        // line to make.
        let (admission, waiter, next) = match quota.try_admit(&cost_v, now) {
            Some(a) => (Some(a), None, None),
            None => {
                let (wait, bound) = quota.predicted_wait(&cost_v, now);
                let limit = longest_wait(&req, pacer.shared.config.max_wait, now);
                if wait > limit {
                    drop(quota);
                    let bucket = bound.map_or("quota", |b| NAMES[b]);
                    let class = cell.id.class.clone();
                    tracing::info!(wait = ?wait, bucket, class = %class,
                        "predicted quota wait too long: refusing at once");
                    let e = Error::Paced(PacedError::new(wait, bucket, class));
                    return ResponseFuture::refused(e);
                }
                let waiter = Arc::new(Waiter {
                    cost: cost_v,
                    give_up_at: now + limit,
                    slot: Mutex::new(Slot::default()),
                });
                quota.queue.push_back(waiter.clone());
                let next = quota.pump(now, true);
                (None, Some(waiter), next)
            }
        };
        let headroom = quota.headroom(&cell.id.class, now);
        drop(quota);
        if let Some(h) = headroom {
            crate::metrics::pacer_headroom(&h);
        }
        // Made where its settlement will keep it: the future carries a pointer, not the
        // ticket, and an answer's settlement takes it over without a copy.
        let ticket = Arc::new(Mutex::new(Ticket {
            pacer,
            cell,
            cost: cost_v,
            waiter,
            raw_input: raw,
            since: now,
            admission,
            input_from_headers: false,
            bound: None,
            finished: false,
        }));
        match admission {
            Some(_) => ResponseFuture::now_or_later(&mut self.inner, req, Some(ticket)),
            None => {
                let inner = self.inner.clone();
                let inner = std::mem::replace(&mut self.inner, inner);
                ResponseFuture {
                    state: State::Waiting {
                        inner: Some(inner),
                        req: Some(req),
                        sleep: next.map(|(at, _)| Box::pin(tokio::time::sleep_until(at))),
                    },
                    ticket: Some(ticket),
                }
            }
        }
    }
}

pin_project! {
    /// Future of [`Pacing`].
    pub struct ResponseFuture<S, B>
    where
        S: Service<Request<B>>,
    {
        #[pin]
        state: State<S, B>,
        ticket: Option<Arc<Mutex<Ticket>>>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, B>
    where
        S: Service<Request<B>>,
    {
        Waiting { inner: Option<S>, req: Option<Request<B>>, sleep: Option<Pin<Box<Sleep>>> },
        Ready { inner: Option<S>, req: Option<Request<B>> },
        Calling { #[pin] future: S::Future },
        Refused { error: Option<Error> },
    }
}

impl<S, B> fmt::Debug for ResponseFuture<S, B>
where
    S: Service<Request<B>>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<S, B> ResponseFuture<S, B>
where
    S: Service<Request<B>>,
    S::Error: Into<BoxError>,
{
    /// A call that may go (admitted, or not paced): sent now when the service is ready now
    /// (asked without a task to wake: the usual case, with nothing below that waits), with
    /// no copy of the service; else a copy readied and called inside the future.
    fn now_or_later(inner: &mut S, req: Request<B>, ticket: Option<Arc<Mutex<Ticket>>>) -> Self
    where
        S: Clone,
    {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let state = match inner.poll_ready(&mut cx) {
            Poll::Ready(Ok(())) => State::Calling {
                future: inner.call(req),
            },
            Poll::Ready(Err(e)) => State::Refused {
                error: Some(Error::from_service_error(e)),
            },
            // The service as it stands (its readiness under way) goes with the call, asked
            // again with the task's waker; a copy stays for the next call.
            Poll::Pending => {
                let fresh = inner.clone();
                State::Ready {
                    inner: Some(std::mem::replace(inner, fresh)),
                    req: Some(req),
                }
            }
        };
        Self { state, ticket }
    }

    fn refused(error: Error) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
            ticket: None,
        }
    }
}

impl<S, B, RB> Future for ResponseFuture<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Output = Result<Response<RB>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Refused { error } => {
                    return Poll::Ready(Err(error.take().expect("polled after completion")));
                }
                StateProj::Waiting { inner, req, sleep } => {
                    let cell = this.ticket.as_ref().expect("a waiting call has a ticket");
                    let mut ticket = lock(cell);
                    match ticket.poll_admitted(cx) {
                        Turn::Refused(wait, bound) => {
                            let bucket = bound.map_or("quota", |b| NAMES[b]);
                            let class = ticket.cell.id.class.clone();
                            tracing::info!(wait = ?wait, bucket, class = %class,
                                "the quota's wait grew too long for a waiting call: refusing it");
                            drop(ticket);
                            this.ticket.take();
                            this.state.set(State::Refused { error: None });
                            let e = PacedError::new(wait, bucket, class);
                            return Poll::Ready(Err(Error::Paced(e)));
                        }
                        Turn::Admitted => {
                            let waited = ticket.since.elapsed();
                            // Held back by a bucket, or long enough to matter (a cold
                            // start): not the microseconds of being polled.
                            if ticket.bound.is_some() || waited >= Duration::from_millis(10) {
                                let bucket = ticket.bound.map_or("quota", |b| NAMES[b]);
                                tracing::info!(wait = ?waited, bucket, class = %ticket.cell.id.class,
                                    "paced: waited for the quota");
                            }
                            drop(ticket);
                            let (inner, req) = (inner.take(), req.take());
                            this.state.set(State::Ready { inner, req });
                        }
                        Turn::Wait(next) => {
                            if let Some((_, Some(b))) = next {
                                ticket.bound = Some(b);
                            }
                            match next.map(|(at, _)| at) {
                                Some(at) => match sleep {
                                    Some(s) if s.deadline() == at => {}
                                    Some(s) => s.as_mut().reset(at),
                                    None => *sleep = Some(Box::pin(tokio::time::sleep_until(at))),
                                },
                                None => *sleep = None,
                            }
                            drop(ticket);
                            if let Some(s) = sleep {
                                if s.as_mut().poll(cx).is_ready() {
                                    continue;
                                }
                            }
                            return Poll::Pending;
                        }
                    }
                }
                StateProj::Ready { inner, req } => {
                    let svc = inner.as_mut().expect("polled after completion");
                    if let Err(e) = ready!(svc.poll_ready(cx)) {
                        return Poll::Ready(Err(Error::from_service_error(e)));
                    }
                    let mut svc = inner.take().expect("polled after completion");
                    let req = req.take().expect("polled after completion");
                    let future = svc.call(req);
                    this.state.set(State::Calling { future });
                }
                StateProj::Calling { future } => {
                    let mut result = ready!(future.poll(cx)).map_err(Error::from_service_error);
                    if let Some(cell) = this.ticket.take() {
                        let unsettled = {
                            let mut ticket = lock(&cell);
                            ticket.on_result(&result);
                            !ticket.finished
                        };
                        if let (Ok(resp), true) = (&mut result, unsettled) {
                            resp.extensions_mut().insert(Reservation::new(cell));
                        }
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }
}
