//! What a worker shows the coordinator: the bearer token (`SAL_TOKEN` or `--token-file`), the
//! session its registration returned, and TLS settings (`--tls-ca`, and a client certificate when
//! the coordinator asks for one). Every call goes through [`Stamp`], which adds the first two.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use proto::pb::coordinator_client::CoordinatorClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::service::Interceptor;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::WorkerError;

/// The environment variable holding the token.
pub const TOKEN_ENV: &str = "SAL_TOKEN";

/// A coordinator client whose calls carry the worker's credentials.
pub(crate) type Client = CoordinatorClient<InterceptedService<Channel, Stamp>>;

/// How a worker proves who it is.
#[derive(Clone, Default)]
pub struct Credentials {
    /// The coordinator's worker token.
    pub token: Option<String>,
    /// Trust this CA (PEM) for the coordinator's certificate; with an `https://` URL.
    pub tls_ca: Option<PathBuf>,
    /// This worker's certificate and key (PEM), for a coordinator that wants mutual TLS.
    pub tls_identity: Option<(PathBuf, PathBuf)>,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &self.token.as_ref().map(|_| "<set>"))
            .field("tls_ca", &self.tls_ca)
            .field("tls_identity", &self.tls_identity)
            .finish()
    }
}

impl Credentials {
    /// The TLS settings, files read now; `None` without `--tls-ca` or a client certificate.
    pub(crate) fn tls(&self) -> Result<Option<ClientTlsConfig>, WorkerError> {
        if self.tls_ca.is_none() && self.tls_identity.is_none() {
            return Ok(None);
        }
        let mut config = ClientTlsConfig::new();
        if let Some(ca) = &self.tls_ca {
            config = config.ca_certificate(Certificate::from_pem(read(ca)?));
        }
        if let Some((cert, key)) = &self.tls_identity {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        Ok(Some(config))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, WorkerError> {
    std::fs::read(path).map_err(|e| WorkerError::io(path, e))
}

/// A token from `file`, else from `SAL_TOKEN`; `None` when neither is set. A file that group or
/// others may read is refused, with the command that fixes it.
pub fn read_token(file: Option<&Path>) -> Result<Option<String>, String> {
    let (text, what) = match file {
        Some(path) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?
                    .permissions()
                    .mode()
                    & 0o777;
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "{} is readable by group or others (mode {mode:o}): run `chmod 600 {}`",
                        path.display(),
                        path.display()
                    ));
                }
            }
            (
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?,
                path.display().to_string(),
            )
        }
        None => match std::env::var(TOKEN_ENV) {
            Ok(value) => (value, format!("${TOKEN_ENV}")),
            Err(_) => return Ok(None),
        },
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(format!("{what} is empty"));
    }
    Ok(Some(token.to_string()))
}

/// Adds `authorization: Bearer TOKEN` and the current session to every call.
#[derive(Clone)]
pub(crate) struct Stamp {
    authorization: Option<MetadataValue<Ascii>>,
    session: Arc<Mutex<Option<MetadataValue<Ascii>>>>,
}

impl Stamp {
    pub(crate) fn new(credentials: &Credentials) -> Result<Self, WorkerError> {
        let authorization = credentials
            .token
            .as_ref()
            .map(|token| {
                format!("Bearer {token}")
                    .parse()
                    .map_err(|_| WorkerError::field("token", "has characters a header cannot carry"))
            })
            .transpose()?;
        Ok(Self { authorization, session: Arc::default() })
    }

    /// The session every later call carries (set by a registration).
    pub(crate) fn set_session(&self, session: &str) {
        let value = session.parse().ok();
        if let Ok(mut slot) = self.session.lock() {
            *slot = value;
        }
    }
}

impl Interceptor for Stamp {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(authorization) = &self.authorization {
            request.metadata_mut().insert("authorization", authorization.clone());
        }
        if let Some(session) = self.session.lock().ok().and_then(|slot| slot.clone()) {
            request.metadata_mut().insert(proto::SESSION_METADATA, session);
        }
        Ok(request)
    }
}

/// A lazily connecting client of `url` whose calls carry `stamp`.
pub(crate) fn connect(
    url: &str,
    tls: Option<&ClientTlsConfig>,
    stamp: &Stamp,
) -> Result<Client, WorkerError> {
    let refused = |message: String| WorkerError::CoordinatorRefused { url: url.into(), message };
    let mut endpoint = Endpoint::from_shared(url.to_string())
        .map_err(|e| refused(format!("bad address: {e}")))?
        .connect_timeout(Duration::from_secs(3))
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone()).map_err(|e| refused(format!("TLS: {e}")))?;
    }
    Ok(CoordinatorClient::with_interceptor(endpoint.connect_lazy(), stamp.clone())
        .max_decoding_message_size(8 << 20))
}
