//! Jobs and what becomes of them: a result, or a dead letter with the typed error.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::{ApiResponse, Error, Message};

/// Longest job id accepted (longer ones are refused at enqueue).
pub const MAX_ID_LEN: usize = 256;

/// One request to run: an id (the caller's, or generated), the request, and metadata of the
/// caller's that travels with it into the result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Unique within a queue: a job whose id is already known (queued, running or finished)
    /// is not enqueued again.
    pub id: String,
    /// The request.
    pub request: CreateMessageRequest,
    /// Anything of the caller's, returned with the outcome.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
    /// How long the caller can wait for the outcome, in seconds: a job that tolerates long
    /// enough goes to the Message Batches lane when the pool has one (see
    /// [`BatchLane`](crate::BatchLane)).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_secs: Option<u64>,
}

impl Job {
    /// A job with this id.
    pub fn new(id: impl Into<String>, request: CreateMessageRequest) -> Self {
        Self {
            id: id.into(),
            request,
            metadata: None,
            tolerance_secs: None,
        }
    }

    /// A job with a generated id (unique in this process and across processes with
    /// overwhelming probability).
    pub fn generated(request: CreateMessageRequest) -> Self {
        Self::new(generate_id(), request)
    }

    /// Marks the job latency-tolerant: its outcome may take this long (a batch can take up
    /// to 24 hours).
    pub fn tolerates(mut self, wait: Duration) -> Self {
        self.tolerance_secs = Some(wait.as_secs());
        self
    }

    /// With metadata.
    pub fn metadata(mut self, metadata: Value) -> Self {
        self.metadata = Some(metadata);
        self
    }
}

fn generate_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::{SystemTime, UNIX_EPOCH};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("job_{nanos:x}_{:x}_{n:x}", std::process::id())
}

/// What became of a job: stored once, reported once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Answered.
    Done(JobResult),
    /// Given up on: a permanent error, or too many attempts, or too old.
    Dead(DeadLetter),
}

impl Outcome {
    /// The job's id.
    pub fn id(&self) -> &str {
        match self {
            Outcome::Done(r) => &r.id,
            Outcome::Dead(d) => &d.id,
        }
    }
    /// Whether the job was answered.
    pub fn is_done(&self) -> bool {
        matches!(self, Outcome::Done(_))
    }
}

/// An answered job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobResult {
    /// The job's id.
    pub id: String,
    /// The answer (its `model` says which model answered).
    pub message: Message,
    /// The `request-id` of the answer.
    #[serde(default)]
    pub request_id: Option<String>,
    /// Attempts of the last call (its retries included).
    pub attempts: u32,
    /// How many times the job was run (1 unless it was rescheduled or re-delivered).
    pub runs: u32,
    /// How far down its fallback chain it was answered (0: the requested model).
    #[serde(default)]
    pub fallback_depth: u32,
    /// The job's metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl JobResult {
    pub(crate) fn new(job: &Job, resp: ApiResponse<Message>, runs: u32) -> Self {
        Self {
            id: job.id.clone(),
            request_id: resp.request_id().map(str::to_owned),
            attempts: resp.attempts(),
            fallback_depth: resp.fallback_depth(),
            runs,
            metadata: job.metadata.clone(),
            message: resp.into_inner(),
        }
    }
}

/// A job given up on, with its typed error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The job's id.
    pub id: String,
    /// The error that ended it.
    pub error: ErrorRecord,
    /// Why it was given up on: `permanent`, `max_attempts` or `max_age`.
    pub reason: String,
    /// How many times the job was run.
    pub runs: u32,
    /// The job itself, to run again by hand.
    pub job: Job,
}

/// An [`Error`] as a record that can be stored: its kind, status, type, code, message and
/// request id. Never the API key (errors never hold it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The class: `api`, `connection`, `timeout`, `decode`, `invalid_request`, `paced`,
    /// `circuit_open`, `stream`, `limit_reached`, `other`.
    pub class: String,
    /// For an API error, its kind (`BadRequest`, `Overloaded`, ...).
    #[serde(default)]
    pub kind: Option<String>,
    /// The HTTP status, if there was one.
    #[serde(default)]
    pub status: Option<u16>,
    /// The API's `error.type`.
    #[serde(default)]
    pub error_type: Option<String>,
    /// The API's `error.details.error_code` (a spend limit, say).
    #[serde(default)]
    pub error_code: Option<String>,
    /// The message (the error's `Display`).
    pub message: String,
    /// The `request-id` of the response, if there was one.
    #[serde(default)]
    pub request_id: Option<String>,
}

impl From<&Error> for ErrorRecord {
    fn from(e: &Error) -> Self {
        let api = e.as_api();
        Self {
            class: e.class().to_owned(),
            kind: e.kind().map(|k| format!("{k:?}")),
            status: e.status().map(|s| s.as_u16()),
            error_type: api.and_then(|a| a.error_type()).map(str::to_owned),
            error_code: api.and_then(|a| a.error_code()).map(str::to_owned),
            message: e.to_string(),
            request_id: e.request_id().map(str::to_owned),
        }
    }
}
