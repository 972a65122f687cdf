//! A work queue for the Anthropic Messages API: bulk and spiky workloads with no request
//! lost, on one machine or many.
//!
//! - A [`Job`] is an id and a [`CreateMessageRequest`](tower_anthropic::messages::CreateMessageRequest)
//!   (and metadata of yours); its [`Outcome`] is a [`JobResult`] (the `Message`, its request id,
//!   attempts, the model that answered) or a [`DeadLetter`] carrying the typed error as an
//!   [`ErrorRecord`].
//! - **Delivery** is at least once, **outcomes exactly once**: a job is released only after
//!   its outcome is stored; a worker that dies has its jobs handed out again when their lease
//!   expires; a job run twice has its outcome stored once and reported once.
//! - **Rate limits never lose work**: a 429 after the stack's retries, or the pacer's refusal,
//!   reschedules the job at its `retry_after` without using up an attempt; overload and server
//!   errors reschedule with backoff up to `max_attempts` / `max_age`; permanent errors (4xx, a
//!   spend limit) are dead letters at once ([`WorkerConfig::verdict`]).
//! - **Backends**: [`MemoryBackend`] (embedded, nothing to install) and [`RedisBackend`] (many
//!   worker processes on many machines: a Redis stream with a consumer group, a delayed set,
//!   Lua scripts; feature `redis`, on by default).
//! - [`WorkerPool`] runs jobs through any Messages service (a `Client`'s, with its pacing,
//!   retries, breakers and fallbacks); [`Queue`] submits and awaits outcomes with a deadline
//!   (online use); [`Backend::counts`] gives the progress; each reschedule and dead letter is a
//!   `tracing` event.
//! - **A batch lane**: jobs that [tolerate](Job::tolerates) a long wait go into Message
//!   Batches (half the price) instead of the online quota ([`BatchLane`]).
//! - The `anthropic-bulk` command runs a JSONL file of requests, resumably.

mod backend;
mod job;
mod lane;
mod memory;
mod queue;
#[cfg(feature = "redis")]
mod redis_backend;
mod worker;

pub use backend::{Backend, Counts, Delivery, QueueError};
pub use job::{DeadLetter, ErrorRecord, Job, JobResult, MAX_ID_LEN, Outcome};
pub use lane::{BatchLane, LaneHandle};
pub use memory::{DEFAULT_OUTCOME_CAPACITY, MemoryBackend};
pub use queue::Queue;
#[cfg(feature = "redis")]
pub use redis_backend::RedisBackend;
pub use worker::{Verdict, WorkerConfig, WorkerPool};

/// Refuses empty or overlong ids.
pub(crate) fn check_ids(jobs: &[Job]) -> Result<(), QueueError> {
    for j in jobs {
        if j.id.is_empty() || j.id.len() > MAX_ID_LEN {
            let shown: String = j.id.chars().take(40).collect();
            return Err(QueueError::InvalidId(format!(
                "{shown:?} ({} bytes; 1 to {MAX_ID_LEN} allowed)",
                j.id.len()
            )));
        }
    }
    Ok(())
}
