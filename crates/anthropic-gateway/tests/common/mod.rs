//! What the gateway's tests share: a mock, a gateway in front of it on loopback, a caller.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use anthropic_gateway::config::{Config, KeyHash};
use anthropic_gateway::{Gateway, serve_options, server};
use anthropic_mock::{MockConfig, MockServer};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

/// The secrets of the keys [`keys_toml`] configures.
pub const ALICE: &str = "sk-gw-alice-0123456789";
pub const BOB: &str = "sk-gw-bob-0123456789";

/// Two keys: `alice` (every model), `bob` (Haiku only, 2 requests a minute, a tiny budget).
pub fn keys_toml() -> String {
    format!(
        "[[key]]\nname = \"alice\"\nhash = \"sha256:{}\"\n\n\
         [[key]]\nname = \"bob\"\nhash = \"sha256:{}\"\nmodels = [\"claude-haiku-4-5\"]\n\
         requests_per_minute = 2\nbudget_usd = 0.0001\n\n\
         [prices.claude-haiku-4-5]\ninput = 1.0\noutput = 5.0\n",
        KeyHash::of(ALICE).hex(),
        KeyHash::of(BOB).hex()
    )
}

/// A gateway on loopback and the mock behind it.
pub struct Gw {
    pub url: String,
    pub mock: MockServer,
    pub gateway: Gateway,
    pub config: Config,
}

/// Starts `mock_config`'s mock and, in front of it, a gateway configured by `toml` (its
/// calls marked `x-mock-key: gw`, so tests can script faults).
pub async fn start(toml: &str, mock_config: MockConfig) -> Gw {
    let mock = MockServer::start(mock_config).await.unwrap();
    // (The access log is the process tests' to read: here it would only clutter the output.)
    let text = format!(
        "[telemetry]\naccess_log = false\n\n[upstream.headers]\nx-mock-key = \"gw\"\n\n{toml}"
    );
    let config = Config::parse(&text, Path::new("test.toml"), std::iter::empty()).unwrap();
    let client =
        anthropic_gateway::client(&config, Some("sk-ant-upstream-secret"), Some(&mock.url()))
            .unwrap();
    let gateway = Gateway::new(client, &config, None, Some(anthropic_gateway::prometheus()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let options = serve_options(&config).unwrap();
    let router = gateway.router();
    tokio::spawn(server::serve(
        listener,
        router,
        options,
        std::future::pending(),
    ));
    Gw {
        url,
        mock,
        gateway,
        config,
    }
}

/// An answer as a caller sees it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
    pub fn error_type(&self) -> String {
        self.json()["error"]["type"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }
    pub fn retry_after(&self) -> Option<u64> {
        self.headers
            .get("retry-after")
            .map(|v| v.to_str().unwrap().parse().unwrap())
    }
    /// `(event name, data)` of each SSE frame.
    pub fn events(&self) -> Vec<(String, Value)> {
        self.body
            .split("\n\n")
            .filter(|f| !f.trim().is_empty() && !f.starts_with(':'))
            .map(|f| {
                let name = f.lines().find_map(|l| l.strip_prefix("event: ")).unwrap();
                let data = f.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                (name.to_owned(), serde_json::from_str(data).unwrap())
            })
            .collect()
    }
}

/// Sends `body` to `url` with `key` (none: no key header) and `headers`.
pub async fn send_with(
    method: &str,
    url: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let resp = http.request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

pub async fn send(method: &str, url: &str, key: Option<&str>, body: &str) -> Answer {
    send_with(method, url, key, &[], body).await
}

/// A Messages request body.
pub fn request(model: &str, stream: bool) -> String {
    json!({"model": model, "max_tokens": 64, "stream": stream,
        "messages": [{"role": "user", "content": "Hello through the gateway"}]})
    .to_string()
}

pub const SONNET: &str = "claude-sonnet-4-6";
pub const HAIKU: &str = "claude-haiku-4-5";

/// Requests the gateway made upstream.
pub fn upstream_calls(mock: &MockServer) -> usize {
    mock.log()
        .iter()
        .filter(|e| e.headers.get("x-mock-key").map(String::as_str) == Some("gw"))
        .count()
}

/// Whether the CI says every test must run.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Skips (returns `false`) with `why`, or fails under `CI=true`.
pub fn skip(why: &str) -> bool {
    if in_ci() {
        panic!("{why}");
    }
    eprintln!("skipping: {why}");
    false
}
