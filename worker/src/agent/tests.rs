//! The agent's outbox: what goes when.

use std::time::Duration;

use tokio::time::Instant;

use super::credentials::{self, Stamp};
use super::outbox::{Outbox, Outgoing, LINGER};
use super::LeaseKey;

/// A client of a coordinator that is not there: what is sent fails, which these tests do not
/// look at (nothing listens on port 9).
fn client() -> super::credentials::Client {
    let stamp = Stamp::new(&super::Credentials::default()).unwrap();
    credentials::connect("http://127.0.0.1:9", None, &stamp).unwrap()
}

fn lease(name: &str) -> LeaseKey {
    LeaseKey { lease_id: format!("{name}-1"), trial_id: name.to_string() }
}

fn fail(lease: LeaseKey) -> Outgoing {
    Outgoing::fail(lease, "e".into(), true)
}

const DEADLINE: Duration = Duration::from_secs(1);

#[tokio::test]
async fn a_lease_s_messages_go_one_at_a_time_and_leases_do_not_wait_for_each_other() {
    let client = client();
    let mut outbox = Outbox::new();
    outbox.push(fail(lease("a")));
    outbox.push(Outgoing::Release { lease: lease("a") });
    outbox.push(Outgoing::Release { lease: lease("b") });
    outbox.flush(&client, DEADLINE);
    // A's first message and B's are on their way; A's second waits for A's first.
    assert_eq!(outbox.in_flight(), 2);
    assert_eq!(outbox.waiting().len(), 1);
    assert!(matches!(&outbox.waiting()[0], Outgoing::Release { lease } if lease.trial_id == "a"));
    // Nothing may go before an answer comes back.
    assert_eq!(outbox.next_sendable(), None);
    outbox.flush(&client, DEADLINE);
    assert_eq!(outbox.waiting().len(), 1);
}

#[tokio::test]
async fn a_trial_s_reports_linger_until_the_trial_says_more_or_the_linger_ends() {
    let client = client();
    let mut outbox = Outbox::new();
    let before = Instant::now();
    outbox.push_report(fail(lease("a")));
    outbox.push(Outgoing::Release { lease: lease("b") });
    outbox.flush(&client, DEADLINE);
    // B's message goes; A's lingers.
    assert_eq!(outbox.in_flight(), 1);
    assert_eq!(outbox.waiting().len(), 1);
    let ready = outbox.next_sendable().expect("A's message goes later");
    assert!(ready > before && ready <= before + LINGER + Duration::from_millis(1), "{ready:?}");
    // The trial's end (or any message that ends the linger) lets it go at once.
    outbox.end_linger("a-1");
    assert!(outbox.next_sendable().is_some_and(|at| at <= Instant::now()));
    outbox.flush(&client, DEADLINE);
    assert!(outbox.waiting().is_empty());
    assert_eq!(outbox.in_flight(), 2);
}
