//! `anthropic-mock`: run the mock Messages API server from the command line.

use std::process::ExitCode;
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, Outage, OutageKind};
use clap::{CommandFactory, Parser};

/// What `--help` adds after the options: the control endpoints and what they take.
const AFTER_HELP: &str = "\
CONTROL ENDPOINTS:
    GET  /_mock/stats       counters (requests, by status, by fault, tokens, connections, streams)
    GET  /_mock/log         recent requests with selected headers
    POST /_mock/reset       clear counters, log, scripts and rate-limit buckets
    POST /_mock/script      {\"key\": K, \"responses\": [...]}: scripted responses for requests
                            carrying `x-mock-key: K` (kinds: ok, status, html, reset, stall,
                            delay, cut_body, stall_body, stream_error, stream_cut, stream_stall)
    POST /_mock/outage      {\"ms\": N, \"kind\": \"overloaded\"|\"reset\", \"model\": M}: an
                            outage starting now (for model M only when given)

SCRIPTED RESPONSES (the entries of /_mock/script, each a JSON object with a \"kind\"):
    {\"kind\": \"ok\"}                                    answer as usual
    {\"kind\": \"status\", \"status\": 529, \"error_type\": T, \"error_code\": C, \"message\": M,
     \"headers\": {\"retry-after\": \"2\"}, \"body\": RAW}   an error status (all but status optional)
    {\"kind\": \"html\", \"status\": 502}                   an HTML error page, as a proxy sends it
    {\"kind\": \"reset\"}                                 reset the connection before any byte
    {\"kind\": \"stall\", \"ms\": N}                        no byte for N ms, then a reset
    {\"kind\": \"delay\", \"ms\": N}                        answer as usual after N ms
    {\"kind\": \"cut_body\"}                              a 200 whose body stops half way
    {\"kind\": \"stall_body\", \"ms\": N}                   a 200 whose body stalls for N ms
    {\"kind\": \"stream_error\", \"after\": N, \"error_type\": T}  an error event after N events
    {\"kind\": \"stream_cut\", \"after\": N}                a stream that ends after N events
    {\"kind\": \"stream_stall\", \"after\": N, \"ms\": M}     a stream that stalls after N events

MESSAGE BATCHES: POST /v1/messages/batches, GET /v1/messages/batches (paged), GET, POST
    .../{id}/cancel, DELETE .../{id}, GET .../{id}/results (JSONL). Requests are processed
    at --batch-speed; a cancel ends the batch a second later with the rest canceled;
    POST /_mock/batches/{id}/expire expires the rest now. Invalid params are errored.

MODELS: GET /v1/models (paged: limit, before_id, after_id) and GET /v1/models/{id} list
    claude-opus-4-6, claude-sonnet-4-6, claude-haiku-4-5, claude-opus-4-1, claude-sonnet-4-5,
    claude-3-5-haiku-latest. Any path other than the API's is a 404 not_found_error.

DURATIONS are a number with a unit: 250ms, 10s, 2m.
";

/// A faithful, fault-injecting mock of the Anthropic Messages API.
///
/// Serves POST /v1/messages and POST /v1/messages/count_tokens (HTTP/1.1 and h2c), the
/// Message Batches and Models APIs, and prints `listening on http://ADDR` as its first line.
/// Stops cleanly on SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "anthropic-mock", version, after_long_help = AFTER_HELP)]
struct Cli {
    /// Address to bind
    #[arg(long, default_value = "127.0.0.1:0", help_heading = "Server")]
    addr: std::net::SocketAddr,
    /// Accept only this API key (repeatable) [default: any non-empty key]
    #[arg(long = "key", value_parser = non_empty, help_heading = "Server")]
    keys: Vec<String>,
    /// Worker threads [default: the number of cores]
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..), help_heading = "Server")]
    threads: Option<u16>,
    /// Requests kept by /_mock/log
    #[arg(long, default_value_t = 1024, help_heading = "Server")]
    log_capacity: usize,
    /// Serve the API under PATH, as a gateway would (e.g. /gateway/anthropic) [default: the
    /// root, as the API]
    #[arg(long, value_parser = path_prefix, help_heading = "Server")]
    path_prefix: Option<String>,
    /// HTTP/2 streams a connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS)
    #[arg(long = "h2-max-streams", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Server")]
    h2_max_streams: u32,

    /// Requests per minute (token buckets per API key and model, refilled continuously)
    #[arg(long, default_value_t = 100_000_000,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Rate limits")]
    rpm: u64,
    /// Input tokens per minute
    #[arg(long, default_value_t = 100_000_000_000,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Rate limits")]
    itpm: u64,
    /// Output tokens per minute (reserved from max_tokens at admission, the unused part
    /// given back when the answer ends)
    #[arg(long, default_value_t = 100_000_000_000,
          value_parser = clap::value_parser!(u64).range(1..), help_heading = "Rate limits")]
    otpm: u64,
    /// Acceleration limit: at most N requests in a second that starts from idle; more get a
    /// 429 ramp_limit_exceeded [default: none]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..), help_heading = "Rate limits")]
    accel_burst: Option<u32>,

    /// Output tokens per answer, capped by max_tokens
    #[arg(long, default_value_t = 48,
          value_parser = clap::value_parser!(u32).range(1..), help_heading = "Answers and latency")]
    output_tokens: u32,
    /// Delay before the response headers
    #[arg(long, default_value = "0ms", value_parser = duration, help_heading = "Answers and latency")]
    ttfb: Duration,
    /// Output tokens per second, 0 for instant
    #[arg(long, default_value_t = 0, help_heading = "Answers and latency")]
    tps: u32,
    /// A ping event every N content deltas
    #[arg(long, default_value_t = 16, help_heading = "Answers and latency")]
    ping_every: u32,
    /// Message Batches requests processed per second
    #[arg(long, default_value_t = 200.0, value_parser = positive, help_heading = "Answers and latency")]
    batch_speed: f64,
    /// Answer only the models GET /v1/models lists (otherwise any claude-* id is accepted
    /// too); other models get a 404
    #[arg(long, help_heading = "Answers and latency")]
    known_models_only: bool,

    /// Seed of the random source (faults are probabilities per request, adding up to at
    /// most 1)
    #[arg(long, default_value_t = 0, help_heading = "Random faults")]
    seed: u64,
    /// 529 overloaded_error
    #[arg(long, default_value_t = 0.0, value_parser = probability, help_heading = "Random faults")]
    p529: f64,
    /// 500 api_error
    #[arg(long, default_value_t = 0.0, value_parser = probability, help_heading = "Random faults")]
    p500: f64,
    /// 503 api_error
    #[arg(long, default_value_t = 0.0, value_parser = probability, help_heading = "Random faults")]
    p503: f64,
    /// 502 with an HTML body
    #[arg(long, default_value_t = 0.0, value_parser = probability, help_heading = "Random faults")]
    p502: f64,
    /// Connection reset before any byte
    #[arg(long = "p-reset", default_value_t = 0.0, value_parser = probability, help_heading = "Random faults")]
    p_reset: f64,
    /// Stall (no byte for --stall), then reset
    #[arg(long = "p-stall", default_value_t = 0.0, value_parser = probability, help_heading = "Random faults")]
    p_stall: f64,
    /// How long a stall lasts
    #[arg(long, default_value = "30s", value_parser = duration, help_heading = "Random faults")]
    stall: Duration,

    /// An outage window (every API request gets a 529, or a reset) from START after start-up,
    /// lasting LEN (repeatable), e.g. 10s+5s; with @MODEL only requests for that model, e.g.
    /// 5s+15s@claude-sonnet-4-6
    #[arg(long, value_name = "START+LEN[@MODEL]", value_parser = outage, help_heading = "Outages")]
    outage: Vec<(Duration, Duration, Option<String>)>,
    /// Repeat every outage window with this period
    #[arg(long, value_parser = duration, requires = "outage", help_heading = "Outages")]
    outage_every: Option<Duration>,
    /// What an outage does
    #[arg(long, value_enum, default_value_t = Kind::Overloaded, help_heading = "Outages")]
    outage_kind: Kind,
}

/// What an outage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Kind {
    /// A 529 overloaded_error
    #[value(alias = "529")]
    Overloaded,
    /// The connection is reset
    Reset,
}

fn duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("invalid duration `{s}`: expected a number with a unit, like 250ms, 10s or 2m");
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => return Err(bad()),
    };
    let n: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("`{s}` is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("a probability is between 0 and 1, got {s}"))
    }
}

fn positive(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|n| n.is_finite() && *n > 0.0)
        .ok_or_else(|| format!("`{s}` is not a positive number"))
}

fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_owned())
    }
}

fn path_prefix(s: &str) -> Result<String, String> {
    if s.starts_with('/') {
        Ok(s.to_owned())
    } else {
        Err(format!("`{s}` does not start with /"))
    }
}

fn outage(v: &str) -> Result<(Duration, Duration, Option<String>), String> {
    let (window, model) = match v.split_once('@') {
        Some((w, m)) if !m.is_empty() => (w, Some(m.to_owned())),
        Some(_) => return Err(format!("invalid outage `{v}`: empty model after @")),
        None => (v, None),
    };
    let (start, len) = window
        .split_once('+')
        .ok_or_else(|| format!("invalid outage `{v}`: expected START+LEN, like 10s+5s"))?;
    Ok((duration(start)?, duration(len)?, model))
}

/// The server's settings, and its threads.
struct Args {
    config: MockConfig,
    threads: Option<usize>,
}

impl Args {
    fn of(cli: Cli) -> Result<Self, String> {
        let mut c = MockConfig {
            addr: cli.addr,
            log_capacity: cli.log_capacity,
            path_prefix: cli.path_prefix,
            http2_max_concurrent_streams: cli.h2_max_streams,
            output_tokens: cli.output_tokens,
            ping_every: cli.ping_every,
            batch_speed: cli.batch_speed,
            accept_any_claude_model: !cli.known_models_only,
            ..MockConfig::default()
        };
        c.api_keys = cli.keys;
        c.limits.requests_per_minute = cli.rpm;
        c.limits.input_tokens_per_minute = cli.itpm;
        c.limits.output_tokens_per_minute = cli.otpm;
        c.limits.max_burst_from_idle = cli.accel_burst;
        c.latency.time_to_first_byte = cli.ttfb;
        c.latency.tokens_per_second = cli.tps;
        c.faults.seed = cli.seed;
        c.faults.p529 = cli.p529;
        c.faults.p500 = cli.p500;
        c.faults.p503 = cli.p503;
        c.faults.p502_html = cli.p502;
        c.faults.p_reset = cli.p_reset;
        c.faults.p_stall = cli.p_stall;
        c.faults.stall = cli.stall;
        if c.faults.total() > 1.0 + 1e-9 {
            return Err(format!(
                "fault probabilities add up to {}, more than 1",
                c.faults.total()
            ));
        }
        let kind = match cli.outage_kind {
            Kind::Overloaded => OutageKind::Overloaded,
            Kind::Reset => OutageKind::Reset,
        };
        c.outages = cli
            .outage
            .into_iter()
            .map(|(start, duration, model)| Outage {
                start,
                duration,
                every: cli.outage_every,
                model,
                kind,
            })
            .collect();
        Ok(Args {
            config: c,
            threads: cli.threads.map(usize::from),
        })
    }
}

fn main() -> ExitCode {
    let args = match Args::of(Cli::parse()) {
        Ok(a) => a,
        Err(e) => {
            Cli::command()
                .error(clap::error::ErrorKind::ArgumentConflict, e)
                .exit();
        }
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("anthropic-mock: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let server = match MockServer::start(args.config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("anthropic-mock: cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("listening on {}", server.url());
        use std::io::Write;
        let _ = std::io::stdout().flush();
        wait_for_signal().await;
        server.shutdown();
        ExitCode::SUCCESS
    })
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Args, String> {
        let cli =
            Cli::try_parse_from(std::iter::once("anthropic-mock").chain(s.split_whitespace()))
                .map_err(|e| e.to_string())?;
        Args::of(cli)
    }

    #[test]
    fn parses_the_documented_example() {
        Cli::command().debug_assert();
        let a = parse("--rpm 50 --itpm 20000 --otpm 8000 --p529 0.2 --seed 7 --outage 10s+5s --outage-every 1m")
            .unwrap();
        assert_eq!(a.config.limits.requests_per_minute, 50);
        assert_eq!(a.config.faults.p529, 0.2);
        assert_eq!(a.config.faults.seed, 7);
        assert_eq!(a.config.outages[0].start, Duration::from_secs(10));
        assert_eq!(a.config.outages[0].every, Some(Duration::from_secs(60)));
        assert_eq!(a.config.outages[0].model, None);
        let m = parse("--outage 5s+15s@claude-sonnet-4-6 --outage-kind 529").unwrap();
        assert_eq!(
            m.config.outages[0].model.as_deref(),
            Some("claude-sonnet-4-6")
        );
        assert_eq!(m.config.outages[0].duration, Duration::from_secs(15));
        assert_eq!(m.config.outages[0].kind, OutageKind::Overloaded);
        // The defaults are the library's.
        let d = parse("").unwrap().config;
        let lib = MockConfig::default();
        assert_eq!(d.limits, lib.limits);
        assert_eq!(
            (d.output_tokens, d.ping_every, d.log_capacity),
            (lib.output_tokens, lib.ping_every, lib.log_capacity)
        );
        assert_eq!(d.faults.stall, lib.faults.stall);
    }

    #[test]
    fn rejects_bad_input_with_a_message() {
        for (args, needle) in [
            ("--rpm", "--rpm"),
            ("--rpm x", "--rpm"),
            ("--rpm 0", "--rpm"),
            ("--p529 1.5", "between 0 and 1"),
            ("--p529 0.6 --p500 0.6", "add up"),
            ("--ttfb 200", "with a unit"),
            ("--bogus 1", "--bogus"),
            ("--outage 10s", "START+LEN"),
            ("--outage 1s+2s@", "empty model"),
            ("--outage-kind boom", "--outage-kind"),
            ("--outage-every 1m", "--outage"),
            ("--key=", "--key"),
            ("--path-prefix api", "start with /"),
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args} accepted"));
            assert!(e.contains(needle), "{args}: {e}");
        }
    }
}
