//! HTTP/2 end to end against the mock: prior knowledge over plain HTTP (h2c) and over TLS,
//! calls spread over several connections, a server's cap on streams per connection kept, and
//! the settings refused when absurd.

use anthropic_mock::{MockConfig, MockServer, TlsIdentity};
use tower_anthropic::{Client, ClientBuilder, ConfigError, Error};

mod support;

fn builder(url: &str) -> ClientBuilder {
    Client::builder()
        .api_key(support::KEY)
        .base_url(url)
        .max_retries(0)
}

async fn text_of_stream(c: &Client) -> String {
    let msg = c
        .messages()
        .stream(support::req(16))
        .await
        .unwrap()
        .final_message()
        .await
        .unwrap();
    msg.text()
}

#[tokio::test]
async fn prior_knowledge_speaks_h2c_to_a_plain_http_server() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s.url()).http2_prior_knowledge().build().unwrap();
    let m = c.messages().create(support::req(16)).await.unwrap();
    assert!(!m.text().is_empty());
    assert!(!text_of_stream(&c).await.is_empty());
    let versions: Vec<_> = s.log().iter().map(|l| l.version.clone()).collect();
    assert_eq!(versions, ["HTTP/2.0", "HTTP/2.0"]);
    assert_eq!(
        s.stats().total_connections,
        1,
        "both calls on one connection"
    );
    // Without it, plain HTTP is HTTP/1.1.
    s.reset();
    let c = builder(&s.url()).build().unwrap();
    c.messages().create(support::req(16)).await.unwrap();
    assert_eq!(s.log()[0].version, "HTTP/1.1");
}

#[tokio::test]
async fn calls_are_spread_over_the_http2_connections_asked_for() {
    let s = MockServer::start(MockConfig::default()).await.unwrap();
    let c = builder(&s.url())
        .http2_prior_knowledge()
        .http2_connections(3)
        .build()
        .unwrap();
    for _ in 0..4 {
        c.messages().create(support::req(16)).await.unwrap();
        assert!(!text_of_stream(&c).await.is_empty());
    }
    let stats = s.stats();
    assert_eq!(
        stats.total_connections, 3,
        "one connection per client, reused"
    );
    assert_eq!(stats.requests, 8);
    assert!(s.log().iter().all(|l| l.version == "HTTP/2.0"));
}

#[tokio::test]
async fn a_servers_cap_on_streams_per_connection_is_kept_and_every_call_completes() {
    let s = MockServer::start(MockConfig {
        http2_max_concurrent_streams: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    for connections in [1, 3] {
        s.reset();
        let c = builder(&s.url())
            .http2_prior_knowledge()
            .http2_connections(connections)
            .build()
            .unwrap();
        // Each connection opened by a call first: until the server's SETTINGS arrive a client
        // may open up to 100 streams on a new connection (RFC 9113 lets it assume no limit),
        // and the server refuses those beyond its cap (REFUSED_STREAM, retried by default).
        for _ in 0..connections {
            c.messages().create(support::req(16)).await.unwrap();
        }
        let calls = (0..12).map(|_| {
            let c = c.clone();
            tokio::spawn(async move { text_of_stream(&c).await })
        });
        for call in calls.collect::<Vec<_>>() {
            assert!(!call.await.unwrap().is_empty());
        }
        let stats = s.stats();
        assert_eq!(stats.requests, 12 + connections as u64);
        // hyper-util may open a connection besides those of a burst; the cap holds on each.
        assert!(stats.total_connections >= connections as u64, "{stats:?}");
        assert!(
            stats.max_open_streams <= 2 * stats.total_connections,
            "{} streams open at once over {} connection(s) capped at 2 each",
            stats.max_open_streams,
            stats.total_connections
        );
    }
}

#[tokio::test]
async fn streams_refused_past_a_new_connections_cap_are_sent_again_at_once() {
    // Until the server's SETTINGS arrive, a client may open up to 100 streams on a new
    // connection; the server refuses those past its cap (REFUSED_STREAM) unprocessed.
    let s = MockServer::start(MockConfig {
        http2_max_concurrent_streams: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let burst = |c: Client| async move {
        let calls: Vec<_> = (0..12)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move {
                    let s = c.messages().stream(support::req(16)).await?;
                    let attempts = s.attempts();
                    s.final_message().await.map(|_| attempts)
                })
            })
            .collect();
        let mut results = Vec::new();
        for call in calls {
            results.push(call.await.unwrap());
        }
        results
    };
    // Without retries, what fails is told apart as a refused stream.
    let c = builder(&s.url())
        .http2_prior_knowledge()
        .http2_connections(3)
        .build()
        .unwrap();
    let refused = burst(c)
        .await
        .into_iter()
        .filter_map(Result::err)
        .collect::<Vec<_>>();
    for e in &refused {
        assert!(
            matches!(e, Error::Connection(c) if c.is_stream_refused()),
            "{e:?}"
        );
        assert!(e.is_retryable() && !e.is_unhealthy());
    }
    // With the default retries (a backoff of an hour, were one slept) and circuit breakers:
    // each refused stream is sent again at once, and no circuit counts it.
    s.reset();
    let hour = std::time::Duration::from_secs(3600);
    let c = Client::builder()
        .api_key(support::KEY)
        .base_url(s.url())
        .http2_prior_knowledge()
        .http2_connections(3)
        .retry_policy(tower_anthropic::retry::RetryPolicy::new().backoff(hour, hour, 0.0))
        .circuit_breakers(tower_anthropic::breaker::CircuitBreakers::default())
        .build()
        .unwrap();
    // Were a backoff slept, this would take an hour: it fails after 30 s instead.
    let results = tokio::time::timeout(std::time::Duration::from_secs(30), burst(c.clone()))
        .await
        .expect("refused streams are sent again at once");
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let attempts: u32 = results.iter().map(|r| *r.as_ref().unwrap()).sum();
    let snapshot = c.circuit_breakers().unwrap().snapshot();
    assert!(snapshot.iter().all(|b| b.failures == 0), "{snapshot:?}");
    assert_eq!(
        s.stats().by_status.values().sum::<u64>(),
        12,
        "every stream answered once"
    );
    println!(
        "{} of 12 refused without retries; {} attempts for 12 with them",
        refused.len(),
        attempts
    );
}

#[tokio::test]
async fn over_tls_prior_knowledge_offers_h2_alone_and_connections_spread_calls() {
    let id = TlsIdentity::self_signed(&["127.0.0.1"]).unwrap();
    let s = MockServer::start(MockConfig {
        tls: Some(id.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    // HTTP/2 by ALPN (no prior knowledge), over two connections.
    let c = builder(&s.url())
        .add_root_certificate(id.cert_der.clone())
        .http2_connections(2)
        .build()
        .unwrap();
    for _ in 0..3 {
        c.messages().create(support::req(16)).await.unwrap();
    }
    assert_eq!(s.stats().total_connections, 2);
    // With prior knowledge.
    s.reset();
    let c = builder(&s.url())
        .add_root_certificate(id.cert_der.clone())
        .http2_prior_knowledge()
        .build()
        .unwrap();
    assert!(!text_of_stream(&c).await.is_empty());
    assert!(s.log().iter().all(|l| l.version == "HTTP/2.0"));
}

#[tokio::test]
async fn prior_knowledge_to_a_server_speaking_only_http1_is_a_connection_error() {
    // A server that answers anything with an HTTP/1.1 response and closes.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                let _ = sock.read(&mut buf).await;
                let _ = sock
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    let c = builder(&format!("http://{addr}"))
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let err = c.messages().create(support::req(16)).await.unwrap_err();
    assert!(matches!(err, Error::Connection(_)), "{err:?}");
    assert!(!format!("{err:?} {err}").contains(support::KEY));
}

#[test]
fn absurd_connection_counts_are_refused() {
    for n in [
        0,
        tower_anthropic::transport::MAX_HTTP2_CONNECTIONS + 1,
        usize::MAX,
    ] {
        let err = builder("http://127.0.0.1:9")
            .http2_connections(n)
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::InvalidHttp2Connections(m) if m == n),
            "{err:?}"
        );
        assert!(err.to_string().contains("http2_connections"), "{err}");
    }
    let most = tower_anthropic::transport::MAX_HTTP2_CONNECTIONS;
    assert!(
        builder("http://127.0.0.1:9")
            .http2_connections(most)
            .build()
            .is_ok()
    );
}
