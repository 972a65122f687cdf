//! Input-token estimates from a request body.

use std::fmt;

/// Estimates a request's input tokens from its JSON body, cheaply (it runs on every
/// attempt). The pacer corrects the estimate by the ratio it learns from the
/// `usage.input_tokens` of answered requests, so a constant bias costs nothing.
pub trait TokenEstimator: Send + Sync + fmt::Debug {
    /// Estimated input tokens of the request whose JSON body is `body`.
    fn estimate(&self, body: &[u8]) -> u64;
}

/// One token per this many bytes of the JSON body (default 4, the usual rule of thumb for
/// English text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BytesPerToken(pub u32);

impl TokenEstimator for BytesPerToken {
    fn estimate(&self, body: &[u8]) -> u64 {
        (body.len() as u64).div_ceil(u64::from(self.0.max(1)))
    }
}
