//! Compose the layers yourself around an HTTP client that is not this crate's: here a plain
//! hyper-util client without TLS, talking to the embedded mock, with one of tower's own
//! layers slotted in between ours. Both a whole message and a stream go through the same
//! hand-built stack.
//!
//! ```text
//! cargo run --example compose
//! ```

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tower::ServiceBuilder;
use tower_anthropic::ServiceBuilderExt;
use tower_anthropic::limit::ConcurrencyLimitLayer;
use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
use tower_anthropic::retry::RetryPolicy;
use tower_anthropic::stream::{Delta, StreamEvent};
use tower_anthropic::transport::{ApiKey, Endpoint};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockServer::start(MockConfig::default()).await?;
    // The first call meets an HTML 502 from a proxy (retried), then a 400 (not retried); the
    // stream meets an overloaded error before its first content (re-sent transparently).
    mock.script("compose", [ScriptEntry::Html { status: 502 }]);
    mock.script("compose", [ScriptEntry::status(400)]);

    // Any `Service<http::Request<Full<Bytes>>>` will do; this one is hyper-util's, plain HTTP.
    let http: HyperClient<_, Full<Bytes>> = HyperClient::builder(TokioExecutor::new()).build_http();
    // Keep a clone of the limit layer to read its free permits.
    let limit = ConcurrencyLimitLayer::new(8);
    let stack = ServiceBuilder::new()
        .overall_deadline(Duration::from_secs(60))
        .retry_api_errors(RetryPolicy::new().max_retries(3))
        // tower's own timeout, between ours: its error is understood by the retry layer.
        .timeout(Duration::from_secs(45))
        .attempt_timeout(Duration::from_secs(30))
        .stream_idle_timeout(Duration::from_secs(30))
        .layer(limit.clone())
        .classify_responses()
        .service(http);

    let mut endpoint = Endpoint::new(
        &mock.url(),
        ApiKey::new("sk-ant-mock").expect("a non-empty key"),
    )?;
    endpoint.set_header("x-mock-key".parse()?, "compose".parse()?);
    let messages = MessagesService::new(stack, endpoint);

    println!(
        "the mock is scripted: the first call meets a proxy's HTML 502 (retried), then a 400 (not retried: the caller's fault); the next calls go through"
    );
    for _ in 0..3 {
        let req =
            CreateMessageRequest::new("claude-sonnet-4-6", 32).user("Hello through my own stack");
        match messages.create(req).await {
            Ok(msg) => println!(
                "ok:  {} [{}, {} attempts]",
                msg.text(),
                msg.request_id().unwrap_or("-"),
                msg.attempts()
            ),
            Err(e) => println!(
                "err: {e} (kind {:?}, retryable: {}, {} attempts)",
                e.kind(),
                e.is_retryable(),
                e.attempts()
            ),
        }
    }

    // Streaming through the same stack.
    mock.script(
        "compose",
        [ScriptEntry::StreamError {
            after: 2,
            error_type: Some("overloaded_error".into()),
        }],
    );
    let req = CreateMessageRequest::new("claude-sonnet-4-6", 24).user("Stream it");
    let mut stream = messages.stream(req).await?;
    print!("stream: ");
    while let Some(event) = stream.next().await {
        if let StreamEvent::ContentBlockDelta {
            delta: Delta::TextDelta { text },
            ..
        } = event?
        {
            print!("{text}");
        }
    }
    println!(" [{} attempts]", stream.attempts());

    println!(
        "free permits after the calls: {} of {}",
        limit.available_permits(),
        limit.max().unwrap_or(usize::MAX)
    );
    Ok(())
}
