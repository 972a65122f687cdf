//! Degrade to a default: turn chosen errors into a stand-in answer (a cached answer, a canned
//! message, or whatever a closure or a service of yours makes), marked so callers can tell.
//!
//! [`DegradeLayer`] wraps a typed service (such as
//! [`MessagesService`](crate::messages::MessagesService), or a [`Client`](crate::Client) through
//! [`ClientBuilder::degrade`](crate::ClientBuilder::degrade)) whose answers are
//! [`ApiResponse`]s. When a call fails with an error the predicate accepts (by default every
//! error that is not the caller's own: not a local refusal and not a 4xx other than 408, 409
//! and 429, see [`Error::is_caller_error`]), the degrader is asked for a value; `Some(value)`
//! becomes an [`ApiResponse::degraded`] answer ([`ApiResponse::is_degraded`] is true and
//! [`ApiResponse::degraded_by`] keeps the error), `None` returns the error as it was.
//!
//! It sits **above everything else**, the overall deadline included: a call that ran out of
//! time can still be answered with a default.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use anthropic_mock::{MockConfig, MockServer, OutageKind};
//! use tower::{Layer, ServiceExt};
//! use tower_anthropic::degrade::DegradeLayer;
//! use tower_anthropic::{Client, Error, Message, messages::CreateMessageRequest};
//!
//! let mock = MockServer::start(MockConfig::default()).await?;
//! mock.outage_for(Duration::from_secs(60), OutageKind::Overloaded);
//! let client = Client::builder().api_key("sk-ant-test").base_url(mock.url()).build()?;
//!
//! let canned = DegradeLayer::new(|req: &CreateMessageRequest, _e: &Error| {
//!     Some(Message::canned(&req.model, "The assistant is busy; please try again soon."))
//! })
//! .when(Error::is_unhealthy);
//! let svc = canned.layer(client.service());
//! let req = CreateMessageRequest::new("claude-sonnet-4-6", 16).user("Hi");
//! let answer = svc.oneshot(req).await?;
//! assert!(answer.is_degraded());
//! assert_eq!(answer.degraded_by().and_then(Error::status).map(|s| s.as_u16()), Some(529));
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tower::{Layer, Service, ServiceExt};

use crate::error::Error;
use crate::messages::ApiResponse;

/// Which errors are degraded.
type Predicate = Arc<dyn Fn(&Error) -> bool + Send + Sync>;

/// What a degrading service is asked: the request that failed and its error.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DegradeRequest<R> {
    /// The request, as it was sent.
    pub request: R,
    /// The error it met.
    pub error: Error,
}

/// A degrader from a closure `Fn(&Request, &Error) -> Option<T>` (see [`DegradeLayer::new`]).
#[derive(Clone)]
pub struct FnDegrader<F>(F);

impl<F> fmt::Debug for FnDegrader<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnDegrader")
    }
}

/// A degrader from a service of [`DegradeRequest`]s answering `Option<T>` (see
/// [`DegradeLayer::service`]).
#[derive(Debug, Clone)]
pub struct ServiceDegrader<D>(D);

/// Turns chosen errors into stand-in answers (see the [module docs](self)).
#[derive(Clone)]
pub struct DegradeLayer<D> {
    degrader: D,
    when: Predicate,
}

impl<D> fmt::Debug for DegradeLayer<D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DegradeLayer").finish_non_exhaustive()
    }
}

fn not_callers(e: &Error) -> bool {
    !e.is_caller_error()
}

impl<F> DegradeLayer<FnDegrader<F>> {
    /// Stand-in answers from a closure: `Some(value)` degrades, `None` keeps the error.
    pub fn new(f: F) -> Self {
        Self {
            degrader: FnDegrader(f),
            when: Arc::new(not_callers),
        }
    }
}

impl<D> DegradeLayer<ServiceDegrader<D>> {
    /// Stand-in answers from a service (a cache lookup, another provider...): it gets a
    /// [`DegradeRequest`] and answers `Some(value)` to degrade or `None` to keep the error; an
    /// error of its own is returned instead of the original.
    pub fn service(svc: D) -> Self {
        Self {
            degrader: ServiceDegrader(svc),
            when: Arc::new(not_callers),
        }
    }
}

impl<D> DegradeLayer<D> {
    /// Degrades only errors for which `pred` is true (default: every error that is not the
    /// caller's own, `!Error::is_caller_error`).
    pub fn when(mut self, pred: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        self.when = Arc::new(pred);
        self
    }
}

impl<S, D: Clone> Layer<S> for DegradeLayer<D> {
    type Service = Degrade<S, D>;
    fn layer(&self, inner: S) -> Degrade<S, D> {
        Degrade {
            inner,
            degrader: self.degrader.clone(),
            when: self.when.clone(),
        }
    }
}

/// The service of [`DegradeLayer`].
#[derive(Clone)]
pub struct Degrade<S, D> {
    inner: S,
    degrader: D,
    when: Predicate,
}

impl<S: fmt::Debug, D> fmt::Debug for Degrade<S, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Degrade")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, D> Degrade<S, D> {
    crate::macros::define_inner_service_accessors!();
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send>>;

/// The inner call's error when it is one to degrade (`Continue`), or the call's final result.
fn degradable<T>(
    result: Result<ApiResponse<T>, Error>,
    when: &Predicate,
) -> ControlFlow<Result<ApiResponse<T>, Error>, Error> {
    match result {
        Err(e) if when(&e) => ControlFlow::Continue(e),
        other => ControlFlow::Break(other),
    }
}

/// The stand-in answer, or the error when there is none.
fn stand_in<T>(value: Option<T>, e: Error) -> Result<ApiResponse<T>, Error> {
    match value {
        Some(v) => {
            tracing::info!(error = %e, status = e.status().map(|s| s.as_u16()),
                "call degraded to a stand-in answer");
            Ok(ApiResponse::degraded(v, e))
        }
        None => Err(e),
    }
}

impl<S, F, R, T> Service<R> for Degrade<S, FnDegrader<F>>
where
    S: Service<R, Response = ApiResponse<T>, Error = Error>,
    S::Future: Send + 'static,
    F: Fn(&R, &Error) -> Option<T> + Clone + Send + 'static,
    R: Clone + Send + 'static,
    T: Send + 'static,
{
    type Response = ApiResponse<T>;
    type Error = Error;
    type Future = BoxFuture<ApiResponse<T>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let copy = req.clone();
        let fut = self.inner.call(req);
        let f = self.degrader.0.clone();
        let when = self.when.clone();
        Box::pin(async move {
            let e = match degradable(fut.await, &when) {
                ControlFlow::Continue(e) => e,
                ControlFlow::Break(done) => return done,
            };
            let value = f(&copy, &e);
            stand_in(value, e)
        })
    }
}

impl<S, D, R, T> Service<R> for Degrade<S, ServiceDegrader<D>>
where
    S: Service<R, Response = ApiResponse<T>, Error = Error>,
    S::Future: Send + 'static,
    D: Service<DegradeRequest<R>, Response = Option<T>, Error = Error> + Clone + Send + 'static,
    D::Future: Send + 'static,
    R: Clone + Send + 'static,
    T: Send + 'static,
{
    type Response = ApiResponse<T>;
    type Error = Error;
    type Future = BoxFuture<ApiResponse<T>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let copy = req.clone();
        let fut = self.inner.call(req);
        let degrader = self.degrader.0.clone();
        let when = self.when.clone();
        Box::pin(async move {
            let e = match degradable(fut.await, &when) {
                ControlFlow::Continue(e) => e,
                ControlFlow::Break(done) => return done,
            };
            let ask = DegradeRequest {
                request: copy,
                error: e.clone(),
            };
            let value = degrader.oneshot(ask).await?;
            stand_in(value, e)
        })
    }
}
