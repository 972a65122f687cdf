//! [`ServiceBuilderExt`]: one method per layer, so a stack reads as a list.

use std::time::Duration;

use tower::ServiceBuilder;
use tower::layer::util::Stack;

use crate::breaker::{CircuitBreakerLayer, CircuitBreakers};
use crate::classify::ClassifyLayer;
use crate::fallback::FallbackLayer;
use crate::limit::ConcurrencyLimitLayer;
use crate::pacing::{Pacer, PacingLayer};
use crate::retry::{RetryLayer, RetryPolicy};
use crate::timeout::{AttemptTimeoutLayer, OverallDeadlineLayer, StreamIdleTimeoutLayer};

/// Adds this crate's layers to a `tower::ServiceBuilder`, outermost first as in
/// [`Client`](crate::Client)'s stack. Keep the order: fallback above retry (each model gets its
/// retries), the circuit breaker just below retry (each attempt is evidence, and an open circuit
/// ends the retries), retry above classify (the policy decides from classified errors), the
/// limit below retry (a request waiting between attempts holds no permit). Any other layer may stand in between, tower's own included.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::time::Duration;
/// use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
/// use bytes::Bytes;
/// use http_body_util::Full;
/// use hyper_util::client::legacy::Client as HyperClient;
/// use hyper_util::rt::TokioExecutor;
/// use tower::ServiceBuilder;
/// use tower_anthropic::breaker::CircuitBreakers;
/// use tower_anthropic::messages::{CreateMessageRequest, MessagesService};
/// use tower_anthropic::retry::RetryPolicy;
/// use tower_anthropic::transport::{ApiKey, Endpoint};
/// use tower_anthropic::ServiceBuilderExt;
///
/// let mock = MockServer::start(MockConfig::default()).await?;
/// mock.script("doc", [ScriptEntry::status(529)]); // the first attempt is overloaded
///
/// let http = HyperClient::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
/// let stack = ServiceBuilder::new()
///     .overall_deadline(Duration::from_secs(120))
///     .fall_back_to(["claude-haiku-4-5"])
///     .retry_api_errors(RetryPolicy::new())
///     .circuit_breaker(CircuitBreakers::default())
///     .attempt_timeout(Duration::from_secs(60))
///     .stream_idle_timeout(Duration::from_secs(30))
///     .concurrency_limit_until_body_end(16)
///     .classify_responses()
///     .service(http);
/// let mut endpoint = Endpoint::new(&mock.url(), ApiKey::new("sk-ant-test").unwrap())?;
/// endpoint.set_header("x-mock-key".parse()?, "doc".parse()?);
/// let messages = MessagesService::new(stack, endpoint);
///
/// let msg = messages
///     .create(CreateMessageRequest::new("claude-sonnet-4-6", 64).user("Hi"))
///     .await?;
/// assert_eq!(msg.attempts(), 2, "the 529 was retried");
/// # Ok(()) }
/// ```
pub trait ServiceBuilderExt<L>: sealed::Sealed {
    /// Adds a [`ClassifyLayer`] with the defaults: non-2xx responses become typed errors.
    fn classify_responses(self) -> ServiceBuilder<Stack<ClassifyLayer, L>>;
    /// Adds a [`FallbackLayer`]: a call whose model is down is re-issued to these models in
    /// turn; above retry (and above the circuit breaker).
    fn fall_back_to<I, M>(self, models: I) -> ServiceBuilder<Stack<FallbackLayer, L>>
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>;
    /// Adds a [`CircuitBreakerLayer`] over `breakers` (per-model circuits); below retry,
    /// above pacing.
    fn circuit_breaker(
        self,
        breakers: CircuitBreakers,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>>;
    /// Adds a [`RetryLayer`] with `policy`; needs a classify layer below it.
    fn retry_api_errors(self, policy: RetryPolicy) -> ServiceBuilder<Stack<RetryLayer, L>>;
    /// Adds a [`PacingLayer`] with `pacer` (below retry, above the attempt timeout).
    fn pace(self, pacer: Pacer) -> ServiceBuilder<Stack<PacingLayer, L>>;
    /// Adds an [`AttemptTimeoutLayer`]; non-streaming bodies are read inside the attempt.
    fn attempt_timeout(self, timeout: Duration) -> ServiceBuilder<Stack<AttemptTimeoutLayer, L>>;
    /// Adds an [`OverallDeadlineLayer`]; put it outermost.
    fn overall_deadline(self, timeout: Duration) -> ServiceBuilder<Stack<OverallDeadlineLayer, L>>;
    /// Adds a [`StreamIdleTimeoutLayer`].
    fn stream_idle_timeout(
        self,
        idle: Duration,
    ) -> ServiceBuilder<Stack<StreamIdleTimeoutLayer, L>>;
    /// Adds a [`ConcurrencyLimitLayer`] of `max` calls, each holding its permit until its
    /// response body ends (to read the free permits, add a `ConcurrencyLimitLayer` you keep a
    /// clone of with `.layer(limit.clone())` instead).
    fn concurrency_limit_until_body_end(
        self,
        max: usize,
    ) -> ServiceBuilder<Stack<ConcurrencyLimitLayer, L>>;
}

impl<L> ServiceBuilderExt<L> for ServiceBuilder<L> {
    fn fall_back_to<I, M>(self, models: I) -> ServiceBuilder<Stack<FallbackLayer, L>>
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        self.layer(FallbackLayer::new(models))
    }
    fn circuit_breaker(
        self,
        breakers: CircuitBreakers,
    ) -> ServiceBuilder<Stack<CircuitBreakerLayer, L>> {
        self.layer(CircuitBreakerLayer::new(breakers))
    }
    fn classify_responses(self) -> ServiceBuilder<Stack<ClassifyLayer, L>> {
        self.layer(ClassifyLayer::new())
    }
    fn retry_api_errors(self, policy: RetryPolicy) -> ServiceBuilder<Stack<RetryLayer, L>> {
        self.layer(RetryLayer::new(policy))
    }
    fn pace(self, pacer: Pacer) -> ServiceBuilder<Stack<PacingLayer, L>> {
        self.layer(PacingLayer::new(pacer))
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
        max: usize,
    ) -> ServiceBuilder<Stack<ConcurrencyLimitLayer, L>> {
        self.layer(ConcurrencyLimitLayer::new(max))
    }
}

mod sealed {
    pub trait Sealed {}
    impl<L> Sealed for tower::ServiceBuilder<L> {}
}
