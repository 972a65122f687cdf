//! The queue with the embedded backend against the mock: outcomes stored once, leases,
//! rate limits rescheduled without using up attempts, dead letters, deadlines. Paused time.

use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, RateLimits, ScriptEntry};
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic::retry::{JitterSource, RetryPolicy};
use tower_anthropic::{Client, ClientBuilder};
use tower_anthropic_queue::{
    Backend, Job, MemoryBackend, Outcome, Queue, QueueError, WorkerConfig, WorkerPool,
};

fn builder(s: &MockServer, key: &str) -> ClientBuilder {
    Client::builder()
        .api_key("sk-ant-test")
        .base_url(s.url())
        .default_header("x-mock-key", key)
        .retry_policy(RetryPolicy::new().jitter_source(JitterSource::seeded(1)))
}

fn req(i: usize) -> CreateMessageRequest {
    CreateMessageRequest::new("claude-sonnet-4-6", 16).user(format!("prompt {i}"))
}

fn jobs(n: usize) -> Vec<Job> {
    (0..n)
        .map(|i| Job::new(format!("job-{i}"), req(i)))
        .collect()
}

async fn all_outcomes(b: &MemoryBackend) -> Vec<Outcome> {
    b.outcomes_after("", usize::MAX).await.unwrap().0
}

#[tokio::test(start_paused = true)]
async fn runs_every_job_once_and_reports_each_outcome_once() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let client = builder(&s, "all").build().unwrap();
    let b = MemoryBackend::new();
    assert_eq!(b.enqueue(jobs(200)).await.unwrap(), 200);
    // Known ids are not enqueued twice.
    assert_eq!(b.enqueue(jobs(10)).await.unwrap(), 0);
    let pool = WorkerPool::new(
        b.clone(),
        client.service(),
        WorkerConfig::new().concurrency(8),
    );
    pool.run_until_empty(std::future::pending()).await;
    let outs = all_outcomes(&b).await;
    assert_eq!(outs.len(), 200);
    let ids: std::collections::BTreeSet<_> = outs.iter().map(|o| o.id().to_owned()).collect();
    assert_eq!(ids.len(), 200);
    assert!(outs.iter().all(Outcome::is_done));
    let c = b.counts().await.unwrap();
    assert_eq!((c.done, c.dead, c.pending()), (200, 0, 0));
    assert_eq!(s.stats().requests, 200);
    // The cursor continues where it left off.
    let (first, cur) = b.outcomes_after("", 150).await.unwrap();
    let (rest, _) = b.outcomes_after(&cur, 150).await.unwrap();
    assert_eq!((first.len(), rest.len()), (150, 50));
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_hands_the_job_out_again_and_the_outcome_is_stored_once() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let client = builder(&s, "lease").build().unwrap();
    let b = MemoryBackend::new();
    b.enqueue(jobs(1)).await.unwrap();
    // A worker takes the job and dies without a word.
    let lost = b
        .reserve("dead-worker", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lost.runs, 1);
    assert!(
        b.reserve("other", Duration::from_secs(5))
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::advance(Duration::from_secs(6)).await;
    let again = b
        .reserve("other", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.job.id.as_str(), again.runs), ("job-0", 2));
    // Both runs finish: the outcome is stored (and reported) once.
    let resp = client.messages().create(req(0)).await.unwrap();
    let outcome = |runs| {
        Outcome::Done(tower_anthropic_queue::JobResult {
            id: "job-0".into(),
            message: resp.clone().into_inner(),
            request_id: None,
            attempts: 1,
            runs,
            fallback_depth: 0,
            metadata: None,
        })
    };
    assert!(b.complete(&again, &outcome(2)).await.unwrap());
    assert!(!b.complete(&lost, &outcome(1)).await.unwrap());
    assert_eq!(all_outcomes(&b).await.len(), 1);
    assert_eq!(b.counts().await.unwrap().done, 1);
}

#[tokio::test(start_paused = true)]
async fn rate_limits_reschedule_without_using_attempts_and_errors_end_as_dead_letters() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    // No retries in the stack: every failure reaches the queue.
    let client = builder(&s, "fate")
        .max_retries(0)
        .pacing(false)
        .build()
        .unwrap();
    let b = MemoryBackend::new();
    let spend = ScriptEntry::status_with_code(429, "enforced_spend_limit_reached");
    let rate = || ScriptEntry::status_with_headers(429, [("retry-after", "7")]);
    // job-0: six rate limits (more than max_attempts), then an answer.
    // job-1: a 400. job-2: a spend limit. job-3: 529s until it runs out of attempts.
    let config = WorkerConfig::new()
        .concurrency(1)
        .max_attempts(3)
        .backoff(Duration::from_secs(1), Duration::from_secs(4));
    s.script("fate", std::iter::repeat_with(rate).take(6));
    s.script("fate", [ScriptEntry::Ok]);
    b.enqueue(jobs(1)).await.unwrap();
    let pool = WorkerPool::new(b.clone(), client.service(), config.clone());
    let t0 = tokio::time::Instant::now();
    pool.clone().run_until_empty(std::future::pending()).await;
    assert!(
        t0.elapsed() >= Duration::from_secs(42),
        "each 429's retry-after was kept"
    );
    match &all_outcomes(&b).await[0] {
        Outcome::Done(r) => assert_eq!(r.runs, 7),
        o => panic!("{o:?}"),
    }
    assert_eq!(b.counts().await.unwrap().rescheduled, 6);

    s.script("fate", [ScriptEntry::status(400), spend]);
    s.script("fate", std::iter::repeat_n(ScriptEntry::status(529), 3));
    b.enqueue(vec![Job::new("job-1", req(1))]).await.unwrap();
    pool.clone().run_until_empty(std::future::pending()).await;
    b.enqueue(vec![Job::new("job-2", req(2))]).await.unwrap();
    pool.clone().run_until_empty(std::future::pending()).await;
    b.enqueue(vec![Job::new("job-3", req(3))]).await.unwrap();
    pool.run_until_empty(std::future::pending()).await;
    let outs = all_outcomes(&b).await;
    let dead = |id: &str| match outs.iter().find(|o| o.id() == id) {
        Some(Outcome::Dead(d)) => d.clone(),
        o => panic!("{id}: {o:?}"),
    };
    let d1 = dead("job-1");
    assert_eq!((d1.reason.as_str(), d1.runs), ("permanent", 1));
    assert_eq!(d1.error.status, Some(400));
    assert_eq!(d1.error.kind.as_deref(), Some("BadRequest"));
    assert!(d1.error.request_id.is_some());
    let d2 = dead("job-2");
    assert_eq!(d2.reason, "permanent");
    assert_eq!(
        d2.error.error_code.as_deref(),
        Some("enforced_spend_limit_reached")
    );
    let d3 = dead("job-3");
    assert_eq!((d3.reason.as_str(), d3.runs), ("max_attempts", 3));
    assert_eq!(d3.error.status, Some(529));
    assert_eq!(d3.job.id, "job-3", "the job travels with its dead letter");
}

#[tokio::test(start_paused = true)]
async fn the_pacers_refusal_is_a_rate_limit_too() {
    // 60 requests a minute, and a pacer that refuses waits over 1 s: jobs are rescheduled at
    // the predicted time, and all finish without a 429 or a dead letter.
    let s = MockServer::start(MockConfig {
        limits: RateLimits {
            requests_per_minute: 60,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let pacer = tower_anthropic::pacing::Pacer::new().max_wait(Duration::from_secs(1));
    let client = builder(&s, "paced").pacer(pacer).build().unwrap();
    let b = MemoryBackend::new();
    b.enqueue(jobs(90)).await.unwrap();
    let pool = WorkerPool::new(
        b.clone(),
        client.service(),
        WorkerConfig::new().concurrency(8),
    );
    pool.run_until_empty(std::future::pending()).await;
    let c = b.counts().await.unwrap();
    assert_eq!((c.done, c.dead), (90, 0));
    assert!(c.rescheduled > 0, "some waits were over max_wait");
    assert_eq!(s.stats().by_status.get(&429), None);
}

#[tokio::test(start_paused = true)]
async fn a_caller_waits_with_a_deadline_and_an_unstarted_job_is_cancelled() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let client = builder(&s, "online").build().unwrap();
    let b = MemoryBackend::new();
    let q = Queue::new(b.clone());
    // No worker yet: the deadline passes with the job unstarted.
    let e = q
        .call(Job::new("late", req(0)), Duration::from_secs(2))
        .await
        .unwrap_err();
    match e {
        QueueError::DeadlinePassed { id, cancelled } => {
            assert_eq!(id, "late");
            assert!(cancelled);
        }
        e => panic!("{e:?}"),
    }
    assert_eq!(
        b.counts().await.unwrap().pending(),
        0,
        "cancelled, not run later"
    );
    // With workers: a spike of callers each get their own answer.
    let pool = WorkerPool::new(
        b.clone(),
        client.service(),
        WorkerConfig::new().concurrency(4),
    );
    let workers = tokio::spawn(pool.run(std::future::pending()));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..50 {
        let q = q.clone();
        calls.spawn(async move {
            q.call(Job::new(format!("c{i}"), req(i)), Duration::from_secs(30))
                .await
        });
    }
    while let Some(r) = calls.join_next().await {
        assert!(r.unwrap().unwrap().is_done());
    }
    assert_eq!(s.stats().requests, 50);
    workers.abort();
}

#[tokio::test(start_paused = true)]
async fn refuses_bad_ids() {
    let b = MemoryBackend::new();
    for id in [String::new(), "x".repeat(300)] {
        let e = b.enqueue(vec![Job::new(id, req(0))]).await.unwrap_err();
        assert!(matches!(e, QueueError::InvalidId(_)), "{e:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn latency_tolerant_jobs_go_through_a_message_batch() {
    use tower_anthropic_queue::BatchLane;
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let client = builder(&s, "lane").build().unwrap();
    let b = MemoryBackend::new();
    let hour = Duration::from_secs(3600);
    let mut jobs: Vec<Job> = (0..30)
        .map(|i| Job::new(format!("slow-{i}"), req(i)).tolerates(hour * 24))
        .collect();
    jobs.extend((0..10).map(|i| Job::new(format!("fast-{i}"), req(i))));
    // Tolerant but invalid: one the API errors (no messages), one refused before sending.
    let mut no_messages = req(0);
    no_messages.messages.clear();
    jobs.push(Job::new("slow-invalid", no_messages).tolerates(hour * 24));
    let mut zero = req(0);
    zero.max_tokens = 0;
    jobs.push(Job::new("slow-zero", zero).tolerates(hour * 24));
    b.enqueue(jobs).await.unwrap();
    let lane = BatchLane::new()
        .linger(Duration::from_secs(1))
        .spawn(b.clone(), client.batches());
    let pool = WorkerPool::new(
        b.clone(),
        client.service(),
        WorkerConfig::new().concurrency(4),
    )
    .batch_lane(lane);
    pool.run_until_empty(std::future::pending()).await;
    let outs = all_outcomes(&b).await;
    assert_eq!(outs.len(), 42);
    let done = outs.iter().filter(|o| o.is_done()).count();
    assert_eq!(done, 40);
    for id in ["slow-invalid", "slow-zero"] {
        match outs.iter().find(|o| o.id() == id) {
            Some(Outcome::Dead(d)) => assert_eq!(d.reason, "permanent", "{id}"),
            o => panic!("{id}: {o:?}"),
        }
    }
    let log = s.log();
    let online = log.iter().filter(|e| e.path == "/v1/messages").count();
    let batches = log
        .iter()
        .filter(|e| e.path == "/v1/messages/batches" && e.method == "POST")
        .count();
    assert_eq!(online, 10, "only the jobs that could not wait went online");
    assert_eq!(batches, 1, "the tolerant ones went as one batch");
}
