//! TLS end to end against the mock serving HTTPS with a generated certificate: trusted extra
//! roots, HTTP/2 by ALPN, and each TLS failure classified as such.

use anthropic_mock::{MockConfig, MockServer, TlsIdentity};
use tower_anthropic::{Client, ConfigError, Error};

mod support;

async fn tls_mock(identity: &TlsIdentity) -> MockServer {
    MockServer::start(MockConfig {
        tls: Some(identity.clone()),
        ..Default::default()
    })
    .await
    .unwrap()
}

fn client(url: &str, root: Option<&TlsIdentity>) -> Client {
    let mut b = Client::builder()
        .api_key(support::KEY)
        .base_url(url)
        .max_retries(0)
        .pacing(false);
    if let Some(id) = root {
        b = b.add_root_certificate(id.cert_der.clone());
    }
    b.build().unwrap()
}

fn is_tls(r: Result<(), Error>) -> bool {
    matches!(r, Err(Error::Connection(c)) if c.is_tls())
}

async fn create(c: &Client) -> Result<(), Error> {
    c.messages().create(support::req(16)).await.map(|_| ())
}

#[tokio::test]
async fn a_trusted_extra_root_gives_https_and_http2_by_alpn() {
    let id = TlsIdentity::self_signed(&["127.0.0.1"]).unwrap();
    let s = tls_mock(&id).await;
    assert!(s.url().starts_with("https://"));
    let c = client(&s.url(), Some(&id));
    create(&c).await.unwrap();
    let msg = c
        .messages()
        .stream(support::req(16))
        .await
        .unwrap()
        .final_message()
        .await
        .unwrap();
    assert!(!msg.text().is_empty());
    let versions: Vec<_> = s.log().iter().map(|l| l.version.clone()).collect();
    assert_eq!(versions, ["HTTP/2.0", "HTTP/2.0"], "ALPN chose h2");
}

#[tokio::test]
async fn tls_failures_are_classified_as_tls() {
    // Untrusted: a self-signed certificate nobody added.
    let id = TlsIdentity::self_signed(&["127.0.0.1"]).unwrap();
    let s = tls_mock(&id).await;
    assert!(is_tls(create(&client(&s.url(), None)).await), "untrusted");
    // The wrong name: trusted, but issued for another host.
    let other = TlsIdentity::self_signed(&["example.test"]).unwrap();
    let s = tls_mock(&other).await;
    assert!(
        is_tls(create(&client(&s.url(), Some(&other))).await),
        "wrong name"
    );
    // Expired.
    let old = TlsIdentity::expired(&["127.0.0.1"]).unwrap();
    let s = tls_mock(&old).await;
    assert!(
        is_tls(create(&client(&s.url(), Some(&old))).await),
        "expired"
    );
}

#[tokio::test]
async fn plain_http_to_a_tls_port_is_a_connection_error() {
    let id = TlsIdentity::self_signed(&["127.0.0.1"]).unwrap();
    let s = tls_mock(&id).await;
    let url = s.url().replacen("https://", "http://", 1);
    let e = create(&client(&url, Some(&id))).await.unwrap_err();
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert!(e.is_retryable());
}

#[test]
fn a_root_that_is_not_a_certificate_is_refused_at_build() {
    let r = Client::builder()
        .api_key("k")
        .add_root_certificate(b"not a certificate".to_vec())
        .build();
    assert!(
        matches!(r, Err(ConfigError::InvalidRootCertificate(_))),
        "{r:?}"
    );
}
