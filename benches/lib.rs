//! Failure scenarios shared by the `scenarios` bench and the `drive` binary (which the peer
//! runner in `peers/` points at a separate mock process, next to the official Python SDK).
//!
//! Every scenario runs against a mock on loopback with fixed settings and seeds; the numbers
//! that matter (attempts, statuses) are read from the mock's own counters, so the Rust client
//! and any peer are measured the same way.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anthropic_mock::{Latency, MockConfig, RandomFaults, RateLimits, Stats};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;

pub mod canned;
pub mod per_call;
pub mod plot;

/// One scenario: its mock settings (as a config and as `anthropic-mock` flags) and its load.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Short name: `rate_limited`, `overload`, `outage`, `streaming`.
    pub name: &'static str,
    /// What it shows.
    pub title: &'static str,
    /// The mock's settings.
    pub mock: MockConfig,
    /// The same settings as `anthropic-mock` flags.
    pub mock_args: Vec<String>,
    /// The load.
    pub load: Load,
    /// Whether the client keeps its default retry budget (`false`: turned off, to show
    /// what the budget changes).
    pub budget: bool,
    /// Whether the client paces to the quota (its default; `false` to show what pacing
    /// changes).
    pub pacing: bool,
    /// Whether the client has the degradation layers on: per-model circuit breakers and the
    /// fallback chain [`PRIMARY`] -> [`FALLBACK`] (scenario h).
    pub degradation: bool,
    /// What each request asks.
    pub shape: Shape,
}

/// The requests of a scenario.
#[derive(Debug, Clone, Copy)]
pub enum Shape {
    /// A short prompt, `max_tokens` 64.
    Small,
    /// Prompts of mixed sizes, from 100 to 20,000 input tokens (a fixed cycle), `max_tokens` 64.
    MixedInput,
    /// A short prompt with this `max_tokens` (inflated over the real output).
    MaxTokens(u32),
}

impl Shape {
    /// Request `i` of the scenario.
    pub fn request(self, i: usize) -> CreateMessageRequest {
        match self {
            Shape::Small => request(64),
            Shape::MaxTokens(m) => request(m),
            Shape::MixedInput => {
                // 100 .. 20,000 tokens; the mock counts 4 characters a token.
                const SIZES: [usize; 8] = [100, 20_000, 2_500, 12_000, 600, 17_000, 7_000, 1_200];
                let tokens = SIZES[i % SIZES.len()];
                CreateMessageRequest::new("claude-bench", 64).user("word".repeat(tokens))
            }
        }
    }

    /// Input tokens the mock counts for request `i`.
    pub fn input_tokens(self, i: usize) -> u64 {
        match self {
            Shape::MixedInput => {
                const SIZES: [u64; 8] = [100, 20_000, 2_500, 12_000, 600, 17_000, 7_000, 1_200];
                SIZES[i % SIZES.len()] + 3
            }
            _ => 9,
        }
    }
}

/// How requests are sent.
#[derive(Debug, Clone, Copy)]
pub enum Load {
    /// `n` requests by `concurrency` workers.
    Closed {
        /// Requests in all.
        n: usize,
        /// Workers.
        concurrency: usize,
    },
    /// A request every `1/rate` s for `duration`, whatever came back; an outage of
    /// `outage_len` starts at `outage_at`.
    Open {
        /// Requests per second.
        rate: u32,
        /// How long the traffic lasts.
        duration: Duration,
        /// When the outage starts.
        outage_at: Duration,
        /// How long it lasts.
        outage_len: Duration,
    },
    /// A request every `1/rate` s for `duration` to [`PRIMARY`]; the primary model alone is
    /// down from `outage_at` for `outage_len` (the fallback model answers throughout).
    ModelOutage {
        /// Requests per second.
        rate: u32,
        /// How long the traffic lasts.
        duration: Duration,
        /// When the primary's outage starts.
        outage_at: Duration,
        /// How long it lasts.
        outage_len: Duration,
    },
    /// `n` streams by `concurrency` workers.
    Streams {
        /// Streams in all.
        n: usize,
        /// Workers.
        concurrency: usize,
    },
}

/// The four scenarios, with fixed settings and seeds, and overload and outage again with
/// the retry budget off.
pub fn scenarios() -> Vec<Scenario> {
    let args = |s: &str| s.split_whitespace().map(str::to_owned).collect::<Vec<_>>();
    let mut all = vec![
        Scenario {
            name: "rate_limited",
            title: "a. rate limited: 120 requests/min and 6,000 output tokens/min; 160 requests at concurrency 8",
            mock: MockConfig {
                limits: RateLimits {
                    requests_per_minute: 120,
                    input_tokens_per_minute: 1_000_000,
                    output_tokens_per_minute: 6_000,
                    max_burst_from_idle: None,
                },
                ..Default::default()
            },
            mock_args: args("--rpm 120 --itpm 1000000 --otpm 6000"),
            load: Load::Closed {
                n: 160,
                concurrency: 8,
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::Small,
        },
        Scenario {
            name: "overload",
            title: "b. overload: 20% random 529s (seed 7); 500 requests at concurrency 16",
            mock: MockConfig {
                faults: RandomFaults {
                    p529: 0.2,
                    seed: 7,
                    ..Default::default()
                },
                ..Default::default()
            },
            mock_args: args("--p529 0.2 --seed 7"),
            load: Load::Closed {
                n: 500,
                concurrency: 16,
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::Small,
        },
        Scenario {
            name: "outage",
            title: "c. outage: 50 requests/s for 20 s; every request gets a 529 from 5 s to 15 s",
            mock: MockConfig {
                log_capacity: 100_000,
                ..Default::default()
            },
            mock_args: args("--log-capacity 100000"),
            load: Load::Open {
                rate: 50,
                duration: Duration::from_secs(20),
                outage_at: Duration::from_secs(5),
                outage_len: Duration::from_secs(10),
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::Small,
        },
        Scenario {
            name: "streaming",
            title: "d. streaming: 400 streams of 400 tokens at concurrency 50",
            mock: MockConfig {
                output_tokens: 400,
                latency: Latency::default(),
                ..Default::default()
            },
            mock_args: args("--output-tokens 400"),
            load: Load::Streams {
                n: 400,
                concurrency: 50,
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::MaxTokens(1000),
        },
        Scenario {
            name: "input_bound",
            title: "e. input-token bound: 300,000 input tokens/min; 56 prompts of 100 to 20,000 tokens at concurrency 8",
            mock: MockConfig {
                limits: RateLimits {
                    requests_per_minute: 10_000,
                    input_tokens_per_minute: 300_000,
                    output_tokens_per_minute: 10_000_000,
                    max_burst_from_idle: None,
                },
                ..Default::default()
            },
            mock_args: args("--rpm 10000 --itpm 300000 --otpm 10000000"),
            load: Load::Closed {
                n: 56,
                concurrency: 8,
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::MixedInput,
        },
        Scenario {
            name: "output_bound",
            title: "f. output-token bound: 12,000 output tokens/min; 160 requests of max_tokens 400 for 100 real tokens, concurrency 8",
            mock: MockConfig {
                limits: RateLimits {
                    requests_per_minute: 10_000,
                    input_tokens_per_minute: 10_000_000,
                    output_tokens_per_minute: 12_000,
                    max_burst_from_idle: None,
                },
                output_tokens: 100,
                ..Default::default()
            },
            mock_args: args("--rpm 10000 --itpm 10000000 --otpm 12000 --output-tokens 100"),
            load: Load::Closed {
                n: 160,
                concurrency: 8,
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::MaxTokens(400),
        },
        Scenario {
            name: "burst",
            title: "g. burst: 900 requests/min; 1,000 requests at once at concurrency 256",
            mock: MockConfig {
                limits: RateLimits {
                    requests_per_minute: 900,
                    input_tokens_per_minute: 10_000_000,
                    output_tokens_per_minute: 10_000_000,
                    max_burst_from_idle: None,
                },
                ..Default::default()
            },
            mock_args: args("--rpm 900 --itpm 10000000 --otpm 10000000"),
            load: Load::Closed {
                n: 1000,
                concurrency: 256,
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::Small,
        },
        Scenario {
            name: "burst_600",
            title: "g2. burst on a smaller quota: 600 requests/min; 800 requests at once at concurrency 256",
            mock: MockConfig {
                limits: RateLimits {
                    requests_per_minute: 600,
                    input_tokens_per_minute: 10_000_000,
                    output_tokens_per_minute: 10_000_000,
                    max_burst_from_idle: None,
                },
                ..Default::default()
            },
            mock_args: args("--rpm 600 --itpm 10000000 --otpm 10000000"),
            load: Load::Closed {
                n: 800,
                concurrency: 256,
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::Small,
        },
        Scenario {
            name: "model_outage",
            title: "h. model outage: 50 requests/s for 30 s; the primary model is down from 5 s to 20 s, the fallback model is healthy",
            mock: MockConfig {
                log_capacity: 100_000,
                ..Default::default()
            },
            mock_args: args("--log-capacity 100000"),
            load: Load::ModelOutage {
                rate: 50,
                duration: Duration::from_secs(30),
                outage_at: Duration::from_secs(5),
                outage_len: Duration::from_secs(15),
            },
            budget: true,
            pacing: true,
            degradation: true,
            shape: Shape::Small,
        },
        Scenario {
            name: "throughput",
            title: "i. throughput: no faults, no limits; 5,000 requests at concurrency 64",
            mock: MockConfig::default(),
            mock_args: Vec::new(),
            load: Load::Closed {
                n: 5000,
                concurrency: 64,
            },
            budget: true,
            pacing: true,
            degradation: false,
            shape: Shape::Small,
        },
    ];
    // Scenario h without the degradation layers: the default stack, as the SDKs have it.
    let layers_off = all
        .iter()
        .filter(|s| s.name == "model_outage")
        .map(|s| Scenario {
            name: "model_outage_no_layers",
            degradation: false,
            ..s.clone()
        })
        .collect::<Vec<_>>();
    all.extend(layers_off);
    // The rate-limited scenarios again with pacing off, to show what pacing changes.
    let unpaced: Vec<Scenario> = all
        .iter()
        .filter(|s| {
            matches!(
                s.name,
                "rate_limited" | "input_bound" | "output_bound" | "burst"
            )
        })
        .map(|s| Scenario {
            name: match s.name {
                "rate_limited" => "rate_limited_no_pacing",
                "input_bound" => "input_bound_no_pacing",
                "output_bound" => "output_bound_no_pacing",
                _ => "burst_no_pacing",
            },
            pacing: false,
            ..s.clone()
        })
        .collect();
    // The same overload and outage with the budget off, to show what it changes.
    let without: Vec<Scenario> = all
        .iter()
        .filter(|s| s.name == "overload" || s.name == "outage")
        .map(|s| Scenario {
            name: if s.name == "overload" {
                "overload_no_budget"
            } else {
                "outage_no_budget"
            },
            budget: false,
            ..s.clone()
        })
        .collect();
    all.extend(without);
    all.extend(unpaced);
    all
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests sent by the caller.
    pub requests: usize,
    /// Requests that succeeded in the end.
    pub succeeded: usize,
    /// Requests that failed after all retries.
    pub failed: usize,
    /// Wall time of the whole run.
    pub wall: Duration,
    /// Median latency of a request (retries included).
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// The mock's counters at the end.
    pub mock: Stats,
    /// Outage only: requests started during the outage, and the attempts the mock saw then.
    pub outage_requests: usize,
    /// Outage only: attempts the mock received during the outage window.
    pub outage_attempts: u64,
    /// Outage only: from the end of the outage until every request finishing in a 1 s
    /// window succeeded (scenario h: and was answered by the primary model).
    pub recovery: Option<Duration>,
    /// Scenario h: requests answered by the primary model.
    pub answered_primary: usize,
    /// Scenario h: requests answered by a fallback model.
    pub answered_fallback: usize,
    /// Scenario h: attempts that reached the primary model from 1 s after its outage began
    /// to its end, per request started then.
    pub primary_attempts_per_request: Option<f64>,
    /// Scenario h: when the primary's circuit first opened, after the outage began.
    pub breaker_opened: Option<Duration>,
    /// Scenario h: latency of the requests started during the outage, p50 and p99.
    pub outage_p50: Duration,
    /// See `outage_p50`.
    pub outage_p99: Duration,
    /// Each request: when it started and finished (from the run's start), and whether it
    /// succeeded; for the timeline.
    pub lives: Vec<Life>,
    /// The client's own view, sampled every 250 ms (empty without pacing or breakers).
    pub views: Vec<View>,
    /// Each attempt the mock logged: when it arrived (aligned on the run's start by the
    /// first logged request) and its status (`None` for a reset or stall).
    pub server: Vec<(Duration, Option<u16>)>,
}

/// One request's life, for the timeline.
#[derive(Debug, Clone, Copy)]
pub struct Life {
    /// Started, from the run's start.
    pub started: Duration,
    /// Finished, from the run's start.
    pub finished: Duration,
    /// Whether it succeeded.
    pub ok: bool,
}

/// The client's view at one moment, for the timeline.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// From the run's start.
    pub at: Duration,
    /// Calls waiting in the pacer's line, all quotas.
    pub waiting: usize,
    /// The tightest bucket's `remaining / limit` (0 to 1; below 0 while output is unsettled),
    /// once a limit is known.
    pub headroom: Option<f64>,
    /// Scenario h: whether the primary model's circuit is open (or half-open).
    pub circuit_open: bool,
}

/// Scenario h's primary model.
pub const PRIMARY: &str = "claude-sonnet-4-6";
/// Scenario h's fallback model.
pub const FALLBACK: &str = "claude-haiku-4-5";

/// Scenario h's circuit settings: the defaults (open intervals of 1 s, then 2 s, so that
/// traffic returns within 2 s of the outage's end).
pub fn breaker_config() -> tower_anthropic::breaker::CircuitBreakerConfig {
    tower_anthropic::breaker::CircuitBreakerConfig::default()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A plain HTTP client for the mock's control endpoints.
fn control() -> HyperClient<HttpConnector, Full<Bytes>> {
    HyperClient::builder(TokioExecutor::new()).build_http()
}

async fn control_call(url: &str, method: http::Method, path: &str, body: &str) -> Bytes {
    let req = http::Request::builder()
        .method(method)
        .uri(format!("{url}{path}"))
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a valid control request");
    let resp = control()
        .request(req)
        .await
        .expect("the mock answers its control endpoints");
    resp.into_body()
        .collect()
        .await
        .expect("a whole control body")
        .to_bytes()
}

/// Clears the mock's counters, log, scripts and buckets.
pub async fn reset_mock(url: &str) {
    control_call(url, http::Method::POST, "/_mock/reset", "").await;
}

/// The mock's counters.
pub async fn mock_stats(url: &str) -> Stats {
    let b = control_call(url, http::Method::GET, "/_mock/stats", "").await;
    serde_json::from_slice(&b).expect("stats are JSON")
}

async fn mock_log(url: &str) -> Vec<anthropic_mock::LogEntry> {
    let b = control_call(url, http::Method::GET, "/_mock/log", "").await;
    serde_json::from_slice(&b).expect("the log is JSON")
}

/// The default `Client` at `url` (with its retry budget turned off when `budget` is false,
/// and pacing when `pacing` is false). Waits for the quota may take long in these scenarios:
/// the pacer's `max_wait` is raised so that nothing is refused.
pub fn client(url: &str, budget: bool, pacing: bool) -> Client {
    client_with(url, budget, pacing, false)
}

/// [`client`], with the degradation layers of scenario h when `degradation` is true.
pub fn client_with(url: &str, budget: bool, pacing: bool, degradation: bool) -> Client {
    let mut b = Client::builder()
        .api_key("sk-bench")
        .base_url(url)
        .pacing(pacing);
    if degradation {
        b = b
            .circuit_breakers(tower_anthropic::breaker::CircuitBreakers::new(
                breaker_config(),
            ))
            .fallback_models([FALLBACK]);
    }
    if pacing {
        b = b.pacer(tower_anthropic::pacing::Pacer::new().max_wait(Duration::from_secs(600)));
    }
    if !budget {
        b = b.retry_budget(None);
    }
    b.build().expect("a valid client")
}

fn request(max_tokens: u32) -> CreateMessageRequest {
    CreateMessageRequest::new("claude-bench", max_tokens).user("Hello from the benchmark")
}

/// Runs `scenario` with the default `Client` against the mock at `url` (already started with
/// the scenario's settings; its counters are reset first).
pub async fn run(url: &str, scenario: &Scenario) -> Report {
    reset_mock(url).await;
    let client = client_with(url, scenario.budget, scenario.pacing, scenario.degradation);
    let shape = scenario.shape;
    let start = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = tokio::spawn(sample_views(client.clone(), start, stop.clone()));
    let mut report = Report::default();
    let mut latencies = Vec::new();
    match scenario.load {
        Load::Closed { n, concurrency } => {
            let results = closed_loop(&client, start, n, concurrency, move |c, i| async move {
                c.messages().create(shape.request(i)).await.is_ok()
            })
            .await;
            report.tally(&results, &mut latencies);
        }
        Load::Streams { n, concurrency } => {
            let results = closed_loop(&client, start, n, concurrency, move |c, i| async move {
                match c.messages().stream(shape.request(i)).await {
                    Ok(s) => s.final_message().await.is_ok(),
                    Err(_) => false,
                }
            })
            .await;
            report.tally(&results, &mut latencies);
        }
        Load::Open {
            rate,
            duration,
            outage_at,
            outage_len,
        } => {
            let mut tasks = tokio::task::JoinSet::new();
            let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
            let mut outage_started = false;
            while start.elapsed() < duration {
                ticker.tick().await;
                if !outage_started && start.elapsed() >= outage_at {
                    outage_started = true;
                    let body = format!(
                        "{{\"ms\": {}, \"kind\": \"overloaded\"}}",
                        outage_len.as_millis()
                    );
                    control_call(url, http::Method::POST, "/_mock/outage", &body).await;
                }
                let client = client.clone();
                tasks.spawn(async move {
                    let t0 = start.elapsed();
                    let ok = client.messages().create(request(64)).await.is_ok();
                    (ok, t0, start.elapsed())
                });
            }
            let mut done = Vec::new();
            while let Some(r) = tasks.join_next().await {
                done.push(r.expect("a request task finished"));
            }
            let (o_start, o_end) = (outage_at, outage_at + outage_len);
            for &(ok, t0, t1) in &done {
                report.requests += 1;
                if ok {
                    report.succeeded += 1
                } else {
                    report.failed += 1
                }
                report.lives.push(Life {
                    started: t0,
                    finished: t1,
                    ok,
                });
                latencies.push(t1 - t0);
                if t0 >= o_start && t0 < o_end {
                    report.outage_requests += 1;
                }
            }
            // Attempts the mock saw inside the window (its clock started before ours: align
            // on the first logged request).
            let log = mock_log(url).await;
            if let Some(first) = log.iter().map(|e| e.at_ms).min() {
                let lo = first + o_start.as_millis() as u64;
                let hi = first + o_end.as_millis() as u64;
                report.outage_attempts =
                    log.iter().filter(|e| e.at_ms >= lo && e.at_ms < hi).count() as u64;
            }
            // Recovery: the first 1 s window after the outage in which every request that
            // finished succeeded.
            report.recovery = first_clean_window(&done, o_end, duration, |ok| *ok);
        }
        Load::ModelOutage {
            rate,
            duration,
            outage_at,
            outage_len,
        } => {
            let timing = (rate, duration, outage_at, outage_len);
            model_outage(url, &client, start, timing, &mut report, &mut latencies).await;
        }
    }
    report.wall = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    report.views = sampler.await.unwrap_or_default();
    latencies.sort();
    report.p50 = percentile(&latencies, 0.5);
    report.p99 = percentile(&latencies, 0.99);
    report.mock = mock_stats(url).await;
    let log = mock_log(url).await;
    if let Some(first) = log.iter().map(|e| e.at_ms).min() {
        report.server = log
            .iter()
            .map(|e| (Duration::from_millis(e.at_ms - first), e.status))
            .collect();
    }
    report
}

/// The client's view every 250 ms until `stop`: calls waiting in the pacer, the tightest
/// bucket's headroom, and whether scenario h's primary circuit is open.
async fn sample_views(
    client: Client,
    start: Instant,
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> Vec<View> {
    let mut views = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tick.tick().await;
        let (mut waiting, mut headroom) = (0usize, None::<f64>);
        if let Some(p) = client.pacer() {
            for q in p.snapshot() {
                waiting += q.waiting;
                for b in [q.requests, q.input_tokens, q.output_tokens] {
                    if let Some(limit) = b.limit.filter(|l| *l > 0) {
                        let h = b.remaining / limit as f64;
                        headroom = Some(headroom.map_or(h, |x: f64| x.min(h)));
                    }
                }
            }
        }
        let circuit_open = client
            .circuit_breakers()
            .and_then(|b| b.state(PRIMARY))
            .is_some_and(|s| s != tower_anthropic::breaker::CircuitState::Closed);
        views.push(View {
            at: start.elapsed(),
            waiting,
            headroom,
            circuit_open,
        });
        if stop.load(Ordering::Relaxed) {
            return views;
        }
    }
}

/// Scenario h: open-loop traffic to [`PRIMARY`] while it alone is down.
async fn model_outage(
    url: &str,
    client: &Client,
    start: Instant,
    (rate, duration, outage_at, outage_len): (u32, Duration, Duration, Duration),
    report: &mut Report,
    latencies: &mut Vec<Duration>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_secs(1) / rate);
    let mut outage_started = false;
    let (o_start, o_end) = (outage_at, outage_at + outage_len);
    while start.elapsed() < duration {
        ticker.tick().await;
        let now = start.elapsed();
        if !outage_started && now >= outage_at {
            outage_started = true;
            let body = format!(
                "{{\"ms\": {}, \"kind\": \"overloaded\", \"model\": \"{PRIMARY}\"}}",
                outage_len.as_millis()
            );
            control_call(url, http::Method::POST, "/_mock/outage", &body).await;
        }
        if report.breaker_opened.is_none() && now >= o_start {
            let open = client
                .circuit_breakers()
                .and_then(|b| b.state(PRIMARY))
                .is_some_and(|s| s == tower_anthropic::breaker::CircuitState::Open);
            if open {
                report.breaker_opened = Some(now - o_start);
            }
        }
        let client = client.clone();
        tasks.spawn(async move {
            let t0 = start.elapsed();
            let req = CreateMessageRequest::new(PRIMARY, 64).user("Hello from the benchmark");
            // (succeeded, answered by the primary)
            let r = match client.messages().create(req).await {
                Ok(m) => (true, m.fallback_depth() == 0),
                Err(_) => (false, false),
            };
            (r, t0, start.elapsed())
        });
    }
    let mut done = Vec::new();
    while let Some(r) = tasks.join_next().await {
        done.push(r.expect("a request task finished"));
    }
    let mut during = Vec::new();
    let mut after_open = 0usize;
    for &((ok, primary), t0, t1) in &done {
        report.requests += 1;
        if ok {
            report.succeeded += 1;
            if primary {
                report.answered_primary += 1;
            } else {
                report.answered_fallback += 1;
            }
        } else {
            report.failed += 1;
        }
        report.lives.push(Life {
            started: t0,
            finished: t1,
            ok,
        });
        latencies.push(t1 - t0);
        if t0 >= o_start && t0 < o_end {
            report.outage_requests += 1;
            during.push(t1 - t0);
        }
        if t0 >= o_start + Duration::from_secs(1) && t0 < o_end {
            after_open += 1;
        }
    }
    during.sort();
    report.outage_p50 = percentile(&during, 0.5);
    report.outage_p99 = percentile(&during, 0.99);
    // Attempts on the primary the mock saw (its clock started before ours: align on the first
    // logged request).
    let log = mock_log(url).await;
    if let Some(first) = log.iter().map(|e| e.at_ms).min() {
        let at = |d: Duration| first + d.as_millis() as u64;
        let on_primary = |e: &&anthropic_mock::LogEntry| e.model.as_deref() == Some(PRIMARY);
        let in_window = |e: &&anthropic_mock::LogEntry, lo: Duration, hi: Duration| {
            e.at_ms >= at(lo) && e.at_ms < at(hi)
        };
        report.outage_attempts = log
            .iter()
            .filter(on_primary)
            .filter(|e| in_window(e, o_start, o_end))
            .count() as u64;
        let late = log
            .iter()
            .filter(on_primary)
            .filter(|e| in_window(e, o_start + Duration::from_secs(1), o_end))
            .count();
        report.primary_attempts_per_request = Some(late as f64 / after_open.max(1) as f64);
    }
    // Back on the primary: the first 1 s window after the outage in which every request that
    // finished was answered by the primary model.
    report.recovery = first_clean_window(&done, o_end, duration, |&(ok, primary)| ok && primary);
}

/// After `from`, the first 1 s window (in steps of 100 ms) in which every request that
/// finished (`(result, started, finished)`) was `good`; how long after `from` it began.
fn first_clean_window<R>(
    done: &[(R, Duration, Duration)],
    from: Duration,
    duration: Duration,
    good: impl Fn(&R) -> bool,
) -> Option<Duration> {
    let mut t = from;
    while t < duration + Duration::from_secs(30) {
        let mut w = done
            .iter()
            .filter(|d| d.2 >= t && d.2 < t + Duration::from_secs(1))
            .peekable();
        if w.peek().is_some() && w.all(|d| good(&d.0)) {
            return Some(t - from);
        }
        t += Duration::from_millis(100);
    }
    None
}

/// `n` calls of `call` by `concurrency` workers sharing `client`: whether each succeeded,
/// and when it started and finished (from `start`).
async fn closed_loop<F, Fut>(
    client: &Client,
    start: Instant,
    n: usize,
    concurrency: usize,
    call: F,
) -> Vec<(bool, Duration, Duration)>
where
    F: Fn(Client, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, call) = (client.clone(), next.clone(), call.clone());
        workers.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                let t0 = start.elapsed();
                let ok = call(client.clone(), i).await;
                out.push((ok, t0, start.elapsed()));
            }
            out
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = workers.join_next().await {
        all.extend(r.expect("a worker finished"));
    }
    all
}

impl Report {
    fn tally(&mut self, results: &[(bool, Duration, Duration)], latencies: &mut Vec<Duration>) {
        for &(ok, started, finished) in results {
            self.requests += 1;
            if ok {
                self.succeeded += 1
            } else {
                self.failed += 1
            }
            self.lives.push(Life {
                started,
                finished,
                ok,
            });
            latencies.push(finished - started);
        }
    }

    /// Attempts per request, as the mock counted them.
    pub fn attempts_per_request(&self) -> f64 {
        self.mock.requests as f64 / self.requests.max(1) as f64
    }

    /// 429s the mock sent.
    pub fn rate_limited(&self) -> u64 {
        self.mock.by_status.get(&429).copied().unwrap_or(0)
    }

    /// One JSON line with every figure (what the peer runner reads).
    pub fn to_json(&self, client: &str, scenario: &str) -> String {
        serde_json::json!({
            "client": client,
            "scenario": scenario,
            "requests": self.requests,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "wall_s": self.wall.as_secs_f64(),
            "p50_ms": self.p50.as_secs_f64() * 1e3,
            "p99_ms": self.p99.as_secs_f64() * 1e3,
            "mock_requests": self.mock.requests,
            "mock_429": self.rate_limited(),
            "attempts_per_request": self.attempts_per_request(),
            "outage_requests": self.outage_requests,
            "outage_attempts": self.outage_attempts,
            "recovery_s": self.recovery.map(|d| d.as_secs_f64()),
            "answered_primary": self.answered_primary,
            "answered_fallback": self.answered_fallback,
            "primary_attempts_per_request": self.primary_attempts_per_request,
            "breaker_opened_s": self.breaker_opened.map(|d| d.as_secs_f64()),
            "outage_p50_ms": self.outage_p50.as_secs_f64() * 1e3,
            "outage_p99_ms": self.outage_p99.as_secs_f64() * 1e3,
        })
        .to_string()
    }
}

/// The ideal completion time of a rate-limited scenario by the mock's own accounting: per
/// bucket, what does not fit in the full bucket at the start, at the refill rate:
///
/// - requests: `(n - rpm) / (rpm / 60)`;
/// - input tokens: `(sum of input tokens - itpm) / (itpm / 60)`;
/// - output tokens: every answer costs its real output in the end, but the last one must
///   find its whole `max_tokens` free when admitted:
///   `(n * out - otpm + (max_tokens - out)) / (otpm / 60)`.
///
/// The largest of the three (0 when everything fits at once).
pub fn rate_limited_ideal(s: &Scenario) -> Duration {
    let Load::Closed { n, .. } = s.load else {
        return Duration::ZERO;
    };
    let l = &s.mock.limits;
    let (rpm, itpm, otpm) = (
        l.requests_per_minute as f64,
        l.input_tokens_per_minute as f64,
        l.output_tokens_per_minute as f64,
    );
    let max_tokens = match s.shape {
        Shape::MaxTokens(m) => m,
        _ => 64,
    } as f64;
    let out = (s.mock.output_tokens as f64).min(max_tokens);
    let input: f64 = (0..n).map(|i| s.shape.input_tokens(i) as f64).sum();
    let by_requests = (n as f64 - rpm).max(0.0) / (rpm / 60.0);
    let by_input = (input - itpm).max(0.0) / (itpm / 60.0);
    let by_output = (n as f64 * out - otpm + (max_tokens - out)).max(0.0) / (otpm / 60.0);
    Duration::from_secs_f64(by_requests.max(by_input).max(by_output))
}
