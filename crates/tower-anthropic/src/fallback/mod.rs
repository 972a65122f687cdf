//! A fallback model chain: when the requested model is down, re-issue the whole call to the
//! next model of a configured chain (say a Sonnet model, then a Haiku model).
//!
//! [`FallbackLayer`] sits **above retry** (and, when there is one, above the
//! [circuit breaker](crate::breaker), so each model keeps its own circuit): the requested model
//! gets its retries first; if the call still ends in an error that says the service is
//! unhealthy ([`Error::is_unhealthy`]: a 529, any 5xx, a connection error, an attempt timeout)
//! or in [`Error::CircuitOpen`], the same request goes to the next model in the chain, and so
//! on. It never falls back on a 4xx (a 400 would fail the same way; a 401 or 403 is the key's;
//! a 429 is the quota's, and a spend limit is the account's), on a local refusal, or on a
//! deadline that ran out; and since it acts on the response head, never after a stream has
//! handed over content.
//!
//! The request is re-targeted by rewriting the `model` of its JSON body; the chain skips the
//! model that was requested. Messages calls (whole and streamed) made by
//! [`MessagesService`](crate::messages::MessagesService) are re-targeted; other requests
//! (`count_tokens`, or requests built by hand) pass through unchanged. The answer says which model answered (`Message::model`) and how
//! far down the chain it came from: [`ApiResponse::fallback_depth`] and
//! [`MessageStream::fallback_depth`] (0 for the requested model). Each fallback logs a
//! `tracing` event. When every model fails, the last model's error is returned.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use anthropic_mock::{MockConfig, MockServer, OutageKind};
//! use tower_anthropic::{Client, messages::CreateMessageRequest};
//!
//! let mock = MockServer::start(MockConfig::default()).await?;
//! mock.model_outage_for("claude-sonnet-4-6", Duration::from_secs(60), OutageKind::Overloaded);
//! let client = Client::builder()
//!     .api_key("sk-ant-test")
//!     .base_url(mock.url())
//!     .fallback_models(["claude-haiku-4-5"])
//!     .build()?;
//! let req = CreateMessageRequest::new("claude-sonnet-4-6", 16).user("Hi");
//! let msg = client.messages().create(req).await?;
//! assert_eq!(msg.model, "claude-haiku-4-5");
//! assert_eq!(msg.fallback_depth(), 1);
//! # Ok(()) }
//! ```
//!
//! [`ApiResponse::fallback_depth`]: crate::messages::ApiResponse::fallback_depth
//! [`MessageStream::fallback_depth`]: crate::stream::MessageStream::fallback_depth

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use serde_json::Value;
use tower::{Layer, Service, ServiceExt};

use crate::error::{BoxError, Error};
use crate::extensions::RequestCost;
use crate::transport::RequestBody;
use crate::transport::copy_request;

/// Most models a chain may hold.
pub const MAX_CHAIN: usize = 16;

pub use crate::extensions::FallbackDepth;

/// Re-issues a failed call to the next model of a chain (see the [module docs](self)).
#[derive(Debug, Clone, Default)]
pub struct FallbackLayer {
    chains: Chains,
}

/// A chain of models.
type Chain = Arc<[Arc<str>]>;

/// The default chain, and the chains of models that have their own.
#[derive(Debug, Clone, Default)]
struct Chains {
    default: Chain,
    by_model: Arc<[(Arc<str>, Chain)]>,
}

impl Chains {
    /// The chain of `model` (its own, else the default), when it has one.
    fn of(&self, model: &str) -> Option<Chain> {
        let chain = self
            .by_model
            .iter()
            .find(|(m, _)| &**m == model)
            .map_or(&self.default, |(_, c)| c);
        (!chain.is_empty()).then(|| chain.clone())
    }
}

/// At most [`MAX_CHAIN`] non-empty names.
fn chain_of<I, M>(models: I) -> Chain
where
    I: IntoIterator<Item = M>,
    M: AsRef<str>,
{
    let chain: Vec<Arc<str>> = models
        .into_iter()
        .filter(|m| !m.as_ref().is_empty())
        .map(|m| Arc::from(m.as_ref()))
        .take(MAX_CHAIN)
        .collect();
    chain.into()
}

impl FallbackLayer {
    /// The models to try, in order, after the requested one (which the chain skips); at most
    /// [`MAX_CHAIN`] are kept, empty names are ignored.
    pub fn new<I, M>(models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        Self {
            chains: Chains {
                default: chain_of(models),
                by_model: Arc::new([]),
            },
        }
    }

    /// A chain of `model`'s own, used instead of the default one (from [`new`](Self::new))
    /// for calls that request `model`; an empty chain means `model` never falls back. Setting
    /// one for the same model again replaces it.
    ///
    /// ```
    /// use tower_anthropic::fallback::FallbackLayer;
    /// let layer = FallbackLayer::default()
    ///     .for_model("claude-opus-4-1", ["claude-sonnet-4-6", "claude-haiku-4-5"])
    ///     .for_model("claude-sonnet-4-6", ["claude-haiku-4-5"]);
    /// assert_eq!(layer.models_for("claude-opus-4-1").count(), 2);
    /// assert_eq!(layer.models_for("claude-haiku-4-5").count(), 0);
    /// ```
    pub fn for_model<I, M>(self, model: impl AsRef<str>, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        let model: Arc<str> = Arc::from(model.as_ref());
        let mut by_model: Vec<_> = self
            .chains
            .by_model
            .iter()
            .filter(|(m, _)| *m != model)
            .cloned()
            .collect();
        by_model.push((model, chain_of(models)));
        Self {
            chains: Chains {
                default: self.chains.default,
                by_model: by_model.into(),
            },
        }
    }

    /// The same per-model chains with `models` as the default chain.
    pub(crate) fn with_default<I, M>(self, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        Self {
            chains: Chains {
                default: chain_of(models),
                by_model: self.chains.by_model,
            },
        }
    }

    /// The default chain.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.chains.default.iter().map(|m| &**m)
    }

    /// The chain of calls that request `model`.
    pub fn models_for(&self, model: &str) -> impl Iterator<Item = &str> {
        let chain = self
            .chains
            .by_model
            .iter()
            .find(|(m, _)| &**m == model)
            .map_or(&self.chains.default, |(_, c)| c);
        chain.iter().map(|m| &**m)
    }
}

impl<S> Layer<S> for FallbackLayer {
    type Service = Fallback<S>;
    fn layer(&self, inner: S) -> Fallback<S> {
        Fallback {
            inner,
            chains: self.chains.clone(),
        }
    }
}

/// The service of [`FallbackLayer`].
#[derive(Debug, Clone)]
pub struct Fallback<S> {
    inner: S,
    chains: Chains,
}

impl<S> Fallback<S> {
    crate::macros::define_inner_service_accessors!();
}

/// Whether an error may move a call to the next model.
fn falls_back(e: &Error) -> bool {
    matches!(e, Error::CircuitOpen(_)) || e.is_unhealthy()
}

/// The model a request asks for and its JSON body.
fn model_and_body(req: &Request<RequestBody>) -> Option<(Arc<str>, Bytes)> {
    let cost = req.extensions().get::<RequestCost>()?;
    Some((cost.model.clone(), cost.body.clone()))
}

/// The same request for `model`: its JSON body's `model` rewritten (`None` when the body is
/// not a JSON object).
fn retarget(
    template: &Request<RequestBody>,
    body: &[u8],
    model: &Arc<str>,
) -> Option<Request<RequestBody>> {
    let mut json: serde_json::Map<String, Value> = serde_json::from_slice(body).ok()?;
    json.insert("model".to_owned(), Value::String(model.to_string()));
    let bytes = Bytes::from(serde_json::to_vec(&json).ok()?);
    let mut req = copy_request(template);
    *req.body_mut() = Full::new(bytes.clone());
    if let Some(cost) = req.extensions_mut().get_mut::<RequestCost>() {
        cost.model = model.clone();
        cost.body = bytes;
    }
    Some(req)
}

impl<S, RB> Service<Request<RequestBody>> for Fallback<S>
where
    S: Service<Request<RequestBody>, Response = Response<RB>> + Clone + Send + 'static,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    RB: Send + 'static,
{
    type Response = Response<RB>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<RB>, Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.inner.poll_ready(cx).map_err(Error::from_service_error)
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        let target = model_and_body(&req)
            .and_then(|(model, body)| Some((self.chains.of(&model)?, model, body)));
        let Some((chain, requested, body)) = target else {
            let fut = self.inner.call(req);
            return Box::pin(async move { fut.await.map_err(Error::from_service_error) });
        };
        let template = copy_request(&req);
        let first = self.inner.call(req);
        // The inner service is ready for one call only: the rest go through clones.
        let inner = self.inner.clone();
        Box::pin(async move {
            let mut error = match first.await.map_err(Error::from_service_error) {
                Ok(resp) => return Ok(resp),
                Err(e) => e,
            };
            let mut depth = 0;
            let mut from = requested.clone();
            for model in chain.iter().filter(|m| **m != requested) {
                if !falls_back(&error) {
                    break;
                }
                let Some(next) = retarget(&template, &body, model) else {
                    break;
                };
                depth += 1;
                tracing::info!(from = %from, to = %model, depth, error = %error,
                    "falling back to the next model");
                match inner.clone().oneshot(next).await {
                    Ok(mut resp) => {
                        resp.extensions_mut().insert(FallbackDepth(depth));
                        return Ok(resp);
                    }
                    Err(e) => error = Error::from_service_error(e),
                }
                from = model.clone();
            }
            Err(error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_is_bounded_and_skips_empty_names() {
        let l = FallbackLayer::new(["a", "", "b"]);
        assert_eq!(l.models().collect::<Vec<_>>(), ["a", "b"]);
        let long = FallbackLayer::new((0..100).map(|i| i.to_string()));
        assert_eq!(long.models().count(), MAX_CHAIN);
    }

    #[test]
    fn retarget_rewrites_only_the_model() {
        let mut req = Request::new(Full::new(Bytes::new()));
        let body = br#"{"model":"a","max_tokens":5,"messages":[{"role":"user","content":"x"}]}"#;
        req.extensions_mut().insert(RequestCost {
            model: Arc::from("a"),
            max_tokens: 5,
            body: Bytes::from_static(body),
        });
        let next = retarget(&req, body, &Arc::from("b")).unwrap();
        let cost = next.extensions().get::<RequestCost>().unwrap();
        assert_eq!(&*cost.model, "b");
        let v: Value = serde_json::from_slice(&cost.body).unwrap();
        assert_eq!(v["model"], "b");
        assert_eq!(v["max_tokens"], 5);
        assert_eq!(v["messages"][0]["content"], "x");
        assert!(retarget(&req, b"[1]", &Arc::from("b")).is_none());
    }
}
