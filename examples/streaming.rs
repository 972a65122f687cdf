//! Streaming a long answer, with an overload injected before the first content on the first
//! try: the stream is re-sent transparently and the text prints as it arrives.
//!
//! With no `ANTHROPIC_API_KEY` it uses the embedded mock; with one it streams from the API.
//!
//! ```text
//! cargo run --example streaming
//! ```

use std::io::Write;

use anthropic_mock::{Latency, MockConfig, MockServer, ScriptEntry};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::stream::{Delta, StreamEvent};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (client, mock) = match std::env::var("ANTHROPIC_API_KEY") {
        Ok(k) if !k.trim().is_empty() => (Client::from_env()?, None),
        _ => {
            let config = MockConfig {
                output_tokens: 240,
                latency: Latency {
                    tokens_per_second: 400,
                    ..Default::default()
                },
                ..Default::default()
            };
            let mock = MockServer::start(config).await?;
            // First try: message_start, content_block_start, then `event: error` overloaded.
            mock.script(
                "streaming",
                [ScriptEntry::StreamError {
                    after: 2,
                    error_type: None,
                }],
            );
            println!(
                "(embedded mock at {}; the first try is overloaded before any content)\n",
                mock.url()
            );
            let client = Client::builder()
                .api_key("sk-ant-mock-key")
                .base_url(mock.url())
                .default_header("x-mock-key", "streaming")
                .build()?;
            (client, Some(mock))
        }
    };
    let model = std::env::var("ANTHROPIC_MODEL").unwrap_or_else(|_| "claude-sonnet-4-6".to_owned());
    let req = CreateMessageRequest::new(model, 1024)
        .user("Write a long paragraph about resilient systems.");

    let mut stream = client.messages().stream(req).await?;
    let mut out = std::io::stdout();
    while let Some(event) = stream.next().await {
        match event {
            Ok(StreamEvent::ContentBlockDelta {
                delta: Delta::TextDelta { text },
                ..
            }) => {
                print!("{text}");
                out.flush()?;
            }
            Ok(_) => {}
            Err(e) => {
                println!("\n\nstream failed: {e} (kind {:?})", e.kind());
                return Ok(());
            }
        }
    }
    let message = stream.message().expect("message_start was received");
    println!(
        "\n\n{} input / {} output tokens, stop reason {:?}, {} attempt(s), request {}",
        message.usage.input_tokens,
        message.usage.output_tokens,
        message.stop_reason,
        stream.attempts(),
        stream.request_id().unwrap_or("-"),
    );
    if let Some(mock) = mock {
        let stats = mock.stats();
        println!(
            "the mock saw {} requests: {:?}, faults {:?}",
            stats.requests, stats.by_status, stats.by_fault
        );
    }
    Ok(())
}
