//! Pacing shared by several clients through a real Redis (feature `redis`; `REDIS_URL`,
//! default `redis://127.0.0.1:6379`): one quota, no 429s; Redis stopped mid-run costs no call.
//! Without a reachable Redis these tests say so and pass, except under `CI=true`.
//!
//! Real time: the quota is refilled by the Redis clock.
#![cfg(feature = "redis")]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anthropic_mock::{MockConfig, MockServer, RateLimits};
use tower_anthropic::shared::SharedPacer;
use tower_anthropic::{Client, Error, messages::CreateMessageRequest};

fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn reachable(url: &str) -> bool {
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap_or("")
        .to_owned();
    let ok = std::net::TcpStream::connect_timeout(
        &match addr.parse() {
            Ok(a) => a,
            Err(_) => return false,
        },
        Duration::from_secs(1),
    )
    .is_ok();
    if !ok {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("Redis at {url} is required under CI=true");
        }
        eprintln!("SKIPPED: Redis at {url} is unreachable; set REDIS_URL to run this test");
    }
    ok
}

fn client(mock: &MockServer, p: &SharedPacer) -> Client {
    Client::builder()
        .api_key("sk-ant-shared")
        .base_url(mock.url())
        .shared_pacer(p.clone())
        .concurrency_limit(16)
        .build()
        .unwrap()
}

async fn burst(clients: &[Client], each: usize) -> (usize, usize) {
    let mut set = tokio::task::JoinSet::new();
    for c in clients {
        for i in 0..each {
            let c = c.clone();
            set.spawn(async move {
                let req = CreateMessageRequest::new("claude-shared", 8).user(format!("q{i}"));
                c.messages().create(req).await
            });
        }
    }
    let (mut ok, mut failed) = (0, 0);
    while let Some(r) = set.join_next().await {
        match r.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => {
                eprintln!("{e}");
                failed += 1;
            }
        }
    }
    (ok, failed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clients_one_quota_no_429() {
    let url = redis_url();
    if !reachable(&url) {
        return;
    }
    // 1,200 requests a minute; 3 clients (as 3 processes: each its own SharedPacer and
    // connection, 16 calls in flight) send 1,300 calls: 100 beyond the full bucket, about 5 s
    // at the refill rate.
    let mock = MockServer::start(MockConfig {
        limits: RateLimits {
            requests_per_minute: 1200,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let prefix = format!("tower-anthropic-test:shared:{}", std::process::id());
    let pacers: Vec<SharedPacer> = (0..3)
        .map(|_| SharedPacer::redis(&url).unwrap().prefix(prefix.clone()))
        .collect();
    let clients: Vec<Client> = pacers.iter().map(|p| client(&mock, p)).collect();
    // The first answer teaches the limits (the cold start lets one call go alone).
    let (ok, failed) = burst(&clients[..1], 1).await;
    assert_eq!((ok, failed), (1, 0));
    let (ok, failed) = burst(&clients, 433).await;
    assert!(
        pacers.iter().all(SharedPacer::is_shared),
        "no process fell back to local pacing"
    );
    assert_eq!((ok, failed), (1299, 0));
    let s = mock.stats();
    assert_eq!(s.by_status.get(&429), None, "{s:?}");
    assert_eq!(s.requests, 1300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_gate_refuses_the_calls_already_waiting() {
    let url = redis_url();
    if !reachable(&url) {
        return;
    }
    // 60 a minute, learned and used up by 59 calls; five more wait (a second apart).
    let mock = MockServer::start(MockConfig {
        limits: RateLimits {
            requests_per_minute: 60,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let prefix = format!("tower-anthropic-test:gate:{}", std::process::id());
    let local = tower_anthropic::pacing::Pacer::new().max_wait(Duration::from_secs(30));
    let p = SharedPacer::redis(&url)
        .unwrap()
        .prefix(prefix)
        .local(local);
    let c = Client::builder()
        .api_key("sk-ant-shared")
        .base_url(mock.url())
        .default_header("x-mock-key", "gate")
        .shared_pacer(p)
        .build()
        .unwrap();
    let (ok, failed) = burst(std::slice::from_ref(&c), 1).await;
    assert_eq!((ok, failed), (1, 0));
    let (ok, failed) = burst(std::slice::from_ref(&c), 58).await;
    assert_eq!((ok, failed), (58, 0));
    // The first of the five to go meets a 429 asking for an hour: the others, waiting their
    // turn, are refused at once (they would have waited until their next look).
    mock.script(
        "gate",
        [
            serde_json::from_value(serde_json::json!({"kind": "status", "status": 429,
            "headers": {"retry-after": "3600", "anthropic-ratelimit-requests-limit": "60",
                        "anthropic-ratelimit-requests-remaining": "0"}}))
            .unwrap(),
        ],
    );
    let mut set = tokio::task::JoinSet::new();
    for i in 0..5 {
        let c = c.clone();
        set.spawn(async move {
            let req = CreateMessageRequest::new("claude-shared", 8).user(format!("w{i}"));
            c.messages().create(req).await
        });
    }
    let mut paced = 0;
    let all = async {
        while let Some(r) = set.join_next().await {
            match r.unwrap() {
                Err(Error::Paced(e)) => {
                    assert!(e.retry_after() > Duration::from_secs(3000), "{e:?}");
                    paced += 1;
                }
                Err(e) => assert_eq!(e.status(), Some(http::StatusCode::TOO_MANY_REQUESTS)),
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), all)
        .await
        .expect("no call waits the hour");
    assert_eq!(paced, 4, "the four behind the 429");
}

/// A `redis-server` of the test's own on a free port.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn spawn(port: u16) -> Option<Child> {
        Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()
    }
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        Some(Self {
            port,
            child: Self::spawn(port)?,
        })
    }
    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    fn restart(&mut self) {
        self.stop();
        self.child = Self::spawn(self.port).expect("redis-server restarts");
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_stopped_mid_run_costs_no_call_and_the_pacer_rejoins() {
    let Some(mut redis) = OwnRedis::start() else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("redis-server is required under CI=true");
        }
        eprintln!("SKIPPED: no redis-server to start");
        return;
    };
    let url = format!("redis://127.0.0.1:{}", redis.port);
    // Wait for it to listen.
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", redis.port)).is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mock = MockServer::start(MockConfig {
        limits: RateLimits {
            requests_per_minute: 6000,
            ..Default::default()
        },
        ..Default::default()
    })
    .await
    .unwrap();
    let pacer = SharedPacer::redis(&url)
        .unwrap()
        .store_timeout(Duration::from_millis(200));
    let c = client(&mock, &pacer);
    let (ok, failed) = burst(std::slice::from_ref(&c), 50).await;
    assert_eq!((ok, failed), (50, 0));
    assert!(pacer.is_shared());
    redis.stop();
    let (ok, failed) = burst(std::slice::from_ref(&c), 50).await;
    assert_eq!((ok, failed), (50, 0), "no call failed because Redis did");
    assert!(!pacer.is_shared(), "pacing locally");
    redis.restart();
    // Redis is looked for again at most once a second.
    let mut rejoined = false;
    for _ in 0..40 {
        let (ok, failed) = burst(std::slice::from_ref(&c), 5).await;
        assert_eq!((ok, failed), (5, 0));
        if pacer.is_shared() {
            rejoined = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(rejoined, "back on the shared quota");
    assert_eq!(mock.stats().by_status.get(&429), None);
}

#[test]
fn fail_closed_is_a_typed_refusal() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mock = MockServer::start(MockConfig::default()).await.unwrap();
        let p = SharedPacer::redis("redis://127.0.0.1:1")
            .unwrap()
            .store_timeout(Duration::from_millis(100))
            .fail_closed();
        let c = client(&mock, &p);
        let e = c
            .messages()
            .create(CreateMessageRequest::new("claude-m", 8).user("hi"))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, Error::Paced(p) if p.bucket() == "shared store"),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        assert_eq!(mock.stats().requests, 0);
    });
}
