//! Hostile servers and absurd settings: every case ends in a typed error (or a clean
//! success), never a panic, a hang or memory sized by the server. Paused time.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anthropic_mock::{Latency, MockConfig, MockServer, ScriptEntry};
use bytes::Bytes;
use http_body::Frame;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::Service;
use tower::util::BoxCloneSyncService;
use tower_anthropic::body::ResponseBody;
use tower_anthropic::error::TimeoutKind;
use tower_anthropic::limit::ConcurrencyLimitLayer;
use tower_anthropic::messages::MessagesService;
use tower_anthropic::retry::RetryPolicy;
use tower_anthropic::transport::{ApiKey, Endpoint};
use tower_anthropic::{Client, ConfigError, Error};

mod support;

fn endpoint() -> Endpoint {
    Endpoint::new("http://127.0.0.1:9", ApiKey::new("k").unwrap()).unwrap()
}

/// A stack answering every request with `status` and a body made by `body`.
fn answering<F>(
    status: u16,
    content_type: &'static str,
    body: F,
) -> BoxCloneSyncService<http::Request<Full<Bytes>>, http::Response<ResponseBody>, Error>
where
    F: Fn() -> ResponseBody + Clone + Send + Sync + 'static,
{
    BoxCloneSyncService::new(tower::service_fn(
        move |_req: http::Request<Full<Bytes>>| {
            let body = body.clone();
            async move {
                Ok::<_, Error>(
                    http::Response::builder()
                        .status(status)
                        .header("content-type", content_type)
                        .body(body())
                        .unwrap(),
                )
            }
        },
    ))
}

fn full(b: impl Into<Bytes>) -> ResponseBody {
    Full::new(b.into()).map_err(|e| match e {}).boxed_unsync()
}

/// Streams a server's event-stream `body` to its end through the typed service: the error
/// it ended with, if any.
async fn stream_error(body: String) -> Option<Error> {
    let svc = answering(200, "text/event-stream", move || full(body.clone()));
    let stream = MessagesService::new(svc, endpoint())
        .stream(support::req(16))
        .await
        .unwrap();
    support::drain(stream).await.1
}

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"x\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":1,\"output_tokens\":0}}}\n\n";

#[tokio::test(start_paused = true)]
async fn a_huge_block_index_is_a_typed_error() {
    for index in [
        "18446744073709551615",
        "4611686018427387904",
        "1099511627776",
        "10000000",
    ] {
        let body = format!(
            "{START}event: content_block_start\ndata: {{\"type\":\"content_block_start\",\"index\":{index},\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}\n\nevent: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"x\"}}}}\n\n"
        );
        match stream_error(body).await {
            Some(Error::Stream(s)) => assert!(s.is_invalid_event(), "{s}"),
            other => panic!("{index}: {other:?}"),
        }
    }
}

/// `message_start`, then a ping every second, forever.
struct PingsForever {
    started: bool,
    tick: Pin<Box<tokio::time::Sleep>>,
}

impl http_body::Body for PingsForever {
    type Data = Bytes;
    type Error = Error;
    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if !self.started {
            self.started = true;
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(START.as_bytes())))));
        }
        if self.tick.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        let next = Instant::now() + Duration::from_secs(1);
        self.tick.as_mut().reset(next);
        let ping = Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
        Poll::Ready(Some(Ok(Frame::data(ping))))
    }
}

#[tokio::test(start_paused = true)]
async fn pings_forever_before_content_end_with_a_first_content_timeout() {
    let svc = answering(200, "text/event-stream", || {
        PingsForever {
            started: false,
            tick: Box::pin(tokio::time::sleep(Duration::from_secs(1))),
        }
        .boxed_unsync()
    });
    let start = Instant::now();
    let stream = MessagesService::new(svc, endpoint())
        .first_content_timeout(Some(Duration::from_secs(5)))
        .stream(support::req(16))
        .await
        .unwrap();
    let (events, err) = support::drain(stream).await;
    assert!(events.is_empty(), "nothing handed over before content");
    let err = err.expect("an error, not an endless stream");
    assert_eq!(
        support::timeout_kind(&err),
        Some(TimeoutKind::FirstContent),
        "{err}"
    );
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn a_ping_flood_before_content_is_bounded() {
    let flood: String =
        START.to_owned() + &"event: ping\ndata: {\"type\": \"ping\"}\n\n".repeat(5_000);
    match stream_error(flood).await {
        Some(Error::Stream(s)) => assert!(s.is_too_large(), "{s}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_body_of_millions_of_tiny_values_is_refused_before_decoding() {
    let mut body = String::from(
        r#"{"id":"m","type":"message","role":"assistant","model":"x","content":[],"stop_reason":"end_turn","usage":{"input_tokens":1,"output_tokens":1},"x":["#,
    );
    body.push_str(&"0,".repeat(3_000_000));
    body.push_str("0]}");
    let svc = answering(200, "application/json", move || full(body.clone()));
    let e = MessagesService::new(svc, endpoint())
        .create(support::req(16))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::Decode(_)), "{e}");
    assert!(e.to_string().contains("JSON values"), "{e}");
}

#[tokio::test(start_paused = true)]
async fn the_deadline_covers_the_wait_for_a_permit() {
    let s = MockServer::start(MockConfig {
        latency: Latency {
            tokens_per_second: 5,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    for pacing in [true, false] {
        let c = support::builder(&s, "d", 1)
            .concurrency_limit(1)
            .deadline(Duration::from_secs(1))
            .pacing(pacing)
            .build()
            .unwrap();
        // A stream of 48 tokens at 5 a second holds the only permit for about 10 s.
        let held = c.messages().stream(support::req(64)).await.unwrap();
        let start = Instant::now();
        let e = c.messages().create(support::req(16)).await.unwrap_err();
        assert_eq!(
            support::timeout_kind(&e),
            Some(TimeoutKind::Deadline),
            "{e}"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(1), "pacing {pacing}");
        drop(held);
    }
}

#[tokio::test(start_paused = true)]
async fn absurd_durations_saturate_instead_of_panicking() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = support::builder(&s, "x", 1)
        .deadline(Duration::MAX)
        .stream_idle_timeout(Duration::MAX)
        .timeout(Duration::MAX)
        .build()
        .unwrap();
    c.messages().create(support::req(16)).await.unwrap();
    c.messages()
        .stream(support::req(16))
        .await
        .unwrap()
        .final_message()
        .await
        .unwrap();
    // A backoff of Duration::MAX: the retry is not taken (a wait over max_retry_after is
    // never slept), the 529 comes back at once, and nothing panics; with or without a
    // deadline.
    for deadline in [Some(Duration::from_secs(10)), None] {
        s.script("x", [ScriptEntry::status(529)]);
        let mut b = support::builder(&s, "x", 1).retry_policy(RetryPolicy::new().backoff(
            Duration::MAX,
            Duration::MAX,
            0.25,
        ));
        if let Some(d) = deadline {
            b = b.deadline(d);
        }
        let c = b.build().unwrap();
        let start = Instant::now();
        let e = c.messages().create(support::req(16)).await.unwrap_err();
        assert_eq!(
            e.kind(),
            Some(tower_anthropic::ApiErrorKind::Overloaded),
            "{e}"
        );
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}

#[test]
fn bad_base_urls_and_keys_are_refused_at_build_naming_the_problem() {
    let build = |url: &str| Client::builder().api_key("sk-ant-x").base_url(url).build();
    let long = format!("http://127.0.0.1:9/{}", "a".repeat(65_515));
    for (url, says) in [
        (long.as_str(), "too long"),
        ("http://127.0.0.1:99999", "port"),
        ("http://127.0.0.1:0", "port"),
        ("http://127.0.0.1:9/#frag", "fragment"),
        ("http://user:hunter2@127.0.0.1:9", "user information"),
    ] {
        match build(url) {
            Err(ConfigError::InvalidBaseUrl(e)) => {
                let text = e.to_string();
                assert!(text.contains(says), "{url}: {text}");
                assert!(!text.contains("hunter2") && !format!("{e:?}").contains("hunter2"));
                assert!(text.len() < 400);
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let dbg = format!(
        "{:?}",
        Client::builder().base_url("http://user:hunter2@127.0.0.1:9")
    );
    assert!(!dbg.contains("hunter2"), "{dbg}");
    for key in ["sk\tant", "sk-ant-é", "sk\u{7f}x"] {
        assert!(ApiKey::new(key).is_none(), "{key:?}");
    }
    assert!(build("http://[::1]:8080").is_ok());
}

#[tokio::test(start_paused = true)]
async fn an_upstream_message_is_sanitized_and_capped() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let nasty = format!("line one\nline two\u{1b}[31m red{}", "x".repeat(60_000));
    s.script(
        "m",
        [ScriptEntry::Status {
            status: 400,
            error_type: None,
            error_code: None,
            message: Some(nasty),
            headers: Default::default(),
            body: None,
        }],
    );
    let c = support::builder(&s, "m", 1).build().unwrap();
    let e = c.messages().create(support::req(16)).await.unwrap_err();
    let msg = e.as_api().unwrap().message();
    assert!(msg.chars().count() <= 1000, "{}", msg.len());
    assert!(!msg.contains('\n') && !msg.contains('\u{1b}'), "{msg:?}");
    assert!(msg.starts_with("line one line two"));
}

#[tokio::test]
async fn calling_a_limit_without_poll_ready_is_an_error_not_a_panic() {
    let inner = tower::service_fn(|_req: http::Request<()>| async {
        Ok::<_, Error>(http::Response::new(()))
    });
    let mut svc = tower::Layer::layer(&ConcurrencyLimitLayer::new(1), inner);
    let e = svc.call(http::Request::new(())).await.unwrap_err();
    assert!(matches!(e, Error::InvalidRequest(_)), "{e}");
}

#[tokio::test(start_paused = true)]
async fn every_absurd_setting_is_refused_or_bounded() {
    use tower_anthropic::ClientBuilder;
    use tower_anthropic::pacing::{Pacer, QuotaLimits};
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    type Case = (&'static str, fn(ClientBuilder) -> ClientBuilder);
    let cases: Vec<Case> = vec![
        ("timeout MAX", |b| b.timeout(Duration::MAX)),
        ("timeout 0", |b| b.timeout(Duration::ZERO)),
        ("deadline MAX", |b| b.deadline(Duration::MAX)),
        ("deadline 0", |b| b.deadline(Duration::ZERO)),
        ("stream idle MAX", |b| b.stream_idle_timeout(Duration::MAX)),
        ("stream idle 0", |b| b.stream_idle_timeout(Duration::ZERO)),
        ("connect MAX", |b| b.connect_timeout(Duration::MAX)),
        ("connect 0", |b| b.connect_timeout(Duration::ZERO)),
        ("pool idle MAX", |b| b.pool_idle_timeout(Duration::MAX)),
        ("pool idle 0", |b| b.pool_idle_timeout(Duration::ZERO)),
        ("pool max idle MAX", |b| {
            b.pool_max_idle_per_host(usize::MAX)
        }),
        ("concurrency 0", |b| b.concurrency_limit(0)),
        ("concurrency MAX", |b| b.concurrency_limit(usize::MAX)),
        ("retries MAX", |b| b.max_retries(u32::MAX)),
        ("response body 0", |b| b.max_response_body(0)),
        ("response body MAX", |b| b.max_response_body(usize::MAX)),
        ("error body 0", |b| b.max_error_body(0)),
        ("error body MAX", |b| b.max_error_body(usize::MAX)),
        ("handlers MAX", |b| b.for_request_handlers(Duration::MAX)),
        ("handlers 0", |b| b.for_request_handlers(Duration::ZERO)),
        ("backoff MAX", |b| {
            b.retry_policy(RetryPolicy::new().backoff(Duration::MAX, Duration::MAX, f64::NAN))
        }),
        ("backoff 0", |b| {
            b.retry_policy(RetryPolicy::new().backoff(Duration::ZERO, Duration::ZERO, -1.0))
        }),
        ("retry-after cap MAX", |b| {
            b.retry_policy(RetryPolicy::new().max_retry_after(Duration::MAX))
        }),
        ("max_wait MAX", |b| {
            b.pacer(Pacer::new().max_wait(Duration::MAX))
        }),
        ("max_wait 0", |b| {
            b.pacer(Pacer::new().max_wait(Duration::ZERO))
        }),
        ("cold start MAX", |b| {
            b.pacer(Pacer::new().cold_start(Duration::MAX))
        }),
        ("limits MAX", |b| {
            b.pacer(Pacer::new().limits(QuotaLimits {
                requests_per_minute: u64::MAX,
                input_tokens_per_minute: u64::MAX,
                output_tokens_per_minute: u64::MAX,
            }))
        }),
        ("limits 0", |b| {
            b.pacer(Pacer::new().limits(QuotaLimits {
                requests_per_minute: 0,
                input_tokens_per_minute: 0,
                output_tokens_per_minute: 0,
            }))
        }),
    ];
    for (name, set) in cases {
        // Each setting alone, and with a 529 to retry, a 429 to wait for, and a stream.
        let c = match set(support::builder(&s, name, 1)).build() {
            Ok(c) => c,
            Err(e) => {
                // Refused at build: a typed error that names the problem.
                assert!(!e.to_string().is_empty(), "{name}");
                continue;
            }
        };
        s.script(
            name,
            [
                ScriptEntry::status(529),
                serde_json::from_value(serde_json::json!(
                    {"kind": "status", "status": 429, "headers": {"retry-after": "1"}}
                ))
                .unwrap(),
            ],
        );
        let calls = async {
            let a = c.messages().create(support::req(16)).await.map(|_| ());
            let b = c.messages().create(support::req(16)).await.map(|_| ());
            let st = match c.messages().stream(support::req(16)).await {
                Ok(st) => st.final_message().await.map(|_| ()),
                Err(e) => Err(e),
            };
            [a, b, st]
        };
        let results = tokio::time::timeout(Duration::from_secs(3600), calls)
            .await
            .unwrap_or_else(|_| panic!("{name}: a call hung"));
        for r in results {
            if let Err(e) = r {
                // A typed error of its own (a zero timeout times out, a zero body limit is
                // too small, ...), never a panic.
                assert!(!e.to_string().is_empty(), "{name}");
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_base_url_ending_in_v1_reaches_the_api() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    for url in [format!("{}/v1", s.url()), format!("{}/v1/", s.url())] {
        let c = Client::builder()
            .api_key("sk-ant-x")
            .base_url(&url)
            .build()
            .unwrap();
        c.messages().create(support::req(16)).await.unwrap();
    }
    assert!(s.log().iter().all(|l| l.path == "/v1/messages"));
}
