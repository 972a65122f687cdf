//! `anthropic-mock`: run the mock Messages API server from the command line.

use std::process::ExitCode;
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, Outage, OutageKind};

const HELP: &str = "\
anthropic-mock: a faithful, fault-injecting mock of the Anthropic Messages API.

Serves POST /v1/messages and POST /v1/messages/count_tokens (HTTP/1.1 and h2c) and prints
`listening on http://ADDR` as its first line. Stops cleanly on SIGINT or SIGTERM.

USAGE:
    anthropic-mock [OPTIONS]

SERVER:
    --addr ADDR             address to bind [default: 127.0.0.1:0]
    --key KEY               accept only this API key (repeatable) [default: any non-empty key]
    --threads N             worker threads [default: number of cores]
    --log-capacity N        requests kept by /_mock/log [default: 1024]
    --path-prefix PATH      serve the API under PATH, as a gateway would (e.g.
                            /gateway/anthropic) [default: the root, as the API]
    --h2-max-streams N      HTTP/2 streams a connection may have open at once
                            (SETTINGS_MAX_CONCURRENT_STREAMS) [default: 200]

RATE LIMITS (token buckets per API key and model, refilled continuously; output tokens are
reserved from max_tokens at admission and the unused part given back when the answer ends):
    --rpm N                 requests per minute [default: 100000000]
    --itpm N                input tokens per minute [default: 100000000000]
    --otpm N                output tokens per minute [default: 100000000000]
    --accel-burst N         acceleration limit: at most N requests in a second that starts
                            from idle; more get a 429 ramp_limit_exceeded [default: none]

ANSWERS AND LATENCY:
    --output-tokens N       output tokens per answer, capped by max_tokens [default: 48]
    --ttfb DURATION         delay before the response headers [default: 0ms]
    --tps N                 output tokens per second, 0 for instant [default: 0]
    --ping-every N          a ping event every N content deltas [default: 16]
    --batch-speed N         Message Batches requests processed per second [default: 200]
    --known-models-only     answer only the models GET /v1/models lists (otherwise any
                            claude-* id is accepted too); other models get a 404

RANDOM FAULTS (probabilities per request, adding up to at most 1):
    --seed N                seed of the random source [default: 0]
    --p529 P                529 overloaded_error
    --p500 P                500 api_error
    --p503 P                503 api_error
    --p502 P                502 with an HTML body
    --p-reset P             connection reset before any byte
    --p-stall P             stall (no byte for --stall), then reset
    --stall DURATION        how long a stall lasts [default: 30s]

OUTAGES (every API request gets a 529, or a reset):
    --outage START+LEN[@MODEL]
                            an outage window from START after start-up, lasting LEN
                            (repeatable), e.g. --outage 10s+5s; with @MODEL only requests
                            for that model are hit, e.g. --outage 5s+15s@claude-sonnet-4-6
    --outage-every PERIOD   repeat every outage window with this period
    --outage-kind KIND      overloaded (529) or reset [default: overloaded]

DURATIONS are a number with a unit: 250ms, 10s, 2m.

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

    -h, --help              print this help
";

struct Args {
    config: MockConfig,
    threads: Option<usize>,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
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

fn parse_num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("invalid value `{v}` for {flag}"))
}

fn parse_prob(flag: &str, v: &str) -> Result<f64, String> {
    let p: f64 = parse_num(flag, v)?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{flag} must be between 0 and 1, got {v}"))
    }
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Option<Args>, String> {
    let mut c = MockConfig::default();
    let mut threads = None;
    let mut every = None;
    let mut kind = OutageKind::Overloaded;
    let mut windows = Vec::new();
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let (flag, inline) = match flag.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(v.to_owned())),
            None => (flag, None),
        };
        let known = [
            "--addr",
            "--key",
            "--threads",
            "--rpm",
            "--itpm",
            "--otpm",
            "--accel-burst",
            "--output-tokens",
            "--ttfb",
            "--tps",
            "--ping-every",
            "--seed",
            "--p529",
            "--p500",
            "--p503",
            "--p502",
            "--p-reset",
            "--p-stall",
            "--stall",
            "--outage",
            "--outage-every",
            "--outage-kind",
            "--log-capacity",
            "--path-prefix",
            "--batch-speed",
            "--h2-max-streams",
        ];
        if flag == "--known-models-only" {
            c.accept_any_claude_model = false;
            continue;
        }
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown option `{flag}` (see --help)"));
        }
        let v = match inline.or_else(|| it.next()) {
            Some(v) => v,
            None => return Err(format!("{flag} needs a value (see --help)")),
        };
        let f = flag.as_str();
        match f {
            "--addr" => {
                c.addr = v
                    .parse()
                    .map_err(|_| format!("invalid address `{v}` for --addr"))?
            }
            "--key" if v.is_empty() => return Err("--key must not be empty".into()),
            "--key" => c.api_keys.push(v),
            "--threads" => threads = Some(parse_num::<usize>(f, &v)?.max(1)),
            "--log-capacity" => c.log_capacity = parse_num(f, &v)?,
            "--h2-max-streams" => {
                c.http2_max_concurrent_streams = parse_num::<u32>(f, &v)?;
                if c.http2_max_concurrent_streams == 0 {
                    return Err("--h2-max-streams must be at least 1".into());
                }
            }
            "--batch-speed" => {
                let n: f64 = v
                    .parse()
                    .ok()
                    .filter(|n: &f64| n.is_finite() && *n > 0.0)
                    .ok_or_else(|| format!("invalid --batch-speed `{v}`: a positive number"))?;
                c.batch_speed = n;
            }
            "--path-prefix" => {
                if !v.starts_with('/') {
                    return Err(format!("invalid --path-prefix `{v}`: it starts with /"));
                }
                c.path_prefix = Some(v);
            }
            "--rpm" | "--itpm" | "--otpm" => {
                let n: u64 = parse_num(f, &v)?;
                if n == 0 {
                    return Err(format!("{f} must be at least 1"));
                }
                match f {
                    "--rpm" => c.limits.requests_per_minute = n,
                    "--itpm" => c.limits.input_tokens_per_minute = n,
                    _ => c.limits.output_tokens_per_minute = n,
                }
            }
            "--accel-burst" => c.limits.max_burst_from_idle = Some(parse_num::<u32>(f, &v)?.max(1)),
            "--output-tokens" => c.output_tokens = parse_num::<u32>(f, &v)?.max(1),
            "--ttfb" => c.latency.time_to_first_byte = parse_duration(&v)?,
            "--tps" => c.latency.tokens_per_second = parse_num(f, &v)?,
            "--ping-every" => c.ping_every = parse_num(f, &v)?,
            "--seed" => c.faults.seed = parse_num(f, &v)?,
            "--p529" => c.faults.p529 = parse_prob(f, &v)?,
            "--p500" => c.faults.p500 = parse_prob(f, &v)?,
            "--p503" => c.faults.p503 = parse_prob(f, &v)?,
            "--p502" => c.faults.p502_html = parse_prob(f, &v)?,
            "--p-reset" => c.faults.p_reset = parse_prob(f, &v)?,
            "--p-stall" => c.faults.p_stall = parse_prob(f, &v)?,
            "--stall" => c.faults.stall = parse_duration(&v)?,
            "--outage" => {
                let (window, model) = match v.split_once('@') {
                    Some((w, m)) if !m.is_empty() => (w, Some(m.to_owned())),
                    Some(_) => return Err(format!("invalid outage `{v}`: empty model after @")),
                    None => (v.as_str(), None),
                };
                let (start, len) = window.split_once('+').ok_or_else(|| {
                    format!("invalid outage `{v}`: expected START+LEN, like 10s+5s")
                })?;
                windows.push((parse_duration(start)?, parse_duration(len)?, model));
            }
            "--outage-every" => every = Some(parse_duration(&v)?),
            "--outage-kind" => {
                kind = match v.as_str() {
                    "overloaded" | "529" => OutageKind::Overloaded,
                    "reset" => OutageKind::Reset,
                    _ => {
                        return Err(format!(
                            "invalid --outage-kind `{v}`: expected overloaded or reset"
                        ));
                    }
                }
            }
            _ => unreachable!("every known flag is matched"),
        }
    }
    if c.faults.total() > 1.0 + 1e-9 {
        return Err(format!(
            "fault probabilities add up to {}, more than 1",
            c.faults.total()
        ));
    }
    if every.is_some() && windows.is_empty() {
        return Err("--outage-every needs at least one --outage window".into());
    }
    c.outages = windows
        .into_iter()
        .map(|(start, duration, model)| Outage {
            start,
            duration,
            every,
            model,
            kind,
        })
        .collect();
    Ok(Some(Args { config: c, threads }))
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("anthropic-mock: {e}");
            return ExitCode::from(2);
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

    fn parse(s: &str) -> Result<Option<Args>, String> {
        parse_args(s.split_whitespace().map(str::to_owned))
    }

    #[test]
    fn parses_the_documented_example() {
        let a = parse("--rpm 50 --itpm 20000 --otpm 8000 --p529 0.2 --seed 7 --outage 10s+5s --outage-every 1m")
            .unwrap()
            .unwrap();
        assert_eq!(a.config.limits.requests_per_minute, 50);
        assert_eq!(a.config.faults.p529, 0.2);
        assert_eq!(a.config.faults.seed, 7);
        assert_eq!(a.config.outages[0].start, Duration::from_secs(10));
        assert_eq!(a.config.outages[0].every, Some(Duration::from_secs(60)));
        assert_eq!(a.config.outages[0].model, None);
        let m = parse("--outage 5s+15s@claude-sonnet-4-6").unwrap().unwrap();
        assert_eq!(
            m.config.outages[0].model.as_deref(),
            Some("claude-sonnet-4-6")
        );
        assert_eq!(m.config.outages[0].duration, Duration::from_secs(15));
        assert!(parse("--help").unwrap().is_none());
    }

    #[test]
    fn rejects_bad_input_with_a_message() {
        for (args, needle) in [
            ("--rpm", "needs a value"),
            ("--rpm x", "invalid value"),
            ("--p529 1.5", "between 0 and 1"),
            ("--p529 0.6 --p500 0.6", "add up"),
            ("--ttfb 200", "with a unit"),
            ("--bogus 1", "unknown option"),
            ("--outage 10s", "START+LEN"),
            ("--outage 1s+2s@", "empty model"),
            ("--outage-kind boom", "overloaded or reset"),
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args} accepted"));
            assert!(e.contains(needle), "{args}: {e}");
        }
    }
}
