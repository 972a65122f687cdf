//! The embedded backend: everything in the process, nothing to install.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::backend::{Backend, Counts, Delivery, QueueError};
use crate::job::{Job, Outcome};

/// Default number of outcomes kept for [`Backend::outcomes_after`] and [`Backend::outcome`].
pub const DEFAULT_OUTCOME_CAPACITY: usize = 1_000_000;

/// Jobs, leases and outcomes in the process (clones share them). A job survives its worker
/// task's failure (its lease expires and it is handed out again), not the process: for a bulk
/// run the output file is the durable record (see `anthropic-bulk`), for many processes use
/// [`RedisBackend`](crate::RedisBackend).
///
/// Outcomes are kept up to a capacity (default [`DEFAULT_OUTCOME_CAPACITY`]); past it the
/// oldest are forgotten (their ids stay known, so they are not run again).
#[derive(Debug, Clone)]
pub struct MemoryBackend {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    ready: Notify,
    stored: Notify,
    capacity: usize,
}

#[derive(Debug)]
struct Entry {
    job: Job,
    runs: u32,
    failures: u32,
    enqueued: Instant,
}

#[derive(Debug, Default)]
struct State {
    known: HashSet<String>,
    ready: VecDeque<Entry>,
    delayed: BTreeMap<(Instant, u64), Entry>,
    in_flight: HashMap<String, (Entry, Instant)>,
    /// Jobs cancelled while a stale copy may still come back (an expired lease).
    cancelled: HashSet<String>,
    /// Every job whose outcome was stored (kept when the outcome itself is forgotten).
    finished: HashSet<String>,
    outcomes: HashMap<String, Outcome>,
    /// Ids of stored outcomes in order; `log_base` is the sequence number of the first.
    log: VecDeque<String>,
    log_base: u64,
    next: u64,
    done: u64,
    dead: u64,
    rescheduled: u64,
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// An empty queue.
    pub fn new() -> Self {
        Self::with_outcome_capacity(DEFAULT_OUTCOME_CAPACITY)
    }

    /// An empty queue keeping at most `n` outcomes (at least 1).
    pub fn with_outcome_capacity(n: usize) -> Self {
        Self {
            inner: Arc::new(Shared {
                state: Mutex::default(),
                ready: Notify::new(),
                stored: Notify::new(),
                capacity: n.max(1),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Moves due delayed jobs and expired leases back to the ready queue.
    fn promote(&mut self, now: Instant) {
        while let Some((&(at, seq), _)) = self.delayed.first_key_value() {
            if at > now {
                break;
            }
            if let Some(e) = self.delayed.remove(&(at, seq)) {
                self.ready.push_back(e);
            }
        }
        let expired: Vec<String> = self
            .in_flight
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(token, _)| token.clone())
            .collect();
        for token in expired {
            if let Some((e, _)) = self.in_flight.remove(&token) {
                tracing::warn!(job = %e.job.id, "lease expired: handing the job out again");
                self.ready.push_front(e);
            }
        }
    }
}

impl Backend for MemoryBackend {
    async fn enqueue(&self, jobs: Vec<Job>) -> Result<usize, QueueError> {
        crate::check_ids(&jobs)?;
        let now = Instant::now();
        let mut s = self.lock();
        let mut added = 0;
        for job in jobs {
            if s.known.insert(job.id.clone()) {
                s.ready.push_back(Entry {
                    job,
                    runs: 0,
                    failures: 0,
                    enqueued: now,
                });
                added += 1;
            }
        }
        drop(s);
        if added > 0 {
            self.inner.ready.notify_waiters();
        }
        Ok(added)
    }

    async fn reserve(
        &self,
        _consumer: &str,
        lease: Duration,
    ) -> Result<Option<Delivery>, QueueError> {
        let now = Instant::now();
        let mut s = self.lock();
        s.promote(now);
        while let Some(mut e) = s.ready.pop_front() {
            if s.cancelled.remove(&e.job.id) || s.finished.contains(&e.job.id) {
                continue;
            }
            e.runs += 1;
            s.next += 1;
            let token = s.next.to_string();
            let d = Delivery {
                job: e.job.clone(),
                runs: e.runs,
                failures: e.failures,
                age: now.duration_since(e.enqueued),
                token: token.clone(),
            };
            s.in_flight.insert(token, (e, now + lease));
            return Ok(Some(d));
        }
        Ok(None)
    }

    async fn extend(
        &self,
        d: &Delivery,
        _consumer: &str,
        lease: Duration,
    ) -> Result<(), QueueError> {
        if let Some((_, until)) = self.lock().in_flight.get_mut(&d.token) {
            *until = Instant::now() + lease;
        }
        Ok(())
    }

    async fn complete(&self, d: &Delivery, outcome: &Outcome) -> Result<bool, QueueError> {
        let mut s = self.lock();
        s.in_flight.remove(&d.token);
        let id = outcome.id().to_owned();
        if !s.finished.insert(id.clone()) {
            return Ok(false);
        }
        match outcome {
            Outcome::Done(_) => s.done += 1,
            Outcome::Dead(_) => s.dead += 1,
        }
        s.outcomes.insert(id.clone(), outcome.clone());
        s.log.push_back(id);
        while s.log.len() > self.inner.capacity {
            if let Some(old) = s.log.pop_front() {
                s.outcomes.remove(&old);
                s.log_base += 1;
            }
        }
        drop(s);
        self.inner.stored.notify_waiters();
        Ok(true)
    }

    async fn reschedule(
        &self,
        d: &Delivery,
        after: Duration,
        failed: bool,
    ) -> Result<(), QueueError> {
        let now = Instant::now();
        let mut s = self.lock();
        let Some((mut e, _)) = s.in_flight.remove(&d.token) else {
            return Ok(());
        };
        if s.finished.contains(&e.job.id) {
            return Ok(());
        }
        e.failures += u32::from(failed);
        s.rescheduled += 1;
        s.next += 1;
        let key = (now + after, s.next);
        s.delayed.insert(key, e);
        Ok(())
    }

    async fn cancel(&self, id: &str) -> Result<bool, QueueError> {
        let mut s = self.lock();
        let waiting =
            s.ready.iter().any(|e| e.job.id == id) || s.delayed.values().any(|e| e.job.id == id);
        if waiting {
            s.ready.retain(|e| e.job.id != id);
            s.delayed.retain(|_, e| e.job.id != id);
        }
        Ok(waiting)
    }

    async fn counts(&self) -> Result<Counts, QueueError> {
        let s = self.lock();
        Ok(Counts {
            queued: s.ready.len() as u64,
            delayed: s.delayed.len() as u64,
            in_flight: s.in_flight.len() as u64,
            done: s.done,
            dead: s.dead,
            rescheduled: s.rescheduled,
        })
    }

    async fn outcome(&self, id: &str) -> Result<Option<Outcome>, QueueError> {
        Ok(self.lock().outcomes.get(id).cloned())
    }

    async fn outcomes_after(
        &self,
        cursor: &str,
        max: usize,
    ) -> Result<(Vec<Outcome>, String), QueueError> {
        let s = self.lock();
        let from: u64 = if cursor.is_empty() {
            0
        } else {
            cursor
                .parse()
                .map_err(|_| QueueError::Corrupt(format!("cursor {cursor:?}")))?
        };
        let start = from.max(s.log_base);
        let skip = (start - s.log_base) as usize;
        let out: Vec<Outcome> = s
            .log
            .iter()
            .skip(skip)
            .take(max)
            .filter_map(|id| s.outcomes.get(id).cloned())
            .collect();
        let next = start + s.log.iter().skip(skip).take(max).count() as u64;
        Ok((out, next.to_string()))
    }

    async fn wait_ready(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.inner.ready.notified()).await;
    }

    async fn wait_stored(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.inner.stored.notified()).await;
    }
}
