//! Configuration of a [`MockServer`](crate::MockServer): limits, faults, latency, output size.

use std::net::SocketAddr;
use std::time::Duration;

/// The ids of the models `GET /v1/models` lists (the default known models).
pub const MODEL_IDS: [&str; 6] = [
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-haiku-4-5",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-3-5-haiku-latest",
];

/// Everything a mock server can be told at start. `MockConfig::default()` is a well-behaved
/// API on `127.0.0.1:0` with limits so high they are never reached and no faults.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// Address to bind; the default is `127.0.0.1:0` (a free port on loopback).
    pub addr: SocketAddr,
    /// Accepted API keys. Empty means any non-empty key is accepted.
    pub api_keys: Vec<String>,
    /// Token-bucket rate limits, per API key.
    pub limits: RateLimits,
    /// Random faults drawn per request from a seeded source.
    pub faults: RandomFaults,
    /// Outage windows: every request gets a 529 (or a reset) while one is active.
    pub outages: Vec<Outage>,
    /// Time to first byte and generation speed.
    pub latency: Latency,
    /// Output tokens of each answer, capped by the request's `max_tokens`.
    pub output_tokens: u32,
    /// Largest request body accepted; larger ones get the edge's HTML 413 page.
    pub max_body_bytes: usize,
    /// A `ping` event is sent after `message_start` and then every this many content deltas.
    pub ping_every: u32,
    /// How many recent requests `/_mock/log` keeps.
    pub log_capacity: usize,
    /// Serve HTTPS (HTTP/1.1 and HTTP/2 by ALPN) with this identity instead of plain HTTP.
    pub tls: Option<crate::TlsIdentity>,
    /// Serve the API under this path, as a gateway would (e.g. `/gateway/anthropic`); `None`:
    /// at the root, as the API does. Either way the paths are matched exactly (`/v1/v1/messages`
    /// is a 404, as on the API); the `/_mock/*` endpoints stay at the root.
    pub path_prefix: Option<String>,
    /// How many requests of a Message Batch are processed a second (default 200).
    pub batch_speed: f64,
    /// Models the API knows: a request naming another gets a 404 `not_found_error`, as on the
    /// API. Default: those `GET /v1/models` lists.
    pub known_models: Vec<String>,
    /// Also accept any model id starting with `claude-` (default: yes, so that a new model
    /// name works without updating the mock; `--known-models-only` turns it off).
    pub accept_any_claude_model: bool,
    /// How many HTTP/2 streams one connection may have open at once (the
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` the server sends; default 200). Streams beyond it
    /// wait at the client.
    pub http2_max_concurrent_streams: u32,
}

impl MockConfig {
    /// Whether a request for `model` is answered (the API gives a 404 otherwise).
    pub fn knows_model(&self, model: &str) -> bool {
        (self.accept_any_claude_model && model.starts_with("claude-"))
            || self.known_models.iter().any(|m| m == model)
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_keys: Vec::new(),
            limits: RateLimits::default(),
            faults: RandomFaults::default(),
            outages: Vec::new(),
            latency: Latency::default(),
            output_tokens: 48,
            max_body_bytes: 32 * 1024 * 1024,
            ping_every: 16,
            log_capacity: 1024,
            tls: None,
            path_prefix: None,
            batch_speed: 200.0,
            known_models: MODEL_IDS.iter().map(|m| (*m).to_owned()).collect(),
            accept_any_claude_model: true,
            http2_max_concurrent_streams: 200,
        }
    }
}

/// Per-minute limits, applied per API key as continuously refilling token buckets, the way
/// the API applies them. A bucket of capacity `N` per minute refills at `N / 60` per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Requests per minute.
    pub requests_per_minute: u64,
    /// Input tokens per minute.
    pub input_tokens_per_minute: u64,
    /// Output tokens per minute.
    pub output_tokens_per_minute: u64,
    /// An acceleration limit: at most this many requests admitted within a second that began
    /// with the quota idle (its requests bucket at least 90% full); more get a 429 with
    /// `error_code` `ramp_limit_exceeded` and `retry-after: 1`. `None`: no such limit.
    pub max_burst_from_idle: Option<u32>,
}

impl Default for RateLimits {
    /// Limits so high no test or benchmark reaches them; the headers are still sent.
    fn default() -> Self {
        Self {
            requests_per_minute: 100_000_000,
            input_tokens_per_minute: 100_000_000_000,
            output_tokens_per_minute: 100_000_000_000,
            max_burst_from_idle: None,
        }
    }
}

/// Per-request probabilities of faults, drawn from a source seeded with `seed`: the same
/// seed and the same request order give the same faults. The probabilities add up to at most 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomFaults {
    /// Seed of the random source.
    pub seed: u64,
    /// Probability of a 529 `overloaded_error`.
    pub p529: f64,
    /// Probability of a 500 `api_error`.
    pub p500: f64,
    /// Probability of a 503 (JSON body, `api_error`).
    pub p503: f64,
    /// Probability of a 502 with an HTML body, as a proxy sends it.
    pub p502_html: f64,
    /// Probability of a connection reset before any byte of the response.
    pub p_reset: f64,
    /// Probability of a stall: no byte for [`RandomFaults::stall`], then a reset.
    pub p_stall: f64,
    /// How long a stall lasts.
    pub stall: Duration,
}

impl Default for RandomFaults {
    fn default() -> Self {
        Self {
            seed: 0,
            p529: 0.0,
            p500: 0.0,
            p503: 0.0,
            p502_html: 0.0,
            p_reset: 0.0,
            p_stall: 0.0,
            stall: Duration::from_secs(30),
        }
    }
}

impl RandomFaults {
    /// The sum of all probabilities.
    pub fn total(&self) -> f64 {
        self.p529 + self.p500 + self.p503 + self.p502_html + self.p_reset + self.p_stall
    }
}

/// What requests get during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutageKind {
    /// A 529 `overloaded_error`.
    Overloaded,
    /// A connection reset.
    Reset,
}

/// An outage window, measured from the server's start: from `start` for `duration`, and again
/// every `every` if set (a schedule); for every model, or for one `model` only (then the
/// others keep answering, as when one model is overloaded).
#[derive(Debug, Clone, PartialEq)]
pub struct Outage {
    /// When the (first) window opens, after the server started.
    pub start: Duration,
    /// How long each window lasts.
    pub duration: Duration,
    /// Repeat period of the schedule; `None` for a single window.
    pub every: Option<Duration>,
    /// What requests get during the window.
    pub kind: OutageKind,
    /// The one model affected (the request body's `model`); `None`: every request.
    pub model: Option<String>,
}

impl Outage {
    /// Whether the outage is active at `elapsed` since the server's start.
    pub fn is_active(&self, elapsed: Duration) -> bool {
        if elapsed < self.start {
            return false;
        }
        let mut since = elapsed - self.start;
        if let Some(every) = self.every.filter(|e| !e.is_zero()) {
            since = Duration::from_nanos((since.as_nanos() % every.as_nanos()) as u64);
        }
        since < self.duration
    }
}

/// Latency of the mock: before the first byte, and the generation speed.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Latency {
    /// Delay before the response headers.
    pub time_to_first_byte: Duration,
    /// Output tokens per second; `0` generates instantly. A non-streaming answer is sent when
    /// the whole answer would have been generated; a stream paces its deltas.
    pub tokens_per_second: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outage_windows() {
        let once = Outage {
            start: Duration::from_secs(10),
            duration: Duration::from_secs(5),
            every: None,
            kind: OutageKind::Overloaded,
            model: None,
        };
        assert!(!once.is_active(Duration::from_secs(9)));
        assert!(once.is_active(Duration::from_secs(10)));
        assert!(once.is_active(Duration::from_millis(14_999)));
        assert!(!once.is_active(Duration::from_secs(15)));
        assert!(!once.is_active(Duration::from_secs(70)));
        let sched = Outage {
            every: Some(Duration::from_secs(60)),
            ..once.clone()
        };
        assert!(sched.is_active(Duration::from_secs(72)));
        assert!(!sched.is_active(Duration::from_secs(76)));
    }
}
