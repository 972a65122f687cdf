//! [`Client`]: the default stack in one line, and [`ClientBuilder`] to tune it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue, Request, Response};
use http_body_util::BodyExt;
use tokio_util::either::Either;
use tower::util::BoxCloneSyncService;
use tower::{Layer, ServiceBuilder, ServiceExt};

use crate::body::{DEFAULT_MAX_RESPONSE_BODY, ResponseBody};
use crate::breaker::{CircuitBreakerLayer, CircuitBreakers};
use crate::classify::{ClassifyLayer, DEFAULT_MAX_ERROR_BODY};
use crate::degrade::{Degrade, DegradeLayer, DegradeRequest, ServiceDegrader};
use crate::error::Error;
use crate::fallback::FallbackLayer;
use crate::limit::ConcurrencyLimitLayer;
use crate::messages::{
    ApiResponse, CountTokensRequest, CreateMessageRequest, Message, MessagesService, TokenCount,
};
use crate::pacing::{Pacer, PacingLayer, QuotaLimits};
use crate::retry::{RetryBudget, RetryLayer, RetryPolicy};
use crate::stream::MessageStream;
use crate::timeout::{
    AttemptTimeoutLayer, DEFAULT_ATTEMPT_TIMEOUT, OverallDeadlineLayer, StreamIdleTimeoutLayer,
};
use crate::transport::{
    ApiKey, DEFAULT_API_VERSION, DEFAULT_BASE_URL, Endpoint, InvalidBaseUrl,
    InvalidRootCertificate, RequestBody, TransportConfig, http_client,
};

/// The HTTP-level stack of a [`Client`], boxed: complete requests in, classified responses
/// (non-streaming bodies already read) out.
pub type HttpStack = BoxCloneSyncService<Request<RequestBody>, Response<ResponseBody>, Error>;

/// Default gap allowed between chunks of a stream.
pub const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// A client for the Messages API with the default resilience stack, outermost first:
///
/// ```text
/// degrade                chosen errors of `create` -> a marked stand-in (off unless set)
/// typed Messages API     CreateMessageRequest -> ApiResponse<Message> | Error
///   overall deadline     whole call, waits included (off unless set)
///     fallback           a down model -> the next model of the chain (off unless set)
///     retry + budget     SDK rules, backoff with jitter, retry-after, shared budget
///       circuit breaker  per model, fail fast while it is down (off unless set)
///       pacing           every attempt waits for its quota (learned from the headers)
///       attempt timeout  600 s; non-streaming bodies read inside the attempt
///         idle timeout   gap between chunks of a stream (120 s)
///           limit        concurrency permit held until the body ends (off unless set)
///             classify   non-2xx -> typed Error
///               transport  hyper-util over rustls, pooled (credentials marked sensitive)
/// ```
///
/// `Clone + Send + Sync` and cheap to clone (the connection pool and all shared state are
/// behind `Arc`s), so it drops into axum state as it is.
///
/// ```no_run
/// use tower_anthropic::{Client, messages::CreateMessageRequest};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let client = Client::from_env()?;
/// let req = CreateMessageRequest::new("claude-sonnet-4-6", 1024).user("Hello, Claude");
/// let msg = client.messages().create(req).await?;
/// println!("{} [{}]", msg.text(), msg.request_id().unwrap_or("-"));
/// # Ok(()) }
/// ```
///
/// A clone is a reference count: clones share the stack, its pacer, breakers and permits.
#[derive(Clone)]
pub struct Client {
    parts: Arc<ClientParts>,
}

struct ClientParts {
    service: MessagesService<HttpStack>,
    limit: ConcurrencyLimitLayer,
    pacer: Option<Pacer>,
    breakers: Option<CircuitBreakers>,
    degrade: Option<Degraded>,
}

/// The closure of [`ClientBuilder::degrade`].
type DegradeFn = Arc<dyn Fn(&CreateMessageRequest, &Error) -> Option<Message> + Send + Sync>;

/// What [`ClientBuilder::degrade`] set: the closure and which errors it is offered.
#[derive(Clone)]
struct Degrader {
    f: DegradeFn,
    when: Arc<dyn Fn(&Error) -> bool + Send + Sync>,
}

/// The degrader of `create`, as a service (built once, with the client).
type DegradeService =
    BoxCloneSyncService<DegradeRequest<CreateMessageRequest>, Option<Message>, Error>;

/// `create` behind [`ClientBuilder::degrade`].
type Degraded = Degrade<MessagesService<HttpStack>, ServiceDegrader<DegradeService>>;

impl Degrader {
    /// The [`DegradeLayer`] over `service`.
    fn layer(&self, service: MessagesService<HttpStack>) -> Degraded {
        let f = self.f.clone();
        let answer = tower::service_fn(move |ask: DegradeRequest<CreateMessageRequest>| {
            std::future::ready(Ok::<_, Error>(f(&ask.request, &ask.error)))
        });
        let when = self.when.clone();
        DegradeLayer::service(BoxCloneSyncService::new(answer))
            .when(move |e| when(e))
            .layer(service)
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", self.parts.service.endpoint())
            .field("concurrency_limit", &self.parts.limit.max())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client configured from `ANTHROPIC_API_KEY` and, if set, `ANTHROPIC_BASE_URL`
    /// (`ClientBuilder::from_env()?.build()`).
    pub fn from_env() -> Result<Client, ConfigError> {
        ClientBuilder::from_env()?.build()
    }

    /// A builder with the defaults.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// The Messages API.
    pub fn messages(&self) -> Messages<'_> {
        Messages { client: self }
    }

    /// The Message Batches API, through the same stack (see [`crate::batches`]).
    pub fn batches(&self) -> crate::batches::Batches<HttpStack> {
        self.parts.service.batches()
    }

    /// The typed service behind the client, to compose further with tower.
    pub fn service(&self) -> MessagesService<HttpStack> {
        self.parts.service.clone()
    }

    /// Concurrency permits free now (all clones share them).
    pub fn available_permits(&self) -> usize {
        self.parts.limit.available_permits()
    }

    /// The pacer (shared by all clones), for [`Pacer::snapshot`]; `None` when pacing is off.
    pub fn pacer(&self) -> Option<&Pacer> {
        self.parts.pacer.as_ref()
    }

    /// The circuit breakers (shared by all clones), for [`CircuitBreakers::snapshot`]; `None`
    /// when circuit breaking is off.
    pub fn circuit_breakers(&self) -> Option<&CircuitBreakers> {
        self.parts.breakers.as_ref()
    }
}

/// The Messages API of a [`Client`].
#[derive(Debug, Clone, Copy)]
pub struct Messages<'a> {
    client: &'a Client,
}

impl Messages<'_> {
    /// `POST /v1/messages`: a whole `Message`, or a typed error.
    ///
    /// The future does not borrow the client.
    pub fn create(
        &self,
        req: CreateMessageRequest,
    ) -> impl Future<Output = Result<ApiResponse<Message>, Error>> + Send + 'static + use<> {
        let parts = &self.client.parts;
        match &parts.degrade {
            Some(d) => Either::Left(d.clone().oneshot(req)),
            None => Either::Right(parts.service.create(req)),
        }
    }

    /// `POST /v1/messages` with `stream: true`: typed events as they arrive. Errors before
    /// the stream starts are returned here (after retries); a stream that fails before its
    /// first content is re-sent transparently; see [`crate::stream`].
    ///
    /// The future does not borrow the client.
    pub fn stream(
        &self,
        req: CreateMessageRequest,
    ) -> impl Future<Output = Result<MessageStream, Error>> + Send + 'static + use<> {
        self.client.parts.service.stream(req)
    }

    /// `POST /v1/messages/count_tokens`.
    pub async fn count_tokens(
        &self,
        req: impl Into<CountTokensRequest>,
    ) -> Result<ApiResponse<TokenCount>, Error> {
        self.client.parts.service.count_tokens(req).await
    }
}

/// Why a client could not be built.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// No API key was given (nor `ANTHROPIC_API_KEY` set).
    #[error("no API key: set ANTHROPIC_API_KEY or call ClientBuilder::api_key")]
    MissingApiKey,
    /// The key is empty or not a valid header value.
    #[error("the API key is empty or contains characters not allowed in a header")]
    InvalidApiKey,
    /// The base URL cannot be used.
    #[error(transparent)]
    InvalidBaseUrl(#[from] InvalidBaseUrl),
    /// An extra root certificate cannot be used.
    #[error(transparent)]
    InvalidRootCertificate(#[from] InvalidRootCertificate),
    /// A header name or value is invalid.
    #[error("invalid header {0:?}")]
    InvalidHeader(String),
    /// `http2_connections` is 0 or more than [`MAX_HTTP2_CONNECTIONS`](crate::transport::MAX_HTTP2_CONNECTIONS).
    #[error("http2_connections must be from 1 to {max}, not {0}", max = crate::transport::MAX_HTTP2_CONNECTIONS)]
    InvalidHttp2Connections(usize),
}

/// A switch of [`ClientBuilder`] that is on unless turned off.
#[derive(Clone, Copy, Debug)]
struct OnByDefault(bool);

impl Default for OnByDefault {
    fn default() -> Self {
        Self(true)
    }
}

/// Builds a [`Client`].
///
/// | setting | default |
/// |---|---|
/// | `base_url` | `https://api.anthropic.com` |
/// | `anthropic_version` | `2023-06-01` |
/// | `connect_timeout` | 5 s |
/// | `pool_idle_timeout` | 90 s |
/// | `http2_prior_knowledge` | off: HTTP/1.1 over plain HTTP, HTTP/2 or HTTP/1.1 by ALPN over TLS |
/// | `http2_connections` | 1 per host |
/// | `timeout` (per attempt) | 600 s; while not set explicitly, non-streaming calls whose `max_tokens` would need over 10 minutes are refused (stream them) |
/// | `deadline` (whole call) | none |
/// | `stream_idle_timeout` | 120 s |
/// | `concurrency_limit` | none; with `load_shed`, fail fast when full |
/// | `max_retries` | 2 |
/// | `pacing` | on: attempts paced to the quota learned from the rate-limit headers ([`crate::pacing`]) |
/// | retry policy | [`RetryPolicy::default`]: backoff 0.5 s doubling to 8 s, jitter 25%, waits over 60 s returned, budget 20% |
/// | `circuit_breakers` | off; per-model circuits between retry and pacing ([`crate::breaker`]) |
/// | `fallback_models` | none; a chain of models tried when one is down ([`crate::fallback`]) |
/// | `degrade` | none; a stand-in answer for chosen errors of `create` ([`crate::degrade`]) |
/// | `max_error_body` | 64 KiB |
/// | `max_response_body` | 64 MiB |
#[derive(Clone, Default)]
pub struct ClientBuilder {
    api_key: Option<String>,
    base_url: Option<String>,
    version: Option<String>,
    headers: Vec<(String, String)>,
    transport: TransportConfig,
    max_error_body: Option<usize>,
    max_response_body: Option<usize>,
    retry: RetryPolicy,
    timeout: Option<Duration>,
    deadline: Option<Duration>,
    stream_idle_timeout: Option<Duration>,
    concurrency_limit: Option<usize>,
    load_shed: bool,
    stream_retry: OnByDefault,
    pacing_on: OnByDefault,
    pacer: Option<Pacer>,
    breakers: Option<CircuitBreakers>,
    fallback: Option<FallbackLayer>,
    degrade: Option<Degrader>,
    #[cfg(feature = "redis")]
    shared_pacer: Option<crate::shared::SharedPacer>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field(
                "base_url",
                &self
                    .base_url
                    .as_deref()
                    .map(crate::transport::redact_userinfo),
            )
            .field("version", &self.version)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("transport", &self.transport)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("deadline", &self.deadline)
            .field("stream_idle_timeout", &self.stream_idle_timeout)
            .field("concurrency_limit", &self.concurrency_limit)
            .field("load_shed", &self.load_shed)
            .field("circuit_breakers", &self.breakers)
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

impl ClientBuilder {
    /// A builder with the key from `ANTHROPIC_API_KEY` and, if set, the base URL from
    /// `ANTHROPIC_BASE_URL`, to tune further before [`build`](Self::build).
    pub fn from_env() -> Result<ClientBuilder, ConfigError> {
        let key = std::env::var("ANTHROPIC_API_KEY").map_err(|_| ConfigError::MissingApiKey)?;
        let mut b = Client::builder().api_key(key);
        if let Ok(url) = std::env::var("ANTHROPIC_BASE_URL") {
            if !url.trim().is_empty() {
                b = b.base_url(url);
            }
        }
        Ok(b)
    }

    /// A preset for calls made while someone waits (a web request handler): each call has a
    /// deadline of `deadline` covering its retries and waits (a call the quota cannot take in
    /// time fails at once with [`Error::Paced`] and a `retry_after()`, instead of holding the
    /// caller), each attempt at most `deadline` too, and server-directed waits past it are
    /// returned rather than slept. The defaults are tuned for batch work, where waiting is
    /// cheap; this is the other end.
    ///
    /// ```
    /// # fn f() -> Result<(), tower_anthropic::ConfigError> {
    /// use std::time::Duration;
    /// use tower_anthropic::ClientBuilder;
    /// let client = ClientBuilder::default()
    ///     .api_key("sk-ant-...")
    ///     .for_request_handlers(Duration::from_secs(20))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn for_request_handlers(mut self, deadline: Duration) -> Self {
        let deadline = deadline.max(Duration::from_millis(100));
        self.deadline = Some(deadline);
        self.timeout = Some(deadline);
        self.retry = self.retry.max_retry_after(deadline);
        self
    }

    /// The API key (required).
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(key.into());
        self
    }
    /// The base URL; `http://` works for a local server, and a path prefix is kept.
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }
    /// The `anthropic-version` header.
    pub fn anthropic_version(mut self, version: impl Into<String>) -> Self {
        self.version = Some(version.into());
        self
    }
    /// A header sent with every request (e.g. `anthropic-beta`).
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
    /// How long connecting may take.
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.transport.connect_timeout = d;
        self
    }
    /// How long idle pooled connections are kept.
    pub fn pool_idle_timeout(mut self, d: Duration) -> Self {
        self.transport.pool_idle_timeout = d;
        self
    }
    /// Trusts this root certificate (DER-encoded X.509) besides the webpki roots: a
    /// corporate proxy's, or a test server's. Repeatable.
    pub fn add_root_certificate(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.transport.extra_roots.push(der.into());
        self
    }
    /// Idle pooled connections kept per host.
    pub fn pool_max_idle_per_host(mut self, n: usize) -> Self {
        self.transport.pool_max_idle_per_host = n;
        self
    }
    /// Speaks HTTP/2 from the first byte: over plain HTTP (h2c, e.g. to a gateway on the same
    /// host that speaks it), and over TLS with `h2` the only protocol offered. Without it,
    /// plain HTTP is HTTP/1.1 and TLS settles HTTP/2 or HTTP/1.1 by ALPN. A server that
    /// speaks only HTTP/1.1 fails every call with a connection error.
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.transport.http2_prior_knowledge = true;
        self
    }
    /// Spreads calls over `n` HTTP/2 connections per host, in turn (default 1; at most
    /// [`MAX_HTTP2_CONNECTIONS`](crate::transport::MAX_HTTP2_CONNECTIONS), else
    /// [`build`](Self::build) fails with [`ConfigError::InvalidHttp2Connections`]).
    ///
    /// Over HTTP/2 every call to a host shares one connection, and the server caps the
    /// streams open at once on it (its `SETTINGS_MAX_CONCURRENT_STREAMS`, often 100 to 256):
    /// calls beyond the cap wait for a stream to end, however many are started. A gateway that
    /// holds thousands of streams open needs about `streams / cap` connections. Each
    /// connection has its own idle pool; over HTTP/1.1 (no ALPN `h2`) this only splits the
    /// pool.
    ///
    /// ```
    /// # fn f() -> Result<(), tower_anthropic::ConfigError> {
    /// // 10,000 streams at once to a server that allows 200 per connection.
    /// let client = tower_anthropic::Client::builder()
    ///     .api_key("sk-ant-...")
    ///     .http2_connections(50)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn http2_connections(mut self, n: usize) -> Self {
        self.transport.http2_connections = n;
        self
    }
    /// How much of an error body is read.
    pub fn max_error_body(mut self, bytes: usize) -> Self {
        self.max_error_body = Some(bytes);
        self
    }
    /// How much of a successful body is read.
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.max_response_body = Some(bytes);
        self
    }
    /// At most `n` retries per call (default 2, as the SDKs).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.retry = self.retry.max_retries(n);
        self
    }
    /// The whole retry policy (backoff, cap on server-directed waits, budget, jitter source).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }
    /// The retry budget shared by all clones of the client; `None` turns it off.
    pub fn retry_budget(mut self, budget: Option<RetryBudget>) -> Self {
        self.retry = self.retry.budget(budget);
        self
    }
    /// The timeout of one attempt (default 600 s). Setting it also lifts the long-request
    /// guard, as in the SDKs.
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = Some(d);
        self
    }
    /// A deadline for each whole call, waits between attempts included.
    pub fn deadline(mut self, d: Duration) -> Self {
        self.deadline = Some(d);
        self
    }
    /// The longest gap allowed between chunks of a stream (default 120 s); also the longest
    /// a stream may take to its first content (pings do not count as progress).
    pub fn stream_idle_timeout(mut self, d: Duration) -> Self {
        self.stream_idle_timeout = Some(d);
        self
    }
    /// At most `n` calls in flight at once across all clones; a stream counts until it ends.
    pub fn concurrency_limit(mut self, n: usize) -> Self {
        self.concurrency_limit = Some(n);
        self
    }
    /// With a concurrency limit: fail fast with [`Error::LimitReached`] when it is full,
    /// instead of waiting in line.
    pub fn load_shed(mut self, on: bool) -> Self {
        self.load_shed = on;
        self
    }

    /// Whether attempts are paced to the quota the API's rate-limit headers describe (default:
    /// yes; it acts only under pressure). See [`crate::pacing`].
    pub fn pacing(mut self, on: bool) -> Self {
        self.pacing_on = OnByDefault(on);
        self
    }

    /// The pacer to use (to configure it, or to share one quota's state with other clients).
    pub fn pacer(mut self, pacer: Pacer) -> Self {
        self.pacer = Some(pacer);
        self.pacing_on = OnByDefault(true);
        self
    }

    /// Paces through a quota shared with other processes in Redis instead of this process's
    /// own pacer (feature `redis`); see [`SharedPacer`](crate::shared::SharedPacer).
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub fn shared_pacer(mut self, pacer: crate::shared::SharedPacer) -> Self {
        self.shared_pacer = Some(pacer);
        self.pacing_on = OnByDefault(true);
        self
    }

    /// Limits to pace by before the first answer teaches the real ones (no probing at start).
    pub fn rate_limits(mut self, limits: QuotaLimits) -> Self {
        self.pacer = Some(self.pacer.unwrap_or_default().limits(limits));
        self
    }

    /// Guards each model with a circuit breaker: while a model keeps failing, its calls fail
    /// fast with [`Error::CircuitOpen`] (or move down the fallback chain) instead of adding
    /// load. Pass the same [`CircuitBreakers`] to several clients to share circuits. See
    /// [`crate::breaker`].
    pub fn circuit_breakers(mut self, breakers: CircuitBreakers) -> Self {
        self.breakers = Some(breakers);
        self
    }

    /// When a call to the requested model ends (after its retries) in a 529, a 5xx, a
    /// connection error, an attempt timeout or an open circuit, re-issue it to these models in
    /// turn. Without [`circuit_breakers`](Self::circuit_breakers) set, this turns on per-model
    /// breakers with the default settings, so a model that is down is skipped at once. See
    /// [`crate::fallback`].
    pub fn fallback_models<I, M>(mut self, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        self.fallback = Some(
            self.fallback
                .take()
                .unwrap_or_default()
                .with_default(models),
        );
        self
    }

    /// A fallback chain of `model`'s own: calls that request `model` try these in turn
    /// instead of the chain of [`fallback_models`](Self::fallback_models) (see
    /// [`FallbackLayer::for_model`]). Turns on per-model breakers as `fallback_models` does.
    pub fn fallback_chain<I, M>(mut self, model: impl AsRef<str>, models: I) -> Self
    where
        I: IntoIterator<Item = M>,
        M: AsRef<str>,
    {
        self.fallback = Some(
            self.fallback
                .take()
                .unwrap_or_default()
                .for_model(model, models),
        );
        self
    }

    /// A stand-in answer for `create` calls that fail: `f` gets the request and the error and
    /// returns `Some(message)` (a cached or canned answer, marked
    /// [`ApiResponse::is_degraded`]) or `None` to return the error. Only errors that are not
    /// the caller's own are offered (see [`degrade_when`](Self::degrade_when)). See
    /// [`crate::degrade`].
    pub fn degrade<F>(mut self, f: F) -> Self
    where
        F: Fn(&CreateMessageRequest, &Error) -> Option<Message> + Send + Sync + 'static,
    {
        let when = match self.degrade.take() {
            Some(d) => d.when,
            None => Arc::new(|e: &Error| !e.is_caller_error()),
        };
        self.degrade = Some(Degrader {
            f: Arc::new(f),
            when,
        });
        self
    }

    /// Which errors [`degrade`](Self::degrade) is offered (default: those for which
    /// [`Error::is_caller_error`] is false). Has no effect before `degrade`.
    pub fn degrade_when(mut self, pred: impl Fn(&Error) -> bool + Send + Sync + 'static) -> Self {
        if let Some(d) = &mut self.degrade {
            d.when = Arc::new(pred);
        }
        self
    }

    /// Whether a stream that fails before its first content is re-sent (default: yes).
    pub fn retry_streams_before_content(mut self, on: bool) -> Self {
        self.stream_retry = OnByDefault(on);
        self
    }

    pub(crate) fn endpoint(&self) -> Result<Endpoint, ConfigError> {
        let key = self.api_key.as_deref().ok_or(ConfigError::MissingApiKey)?;
        let key = ApiKey::new(key).ok_or(ConfigError::InvalidApiKey)?;
        let base = self.base_url.as_deref().unwrap_or(DEFAULT_BASE_URL);
        let mut endpoint = Endpoint::new(base, key)?;
        // The retry count of a first attempt, sent by every call: set here once, so the retry
        // layer finds it in place rather than adding it to each request.
        if let Some(count) = &self.retry.cfg.header {
            endpoint.set_header(count.clone(), HeaderValue::from_static("0"));
        }
        let version = self.version.as_deref().unwrap_or(DEFAULT_API_VERSION);
        let headers = std::iter::once(("anthropic-version", version))
            .chain(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        for (k, v) in headers {
            let bad = || ConfigError::InvalidHeader(k.to_owned());
            let name = HeaderName::try_from(k).map_err(|_| bad())?;
            let value = HeaderValue::try_from(v).map_err(|_| bad())?;
            endpoint.set_header(name, value);
        }
        Ok(endpoint)
    }

    /// Builds the client; fails on a missing or empty key or an unusable base URL.
    pub fn build(self) -> Result<Client, ConfigError> {
        let endpoint = self.endpoint()?;
        let n = self.transport.http2_connections;
        if !(1..=crate::transport::MAX_HTTP2_CONNECTIONS).contains(&n) {
            return Err(ConfigError::InvalidHttp2Connections(n));
        }
        let http = http_client(&self.transport)?;
        let max_body = self.max_response_body.unwrap_or(DEFAULT_MAX_RESPONSE_BODY);
        let limit = match self.concurrency_limit {
            Some(n) => ConcurrencyLimitLayer::new(n),
            None => ConcurrencyLimitLayer::unlimited(),
        }
        .load_shed(self.load_shed);
        let breakers = self
            .breakers
            .clone()
            .or_else(|| self.fallback.as_ref().map(|_| CircuitBreakers::default()));
        #[cfg(feature = "redis")]
        let shared = self
            .shared_pacer
            .clone()
            .filter(|_| self.pacing_on.0)
            .map(|mut p| {
                // The client's breakers and retry budget are shared through the same Redis.
                if let Some(b) = &breakers {
                    p = p.share_breakers(b.clone());
                }
                if let Some(b) = &self.retry.cfg.budget {
                    p = p.share_retry_budget(b.clone());
                }
                p.layer()
            });
        #[cfg(not(feature = "redis"))]
        let shared: Option<tower::layer::util::Identity> = None;
        let pacer =
            (self.pacing_on.0 && shared.is_none()).then(|| self.pacer.clone().unwrap_or_default());
        let stack = ServiceBuilder::new()
            .option_layer(self.deadline.map(OverallDeadlineLayer::new))
            .option_layer(self.fallback.clone())
            .layer(RetryLayer::new(self.retry.clone()))
            .option_layer(breakers.clone().map(CircuitBreakerLayer::new))
            .option_layer(pacer.clone().map(PacingLayer::new))
            .option_layer(shared)
            .map_response(|r: Response<_>| r.map(BodyExt::boxed_unsync))
            .layer(
                AttemptTimeoutLayer::new(self.timeout.unwrap_or(DEFAULT_ATTEMPT_TIMEOUT))
                    .max_body(max_body),
            )
            .layer(StreamIdleTimeoutLayer::new(
                self.stream_idle_timeout
                    .unwrap_or(DEFAULT_STREAM_IDLE_TIMEOUT),
            ))
            .layer(limit.clone())
            .layer(
                ClassifyLayer::new()
                    .max_error_body(self.max_error_body.unwrap_or(DEFAULT_MAX_ERROR_BODY)),
            )
            // Credentials are marked sensitive by the endpoint (the key, and `authorization` or
            // `proxy-authorization` set as default headers), for anything that logs below.
            .service(http);
        let service = MessagesService::new(BoxCloneSyncService::new(stack), endpoint)
            .max_response_body(max_body)
            .long_request_guard(self.timeout.is_none())
            .resend_streams_before_content(self.stream_retry.0)
            .first_content_timeout(Some(
                self.stream_idle_timeout
                    .unwrap_or(DEFAULT_STREAM_IDLE_TIMEOUT),
            ));
        let degrade = self.degrade.as_ref().map(|d| d.layer(service.clone()));
        Ok(Client {
            parts: Arc::new(ClientParts {
                service,
                limit,
                pacer,
                breakers,
                degrade,
            }),
        })
    }
}
