//! What a queue backend does, whichever stores the jobs.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use crate::job::{Job, Outcome};

/// A job handed to a worker under a lease.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The job.
    pub job: Job,
    /// How many times it has been started, this time included.
    pub runs: u32,
    /// Failed runs that count against `max_attempts` (rate limits do not).
    pub failures: u32,
    /// Time since it was first enqueued.
    pub age: Duration,
    /// The backend's handle on this delivery.
    pub(crate) token: String,
}

/// How many jobs are where.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Ready to run.
    pub queued: u64,
    /// Waiting for their time (rescheduled).
    pub delayed: u64,
    /// Running under a lease.
    pub in_flight: u64,
    /// Answered (results stored).
    pub done: u64,
    /// Dead letters stored.
    pub dead: u64,
    /// Reschedules so far (rate limits and transient errors).
    pub rescheduled: u64,
}

impl Counts {
    /// Jobs not finished yet: queued, delayed or in flight.
    pub fn pending(&self) -> u64 {
        self.queued + self.delayed + self.in_flight
    }
}

/// Why a queue operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The store could not be reached or refused the operation (a Redis restart, say); the
    /// workers retry with backoff, and nothing acknowledged is lost.
    #[error("queue store unavailable: {0}")]
    Store(String),
    /// A stored value could not be read back.
    #[error("corrupt queue entry: {0}")]
    Corrupt(String),
    /// A job id is empty or longer than [`MAX_ID_LEN`](crate::MAX_ID_LEN).
    #[error("invalid job id: {0}")]
    InvalidId(String),
    /// The caller's deadline passed before the job's outcome (the job was cancelled if it
    /// had not started).
    #[error(
        "no outcome for job {id} within the deadline (cancelled before it started: {cancelled})"
    )]
    DeadlinePassed {
        /// The job.
        id: String,
        /// Whether the job was cancelled before it started.
        cancelled: bool,
    },
}

/// A place for jobs, leases and outcomes. [`MemoryBackend`](crate::MemoryBackend) keeps them
/// in the process; [`RedisBackend`](crate::RedisBackend) in Redis, for many worker processes.
///
/// The contract every backend keeps:
/// - `enqueue` skips a job whose id is already known (queued, running or finished);
/// - `reserve` hands a job to one worker under a lease; a job whose lease expires (its
///   worker died) is handed out again;
/// - `complete` stores the outcome only if none is stored yet (true when this call stored
///   it), and releases the job; outcomes are reported once, in order, by `outcomes_after`;
/// - `reschedule` releases the job until `after` from now;
/// - `cancel` stops a job that has not started.
pub trait Backend: Clone + Send + Sync + 'static {
    /// Adds jobs; returns how many were new.
    fn enqueue(&self, jobs: Vec<Job>) -> impl Future<Output = Result<usize, QueueError>> + Send;
    /// The next ready job for `consumer`, leased for `lease`; `None` if there is none now.
    fn reserve(
        &self,
        consumer: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<Option<Delivery>, QueueError>> + Send;
    /// Keeps a running job's lease for another `lease`.
    fn extend(
        &self,
        delivery: &Delivery,
        consumer: &str,
        lease: Duration,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Stores the outcome unless one is stored already (true when this call stored it) and
    /// releases the job.
    fn complete(
        &self,
        delivery: &Delivery,
        outcome: &Outcome,
    ) -> impl Future<Output = Result<bool, QueueError>> + Send;
    /// Releases the job until `after` from now; `failed` counts the run against
    /// `max_attempts`.
    fn reschedule(
        &self,
        delivery: &Delivery,
        after: Duration,
        failed: bool,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;
    /// Cancels a job that has not started (true if it had not).
    fn cancel(&self, id: &str) -> impl Future<Output = Result<bool, QueueError>> + Send;
    /// The counts.
    fn counts(&self) -> impl Future<Output = Result<Counts, QueueError>> + Send;
    /// A job's stored outcome.
    fn outcome(&self, id: &str)
    -> impl Future<Output = Result<Option<Outcome>, QueueError>> + Send;
    /// Outcomes stored after `cursor` (`""` for the first), in the order they were stored, at
    /// most `max`; and the cursor to continue from.
    fn outcomes_after(
        &self,
        cursor: &str,
        max: usize,
    ) -> impl Future<Output = Result<(Vec<Outcome>, String), QueueError>> + Send;
    /// Waits until a job may be ready or `timeout` passes (a backend that can be told wakes
    /// early; the default just sleeps).
    fn wait_ready(&self, timeout: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(timeout)
    }
    /// Waits until an outcome may have been stored or `timeout` passes (the default sleeps).
    fn wait_stored(&self, timeout: Duration) -> impl Future<Output = ()> + Send {
        tokio::time::sleep(timeout)
    }
}
