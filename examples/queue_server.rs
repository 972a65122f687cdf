//! Online use of the queue: an axum handler enqueues each request and awaits its outcome
//! with a deadline, so a spike is absorbed by the queue and drained at the quota instead of
//! meeting 429s. A caller whose deadline passes gets a 503 (its job is cancelled if it had
//! not started).
//!
//! On the embedded mock with a 600 requests/min quota, 800 requests arrive at once: 600 fit
//! the full bucket, the other 200 are drained at 10 a second. The last 10 ask for a 1 s
//! deadline (too short for their place in line), the rest for 60 s.
//!
//! ```text
//! cargo run --example queue_server
//! ```

use std::time::{Duration, Instant};

use anthropic_mock::{MockConfig, MockServer, RateLimits};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic_queue::{
    Job, MemoryBackend, Outcome, Queue, QueueError, WorkerConfig, WorkerPool,
};

#[derive(serde::Deserialize)]
struct Wait {
    /// The caller's deadline in seconds.
    deadline: u64,
}

/// `POST /v1/messages?deadline=S`: the request goes through the queue.
async fn messages(
    State(queue): State<Queue<MemoryBackend>>,
    Query(wait): Query<Wait>,
    Json(req): Json<CreateMessageRequest>,
) -> (StatusCode, Json<Value>) {
    let job = Job::generated(req);
    match queue.call(job, Duration::from_secs(wait.deadline)).await {
        Ok(Outcome::Done(r)) => (StatusCode::OK, Json(json!(r.message))),
        Ok(Outcome::Dead(d)) => {
            let status = d.error.status.unwrap_or(502);
            let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
            (code, Json(json!({"error": d.error})))
        }
        Err(QueueError::DeadlinePassed { cancelled, .. }) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"error": "deadline passed", "cancelled": cancelled})),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            Json(json!({"error": e.to_string()})),
        ),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockServer::start(MockConfig {
        limits: RateLimits {
            requests_per_minute: 600,
            ..Default::default()
        },
        ..Default::default()
    })
    .await?;
    let client = Client::builder()
        .api_key("sk-ant-mock")
        .base_url(mock.url())
        .build()?;

    // The queue and its workers, in the server's process.
    let backend = MemoryBackend::new();
    let pool = WorkerPool::new(
        backend.clone(),
        client.service(),
        WorkerConfig::new().concurrency(16),
    );
    tokio::spawn(pool.run(std::future::pending()));
    let app = Router::new()
        .route("/v1/messages", post(messages))
        .with_state(Queue::new(backend.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    println!("serving on http://{addr}; sending 800 requests at once");

    // The spike: 800 callers at once.
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let start = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..800 {
        let http = http.clone();
        let deadline = if i >= 790 { 1 } else { 60 };
        let body = json!({"model": "claude-sonnet-4-6", "max_tokens": 64,
            "messages": [{"role": "user", "content": format!("question {i}")}]});
        let req = http::Request::post(format!("http://{addr}/v1/messages?deadline={deadline}"))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))?;
        calls.spawn(async move {
            if i >= 790 {
                // These come last in line.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            let status = http.request(req).await.map(|r| r.status().as_u16());
            (i, status)
        });
    }
    let (mut ok, mut late, mut other) = (0, 0, 0);
    while let Some(r) = calls.join_next().await {
        match r? {
            (_, Ok(200)) => ok += 1,
            (i, Ok(503)) if i >= 790 => late += 1,
            (i, s) => {
                other += 1;
                eprintln!("request {i}: {s:?}");
            }
        }
    }
    let stats = mock.stats();
    println!(
        "{ok} answered, {late} past their 1 s deadline (503), {other} other, in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    println!(
        "the API saw {} requests (the cancelled jobs never ran) and sent {} 429s",
        stats.requests,
        stats.by_status.get(&429).unwrap_or(&0)
    );
    Ok(())
}
