//! Each retry is one `tracing` event with the attempt, the wait, the reason and the request
//! id; nothing logged ever holds the API key.

use std::sync::{Arc, Mutex};

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::retry::{JitterSource, RetryPolicy};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

const KEY: &str = "sk-ant-SECRET-in-no-log";

/// A subscriber that keeps every event as text (`.0`) and every span's name and fields
/// (`.1`, by span id).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>, Arc<Mutex<Vec<(String, String)>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut f = Fields(String::new());
        attrs.record(&mut f);
        let mut all = self.1.lock().unwrap();
        all.push((attrs.metadata().name().to_owned(), f.0));
        Id::from_u64(all.len() as u64)
    }
    fn record(&self, id: &Id, values: &Record<'_>) {
        let mut f = Fields(String::new());
        values.record(&mut f);
        if let Some(s) = self.1.lock().unwrap().get_mut(id.into_u64() as usize - 1) {
            s.1.push_str(&f.0);
        }
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(format!("{} ", event.metadata().level()));
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[tokio::test(start_paused = true)]
async fn one_event_per_retry_and_no_key_in_any() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Client::builder()
        .api_key(KEY)
        .base_url(s.url())
        .default_header("x-mock-key", "t")
        .retry_policy(RetryPolicy::new().jitter_source(JitterSource::seeded(2)))
        .build()
        .unwrap();
    s.script("t", [ScriptEntry::status(529), ScriptEntry::status(401)]);
    let e = c
        .messages()
        .create(CreateMessageRequest::new("claude-m", 8).user("hi"))
        .await
        .unwrap_err();
    assert_eq!(e.attempts(), 2);

    let events = capture.0.lock().unwrap().clone();
    let retries: Vec<&String> = events
        .iter()
        .filter(|e| e.contains("message=retrying"))
        .collect();
    assert_eq!(retries.len(), 1, "{events:#?}");
    let r = retries[0];
    for field in [
        "attempt=1",
        "wait=",
        "wait_from=\"backoff\"",
        "reason=overloaded (529 overloaded_error)",
        "request_id=\"req_",
    ] {
        assert!(r.contains(field), "{field} missing in {r}");
    }
    assert!(events.iter().all(|e| !e.contains("SECRET")), "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn circuit_changes_and_fallbacks_are_events() {
    use std::time::Duration;
    use tower_anthropic::breaker::{CircuitBreakerConfig, CircuitBreakers};
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let breakers = CircuitBreakers::new(
        CircuitBreakerConfig::new()
            .minimum_calls(2)
            .half_open_probes(1),
    );
    let c = Client::builder()
        .api_key(KEY)
        .base_url(s.url())
        .max_retries(0)
        .circuit_breakers(breakers)
        .fallback_models(["claude-fallback"])
        .build()
        .unwrap();
    s.model_outage_for(
        "claude-primary",
        Duration::from_millis(900),
        anthropic_mock::OutageKind::Overloaded,
    );
    let req = CreateMessageRequest::new("claude-primary", 8).user("hi");
    for _ in 0..3 {
        let m = c.messages().create(req.clone()).await.unwrap();
        assert_eq!(m.model, "claude-fallback");
    }
    tokio::time::advance(Duration::from_secs(1)).await;
    let m = c.messages().create(req).await.unwrap();
    assert_eq!(m.model, "claude-primary", "the probe succeeded");

    let events = capture.0.lock().unwrap().clone();
    let find = |needle: &str| {
        events
            .iter()
            .filter(|e| e.contains(needle))
            .cloned()
            .collect::<Vec<_>>()
    };
    let opened = find("message=circuit opened");
    assert_eq!(opened.len(), 1, "{events:#?}");
    assert!(opened[0].starts_with("WARN"), "{}", opened[0]);
    assert!(
        opened[0].contains("circuit=claude-primary"),
        "{}",
        opened[0]
    );
    assert_eq!(find("message=circuit half-open").len(), 1, "{events:#?}");
    assert_eq!(find("message=circuit closed").len(), 1, "{events:#?}");
    let fell = find("message=falling back");
    assert_eq!(fell.len(), 3, "{events:#?}");
    assert!(fell[0].contains("to=claude-fallback"), "{}", fell[0]);
    assert!(events.iter().all(|e| !e.contains("SECRET")), "{events:#?}");
}

#[tokio::test(start_paused = true)]
async fn one_genai_span_per_call_without_the_prompt() {
    let spans = Capture::default();
    let _guard = tracing::subscriber::set_default(spans.clone());
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Client::builder()
        .api_key(KEY)
        .base_url(s.url())
        .default_header("x-mock-key", "span")
        .max_retries(0)
        .build()
        .unwrap();
    let req = CreateMessageRequest::new("claude-sonnet-4-6", 8).user("a private prompt");
    let m = c.messages().create(req.clone()).await.unwrap();
    s.script("span", [ScriptEntry::status(529)]);
    c.messages().create(req.clone()).await.unwrap_err();
    c.messages()
        .stream(req.clone())
        .await
        .unwrap()
        .final_message()
        .await
        .unwrap();
    // A stream refused before it starts: its span says why and after how many attempts, as
    // a whole message's does.
    s.script("span", [ScriptEntry::status(529)]);
    c.messages().stream(req).await.unwrap_err();
    let all = spans.1.lock().unwrap().clone();
    let chats: Vec<&String> = all
        .iter()
        .filter(|(n, _)| n == "chat")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(chats.len(), 4, "{all:#?}");
    for field in [
        "otel.name=chat claude-sonnet-4-6",
        "gen_ai.provider.name=\"anthropic\"",
        "gen_ai.operation.name=\"chat\"",
        "gen_ai.request.model=\"claude-sonnet-4-6\"",
        "gen_ai.request.max_tokens=8",
        &format!("gen_ai.response.id=\"{}\"", m.id),
        "gen_ai.response.model=\"claude-sonnet-4-6\"",
        "gen_ai.response.finish_reasons=\"max_tokens\"",
        &format!("gen_ai.usage.input_tokens={}", m.usage.input_tokens),
        "gen_ai.usage.output_tokens=8",
        "anthropic.attempts=1",
    ] {
        assert!(chats[0].contains(field), "{field} missing in {}", chats[0]);
    }
    assert!(
        chats[1].contains("error.type=\"Overloaded\""),
        "{}",
        chats[1]
    );
    assert!(
        chats[2].contains("gen_ai.request.stream=true"),
        "{}",
        chats[2]
    );
    for field in [
        "gen_ai.request.stream=true",
        "error.type=\"Overloaded\"",
        "anthropic.attempts=1",
    ] {
        assert!(chats[3].contains(field), "{field} missing in {}", chats[3]);
    }
    let text = format!("{all:?}");
    assert!(
        !text.contains("private prompt") && !text.contains("SECRET"),
        "{text}"
    );
}

#[tokio::test(start_paused = true)]
async fn one_span_per_attempt_with_its_status() {
    let spans = Capture::default();
    let _guard = tracing::subscriber::set_default(spans.clone());
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Client::builder()
        .api_key(KEY)
        .base_url(s.url())
        .default_header("x-mock-key", "attempts")
        .retry_policy(RetryPolicy::new().jitter_source(JitterSource::seeded(2)))
        .build()
        .unwrap();
    s.script("attempts", [ScriptEntry::status(529)]);
    c.messages()
        .create(CreateMessageRequest::new("claude-sonnet-4-6", 8).user("hi"))
        .await
        .unwrap();
    let all = spans.1.lock().unwrap().clone();
    let attempts: Vec<&String> = all
        .iter()
        .filter(|(n, _)| n == "attempt")
        .map(|(_, f)| f)
        .collect();
    assert_eq!(attempts.len(), 2, "{all:#?}");
    assert!(
        attempts[0].contains("http.request.resend_count=0"),
        "{}",
        attempts[0]
    );
    assert!(
        attempts[0].contains("http.response.status_code=529"),
        "{}",
        attempts[0]
    );
    assert!(
        attempts[0].contains("error.type=\"api\""),
        "{}",
        attempts[0]
    );
    assert!(
        attempts[1].contains("http.request.resend_count=1"),
        "{}",
        attempts[1]
    );
    assert!(
        attempts[1].contains("http.response.status_code=200"),
        "{}",
        attempts[1]
    );
    assert!(
        attempts[1].contains("anthropic.request_id=\"req_"),
        "{}",
        attempts[1]
    );
}

#[tokio::test]
async fn a_messages_request_the_pacer_cannot_cost_is_said_once() {
    use tower::{ServiceBuilder, ServiceExt};
    use tower_anthropic::extensions::RequestCost;
    use tower_anthropic::pacing::{Pacer, PacingLayer};
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let inner = tower::service_fn(|_req: http::Request<bytes::Bytes>| async {
        Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::new()))
    });
    let stack = ServiceBuilder::new()
        .layer(PacingLayer::new(Pacer::new()))
        .service(inner);
    let req = |path: &str, cost: bool| {
        let body = bytes::Bytes::from_static(b"{}");
        let mut r = http::Request::post(format!("http://127.0.0.1:1{path}"))
            .body(body.clone())
            .unwrap();
        if cost {
            r.extensions_mut()
                .insert(RequestCost::new("claude-x", 8, body));
        }
        r
    };
    let warned = |capture: &Capture| {
        capture
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|e| e.contains("without a RequestCost"))
            .count()
    };
    // Other endpoints pass unpaced without a word; a costed Messages request is paced.
    stack
        .clone()
        .oneshot(req("/v1/messages/batches", false))
        .await
        .unwrap();
    stack
        .clone()
        .oneshot(req("/v1/messages", true))
        .await
        .unwrap();
    assert_eq!(warned(&capture), 0);
    // A Messages request without its cost: said once, however many come.
    for _ in 0..3 {
        stack
            .clone()
            .oneshot(req("/v1/messages", false))
            .await
            .unwrap();
    }
    assert_eq!(warned(&capture), 1);
}
