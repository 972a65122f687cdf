//! A faithful, fault-injecting mock of the Anthropic Messages API, on loopback.
//!
//! `POST /v1/messages` and `POST /v1/messages/count_tokens` behave like the API: the same
//! authentication and validation errors with the API's error bodies, realistic `Message`s and
//! server-sent event streams, per-key token-bucket rate limits with the twelve
//! `anthropic-ratelimit-*` headers, and a `request-id` on every response. On top of that it
//! injects faults on demand:
//!
//! - **scripted** per request: `POST /_mock/script` (or [`MockServer::script`]) queues
//!   [`ScriptEntry`]s for requests carrying `x-mock-key: <key>`: statuses with any headers,
//!   HTML error pages, resets, stalls, delays, cut bodies, mid-stream errors, cut streams;
//! - **random**, with a seed ([`RandomFaults`]): 529, 500, 503, HTML 502, reset, stall;
//! - **outages** ([`Outage`], or [`MockServer::outage_for`]): every request gets a 529 or a
//!   reset for a while;
//! - **latency** ([`Latency`]): time to first byte and tokens per second;
//! - **TLS** ([`MockConfig::tls`] with a [`TlsIdentity`]: a generated self-signed
//!   certificate, or an expired one): HTTPS with HTTP/2 by ALPN, to test clients' TLS
//!   handling and extra root certificates.
//!
//! `GET /_mock/stats`, `GET /_mock/log` and `POST /_mock/reset` observe and reset it, as do
//! [`MockServer::stats`], [`MockServer::log`] and [`MockServer::reset`].
//!
//! ```no_run
//! use anthropic_mock::{MockConfig, MockServer, RandomFaults};
//!
//! # async fn run() -> std::io::Result<()> {
//! let config = MockConfig {
//!     faults: RandomFaults { p529: 0.2, seed: 7, ..Default::default() },
//!     ..Default::default()
//! };
//! let server = MockServer::start(config).await?;
//! println!("point your client at {}", server.url());
//! # Ok(()) }
//! ```

mod body;
mod config;
mod generate;
mod ratelimit;
mod rng;
mod script;
mod server;
mod stats;
mod time;
mod tls;

pub use body::MockBody;
pub use config::{Latency, MODEL_IDS, MockConfig, Outage, OutageKind, RandomFaults, RateLimits};
pub use script::{Script, ScriptEntry};
pub use server::{MAX_SCRIPTED, MockServer};
pub use stats::{LogEntry, Stats};
pub use tls::TlsIdentity;
