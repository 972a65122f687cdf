//! The Message Batches lane: latency-tolerant jobs go into batches (half the price, rate
//! limits of their own) instead of the online quota.
//!
//! A [`WorkerPool`](crate::WorkerPool) with [`batch_lane`](crate::WorkerPool::batch_lane) hands
//! every job that [tolerates](crate::Job::tolerates) at least [`BatchLane::min_tolerance`]
//! (default 1 hour) to the lane. The lane gathers them (up to `max_batch` requests, or what
//! arrived within `linger`), sends them as one batch, keeps their leases while the batch runs,
//! and stores each outcome when the results come: `succeeded` is done; `errored` with an
//! overload or server error is rescheduled (it counts as a failed run), any other error is a
//! dead letter; `canceled` and `expired` are rescheduled. A batch that cannot be created or
//! followed (after the stack's retries) has its jobs rescheduled.

use std::collections::HashMap;
use std::time::Duration;

use http::{Request, Response};
use http_body::Body;
use tokio::sync::mpsc;
use tower::Service;
use tower_anthropic::batches::{BatchJob, BatchOutcome, BatchRequest, Batches};
use tower_anthropic::transport::RequestBody;
use tower_anthropic::{ApiErrorKind, BoxError};

use crate::backend::{Backend, Delivery};
use crate::job::{DeadLetter, ErrorRecord, JobResult, Outcome};

/// Most jobs the lane holds at once (past it, jobs run online).
const MAX_HELD: usize = 100_000;

/// The settings of a batch lane.
#[derive(Debug, Clone)]
pub struct BatchLane {
    min_tolerance: Duration,
    max_batch: usize,
    linger: Duration,
    lease: Duration,
    retry_after: Duration,
}

impl Default for BatchLane {
    fn default() -> Self {
        Self {
            min_tolerance: Duration::from_secs(3600),
            max_batch: 10_000,
            linger: Duration::from_secs(5),
            lease: Duration::from_secs(60),
            retry_after: Duration::from_secs(30),
        }
    }
}

/// What a pool holds to hand jobs to a running lane.
#[derive(Debug, Clone)]
pub struct LaneHandle {
    tx: mpsc::Sender<Delivery>,
    min_tolerance: Duration,
}

impl LaneHandle {
    /// Takes the job if it belongs in the lane (`None`), or gives it back to run online.
    pub(crate) fn offer(&self, d: Delivery) -> Option<Delivery> {
        let tolerant = d
            .job
            .tolerance_secs
            .is_some_and(|t| Duration::from_secs(t) >= self.min_tolerance);
        if !tolerant {
            return Some(d);
        }
        match self.tx.try_send(d) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(d) | mpsc::error::TrySendError::Closed(d)) => {
                Some(d)
            }
        }
    }
}

impl BatchLane {
    /// The defaults: jobs tolerating an hour or more, batches of up to 10,000 gathered for 5 s.
    pub fn new() -> Self {
        Self::default()
    }
    /// The least tolerance that sends a job to the lane.
    pub fn min_tolerance(mut self, d: Duration) -> Self {
        self.min_tolerance = d;
        self
    }
    /// Most requests in one batch (1 to 100,000).
    pub fn max_batch(mut self, n: usize) -> Self {
        self.max_batch = n.clamp(1, tower_anthropic::batches::MAX_REQUESTS);
        self
    }
    /// How long jobs are gathered before a batch goes out (at most an hour).
    pub fn linger(mut self, d: Duration) -> Self {
        self.linger = d.min(Duration::from_secs(3600));
        self
    }
    /// The lease the lane keeps on the jobs it holds (renewed every third of it; 1 s to a day).
    pub fn lease(mut self, d: Duration) -> Self {
        self.lease = d.clamp(Duration::from_secs(1), Duration::from_secs(86_400));
        self
    }

    /// Starts the lane on `backend`, sending batches through `batches`; give the handle to
    /// the pool with [`WorkerPool::batch_lane`](crate::WorkerPool::batch_lane).
    pub fn spawn<B, S, RB>(self, backend: B, batches: Batches<S>) -> LaneHandle
    where
        B: Backend,
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: Body + Send + 'static,
        RB::Data: Send,
        RB::Error: Into<BoxError>,
    {
        let (tx, mut rx) = mpsc::channel::<Delivery>(MAX_HELD);
        let handle = LaneHandle {
            tx,
            min_tolerance: self.min_tolerance,
        };
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut held = vec![first];
                let until = tokio::time::Instant::now() + self.linger;
                while held.len() < self.max_batch {
                    match tokio::time::timeout_at(until, rx.recv()).await {
                        Ok(Some(d)) => held.push(d),
                        Ok(None) | Err(_) => break,
                    }
                }
                let (lane, backend, batches) = (self.clone(), backend.clone(), batches.clone());
                tokio::spawn(async move { lane.run_batch(backend, batches, held).await });
            }
        });
        handle
    }

    async fn run_batch<B, S, RB>(&self, backend: B, batches: Batches<S>, held: Vec<Delivery>)
    where
        B: Backend,
        S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        RB: Body + Send + 'static,
        RB::Data: Send,
        RB::Error: Into<BoxError>,
    {
        let consumer = format!("batch-lane-{}", std::process::id());
        // Requests the API would refuse are dead letters now; the rest go in the batch.
        let mut by_custom_id: HashMap<String, Delivery> = HashMap::new();
        let mut requests = Vec::new();
        for (i, d) in held.into_iter().enumerate() {
            let mut params = d.job.request.clone();
            params.stream = None;
            let r = BatchRequest::new(format!("j{i}"), params);
            if let Err(e) = tower_anthropic::batches::validate(std::slice::from_ref(&r)) {
                let dead = Outcome::Dead(DeadLetter {
                    id: d.job.id.clone(),
                    error: ErrorRecord::from(&e),
                    reason: "permanent".into(),
                    runs: d.runs,
                    job: d.job.clone(),
                });
                let _ = backend.complete(&d, &dead).await;
                continue;
            }
            by_custom_id.insert(r.custom_id.clone(), d);
            requests.push(r);
        }
        if requests.is_empty() {
            return;
        }
        let n = requests.len();
        let held = std::sync::Mutex::new(by_custom_id);
        let take = |id: &str| held.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
        let work = async {
            let batch = batches.create(&requests).await?;
            tracing::info!(batch = %batch.id, requests = n, "jobs sent as a Message Batch");
            let job = BatchJob::resume([batch.id]);
            job.wait(&batches, |_| {}).await?;
            let mut results = job.results(&batches);
            while let Some(r) = results.next().await {
                let r = r?;
                let Some(d) = take(&r.custom_id) else {
                    continue;
                };
                self.settle(&backend, &d, r.result).await;
            }
            Ok::<(), tower_anthropic::Error>(())
        };
        // Keep the leases of the jobs held while the batch runs.
        let mut work = std::pin::pin!(work);
        let every = self.lease / 3;
        let mut renew = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let result = loop {
            tokio::select! {
                r = &mut work => break r,
                _ = renew.tick() => {
                    let now: Vec<Delivery> = held
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .values()
                        .cloned()
                        .collect();
                    for d in &now {
                        let _ = backend.extend(d, &consumer, self.lease).await;
                    }
                }
            }
        };
        let left: Vec<Delivery> = held
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain()
            .map(|(_, d)| d)
            .collect();
        if let Err(e) = result {
            tracing::warn!(error = %e, jobs = left.len(),
                "batch lane failed: rescheduling its jobs");
        }
        // Whatever has no outcome yet goes back to the queue.
        for d in &left {
            let _ = backend.reschedule(d, self.retry_after, false).await;
        }
    }

    async fn settle<B: Backend>(&self, backend: &B, d: &Delivery, outcome: BatchOutcome) {
        let stored = match outcome {
            BatchOutcome::Succeeded { message } => Outcome::Done(JobResult {
                id: d.job.id.clone(),
                message: *message,
                request_id: None,
                attempts: 1,
                runs: d.runs,
                fallback_depth: 0,
                metadata: d.job.metadata.clone(),
            }),
            BatchOutcome::Errored { error } => {
                let kind = error.kind();
                if kind.is_retryable() && kind != ApiErrorKind::RateLimit {
                    let _ = backend.reschedule(d, self.retry_after, true).await;
                    return;
                }
                Outcome::Dead(DeadLetter {
                    id: d.job.id.clone(),
                    error: ErrorRecord {
                        class: "batch".into(),
                        kind: Some(format!("{kind:?}")),
                        status: None,
                        error_type: Some(error.error.error_type.clone()),
                        error_code: None,
                        message: error.error.message.clone(),
                        request_id: None,
                    },
                    reason: "permanent".into(),
                    runs: d.runs,
                    job: d.job.clone(),
                })
            }
            BatchOutcome::Canceled | BatchOutcome::Expired => {
                let _ = backend.reschedule(d, Duration::ZERO, false).await;
                return;
            }
        };
        let _ = backend.complete(d, &stored).await;
    }
}
