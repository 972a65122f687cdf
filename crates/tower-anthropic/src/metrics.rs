//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (feature `metrics`):
//! whatever recorder the application installs (Prometheus, StatsD, ...) receives them.
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | `gen_ai.client.operation.duration` | histogram (s) | `gen_ai.request.model`, `error.type` on failure | each whole call, retries and waits included |
//! | `gen_ai.client.token.usage` | histogram | `gen_ai.request.model`, `gen_ai.token.type` (`input`, `output`) | tokens an answer reports |
//! | `anthropic.client.attempts` | counter | `http.response.status_code` (`none` without a response) | every attempt sent |
//! | `anthropic.client.retries` | counter | `reason` (`backoff`, `retry-after`, `refused`: an HTTP/2 stream the server refused) | retries decided |
//! | `anthropic.client.errors` | counter | `error.type` (`Overloaded`, `RateLimit`, `paced`, `circuit_open`, `limit_reached`, ...) | calls that failed |
//! | `anthropic.client.calls_in_flight` | gauge | | calls started and not finished |
//! | `anthropic.client.pacer.remaining` | gauge | `quota` (the model class), `bucket` (`requests`, `input_tokens`, `output_tokens`) | what the pacer counts as left in the bucket now (negative while reserved output is unsettled) |
//! | `anthropic.client.pacer.limit` | gauge | `quota`, `bucket` | the per-minute limit the pacer learned (or was given) |
//! | `anthropic.client.pacer.waiting` | gauge | `quota` | calls waiting in the pacer's line |
//!
//! The pacer's gauges are set when a call is admitted or an answer teaches the pacer
//! something, at most every 250 ms per quota (scrapers read gauges every few seconds; setting
//! them on every call would cost more than the call's pacing), so they show the headroom each
//! quota has as traffic flows; `remaining / limit` is the share of the minute's quota left.
//! They are labelled by model class, never by key.
//!
//! **Bounded labels.** A model name comes from the caller (a gateway passes its users'
//! strings through), so the `gen_ai.request.model` and `quota` labels take at most
//! [`MAX_MODEL_LABELS`] distinct values per process: the first names seen that look like
//! model ids (at most 64 characters of letters, digits and `-._:@/`); any other name, and
//! every new one past the cap, is labelled `other`. Every other label comes from a fixed set.
//!
//! Without the feature every function here does nothing.

/// The most distinct model names the metrics label by (the rest are `other`).
pub const MAX_MODEL_LABELS: usize = 64;

#[cfg(feature = "metrics")]
mod on {
    use std::collections::HashSet;
    use std::sync::{Arc, Mutex, OnceLock};
    use std::time::Duration;

    use metrics::SharedString;

    /// A model name as a label: itself while it looks like a model id and is one of the first
    /// [`MAX_MODEL_LABELS`](super::MAX_MODEL_LABELS) such names seen, else `other`.
    pub(super) fn model_label(name: &str) -> SharedString {
        static SEEN: OnceLock<Mutex<HashSet<Arc<str>>>> = OnceLock::new();
        let plausible = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:@/".contains(&b));
        if !plausible {
            return SharedString::const_str("other");
        }
        let mut seen = SEEN
            .get_or_init(Mutex::default)
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(known) = seen.get(name) {
            return SharedString::from_shared(known.clone());
        }
        if seen.len() >= super::MAX_MODEL_LABELS {
            return SharedString::const_str("other");
        }
        let name: Arc<str> = Arc::from(name);
        seen.insert(name.clone());
        SharedString::from_shared(name)
    }

    pub(crate) fn call_finished(
        model: &Arc<str>,
        took: Duration,
        error: Option<&str>,
        usage: Option<(u64, u64)>,
    ) {
        // The model's name shared, not copied for each label; from a bounded set.
        let model = model_label(model);
        match error {
            Some(e) => {
                metrics::histogram!("gen_ai.client.operation.duration",
                    "gen_ai.request.model" => model.clone(), "error.type" => e.to_owned())
                .record(took.as_secs_f64());
                metrics::counter!("anthropic.client.errors", "error.type" => e.to_owned())
                    .increment(1);
            }
            None => metrics::histogram!("gen_ai.client.operation.duration",
                "gen_ai.request.model" => model.clone())
            .record(took.as_secs_f64()),
        }
        if let Some((input, output)) = usage {
            metrics::histogram!("gen_ai.client.token.usage",
                "gen_ai.request.model" => model.clone(), "gen_ai.token.type" => "input")
            .record(input as f64);
            metrics::histogram!("gen_ai.client.token.usage",
                "gen_ai.request.model" => model, "gen_ai.token.type" => "output")
            .record(output as f64);
        }
    }

    pub(crate) fn attempt(status: Option<u16>) {
        metrics::counter!("anthropic.client.attempts",
            "http.response.status_code" => status_label(status))
        .increment(1);
    }

    /// A status code as a label: the API's usual codes without an allocation.
    fn status_label(status: Option<u16>) -> SharedString {
        let known = match status {
            None => "none",
            Some(200) => "200",
            Some(400) => "400",
            Some(401) => "401",
            Some(403) => "403",
            Some(404) => "404",
            Some(408) => "408",
            Some(409) => "409",
            Some(413) => "413",
            Some(429) => "429",
            Some(500) => "500",
            Some(502) => "502",
            Some(503) => "503",
            Some(504) => "504",
            Some(529) => "529",
            Some(other) => return SharedString::from_owned(other.to_string()),
        };
        SharedString::const_str(known)
    }

    pub(crate) fn retry(reason: &'static str) {
        metrics::counter!("anthropic.client.retries", "reason" => reason).increment(1);
    }

    pub(crate) fn in_flight(delta: f64) {
        metrics::gauge!("anthropic.client.calls_in_flight").increment(delta);
    }

    pub(crate) fn pacer_headroom(h: &super::Headroom) {
        const BUCKETS: [&str; 3] = ["requests", "input_tokens", "output_tokens"];
        let quota = model_label(&h.quota);
        for (i, bucket) in BUCKETS.into_iter().enumerate() {
            metrics::gauge!("anthropic.client.pacer.remaining",
                "quota" => quota.clone(), "bucket" => bucket)
            .set(h.remaining[i]);
            if let Some(limit) = h.limits[i] {
                metrics::gauge!("anthropic.client.pacer.limit",
                    "quota" => quota.clone(), "bucket" => bucket)
                .set(limit);
            }
        }
        metrics::gauge!("anthropic.client.pacer.waiting", "quota" => quota).set(h.waiting as f64);
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn status_labels_are_the_codes() {
            for code in [200u16, 201, 400, 418, 429, 500, 529, 599] {
                assert_eq!(&*super::status_label(Some(code)), code.to_string());
            }
            assert_eq!(&*super::status_label(None), "none");
        }
    }
}

#[cfg(not(feature = "metrics"))]
mod on {
    use std::time::Duration;
    pub(crate) fn call_finished(
        _: &std::sync::Arc<str>,
        _: Duration,
        _: Option<&str>,
        _: Option<(u64, u64)>,
    ) {
    }
    pub(crate) fn attempt(_: Option<u16>) {}
    pub(crate) fn retry(_: &'static str) {}
    pub(crate) fn in_flight(_: f64) {}
    pub(crate) fn pacer_headroom(_: &super::Headroom) {}
}

pub(crate) use on::{attempt, call_finished, pacer_headroom, retry};

/// One quota's headroom as the pacer sees it, read under its lock and recorded after.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) struct Headroom {
    pub(crate) quota: String,
    pub(crate) remaining: [f64; 3],
    pub(crate) limits: [Option<f64>; 3],
    pub(crate) waiting: usize,
}

/// Whether recording the pacer's gauges is worth reading the quota for.
pub(crate) const RECORDS_HEADROOM: bool = RECORDS;

/// Whether metrics are recorded at all (the `metrics` feature): what only they need (a
/// call's duration: two clock reads) is not computed without them.
pub(crate) const RECORDS: bool = cfg!(feature = "metrics");

/// Counts a call in flight until dropped.
pub(crate) struct InFlight(());

impl InFlight {
    pub(crate) fn start() -> Self {
        on::in_flight(1.0);
        Self(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        on::in_flight(-1.0);
    }
}
