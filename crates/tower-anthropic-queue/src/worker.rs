//! Workers: take jobs from a backend, call the Messages API through the stack, and decide
//! what becomes of each job.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tower::{Service, ServiceExt};
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::{ApiErrorKind, ApiResponse, Error, Message};

use crate::backend::{Backend, Delivery};
use crate::job::{DeadLetter, ErrorRecord, JobResult, Outcome};

/// How a worker pool runs jobs and what it does with failures.
///
/// | setting | default |
/// |---|---|
/// | `concurrency` | 16 jobs at once |
/// | `lease` | 60 s, renewed every 20 s while a job runs |
/// | `max_attempts` | 5 failed runs (rate limits do not count) |
/// | `max_age` | 24 h since the job was enqueued |
/// | `backoff` | 1 s doubling to 60 s between failed runs |
/// | `rate_limit_wait` | 10 s when a rate limit names no time |
/// | `idle_poll` | 50 ms between looks at an empty queue |
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    concurrency: usize,
    lease: Duration,
    max_attempts: u32,
    max_age: Duration,
    backoff: Duration,
    max_backoff: Duration,
    rate_limit_wait: Duration,
    idle_poll: Duration,
    consumer: String,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            concurrency: 16,
            lease: Duration::from_secs(60),
            max_attempts: 5,
            max_age: Duration::from_secs(24 * 3600),
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            rate_limit_wait: Duration::from_secs(10),
            idle_poll: Duration::from_millis(50),
            consumer: format!("worker-{}", std::process::id()),
        }
    }
}

impl WorkerConfig {
    /// The defaults.
    pub fn new() -> Self {
        Self::default()
    }
    /// Jobs run at once (at least 1, at most 10,000).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.clamp(1, 10_000);
        self
    }
    /// The lease of a running job (at least 1 s, at most a day): a worker that dies has its
    /// jobs handed out again this long after its last renewal.
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d.clamp(Duration::from_secs(1), Duration::from_secs(86_400));
        self
    }
    /// Failed runs (overload, server errors, connection errors) before a job is a dead
    /// letter (at least 1).
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }
    /// Age past which a failing job is a dead letter.
    pub fn max_age(mut self, d: Duration) -> Self {
        self.max_age = d;
        self
    }
    /// The first wait after a failed run, doubling up to `max` (each clamped to a day).
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        let day = Duration::from_secs(86_400);
        self.backoff = first.min(day);
        self.max_backoff = max.clamp(self.backoff, day);
        self
    }
    /// The wait after a rate limit that names no time (clamped to a day).
    pub fn rate_limit_wait(mut self, d: Duration) -> Self {
        self.rate_limit_wait = d.min(Duration::from_secs(86_400));
        self
    }
    /// The pause between looks at an empty queue (1 ms to 10 s).
    pub fn idle_poll(mut self, d: Duration) -> Self {
        self.idle_poll = d.clamp(Duration::from_millis(1), Duration::from_secs(10));
        self
    }
    /// The name this pool's workers use with the backend (unique per process by default).
    pub fn consumer(mut self, name: impl Into<String>) -> Self {
        self.consumer = name.into();
        self
    }
}

/// What to do with a job after a run.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Run again after this wait; `failed` counts it against `max_attempts`.
    Reschedule {
        /// The wait.
        after: Duration,
        /// Whether the run counts as a failure.
        failed: bool,
        /// Why, for the log.
        reason: &'static str,
    },
    /// Give up: store a dead letter.
    Dead {
        /// `permanent`, `max_attempts` or `max_age`.
        reason: &'static str,
    },
}

impl WorkerConfig {
    /// The verdict on a run that failed with `e`, for a job delivered as `d`:
    /// - a rate limit (a 429 after the stack's retries, or the pacer's refusal) reschedules at
    ///   its `retry_after` (or `rate_limit_wait`) without using up an attempt; a spend limit
    ///   is permanent;
    /// - overload, server and connection errors, timeouts and open circuits reschedule with
    ///   backoff until `max_attempts` failed runs or `max_age`;
    /// - everything else (4xx, refused requests, undecodable answers) is permanent.
    pub fn verdict(&self, d: &Delivery, e: &Error) -> Verdict {
        let rate_limited = matches!(e, Error::Paced(_))
            || (e.kind() == Some(ApiErrorKind::RateLimit)
                && !e.as_api().is_some_and(|a| a.is_spend_limit()));
        if rate_limited {
            return Verdict::Reschedule {
                after: e.retry_after().unwrap_or(self.rate_limit_wait),
                failed: false,
                reason: "rate limited",
            };
        }
        let transient = e.is_unhealthy()
            || matches!(
                e,
                Error::CircuitOpen(_) | Error::LimitReached(_) | Error::Timeout(_)
            )
            || e.kind().is_some_and(|k| {
                matches!(k, ApiErrorKind::RequestTimeout | ApiErrorKind::Conflict)
            });
        if !transient {
            return Verdict::Dead {
                reason: "permanent",
            };
        }
        let failures = d.failures + 1;
        if failures >= self.max_attempts {
            return Verdict::Dead {
                reason: "max_attempts",
            };
        }
        if d.age >= self.max_age {
            return Verdict::Dead { reason: "max_age" };
        }
        let exp = self
            .backoff
            .saturating_mul(1u32 << (failures - 1).min(20))
            .min(self.max_backoff);
        let after = e.retry_after().map_or(exp, |r| r.max(exp));
        Verdict::Reschedule {
            after,
            failed: true,
            reason: "transient error",
        }
    }
}

/// A pool of workers over a backend and a Messages service (a
/// [`Client`](tower_anthropic::Client)'s [`service`](tower_anthropic::Client::service), or any
/// stack answering [`CreateMessageRequest`]s): they get the stack's pacing, retries, breakers
/// and fallbacks for free.
#[derive(Debug, Clone)]
pub struct WorkerPool<B, S> {
    backend: B,
    service: S,
    config: Arc<WorkerConfig>,
    lane: Option<crate::lane::LaneHandle>,
}

impl<B, S> WorkerPool<B, S>
where
    B: Backend,
    S: Service<CreateMessageRequest, Response = ApiResponse<Message>, Error = Error>
        + Clone
        + Send
        + Sync
        + 'static,
    S::Future: Send + 'static,
{
    /// Workers over `backend` calling `service`.
    pub fn new(backend: B, service: S, config: WorkerConfig) -> Self {
        Self {
            backend,
            service,
            config: Arc::new(config),
            lane: None,
        }
    }

    /// Sends latency-tolerant jobs to a Message Batches lane instead of the online quota.
    pub fn batch_lane(mut self, lane: crate::lane::LaneHandle) -> Self {
        self.lane = Some(lane);
        self
    }

    /// Runs until `shutdown` completes: then no job is taken, the jobs running finish (their
    /// outcomes are stored or they are rescheduled), and this returns.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..self.config.concurrency {
            let (pool, stop) = (self.clone(), stop.clone());
            let consumer = format!("{}-{i}", self.config.consumer);
            tasks.spawn(async move { pool.work(&consumer, &stop).await });
        }
        shutdown.await;
        stop.store(true, Ordering::SeqCst);
        while tasks.join_next().await.is_some() {}
    }

    /// Runs until the queue holds nothing pending (queued, delayed or in flight), or
    /// `shutdown` completes.
    pub async fn run_until_empty(self, shutdown: impl Future<Output = ()> + Send) {
        let backend = self.backend.clone();
        let poll = self.config.idle_poll.max(Duration::from_millis(50));
        let drained = async move {
            loop {
                match backend.counts().await {
                    Ok(c) if c.pending() == 0 => return,
                    _ => tokio::time::sleep(poll).await,
                }
            }
        };
        self.run(async move {
            tokio::select! {
                () = drained => {},
                () = shutdown => {},
            }
        })
        .await;
    }

    async fn work(&self, consumer: &str, stop: &AtomicBool) {
        let mut store_backoff = Duration::from_millis(100);
        while !stop.load(Ordering::SeqCst) {
            match self.backend.reserve(consumer, self.config.lease).await {
                Ok(Some(d)) => {
                    store_backoff = Duration::from_millis(100);
                    self.run_one(consumer, d).await;
                }
                Ok(None) => self.backend.wait_ready(self.config.idle_poll).await,
                Err(e) => {
                    tracing::warn!(error = %e, wait = ?store_backoff, "queue store unavailable");
                    tokio::time::sleep(store_backoff).await;
                    store_backoff = (store_backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn run_one(&self, consumer: &str, d: Delivery) {
        let d = match &self.lane {
            Some(lane) => match lane.offer(d) {
                None => return,
                Some(d) => d,
            },
            None => d,
        };
        let mut call = std::pin::pin!(self.service.clone().oneshot(d.job.request.clone()));
        // Renew the lease while the call runs (a long generation outlives one lease).
        let every = self.config.lease / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let result = loop {
            tokio::select! {
                r = &mut call => break r,
                _ = renew.tick() => {
                    if let Err(e) = self.backend.extend(&d, consumer, self.config.lease).await {
                        tracing::warn!(job = %d.job.id, error = %e, "could not renew a lease");
                    }
                }
            }
        };
        let action = match result {
            Ok(resp) => Action::Store(Box::new(Outcome::Done(JobResult::new(
                &d.job, resp, d.runs,
            )))),
            Err(e) => match self.config.verdict(&d, &e) {
                Verdict::Reschedule {
                    after,
                    failed,
                    reason,
                } => {
                    tracing::info!(job = %d.job.id, runs = d.runs, wait = ?after, reason,
                        error = %e, "job rescheduled");
                    Action::Reschedule(after, failed)
                }
                Verdict::Dead { reason } => {
                    tracing::warn!(job = %d.job.id, runs = d.runs, reason, error = %e,
                        "job is a dead letter");
                    Action::Store(Box::new(Outcome::Dead(DeadLetter {
                        id: d.job.id.clone(),
                        error: ErrorRecord::from(&e),
                        reason: reason.to_owned(),
                        runs: d.runs,
                        job: d.job.clone(),
                    })))
                }
            },
        };
        // The store may be briefly away (a restart): keep trying for a while; if it stays
        // away, the lease expires and the job is run again (its outcome is stored once).
        let mut wait = Duration::from_millis(100);
        for _ in 0..12 {
            let r = match &action {
                Action::Store(o) => self.backend.complete(&d, o).await.map(|_| ()),
                Action::Reschedule(after, failed) => {
                    self.backend.reschedule(&d, *after, *failed).await
                }
            };
            match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(job = %d.job.id, error = %e, "could not record a job's fate; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }
}

enum Action {
    Store(Box<Outcome>),
    Reschedule(Duration, bool),
}
