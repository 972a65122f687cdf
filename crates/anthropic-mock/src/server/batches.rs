//! Message Batches: create, retrieve, list, cancel, delete, results (JSONL), with processing
//! that advances with time at [`MockConfig::batch_speed`](crate::MockConfig::batch_speed)
//! requests a second.
//!
//! A batch is `in_progress` until every request is processed, then `ended`; a cancel makes it
//! `canceling` for a second, then `ended` with the unprocessed requests `canceled`; after 24 h,
//! or `POST /_mock/batches/{id}/expire`, the unprocessed requests are `expired`. Each request's
//! params are checked as `/v1/messages` checks a body: an invalid one is `errored` with an
//! `invalid_request_error`, a valid one `succeeded` with a generated `Message`.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use http::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::State;
use super::responses::{error_response, hv, json_response};
use super::wire::{Resp, Route};
use crate::body::MockBody;
use crate::generate;
use crate::rng;
use crate::stats::lock;

/// Most requests in one batch, as the API.
pub(super) const MAX_BATCH_REQUESTS: usize = 100_000;
/// Most batches kept (the oldest ended ones are forgotten first).
pub(super) const MAX_BATCHES: usize = 10_000;
const DAY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    InProgress,
    Canceling,
    Ended,
}

/// How each request of a batch ended, once it did.
#[derive(Debug, Clone)]
enum Fate {
    Succeeded(Value),
    Errored(String),
    Canceled,
    Expired,
}

#[derive(Debug)]
pub(super) struct Batch {
    id: String,
    requests: Vec<(String, Value)>,
    fates: Vec<Fate>,
    status: Status,
    started: Instant,
    created: SystemTime,
    cancel_at: Option<(Instant, SystemTime)>,
    ended_at: Option<SystemTime>,
}

/// The batches of a mock, by creation order.
#[derive(Debug, Default)]
pub(super) struct Batches {
    by_seq: BTreeMap<u64, Batch>,
    next: u64,
}

impl Batch {
    /// Moves the batch along to `now`.
    fn advance(&mut self, speed: f64, seed: u64, output: u32) {
        let now = Instant::now();
        if self.status == Status::Ended {
            return;
        }
        let elapsed = now.saturating_duration_since(self.started).as_secs_f64();
        let due = ((elapsed * speed) as usize).min(self.requests.len());
        while self.fates.len() < due {
            let i = self.fates.len();
            let fate = process(&self.requests[i].1, seed.wrapping_add(i as u64), output);
            self.fates.push(fate);
        }
        let system_now = SystemTime::now();
        if let Some((at, _)) = self.cancel_at {
            if now.saturating_duration_since(at) >= Duration::from_secs(1) {
                self.fill(Fate::Canceled);
            }
        } else if now.saturating_duration_since(self.started) >= DAY {
            self.fill(Fate::Expired);
        }
        if self.fates.len() == self.requests.len() {
            self.status = Status::Ended;
            self.ended_at = Some(system_now);
        }
    }

    fn fill(&mut self, fate: Fate) {
        while self.fates.len() < self.requests.len() {
            self.fates.push(fate.clone());
        }
    }

    fn json(&self, base: &str) -> Value {
        let mut counts =
            json!({"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0});
        for f in &self.fates {
            let k = match f {
                Fate::Succeeded(_) => "succeeded",
                Fate::Errored(_) => "errored",
                Fate::Canceled => "canceled",
                Fate::Expired => "expired",
            };
            counts[k] = json!(counts[k].as_u64().unwrap_or(0) + 1);
        }
        counts["processing"] = json!(self.requests.len() - self.fates.len());
        let t = |s: SystemTime| crate::time::rfc3339(s);
        json!({
            "id": self.id,
            "type": "message_batch",
            "processing_status": match self.status {
                Status::InProgress => "in_progress",
                Status::Canceling => "canceling",
                Status::Ended => "ended",
            },
            "request_counts": counts,
            "ended_at": self.ended_at.map(t),
            "created_at": t(self.created),
            "expires_at": t(self.created + DAY),
            "archived_at": null,
            "cancel_initiated_at": self.cancel_at.map(|(_, s)| t(s)),
            "results_url": (self.status == Status::Ended)
                .then(|| format!("{base}/v1/messages/batches/{}/results", self.id)),
        })
    }

    fn results(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ((custom_id, _), fate) in self.requests.iter().zip(&self.fates) {
            let result = match fate {
                Fate::Succeeded(m) => json!({"type": "succeeded", "message": m}),
                Fate::Errored(msg) => json!({"type": "errored", "error": {"type": "error",
                    "error": {"type": "invalid_request_error", "message": msg}}}),
                Fate::Canceled => json!({"type": "canceled"}),
                Fate::Expired => json!({"type": "expired"}),
            };
            let line = json!({"custom_id": custom_id, "result": result});
            if let Ok(bytes) = serde_json::to_vec(&line) {
                out.extend_from_slice(&bytes);
                out.push(b'\n');
            }
        }
        out
    }
}

/// One request of a batch, processed.
fn process(params: &Value, seed: u64, output_tokens: u32) -> Fate {
    if let Err(msg) = super::api::validate(params, Route::Messages) {
        return Fate::Errored(msg);
    }
    let max_tokens = params["max_tokens"].as_u64().unwrap_or(1);
    let output = u64::from(output_tokens).min(max_tokens).max(1) as u32;
    let answer = generate::answer_for(
        params,
        rng::id("msg_", seed),
        generate::estimate_input_tokens(params),
        output,
        output_tokens,
        seed,
    );
    Fate::Succeeded(serde_json::from_slice(&answer.message_json()).unwrap_or(Value::Null))
}

fn valid_custom_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Answers a request under `/v1/messages/batches` (`rest` is what follows it), its body
/// already read (empty for GET and DELETE).
pub(super) fn handle(
    state: &State,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    body: &[u8],
    base: &str,
    request_id: &str,
) -> Resp {
    let speed = state.config.batch_speed.max(0.001);
    let seed = state.config.faults.seed;
    let out = state.config.output_tokens;
    let invalid = |msg: &str| {
        error_response(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            msg,
            None,
            request_id,
        )
    };
    let not_found = || {
        error_response(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "batch not found",
            None,
            request_id,
        )
    };
    let mut all = lock(&state.batches);
    let seq_of =
        |all: &Batches, id: &str| all.by_seq.iter().find(|(_, b)| b.id == id).map(|(s, _)| *s);
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    let resp = match (method, parts.as_slice()) {
        (&Method::POST, [""]) => {
            let v: Value = match serde_json::from_slice(body) {
                Ok(v) => v,
                Err(e) => return invalid(&format!("body: invalid JSON: {e}")),
            };
            let Some(reqs) = v.get("requests").and_then(Value::as_array) else {
                return invalid("requests: Field required");
            };
            if reqs.is_empty() || reqs.len() > MAX_BATCH_REQUESTS {
                return invalid(&format!(
                    "requests: between 1 and {MAX_BATCH_REQUESTS} requests are allowed"
                ));
            }
            let mut seen = HashSet::new();
            let mut requests = Vec::with_capacity(reqs.len());
            for (i, r) in reqs.iter().enumerate() {
                let Some(cid) = r.get("custom_id").and_then(Value::as_str) else {
                    return invalid(&format!("requests.{i}.custom_id: Field required"));
                };
                if !valid_custom_id(cid) {
                    return invalid(&format!(
                        "requests.{i}.custom_id: 1 to 64 letters, digits, - or _"
                    ));
                }
                if !seen.insert(cid.to_owned()) {
                    return invalid(&format!(
                        "requests.{i}.custom_id: duplicate custom_id {cid:?}"
                    ));
                }
                let Some(params) = r.get("params").filter(|p| p.is_object()) else {
                    return invalid(&format!("requests.{i}.params: Field required"));
                };
                if params.get("stream").and_then(Value::as_bool) == Some(true) {
                    return invalid(&format!(
                        "requests.{i}.params.stream: streaming is not supported in batches"
                    ));
                }
                requests.push((cid.to_owned(), params.clone()));
            }
            if all.by_seq.len() >= MAX_BATCHES {
                let oldest_ended = all
                    .by_seq
                    .iter()
                    .find(|(_, b)| b.status == Status::Ended)
                    .map(|(s, _)| *s);
                match oldest_ended {
                    Some(s) => {
                        all.by_seq.remove(&s);
                    }
                    None => return invalid("too many batches in progress"),
                }
            }
            all.next += 1;
            let seq = all.next;
            let batch = Batch {
                id: rng::id("msgbatch_", seq.wrapping_add(seed)),
                requests,
                fates: Vec::new(),
                status: Status::InProgress,
                started: Instant::now(),
                created: SystemTime::now(),
                cancel_at: None,
                ended_at: None,
            };
            let j = batch.json(base);
            all.by_seq.insert(seq, batch);
            json_response(StatusCode::OK, &j)
        }
        (&Method::GET, [""]) => {
            let limit = match param(query, "limit").map(str::parse::<usize>) {
                None => 20,
                Some(Ok(n)) if (1..=1000).contains(&n) => n,
                Some(_) => return invalid("limit: Input should be between 1 and 1000"),
            };
            for b in all.by_seq.values_mut() {
                b.advance(speed, seed, out);
            }
            // Newest first.
            let order: Vec<u64> = all.by_seq.keys().rev().copied().collect();
            let pos = |id: &str| {
                order
                    .iter()
                    .position(|s| all.by_seq.get(s).is_some_and(|b| b.id == id))
            };
            let (from, to) = match (param(query, "after_id"), param(query, "before_id")) {
                (Some(after), _) => match pos(after) {
                    Some(i) => (i + 1, (i + 1 + limit).min(order.len())),
                    None => return not_found(),
                },
                (None, Some(before)) => match pos(before) {
                    Some(i) => (i.saturating_sub(limit), i),
                    None => return not_found(),
                },
                (None, None) => (0, limit.min(order.len())),
            };
            let page: Vec<Value> = order[from..to]
                .iter()
                .filter_map(|s| all.by_seq.get(s).map(|b| b.json(base)))
                .collect();
            let has_more =
                if param(query, "after_id").is_none() && param(query, "before_id").is_some() {
                    from > 0
                } else {
                    to < order.len()
                };
            json_response(
                StatusCode::OK,
                &json!({
                    "data": page,
                    "has_more": has_more,
                    "first_id": page.first().map(|b| b["id"].clone()),
                    "last_id": page.last().map(|b| b["id"].clone()),
                }),
            )
        }
        (&Method::GET, [id]) => match seq_of(&all, id).and_then(|s| all.by_seq.get_mut(&s)) {
            Some(b) => {
                b.advance(speed, seed, out);
                json_response(StatusCode::OK, &b.json(base))
            }
            None => not_found(),
        },
        (&Method::POST, [id, "cancel"]) => {
            match seq_of(&all, id).and_then(|s| all.by_seq.get_mut(&s)) {
                Some(b) => {
                    b.advance(speed, seed, out);
                    if b.status == Status::InProgress {
                        b.status = Status::Canceling;
                        b.cancel_at = Some((Instant::now(), SystemTime::now()));
                    }
                    json_response(StatusCode::OK, &b.json(base))
                }
                None => not_found(),
            }
        }
        (&Method::DELETE, [id]) => match seq_of(&all, id) {
            Some(s) => {
                let ended = all.by_seq.get_mut(&s).is_some_and(|b| {
                    b.advance(speed, seed, out);
                    b.status == Status::Ended
                });
                if !ended {
                    return invalid("a batch must end (or be canceled) before it is deleted");
                }
                all.by_seq.remove(&s);
                json_response(
                    StatusCode::OK,
                    &json!({"id": id, "type": "message_batch_deleted"}),
                )
            }
            None => not_found(),
        },
        (&Method::GET, [id, "results"]) => {
            match seq_of(&all, id).and_then(|s| all.by_seq.get_mut(&s)) {
                Some(b) => {
                    b.advance(speed, seed, out);
                    if b.status != Status::Ended {
                        return invalid("the batch's results are available once it has ended");
                    }
                    let mut r = http::Response::new(MockBody::full(b.results()));
                    r.headers_mut()
                        .insert(http::header::CONTENT_TYPE, hv("application/binary"));
                    r
                }
                None => not_found(),
            }
        }
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "Not found",
            None,
            request_id,
        ),
    };
    let mut resp = resp;
    resp.headers_mut().insert("request-id", hv(request_id));
    resp
}

/// `POST /_mock/batches/{id}/expire`: the unprocessed requests expire now.
pub(super) fn expire(state: &State, id: &str) -> bool {
    let speed = state.config.batch_speed.max(0.001);
    let seed = state.config.faults.seed;
    let out = state.config.output_tokens;
    let mut all = lock(&state.batches);
    match all.by_seq.values_mut().find(|b| b.id == id) {
        Some(b) => {
            b.advance(speed, seed, out);
            if b.status != Status::Ended {
                b.fill(Fate::Expired);
                b.status = Status::Ended;
                b.ended_at = Some(SystemTime::now());
            }
            true
        }
        None => false,
    }
}
