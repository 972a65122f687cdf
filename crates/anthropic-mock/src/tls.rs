//! TLS for the mock: a generated self-signed certificate, served with ALPN (`h2`, then
//! `http/1.1`), so clients can be tested over HTTPS and HTTP/2 on loopback.

use std::sync::Arc;

/// A certificate and its private key, DER-encoded.
#[derive(Clone)]
pub struct TlsIdentity {
    /// The certificate (self-signed: trust it as a root on the client).
    pub cert_der: Vec<u8>,
    /// The PKCS#8 private key.
    pub key_der: Vec<u8>,
}

impl std::fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("cert_der", &format_args!("{} bytes", self.cert_der.len()))
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// A self-signed certificate for `names` (DNS names or IP addresses), valid now.
    pub fn self_signed(names: &[&str]) -> Result<Self, String> {
        Self::generate(names, false)
    }

    /// A self-signed certificate for `names` that expired in 2001 (to test clients).
    pub fn expired(names: &[&str]) -> Result<Self, String> {
        Self::generate(names, true)
    }

    fn generate(names: &[&str], expired: bool) -> Result<Self, String> {
        let names: Vec<String> = names.iter().map(|s| (*s).to_owned()).collect();
        let mut params = rcgen::CertificateParams::new(names).map_err(|e| e.to_string())?;
        if expired {
            params.not_before = rcgen::date_time_ymd(2000, 1, 1);
            params.not_after = rcgen::date_time_ymd(2001, 1, 1);
        }
        let key = rcgen::KeyPair::generate().map_err(|e| e.to_string())?;
        let cert = params.self_signed(&key).map_err(|e| e.to_string())?;
        Ok(Self {
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        })
    }

    pub(crate) fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, String> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
        // Deprecated from rustls 0.23.48 (no post-quantum key exchange), the only ring
        // constructor: a test server needs no more.
        #[allow(deprecated)]
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_single_cert(
                vec![CertificateDer::from(self.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key_der.clone())),
            )
            .map_err(|e| e.to_string())?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}
