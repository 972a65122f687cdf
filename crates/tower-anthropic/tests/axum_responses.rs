//! `Error` as an axum response (feature `axum`): statuses, `Retry-After`, the API's error
//! shape, and nothing about the key or the account. Paused time.
#![cfg(feature = "axum")]

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use axum_core::response::IntoResponse;
use http_body_util::BodyExt;
use tower_anthropic::breaker::{CircuitBreakerConfig, CircuitBreakers};
use tower_anthropic::{Client, Error};

mod support;

async fn view(e: Error) -> (u16, Option<String>, serde_json::Value) {
    let resp = e.into_response();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, retry, serde_json::from_slice(&body).unwrap())
}

#[tokio::test(start_paused = true)]
async fn each_error_answers_a_caller_sensibly() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c: Client = support::builder(&s, "axum", 1)
        .max_retries(0)
        .build()
        .unwrap();
    let call = || async { c.messages().create(support::req(8)).await.unwrap_err() };
    let cases = [
        (ScriptEntry::status(400), 400, None, "invalid_request_error"),
        (ScriptEntry::status(401), 502, None, "api_error"),
        (ScriptEntry::status(403), 502, None, "api_error"),
        (
            ScriptEntry::status_with_code(429, "enforced_spend_limit_reached"),
            502,
            None,
            "api_error",
        ),
        (
            ScriptEntry::status_with_headers(429, [("retry-after", "7")]),
            429,
            Some("7"),
            "rate_limit_error",
        ),
        (
            ScriptEntry::status_with_headers(529, [("retry-after-ms", "1500")]),
            503,
            Some("2"),
            "overloaded_error",
        ),
        (ScriptEntry::status(500), 502, None, "api_error"),
        (ScriptEntry::Reset, 502, None, "api_error"),
    ];
    for (entry, status, retry, kind) in cases {
        s.script("axum", [entry]);
        let (st, ra, body) = view(call().await).await;
        assert_eq!((st, ra.as_deref()), (status, retry), "{body}");
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], kind);
        let text = body.to_string();
        assert!(
            !text.contains("SECRET") && !text.contains("sk-ant"),
            "{text}"
        );
        if status == 502 {
            assert_eq!(
                body["error"]["message"],
                "the model service failed to answer"
            );
        }
    }
    // A timeout is a 504.
    s.script("axum", [ScriptEntry::Delay { ms: 60_000 }]);
    let slow = support::builder(&s, "axum", 1)
        .max_retries(0)
        .deadline(Duration::from_secs(1))
        .build()
        .unwrap();
    let e = slow.messages().create(support::req(8)).await.unwrap_err();
    assert_eq!(view(e).await.0, 504);
    // A refusal before sending is a 400 with our own explanation.
    let mut bad = support::req(8);
    bad.stream = Some(true);
    let (st, _, body) = view(c.messages().create(bad).await.unwrap_err()).await;
    assert_eq!(st, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stream")
    );
}

#[tokio::test(start_paused = true)]
async fn an_open_circuit_is_a_503_with_retry_after() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = support::builder(&s, "circuit", 1)
        .max_retries(0)
        .circuit_breakers(CircuitBreakers::new(
            CircuitBreakerConfig::new()
                .minimum_calls(2)
                .open_for(Duration::from_secs(30)),
        ))
        .build()
        .unwrap();
    s.script("circuit", std::iter::repeat_n(ScriptEntry::status(529), 2));
    for _ in 0..2 {
        let _ = c.messages().create(support::req(8)).await;
    }
    let e = c.messages().create(support::req(8)).await.unwrap_err();
    assert!(matches!(e, Error::CircuitOpen(_)));
    let (st, ra, body) = view(e).await;
    assert_eq!((st, ra.as_deref()), (503, Some("30")));
    assert_eq!(body["error"]["type"], "overloaded_error");
}
