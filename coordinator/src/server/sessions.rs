//! Worker registrations: each Register opens a session (128 random bits) that the worker sends
//! with every later call. A session stands for its worker until that worker registers again; the
//! leases a worker holds are honoured only for calls made in its current session.
//!
//! Sessions live in memory. After a coordinator restart every worker is told to register again
//! (`failed_precondition`); its leases, kept in the store by worker id, carry over to the new
//! session. Lease ids are random and never shown to anyone but their holder, so naming a lease is
//! itself proof of having been granted it.

use std::collections::HashMap;
use std::sync::Mutex;

use tonic::metadata::MetadataMap;
use tonic::Status;

#[derive(Default)]
pub struct Sessions {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Session id to worker id.
    workers: HashMap<String, String>,
    /// Worker id to its current session id.
    current: HashMap<String, String>,
}

fn register_again(reason: &str) -> Status {
    Status::failed_precondition(format!("{reason}: register again"))
}

impl Sessions {
    /// Opens a session for `worker_id`; an earlier session of that worker ends.
    pub fn open(&self, worker_id: &str) -> String {
        let session = crate::store::random_id();
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(previous) = inner.current.insert(worker_id.to_string(), session.clone()) {
            inner.workers.remove(&previous);
        }
        inner.workers.insert(session.clone(), worker_id.to_string());
        session
    }

    /// The worker whose current session the call carries.
    pub fn worker(&self, metadata: &MetadataMap) -> Result<String, Status> {
        let session = metadata
            .get(proto::SESSION_METADATA)
            .and_then(|value| value.to_str().ok())
            .ok_or_else(|| register_again("no session"))?;
        let inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        inner.workers.get(session).cloned().ok_or_else(|| register_again("unknown or ended session"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn carrying(session: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert(proto::SESSION_METADATA, session.parse().unwrap());
        metadata
    }

    #[test]
    fn a_session_names_its_worker_until_that_worker_registers_again() {
        let sessions = Sessions::default();
        let first = sessions.open("w");
        let other = sessions.open("v");
        assert_eq!(first.len(), 32);
        assert_eq!(sessions.worker(&carrying(&first)).unwrap(), "w");
        let second = sessions.open("w");
        assert_ne!(first, second);
        assert_eq!(sessions.worker(&carrying(&first)).unwrap_err().code(), tonic::Code::FailedPrecondition);
        assert_eq!(sessions.worker(&carrying(&second)).unwrap(), "w");
        assert_eq!(sessions.worker(&carrying(&other)).unwrap(), "v");
        assert_eq!(sessions.worker(&MetadataMap::new()).unwrap_err().code(), tonic::Code::FailedPrecondition);
    }
}
