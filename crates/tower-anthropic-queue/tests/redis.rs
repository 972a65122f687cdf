//! The Redis backend against a real Redis (`REDIS_URL`, default `redis://127.0.0.1:6379`):
//! several pools sharing one queue, a pool that dies mid-run, dead letters, reclaiming leases,
//! a Redis restart. Without a reachable Redis these tests say so and pass, except under
//! `CI=true`, where they fail.
//!
//! They run in real time: Redis keeps its own clock (leases, the delayed set), which paused
//! tokio time cannot move.

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, ScriptEntry};
use tower_anthropic::Client;
use tower_anthropic::messages::CreateMessageRequest;
use tower_anthropic_queue::{Backend, Job, Outcome, Queue, RedisBackend, WorkerConfig, WorkerPool};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A backend under a prefix of this test's own, emptied; `None` (and a message) when Redis is
/// unreachable outside CI.
async fn backend(test: &str) -> Option<RedisBackend> {
    backend_at(&redis_url(), test).await
}

async fn backend_at(url: &str, test: &str) -> Option<RedisBackend> {
    let prefix = format!("tower-anthropic-test:{test}:{}", std::process::id());
    match RedisBackend::connect(url, &prefix).await {
        Ok(b) => {
            b.clear().await.unwrap();
            Some(b)
        }
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("Redis at {url} is required under CI=true: {e}")
        }
        Err(e) => {
            eprintln!(
                "SKIPPED: Redis at {url} is unreachable ({e}); set REDIS_URL to run this test"
            );
            None
        }
    }
}

fn req(i: usize) -> CreateMessageRequest {
    CreateMessageRequest::new("claude-sonnet-4-6", 16).user(format!("prompt {i}"))
}

fn client(s: &MockServer, key: &str) -> Client {
    Client::builder()
        .api_key("sk-ant-test")
        .base_url(s.url())
        .default_header("x-mock-key", key)
        .build()
        .unwrap()
}

async fn all(b: &RedisBackend) -> Vec<Outcome> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let (batch, next) = b.outcomes_after(&cursor, 500).await.unwrap();
        if batch.is_empty() {
            return out;
        }
        out.extend(batch);
        cursor = next;
    }
}

fn config(name: &str) -> WorkerConfig {
    WorkerConfig::new()
        .concurrency(8)
        .consumer(name)
        .idle_poll(Duration::from_millis(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_pools_one_dies_a_fresh_one_finishes_nothing_lost_or_doubled() {
    let Some(b) = backend("pools").await else {
        return;
    };
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    // Every 50th job meets a 400: those end as dead letters.
    let jobs: Vec<Job> = (0..600)
        .map(|i| {
            let mut r = req(i);
            if i % 50 == 0 {
                r.max_tokens = 0; // the mock answers 400 invalid_request_error
            }
            Job::new(format!("job-{i}"), r)
        })
        .collect();
    assert_eq!(b.enqueue(jobs).await.unwrap(), 600);
    let c = client(&s, "pools");
    let mut pools = Vec::new();
    for name in ["a", "b", "c"] {
        let pool = WorkerPool::new(
            b.clone(),
            c.service(),
            config(name).lease(Duration::from_secs(1)),
        );
        pools.push(tokio::spawn(pool.run(std::future::pending())));
    }
    // Pool "a" dies abruptly once a third is done: its in-flight jobs stay leased.
    while b.counts().await.unwrap().done + b.counts().await.unwrap().dead < 200 {
        tokio::task::yield_now().await;
    }
    pools[0].abort();
    // A fresh pool joins.
    let fresh = WorkerPool::new(
        b.clone(),
        c.service(),
        config("d").lease(Duration::from_secs(1)),
    );
    fresh.run_until_empty(std::future::pending()).await;
    for p in &pools[1..] {
        p.abort();
    }
    let outs = all(&b).await;
    let ids: BTreeSet<&str> = outs.iter().map(Outcome::id).collect();
    assert_eq!(outs.len(), 600, "each outcome reported once");
    assert_eq!(ids.len(), 600, "no job lost");
    let dead: Vec<_> = outs
        .iter()
        .filter_map(|o| match o {
            Outcome::Dead(d) => Some(d),
            _ => None,
        })
        .collect();
    assert_eq!(dead.len(), 12);
    for d in dead {
        assert_eq!(d.error.status, Some(400));
        assert_eq!(d.error.error_type.as_deref(), Some("invalid_request_error"));
        assert_eq!(d.reason, "permanent");
    }
    let counts = b.counts().await.unwrap();
    assert_eq!((counts.done, counts.dead, counts.pending()), (588, 12, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_lease_is_claimed_and_the_outcome_stored_once() {
    let Some(b) = backend("lease").await else {
        return;
    };
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "lease");
    b.enqueue(vec![Job::new("only", req(0))]).await.unwrap();
    let lost = b
        .reserve("gone", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(lost.runs, 1);
    // Within its lease nobody else gets it; a zero lease claims it at once.
    assert!(
        b.reserve("other", Duration::from_secs(60))
            .await
            .unwrap()
            .is_none()
    );
    let again = b.reserve("other", Duration::ZERO).await.unwrap().unwrap();
    assert_eq!((again.job.id.as_str(), again.runs), ("only", 2));
    let resp = c.messages().create(req(0)).await.unwrap();
    let outcome = Outcome::Done(tower_anthropic_queue::JobResult {
        id: "only".into(),
        message: resp.into_inner(),
        request_id: None,
        attempts: 1,
        runs: 2,
        fallback_depth: 0,
        metadata: None,
    });
    assert!(b.complete(&again, &outcome).await.unwrap());
    assert!(!b.complete(&lost, &outcome).await.unwrap(), "stored once");
    assert_eq!(all(&b).await.len(), 1, "reported once");
    let counts = b.counts().await.unwrap();
    assert_eq!((counts.done, counts.pending()), (1, 0));
    // A finished id is not enqueued again.
    assert_eq!(b.enqueue(vec![Job::new("only", req(0))]).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_wait_in_the_delayed_set_and_deadlines_cancel() {
    let Some(b) = backend("delayed").await else {
        return;
    };
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = Client::builder()
        .api_key("sk-ant-test")
        .base_url(s.url())
        .default_header("x-mock-key", "delayed")
        .max_retries(0)
        .build()
        .unwrap();
    s.script(
        "delayed",
        [ScriptEntry::status_with_headers(
            429,
            [("retry-after-ms", "200")],
        )],
    );
    let q = Queue::new(b.clone()).poll_interval(Duration::from_millis(5));
    // Not started before its deadline (no worker): cancelled, and never run later.
    let e = q
        .call(Job::new("cancel-me", req(9)), Duration::from_millis(30))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            tower_anthropic_queue::QueueError::DeadlinePassed {
                cancelled: true,
                ..
            }
        ),
        "{e:?}"
    );
    let pool = WorkerPool::new(b.clone(), c.service(), config("w").max_attempts(1));
    let workers = tokio::spawn(pool.run(std::future::pending()));
    let out = q
        .call(Job::new("limited", req(0)), Duration::from_secs(30))
        .await
        .unwrap();
    match out {
        // A 429 does not use up an attempt: with max_attempts 1 it still ran again.
        Outcome::Done(r) => assert_eq!(r.runs, 2),
        o => panic!("{o:?}"),
    }
    let counts = b.counts().await.unwrap();
    assert_eq!(counts.rescheduled, 1);
    assert_eq!(counts.pending(), 0, "the cancelled job was dropped");
    assert!(b.outcome("cancel-me").await.unwrap().is_none());
    assert_eq!(s.stats().requests, 2);
    workers.abort();
}

/// A `redis-server` of this test's own, on a free port, with an append-only file so a
/// restart keeps what was acknowledged.
struct OwnRedis {
    port: u16,
    dir: std::path::PathBuf,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16, dir: &std::path::Path) -> Option<Child> {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .args(["--appendfsync", "always", "--dir"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    }

    fn new() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let dir = std::env::temp_dir().join(format!("tower-anthropic-redis-{port}"));
        std::fs::create_dir_all(&dir).ok()?;
        let child = Self::start(port, &dir)?;
        Some(Self { port, dir, child })
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::start(self.port, &self.dir).expect("redis-server restarts");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn connect_retrying(url: &str, test: &str) -> Option<RedisBackend> {
    for _ in 0..100 {
        if RedisBackend::connect(url, test).await.is_ok() {
            return backend_at(url, test).await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    backend_at(url, test).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_run_loses_nothing() {
    let Some(mut redis) = OwnRedis::new() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("redis-server is required under CI=true");
        }
        eprintln!("SKIPPED: no redis-server to start");
        return;
    };
    let Some(b) = connect_retrying(&redis.url(), "restart").await else {
        return;
    };
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = client(&s, "restart");
    let jobs: Vec<Job> = (0..400)
        .map(|i| Job::new(format!("r{i}"), req(i)))
        .collect();
    b.enqueue(jobs).await.unwrap();
    let pool = WorkerPool::new(
        b.clone(),
        c.service(),
        config("r").lease(Duration::from_secs(2)),
    );
    let done = b.clone();
    let run = tokio::spawn(pool.run_until_empty(std::future::pending()));
    while done.counts().await.map_or(0, |c| c.done) < 100 {
        tokio::task::yield_now().await;
    }
    let before = done.counts().await.unwrap();
    assert!(
        before.pending() > 0,
        "the restart comes mid-run: {before:?}"
    );
    redis.restart();
    run.await.unwrap();
    let outs = all(&b).await;
    let ids: BTreeSet<&str> = outs.iter().map(Outcome::id).collect();
    assert_eq!(ids.len(), 400, "every job finished");
    assert_eq!(outs.len(), 400, "each reported once");
    assert_eq!(b.counts().await.unwrap().done, 400);
}
