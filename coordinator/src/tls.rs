//! TLS for the coordinator's server (`--tls-cert`, `--tls-key`, optionally `--tls-client-ca` for
//! mutual TLS), its dashboard (the same files) and its client commands (`--tls-ca`), through
//! rustls. Below the server, the client and the dashboard, which all read it.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Usage(String),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, path: path.to_path_buf(), source })
}

/// The server's TLS files.
#[derive(Debug, Clone, Default)]
pub struct ServerTlsFiles {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// Clients must present a certificate signed by this CA (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl ServerTlsFiles {
    /// The server's TLS settings; `None` when no certificate is given (plain TCP).
    pub fn load(&self) -> Result<Option<ServerTlsConfig>, TlsError> {
        let (cert, key) = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) if self.client_ca.is_none() => return Ok(None),
            (None, None) => {
                return Err(TlsError::Usage("--tls-client-ca needs --tls-cert and --tls-key".into()))
            }
            _ => return Err(TlsError::Usage("--tls-cert and --tls-key go together".into())),
        };
        let identity = Identity::from_pem(read("certificate", cert)?, read("key", key)?);
        let mut config = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            config = config.client_ca_root(Certificate::from_pem(read("client CA", ca)?));
        }
        Ok(Some(config))
    }
}

impl ServerTlsFiles {
    /// The same certificate as a rustls server configuration, for the dashboard (HTTP over the
    /// same TLS as the gRPC service); `None` without a certificate. A client CA (mutual TLS) is
    /// asked of the dashboard's browsers too.
    pub fn rustls(&self) -> Result<Option<std::sync::Arc<tokio_rustls::rustls::ServerConfig>>, TlsError> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
        use tokio_rustls::rustls::{self, server::WebPkiClientVerifier, RootCertStore};
        let (Some(cert), Some(key)) = (&self.cert, &self.key) else { return Ok(None) };
        let bad = |what: &'static str, path: &Path, e: String| TlsError::Read {
            what,
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&read("certificate", cert)?)
            .collect::<Result<_, _>>()
            .map_err(|e| bad("certificate", cert, e.to_string()))?;
        let key_der =
            PrivateKeyDer::from_pem_slice(&read("key", key)?).map_err(|e| bad("key", key, e.to_string()))?;
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Usage(e.to_string()))?;
        let builder = match &self.client_ca {
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for der in CertificateDer::pem_slice_iter(&read("client CA", ca)?) {
                    let der = der.map_err(|e| bad("client CA", ca, e.to_string()))?;
                    roots.add(der).map_err(|e| bad("client CA", ca, e.to_string()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(std::sync::Arc::new(roots), provider)
                        .build()
                        .map_err(|e| bad("client CA", ca, e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
            None => builder.with_no_client_auth(),
        };
        let mut config =
            builder.with_single_cert(certs, key_der).map_err(|e| bad("certificate", cert, e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(std::sync::Arc::new(config)))
    }
}

/// A client's TLS settings: trust `ca` (a private CA: the usual case for a cluster), and present
/// `identity` when the server asks for a client certificate.
pub fn client_config(
    ca: Option<&Path>,
    identity: Option<(&Path, &Path)>,
) -> Result<ClientTlsConfig, TlsError> {
    let mut config = ClientTlsConfig::new();
    if let Some(ca) = ca {
        config = config.ca_certificate(Certificate::from_pem(read("CA certificate", ca)?));
    }
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(read("certificate", cert)?, read("key", key)?));
    }
    Ok(config)
}
