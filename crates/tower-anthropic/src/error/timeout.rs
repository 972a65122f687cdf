//! Timeouts and the local concurrency limit.

use std::fmt;
use std::time::Duration;

use super::{Error, Trail};

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TimeoutKind {
    /// One attempt (request, response and, for non-streaming calls, the body) took too long.
    Attempt,
    /// The overall deadline of the call (waits between attempts included) passed.
    Deadline,
    /// A stream went quiet for longer than the idle timeout.
    StreamIdle,
    /// A stream sent no content (pings are not progress) within the time allowed for it.
    FirstContent,
}

/// A timeout fired.
#[derive(Debug, Clone)]
pub struct TimeoutError {
    kind: TimeoutKind,
    after: Option<Duration>,
    last: Option<Box<Error>>,
    pub(crate) trail: Trail,
}

impl TimeoutError {
    /// A timeout of `kind` that fired after `after` (when known).
    pub(crate) fn new(kind: TimeoutKind, after: Option<Duration>) -> Self {
        Self {
            kind,
            after,
            last: None,
            trail: Trail::default(),
        }
    }

    /// The deadline (of `limit`, when known) would pass before the next attempt could start:
    /// the retries stop at `last`, whose attempt record this error takes over.
    pub(crate) fn deadline_before_retry(mut last: Error, limit: Option<Duration>) -> Self {
        let trail = last.take_trail();
        Self {
            kind: TimeoutKind::Deadline,
            after: limit,
            last: Some(Box::new(last)),
            trail,
        }
    }

    /// For a deadline that stopped retries: the last attempt's error (also its `source()`).
    pub fn last_error(&self) -> Option<&Error> {
        self.last.as_deref()
    }

    /// Which timeout fired.
    pub fn kind(&self) -> TimeoutKind {
        self.kind
    }
    /// The timeout that fired (for a deadline: the whole deadline), when known.
    pub fn after(&self) -> Option<Duration> {
        self.after
    }
}

impl fmt::Display for TimeoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, &self.last) {
            (TimeoutKind::Deadline, Some(last)) => {
                f.write_str("deadline")?;
                if let Some(d) = self.after {
                    write!(f, " of {d:?}")?;
                }
                let n = self.trail.attempts;
                let s = if n == 1 { "" } else { "s" };
                write!(
                    f,
                    " reached after {n} attempt{s} (no time left to wait and retry); last error: {last}"
                )?;
                if let Some(wait) = last.retry_after() {
                    write!(f, "; the server asked to retry after {wait:?}")?;
                }
                Ok(())
            }
            (kind, _) => {
                let which = match kind {
                    TimeoutKind::Attempt => "attempt timed out",
                    TimeoutKind::Deadline => "deadline exceeded",
                    TimeoutKind::StreamIdle => "stream idle timeout",
                    TimeoutKind::FirstContent => "no stream content",
                };
                match self.after {
                    Some(d) => write!(f, "{which} after {d:?}"),
                    None => f.write_str(which),
                }
            }
        }
    }
}

impl std::error::Error for TimeoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.last
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The local concurrency limit was full (load shedding).
#[derive(Debug, Clone)]
pub struct LimitReachedError {
    max: usize,
}

impl LimitReachedError {
    pub(crate) fn new(max: usize) -> Self {
        Self { max }
    }
    /// The limit that was full.
    pub fn max(&self) -> usize {
        self.max
    }
}

impl fmt::Display for LimitReachedError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "concurrency limit of {} reached: request shed", self.max)
    }
}

impl std::error::Error for LimitReachedError {}
