//! The shared pacer's layer: each attempt admitted on its quota's state in Redis, and its
//! answer told back, by the rules of [`QuotaState`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceExt};

use super::store::{Change, Ran, StoreContext};
use super::{KEY_TTL, SharedPacer, corrupt, fnv1a, lock};
use crate::error::{BoxError, Error, PacedError};
use crate::extensions::RequestCost;
use crate::pacing::Pacer;
use crate::pacing::reservation::{Reservation, Settle};
use crate::pacing::state::{
    Admission, Answer, BUCKETS, Cost, NAMES, QuotaState, Ready, Told, settlement,
};
use crate::pacing::{PacingLayer, RateLimited, longest_wait};
use crate::rate_limit::RateLimitHeaders;

/// What a call of a shared quota was told.
#[derive(Debug, Clone, Copy)]
pub(super) struct Admit {
    /// Its admission, when it was admitted on a paced quota (`None` with `admitted`: the
    /// quota is not paced, nothing to tell it of the answer).
    pub(super) admission: Option<Admission>,
    pub(super) admitted: bool,
    pub(super) wait: Duration,
    /// 0-2 a bucket, [`GATE_BOUND`] the gate, [`COLD_START_BOUND`] the cold start, -1 none.
    pub(super) bound: i64,
    /// The stored state was corrupt, and was replaced by a cold start.
    pub(super) corrupt: bool,
}

/// The bound an [`Admit`] names for the gate.
pub(super) const GATE_BOUND: i64 = 3;
/// The bound an [`Admit`] names for the cold start.
pub(super) const COLD_START_BOUND: i64 = 4;
/// How often at most a call held by the cold start asks again (from 10 ms, doubling): the
/// first answer of a quota may come from another process, which cannot wake this one.
const COLD_START_POLL: Duration = Duration::from_millis(200);

fn ceil_ms(d: Duration) -> Duration {
    let ms = d.as_nanos().div_ceil(1_000_000);
    Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
}

fn bucket_name(bound: i64) -> &'static str {
    match bound {
        0..=2 => NAMES[bound as usize],
        COLD_START_BOUND => "cold start",
        _ => "quota",
    }
}

impl SharedPacer {
    /// Runs `change` on the state of `key` in Redis (with this process's dispatch allowance;
    /// with `learns`, the allowance it leaves becomes the process's).
    async fn change<T: Send + 'static>(
        &self,
        key: &str,
        learns: bool,
        change: impl FnMut(&mut QuotaState, Instant) -> Change<T> + Send + 'static,
    ) -> Result<(T, Ran), String> {
        let mut con = self.con().await?;
        let cx = StoreContext {
            ttl: KEY_TTL,
            timeout: self.inner.timeout,
            shift_ms: self.inner.shift_ms.load(Ordering::Relaxed) as f64,
            cold_start: self.inner.local.cold_start_setting(),
            allowance: &self.inner.allowance,
        };
        self.inner
            .store
            .change(&mut con, key, &cx, learns, change)
            .await
    }

    /// Admits a call of `cost` on the quota `key`, or says how long until it may go.
    pub(super) async fn admit(&self, key: &str, cost: &Cost) -> Result<Admit, String> {
        let cost = *cost;
        let (a, ran) = self
            .change(key, false, move |st, now| {
                let no = Admit {
                    admission: None,
                    admitted: true,
                    wait: Duration::ZERO,
                    bound: -1,
                    corrupt: false,
                };
                if !st.paces(now) {
                    return Change {
                        out: no,
                        write: false,
                    };
                }
                st.refill(now);
                st.open_gate(now, true);
                match st.ready(&cost, now) {
                    Ready::Now => {
                        let a = st.admit(&cost, now);
                        Change {
                            out: Admit {
                                admission: Some(a),
                                ..no
                            },
                            write: true,
                        }
                    }
                    Ready::At(at, bound) => {
                        let bound = match bound {
                            Some(i) => i as i64,
                            None if st.cold_start_until().is_some_and(|c| c >= at) => {
                                COLD_START_BOUND
                            }
                            None => GATE_BOUND,
                        };
                        Change {
                            out: Admit {
                                admitted: false,
                                // In whole milliseconds, rounded up: asking again after it
                                // finds the room there.
                                wait: ceil_ms(at - now),
                                bound,
                                ..no
                            },
                            write: false,
                        }
                    }
                }
            })
            .await?;
        Ok(Admit {
            corrupt: ran.corrupt,
            ..a
        })
    }

    /// Tells the quota `key` how a call admitted as `admission` ended (`at`: when its answer
    /// came) and, with `settle`, gives back that much of its reservation and releases the
    /// rest. `None` when Redis did not answer (the pacer then paces locally for a while).
    pub(super) async fn answered(
        &self,
        key: String,
        admission: Admission,
        cost: Cost,
        answer: Answer<'_>,
        at: Instant,
        settle: Option<Cost>,
    ) -> Option<Told> {
        let headers = answer.headers.copied();
        let request_id = answer.request_id.map(str::to_owned);
        let (charged, success, rate_limited) =
            (answer.charged, answer.success, answer.rate_limited);
        let r = self
            .change(&key, true, move |st, _now| {
                let cold = !st.learned && st.first_sent.is_some();
                let answer = Answer {
                    headers: headers.as_ref(),
                    charged,
                    success,
                    rate_limited,
                    request_id: request_id.as_deref(),
                };
                let told = st.answered(&answer, &admission, &cost, at);
                if let Some(refund) = settle {
                    st.refund(&refund, &cost);
                    st.settled();
                }
                let limits = st.buckets.each_ref().map(|b| b.limit);
                let ended_cold = cold && (st.learned || st.first_sent.is_none());
                Change {
                    out: (told, ended_cold, limits),
                    write: true,
                }
            })
            .await;
        match r {
            Ok(((told, ended_cold, limits), ran)) => {
                if ran.corrupt {
                    corrupt(&key);
                }
                if ended_cold || told.gate == Some(true) {
                    // Calls held by this quota's cold start need not wait any longer, and a
                    // new gate may be longer than the waiting calls may wait.
                    self.inner.changed.notify_waiters();
                }
                if let [Some(r), Some(i), Some(o)] = limits {
                    lock(&self.inner.known).insert(key, [r, i, o]);
                }
                Some(told)
            }
            Err(e) => {
                self.failed(&key, &e);
                None
            }
        }
    }
}

/// The shared quota's reservation of one admitted call: settled once, when the answer ends
/// (or released when dropped unsettled, with nothing refunded), with what the answer's head
/// taught.
struct SharedReservation {
    pacer: SharedPacer,
    key: String,
    admission: Admission,
    cost: Cost,
    raw_input: f64,
    headers: RateLimitHeaders,
    /// When the answer's head came.
    at: Instant,
    done: bool,
}

impl SharedReservation {
    fn send(&mut self, refund: Cost) {
        self.done = true;
        let (pacer, key) = (self.pacer.clone(), self.key.clone());
        let (admission, cost, headers, at) = (self.admission, self.cost, self.headers, self.at);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let answer = Answer {
                    headers: Some(&headers),
                    charged: true,
                    success: true,
                    rate_limited: None,
                    request_id: None,
                };
                pacer
                    .answered(key, admission, cost, answer, at, Some(refund))
                    .await
            });
        }
    }
}

impl Settle for std::sync::Mutex<SharedReservation> {
    fn settle(&self, input: u64, output: u64) {
        let mut me = lock(self);
        if me.done {
            return;
        }
        me.settle(input, output);
    }
}

impl SharedReservation {
    fn settle(&mut self, input: u64, output: u64) {
        self.pacer
            .inner
            .local
            .learn_input(self.raw_input, input as f64);
        let from_headers = self.headers.input_tokens.remaining.is_some();
        self.send(settlement(&self.cost, input, output, from_headers));
    }
}

impl Drop for SharedReservation {
    fn drop(&mut self) {
        if !self.done {
            self.send([0.0; BUCKETS]);
        }
    }
}

/// Paces every attempt through a [`SharedPacer`].
#[derive(Debug, Clone)]
pub struct SharedPacingLayer {
    pacer: SharedPacer,
}

impl SharedPacingLayer {
    /// A layer over `pacer`.
    pub fn new(pacer: SharedPacer) -> Self {
        Self { pacer }
    }
}

impl<S> Layer<S> for SharedPacingLayer {
    type Service = SharedPacing<S>;
    fn layer(&self, inner: S) -> SharedPacing<S> {
        SharedPacing {
            inner,
            pacer: self.pacer.clone(),
        }
    }
}

/// The service of [`SharedPacingLayer`].
#[derive(Debug, Clone)]
pub struct SharedPacing<S> {
    inner: S,
    pacer: SharedPacer,
}

impl<S> SharedPacing<S> {
    crate::macros::define_inner_service_accessors!();
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

impl<S, B, RB> Service<Request<B>> for SharedPacing<S>
where
    S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    B: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = Error;
    type Future = BoxFuture<Response<RB>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        // As the local pacer: the inner service is made ready after admission.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let inner = self.inner.clone();
        let pacer = self.pacer.clone();
        Box::pin(async move { pacer.paced(inner, req).await })
    }
}

impl SharedPacer {
    async fn paced<S, B, RB>(&self, inner: S, req: Request<B>) -> Result<Response<RB>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Send + 'static,
        RB: Send + 'static,
    {
        self.start_sync();
        let Some(cost) = req.extensions().get::<RequestCost>().cloned() else {
            self.inner.local.warn_uncosted(&req);
            return inner.oneshot(req).await.map_err(Error::from_service_error);
        };
        let key = self.key(&req, &cost.model);
        let local = &self.inner.local;
        let class = local.quota_id(&req, &cost.model).class;
        let (cost_v, raw) = local.cost(&cost);
        let start = Instant::now();
        let limit = longest_wait(&req, local.max_wait_setting(), start);
        let mut bound = -1;
        let mut poll = Duration::from_millis(10);
        let admission = loop {
            if let Some(p) = self.local_now() {
                return self.locally(p, inner, req, &class).await;
            }
            // Registered before asking, so an answer that teaches the limits while the
            // question is on its way still wakes this call.
            let changed = self.inner.changed.notified();
            let a = match self.admit(&key, &cost_v).await {
                Ok(r) => {
                    self.rejoined();
                    if r.corrupt {
                        corrupt(&key);
                    }
                    r
                }
                Err(e) => {
                    let p = self.failed(&key, &e);
                    return self.locally(p, inner, req, &class).await;
                }
            };
            if a.admitted {
                break a.admission;
            }
            bound = a.bound;
            let waited = start.elapsed();
            // A cold start ends with the quota's first answer (or its bound, when the calls
            // go unpaced): no wait to refuse a call for.
            if bound != COLD_START_BOUND && waited + a.wait > limit {
                let bucket = bucket_name(bound);
                tracing::info!(wait = ?(waited + a.wait), bucket, class = %class,
                    "predicted shared quota wait too long: refusing at once");
                return Err(Error::Paced(PacedError::new(
                    waited + a.wait,
                    bucket,
                    class,
                )));
            }
            let pause = if bound == COLD_START_BOUND {
                // Held until the quota's first answer teaches its limits: woken by this
                // process's answer, else asking again soon (another process's answer).
                let pause = a.wait.min(poll);
                poll = (poll * 2).min(COLD_START_POLL);
                pause
            } else {
                // A little spread, so processes told the same wait do not all ask at once.
                let spread = a.wait.mul_f64(
                    0.02 * f64::from(fnv1a(&start.elapsed().as_nanos().to_le_bytes()) as u8)
                        / 255.0,
                );
                a.wait + spread
            };
            // Never asking again without a pause (a store that answers "not yet, wait 0");
            // woken early when this process learns the limits or meets a 429.
            let sleep = tokio::time::sleep(pause.max(Duration::from_millis(1)));
            let mut sleep = std::pin::pin!(sleep);
            let mut changed = std::pin::pin!(changed);
            std::future::poll_fn(|cx| {
                if sleep.as_mut().poll(cx).is_ready() || changed.as_mut().poll(cx).is_ready() {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        };
        let waited = start.elapsed();
        if waited > Duration::from_millis(1) {
            tracing::info!(wait = ?waited, bucket = bucket_name(bound), class = %class,
                "paced: waited for the shared quota");
        }
        let mut result = inner.oneshot(req).await.map_err(Error::from_service_error);
        let now = Instant::now();
        // Not paced (no rate-limit headers seen): nothing to tell the quota.
        let Some(admission) = admission else {
            return result;
        };
        match &mut result {
            Ok(resp) => {
                let headers = RateLimitHeaders::counts_from_headers(resp.headers());
                resp.extensions_mut()
                    .insert(Reservation::new(Arc::new(std::sync::Mutex::new(
                        SharedReservation {
                            pacer: self.clone(),
                            key,
                            admission,
                            cost: cost_v,
                            raw_input: raw,
                            headers,
                            at: now,
                            done: false,
                        },
                    ))));
            }
            Err(Error::Api(api)) => {
                // Not charged: the whole reservation comes back. Awaited, so the next call
                // of this task already sees a gate.
                let answer = Answer {
                    headers: Some(api.rate_limits()),
                    charged: false,
                    success: false,
                    rate_limited: RateLimited::of(api),
                    request_id: api.request_id(),
                };
                if let Some(told) = self
                    .answered(key, admission, cost_v, answer, now, None)
                    .await
                {
                    told.log(&class, &answer, self.dispatch_allowance());
                }
            }
            // No answer: the server may have charged it all; the reservation is released
            // with nothing refunded.
            Err(_) => {
                let answer = Answer {
                    headers: None,
                    charged: true,
                    success: false,
                    rate_limited: None,
                    request_id: None,
                };
                let release = Some([0.0; BUCKETS]);
                self.answered(key, admission, cost_v, answer, now, release)
                    .await;
            }
        }
        result
    }

    async fn locally<S, B, RB>(
        &self,
        pacer: Pacer,
        inner: S,
        req: Request<B>,
        class: &str,
    ) -> Result<Response<RB>, Error>
    where
        S: Service<Request<B>, Response = Response<RB>> + Clone + Send + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
        B: Send + 'static,
        RB: Send + 'static,
    {
        if !self.inner.fail_open {
            let e = PacedError::new(Duration::from_secs(1), "shared store", class.to_owned());
            return Err(Error::Paced(e));
        }
        PacingLayer::new(pacer).layer(inner).oneshot(req).await
    }
}
