//! Response builders: messages, event streams, the API's error bodies, HTML error pages.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde_json::json;

use super::State;
use super::wire::Delivery;
use super::wire::Resp;
use crate::body::{MockBody, StreamGuard};
use crate::generate::{self, Answer};
use crate::script::default_error;
use crate::stats::lock;

pub(super) fn message_response(answer: Answer, delivery: Delivery) -> Resp {
    let json = Bytes::from(answer.message_json());
    let body = match delivery {
        Delivery::CutBody | Delivery::StallBody(_) => {
            let len = json.len() as u64;
            let (tx, body) = MockBody::channel(Some(len), None);
            let half = json.len() / 2;
            tokio::spawn(async move {
                let _ = tx.send(Ok(json.slice(..half))).await;
                match delivery {
                    Delivery::StallBody(d) => {
                        tokio::time::sleep(d).await;
                        let _ = tx.send(Ok(json.slice(half..))).await;
                    }
                    _ => {
                        let e =
                            io::Error::new(io::ErrorKind::ConnectionReset, "body cut by the mock");
                        let _ = tx.send(Err(e)).await;
                    }
                }
            });
            body
        }
        _ => MockBody::full(json),
    };
    let mut r = Response::new(body);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn stream_response(
    state: &Arc<State>,
    answer: Answer,
    delivery: Delivery,
    error_type: Option<String>,
    request_id: &str,
    (quota, unused_output): (String, u64),
) -> Resp {
    let events = answer.sse_events(state.config.ping_every);
    let (tx, body) = MockBody::channel(None, Some(StreamGuard::new(state.counters.clone())));
    let tps = state.config.latency.tokens_per_second;
    let request_id = request_id.to_owned();
    let state = state.clone();
    tokio::spawn(async move {
        // However the stream ends, its unused output reservation is settled.
        struct Settle(Arc<State>, String, u64);
        impl Drop for Settle {
            fn drop(&mut self) {
                lock(&self.0.limiter).settle(&self.1, self.2, tokio::time::Instant::now());
            }
        }
        let _settle = Settle(state, quota, unused_output);
        for (i, ev) in events.into_iter().enumerate() {
            match delivery {
                Delivery::StreamError(after) if i == after => {
                    let et = error_type.as_deref().unwrap_or("overloaded_error");
                    let (_, msg) = default_error(match et {
                        "overloaded_error" => 529,
                        "rate_limit_error" => 429,
                        _ => 500,
                    });
                    let data = json!({"type": "error", "error": {"type": et, "message": msg}, "request_id": request_id});
                    let _ = tx.send(Ok(generate::event("error", &data))).await;
                    return;
                }
                Delivery::StreamCut(after) if i == after => return,
                Delivery::StreamStall(after, d) if i == after => tokio::time::sleep(d).await,
                _ => {}
            }
            let tokens = generate::event_tokens(&ev);
            if tps > 0 && tokens > 0 {
                tokio::time::sleep(Duration::from_secs_f64(tokens as f64 / tps as f64)).await;
            }
            if tx.send(Ok(ev)).await.is_err() {
                return;
            }
        }
    });
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub(super) fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

pub(super) fn json_response<T: serde::Serialize>(status: StatusCode, v: &T) -> Resp {
    let body = serde_json::to_vec(v).unwrap_or_default();
    let mut r = Response::new(MockBody::full(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

pub(super) fn error_response(
    status: StatusCode,
    error_type: &str,
    message: &str,
    code: Option<&str>,
    request_id: &str,
) -> Resp {
    let mut r = Response::new(MockBody::full(generate::error_body(
        error_type, message, code, request_id,
    )));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert("request-id", hv(request_id));
    r
}

pub(super) fn invalid(request_id: &str, message: &str) -> Resp {
    error_response(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        message,
        None,
        request_id,
    )
}

pub(super) fn overloaded(request_id: &str) -> Resp {
    let status = StatusCode::from_u16(529).expect("529 is a valid status");
    error_response(status, "overloaded_error", "Overloaded", None, request_id)
}

pub(super) fn html_response(status: u16) -> Resp {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    let page = generate::html_page(
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error"),
    );
    let mut r = Response::new(MockBody::full(page));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    r
}
