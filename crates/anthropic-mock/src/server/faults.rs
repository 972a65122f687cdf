//! Faults, each decided as a value: a scripted entry, an outage, or a random fault.

use std::collections::VecDeque;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use super::State;
use super::responses::{error_response, html_response, hv, overloaded};
use super::wire::{Delivery, Resp};
use crate::body::MockBody;
use crate::config::OutageKind;
use crate::script::{ScriptEntry, default_error};
use crate::stats::lock;

/// What the API handler decided, and the fault (if any) that decided it (for the log and
/// the stats).
pub(super) struct Outcome {
    pub(super) action: Action,
    pub(super) fault: Option<String>,
}

impl Outcome {
    /// A response caused by `fault`.
    pub(super) fn fault(fault: &str, action: Action) -> Self {
        Self {
            action,
            fault: Some(fault.to_owned()),
        }
    }
}

/// What to do with the request.
pub(super) enum Action {
    Respond(Resp),
    /// Reset the connection, after `stall` without a byte.
    Reset {
        stall: Option<Duration>,
    },
}

/// What a scripted entry asks for.
pub(super) enum Scripted {
    /// The entry is the whole answer.
    Decided(Outcome),
    /// Answer as the API would, delivered this way.
    Deliver {
        delivery: Delivery,
        stream_error_type: Option<String>,
        fault: Option<String>,
    },
}

/// Takes the next scripted entry for the request's `x-mock-key`, if any.
pub(super) async fn scripted(
    state: &State,
    headers: &HeaderMap,
    request_id: &str,
) -> Option<Scripted> {
    let entry = headers
        .get("x-mock-key")
        .and_then(|k| k.to_str().ok())
        .and_then(|k| {
            lock(&state.scripts)
                .get_mut(k)
                .and_then(VecDeque::pop_front)
        })?;
    let fault = format!("script_{}", entry.name());
    let decided = |action| {
        Some(Scripted::Decided(Outcome {
            action,
            fault: Some(fault.clone()),
        }))
    };
    let deliver = |delivery, stream_error_type| {
        Some(Scripted::Deliver {
            delivery,
            stream_error_type,
            fault: Some(fault.clone()),
        })
    };
    match entry {
        ScriptEntry::Ok => Some(Scripted::Deliver {
            delivery: Delivery::Normal,
            stream_error_type: None,
            fault: None,
        }),
        ScriptEntry::Status {
            status,
            error_type,
            error_code,
            message,
            headers,
            body,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let (dt, dm) = default_error(status.as_u16());
            let mut resp = match body {
                Some(b) => {
                    let mut r = Response::new(MockBody::full(b));
                    *r.status_mut() = status;
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                    r.headers_mut().insert("request-id", hv(request_id));
                    r
                }
                None => error_response(
                    status,
                    error_type.as_deref().unwrap_or(dt),
                    message.as_deref().unwrap_or(dm),
                    error_code.as_deref(),
                    request_id,
                ),
            };
            for (k, v) in headers {
                if let (Ok(k), Ok(v)) = (http::HeaderName::try_from(k), HeaderValue::try_from(v)) {
                    resp.headers_mut().insert(k, v);
                }
            }
            decided(Action::Respond(resp))
        }
        ScriptEntry::Html { status } => decided(Action::Respond(html_response(status))),
        ScriptEntry::Reset => decided(Action::Reset { stall: None }),
        ScriptEntry::Stall { ms } => decided(Action::Reset {
            stall: Some(Duration::from_millis(ms)),
        }),
        ScriptEntry::Delay { ms } => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            deliver(Delivery::Normal, None)
        }
        ScriptEntry::CutBody => deliver(Delivery::CutBody, None),
        ScriptEntry::StallBody { ms } => {
            deliver(Delivery::StallBody(Duration::from_millis(ms)), None)
        }
        ScriptEntry::StreamError { after, error_type } => {
            deliver(Delivery::StreamError(after), error_type)
        }
        ScriptEntry::StreamCut { after } => deliver(Delivery::StreamCut(after), None),
        ScriptEntry::StreamStall { after, ms } => deliver(
            Delivery::StreamStall(after, Duration::from_millis(ms)),
            None,
        ),
    }
}

/// An outage of `model` in force (read once the body is), if any.
pub(super) fn model_outage(state: &State, model: &str, request_id: &str) -> Option<Outcome> {
    state
        .outage(Some(model))
        .map(|kind| outage_outcome(kind, request_id))
}

fn outage_outcome(kind: OutageKind, request_id: &str) -> Outcome {
    let action = match kind {
        OutageKind::Overloaded => Action::Respond(overloaded(request_id)),
        OutageKind::Reset => Action::Reset { stall: None },
    };
    Outcome::fault("outage", action)
}

/// An outage of every model in force, or a random fault drawn from the seeded source.
pub(super) fn outage_or_random(state: &State, request_id: &str) -> Option<Outcome> {
    if let Some(kind) = state.outage(None) {
        return Some(outage_outcome(kind, request_id));
    }
    let f = state.config.faults;
    if f.total() <= 0.0 {
        return None;
    }
    let u = lock(&state.rng).next_f64();
    let mut acc = 0.0;
    let mut hit = |p: f64| {
        acc += p;
        u < acc
    };
    let (name, action) = if hit(f.p529) {
        ("random_529", Action::Respond(overloaded(request_id)))
    } else if hit(f.p500) {
        let r = error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            "Internal server error",
            None,
            request_id,
        );
        ("random_500", Action::Respond(r))
    } else if hit(f.p503) {
        let r = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "api_error",
            "Service unavailable",
            None,
            request_id,
        );
        ("random_503", Action::Respond(r))
    } else if hit(f.p502_html) {
        ("random_502_html", Action::Respond(html_response(502)))
    } else if hit(f.p_reset) {
        ("random_reset", Action::Reset { stall: None })
    } else if hit(f.p_stall) {
        let stall = Some(f.stall);
        ("random_stall", Action::Reset { stall })
    } else {
        return None;
    };
    Some(Outcome::fault(name, action))
}
