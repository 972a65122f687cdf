//! [`ServiceBuilderExt`]: one method per layer, so a stack reads as a list.

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::classify::ClassifyLayer;
use crate::retry::{RetryLayer, RetryPolicy};

/// Adds this crate's layers to a `tower::ServiceBuilder`.
///
/// ```
/// use tower::ServiceBuilder;
/// use tower_anthropic::ServiceBuilderExt;
/// let builder = ServiceBuilder::new().classify_responses();
/// # let _ = builder;
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds a [`ClassifyLayer`] with the defaults: non-2xx responses become typed errors.
    fn classify_responses(self) -> ServiceBuilder<Stack<ClassifyLayer, L>>;
    /// Adds a [`RetryLayer`] with `policy`; needs a classify layer below it.
    fn retry_api_errors(self, policy: RetryPolicy) -> ServiceBuilder<Stack<RetryLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn classify_responses(self) -> ServiceBuilder<Stack<ClassifyLayer, L>> {
        self.layer(ClassifyLayer::new())
    }
    fn retry_api_errors(self, policy: RetryPolicy) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(RetryLayer::new(policy))
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
