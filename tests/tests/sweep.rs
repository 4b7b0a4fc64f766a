//! A real coordinator and real workers on loopback: sharing a sweep, losing a worker, losing the
//! coordinator, shutting a worker down, refusing a worker of another protocol version.

mod common;

use std::collections::HashSet;

use std::time::Duration;

use common::{assert_all_done_once, field, noop_sweep, records, start_worker, terminate_all, Coordinator};

#[test]
fn two_workers_share_a_sweep_and_every_trial_is_done_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    // 8 trials of 0.4 s: plenty for the second worker to join while the first works.
    let sweep = noop_sweep(dir.path(), 8, 4, 100);
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &[]);
    let mut a = start_worker(&coordinator.url(), &dir.path().join("a"), "worker-a");
    let mut b = start_worker(&coordinator.url(), &dir.path().join("b"), "worker-b");

    // Both exit by themselves once the sweep is done.
    coordinator.process.wait_success("coordinator");
    a.wait_success("worker a");
    b.wait_success("worker b");

    let records = records(&state);
    assert_all_done_once(&records, 8, 4);
    let mut workers = HashSet::new();
    for record in &records {
        assert_eq!(record.attempts, 1, "trial {} ran more than once", record.id);
        // One report per epoch: nothing was run twice.
        assert_eq!(record.epochs.len(), 4, "trial {}", record.id);
        workers.extend(record.epochs.iter().map(|e| e.worker_id.clone()));
    }
    assert_eq!(workers, HashSet::from(["worker-a".to_string(), "worker-b".to_string()]));
    // The report at the end lists the sweep's results.
    assert!(coordinator.process.stdout.all().contains("8/8"), "{}", coordinator.process.stdout.all());
}

#[test]
fn a_killed_worker_s_trial_resumes_on_another_from_its_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = 6;
    let sweep = noop_sweep(dir.path(), 2, epochs, 200);
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &["--lease-seconds", "1.5"]);
    let mut a = start_worker(&coordinator.url(), &dir.path().join("a"), "worker-a");

    // Kill A once the coordinator holds its checkpoint of epoch 2.
    let line = a.stderr.wait_for("`checkpoint uploaded ... epoch=2`", |l| {
        l.contains("checkpoint uploaded") && field(l, "epoch") == Some("2")
    });
    let trial = field(&line, "trial").expect("the line names the trial").to_string();
    a.kill();

    let mut b = start_worker(&coordinator.url(), &dir.path().join("b"), "worker-b");
    let resumed = b.stderr.wait_for("starting the killed trial", |l| {
        l.contains("trial started") && field(l, "trial") == Some(&trial)
    });
    let resume_epoch: u32 = field(&resumed, "resume_epoch").unwrap().parse().unwrap();
    assert!(resume_epoch >= 2, "resumed from epoch {resume_epoch}, not from the last checkpoint: {resumed}");

    coordinator.process.wait_success("coordinator");
    b.wait_success("worker b");

    let records = records(&state);
    assert_all_done_once(&records, 2, epochs);
    let killed = records.iter().find(|r| r.id == trial).unwrap();
    assert_eq!(killed.attempts, 2);
    let last_of_a = killed.epochs.iter().filter(|e| e.attempt == 1).map(|e| e.report.epoch).max().unwrap();
    let first_of_b = killed.epochs.iter().filter(|e| e.attempt == 2).map(|e| e.report.epoch).min().unwrap();
    assert!(killed.epochs.iter().filter(|e| e.attempt == 1).all(|e| e.worker_id == "worker-a"));
    assert!(killed.epochs.iter().filter(|e| e.attempt == 2).all(|e| e.worker_id == "worker-b"));
    assert_eq!(first_of_b, resume_epoch + 1);
    // At most one epoch ran twice.
    assert!(
        last_of_a + 1 >= first_of_b,
        "epochs were skipped: A reached {last_of_a}, B began at {first_of_b}"
    );
    assert!(
        last_of_a < first_of_b + 1,
        "more than one epoch redone: A reached {last_of_a}, B began at {first_of_b}"
    );
}

#[test]
fn a_restarted_coordinator_resumes_the_sweep_without_losing_or_duplicating_results() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = noop_sweep(dir.path(), 8, 3, 100);
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &["--lease-seconds", "20"]);
    let addr = coordinator.addr.clone();
    let url = coordinator.url();
    let mut a = start_worker(&url, &dir.path().join("a"), "worker-a");
    let mut b = start_worker(&url, &dir.path().join("b"), "worker-b");

    // Kill the coordinator once a trial is committed, while others run.
    let line = a.stderr.wait_for("`trial completed`", |l| l.contains("trial completed"));
    let first_done = field(&line, "trial").unwrap().to_string();
    coordinator.process.kill();
    let done_before: Vec<String> =
        records(&state).into_iter().filter(|r| r.state == "done").map(|r| r.id).collect();
    assert!(done_before.contains(&first_done));
    assert!(done_before.len() < 8, "the sweep ended before the coordinator was killed");
    // Both workers notice the outage (a call of each fails) before the coordinator comes back:
    // a restart quicker than their next call would otherwise go unseen.
    for worker in [&a, &b] {
        worker.stderr.wait_for("`coordinator away`", |l| l.contains("coordinator away"));
    }

    // Same address, same state dir: the workers find it again.
    let mut restarted = Coordinator::start(&sweep, &state, &addr, &["--lease-seconds", "20"]);
    assert!(
        a.stderr.wait_for("re-registration", |l| l.contains("registered")).contains("worker-a"),
        "worker a registers again"
    );
    restarted.process.wait_success("restarted coordinator");
    a.wait_success("worker a");
    b.wait_success("worker b");
    // The workers noticed the outage (their reports waited) and came back.
    for worker in [&a, &b] {
        let log = worker.stderr.all();
        assert!(log.contains("coordinator away") && log.contains("coordinator reachable again"), "{log}");
    }

    let records = records(&state);
    assert_all_done_once(&records, 8, 3);
    for record in &records {
        // Leases outlive the outage (20 s): the trials running meanwhile kept going, their
        // buffered reports arrived under the same lease, and nothing ran twice.
        assert_eq!(record.attempts, 1, "trial {} ran again", record.id);
        assert_eq!(record.epochs.len(), 3, "trial {} reported an epoch twice or not at all", record.id);
    }
}

#[test]
fn sigterm_hands_the_lease_back_and_the_next_worker_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let epochs = 8;
    let sweep = noop_sweep(dir.path(), 1, epochs, 150);
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &[]);
    let mut a = start_worker(&coordinator.url(), &dir.path().join("a"), "worker-a");
    a.stderr.wait_for("`checkpoint uploaded ... epoch=2`", |l| {
        l.contains("checkpoint uploaded") && field(l, "epoch") == Some("2")
    });
    a.terminate();
    a.wait_success("worker a after SIGTERM");
    assert!(a.stderr.all().contains("lease handed back"), "{}", a.stderr.all());

    // The lease is back at once (the default lease lives 30 s): the next worker starts it now.
    let mut b = start_worker(&coordinator.url(), &dir.path().join("b"), "worker-b");
    let started = b.stderr.wait_for("`trial started`", |l| l.contains("trial started"));
    assert!(field(&started, "resume_epoch").unwrap().parse::<u32>().unwrap() >= 2, "{started}");
    coordinator.process.wait_success("coordinator");
    b.wait_success("worker b");
    let records = records(&state);
    assert_all_done_once(&records, 1, epochs);
    assert_eq!(records[0].attempts, 2);
}

/// What `scancel` does: SIGTERM to the coordinator and every worker at the same moment. Every
/// process exits within the workers' drain (10 s without an answer) and well inside Slurm's
/// KillWait (30 s); nothing is lost, and the next run finishes the sweep without rerunning what
/// was done.
#[test]
fn sigterm_to_the_coordinator_and_every_worker_at_once_ends_them_all_and_the_next_run_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (trials, epochs) = (6, 10);
    let sweep = noop_sweep(dir.path(), trials, epochs, 150);
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &["--lease-seconds", "5"]);
    let mut a = start_worker(&coordinator.url(), &dir.path().join("a"), "worker-a");
    let mut b = start_worker(&coordinator.url(), &dir.path().join("b"), "worker-b");
    // Mid-sweep: a trial is done, and both workers hold a lease with a checkpoint uploaded.
    a.stderr.wait_for("`trial completed`", |l| l.contains("trial completed"));
    for worker in [&a, &b] {
        worker.stderr.wait_for("`checkpoint uploaded ... epoch=2`", |l| {
            l.contains("checkpoint uploaded") && field(l, "epoch") == Some("2")
        });
    }
    terminate_all(&[&coordinator.process, &a, &b]);
    // The bound: the workers' drain (10 s) and some slack, below Slurm's default KillWait (30 s).
    let bound = Duration::from_secs(25);
    for (name, process) in
        [("coordinator", &mut coordinator.process), ("worker a", &mut a), ("worker b", &mut b)]
    {
        let status = process.wait_within(bound);
        let output = || format!("stdout:\n{}\nstderr:\n{}", process.stdout.all(), process.stderr.all());
        match status {
            Some(status) => assert!(status.success(), "{name} exited with {status}\n{}", output()),
            None => panic!("{name} did not exit within {bound:?} of SIGTERM\n{}", output()),
        }
    }
    for worker in [&a, &b] {
        let log = worker.stderr.all();
        // The old loop: "coordinator away" / "reachable again" every 50 ms until SIGKILLed.
        assert!(log.matches("coordinator reachable again").count() <= 1, "{log}");
    }
    let before = records(&state);
    let done_before: Vec<(String, u32)> =
        before.iter().filter(|r| r.state == "done").map(|r| (r.id.clone(), r.attempts)).collect();
    assert!(
        !done_before.is_empty() && done_before.len() < trials,
        "{} trials done at SIGTERM",
        done_before.len()
    );

    // The next run, same state dir: it finishes, and what was done stays done.
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &["--lease-seconds", "5"]);
    let mut c = start_worker(&coordinator.url(), &dir.path().join("c"), "worker-c");
    coordinator.process.wait_success("coordinator, second run");
    // The interrupted coordinator served the workers' hand-backs: no lease was left to expire.
    let loaded = coordinator.process.stderr.wait_for("`sweep loaded`", |l| l.contains("sweep loaded"));
    assert_eq!(field(&loaded, "leases_expired"), Some("0"), "{loaded}");
    c.wait_success("worker c");
    let after = records(&state);
    assert_all_done_once(&after, trials, epochs);
    for (id, attempts) in &done_before {
        let record = after.iter().find(|r| &r.id == id).unwrap();
        assert_eq!(record.attempts, *attempts, "trial {id}, done before SIGTERM, ran again");
    }
    // What was cut short resumed from a checkpoint, not from scratch.
    let log = c.stderr.all();
    assert!(
        log.lines()
            .any(|l| l.contains("trial started") && field(l, "resume_epoch").is_some_and(|e| e != "0")),
        "{log}"
    );
}

#[test]
fn a_worker_of_another_protocol_version_is_refused_with_both_versions() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = noop_sweep(dir.path(), 1, 1, 0);
    let coordinator = Coordinator::start(&sweep, &dir.path().join("state"), "127.0.0.1:0", &[]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = runtime.block_on(async {
        let mut client =
            proto::pb::coordinator_client::CoordinatorClient::connect(coordinator.url()).await.unwrap();
        let request = proto::pb::RegisterRequest {
            protocol_version: proto::PROTOCOL_VERSION + 1,
            worker_id: "from-the-future".into(),
            hostname: "h".into(),
            devices: Some(proto::pb::Devices {
                kind: Some(proto::pb::devices::Kind::CpuRanks(1)),
                memory_mb: Vec::new(),
            }),
        };
        client.register(request).await.unwrap_err()
    });
    assert_eq!(status.code(), tonic::Code::FailedPrecondition);
    let message = status.message();
    assert!(message.contains(&format!("version {}", proto::PROTOCOL_VERSION + 1)), "{message}");
    assert!(message.contains(&format!("version {}", proto::PROTOCOL_VERSION)), "{message}");

    // Clients still see the sweep, untouched by the refused worker.
    let (status, results) = runtime.block_on(async {
        let mut client =
            proto::pb::coordinator_client::CoordinatorClient::connect(coordinator.url()).await.unwrap();
        let status = client.status(proto::pb::StatusRequest {}).await.unwrap().into_inner();
        let results = client.results(proto::pb::ResultsRequest {}).await.unwrap().into_inner();
        (status, results)
    });
    assert_eq!((status.sweep_name.as_str(), status.pending, status.done), ("e2e", 1, 0));
    assert!(status.workers.is_empty());
    assert_eq!(results.trials.len(), 1);
    assert_eq!(results.trials[0].state, "pending");
}
