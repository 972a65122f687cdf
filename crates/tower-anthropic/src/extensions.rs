//! The contract between layers: what travels in a request's and a response's extensions.
//!
//! The layers of this crate stay apart: none calls another; what one needs to know of a call
//! that another layer (or the caller) knows travels in the `http` extensions. This is the
//! whole set, so a stack assembled from other parts can provide it:
//!
//! | extension | where | written by | read by | without it |
//! |---|---|---|---|---|
//! | [`RequestCost`] | request | [`MessagesService`], [`FallbackLayer`] (for each model it tries) | [`PacingLayer`], `SharedPacingLayer`: the quota and its cost; [`CircuitBreakerLayer`]: the circuit's key (the model) | the pacer lets the call through unpaced (and logs a warning once per pacer); the circuit key is `"default"` |
//! | [`Deadline`] | request | [`OverallDeadlineLayer`] | the pacers (a wait past it is refused at once), [`RetryLayer`] (no retry past it), the attempt timeout | no overall bound |
//! | [`CircuitKey`] | request | the caller (e.g. with `map_request`) | [`CircuitBreakerLayer`] | the key is the model |
//! | [`ResponseMode`] | request | [`MessagesService`] for a stream; a caller forwarding a body as it arrives | the attempt timeout (reads a `Buffered` body whole, under its bound, inside the attempt), retry and the breaker (a `Streaming` answer's end is the stream's) | `Buffered` |
//! | [`FallbackDepth`] | response | [`FallbackLayer`] | the caller: how far down the chain the answer came from | the requested model answered |
//!
//! Inside the crate two more travel that a caller neither writes nor reads: the pacer's
//! reservation of an answered call (in the response, settled by `MessagesService` and
//! `MessageStream` when the answer ends, released when dropped) and the retry layer's
//! attempt count and log (in the request).
//!
//! [`MessagesService`]: crate::messages::MessagesService
//! [`FallbackLayer`]: crate::fallback::FallbackLayer
//! [`PacingLayer`]: crate::pacing::PacingLayer
//! [`CircuitBreakerLayer`]: crate::breaker::CircuitBreakerLayer
//! [`OverallDeadlineLayer`]: crate::timeout::OverallDeadlineLayer
//! [`RetryLayer`]: crate::retry::RetryLayer

use std::sync::Arc;

use bytes::Bytes;

pub use crate::body::ResponseMode;
pub use crate::timeout::Deadline;

/// What a Messages request costs: its model (whose quota it is paced on, and whose circuit
/// guards it), its `max_tokens` (the output it reserves) and its JSON body (for the input
/// token estimate). [`MessagesService`](crate::messages::MessagesService) attaches it to the
/// requests it builds; a stack that builds its own requests attaches it to be paced:
///
/// ```
/// use tower_anthropic::extensions::RequestCost;
///
/// let body = bytes::Bytes::from_static(br#"{"model":"claude-sonnet-4-6","max_tokens":64,"messages":[]}"#);
/// let mut req = http::Request::new(body.clone());
/// req.extensions_mut().insert(RequestCost::new("claude-sonnet-4-6", 64, body));
/// assert_eq!(req.extensions().get::<RequestCost>().unwrap().model(), "claude-sonnet-4-6");
/// ```
#[derive(Debug, Clone)]
pub struct RequestCost {
    pub(crate) model: Arc<str>,
    pub(crate) max_tokens: u32,
    /// The JSON body, for the token estimate (shared bytes, not a copy).
    pub(crate) body: Bytes,
}

impl RequestCost {
    /// The cost of a request for `model` with `max_tokens` and this JSON `body` (the same
    /// bytes the request sends: cloning `Bytes` shares them).
    pub fn new(model: impl AsRef<str>, max_tokens: u32, body: Bytes) -> Self {
        Self {
            model: Arc::from(model.as_ref()),
            max_tokens,
            body,
        }
    }

    /// The model.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The output tokens it may take.
    pub fn max_tokens(&self) -> u32 {
        self.max_tokens
    }
}

/// The key of the circuit that guards a request, when the caller chooses it: insert it into
/// the request's extensions (e.g. with `map_request`). Without it the key is the model
/// ([`CircuitBreakerLayer`](crate::breaker::CircuitBreakerLayer)).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CircuitKey(pub Arc<str>);

impl CircuitKey {
    /// A key from any string.
    pub fn new(key: impl AsRef<str>) -> Self {
        Self(Arc::from(key.as_ref()))
    }
}

/// How far down its fallback chain a call was answered, in the response's extensions (0: the
/// requested model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FallbackDepth(pub u32);
