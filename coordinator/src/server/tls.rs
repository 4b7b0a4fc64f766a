//! TLS for the coordinator's server (`--tls-cert`, `--tls-key`, optionally `--tls-client-ca` for
//! mutual TLS) and for its client commands (`--tls-ca`), through rustls.

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
