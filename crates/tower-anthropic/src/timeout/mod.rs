//! Timeouts as layers, each turning expiry into [`Error::Timeout`](crate::Error::Timeout):
//!
//! - [`AttemptTimeoutLayer`]: one attempt. For a non-streaming request it covers the whole
//!   attempt including reading the body, which it reads to the end (so a stall or reset
//!   mid-body is a retryable attempt failure); for a streaming request it covers the wait
//!   for the response head. Default 600 s, as the SDKs.
//! - [`OverallDeadlineLayer`]: the whole call, waits between attempts included; outermost. It
//!   puts a [`Deadline`] in the request's extensions so the retry policy never starts a wait
//!   that would end after it (the call then ends at once with a deadline error that keeps the
//!   last error). For a stream the call ends when the stream starts; the stream itself is
//!   bounded by the idle timeout.
//! - [`StreamIdleTimeoutLayer`]: on a streaming response, the gap between chunks (pings
//!   count); expiry ends the stream with an error.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use hyper_util::client::legacy::Client as HyperClient;
//! use hyper_util::rt::TokioExecutor;
//! use tower::ServiceBuilder;
//! use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
//! use tower_anthropic::retry::{RetryLayer, RetryPolicy};
//! use tower_anthropic::timeout::{AttemptTimeoutLayer, OverallDeadlineLayer, StreamIdleTimeoutLayer};
//! use tower_anthropic::transport::{ApiKey, Endpoint};
//! use tower_anthropic::classify::ClassifyLayer;
//!
//! let mock = MockServer::start(MockConfig::default()).await?;
//! // The first attempt stalls for a minute: the attempt timeout cuts it, the retry succeeds.
//! mock.script("doc", [ScriptEntry::Stall { ms: 60_000 }]);
//! let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
//! let stack = ServiceBuilder::new()
//!     .layer(OverallDeadlineLayer::new(Duration::from_secs(120)))
//!     .layer(RetryLayer::new(RetryPolicy::new()))
//!     .layer(AttemptTimeoutLayer::new(Duration::from_secs(10)))
//!     .layer(StreamIdleTimeoutLayer::new(Duration::from_secs(30)))
//!     .layer(ClassifyLayer::new())
//!     .service(http);
//! let mut endpoint = Endpoint::new(&mock.url(), ApiKey::new("sk-ant-test").unwrap())?;
//! endpoint.set_header("x-mock-key".parse()?, "doc".parse()?);
//! let messages = MessagesService::new(stack, endpoint);
//!
//! let msg = messages.create(CreateMessageRequest::new("claude-sonnet-4-6", 16).user("Hi")).await?;
//! assert_eq!(msg.attempts(), 2);
//! let first = mock.log()[0].fault.clone();
//! assert_eq!(first.as_deref(), Some("script_stall"));

//! # Ok(()) }
//! ```

mod attempt;
mod deadline;
mod idle;

pub use attempt::{AttemptTimeout, AttemptTimeoutLayer, ResponseFuture as AttemptResponseFuture};
pub use deadline::{
    Deadline, OverallDeadline, OverallDeadlineLayer, ResponseFuture as DeadlineResponseFuture,
};
pub use idle::{IdleTimeoutBody, StreamIdleTimeout, StreamIdleTimeoutLayer};

/// Default attempt timeout: 600 s, as the official SDKs.
pub const DEFAULT_ATTEMPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);
