//! Counters and the recent-request log, served at `/_mock/stats` and `/_mock/log`.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use serde::{Deserialize, Serialize};

/// A snapshot of the mock's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests received on the API routes (`/v1/...`), faults included.
    pub requests: u64,
    /// Responses by status code (API routes). Resets and stalls have no status.
    pub by_status: BTreeMap<u16, u64>,
    /// Injected faults by kind (`reset`, `stall`, `outage`, `random_529`, `script_status`, ...).
    pub by_fault: BTreeMap<String, u64>,
    /// Input tokens of admitted requests.
    pub tokens_in: u64,
    /// Output tokens of admitted requests.
    pub tokens_out: u64,
    /// TCP connections open now.
    pub open_connections: u64,
    /// Connections accepted since start (or the last reset).
    pub total_connections: u64,
    /// Event streams open now.
    pub open_streams: u64,
    /// Largest number of event streams open at once.
    pub max_open_streams: u64,
    /// API requests by the model their body named (counted once the body is read, so a
    /// request answered before that, by a script, an auth error or an outage of every model,
    /// is not here); past 1,000 distinct models the rest count under `"(other)"`.
    #[serde(default)]
    pub by_model: BTreeMap<String, u64>,
}

/// Most distinct models `by_model` keeps.
const MAX_MODELS: usize = 1000;

/// One request as the log keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// HTTP method.
    pub method: String,
    /// Request path.
    pub path: String,
    /// HTTP version, e.g. `HTTP/1.1` or `HTTP/2.0`.
    #[serde(default)]
    pub version: String,
    /// Arrival, in milliseconds since the server started.
    pub at_ms: u64,
    /// Selected request headers: `x-stainless-retry-count`, `x-mock-key`, `anthropic-version`,
    /// `anthropic-beta`,
    /// `user-agent`, `content-type`, and whether a key was sent (never its value).
    pub headers: BTreeMap<String, String>,
    /// Response status, or `None` for a reset or stall.
    pub status: Option<u16>,
    /// The fault injected, if any.
    pub fault: Option<String>,
    /// The `request-id` sent back.
    pub request_id: String,
    /// The model the body named, once it was read (`None` when the request was answered
    /// before: a script, an auth error, an outage of every model, an unreadable body).
    #[serde(default)]
    pub model: Option<String>,
}

const LOGGED_HEADERS: &[&str] = &[
    "x-stainless-retry-count",
    "x-mock-key",
    "anthropic-version",
    "anthropic-beta",
    "user-agent",
    "content-type",
];

pub(crate) fn selected_headers(h: &http::HeaderMap) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = LOGGED_HEADERS
        .iter()
        .filter_map(|n| {
            h.get(*n).map(|v| {
                (
                    (*n).to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
        })
        .collect();
    let has_key = h.contains_key("x-api-key") || h.contains_key(http::header::AUTHORIZATION);
    out.insert("api-key-sent".to_owned(), has_key.to_string());
    out
}

#[derive(Debug)]
pub(crate) struct Counters {
    requests: AtomicU64,
    by_status: Box<[AtomicU64]>,
    by_fault: Mutex<BTreeMap<String, u64>>,
    by_model: Mutex<BTreeMap<String, u64>>,
    tokens_in: AtomicU64,
    tokens_out: AtomicU64,
    pub(crate) open_connections: AtomicU64,
    total_connections: AtomicU64,
    open_streams: AtomicU64,
    max_open_streams: AtomicU64,
    log: Mutex<VecDeque<LogEntry>>,
    log_capacity: usize,
}

impl Counters {
    pub(crate) fn new(log_capacity: usize) -> Self {
        Self {
            requests: AtomicU64::new(0),
            by_status: (0..600).map(|_| AtomicU64::new(0)).collect(),
            by_fault: Mutex::new(BTreeMap::new()),
            by_model: Mutex::new(BTreeMap::new()),
            tokens_in: AtomicU64::new(0),
            tokens_out: AtomicU64::new(0),
            open_connections: AtomicU64::new(0),
            total_connections: AtomicU64::new(0),
            open_streams: AtomicU64::new(0),
            max_open_streams: AtomicU64::new(0),
            log: Mutex::new(VecDeque::new()),
            log_capacity,
        }
    }

    pub(crate) fn request(&self) {
        self.requests.fetch_add(1, Relaxed);
    }

    pub(crate) fn status(&self, status: u16) {
        if let Some(c) = self.by_status.get(status as usize) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn fault(&self, name: &str) {
        *lock(&self.by_fault).entry(name.to_owned()).or_default() += 1;
    }

    pub(crate) fn model(&self, model: &str) {
        let mut m = lock(&self.by_model);
        let key = if m.len() < MAX_MODELS || m.contains_key(model) {
            model
        } else {
            "(other)"
        };
        *m.entry(key.to_owned()).or_default() += 1;
    }

    pub(crate) fn tokens(&self, input: u64, output: u64) {
        self.tokens_in.fetch_add(input, Relaxed);
        self.tokens_out.fetch_add(output, Relaxed);
    }

    pub(crate) fn connection_opened(&self) {
        self.open_connections.fetch_add(1, Relaxed);
        self.total_connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.open_connections.fetch_sub(1, Relaxed);
    }

    pub(crate) fn stream_opened(&self) {
        let now = self.open_streams.fetch_add(1, Relaxed) + 1;
        self.max_open_streams.fetch_max(now, Relaxed);
    }

    pub(crate) fn stream_closed(&self) {
        self.open_streams.fetch_sub(1, Relaxed);
    }

    pub(crate) fn log(&self, entry: LogEntry) {
        if self.log_capacity == 0 {
            return;
        }
        let mut log = lock(&self.log);
        if log.len() == self.log_capacity {
            log.pop_front();
        }
        log.push_back(entry);
    }

    pub(crate) fn recent(&self) -> Vec<LogEntry> {
        lock(&self.log).iter().cloned().collect()
    }

    /// Zeroes the counters and the log; open connections and streams stay as they are.
    pub(crate) fn reset(&self) {
        self.requests.store(0, Relaxed);
        for c in self.by_status.iter() {
            c.store(0, Relaxed);
        }
        lock(&self.by_fault).clear();
        lock(&self.by_model).clear();
        self.tokens_in.store(0, Relaxed);
        self.tokens_out.store(0, Relaxed);
        self.total_connections
            .store(self.open_connections.load(Relaxed), Relaxed);
        self.max_open_streams
            .store(self.open_streams.load(Relaxed), Relaxed);
        lock(&self.log).clear();
    }

    pub(crate) fn snapshot(&self) -> Stats {
        Stats {
            requests: self.requests.load(Relaxed),
            by_status: self
                .by_status
                .iter()
                .enumerate()
                .filter_map(|(s, c)| {
                    let n = c.load(Relaxed);
                    (n > 0).then_some((s as u16, n))
                })
                .collect(),
            by_fault: lock(&self.by_fault).clone(),
            tokens_in: self.tokens_in.load(Relaxed),
            tokens_out: self.tokens_out.load(Relaxed),
            open_connections: self.open_connections.load(Relaxed),
            total_connections: self.total_connections.load(Relaxed),
            open_streams: self.open_streams.load(Relaxed),
            max_open_streams: self.max_open_streams.load(Relaxed),
            by_model: lock(&self.by_model).clone(),
        }
    }
}

/// Locks a mutex, recovering from poisoning: counters stay usable after a panic elsewhere.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
