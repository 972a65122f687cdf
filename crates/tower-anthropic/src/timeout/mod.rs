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
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_anthropic::timeout::{AttemptTimeoutLayer, OverallDeadlineLayer, StreamIdleTimeoutLayer};
//!
//! let builder = ServiceBuilder::new()
//!     .layer(OverallDeadlineLayer::new(Duration::from_secs(120)))
//!     // retry goes here
//!     .layer(AttemptTimeoutLayer::new(Duration::from_secs(60)))
//!     .layer(StreamIdleTimeoutLayer::new(Duration::from_secs(30)));
//! # let _ = builder;
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
