//! Graceful degradation on the embedded mock: the primary model goes down mid-run, traffic
//! moves to the fallback model, the primary's circuit half-opens now and then to probe it, and
//! traffic returns when the outage ends. While the fallback model is briefly down too, calls
//! get a canned stand-in answer instead of an error.
//!
//! ```text
//! cargo run --example degradation
//! ```
//!
//! One line per second: requests started, answered by the primary / the fallback / a default,
//! failed, and the primary's circuit; then a summary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, Outage, OutageKind};
use tokio::time::Instant;
use tower_anthropic::breaker::{CircuitBreakerConfig, CircuitBreakers, CircuitState};
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::{Client, Message};

const PRIMARY: &str = "claude-sonnet-4-6";
const FALLBACK: &str = "claude-haiku-4-5";
const RATE: u64 = 20; // requests a second, started on schedule whatever happens
const SECONDS: u64 = 14;
const OUTAGE: (u64, u64) = (3, 9); // the primary is down from 3 s to 9 s
const FALLBACK_OUTAGE: (u64, u64) = (5, 6); // and the fallback from 5 s to 6 s

#[derive(Default)]
struct Tally {
    started: AtomicU64,
    primary: AtomicU64,
    fallback: AtomicU64,
    default: AtomicU64,
    failed: AtomicU64,
}

impl Tally {
    fn take(&self) -> [u64; 5] {
        [
            &self.started,
            &self.primary,
            &self.fallback,
            &self.default,
            &self.failed,
        ]
        .map(|c| c.swap(0, Relaxed))
    }
}

fn window(model: &str, (from, to): (u64, u64)) -> Outage {
    Outage {
        start: Duration::from_secs(from),
        duration: Duration::from_secs(to - from),
        every: None,
        kind: OutageKind::Overloaded,
        model: Some(model.to_owned()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut config = MockConfig {
        outages: vec![window(PRIMARY, OUTAGE), window(FALLBACK, FALLBACK_OUTAGE)],
        ..MockConfig::default()
    };
    config.latency.time_to_first_byte = Duration::from_millis(50);
    let mock = MockServer::start(config).await?;
    let start = Instant::now();

    let breakers = CircuitBreakers::new(
        CircuitBreakerConfig::new()
            .open_for(Duration::from_secs(1))
            .max_open_for(Duration::from_secs(2)),
    );
    let client = Client::builder()
        .api_key("sk-ant-mock")
        .base_url(mock.url())
        .deadline(Duration::from_secs(10))
        .circuit_breakers(breakers.clone())
        .fallback_models([FALLBACK])
        .degrade(|req, _err| {
            Some(Message::canned(
                &req.model,
                "The assistant is busy right now; please try again in a minute.",
            ))
        })
        .build()?;

    let tally = Arc::new(Tally::default());
    let totals = Arc::new(Tally::default());
    let mut calls = tokio::task::JoinSet::new();
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    let mut next_report = Duration::from_secs(1);
    let mut opened_at = None;
    let mut back_at = None;
    println!("  t  started  primary  fallback  default  failed  circuit({PRIMARY})");
    while start.elapsed() < Duration::from_secs(SECONDS) {
        tick.tick().await;
        let (client, per_second, all) = (client.clone(), tally.clone(), totals.clone());
        calls.spawn(async move {
            let (tally, totals) = (per_second, all);
            tally.started.fetch_add(1, Relaxed);
            totals.started.fetch_add(1, Relaxed);
            let req = CreateMessageRequest::new(PRIMARY, 64).user("Summarize the weather.");
            let which: fn(&Tally) -> &AtomicU64 = match client.messages().create(req).await {
                Ok(m) if m.is_degraded() => |t| &t.default,
                Ok(m) if m.fallback_depth() == 0 => |t| &t.primary,
                Ok(_) => |t| &t.fallback,
                Err(_) => |t| &t.failed,
            };
            which(&tally).fetch_add(1, Relaxed);
            which(&totals).fetch_add(1, Relaxed);
        });
        let state = breakers.state(PRIMARY);
        let t = start.elapsed();
        if opened_at.is_none() && state == Some(CircuitState::Open) {
            opened_at = Some(t);
        }
        if back_at.is_none()
            && t > Duration::from_secs(OUTAGE.1)
            && state == Some(CircuitState::Closed)
        {
            back_at = Some(t);
        }
        if t >= next_report {
            let [s, p, f, d, x] = tally.take();
            let state = state.map_or("-".to_owned(), |s| format!("{s:?}"));
            println!(
                "{:>3}  {s:>7}  {p:>7}  {f:>8}  {d:>7}  {x:>6}  {state}",
                next_report.as_secs()
            );
            next_report += Duration::from_secs(1);
        }
    }
    while calls.join_next().await.is_some() {}

    let [s, p, f, d, x] = totals.take();
    let stats = mock.stats();
    let answered = p + f + d;
    println!();
    println!(
        "{s} requests: {p} answered by {PRIMARY}, {f} by {FALLBACK}, {d} by the default, {x} failed ({:.1}% answered)",
        100.0 * answered as f64 / s.max(1) as f64
    );
    println!(
        "requests that reached the server: {PRIMARY} {}, {FALLBACK} {}",
        stats.by_model.get(PRIMARY).unwrap_or(&0),
        stats.by_model.get(FALLBACK).unwrap_or(&0)
    );
    match opened_at {
        Some(t) => println!(
            "the primary's circuit opened {:.2} s after its outage began",
            t.as_secs_f64() - OUTAGE.0 as f64
        ),
        None => println!("the primary's circuit never opened"),
    }
    match back_at {
        Some(t) => println!(
            "traffic was back on the primary {:.2} s after its outage ended",
            t.as_secs_f64() - OUTAGE.1 as f64
        ),
        None => println!("traffic did not return to the primary before the run ended"),
    }
    for c in breakers.snapshot() {
        println!(
            "circuit {}: {:?}, opened {} times",
            c.key, c.state, c.times_opened
        );
    }
    Ok(())
}
