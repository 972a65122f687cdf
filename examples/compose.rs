//! Compose the layers yourself around an HTTP client that is not this crate's: here a plain
//! hyper-util client without TLS, talking to the embedded mock.
//!
//! ```text
//! cargo run --example compose
//! ```

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use tower::{Service, ServiceBuilder, ServiceExt};
use tower_anthropic::ServiceBuilderExt;
use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
use tower_anthropic::transport::{ApiKey, Endpoint};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockServer::start(MockConfig::default()).await?;
    mock.script("compose", [ScriptEntry::Html { status: 502 }]);

    // Any `Service<http::Request<Full<Bytes>>>` will do; this one is hyper-util's, plain HTTP.
    let http: HyperClient<_, Full<Bytes>> = HyperClient::builder(TokioExecutor::new()).build_http();
    let stack = ServiceBuilder::new().classify_responses().service(http);

    let mut endpoint = Endpoint::new(
        &mock.url(),
        ApiKey::new("sk-ant-mock").expect("a non-empty key"),
    )?;
    endpoint.set_header("x-mock-key".parse()?, "compose".parse()?);
    let mut messages = MessagesService::new(stack, endpoint);

    for _ in 0..2 {
        let req =
            CreateMessageRequest::new("claude-sonnet-4-6", 32).user("Hello through my own stack");
        match ServiceExt::<CreateMessageRequest>::ready(&mut messages)
            .await?
            .call(req)
            .await
        {
            Ok(msg) => println!("ok:  {} [{}]", msg.text(), msg.request_id().unwrap_or("-")),
            Err(e) => println!(
                "err: {e} (kind {:?}, retryable: {})",
                e.kind(),
                e.is_retryable()
            ),
        }
    }
    Ok(())
}
