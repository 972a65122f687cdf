//! `anthropic-gateway`: one resilient front door to the Anthropic Messages API for every
//! service of an organisation, in any language.
//!
//! Callers point their SDK's base URL at the gateway and present a virtual key of their own;
//! the gateway calls the API with the organisation's key through
//! [`tower_anthropic`]'s stack: pacing to the quota the `anthropic-ratelimit-*` headers teach
//! (shared by every replica through Redis), retries with a budget, per-model circuit breakers
//! and fallback chains, timeouts. What it adds in front:
//!
//! - **virtual keys** ([`keys`]): stored hashed (in the file or in Redis), each with a name,
//!   the models it may use, its own requests and tokens per minute and a spend budget;
//!   refusals in the API's own shape (401, 403, 429 with `retry-after`), nothing forwarded
//!   for them;
//! - **spikes wait instead of failing** ([`app`]): a request that meets a full quota waits in
//!   a bounded queue up to its deadline; past the bound or the deadline, a 429 with an honest
//!   `retry-after`;
//! - **operations** ([`telemetry`], [`server`]): Prometheus `/metrics`, a JSON access log
//!   line per request, `/healthz` and `/readyz`, a graceful end on SIGTERM, keys and limits
//!   reloaded on SIGHUP;
//! - **hostile callers get nothing**: keys checked before a body is read, bodies bounded,
//!   slow callers cut off, connections bounded, the upstream stream dropped when a caller
//!   hangs up; neither the upstream key nor a virtual key is ever logged, labelled or
//!   returned.
//!
//! The configuration is one TOML file ([`config`]); `anthropic-gateway --check FILE`
//! validates one. Routes: `POST /v1/messages` (JSON and server-sent events),
//! `POST /v1/messages/count_tokens`, `GET /v1/models[/{id}]`, the Message Batches routes.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use anthropic_gateway::{Gateway, config::Config};
//! let config = Config::load("gateway.toml".as_ref(), std::env::vars())?;
//! let gateway = anthropic_gateway::start(&config, |v| std::env::var(v).ok()).await?;
//! let listener = tokio::net::TcpListener::bind(config.listen).await?;
//! anthropic_gateway::server::serve(
//!     listener,
//!     gateway.gateway.router(),
//!     anthropic_gateway::serve_options(&config)?,
//!     async { let _ = tokio::signal::ctrl_c().await; },
//! )
//! .await;
//! # let _: Option<Gateway> = None;
//! # Ok(()) }
//! ```

pub mod app;
pub mod config;
pub mod keys;
pub mod server;
pub mod telemetry;

use std::time::Duration;

pub use app::Gateway;
use redis::aio::ConnectionManager;
use tower_anthropic::Client;
use tower_anthropic::breaker::{CircuitBreakerConfig, CircuitBreakers};
use tower_anthropic::pacing::{Pacer, QuotaLimits};
use tower_anthropic::retry::RetryPolicy;
use tower_anthropic::shared::SharedPacer;

use crate::config::{Config, Store, redact_url_userinfo};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The client could not be built.
    #[error("the upstream client: {0}")]
    Client(#[from] tower_anthropic::ConfigError),
    /// Redis could not be reached.
    #[error("cannot reach Redis at {url}: {message}")]
    Redis {
        /// The URL, without its password.
        url: String,
        /// Why.
        message: String,
    },
    /// TLS could not be set up.
    #[error("{0}")]
    Tls(String),
    /// The embedded mock could not start.
    #[error("the embedded mock: {0}")]
    Mock(std::io::Error),
}

/// A started gateway: its routes' state, and the embedded mock when it serves from one.
#[derive(Debug)]
pub struct Started {
    /// The gateway.
    pub gateway: Gateway,
    /// The embedded mock (`upstream.mock = true`), kept alive with the gateway.
    pub mock: Option<anthropic_mock::MockServer>,
}

/// Connects to Redis (2 s at most).
pub async fn connect_redis(url: &str) -> Result<ConnectionManager, StartError> {
    let err = |message: String| StartError::Redis {
        url: redact_url_userinfo(url),
        message,
    };
    let client = redis::Client::open(url).map_err(|e| err(e.to_string()))?;
    match tokio::time::timeout(Duration::from_secs(2), client.get_connection_manager()).await {
        Ok(Ok(con)) => Ok(con),
        Ok(Err(e)) => Err(err(e.to_string())),
        Err(_) => Err(err("timed out".to_owned())),
    }
}

/// The client that calls the API, as `config` says, with `key` (`None`: the embedded mock
/// at `mock_url`).
pub fn client(
    config: &Config,
    key: Option<&str>,
    mock_url: Option<&str>,
) -> Result<Client, StartError> {
    let up = &config.upstream;
    let mut builder = Client::builder()
        .api_key(key.unwrap_or("sk-ant-embedded-mock"))
        .for_request_handlers(up.deadline_secs.duration())
        // A 429 or 529 that names a wait past what a request may wait for the quota is
        // answered at once (with its retry-after), as a full quota is.
        .retry_policy(
            RetryPolicy::default().max_retry_after(config.pacing.max_wait_secs.duration()),
        )
        .max_retries(up.max_retries)
        .concurrency_limit(up.concurrency.get() as usize)
        .stream_idle_timeout(up.stream_idle_secs.duration());
    let base = mock_url.map(str::to_owned).or_else(|| up.base_url.clone());
    if let Some(url) = base {
        builder = builder.base_url(url);
    }
    for (name, value) in &up.headers {
        builder = builder.default_header(name, value);
    }
    let breakers = (config.breaker.enabled || !config.fallbacks.is_empty()).then(|| {
        CircuitBreakers::new(
            CircuitBreakerConfig::new()
                .failure_rate_threshold(config.breaker.failure_rate.0)
                .minimum_calls(config.breaker.minimum_calls.get())
                .open_for(config.breaker.open_secs.duration()),
        )
    });
    if let Some(b) = &breakers {
        builder = builder.circuit_breakers(b.clone());
    }
    for (model, chain) in &config.fallbacks {
        builder = builder.fallback_chain(model, chain.iter().map(|m| m.0.as_str()));
    }
    let mut pacer = Pacer::new().max_wait(config.pacing.max_wait_secs.duration());
    if let Some(rpm) = config.pacing.requests_per_minute {
        pacer = pacer.limits(QuotaLimits {
            requests_per_minute: rpm.get(),
            input_tokens_per_minute: 0,
            output_tokens_per_minute: 0,
        });
    }
    builder = match (config.pacing.store, &config.pacing.redis_url) {
        (Store::Redis, Some(url)) => {
            let mut shared = SharedPacer::redis(url)
                .map_err(|e| StartError::Redis {
                    url: redact_url_userinfo(url),
                    message: e.to_string(),
                })?
                .prefix(config.pacing.prefix.clone())
                .local(pacer);
            if let Some(b) = breakers {
                shared = shared.share_breakers(b);
            }
            builder.shared_pacer(shared)
        }
        _ => builder.pacer(pacer),
    };
    Ok(builder.build()?)
}

/// Builds the gateway `config` describes (`env` looks up the upstream key's variable):
/// connects to Redis when it is used, starts the embedded mock when asked.
pub async fn start(
    config: &Config,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Started, StartError> {
    let key = config.upstream_key(env)?;
    let mock = if config.upstream.mock {
        let m = anthropic_mock::MockServer::start(Default::default())
            .await
            .map_err(StartError::Mock)?;
        Some(m)
    } else {
        None
    };
    let client = client(
        config,
        key.as_deref(),
        mock.as_ref().map(|m| m.url()).as_deref(),
    )?;
    let redis = match &config.pacing.redis_url {
        Some(url) if config.pacing.store == Store::Redis || config.keys.redis => {
            Some(connect_redis(url).await?)
        }
        _ => None,
    };
    let metrics = if config.telemetry.metrics {
        Some(prometheus())
    } else {
        None
    };
    let gateway = Gateway::new(client, config, redis, metrics);
    Ok(Started { gateway, mock })
}

/// The process's Prometheus recorder (installed once; later calls share it).
pub fn prometheus() -> metrics_exporter_prometheus::PrometheusHandle {
    use std::sync::OnceLock;
    static HANDLE: OnceLock<metrics_exporter_prometheus::PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = metrics_exporter_prometheus::PrometheusBuilder::new()
                .set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Suffix("_seconds".to_owned()),
                    &[
                        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                        120.0, 300.0,
                    ],
                )
                .expect("buckets are not empty");
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Another recorder already installed (an embedding application's) keeps its
            // place; this handle then renders only what reaches it.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

/// The listener's options from `config` (loads the TLS files).
pub fn serve_options(config: &Config) -> Result<server::ServeOptions, StartError> {
    let tls = match &config.tls {
        Some(t) => Some(server::tls_acceptor(&t.cert, &t.key).map_err(StartError::Tls)?),
        None => None,
    };
    Ok(server::ServeOptions {
        tls,
        max_connections: config.limits.max_connections.get() as usize,
        header_timeout: config.limits.header_timeout_secs.duration(),
        grace: config.limits.shutdown_grace_secs.duration(),
    })
}
