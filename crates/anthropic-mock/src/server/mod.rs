//! The HTTP server: accept loop, shared state and the [`MockServer`] handle.
//!
//! The rest lives beside it: `conn` (connections and resets), `routes` (paths, the control
//! endpoints, logging), `faults` (scripts, outages, random faults, each decided as an
//! [`Outcome`](faults::Outcome) value), `api` (the API's own behaviour) and `responses`
//! (response builders).

mod api;
mod batches;
mod conn;
mod faults;
mod models;

mod responses;
mod routes;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::{MockConfig, OutageKind};
use crate::ratelimit::RateLimiter;
use crate::rng::{self, SplitMix64};
use crate::script::ScriptEntry;
use crate::stats::{Counters, LogEntry, Stats, lock};

/// Scripted entries queued at most, over all keys (a client's mistake must not grow the mock
/// without bound).
pub const MAX_SCRIPTED: usize = 100_000;

/// How long a connection may take to send a request's headers, and stay idle between
/// requests, before the mock closes it.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// `now + d`, saturating at about a century (a huge duration means "forever", not a panic).
pub(crate) fn far(d: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(d.min(Duration::from_secs(100 * 365 * 86_400)))
        .unwrap_or(now + Duration::from_secs(365 * 86_400))
}

/// A running mock server. Dropping the handle shuts the server down and closes its
/// connections.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
///
/// let server = MockServer::start(MockConfig::default()).await?;
/// // Requests carrying `x-mock-key: demo` get a 529, then normal answers.
/// server.script("demo", [ScriptEntry::status(529)]);
/// println!("{}", server.url());
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<State>,
    shutdown: watch::Sender<bool>,
}

#[derive(Debug)]
struct State {
    config: MockConfig,
    start: Instant,
    counters: Arc<Counters>,
    limiter: Mutex<RateLimiter>,
    scripts: Mutex<HashMap<String, VecDeque<ScriptEntry>>>,
    rng: Mutex<SplitMix64>,
    ids: AtomicU64,
    batches: Mutex<batches::Batches>,
    /// Outages started through the API or `/_mock/outage`: (model or all, until, kind).
    manual_outages: Mutex<Vec<ManualOutage>>,
    tls: Option<Acceptor>,
}

/// An outage started at run time.
#[derive(Debug)]
struct ManualOutage {
    model: Option<String>,
    until: Instant,
    kind: OutageKind,
}

/// Most outages started at run time that are kept at once (one per model, and one for all).
const MAX_MANUAL_OUTAGES: usize = 1024;

/// The TLS acceptor (a newtype: tokio-rustls's has no `Debug`).
#[derive(Clone)]
struct Acceptor(tokio_rustls::TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptor")
    }
}

impl MockServer {
    /// Binds `config.addr` and starts serving HTTP/1.1 and HTTP/2 (h2c) on the current tokio
    /// runtime.
    pub async fn start(config: MockConfig) -> io::Result<MockServer> {
        let total = config.faults.total();
        if !(0.0..=1.0).contains(&total) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("fault probabilities add up to {total}, more than 1"),
            ));
        }
        let tls = match &config.tls {
            Some(id) => Some(Acceptor(id.acceptor().map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("TLS identity: {e}"))
            })?)),
            None => None,
        };
        let listener = TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            start: Instant::now(),
            counters: Arc::new(Counters::new(config.log_capacity)),
            limiter: Mutex::new(RateLimiter::new(config.limits)),
            scripts: Mutex::new(HashMap::new()),
            rng: Mutex::new(SplitMix64::new(config.faults.seed)),
            ids: AtomicU64::new(config.faults.seed.wrapping_mul(1_000_003)),
            manual_outages: Mutex::new(Vec::new()),
            batches: Mutex::default(),
            tls,
            config,
        });
        let (shutdown, rx) = watch::channel(false);
        tokio::spawn(accept_loop(listener, state.clone(), rx));
        Ok(MockServer {
            addr,
            state,
            shutdown,
        })
    }

    /// The base URL, e.g. `http://127.0.0.1:41234` (`https://` when serving TLS).
    pub fn url(&self) -> String {
        let scheme = if self.state.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The counters, as `GET /_mock/stats` returns them.
    pub fn stats(&self) -> Stats {
        self.state.counters.snapshot()
    }

    /// The recent requests, oldest first, as `GET /_mock/log` returns them.
    pub fn log(&self) -> Vec<LogEntry> {
        self.state.counters.recent()
    }

    /// Queues `responses` for requests carrying `x-mock-key: key`, after any already queued;
    /// at most [`MAX_SCRIPTED`] entries are kept over all keys (the rest is dropped).
    pub fn script(&self, key: &str, responses: impl IntoIterator<Item = ScriptEntry>) {
        // Past MAX_SCRIPTED entries in all, the rest is dropped.
        self.state.script(key, responses);
    }

    /// Starts an outage now, lasting `duration`: every API request gets `kind`.
    pub fn outage_for(&self, duration: Duration, kind: OutageKind) {
        self.state.start_outage(None, duration, kind);
    }

    /// Starts an outage of one model now, lasting `duration`: requests for `model` get `kind`,
    /// requests for other models are answered as usual.
    pub fn model_outage_for(&self, model: &str, duration: Duration, kind: OutageKind) {
        self.state.start_outage(Some(model), duration, kind);
    }

    /// Clears counters, log, scripts, rate-limit buckets and any manual outage, and reseeds the
    /// random source, as `POST /_mock/reset` does.
    pub fn reset(&self) {
        self.state.reset();
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
    }
}

impl State {
    /// Queues `responses` for `key`, up to `MAX_SCRIPTED` entries in all (what does not fit
    /// is dropped; the return says how many were queued).
    fn script(&self, key: &str, responses: impl IntoIterator<Item = ScriptEntry>) -> usize {
        let mut scripts = lock(&self.scripts);
        let queued: usize = scripts.values().map(VecDeque::len).sum();
        let room = MAX_SCRIPTED.saturating_sub(queued);
        if room == 0 {
            return 0;
        }
        let q = scripts.entry(key.to_owned()).or_default();
        let before = q.len();
        q.extend(responses.into_iter().take(room));
        q.len() - before
    }

    fn reset(&self) {
        self.counters.reset();
        lock(&self.scripts).clear();
        lock(&self.limiter).reset();
        *lock(&self.rng) = SplitMix64::new(self.config.faults.seed);
        lock(&self.manual_outages).clear();
    }

    /// Starts (or replaces) the manual outage of `model` (or of every model).
    fn start_outage(&self, model: Option<&str>, duration: Duration, kind: OutageKind) {
        let mut all = lock(&self.manual_outages);
        let now = Instant::now();
        all.retain(|o| o.until > now && o.model.as_deref() != model);
        if all.len() >= MAX_MANUAL_OUTAGES {
            return;
        }
        all.push(ManualOutage {
            model: model.map(str::to_owned),
            until: far(duration),
            kind,
        });
    }

    fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The outage in force for requests for `model` (`None`: outages of every model only).
    fn outage(&self, model: Option<&str>) -> Option<OutageKind> {
        let now = Instant::now();
        let manual = lock(&self.manual_outages)
            .iter()
            .find(|o| now < o.until && o.model.as_deref() == model)
            .map(|o| o.kind);
        if manual.is_some() {
            return manual;
        }
        let elapsed = self.start.elapsed();
        self.config
            .outages
            .iter()
            .find(|o| o.model.as_deref() == model && o.is_active(elapsed))
            .map(|o| o.kind)
    }

    fn next_id(&self, prefix: &str) -> String {
        rng::id(prefix, self.ids.fetch_add(1, Ordering::Relaxed))
    }
}

async fn accept_loop(
    listener: TcpListener,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(conn::serve_connection(stream, state.clone(), shutdown.clone()));
                }
                // Out of file descriptors or a connection gone before accept: back off a little.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            },
            _ = shutdown.changed() => return,
        }
    }
}
