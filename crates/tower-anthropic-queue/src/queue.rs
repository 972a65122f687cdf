//! Online use: submit a job and await its outcome with a deadline.

use std::time::Duration;

use tokio::time::Instant;

use crate::backend::{Backend, Counts, QueueError};
use crate::job::{Job, Outcome};

/// A handle to submit jobs and await their outcomes (clones share the backend). A spike of
/// calls from, say, axum handlers is absorbed by the queue and drained by a
/// [`WorkerPool`](crate::WorkerPool) at the quota; each caller waits for its own outcome.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use anthropic_mock::{MockConfig, MockServer};
/// use tower_anthropic::{Client, messages::CreateMessageRequest};
/// use tower_anthropic_queue::{Job, MemoryBackend, Outcome, Queue, WorkerConfig, WorkerPool};
///
/// let mock = MockServer::start(MockConfig::default()).await?;
/// let client = Client::builder().api_key("sk-ant-test").base_url(mock.url()).build()?;
/// let backend = MemoryBackend::new();
/// let pool = WorkerPool::new(backend.clone(), client.service(), WorkerConfig::new());
/// tokio::spawn(pool.run(std::future::pending()));
///
/// // In a handler:
/// let queue = Queue::new(backend);
/// let job = Job::generated(CreateMessageRequest::new("claude-sonnet-4-6", 64).user("Hi"));
/// match queue.call(job, Duration::from_secs(30)).await? {
///     Outcome::Done(r) => assert!(!r.message.text().is_empty()),
///     Outcome::Dead(d) => panic!("{:?}", d.error),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Queue<B> {
    backend: B,
    poll: Duration,
}

impl<B: Backend> Queue<B> {
    /// A handle on `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            poll: Duration::from_millis(20),
        }
    }

    /// How often an outcome is looked for while waiting (default 20 ms; a backend that can
    /// tell, as the embedded one, wakes the waiters at once).
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.poll = d.clamp(Duration::from_millis(1), Duration::from_secs(10));
        self
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// Enqueues jobs (ids already known are skipped); how many were new.
    pub async fn submit(&self, jobs: Vec<Job>) -> Result<usize, QueueError> {
        self.backend.enqueue(jobs).await
    }

    /// Waits for a job's outcome until `deadline` from now. When it passes, the job is
    /// cancelled if it has not started, and [`QueueError::DeadlinePassed`] says whether it was.
    pub async fn wait(&self, id: &str, deadline: Duration) -> Result<Outcome, QueueError> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(o) = self.backend.outcome(id).await? {
                return Ok(o);
            }
            let now = Instant::now();
            if now >= until {
                let cancelled = self.backend.cancel(id).await.unwrap_or(false);
                if cancelled {
                    tracing::info!(
                        job = id,
                        "deadline passed before the job started: cancelled"
                    );
                }
                return Err(QueueError::DeadlinePassed {
                    id: id.to_owned(),
                    cancelled,
                });
            }
            let nap = self.poll.min(until - now);
            self.backend.wait_stored(nap).await;
        }
    }

    /// Submits one job and waits for its outcome (see [`wait`](Self::wait)).
    pub async fn call(&self, job: Job, deadline: Duration) -> Result<Outcome, QueueError> {
        let id = job.id.clone();
        self.backend.enqueue(vec![job]).await?;
        self.wait(&id, deadline).await
    }

    /// The counts.
    pub async fn counts(&self) -> Result<Counts, QueueError> {
        self.backend.counts().await
    }
}
