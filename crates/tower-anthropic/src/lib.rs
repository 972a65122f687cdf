//! Tower layers and a resilient client for the Anthropic Messages API.
//!
//! Calls to Claude meet rate limits (429), overload (529), server errors, dropped
//! connections and slow generations. Each concern here is its own `tower::Layer`, usable
//! around any HTTP service to the API, and [`Client`] assembles a sound default stack:
//!
//! ```text
//! degrade to default       chosen errors -> a marked stand-in   (degrade::DegradeLayer)
//! typed Messages API       CreateMessageRequest -> ApiResponse<Message> | Error
//!   overall deadline       whole call, waits included            (timeout::OverallDeadlineLayer)
//!     fallback chain       a down model -> the next model        (fallback::FallbackLayer)
//!     retry + budget       SDK rules, backoff, retry-after, cap  (retry::RetryLayer)
//!       circuit breaker    per model: fail fast while it is down (breaker::CircuitBreakerLayer)
//!       pacing             each attempt waits for its quota      (pacing::PacingLayer)
//!       attempt timeout    one attempt, body read included       (timeout::AttemptTimeoutLayer)
//!         idle timeout     gaps between chunks of a stream       (timeout::StreamIdleTimeoutLayer)
//!           limit          permit held until the body ends       (limit::ConcurrencyLimitLayer)
//!             classify     non-2xx -> typed Error                (classify::ClassifyLayer)
//!               transport  hyper-util over rustls (ring), pooled (transport)
//! ```
//!
//! Indented layers sit inside the one above: the breaker, the pacer and the attempt timeout
//! act on every attempt of the retry layer (a retry is paced, and an open circuit fails an
//! attempt without a call; see [`breaker`] for why it sits below retry). What the layers
//! tell each other travels in the requests' and responses' extensions, listed in
//! [`extensions`].
//!
//! Quick start:
//!
//! ```no_run
//! use tower_anthropic::{Client, messages::CreateMessageRequest};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::from_env()?;
//! let req = CreateMessageRequest::new("claude-sonnet-4-6", 1024).user("Hello, Claude");
//! let msg = client.messages().create(req).await?;
//! println!("{}", msg.text());
//! # Ok(()) }
//! ```
//!
//! Every failure is an [`Error`] to match on; see [`error`] for the status table, and
//! [`stream`] for streaming. With the `redis` feature, `shared::SharedPacer` shares one
//! quota (and the breakers and retry budget) between processes; the work queue and the
//! `anthropic-bulk` command are in the `tower-anthropic-queue` crate. With the `axum`
//! feature, [`Error`] implements `axum::response::IntoResponse` (a status, `Retry-After` and
//! the API's error shape; nothing about the key or the account leaks): see [`error`].
//!
//! Features: `redis` (shared pacing), `axum` (`IntoResponse` for `Error`), `metrics`
//! (the `metrics` facade, see [`metrics`]); none is on by default.
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod batches;
pub mod body;
pub mod breaker;
pub mod classify;
pub mod client;
pub mod degrade;
pub mod error;
pub mod extensions;
pub mod fallback;
pub mod limit;
pub mod messages;
pub mod metrics;
pub mod pacing;
pub mod rate_limit;
pub mod retry;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub mod shared;
pub mod stream;
pub mod timeout;
pub mod transport;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod web;

mod builder;
mod fuzz;
mod macros;
mod text;

pub use builder::ServiceBuilderExt;
/// The `http` crate, whose types this API takes and returns (a user needs no version of their
/// own to match).
pub use http;

/// Internals exposed for this workspace's benchmarks only: not part of the API, no stability.
#[doc(hidden)]
pub mod __private {
    pub use crate::stream::sse::{SseDecoder, SseEvent};

    /// The typed parse of one decoded event, as `MessageStream` does it (`None` when it is
    /// not a valid event).
    pub fn parse_event(raw: &SseEvent) -> Option<crate::stream::StreamEvent> {
        crate::stream::parse_event(raw).ok()
    }
    /// The fuzz entry points (the targets in `fuzz/` call them).
    pub mod fuzz {
        pub use crate::fuzz::{accumulate, decode_message, error_body, headers, sse_chunking};
    }
}
pub use client::{Client, ClientBuilder, ConfigError};
pub use error::{ApiError, ApiErrorKind, BoxError, Error};
pub use messages::{ApiResponse, CreateMessageRequest, Message};

/// The README's code blocks, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
