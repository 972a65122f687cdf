//! [`ServiceBuilderExt`]: one method per layer, so a stack reads as a list.

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::classify::ClassifyLayer;

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
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn classify_responses(self) -> ServiceBuilder<Stack<ClassifyLayer, L>> {
        self.layer(ClassifyLayer::new())
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
