//! The gateway is a shipped binary now: `anthropic-gateway` (crate `crates/anthropic-gateway`),
//! one resilient front door to the API for every service, in any language, with virtual keys,
//! per-key limits and budgets, pacing shared by replicas through Redis, metrics, an access
//! log, graceful shutdown and reload. See its crate docs and the README's "Gateway" section.
//!
//! This example runs it in-process on the embedded mock (no key, no network): it makes a
//! virtual key, serves the gateway on a free port, calls it with this library's own client
//! (as any SDK would, with its base URL pointed there), and exits.
//!
//! ```text
//! cargo run --example gateway
//! cargo run -p anthropic-gateway -- --mock     # the binary itself, until Ctrl-C
//! ```

use anthropic_gateway::config::{Config, KeyHash};
use anthropic_gateway::{keys, serve_options, server, start};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A virtual key: the gateway keeps only its hash.
    let secret = keys::new_secret();
    let text = format!(
        "listen = \"127.0.0.1:0\"\n[upstream]\nmock = true\n[telemetry]\naccess_log = false\n\n\
         [[key]]\nname = \"example\"\nhash = \"sha256:{}\"\nrequests_per_minute = 60\n",
        KeyHash::of(&secret).hex()
    );
    let config = Config::parse(&text, "example.toml".as_ref(), std::iter::empty())?;
    let started = start(&config, |_| None).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let router = started.gateway.router();
    tokio::spawn(server::serve(
        listener,
        router,
        serve_options(&config)?,
        std::future::pending(),
    ));
    println!("gateway on {url} (the embedded mock behind it)");

    // A caller: any SDK, here this library's client, with the virtual key.
    let caller = Client::builder().api_key(&secret).base_url(&url).build()?;
    let req = CreateMessageRequest::new("claude-sonnet-4-6", 64).user("Hello through the gateway");
    let answer = caller.messages().create(req.clone()).await?;
    println!(
        "whole answer: {:?} (request-id {})",
        answer.text(),
        answer.request_id().unwrap_or("-")
    );
    let mut stream = caller.messages().stream(req).await?;
    let mut events = 0;
    while let Some(event) = stream.next().await {
        event?;
        events += 1;
    }
    println!("stream: {events} events");

    // A caller without a valid key gets the API's 401, and nothing goes upstream.
    let stranger = Client::builder()
        .api_key("sk-gw-not-a-key")
        .base_url(&url)
        .build()?;
    let refused = stranger
        .messages()
        .create(CreateMessageRequest::new("claude-sonnet-4-6", 16).user("Hi"))
        .await;
    match refused {
        Err(e) => println!("without a valid key: {e}"),
        Ok(_) => return Err("a caller without a valid key was answered".into()),
    }
    Ok(())
}
