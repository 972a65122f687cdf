//! The fault matrix: 25 faults x {create, stream} x {the default `Client`, a minimal stack}.
//! Every cell ends in the expected typed outcome within its deadline, and afterwards no
//! permit is held and no stream is left open at the mock. Paused time.

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::ServiceBuilder;
use tower_anthropic::error::TimeoutKind;
use tower_anthropic::messages::MessagesService;
use tower_anthropic::transport::{ApiKey, Endpoint};
use tower_anthropic::{ApiErrorKind, Error, ServiceBuilderExt};

mod support;

/// What a cell must end in.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Want {
    Ok,
    Api(ApiErrorKind),
    SpendLimit,
    Connection,
    Timeout(TimeoutKind),
    /// A broken stream: an error event of this kind, or (None) cut off.
    Stream(Option<ApiErrorKind>),
}

/// A fault: its script entry, whether retrying (or re-sending before content) cures it, what a
/// single attempt ends in, and whether it only shows in a stream.
struct Fault {
    name: &'static str,
    entry: ScriptEntry,
    cured_by_retry: bool,
    once: Want,
    stream_only: bool,
    /// Only shows in a whole (non-streaming) body.
    create_only: bool,
}

fn status(s: u16) -> ScriptEntry {
    ScriptEntry::status(s)
}

fn faults() -> Vec<Fault> {
    use ApiErrorKind::*;
    let f = |name, entry, cured_by_retry, once| Fault {
        name,
        entry,
        cured_by_retry,
        once,
        stream_only: false,
        create_only: false,
    };
    // A stream fault after content is never re-sent: retrying does not cure it.
    let s = |name, entry, once, after_content: bool| Fault {
        name,
        entry,
        cured_by_retry: !after_content,
        once,
        stream_only: true,
        create_only: false,
    };
    vec![
        f("400", status(400), false, Want::Api(BadRequest)),
        f("401", status(401), false, Want::Api(Authentication)),
        f("403", status(403), false, Want::Api(PermissionDenied)),
        f("404", status(404), false, Want::Api(NotFound)),
        f("408", status(408), true, Want::Api(RequestTimeout)),
        f("409", status(409), true, Want::Api(Conflict)),
        f(
            "413 html",
            ScriptEntry::Html { status: 413 },
            false,
            Want::Api(RequestTooLarge),
        ),
        f(
            "429 retry-after 1",
            ScriptEntry::status_with_headers(429, [("retry-after", "1")]),
            true,
            Want::Api(RateLimit),
        ),
        f(
            "429 spend limit",
            ScriptEntry::Status {
                status: 429,
                error_type: None,
                error_code: Some("enforced_spend_limit_reached".into()),
                message: None,
                headers: Default::default(),
                body: None,
            },
            false,
            Want::SpendLimit,
        ),
        f("500", status(500), true, Want::Api(InternalServer)),
        f(
            "502 html",
            ScriptEntry::Html { status: 502 },
            true,
            Want::Api(InternalServer),
        ),
        f("503", status(503), true, Want::Api(ServiceUnavailable)),
        f("504", status(504), true, Want::Api(GatewayTimeout)),
        f("529", status(529), true, Want::Api(Overloaded)),
        f(
            "529 x-should-retry false",
            ScriptEntry::status_with_headers(529, [("x-should-retry", "false")]),
            false,
            Want::Api(Overloaded),
        ),
        f(
            "reset before headers",
            ScriptEntry::Reset,
            true,
            Want::Connection,
        ),
        f(
            "stall before headers",
            ScriptEntry::Stall { ms: 600_000 },
            true,
            Want::Timeout(TimeoutKind::Attempt),
        ),
        f(
            "slow answer",
            ScriptEntry::Delay { ms: 2_000 },
            true,
            Want::Ok,
        ),
        Fault {
            create_only: true,
            ..f("cut body", ScriptEntry::CutBody, true, Want::Connection)
        },
        Fault {
            create_only: true,
            ..f(
                "stall mid-body",
                ScriptEntry::StallBody { ms: 600_000 },
                true,
                Want::Timeout(TimeoutKind::Attempt),
            )
        },
        s(
            "error event before content",
            ScriptEntry::StreamError {
                after: 1,
                error_type: Some("overloaded_error".into()),
            },
            Want::Stream(Some(Overloaded)),
            false,
        ),
        s(
            "error event after content",
            ScriptEntry::StreamError {
                after: 6,
                error_type: Some("overloaded_error".into()),
            },
            Want::Stream(Some(Overloaded)),
            true,
        ),
        s(
            "cut before content",
            ScriptEntry::StreamCut { after: 1 },
            Want::Stream(None),
            false,
        ),
        s(
            "cut after content",
            ScriptEntry::StreamCut { after: 6 },
            Want::Stream(None),
            true,
        ),
        s(
            "stall after content",
            ScriptEntry::StreamStall {
                after: 6,
                ms: 600_000,
            },
            Want::Timeout(TimeoutKind::StreamIdle),
            true,
        ),
    ]
}

fn matches(want: Want, got: &Result<(), Error>) -> bool {
    match (want, got) {
        (Want::Ok, Ok(())) => true,
        (Want::Api(kind), Err(e @ Error::Api(_))) => e.kind() == Some(kind),
        (Want::SpendLimit, Err(Error::Api(a))) => a.is_spend_limit() && !a.is_retryable(),
        (Want::Connection, Err(Error::Connection(_))) => true,
        (Want::Timeout(kind), Err(e)) => support::timeout_kind(e) == Some(kind),
        (Want::Stream(Some(kind)), Err(Error::Stream(s))) => {
            s.is_error_event() && s.kind() == Some(kind)
        }
        (Want::Stream(None), Err(Error::Stream(s))) => s.is_truncated(),
        _ => false,
    }
}

/// One call in `mode`, read to its end.
async fn call<S, RB>(messages: &MessagesService<S>, stream: bool) -> Result<(), Error>
where
    S: tower::Service<http::Request<Full<Bytes>>, Response = http::Response<RB>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<tower_anthropic::BoxError>,
    RB: http_body::Body + Send + 'static,
    RB::Data: Send,
    RB::Error: Into<tower_anthropic::BoxError>,
{
    if stream {
        messages
            .stream(support::req(16))
            .await?
            .final_message()
            .await?;
    } else {
        messages.create(support::req(16)).await?;
    }
    Ok(())
}

#[tokio::test(start_paused = true)]
async fn every_fault_ends_in_its_typed_outcome_with_nothing_held() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let limit = 4;
    let mut cells = 0;
    for fault in faults() {
        for stream in [false, true] {
            for minimal in [false, true] {
                s.reset();
                s.script("fm", [fault.entry.clone()]);
                let deadline = Duration::from_secs(60);
                let start = Instant::now();
                let (got, permits) = if minimal {
                    // Classify and the timeouts only: no retry, no limit, no pacing.
                    let http =
                        HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                    let stack = ServiceBuilder::new()
                        .attempt_timeout(Duration::from_secs(5))
                        .stream_idle_timeout(Duration::from_secs(5))
                        .classify_responses()
                        .service(http);
                    let mut e =
                        Endpoint::new(&s.url(), ApiKey::new(support::KEY).unwrap()).unwrap();
                    e.set_header("x-mock-key".parse().unwrap(), "fm".parse().unwrap());
                    let m = MessagesService::new(stack, e)
                        .first_content_timeout(Some(Duration::from_secs(5)));
                    (call(&m, stream).await, limit)
                } else {
                    let c = support::builder(&s, "fm", 1)
                        .timeout(Duration::from_secs(5))
                        .stream_idle_timeout(Duration::from_secs(5))
                        .deadline(deadline)
                        .concurrency_limit(limit)
                        .build()
                        .unwrap();
                    let m = c.service();
                    let r = call(&m, stream).await;
                    (r, c.available_permits())
                };
                let took = start.elapsed();
                let applies = if stream {
                    !fault.create_only
                } else {
                    !fault.stream_only
                };
                let want = if !applies {
                    Want::Ok
                } else if !minimal && fault.cured_by_retry {
                    // Retried, or re-sent before content: the second attempt succeeds.
                    Want::Ok
                } else {
                    // One attempt's outcome: no retry layer, not retryable, or after content
                    // (never re-sent).
                    fault.once
                };
                let cell = format!(
                    "{} / {} / {}",
                    fault.name,
                    if stream { "stream" } else { "create" },
                    if minimal { "minimal" } else { "default" }
                );
                assert!(matches(want, &got), "{cell}: wanted {want:?}, got {got:?}");
                assert!(took <= deadline, "{cell}: took {took:?}");
                assert_eq!(permits, limit, "{cell}: a permit is still held");
                // Let the mock see the client's side of any closed stream.
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(s.stats().open_streams, 0, "{cell}: a stream is left open");
                cells += 1;
            }
        }
    }
    assert_eq!(cells, 25 * 2 * 2);
}
