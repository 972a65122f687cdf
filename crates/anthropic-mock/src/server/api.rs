//! The API's own behaviour: authentication, validation, rate limits and the answer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::State;
use super::faults::{Action, Outcome, Scripted, model_outage, outage_or_random, scripted};
use super::responses::{
    error_response, html_response, hv, invalid, json_response, message_response, stream_response,
};
use super::wire::{Delivery, Resp, Route};
use crate::generate;
use crate::rng;
use crate::stats::lock;

fn done(fault: Option<String>, resp: Resp) -> Outcome {
    Outcome {
        action: Action::Respond(resp),
        fault,
    }
}

/// Decides the answer to one API request, in the API's order: a scripted entry first, then
/// authentication, outages and random faults, the body, a model's outage, the rate limits,
/// and the answer.
pub(super) async fn api_outcome(
    state: &Arc<State>,
    req: Request<Incoming>,
    route: Route,
    request_id: &str,
    model_seen: &mut Option<String>,
) -> Outcome {
    // 1. Scripted responses come first, whatever else the request says.
    let (delivery, stream_error_type, mut fault) =
        match scripted(state, req.headers(), request_id).await {
            Some(Scripted::Decided(outcome)) => return outcome,
            Some(Scripted::Deliver {
                delivery,
                stream_error_type,
                fault,
            }) => (delivery, stream_error_type, fault),
            None => (Delivery::Normal, None, None),
        };

    // 2. Authentication and version, as the API checks them before the body.
    let h = req.headers();
    let key = h
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            h.get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
        })
        .map(str::trim)
        .unwrap_or("")
        .to_owned();
    if key.is_empty() {
        return done(
            fault,
            error_response(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "x-api-key header is required",
                None,
                request_id,
            ),
        );
    }
    if !state.config.api_keys.is_empty() && !state.config.api_keys.contains(&key) {
        return done(
            fault,
            error_response(
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "invalid x-api-key",
                None,
                request_id,
            ),
        );
    }
    if !h.contains_key("anthropic-version") {
        return done(
            fault,
            error_response(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "anthropic-version: header is required",
                None,
                request_id,
            ),
        );
    }

    // 3. Outages and random faults.
    if let Some(outcome) = outage_or_random(state, request_id) {
        return outcome;
    }

    // 4. The body: size, JSON, fields.
    let too_large = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|n| n > state.config.max_body_bytes as u64);
    if too_large {
        return done(fault, html_response(413));
    }
    let body = match Limited::new(req.into_body(), state.config.max_body_bytes)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            return done(fault, html_response(413));
        }
        Err(_) => {
            return Outcome {
                action: Action::Reset { stall: None },
                fault,
            };
        }
    };
    let body: Value = match serde_json::from_slice(&body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            return done(
                fault,
                invalid(request_id, "body: Input should be a JSON object"),
            );
        }
        Err(e) => {
            return done(
                fault,
                invalid(request_id, &format!("body: invalid JSON: {e}")),
            );
        }
    };
    if let Err(msg) = validate(&body, route) {
        return done(fault, invalid(request_id, &msg));
    }
    // An outage of this one model (the body names it), before the rate limits.
    let model = body["model"].as_str().unwrap_or_default();
    if !state.config.knows_model(model) {
        let shown: String = model.chars().take(100).collect();
        return done(
            fault,
            error_response(
                StatusCode::NOT_FOUND,
                "not_found_error",
                &format!("model: {shown}"),
                None,
                request_id,
            ),
        );
    }
    // What the counters and the log keep of a name is bounded (a client picks its length).
    let name: String = model.chars().take(256).collect();
    state.counters.model(&name);
    *model_seen = Some(name);
    if let Some(outcome) = model_outage(state, model, request_id) {
        return outcome;
    }
    let input_tokens = generate::estimate_input_tokens(&body);
    if route == Route::CountTokens {
        let mut r = json_response(StatusCode::OK, &json!({"input_tokens": input_tokens}));
        r.headers_mut().insert("request-id", hv(request_id));
        return done(fault, r);
    }

    // 5. Rate limits, then the answer.
    let max_tokens = body["max_tokens"].as_u64().unwrap_or(1);
    let output_tokens = (state.config.output_tokens as u64).min(max_tokens).max(1) as u32;
    // Buckets per (key, model class); the class is the model name.
    let quota = format!("{key}/{}", body["model"].as_str().unwrap_or_default());
    let decision = lock(&state.limiter).check(&quota, input_tokens, max_tokens, Instant::now());
    if let Some(secs) = decision.retry_after {
        fault = Some("rate_limited".to_owned());
        let msg = format!(
            "This request would exceed your organization's rate limit of {} per minute. Please retry after {secs} s.",
            decision.refused_by.unwrap_or("requests"),
        );
        let msg = if decision.error_code.is_some() {
            "Your request rate increased too quickly from idle: ramp up gradually.".to_owned()
        } else {
            msg
        };
        let mut r = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            &msg,
            decision.error_code,
            request_id,
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        for (k, v) in decision.headers {
            r.headers_mut().insert(k, v);
        }
        return done(fault, r);
    }
    state.counters.tokens(input_tokens, output_tokens as u64);
    let latency = state.config.latency;
    if !latency.time_to_first_byte.is_zero() {
        tokio::time::sleep(latency.time_to_first_byte).await;
    }
    let n = state.ids.fetch_add(1, Ordering::Relaxed);
    let answer = generate::answer_for(
        &body,
        rng::id("msg_", n),
        input_tokens,
        output_tokens,
        state.config.output_tokens,
        n,
    );
    let streaming = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    // What `max_tokens` reserved beyond the real output is given back when the answer ends.
    let unused = max_tokens.saturating_sub(u64::from(output_tokens));
    let mut resp = if streaming {
        let settle = (quota, unused);
        stream_response(
            state,
            answer,
            delivery,
            stream_error_type,
            request_id,
            settle,
        )
    } else {
        if latency.tokens_per_second > 0 {
            tokio::time::sleep(Duration::from_secs_f64(
                output_tokens as f64 / latency.tokens_per_second as f64,
            ))
            .await;
        }
        lock(&state.limiter).settle(&quota, unused, Instant::now());
        message_response(answer, delivery)
    };
    let headers = resp.headers_mut();
    headers.insert("request-id", hv(request_id));
    for (k, v) in decision.headers {
        headers.insert(k, v);
    }
    done(fault, resp)
}

/// Field checks, each naming the field as the API does.
pub(super) fn validate(body: &Value, route: Route) -> Result<(), String> {
    match body.get("model") {
        None | Some(Value::Null) => return Err("model: Field required".into()),
        Some(Value::String(s)) if !s.is_empty() => {}
        Some(_) => return Err("model: Input should be a non-empty string".into()),
    }
    if route == Route::Messages {
        match body.get("max_tokens") {
            None | Some(Value::Null) => return Err("max_tokens: Field required".into()),
            Some(v) => match v.as_i64() {
                Some(n) if n >= 1 => {}
                Some(_) => {
                    return Err("max_tokens: Input should be greater than or equal to 1".into());
                }
                None => return Err("max_tokens: Input should be a valid integer".into()),
            },
        }
        if let Some(s) = body.get("stream") {
            if !s.is_boolean() {
                return Err("stream: Input should be a valid boolean".into());
            }
        }
    }
    let messages = match body.get("messages") {
        None | Some(Value::Null) => return Err("messages: Field required".into()),
        Some(Value::Array(m)) => m,
        Some(_) => return Err("messages: Input should be a valid list".into()),
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str);
        match role {
            Some("user") | Some("assistant") => {}
            None => return Err(format!("messages.{i}.role: Field required")),
            Some(_) => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
        if i == 0 && role != Some("user") {
            return Err("messages.0.role: first message must use the \"user\" role".into());
        }
        if i > 0 && messages[i - 1].get("role").and_then(Value::as_str) == role {
            return Err(format!(
                "messages.{i}.role: roles must alternate between \"user\" and \"assistant\""
            ));
        }
        // As the API: no empty message but an optional final assistant one, and no empty
        // text block anywhere.
        let last_assistant = i + 1 == messages.len() && role == Some("assistant");
        let empty = match m.get("content") {
            Some(Value::String(t)) => t.is_empty(),
            Some(Value::Array(blocks)) => blocks.is_empty(),
            _ => false,
        };
        if empty && !last_assistant {
            return Err(format!(
                "messages.{i}: all messages must have non-empty content except for the optional final assistant message"
            ));
        }
        if let Some(Value::Array(blocks)) = m.get("content") {
            let empty_text = blocks.iter().any(|b| {
                b.get("type").and_then(Value::as_str) == Some("text")
                    && b.get("text").and_then(Value::as_str) == Some("")
            });
            if empty_text {
                return Err("messages: text content blocks must be non-empty".into());
            }
        }
        match m.get("content") {
            Some(Value::String(_)) | Some(Value::Array(_)) => {}
            None | Some(Value::Null) => {
                return Err(format!("messages.{i}.content: Field required"));
            }
            Some(_) => {
                return Err(format!(
                    "messages.{i}.content: Input should be a valid string or list"
                ));
            }
        }
    }
    Ok(())
}
