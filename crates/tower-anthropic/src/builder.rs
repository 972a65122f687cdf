//! [`ServiceBuilderExt`]: one method per layer, so a stack reads as a list.

use std::time::Duration;

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::classify::ClassifyLayer;
use crate::limit::ConcurrencyLimitLayer;
use crate::retry::{RetryLayer, RetryPolicy};
use crate::timeout::{AttemptTimeoutLayer, OverallDeadlineLayer, StreamIdleTimeoutLayer};

/// Adds this crate's layers to a `tower::ServiceBuilder`, outermost first as in
/// [`Client`](crate::Client)'s stack:
///
/// ```
/// use std::time::Duration;
/// use tower::ServiceBuilder;
/// use tower_anthropic::ServiceBuilderExt;
/// use tower_anthropic::limit::ConcurrencyLimitLayer;
/// use tower_anthropic::retry::RetryPolicy;
///
/// let builder = ServiceBuilder::new()
///     .overall_deadline(Duration::from_secs(120))
///     .retry_api_errors(RetryPolicy::new())
///     .attempt_timeout(Duration::from_secs(60))
///     .stream_idle_timeout(Duration::from_secs(30))
///     .concurrency_limit_until_body_end(ConcurrencyLimitLayer::new(16))
///     .classify_responses();
/// # let _ = builder;
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds a [`ClassifyLayer`] with the defaults: non-2xx responses become typed errors.
    fn classify_responses(self) -> ServiceBuilder<Stack<ClassifyLayer, L>>;
    /// Adds a [`RetryLayer`] with `policy`; needs a classify layer below it.
    fn retry_api_errors(self, policy: RetryPolicy) -> ServiceBuilder<Stack<RetryLayer, L>>;
    /// Adds an [`AttemptTimeoutLayer`]; non-streaming bodies are read inside the attempt.
    fn attempt_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<AttemptTimeoutLayer, L>>;
    /// Adds an [`OverallDeadlineLayer`]; put it outermost.
    fn overall_deadline(self, timeout: Duration) -> ServiceBuilder<Stack<OverallDeadlineLayer, L>>;
    /// Adds a [`StreamIdleTimeoutLayer`].
    fn stream_idle_timeout(
        self,
        idle: Duration,
    ) -> ServiceBuilder<Stack<StreamIdleTimeoutLayer, L>>;
    /// Adds a [`ConcurrencyLimitLayer`] (keep the layer to read its free permits).
    fn concurrency_limit_until_body_end(
        self,
        limit: ConcurrencyLimitLayer,
    ) -> ServiceBuilder<Stack<ConcurrencyLimitLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn classify_responses(self) -> ServiceBuilder<Stack<ClassifyLayer, L>> {
        self.layer(ClassifyLayer::new())
    }
    fn retry_api_errors(self, policy: RetryPolicy) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(RetryLayer::new(policy))
    }
    fn attempt_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<AttemptTimeoutLayer, L>> {
        self.layer(AttemptTimeoutLayer::new(timeout))
    }
    fn overall_deadline(self, timeout: Duration) -> ServiceBuilder<Stack<OverallDeadlineLayer, L>> {
        self.layer(OverallDeadlineLayer::new(timeout))
    }
    fn stream_idle_timeout(
        self,
        idle: Duration,
    ) -> ServiceBuilder<Stack<StreamIdleTimeoutLayer, L>> {
        self.layer(StreamIdleTimeoutLayer::new(idle))
    }
    fn concurrency_limit_until_body_end(
        self,
        limit: ConcurrencyLimitLayer,
    ) -> ServiceBuilder<Stack<ConcurrencyLimitLayer, L>> {
        self.layer(limit)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
