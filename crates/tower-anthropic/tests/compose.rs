//! Hand-composed stacks: foreign layers between ours, errors found through them, streams
//! through any stack, and what a failed call tells about its attempts. Paused time.

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_anthropic::error::{InvalidRequestError, TimeoutKind};
use tower_anthropic::messages::MessagesService;
use tower_anthropic::retry::{JitterSource, RetryPolicy};
use tower_anthropic::transport::{ApiKey, Endpoint};
use tower_anthropic::{ApiErrorKind, Error, ServiceBuilderExt};

mod support;

fn endpoint(mock: &MockServer, key: &str) -> Endpoint {
    let mut e = Endpoint::new(&mock.url(), ApiKey::new(support::KEY).unwrap()).unwrap();
    e.set_header("x-mock-key".parse().unwrap(), key.parse().unwrap());
    e
}

fn http() -> HyperClient<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>> {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

fn policy() -> RetryPolicy {
    RetryPolicy::new().jitter_source(JitterSource::seeded(5))
}

/// A user's error type wrapping whatever its inner service returned.
#[derive(Debug)]
struct MyError(tower_anthropic::BoxError);
impl std::fmt::Display for MyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("my layer failed")
    }
}
impl std::error::Error for MyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.0)
    }
}

#[tokio::test(start_paused = true)]
async fn a_refused_request_keeps_its_kind_through_buffer_and_a_users_error_type() {
    // A service below retry that refuses with our InvalidRequest.
    let refuse = tower::service_fn(|_req: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>(Error::InvalidRequest(InvalidRequestError::new(
            "refused below",
        )))
    });
    let fake = MockServer::start(MockConfig::default()).await.unwrap();
    // tower::buffer wraps the error in its own ServiceError.
    let buffered = ServiceBuilder::new()
        .retry_api_errors(policy())
        .buffer(8)
        .service(refuse);
    let e = MessagesService::new(buffered, endpoint(&fake, "b"))
        .create(support::req(16))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
    assert!(!e.is_retryable());
    assert_eq!(e.attempts(), 0, "nothing was sent");

    // A user's error type with our error as its source, between retry and the refusal.
    let wrapped = ServiceBuilder::new()
        .retry_api_errors(policy())
        .map_err(|e: Error| MyError(Box::new(e)))
        .service(refuse);
    let e = MessagesService::new(wrapped, endpoint(&fake, "w"))
        .create(support::req(16))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e:?}");
    assert_eq!(fake.stats().requests, 0);
}

#[tokio::test(start_paused = true)]
async fn towers_own_timeout_between_retry_and_classify_is_a_retried_attempt_timeout() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    mock.script("t", [ScriptEntry::Stall { ms: 60_000 }]);
    let stack = ServiceBuilder::new()
        .retry_api_errors(policy())
        .timeout(Duration::from_secs(5))
        .classify_responses()
        .service(http());
    let messages = MessagesService::new(stack, endpoint(&mock, "t"));
    let msg = messages.create(support::req(16)).await.unwrap();
    assert_eq!(msg.attempts(), 2);

    // Without a retry, the timeout surfaces as an attempt timeout.
    mock.script("t", [ScriptEntry::Stall { ms: 60_000 }]);
    let stack = ServiceBuilder::new()
        .timeout(Duration::from_secs(5))
        .classify_responses()
        .service(http());
    let e = MessagesService::new(stack, endpoint(&mock, "t"))
        .create(support::req(16))
        .await
        .unwrap_err();
    assert_eq!(support::timeout_kind(&e), Some(TimeoutKind::Attempt), "{e}");
    assert!(e.is_retryable());
}

#[tokio::test(start_paused = true)]
async fn a_stream_through_a_hand_built_stack_is_resent_before_content() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    mock.script(
        "s",
        [ScriptEntry::StreamError {
            after: 1,
            error_type: Some("overloaded_error".into()),
        }],
    );
    mock.script("s", [ScriptEntry::status(529)]);
    let stack = ServiceBuilder::new()
        .retry_api_errors(policy())
        .stream_idle_timeout(Duration::from_secs(30))
        .concurrency_limit_until_body_end(4)
        .classify_responses()
        .service(http());
    let messages = MessagesService::new(stack, endpoint(&mock, "s"));
    let stream = messages.stream(support::req(16)).await.unwrap();
    let (events, err) = support::drain(stream).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(support::names(&events).first(), Some(&"message_start"));
    assert_eq!(support::names(&events).last(), Some(&"message_stop"));
    // 1: the error event before content, 2: a 529 to the re-send, 3: the stream.
    assert_eq!(mock.stats().requests, 3);
    let counts: Vec<_> = mock
        .log()
        .iter()
        .map(|l| l.headers.get("x-stainless-retry-count").cloned())
        .collect();
    assert_eq!(
        counts,
        [Some("0".into()), Some("1".into()), Some("2".into())],
        "attempts count on across the re-send"
    );

    // Without a retry layer nothing is re-sent: the error event surfaces.
    mock.script(
        "s",
        [ScriptEntry::StreamError {
            after: 1,
            error_type: Some("overloaded_error".into()),
        }],
    );
    let bare = ServiceBuilder::new().classify_responses().service(http());
    let stream = MessagesService::new(bare, endpoint(&mock, "s"))
        .stream(support::req(16))
        .await
        .unwrap();
    let (_, err) = support::drain(stream).await;
    assert_eq!(err.unwrap().kind(), Some(ApiErrorKind::Overloaded));
}

#[tokio::test(start_paused = true)]
async fn the_final_error_tells_what_the_earlier_attempts_met() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    mock.script(
        "e",
        [
            ScriptEntry::status_with_headers(429, [("retry-after", "1")]),
            ScriptEntry::Reset,
            ScriptEntry::status(529),
        ],
    );
    let c = support::builder(&mock, "e", 5).build().unwrap();
    let e = c.messages().create(support::req(16)).await.unwrap_err();
    assert_eq!(e.kind(), Some(ApiErrorKind::Overloaded));
    assert_eq!(e.attempts(), 3);
    let earlier = e.earlier_attempts();
    assert_eq!(earlier.len(), 2);
    assert_eq!(earlier[0].kind(), Some(ApiErrorKind::RateLimit));
    assert!(
        matches!(earlier[1], Error::Connection(_)),
        "{:?}",
        earlier[1]
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_error_reads_right_and_keeps_the_last_error() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    mock.script(
        "d",
        [
            ScriptEntry::status(529),
            ScriptEntry::status_with_headers(429, [("retry-after", "12")]),
        ],
    );
    let c = support::builder(&mock, "d", 5)
        .deadline(Duration::from_secs(5))
        .build()
        .unwrap();
    let e = c.messages().create(support::req(16)).await.unwrap_err();
    assert_eq!(support::timeout_kind(&e), Some(TimeoutKind::Deadline));
    let text = e.to_string();
    assert!(
        text.starts_with("deadline of 5s reached after 2 attempts"),
        "{text}"
    );
    assert!(text.contains("last error: rate limited (429"), "{text}");
    assert!(text.contains("retry after 12s"), "{text}");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
    assert_eq!(e.attempts(), 2);
    assert_eq!(
        e.earlier_attempts()[0].kind(),
        Some(ApiErrorKind::Overloaded)
    );
}
