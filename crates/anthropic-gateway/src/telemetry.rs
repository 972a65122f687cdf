//! What the gateway tells its operators: a JSON access log line per request and Prometheus
//! metrics.
//!
//! | metric | kind | labels |
//! |---|---|---|
//! | `anthropic_gateway_requests_total` | counter | `key`, `model`, `status` |
//! | `anthropic_gateway_request_duration_seconds` | histogram | `key`, `model` |
//! | `anthropic_gateway_tokens_total` | counter | `key`, `model`, `kind` (`input`, `output`) |
//! | `anthropic_gateway_spend_micro_usd_total` | counter | `key` |
//! | `anthropic_gateway_queue_depth` | gauge | (requests admitted and not yet answered) |
//! | `anthropic_gateway_pacer_remaining` | gauge | `model`, `bucket` (this process's view of the upstream quota) |
//! | `anthropic_gateway_pacer_limit` | gauge | `model`, `bucket` |
//! | `anthropic_gateway_pacer_waiting` | gauge | `model` (calls waiting for the quota) |
//!
//! plus the library's own `anthropic.client.*` metrics. The pacer gauges are this process's
//! pacer's: with `pacing.store = "redis"` the quota's state lives in Redis and they are absent. Label values are the key's name (never
//! its secret) and the model, of which the first 64 seen are named and the rest counted as
//! `other` (a caller chooses the model: it must not grow the metrics without bound).

use std::collections::HashSet;
use std::io::Write;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::time::Instant;
use tower_anthropic::Client;

/// Models named in metric labels at most.
const MAX_MODEL_LABELS: usize = 64;

/// The label of a model: its name for the first 64 models seen, else `other`.
#[derive(Debug, Default)]
pub struct ModelLabels(Mutex<HashSet<String>>);

impl ModelLabels {
    /// The label of `model`.
    pub fn label(&self, model: &str) -> String {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(model) {
            return model.to_owned();
        }
        if seen.len() < MAX_MODEL_LABELS {
            seen.insert(model.to_owned());
            return model.to_owned();
        }
        "other".to_owned()
    }
}

/// One request's record, filled as it goes and written when it ends.
#[derive(Debug, Clone)]
pub struct Record {
    /// When it came in.
    pub start: Instant,
    /// This gateway's id of the request (`x-request-id`, the caller's when it sent one).
    pub request_id: String,
    /// The address the request came from (its IP).
    pub client: Option<String>,
    /// The method.
    pub method: String,
    /// The path (without the query).
    pub path: String,
    /// The key's name, once known.
    pub key: Option<String>,
    /// The model asked for, once known.
    pub model: Option<String>,
    /// Whether the answer is a stream.
    pub stream: bool,
}

/// The JSON of one access log line.
#[derive(Serialize)]
struct Line<'a> {
    ts: f64,
    request_id: &'a str,
    upstream_request_id: Option<&'a str>,
    client: Option<&'a str>,
    method: &'a str,
    path: &'a str,
    key: Option<&'a str>,
    model: Option<&'a str>,
    answered_by: Option<&'a str>,
    stream: bool,
    status: u16,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    latency_ms: f64,
    attempts: u32,
    outcome: &'a str,
}

/// How a request ended, for its record.
#[derive(Debug, Default)]
pub struct Outcome<'a> {
    /// The status the caller got.
    pub status: u16,
    /// The API's `request-id`.
    pub upstream_request_id: Option<&'a str>,
    /// The model that answered (after a fallback, another than asked).
    pub answered_by: Option<&'a str>,
    /// Usage, when an answer reported it.
    pub usage: Option<(u64, u64)>,
    /// Attempts upstream (0: none was made, or not known: the models and batches routes).
    pub attempts: u32,
    /// `ok`, `error`, `stream_failed`, `caller_hung_up`.
    pub outcome: &'a str,
    /// Spend, in micro-USD.
    pub spend_micros: i64,
}

/// Writes records: a log line (when on) and the metrics.
#[derive(Debug)]
pub struct Telemetry {
    access_log: bool,
    labels: ModelLabels,
    out: Mutex<std::io::Stdout>,
}

impl Telemetry {
    /// Access log lines on standard output when `access_log`.
    pub fn new(access_log: bool) -> Self {
        Telemetry {
            access_log,
            labels: ModelLabels::default(),
            out: Mutex::new(std::io::stdout()),
        }
    }

    /// Writes `record` as ended by `outcome`.
    pub fn finish(&self, record: &Record, outcome: &Outcome<'_>) {
        let latency = record.start.elapsed().as_secs_f64();
        let key = record.key.clone().unwrap_or_else(|| "-".to_owned());
        let model = record
            .model
            .as_deref()
            .map_or_else(|| "-".to_owned(), |m| self.labels.label(m));
        metrics::counter!("anthropic_gateway_requests_total",
            "key" => key.clone(), "model" => model.clone(), "status" => outcome.status.to_string())
        .increment(1);
        metrics::histogram!("anthropic_gateway_request_duration_seconds",
            "key" => key.clone(), "model" => model.clone())
        .record(latency);
        if let Some((input, output)) = outcome.usage {
            metrics::counter!("anthropic_gateway_tokens_total",
                "key" => key.clone(), "model" => model.clone(), "kind" => "input")
            .increment(input);
            metrics::counter!("anthropic_gateway_tokens_total",
                "key" => key.clone(), "model" => model, "kind" => "output")
            .increment(output);
        }
        if outcome.spend_micros > 0 {
            metrics::counter!("anthropic_gateway_spend_micro_usd_total", "key" => key)
                .increment(outcome.spend_micros as u64);
        }
        if !self.access_log {
            return;
        }
        let ts = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let line = Line {
            ts: (ts * 1000.0).round() / 1000.0,
            request_id: &record.request_id,
            upstream_request_id: outcome.upstream_request_id,
            client: record.client.as_deref(),
            method: &record.method,
            path: &record.path,
            key: record.key.as_deref(),
            model: record.model.as_deref(),
            answered_by: outcome.answered_by,
            stream: record.stream,
            status: outcome.status,
            input_tokens: outcome.usage.map(|u| u.0),
            output_tokens: outcome.usage.map(|u| u.1),
            latency_ms: (latency * 1e5).round() / 100.0,
            attempts: outcome.attempts,
            outcome: outcome.outcome,
        };
        if let Ok(mut json) = serde_json::to_vec(&line) {
            json.push(b'\n');
            let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
            let _ = out.write_all(&json);
        }
    }

    /// Sets the pacer gauges from `client`'s pacer (called at each scrape).
    pub fn pacer_gauges(&self, client: &Client) {
        let Some(pacer) = client.pacer() else {
            return;
        };
        for q in pacer.snapshot() {
            let model = self.labels.label(&q.id.class);
            let buckets = [
                ("requests", q.requests),
                ("input_tokens", q.input_tokens),
                ("output_tokens", q.output_tokens),
            ];
            for (bucket, b) in buckets {
                metrics::gauge!("anthropic_gateway_pacer_remaining",
                    "model" => model.clone(), "bucket" => bucket)
                .set(b.remaining);
                if let Some(limit) = b.limit {
                    metrics::gauge!("anthropic_gateway_pacer_limit",
                        "model" => model.clone(), "bucket" => bucket)
                    .set(limit as f64);
                }
            }
            metrics::gauge!("anthropic_gateway_pacer_waiting", "model" => model)
                .set(q.waiting as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_labels_are_bounded() {
        let labels = ModelLabels::default();
        for i in 0..MAX_MODEL_LABELS {
            assert_eq!(labels.label(&format!("m{i}")), format!("m{i}"));
        }
        assert_eq!(labels.label("one-more"), "other");
        assert_eq!(labels.label("m3"), "m3");
    }
}
