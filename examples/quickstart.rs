//! Quickstart: a handful of requests through the default `Client`.
//!
//! With no `ANTHROPIC_API_KEY` it starts the mock server in-process on loopback, with some
//! realistic faults (random 529s, a 429 with `retry-after`), so it runs offline with no key.
//! With `ANTHROPIC_API_KEY` set it talks to the real API (model: `ANTHROPIC_MODEL`, default
//! `claude-sonnet-4-6`).
//!
//! ```text
//! cargo run --example quickstart
//! ```

use std::collections::BTreeMap;

use anthropic_mock::{MockConfig, MockServer, RandomFaults, ScriptEntry};
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::{Client, Error};

const PROMPTS: &[&str] = &[
    "In one sentence, why do clients retry with jitter?",
    "Name three HTTP statuses worth retrying.",
    "What does a 529 from the Messages API mean?",
    "Why should a spend-limit 429 not be retried?",
    "What is a retry budget?",
    "Why hold a concurrency permit until a stream ends?",
];

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The last prompt goes through `capped`: on the mock, an account over its spend limit.
    let (client, capped, mock) = match std::env::var("ANTHROPIC_API_KEY") {
        Ok(key) if !key.trim().is_empty() => {
            println!("ANTHROPIC_API_KEY is set: talking to the real API");
            let client = Client::from_env()?;
            (client.clone(), client, None)
        }
        _ => {
            let config = MockConfig {
                faults: RandomFaults {
                    p529: 0.25,
                    seed: 7,
                    ..Default::default()
                },
                ..Default::default()
            };
            let mock = MockServer::start(config).await?;
            // The first request is rate limited with a server-directed wait.
            mock.script(
                "quickstart",
                [ScriptEntry::status_with_headers(
                    429,
                    [("retry-after", "1")],
                )],
            );
            let spend_limit = serde_json::json!({"kind": "status", "status": 429,
                "error_code": "enforced_spend_limit_reached",
                "message": "You have reached your specified workspace API usage limits."});
            mock.script("capped", [serde_json::from_value(spend_limit)?]);
            println!(
                "no ANTHROPIC_API_KEY: using the embedded mock at {} (random 529s, a 429 with retry-after, a spend limit)",
                mock.url()
            );
            let builder = Client::builder()
                .api_key("sk-ant-mock-key")
                .base_url(mock.url());
            let client = builder
                .clone()
                .default_header("x-mock-key", "quickstart")
                .build()?;
            let capped = builder.default_header("x-mock-key", "capped").build()?;
            (client, capped, Some(mock))
        }
    };
    let model = std::env::var("ANTHROPIC_MODEL").unwrap_or_else(|_| "claude-sonnet-4-6".to_owned());

    let mut answered = 0;
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    for (i, prompt) in PROMPTS.iter().enumerate() {
        let req = CreateMessageRequest::new(&model, 128).user(*prompt);
        let client = if i + 1 == PROMPTS.len() {
            &capped
        } else {
            &client
        };
        match client.messages().create(req).await {
            Ok(msg) => {
                answered += 1;
                let text = msg.text();
                let short: String = text.chars().take(70).collect();
                println!(
                    "{}. ok   [{} | {} attempt(s) | {} in / {} out tokens] {short}{}",
                    i + 1,
                    msg.request_id().unwrap_or("-"),
                    msg.attempts(),
                    msg.usage.input_tokens,
                    msg.usage.output_tokens,
                    if text.chars().count() > 70 { "..." } else { "" },
                );
            }
            Err(e) => {
                let what = match &e {
                    Error::Api(api) => format!("{:?}", api.kind()),
                    Error::Connection(_) => "Connection".to_owned(),
                    Error::Timeout(_) => "Timeout".to_owned(),
                    other => format!("{other:?}")
                        .split('(')
                        .next()
                        .unwrap_or("Other")
                        .to_owned(),
                };
                println!(
                    "{}. err  [{what}, retryable: {}, after {} attempt(s)] {e}",
                    i + 1,
                    e.is_retryable(),
                    e.attempts()
                );
                *failures.entry(what).or_default() += 1;
            }
        }
    }
    let failed: usize = failures.values().sum();
    let detail: Vec<String> = failures.iter().map(|(k, n)| format!("{n} {k}")).collect();
    let mut summary = format!(
        "summary: {} requests, {answered} answered, {failed} failed",
        PROMPTS.len()
    );
    if !detail.is_empty() {
        summary.push_str(&format!(" ({})", detail.join(", ")));
    }
    if let Some(mock) = &mock {
        let stats = mock.stats();
        summary.push_str(&format!(
            "; the mock saw {} HTTP requests {:?}",
            stats.requests, stats.by_status
        ));
    }
    println!("{summary}");
    Ok(())
}
