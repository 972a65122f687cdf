//! Routing: the API paths, the `/_mock/*` control endpoints, and the log of every API call.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::State;
use super::api::api_outcome;
use super::faults::Action;
use super::responses::{error_response, json_response};
use super::wire::{ConnControl, Resp, Route};
use crate::config::OutageKind;
use crate::stats::{LogEntry, selected_headers};

pub(super) async fn handle(
    state: Arc<State>,
    control: Arc<ConnControl>,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_owned();
    // The API's paths, exactly (under the configured gateway prefix, if any): a base URL that
    // ends in `/v1` makes `/v1/v1/messages`, which the API answers with a 404.
    let api_path = match &state.config.path_prefix {
        Some(prefix) => path.strip_prefix(prefix.trim_end_matches('/')),
        None => Some(path.as_str()),
    };
    if let Some(p) = api_path.filter(|p| p.starts_with("/v1/") || *p == "/v1") {
        let route = match p {
            "/v1/messages" => Some(Route::Messages),
            "/v1/messages/count_tokens" => Some(Route::CountTokens),
            _ => None,
        };
        if let Some(route) = route {
            if req.method() == Method::POST {
                return Ok(api(&state, &control, req, route).await);
            }
            let rid = state.next_id("req_");
            return Ok(error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "invalid_request_error",
                "Method not allowed",
                None,
                &rid,
            ));
        }
        if req.method() == Method::GET {
            if let Some(resp) = super::models::route(&state, p, req.uri().query()) {
                return Ok(resp);
            }
        }
        if let Some(rest) = p
            .strip_prefix("/v1/messages/batches")
            .filter(|r| r.is_empty() || r.starts_with('/'))
        {
            let rest = if rest.is_empty() { "/" } else { rest }.to_owned();
            return Ok(batch_call(&state, &control, req, &rest).await);
        }
        let rid = state.next_id("req_");
        return Ok(error_response(
            StatusCode::NOT_FOUND,
            "not_found_error",
            "Not found",
            None,
            &rid,
        ));
    }
    Ok(match (req.method().clone(), path.as_str()) {
        (Method::GET, "/_mock/stats") => json_response(StatusCode::OK, &state.counters.snapshot()),
        (Method::GET, "/_mock/log") => json_response(StatusCode::OK, &state.counters.recent()),
        (Method::POST, "/_mock/reset") => {
            state.reset();
            json_response(StatusCode::OK, &json!({"reset": true}))
        }
        (Method::POST, "/_mock/script") => match read_json::<crate::Script>(req).await {
            Ok(s) => {
                let asked = s.responses.len();
                let n = state.script(&s.key, s.responses);
                json_response(
                    StatusCode::OK,
                    &json!({"queued": n, "dropped": asked - n, "max": super::MAX_SCRIPTED}),
                )
            }
            Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"error": e})),
        },
        (Method::POST, p) if p.starts_with("/_mock/batches/") && p.ends_with("/expire") => {
            let id = &p["/_mock/batches/".len()..p.len() - "/expire".len()];
            if super::batches::expire(&state, id) {
                json_response(StatusCode::OK, &json!({"expired": id}))
            } else {
                json_response(StatusCode::NOT_FOUND, &json!({"error": "no such batch"}))
            }
        }
        (Method::POST, "/_mock/outage") => match read_json::<Value>(req).await {
            Ok(v) => {
                let ms = v.get("ms").and_then(Value::as_u64).unwrap_or(0);
                let kind = match v.get("kind").and_then(Value::as_str) {
                    Some("reset") => OutageKind::Reset,
                    _ => OutageKind::Overloaded,
                };
                let model = v.get("model").and_then(Value::as_str);
                state.start_outage(model, Duration::from_millis(ms), kind);
                json_response(StatusCode::OK, &json!({"outage_ms": ms, "model": model}))
            }
            Err(e) => json_response(StatusCode::BAD_REQUEST, &json!({"error": e})),
        },
        _ => {
            let rid = state.next_id("req_");
            error_response(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "Not found",
                None,
                &rid,
            )
        }
    })
}

/// A Message Batches call: authenticated and faulted as the Messages routes, logged.
async fn batch_call(
    state: &Arc<State>,
    control: &ConnControl,
    req: Request<Incoming>,
    rest: &str,
) -> Resp {
    state.counters.request();
    let request_id = state.next_id("req_");
    let mut entry = LogEntry {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        version: format!("{:?}", req.version()),
        at_ms: state.elapsed_ms(),
        headers: selected_headers(req.headers()),
        status: None,
        fault: None,
        request_id: request_id.clone(),
        model: None,
    };
    let has_key = ["x-api-key", "authorization"]
        .iter()
        .any(|h| req.headers().get(*h).is_some_and(|v| !v.is_empty()));
    let resp = if !has_key {
        error_response(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
            None,
            &request_id,
        )
    } else if let Some(outcome) = super::faults::outage_or_random(state, &request_id) {
        entry.fault = outcome.fault.clone();
        if let Some(f) = &outcome.fault {
            state.counters.fault(f);
        }
        match outcome.action {
            Action::Respond(r) => r,
            Action::Reset { stall } => {
                state.counters.log(entry);
                if let Some(d) = stall {
                    tokio::time::sleep(d).await;
                }
                control.reset_now();
                // The connection task drops this future along with the connection.
                return std::future::pending().await;
            }
        }
    } else {
        let method = req.method().clone();
        let query = req.uri().query().map(str::to_owned);
        let scheme = if state.tls.is_some() { "https" } else { "http" };
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_owned)
            .unwrap_or_default();
        let prefix = state.config.path_prefix.clone().unwrap_or_default();
        let base = format!("{scheme}://{host}{}", prefix.trim_end_matches('/'));
        let body = match Limited::new(req.into_body(), state.config.max_body_bytes)
            .collect()
            .await
        {
            Ok(b) => b.to_bytes(),
            Err(_) => {
                return super::responses::html_response(413);
            }
        };
        super::batches::handle(
            state,
            &method,
            rest,
            query.as_deref(),
            &body,
            &base,
            &request_id,
        )
    };
    let status = resp.status().as_u16();
    state.counters.status(status);
    entry.status = Some(status);
    state.counters.log(entry);
    resp
}

async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, String> {
    let body = Limited::new(req.into_body(), 1 << 20)
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&body.to_bytes()).map_err(|e| e.to_string())
}

async fn api(
    state: &Arc<State>,
    control: &ConnControl,
    req: Request<Incoming>,
    route: Route,
) -> Resp {
    state.counters.request();
    let at_ms = state.elapsed_ms();
    let request_id = state.next_id("req_");
    let mut entry = LogEntry {
        method: req.method().to_string(),
        path: req.uri().path().to_owned(),
        version: format!("{:?}", req.version()),
        at_ms,
        headers: selected_headers(req.headers()),
        status: None,
        fault: None,
        request_id: request_id.clone(),
        model: None,
    };
    let outcome = api_outcome(state, req, route, &request_id, &mut entry.model).await;
    if let Some(f) = &outcome.fault {
        state.counters.fault(f);
    }
    entry.fault = outcome.fault;
    match outcome.action {
        Action::Respond(resp) => {
            let status = resp.status().as_u16();
            state.counters.status(status);
            entry.status = Some(status);
            state.counters.log(entry);
            resp
        }
        Action::Reset { stall } => {
            state.counters.log(entry);
            if let Some(d) = stall {
                tokio::time::sleep(d).await;
            }
            control.reset_now();
            // The connection task drops this future along with the connection.
            std::future::pending().await
        }
    }
}
