//! The latency-tolerant lane: 1,000 prompts through a Message Batch on the embedded mock,
//! with a progress line per poll, the results counted by status, and the cost compared with
//! the same 1,000 prompts sent online.
//!
//! ```text
//! cargo run --example batch
//! ```
//!
//! Costs are computed from the token usage each answer reports, at list prices per million
//! tokens given below (input $1, output $5, as for a Haiku-class model); the Batches API
//! bills half of that.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anthropic_mock::{MockConfig, MockServer};
use tower_anthropic::Client;
use tower_anthropic::batches::{BatchOutcome, BatchRequest};
use tower_anthropic::messages::{CreateMessageRequest, Usage};

const MODEL: &str = "claude-haiku-4-5";
const PROMPTS: usize = 1000;
/// Dollars per million tokens, online.
const INPUT_PRICE: f64 = 1.0;
const OUTPUT_PRICE: f64 = 5.0;
/// The Batches API's discount.
const BATCH_FACTOR: f64 = 0.5;

fn request(i: usize) -> CreateMessageRequest {
    CreateMessageRequest::new(MODEL, 128)
        .user(format!("Summarize support ticket #{i} in one line."))
}

fn dollars(u: &Usage) -> f64 {
    (u.input_tokens as f64 * INPUT_PRICE + u.output_tokens as f64 * OUTPUT_PRICE) / 1e6
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Batches processed at 200 requests a second: about 5 s for this job.
    let mock = MockServer::start(MockConfig::default()).await?;
    let client = Client::builder()
        .api_key("sk-ant-mock")
        .base_url(mock.url())
        .build()?;
    let batches = client
        .batches()
        .poll_interval(Duration::from_secs(1), Duration::from_secs(2));

    let requests: Vec<BatchRequest> = (0..PROMPTS)
        .map(|i| BatchRequest::new(format!("ticket-{i}"), request(i)))
        .collect();
    let start = Instant::now();
    let job = batches.submit(requests).await?;
    println!("submitted {PROMPTS} requests as batch(es) {:?}", job.ids());
    job.wait(&batches, |b| {
        let c = b.request_counts;
        println!(
            "[{:>4.1} s] {:?}: processing {}, succeeded {}, errored {}, canceled {}, expired {}",
            start.elapsed().as_secs_f64(),
            b.processing_status,
            c.processing,
            c.succeeded,
            c.errored,
            c.canceled,
            c.expired
        );
    })
    .await?;

    let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
    let mut batch_cost = 0.0;
    let mut results = job.results(&batches);
    while let Some(r) = results.next().await {
        let status = match r?.result {
            BatchOutcome::Succeeded { message } => {
                batch_cost += dollars(&message.usage) * BATCH_FACTOR;
                "succeeded"
            }
            BatchOutcome::Errored { .. } => "errored",
            BatchOutcome::Canceled => "canceled",
            BatchOutcome::Expired => "expired",
        };
        *by_status.entry(status).or_default() += 1;
    }
    println!("results by status: {by_status:?}");

    // The same prompts online, 32 at a time.
    let mut online_cost = 0.0;
    let mut set = tokio::task::JoinSet::new();
    for chunk in (0..PROMPTS).collect::<Vec<_>>().chunks(PROMPTS / 32 + 1) {
        let (c, chunk) = (client.clone(), chunk.to_vec());
        set.spawn(async move {
            let mut cost = 0.0;
            for i in chunk {
                if let Ok(m) = c.messages().create(request(i)).await {
                    cost += dollars(&m.usage);
                }
            }
            cost
        });
    }
    while let Some(c) = set.join_next().await {
        online_cost += c?;
    }
    println!(
        "cost of the job: batch ${batch_cost:.4}, online ${online_cost:.4} ({:.0}% of online)",
        100.0 * batch_cost / online_cost.max(f64::MIN_POSITIVE)
    );
    Ok(())
}
