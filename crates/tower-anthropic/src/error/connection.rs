//! No (complete) response: [`ConnectionError`], its kind found by walking the source chain.

use std::fmt;
use std::sync::Arc;

use super::{BoxError, Trail};

/// What kind of connection failure (private: read it through the `is_*` predicates, so new
/// kinds can be told apart later without breaking a `match`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Refused,
    StreamRefused,
    Reset,
    Closed,
    Tls,
    Dns,
    ConnectTimeout,
    Other,
}

/// No (complete) response was had: the connection was refused, reset or closed early, TLS or
/// DNS failed, or connecting timed out. The cause stays reachable through `source()`.
#[derive(Debug, Clone)]
pub struct ConnectionError {
    kind: Kind,
    source: Arc<dyn std::error::Error + Send + Sync>,
    pub(crate) trail: Trail,
}

impl ConnectionError {
    /// Wraps a transport error, classifying it by walking its source chain.
    pub(crate) fn new(source: impl Into<BoxError>) -> Self {
        let source: BoxError = source.into();
        let kind = classify(&*source);
        Self {
            kind,
            source: Arc::from(source),
            trail: Trail::default(),
        }
    }

    /// The server refused the connection.
    pub fn is_refused(&self) -> bool {
        self.kind == Kind::Refused
    }
    /// The server refused an HTTP/2 stream without processing its request (`REFUSED_STREAM`,
    /// RFC 9113 section 8.7), e.g. one sent past its cap on open streams before its settings
    /// arrived: safe to send again at once, and no sign of an unhealthy server.
    pub fn is_stream_refused(&self) -> bool {
        self.kind == Kind::StreamRefused
    }
    /// The connection was reset or aborted.
    pub fn is_reset(&self) -> bool {
        self.kind == Kind::Reset
    }
    /// The connection closed before the response (or its body) was complete.
    pub fn is_closed(&self) -> bool {
        self.kind == Kind::Closed
    }
    /// The TLS handshake or session failed.
    pub fn is_tls(&self) -> bool {
        self.kind == Kind::Tls
    }
    /// The host name did not resolve.
    pub fn is_dns(&self) -> bool {
        self.kind == Kind::Dns
    }
    /// Connecting took longer than the connect timeout.
    pub fn is_connect_timeout(&self) -> bool {
        self.kind == Kind::ConnectTimeout
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            Kind::Refused => "connection refused",
            Kind::StreamRefused => "HTTP/2 stream refused before processing",
            Kind::Reset => "connection reset",
            Kind::Closed => "connection closed before the response was complete",
            Kind::Tls => "TLS failure",
            Kind::Dns => "DNS lookup failed",
            Kind::ConnectTimeout => "connect timed out",
            Kind::Other => "connection error",
        };
        // The innermost cause says the most; the chain stays in `source()`.
        let mut inner: &(dyn std::error::Error + 'static) = &*self.source;
        while let Some(next) = inner.source() {
            inner = next;
        }
        write!(f, "{what}: {inner}")
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

/// Finds the kind by walking the chain: typed causes first (io, rustls, hyper), then the
/// texts hyper-util gives its DNS and connect-timeout failures (they have no type of their
/// own to downcast to).
fn classify(e: &(dyn std::error::Error + 'static)) -> Kind {
    use std::io::ErrorKind as Io;
    let mut kind = Kind::Other;
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            // An io::Error's `source()` skips the error it wraps (a TLS failure arrives as
            // io::Errors wrapping the rustls error): descend through `get_ref()` instead.
            if let Some(inner) = io.get_ref() {
                let inner_kind = classify(inner);
                if inner_kind != Kind::Other {
                    return inner_kind;
                }
            }
            match io.kind() {
                Io::ConnectionRefused => return Kind::Refused,
                Io::ConnectionReset | Io::ConnectionAborted | Io::BrokenPipe => {
                    return Kind::Reset;
                }
                Io::TimedOut => kind = Kind::ConnectTimeout,
                Io::UnexpectedEof => kind = Kind::Closed,
                _ => {}
            }
        }
        if err.downcast_ref::<rustls::Error>().is_some() {
            return Kind::Tls;
        }
        if let Some(h2) = err.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return Kind::StreamRefused;
            }
        }
        if let Some(h) = err.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() || h.is_canceled() {
                kind = Kind::Closed;
            }
        }
        let text = err.to_string();
        if text.starts_with("dns error") {
            return Kind::Dns;
        }
        if text.contains("connect timeout") || text.contains("HTTP connect timeout") {
            kind = Kind::ConnectTimeout;
        }
        cur = err.source();
    }
    kind
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_http2_stream_is_told_apart() {
        let e = ConnectionError::new(h2::Error::from(h2::Reason::REFUSED_STREAM));
        assert!(e.is_stream_refused());
        assert!(e.to_string().starts_with("HTTP/2 stream refused"), "{e}");
        // Other stream resets are other connection errors.
        let e = ConnectionError::new(h2::Error::from(h2::Reason::INTERNAL_ERROR));
        assert!(!e.is_stream_refused());
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "no");
        assert!(ConnectionError::new(io).is_refused());
    }
}
