//! The HTTP transport (hyper-util's pooled client over rustls with the `ring` provider) and
//! the [`Endpoint`] that turns an API path and a JSON body into a ready `http::Request`:
//! base URL, `x-api-key` (marked sensitive), `anthropic-version`, `content-type`,
//! `user-agent`.

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

/// A URL as it may be shown: any `user:password@` replaced by `<redacted>@`.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}<redacted>{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// The API paths an endpoint must be able to reach (checked when it is built).
const API_PATHS: &[&str] = &["/v1/messages", "/v1/messages/count_tokens"];

/// The default base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The default `anthropic-version`.
pub const DEFAULT_API_VERSION: &str = "2023-06-01";
/// `user-agent` sent by default.
pub(crate) const USER_AGENT_VALUE: &str = concat!("tower-anthropic/", env!("CARGO_PKG_VERSION"));

/// The request body every layer sees: whole bytes, so a request can be replayed on retry.
pub type RequestBody = Full<Bytes>;

/// The pooled HTTP client: HTTP/1.1 and HTTP/2 (by ALPN) over rustls, or plain HTTP.
pub(crate) type HttpClient = HyperClient<HttpsConnector<HttpConnector>, RequestBody>;

/// The pooled HTTP client behind one `Arc`: the layers above clone their inner service for
/// every call (and retry for every attempt), and a clone of this is one reference count
/// rather than a copy of the client's handles.
///
/// It holds one hyper-util client per HTTP/2 connection asked for
/// ([`TransportConfig::http2_connections`]), each with its own pool, and gives each request to
/// the next in turn: hyper-util keeps a single HTTP/2 connection per host, and a server caps
/// the streams open at once on a connection (SETTINGS_MAX_CONCURRENT_STREAMS), so streams
/// beyond that cap would wait for one to end however many the caller opens.
#[derive(Clone)]
pub(crate) struct SharedHttpClient(std::sync::Arc<Clients>);

pub(crate) struct Clients {
    clients: Box<[HttpClient]>,
    next: std::sync::atomic::AtomicUsize,
}

impl Clients {
    fn pick(&self) -> &HttpClient {
        if self.clients.len() == 1 {
            return &self.clients[0];
        }
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }
}

impl tower::Service<Request<RequestBody>> for SharedHttpClient {
    type Response = http::Response<hyper::body::Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        // hyper-util's client is always ready: it waits for a connection in the call.
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<RequestBody>) -> Self::Future {
        self.0.pick().request(req)
    }
}

/// Settings of the HTTP client.
#[derive(Clone)]
pub(crate) struct TransportConfig {
    /// How long connecting may take (TCP and TLS). Default 5 s, as the Python SDK.
    pub(crate) connect_timeout: Duration,
    /// How long an idle pooled connection is kept. Default 90 s. Really enforced: the pool
    /// has a timer.
    pub(crate) pool_idle_timeout: Duration,
    /// Idle connections kept per host. Default: no limit.
    pub(crate) pool_max_idle_per_host: usize,
    /// Root certificates trusted besides the webpki roots (DER), e.g. a corporate proxy's.
    pub(crate) extra_roots: Vec<Vec<u8>>,
    /// Speak HTTP/2 from the first byte, also over plain HTTP (h2c). Default: off (HTTP/1.1
    /// over plain HTTP; over TLS, HTTP/2 or HTTP/1.1 as ALPN settles).
    pub(crate) http2_prior_knowledge: bool,
    /// HTTP/2 connections per host that requests are spread over, in turn. Default 1.
    pub(crate) http2_connections: usize,
}

/// The most HTTP/2 connections per host a client may be asked to spread requests over.
pub const MAX_HTTP2_CONNECTIONS: usize = 1024;

impl fmt::Debug for TransportConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransportConfig")
            .field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout)
            .field("pool_max_idle_per_host", &self.pool_max_idle_per_host)
            .field("extra_roots", &self.extra_roots.len())
            .field("http2_prior_knowledge", &self.http2_prior_knowledge)
            .field("http2_connections", &self.http2_connections)
            .finish()
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: usize::MAX,
            extra_roots: Vec::new(),
            http2_prior_knowledge: false,
            http2_connections: 1,
        }
    }
}

/// A root certificate that cannot be trusted (not DER-encoded X.509).
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid root certificate #{index}: {reason}")]
pub struct InvalidRootCertificate {
    index: usize,
    reason: String,
}

/// The TLS provider: the process default when the application installed one (to use
/// aws-lc-rs, with its post-quantum key exchange, install it with
/// `CryptoProvider::install_default` before building a client), else ring's.
fn tls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    if let Some(p) = rustls::crypto::CryptoProvider::get_default() {
        return p.clone();
    }
    // From rustls 0.23.48 this constructor is deprecated (ring has no post-quantum key
    // exchange), and ring has no other: allowed here, in this one place, so no user build
    // warns. CI checks the newest compatible versions to see the next change first.
    #[allow(deprecated)]
    let ring = rustls::crypto::ring::default_provider();
    std::sync::Arc::new(ring)
}

/// The TLS settings: the webpki roots plus any extra roots, with [`tls_provider`].
fn tls_config(config: &TransportConfig) -> Result<rustls::ClientConfig, InvalidRootCertificate> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for (index, der) in config.extra_roots.iter().enumerate() {
        let cert = rustls_pki_types::CertificateDer::from(der.clone());
        roots.add(cert).map_err(|e| InvalidRootCertificate {
            index,
            reason: e.to_string(),
        })?;
    }
    let tls = rustls::ClientConfig::builder_with_provider(tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| InvalidRootCertificate {
            index: 0,
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tls)
}

/// Builds the pooled HTTP client (one per HTTP/2 connection asked for, at least one, at most
/// [`MAX_HTTP2_CONNECTIONS`]). Needs a tokio runtime when used, not when built.
pub(crate) fn http_client(
    config: &TransportConfig,
) -> Result<SharedHttpClient, InvalidRootCertificate> {
    let tls = tls_config(config)?;
    let n = config.http2_connections.clamp(1, MAX_HTTP2_CONNECTIONS);
    let clients = (0..n)
        .map(|_| one_http_client(config, tls.clone()))
        .collect();
    Ok(SharedHttpClient(std::sync::Arc::new(Clients {
        clients,
        next: std::sync::atomic::AtomicUsize::new(0),
    })))
}

fn one_http_client(config: &TransportConfig, tls: rustls::ClientConfig) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(config.connect_timeout));
    let tls = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    // With prior knowledge, ALPN offers h2 alone: a server that would pick HTTP/1.1 fails the
    // handshake rather than getting HTTP/2 frames it does not expect.
    let https = if config.http2_prior_knowledge {
        tls.enable_http2().wrap_connector(http)
    } else {
        tls.enable_http1().enable_http2().wrap_connector(http)
    };
    HyperClient::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        // Without a pool timer hyper-util never evicts idle connections.
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(config.pool_idle_timeout)
        .pool_max_idle_per_host(config.pool_max_idle_per_host)
        .http2_only(config.http2_prior_knowledge)
        .build(https)
}

/// An API key. Its `Debug` never shows it, and the header made from it is marked sensitive.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(HeaderValue);

impl ApiKey {
    /// Wraps a key; `None` if it is empty or not a valid header value.
    pub fn new(key: &str) -> Option<Self> {
        let key = key.trim();
        // Visible ASCII only: a tab, a control or a non-ASCII character is a paste error, and
        // would be sent raw.
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return None;
        }
        let mut v = HeaderValue::from_str(key).ok()?;
        v.set_sensitive(true);
        Some(ApiKey(v))
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where and how requests are sent: base URL (with any path prefix), key, version, and any
/// default headers. Builds `http::Request`s for the layers below.
#[derive(Clone)]
pub struct Endpoint {
    base: String,
    api_key: ApiKey,
    headers: HeaderMap,
    /// `headers` with the key: what every request starts with (one copy, no insert).
    request_headers: HeaderMap,
    /// `{base}/v1/messages`, parsed once: the path almost every request takes.
    messages_uri: Uri,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("base_url", &self.base)
            .field("api_key", &self.api_key)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A base URL that cannot be used.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid base URL {url:?}: {reason}")]
pub struct InvalidBaseUrl {
    url: String,
    reason: &'static str,
}

impl Endpoint {
    /// An endpoint at `base_url` (`http` or `https`; a path prefix is kept, so
    /// `http://host:8080/prefix` sends to `/prefix/v1/messages`). A base URL ending in `/v1`
    /// (as some SDK settings write it) is taken without it: the API paths add `/v1`
    /// themselves, and `/v1/v1/messages` is no path the API has.
    pub fn new(base_url: &str, api_key: ApiKey) -> Result<Self, InvalidBaseUrl> {
        // Kept for the message: no credential, and not 64 KiB of it.
        let bad = |reason| InvalidBaseUrl {
            url: redact_userinfo(base_url).chars().take(200).collect(),
            reason,
        };
        if base_url.contains('#') {
            return Err(bad("a fragment is not allowed"));
        }
        let uri: Uri = base_url.parse().map_err(|_| bad("not a URL"))?;
        match uri.scheme_str() {
            Some("http") | Some("https") => {}
            _ => return Err(bad("the scheme must be http or https")),
        }
        let Some(authority) = uri.authority() else {
            return Err(bad("no host"));
        };
        if authority.as_str().contains('@') {
            // A credential in the URL would be sent to whoever answers and shown in logs.
            return Err(bad("user information (user:password@) is not allowed"));
        }
        if authority.host().is_empty() {
            return Err(bad("no host"));
        }
        let has_port = authority
            .as_str()
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.ends_with(']'));
        if has_port && authority.port_u16().is_none_or(|p| p == 0) {
            return Err(bad("the port must be a number from 1 to 65535"));
        }
        if uri.query().is_some() {
            return Err(bad("a query string is not allowed"));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            "anthropic-version",
            HeaderValue::from_static(DEFAULT_API_VERSION),
        );
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
        let trimmed = base_url.trim_end_matches('/');
        let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed).to_owned();
        let messages_uri = format!("{base}/v1/messages")
            .parse()
            .map_err(|_| bad("too long, or not a URL once an API path is added"))?;
        // Every path the client sends to must make a valid URI, checked now rather than at
        // the first call.
        for path in API_PATHS {
            format!("{base}{path}")
                .parse::<Uri>()
                .map_err(|_| bad("too long, or not a URL once an API path is added"))?;
        }
        let mut endpoint = Self {
            base,
            api_key,
            request_headers: HeaderMap::new(),
            headers,
            messages_uri,
        };
        endpoint.update_request_headers();
        Ok(endpoint)
    }

    /// Headers an HTTP client adds to a request as it sends it (`host`, `content-length`).
    const SPARE_HEADERS: usize = 2;

    fn update_request_headers(&mut self) {
        let mut h = self.headers.clone();
        // The key last: a default header of the same name does not replace it.
        h.insert("x-api-key", self.api_key.0.clone());
        // Room for what the client below adds (`host`, `content-length`) without regrowing
        // the copy's table on every call (a copy keeps the table's size).
        h.reserve(Self::SPARE_HEADERS);
        self.request_headers = h;
    }

    /// The base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sets a header sent with every request (replacing any default of the same name), e.g.
    /// `anthropic-version` or `anthropic-beta`. A credential (`authorization`,
    /// `proxy-authorization`; the key is the endpoint's own) is marked sensitive, so whatever
    /// logs a request below does not show it.
    pub fn set_header(&mut self, name: HeaderName, mut value: HeaderValue) {
        if name == http::header::AUTHORIZATION || name == http::header::PROXY_AUTHORIZATION {
            value.set_sensitive(true);
        }
        self.headers.insert(name, value);
        self.update_request_headers();
    }

    /// A `POST {base}{path}` request with the JSON `body` and every header. A `path` that
    /// does not make a valid URI with the base (only possible for a path other than the API's
    /// own, which are checked when the endpoint is built) gets a relative URI that no client
    /// sends anywhere: the call fails, without a panic and without reaching a server.
    pub fn post(&self, path: &str, body: Bytes) -> Request<RequestBody> {
        self.request(Method::POST, path, body)
    }

    /// A `{method} {base}{path}` request with `body` and every header (as [`post`](Self::post)).
    pub fn request(&self, method: Method, path: &str, body: Bytes) -> Request<RequestBody> {
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = if path == "/v1/messages" {
            self.messages_uri.clone()
        } else {
            format!("{}{}", self.base, path)
                .parse()
                .unwrap_or_else(|_| Uri::from_static("/"))
        };
        // A copy of the map built once (no name hashed again). A header the layers below add
        // then moves the copy to a larger one; the `Client` spares its calls that by giving
        // its endpoint the retry count of a first attempt (`x-stainless-retry-count: 0`),
        // which the retry layer then has no need to add.
        *req.headers_mut() = self.request_headers.clone();
        req
    }
}

/// The same request again: method, URI, version, headers, extensions and body (a body of
/// shared bytes, as [`RequestBody`] is, copies no JSON). What the retry and fallback layers
/// send for another attempt.
pub(crate) fn copy_request<B: Clone>(req: &http::Request<B>) -> http::Request<B> {
    let mut next = http::Request::new(req.body().clone());
    *next.method_mut() = req.method().clone();
    *next.uri_mut() = req.uri().clone();
    *next.version_mut() = req.version();
    *next.headers_mut() = req.headers().clone();
    *next.extensions_mut() = req.extensions().clone();
    next
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_ending_in_v1_is_taken_without_it() {
        for url in [
            "http://127.0.0.1:9/v1",
            "http://127.0.0.1:9/v1/",
            "http://127.0.0.1:9",
        ] {
            let e = Endpoint::new(url, ApiKey::new("k").unwrap()).unwrap();
            assert_eq!(e.messages_uri, "http://127.0.0.1:9/v1/messages", "{url}");
        }
        // A prefix is kept; only a last `/v1` goes.
        let e = Endpoint::new("http://127.0.0.1:9/proxy/v1", ApiKey::new("k").unwrap()).unwrap();
        assert_eq!(e.messages_uri, "http://127.0.0.1:9/proxy/v1/messages");
        let e = Endpoint::new("http://127.0.0.1:9/v1x", ApiKey::new("k").unwrap()).unwrap();
        assert_eq!(e.messages_uri, "http://127.0.0.1:9/v1x/v1/messages");
    }

    #[test]
    fn a_request_has_room_for_the_headers_the_client_adds() {
        let key = ApiKey::new("sk-ant-secret").unwrap();
        let mut e = Endpoint::new("http://127.0.0.1:9", key).unwrap();
        // As the `Client` has it: the first attempt's retry count among its headers.
        e.set_header(
            HeaderName::from_static(crate::retry::RETRY_COUNT_HEADER),
            HeaderValue::from_static("0"),
        );
        let mut req = e.post("/v1/messages", Bytes::from_static(b"{}"));
        let room = req.headers().capacity();
        req.headers_mut()
            .insert(http::header::HOST, HeaderValue::from_static("127.0.0.1:9"));
        req.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("2"));
        assert_eq!(req.headers().capacity(), room, "the table was not regrown");
    }

    #[test]
    fn builds_requests_with_prefix_and_headers() {
        let key = ApiKey::new("sk-ant-secret").unwrap();
        let e = Endpoint::new("http://127.0.0.1:9/prefix/", key).unwrap();
        let req = e.post("/v1/messages", Bytes::from_static(b"{}"));
        assert_eq!(req.uri(), "http://127.0.0.1:9/prefix/v1/messages");
        assert_eq!(req.method(), Method::POST);
        assert!(req.headers()["x-api-key"].is_sensitive());
        assert_eq!(req.headers()["anthropic-version"], DEFAULT_API_VERSION);
        assert_eq!(req.headers()["content-type"], "application/json");
        assert!(
            req.headers()["user-agent"]
                .to_str()
                .unwrap()
                .starts_with("tower-anthropic/")
        );
        assert!(!format!("{e:?} {req:?}").contains("secret"));
        // Headers set later are sent; the key stays the endpoint's own.
        let mut e = e;
        e.set_header(
            HeaderName::from_static("anthropic-beta"),
            HeaderValue::from_static("b"),
        );
        e.set_header(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("other"),
        );
        let req = e.post("/v1/messages", Bytes::from_static(b"{}"));
        assert_eq!(req.headers()["anthropic-beta"], "b");
        assert_eq!(req.headers()["x-api-key"], "sk-ant-secret");
        assert_eq!(req.headers().get_all("x-api-key").iter().count(), 1);
        // Credentials set as headers are marked sensitive; other headers are not.
        e.set_header(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer t"),
        );
        e.set_header(
            http::header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic p"),
        );
        let req = e.post("/v1/messages", Bytes::from_static(b"{}"));
        assert!(req.headers()["authorization"].is_sensitive());
        assert!(req.headers()["proxy-authorization"].is_sensitive());
        assert!(!req.headers()["anthropic-beta"].is_sensitive());
    }

    #[test]
    fn rejects_bad_base_urls_and_keys() {
        let key = || ApiKey::new("k").unwrap();
        for bad in [
            "",
            "api.anthropic.com",
            "ftp://host",
            "http://",
            "http://h/?q=1",
            "not a url",
        ] {
            assert!(Endpoint::new(bad, key()).is_err(), "{bad}");
        }
        assert!(ApiKey::new("").is_none());
        assert!(ApiKey::new("  ").is_none());
        assert!(ApiKey::new("bad\nkey").is_none());
    }
}
