//! Retries, as the official SDKs do them and safer: a [`RetryPolicy`] for
//! `tower::retry::Retry`, wrapped by [`RetryLayer`] so each attempt carries its number.
//!
//! Decisions, in order:
//! 1. `x-should-retry: true|false` decides outright;
//! 2. a 429 whose `error_code` is a spend limit is not retried (waiting cannot fix it);
//! 3. the status table: 408, 409, 429 and every 5xx (529 included) are retried, nothing else;
//! 4. connection errors and attempt timeouts are retried; decode errors, refused requests and
//!    deadline timeouts are not.
//!
//! The wait: `retry-after-ms` (> 0), else `retry-after` seconds (> 0), else a future
//! `retry-after` HTTP-date, else backoff `min(0.5 s * 2^n, 8 s) * (1 - 0.25 * U)` with `U`
//! drawn afresh each time. A server-directed wait over the cap (60 s), or one that would end
//! after the call's [`Deadline`], is not slept: the error is returned at once, its
//! `retry_after()` set, so the caller can reschedule. A [`RetryBudget`] shared by all clones
//! bounds the load retries add during an outage.
//!
//! ```
//! use std::time::Duration;
//! use tower::ServiceBuilder;
//! use tower_anthropic::ServiceBuilderExt;
//! use tower_anthropic::retry::{RetryBudget, RetryPolicy};
//!
//! let policy = RetryPolicy::new()
//!     .max_retries(4)
//!     .max_retry_after(Duration::from_secs(30))
//!     .budget(Some(RetryBudget::new(0.1, 1.0, 20.0)));
//! let builder = ServiceBuilder::new().retry_api_errors(policy).classify_responses();
//! # let _ = builder;
//! ```

mod budget;
mod policy;

use std::task::{Context, Poll};

use http::Request;
use tower::{Layer, Service};

pub use budget::RetryBudget;
pub(crate) use policy::AttemptIndex;
pub use policy::{Deadline, JitterSource, RETRY_COUNT_HEADER, RetryPolicy};

use crate::error::Error;

/// Retries failed attempts under a [`RetryPolicy`]; marks each attempt with its number.
#[derive(Debug, Clone, Default)]
pub struct RetryLayer {
    policy: RetryPolicy,
}

impl RetryLayer {
    /// A layer with this policy (its budget is shared by every service it makes).
    pub fn new(policy: RetryPolicy) -> Self {
        Self { policy }
    }
}

impl<S> Layer<S> for RetryLayer {
    type Service = Retry<S>;
    fn layer(&self, inner: S) -> Retry<S> {
        Retry {
            inner: tower::retry::Retry::new(self.policy.clone(), inner),
            policy: self.policy.clone(),
        }
    }
}

/// The service of [`RetryLayer`].
#[derive(Debug, Clone)]
pub struct Retry<S> {
    inner: tower::retry::Retry<RetryPolicy, S>,
    policy: RetryPolicy,
}

impl<S> Retry<S> {
    /// The inner service.
    pub fn get_ref(&self) -> &S {
        self.inner.get_ref()
    }
    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        self.inner.get_mut()
    }
    /// The inner service, consuming the wrapper.
    pub fn into_inner(self) -> S {
        self.inner.into_inner()
    }
}

impl<S, B, RB> Service<Request<B>> for Retry<S>
where
    S: Service<Request<B>, Response = http::Response<RB>, Error = Error> + Clone,
    B: Clone,
{
    type Response = http::Response<RB>;
    type Error = Error;
    type Future = tower::retry::future::ResponseFuture<RetryPolicy, S, Request<B>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // A re-sent stream continues its count; a new request starts at 0.
        let first = req.extensions().get::<AttemptIndex>().map_or(0, |a| a.0);
        self.policy.mark_attempt(&mut req, first);
        self.inner.call(req)
    }
}
