//! The agent's outbox: what goes when.

use std::time::Duration;

use tokio::time::Instant;

use super::outbox::Outgoing;
use super::sending::LINGER;
use super::{ClientConfig, LeaseKey, Session};
use crate::run::Devices;

fn session(dir: &std::path::Path) -> Session {
    // Nothing listens on port 9: what is sent fails, which these tests do not look at.
    let config = ClientConfig::new("http://127.0.0.1:9", Devices::Cpu { ranks: 1 }, dir);
    Session::new(config).unwrap()
}

fn lease(name: &str) -> LeaseKey {
    LeaseKey { lease_id: format!("{name}-1"), trial_id: name.to_string() }
}

fn fail(lease: LeaseKey) -> Outgoing {
    Outgoing::Fail { lease, error: "e".into(), retryable: true }
}

#[tokio::test]
async fn a_lease_s_messages_go_one_at_a_time_and_leases_do_not_wait_for_each_other() {
    let dir = tempfile::tempdir().unwrap();
    let mut session = session(dir.path());
    session.outbox.push_back(fail(lease("a")));
    session.outbox.push_back(Outgoing::Release { lease: lease("a") });
    session.outbox.push_back(Outgoing::Release { lease: lease("b") });
    session.flush();
    // A's first message and B's are on their way; A's second waits for A's first.
    assert_eq!(session.in_flight.len(), 2);
    assert_eq!(session.outbox.len(), 1);
    assert!(matches!(&session.outbox[0], Outgoing::Release { lease } if lease.trial_id == "a"));
    // Nothing may go before an answer comes back.
    assert_eq!(session.next_sendable(), None);
    session.flush();
    assert_eq!(session.outbox.len(), 1);
}

#[tokio::test]
async fn a_trial_s_reports_linger_until_the_trial_says_more_or_the_linger_ends() {
    let dir = tempfile::tempdir().unwrap();
    let mut session = session(dir.path());
    let before = Instant::now();
    session.linger("a-1");
    session.outbox.push_back(fail(lease("a")));
    session.outbox.push_back(Outgoing::Release { lease: lease("b") });
    session.flush();
    // B's message goes; A's lingers.
    assert_eq!(session.in_flight.len(), 1);
    assert_eq!(session.outbox.len(), 1);
    let ready = session.next_sendable().expect("A's message goes later");
    assert!(ready > before && ready <= before + LINGER + Duration::from_millis(1), "{ready:?}");
    // The trial's end (or any message that ends the linger) lets it go at once.
    session.linger_until.remove("a-1");
    assert!(session.next_sendable().is_some_and(|at| at <= Instant::now()));
    session.flush();
    assert!(session.outbox.is_empty());
    assert_eq!(session.in_flight.len(), 2);
}
