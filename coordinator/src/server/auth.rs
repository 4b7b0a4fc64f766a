//! Who may call the coordinator: bearer tokens checked on every call before it reaches the
//! service, compared in constant time.
//!
//! Two roles. The worker token allows every call; the optional read-only token allows Status and
//! Results (a dashboard, `coordinator status`). Health checking and reflection are separate
//! services that this layer does not wrap: they reveal nothing of the sweep.
//!
//! Tokens come from a file (`--token-file`, refused when group or others may read it) or from the
//! environment (`SAL_TOKEN`, `SAL_READ_TOKEN`).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::Status;

/// The environment variable holding the worker token.
pub const TOKEN_ENV: &str = "SAL_TOKEN";
/// The environment variable holding the read-only token.
pub const READ_TOKEN_ENV: &str = "SAL_READ_TOKEN";
/// The calls the read-only token allows.
const READ_ONLY_METHODS: [&str; 2] =
    ["/sal_sweep.v1.Coordinator/Status", "/sal_sweep.v1.Coordinator/Results"];
/// Refused calls are logged at most this often (a scanner must not flood the log).
const LOG_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is readable by group or others (mode {mode:o}): run `chmod 600 {}`", path.display(), path.display())]
    Exposed { path: PathBuf, mode: u32 },
    #[error("{what} is empty")]
    Empty { what: String },
}

/// A token read from `file`, else from the environment variable `env`; `None` when neither is set.
pub fn read_token(file: Option<&Path>, env: &str) -> Result<Option<String>, TokenError> {
    let (text, what) = match file {
        Some(path) => (read_private_file(path)?, path.display().to_string()),
        None => match std::env::var(env) {
            Ok(value) => (value, format!("${env}")),
            Err(_) => return Ok(None),
        },
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(TokenError::Empty { what });
    }
    Ok(Some(token.to_string()))
}

/// Reads a secret file, refusing one that group or others may read.
fn read_private_file(path: &Path) -> Result<String, TokenError> {
    let read_error = |source| TokenError::Read { path: path.to_path_buf(), source };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(read_error)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(TokenError::Exposed { path: path.to_path_buf(), mode });
        }
    }
    std::fs::read_to_string(path).map_err(read_error)
}

/// A fresh random token: 128 bits, hex.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// A secret kept as its digest, so that comparing takes the same time whatever the guess.
struct Secret([u8; 32]);

impl Secret {
    fn new(token: &str) -> Self {
        Self(Sha256::digest(token.as_bytes()).into())
    }

    /// Constant-time: every byte is looked at, whatever the first difference.
    fn matches(&self, candidate: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(candidate).into();
        digest.iter().zip(self.0.iter()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
    }
}

/// The tokens a coordinator accepts.
pub struct Tokens {
    worker: Secret,
    reader: Option<Secret>,
}

impl Tokens {
    pub fn new(worker: &str, reader: Option<&str>) -> Self {
        Self { worker: Secret::new(worker), reader: reader.map(Secret::new) }
    }
}

/// Checks calls against the tokens; with none, every call passes (a loopback-only coordinator).
pub struct Guard {
    tokens: Option<Tokens>,
    refused: AtomicU64,
    last_log: Mutex<Option<Instant>>,
}

impl Guard {
    pub fn new(tokens: Option<Tokens>) -> Arc<Self> {
        Arc::new(Self { tokens, refused: AtomicU64::new(0), last_log: Mutex::new(None) })
    }

    /// Whether the call to `path` with these headers may go on.
    fn check(&self, path: &str, headers: &http::HeaderMap) -> Result<(), Status> {
        let Some(tokens) = &self.tokens else { return Ok(()) };
        let presented = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
            .ok_or_else(|| Status::unauthenticated("missing `authorization: Bearer TOKEN`"))?;
        if tokens.worker.matches(presented) {
            return Ok(());
        }
        match &tokens.reader {
            Some(reader) if reader.matches(presented) => {
                if READ_ONLY_METHODS.contains(&path) {
                    Ok(())
                } else {
                    Err(Status::permission_denied("the read-only token allows Status and Results only"))
                }
            }
            _ => Err(Status::unauthenticated("invalid token")),
        }
    }

    /// Logs a refusal, at most once per [`LOG_EVERY`], with how many were refused meanwhile.
    fn log_refusal(&self, peer: Option<std::net::SocketAddr>, path: &str, status: &Status) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let Ok(mut last) = self.last_log.lock() else { return };
        if last.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        self.refused.store(0, Ordering::Relaxed);
        let peer = peer.map_or_else(|| "unknown".to_string(), |p| p.to_string());
        tracing::warn!(%peer, call = path, refused, "refused a call: {}", status.message());
    }
}

/// The peer of a call, over plain TCP or TLS.
fn peer<B>(request: &http::Request<B>) -> Option<std::net::SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let extensions = request.extensions();
    extensions.get::<TcpConnectInfo>().and_then(TcpConnectInfo::remote_addr).or_else(|| {
        extensions.get::<TlsConnectInfo<TcpConnectInfo>>().and_then(|i| i.get_ref().remote_addr())
    })
}

/// A service behind the token check.
#[derive(Clone)]
pub struct Authenticated<S> {
    inner: S,
    guard: Arc<Guard>,
}

impl<S> Authenticated<S> {
    pub fn new(inner: S, guard: Arc<Guard>) -> Self {
        Self { inner, guard }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tonic::codegen::Service<http::Request<B>> for Authenticated<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path().to_string();
        match self.guard.check(&path, request.headers()) {
            Ok(()) => Box::pin(self.inner.call(request)),
            Err(status) => {
                self.guard.log_refusal(peer(&request), &path, &status);
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: Option<&str>) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        if let Some(value) = value {
            headers.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        }
        headers
    }

    #[test]
    fn each_token_opens_its_calls_and_nothing_else() {
        let guard = Guard::new(Some(Tokens::new("worker-secret", Some("reader-secret"))));
        let status = "/sal_sweep.v1.Coordinator/Status";
        let complete = "/sal_sweep.v1.Coordinator/Complete";
        assert!(guard.check(complete, &headers(Some("Bearer worker-secret"))).is_ok());
        assert!(guard.check(status, &headers(Some("Bearer reader-secret"))).is_ok());
        let code = |path, value| guard.check(path, &headers(value)).unwrap_err().code();
        assert_eq!(code(complete, Some("Bearer reader-secret")), tonic::Code::PermissionDenied);
        assert_eq!(code(status, None), tonic::Code::Unauthenticated);
        assert_eq!(code(status, Some("Bearer worker-secre")), tonic::Code::Unauthenticated);
        assert_eq!(code(status, Some("Bearer ")), tonic::Code::Unauthenticated);
        assert_eq!(code(status, Some("worker-secret")), tonic::Code::Unauthenticated);
        assert!(Guard::new(None).check(complete, &headers(None)).is_ok());
    }

    #[test]
    fn a_token_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = read_token(Some(&path), "SAL_TEST_UNSET").unwrap_err().to_string();
        assert!(error.contains("chmod 600") && error.contains("644"), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(read_token(Some(&path), "SAL_TEST_UNSET").unwrap().as_deref(), Some("s3cret"));
        assert_eq!(read_token(None, "SAL_TEST_UNSET_TOKEN_VARIABLE").unwrap(), None);
    }
}
