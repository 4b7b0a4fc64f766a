//! The store's lifecycle tests: loading, leasing, results, restarts.

use std::path::Path;
use std::time::Duration;

use common::{EpochReport, TrialResult, TrialStatus};

use crate::sweep::spec::Sweep;

use super::api::{Grant, LeaseAsk, LeaseRef, Registration};
use super::error::StoreError;
use super::handle::Store;
use super::now_ms;

use super::*;
use crate::sweep::spec::{self, LoadOptions};

fn sweep(seeds: &str, max_attempts: u32) -> Sweep {
    let text = format!(
        "name: t\nepochs: 2\nbatch_size: 1\nlearning_rate: 0.1\nseeds: {seeds}\nmethods: [baseline]\n\
         architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\nmax_attempts: {max_attempts}\n\
         datasets:\n  s:\n    format: synthetic\n"
    );
    spec::parse(Path::new("t.yaml"), &text, &LoadOptions::default()).unwrap()
}

fn result() -> TrialResult {
    super::stand_in_result(TrialStatus::Completed, 0.5)
}

async fn worker(store: &Store) {
    store
        .register(Registration {
            worker_id: "w".into(),
            hostname: "h".into(),
            devices: 1,
            memory_mb: Vec::new(),
        })
        .await
        .unwrap();
}

async fn lease(store: &Store) -> Option<Grant> {
    let ask = LeaseAsk {
        worker_id: "w".into(),
        devices: vec![Vec::new()],
        held: Vec::new(),
        cached: Vec::new(),
        condition: String::new(),
        usage: None,
    };
    store.lease(ask).await.unwrap().grant
}

fn lease_ref(grant: &Grant) -> LeaseRef {
    LeaseRef { lease_id: grant.lease_id.clone(), trial_id: grant.trial_id.clone(), holder: "w".into() }
}

async fn complete(store: &Store, grant: &Grant) {
    let json = serde_json::to_string(&result()).unwrap();
    store.complete(lease_ref(grant), result(), json, Vec::new()).await.unwrap();
}

#[tokio::test]
async fn a_result_is_on_disk_when_complete_returns_and_a_second_completion_adds_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    let grant = lease(&store).await.unwrap();
    complete(&store, &grant).await;
    let (_, records) = read_records(dir.path()).unwrap();
    assert_eq!(records[0].state, "done");
    assert_eq!(records[0].result.as_ref().unwrap().top1, 0.5);
    // The worker did not hear the acknowledgement and sends again: still one result, done.
    complete(&store, &grant).await;
    assert_eq!(read_records(dir.path()).unwrap().1.len(), 1);
    assert!(lease(&store).await.is_none());
    assert!(store.progress().borrow().is_complete());
}

#[tokio::test]
async fn only_the_holder_of_a_lease_acts_on_it_and_a_forged_completion_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    store
        .register(Registration {
            worker_id: "intruder".into(),
            hostname: "h".into(),
            devices: 1,
            memory_mb: Vec::new(),
        })
        .await
        .unwrap();
    let grant = lease(&store).await.unwrap();
    assert_eq!(grant.lease_id.len(), 32, "128 random bits, hex: {}", grant.lease_id);
    assert!(!grant.lease_id.contains(&grant.trial_id));
    let json = serde_json::to_string(&result()).unwrap();
    let stolen = LeaseRef { holder: "intruder".into(), ..lease_ref(&grant) };
    let forged = LeaseRef { lease_id: format!("{}-1", grant.trial_id), ..lease_ref(&grant) };
    for lease in [stolen.clone(), forged] {
        let refused = store.complete(lease, result(), json.clone(), Vec::new()).await;
        assert!(matches!(refused, Err(StoreError::LeaseLost { .. })), "{refused:?}");
    }
    assert!(matches!(store.release(stolen.clone()).await, Err(StoreError::LeaseLost { .. })));
    assert!(matches!(store.fail(stolen.clone(), "x".into(), false).await, Err(StoreError::LeaseLost { .. })));
    assert!(matches!(store.checkpoint(stolen).await, Err(StoreError::LeaseLost { .. })));
    let (_, records) = read_records(dir.path()).unwrap();
    assert!(records.iter().all(|r| r.result.is_none() && r.state != "done" && r.state != "failed"));
    // The holder's completion counts, and so does its repeat after the lease ended.
    complete(&store, &grant).await;
    complete(&store, &grant).await;
    let (_, records) = read_records(dir.path()).unwrap();
    assert_eq!(records.iter().filter(|r| r.state == "done").count(), 1);
}

#[tokio::test]
async fn a_completion_commits_the_epoch_reports_it_carries() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    let grant = lease(&store).await.unwrap();
    let epochs: Vec<(EpochReport, String)> = (1..=2)
        .map(|epoch| {
            let report = EpochReport {
                epoch,
                train_loss: 1.0,
                train_accuracy: 0.5,
                val_loss: 1.0,
                val_accuracy: 0.5,
                grad_norm: 0.1,
                sal: None,
                seconds: 0.0,
                peak_device_mb: None,
                train_images_per_s: 0.0,
                eval_images_per_s: 0.0,
            };
            let json = serde_json::to_string(&report).unwrap();
            (report, json)
        })
        .collect();
    let json = serde_json::to_string(&result()).unwrap();
    store.complete(lease_ref(&grant), result(), json, epochs).await.unwrap();
    let (_, records) = read_records(dir.path()).unwrap();
    let stored: Vec<(u32, u32, &str)> =
        records[0].epochs.iter().map(|e| (e.attempt, e.report.epoch, e.worker_id.as_str())).collect();
    assert_eq!(stored, vec![(1, 1, "w"), (1, 2, "w")]);
}

#[tokio::test]
async fn a_restart_keeps_finished_trials_and_adds_only_new_cells() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, summary) =
            Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), false).unwrap();
        assert_eq!((summary.trials, summary.new), (2, 2));
        worker(&store).await;
        let grant = lease(&store).await.unwrap();
        complete(&store, &grant).await;
    }
    let (store, summary) =
        Store::open(dir.path(), &sweep("[1, 2, 3]", 3), Duration::from_secs(30), false).unwrap();
    assert_eq!((summary.trials, summary.new, summary.already_finished), (3, 1, 1));
    worker(&store).await;
    let first = lease(&store).await.unwrap();
    let second = lease(&store).await.unwrap();
    assert_ne!(first.trial_id, second.trial_id);
    // The finished trial is never handed out again.
    assert!(lease(&store).await.is_none());
    // A sweep that drops a cell keeps its result.
    drop(store);
    let (_, summary) = Store::open(dir.path(), &sweep("[3]", 3), Duration::from_secs(30), false).unwrap();
    assert_eq!(summary.trials, 1);
    let (_, records) = read_records(dir.path()).unwrap();
    assert_eq!(records.iter().filter(|r| r.result.is_some()).count(), 1);
}

#[tokio::test]
async fn after_a_restart_an_unregistered_worker_is_waited_for_and_told_that_the_sweep_is_done() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(30);
    let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), ttl, false).unwrap();
    worker(&store).await;
    let grant = lease(&store).await.unwrap();
    drop(store);

    // The coordinator restarted: "w" still runs its trial but is not registered here.
    let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), ttl, false).unwrap();
    let ask = || LeaseAsk {
        worker_id: "w".into(),
        devices: vec![vec![grant.lease_id.clone()]],
        held: vec![grant.lease_id.clone()],
        cached: Vec::new(),
        condition: String::new(),
        usage: None,
    };
    let unknown = store.lease(ask()).await;
    assert!(matches!(unknown, Err(StoreError::UnknownWorker { .. })), "{unknown:?}");
    complete(&store, &grant).await;
    // The sweep is done, but "w" has not heard it yet: the coordinator must not stop.
    assert!(!store.workers_told_done().await.unwrap());
    // Asking again, still unregistered, it hears that the sweep is done; no need to register.
    let reply = store.lease(ask()).await.unwrap();
    assert!(reply.sweep_done && reply.grant.is_none());
    assert_eq!(reply.lost, vec![grant.lease_id.clone()]);
    assert!(store.workers_told_done().await.unwrap());
}

#[tokio::test]
async fn expired_leases_retry_until_max_attempts_then_fail_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let ttl = Duration::from_secs(30);
    let (store, _) = Store::open(dir.path(), &sweep("[1]", 2), ttl, false).unwrap();
    worker(&store).await;
    let later = || now_ms() + 10 * ttl.as_millis() as u64;
    let first = lease(&store).await.unwrap();
    assert_eq!(store.expire_leases().await.unwrap(), 0, "a fresh lease is live");
    assert_eq!(store.expire_leases_at(later()).await.unwrap(), 1);
    // The lost worker's late report is refused: its lease is gone.
    let report = EpochReport {
        epoch: 1,
        train_loss: 1.0,
        train_accuracy: 0.0,
        val_loss: 1.0,
        val_accuracy: 0.0,
        grad_norm: 0.0,
        sal: None,
        seconds: 0.0,
        peak_device_mb: None,
        train_images_per_s: 0.0,
        eval_images_per_s: 0.0,
    };
    let late = store.report_epoch(lease_ref(&first), report, "{}".into()).await;
    assert!(matches!(late, Err(StoreError::LeaseLost { .. })), "{late:?}");
    let second = lease(&store).await.unwrap();
    assert_eq!((second.trial_id.as_str(), second.attempt), (first.trial_id.as_str(), 2));
    assert_eq!(store.expire_leases_at(later()).await.unwrap(), 1);
    assert!(lease(&store).await.is_none());
    let (_, records) = read_records(dir.path()).unwrap();
    assert_eq!(records[0].state, "failed");
    assert_eq!(records[0].last_error.as_deref(), Some("worker lost (lease expired) (after 2 attempts)"));
}

#[tokio::test]
async fn a_final_failure_does_not_retry_and_a_released_lease_costs_no_attempt() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &sweep("[1, 2]", 2), Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    let a = lease(&store).await.unwrap();
    store.fail(lease_ref(&a), "bad config".into(), false).await.unwrap();
    let b = lease(&store).await.unwrap();
    assert_ne!(a.trial_id, b.trial_id);
    store.release(lease_ref(&b)).await.unwrap();
    // Handed back more often than max_attempts: still pending, never failed.
    for _ in 0..3 {
        let again = lease(&store).await.unwrap();
        assert_eq!(again.trial_id, b.trial_id);
        store.release(lease_ref(&again)).await.unwrap();
    }
    let (_, records) = read_records(dir.path()).unwrap();
    let failed = records.iter().find(|r| r.id == a.trial_id).unwrap();
    assert_eq!((failed.state.as_str(), failed.last_error.as_deref()), ("failed", Some("bad config")));
    assert_eq!(records.iter().find(|r| r.id == b.trial_id).unwrap().state, "pending");
}

#[tokio::test]
async fn retry_failed_gives_failed_trials_new_attempts_and_leaves_done_ones() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (store, _) =
            Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), false).unwrap();
        worker(&store).await;
        let a = lease(&store).await.unwrap();
        store.fail(lease_ref(&a), "bad data".into(), false).await.unwrap();
        let b = lease(&store).await.unwrap();
        complete(&store, &b).await;
    }
    let (store, _) = Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), false).unwrap();
    assert_eq!((store.progress().borrow().failed, store.progress().borrow().done), (1, 1));
    drop(store);
    let (store, _) = Store::open(dir.path(), &sweep("[1, 2]", 3), Duration::from_secs(30), true).unwrap();
    assert_eq!((store.progress().borrow().pending, store.progress().borrow().done), (1, 1));
    worker(&store).await;
    let again = lease(&store).await.unwrap();
    assert_eq!(again.attempt, 2);
    assert!(lease(&store).await.is_none());
}

#[tokio::test]
async fn measured_device_memory_packs_trials_under_auto_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let text =
        "name: t\nepochs: 2\nbatch_size: 1\nlearning_rate: 0.1\nseeds: [1, 2, 3]\nmethods: [baseline]\n\
                architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\ngpus_per_trial: 1\n\
                trials_per_gpu: auto\ndatasets:\n  s:\n    format: synthetic\n";
    let auto = spec::parse(Path::new("t.yaml"), text, &LoadOptions::default()).unwrap();
    let register = |store: Store| async move {
        let registration =
            Registration { worker_id: "w".into(), hostname: "h".into(), devices: 1, memory_mb: vec![1000] };
        store.register(registration).await.unwrap();
        store
    };
    let ask = |on_device: Vec<String>| LeaseAsk {
        worker_id: "w".into(),
        devices: vec![on_device],
        held: Vec::new(),
        cached: Vec::new(),
        condition: String::new(),
        usage: None,
    };
    let ttl = Duration::from_secs(30);
    let first = {
        let store = register(Store::open(dir.path(), &auto, ttl, false).unwrap().0).await;
        let first = store.lease(ask(Vec::new())).await.unwrap().grant.unwrap();
        assert_eq!(first.device_indices, vec![0]);
        // Not measured yet: it has the device to itself.
        assert!(store.lease(ask(vec![first.lease_id.clone()])).await.unwrap().grant.is_none());
        let report = EpochReport {
            epoch: 1,
            train_loss: 1.0,
            train_accuracy: 0.5,
            val_loss: 1.0,
            val_accuracy: 0.5,
            grad_norm: 0.1,
            sal: None,
            seconds: 0.0,
            peak_device_mb: Some(300.0),
            train_images_per_s: 0.0,
            eval_images_per_s: 0.0,
        };
        let json = serde_json::to_string(&report).unwrap();
        store.report_epoch(lease_ref(&first), report, json).await.unwrap();
        first
    };
    // A restart reads the measurement back: 360 MB reserved, and a second trial fits beside it.
    let store = register(Store::open(dir.path(), &auto, ttl, false).unwrap().0).await;
    let second = store.lease(ask(vec![first.lease_id.clone()])).await.unwrap().grant.unwrap();
    assert_ne!(second.trial_id, first.trial_id);
    assert_eq!(second.device_indices, vec![0]);
    let both = vec![first.lease_id.clone(), second.lease_id.clone()];
    assert!(store.lease(ask(both)).await.unwrap().grant.is_none(), "720 + 360 MB > 1000 MB");
}

#[tokio::test]
async fn the_next_attempt_resumes_from_the_newest_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), &sweep("[1]", 3), Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    let grant = lease(&store).await.unwrap();
    assert_eq!(grant.resume_epoch, 0);
    let folder = store.checkpoint_dir(&grant.trial_id);
    std::fs::create_dir_all(&folder).unwrap();
    for epoch in [2, 1] {
        let path = folder.join(format!("epoch-{epoch}"));
        std::fs::write(&path, b"state").unwrap();
        store.record_checkpoint(lease_ref(&grant), epoch, path, 5).await.unwrap();
    }
    // The late epoch-1 upload did not replace epoch 2, and its file is gone.
    assert!(!folder.join("epoch-1").exists());
    store.release(lease_ref(&grant)).await.unwrap();
    let next = lease(&store).await.unwrap();
    assert_eq!((next.resume_epoch, next.attempt), (2, 2));
    let (epoch, path) = store.checkpoint(lease_ref(&next)).await.unwrap().unwrap();
    assert_eq!((epoch, std::fs::read(path).unwrap()), (2, b"state".to_vec()));
}

/// A `sal` trial and the `shrink_perturb_random` trial that repeats its deformation count.
fn sal_and_random_sweep() -> Sweep {
    let text = "name: t\nepochs: 6\nbatch_size: 1\nlearning_rate: 0.1\nseeds: [1]\n\
                methods: [sal, shrink_perturb_random]\narchitectures: [noop]\noptimizers: [sgd]\n\
                resolutions: [32]\nmax_attempts: 1\nsal:\n  warmup_epochs: 0\ndatasets:\n  s:\n    format: synthetic\n";
    spec::parse(Path::new("t.yaml"), text, &LoadOptions::default()).unwrap()
}

/// A SAL epoch record that applied `applied`.
fn epoch_with(epoch: u32, applied: sal_core::Action) -> EpochReport {
    EpochReport {
        epoch,
        train_loss: 1.0,
        train_accuracy: 0.5,
        val_loss: 1.0,
        val_accuracy: 0.5,
        grad_norm: 1.0,
        sal: Some(sal_core::EpochRecord {
            epoch,
            loss: 1.0,
            accuracy: 0.5,
            stress: 0.0,
            stress_after: 0.0,
            decided: applied,
            applied,
            noise_sigma: 0.0,
        }),
        seconds: 1.0,
        peak_device_mb: None,
        train_images_per_s: 0.0,
        eval_images_per_s: 0.0,
    }
}

#[tokio::test]
async fn a_random_shrink_perturb_trial_waits_for_its_sal_trial_and_is_leased_with_its_deformation_count() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sal_and_random_sweep();
    let (sal_id, random_id) = {
        let by = |m: common::Method| sweep.trials.iter().find(|t| t.spec.method == m).unwrap().id.clone();
        (by(common::Method::Sal), by(common::Method::ShrinkPerturbRandom))
    };
    let (store, _) = Store::open(dir.path(), &sweep, Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    // The random arm costs the same and its id may sort first: only the wait keeps it back.
    let first = lease(&store).await.unwrap();
    assert_eq!(first.trial_id, sal_id);
    assert!(lease(&store).await.is_none(), "leased before its sal trial ended");
    let mut sal_result = result();
    use sal_core::Action as A;
    sal_result.history = [A::None, A::Plastic, A::Recovered, A::NoisePlastic, A::None, A::Plastic]
        .iter()
        .zip(1..)
        .map(|(action, epoch)| epoch_with(epoch, *action))
        .collect();
    let json = serde_json::to_string(&sal_result).unwrap();
    store.complete(lease_ref(&first), sal_result, json, Vec::new()).await.unwrap();
    let second = lease(&store).await.unwrap();
    assert_eq!(second.trial_id, random_id);
    let leased: common::TrialSpec = serde_json::from_str(&second.spec_json).unwrap();
    // Three deformations applied (epochs 2, 4 and 6), recoveries not counted.
    assert_eq!(leased.deformations, Some(3));
    assert_eq!(leased.method, common::Method::ShrinkPerturbRandom);
    // The stored spec, and so the trial's identity, stay without it.
    let (_, records) = read_records(dir.path()).unwrap();
    assert_eq!(records.iter().find(|r| r.id == random_id).unwrap().spec.deformations, None);
}

#[tokio::test]
async fn after_a_restart_the_random_arm_still_gets_its_sal_trial_s_deformation_count() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sal_and_random_sweep();
    let (store, _) = Store::open(dir.path(), &sweep, Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    let first = lease(&store).await.unwrap();
    let mut sal_result = result();
    sal_result.history = (1..=4).map(|epoch| epoch_with(epoch, sal_core::Action::Plastic)).collect();
    let json = serde_json::to_string(&sal_result).unwrap();
    store.complete(lease_ref(&first), sal_result, json, Vec::new()).await.unwrap();
    // Reopened: the count comes back from the stored result, not from the first store's memory.
    drop(store);
    let (store, _) = Store::open(dir.path(), &sweep, Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    let second = lease(&store).await.unwrap();
    assert_ne!(second.trial_id, first.trial_id);
    let leased: common::TrialSpec = serde_json::from_str(&second.spec_json).unwrap();
    assert_eq!((leased.method, leased.deformations), (common::Method::ShrinkPerturbRandom, Some(4)));
}

#[tokio::test]
async fn a_random_shrink_perturb_trial_fails_with_its_sal_trial_and_the_sweep_ends() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = sal_and_random_sweep();
    let (store, _) = Store::open(dir.path(), &sweep, Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    let first = lease(&store).await.unwrap();
    store.fail(lease_ref(&first), "bad config".into(), false).await.unwrap();
    assert!(lease(&store).await.is_none());
    assert!(store.progress().borrow().is_complete(), "the sweep waits for a trial that cannot run");
    let (_, records) = read_records(dir.path()).unwrap();
    let random = records.iter().find(|r| r.spec.method == common::Method::ShrinkPerturbRandom).unwrap();
    assert_eq!(random.state, "failed");
    let error = random.last_error.as_deref().unwrap();
    assert!(error.contains(&first.trial_id) && error.contains("failed"), "{error}");
    // Reopened, the store keeps it failed (and does not wait for it either).
    drop(store);
    let (store, _) = Store::open(dir.path(), &sweep, Duration::from_secs(30), false).unwrap();
    assert!(store.progress().borrow().is_complete());
}

#[tokio::test]
async fn a_trial_out_of_memory_beside_others_runs_alone_next_uncharged_and_alone_fails_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let text = "name: t\nepochs: 2\nbatch_size: 1\nlearning_rate: 0.1\nseeds: [1, 2]\nmethods: [baseline]\n\
                architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\ngpus_per_trial: 1\n\
                datasets:\n  s:\n    format: synthetic\n";
    let sweep = spec::parse(Path::new("t.yaml"), text, &LoadOptions::default()).unwrap();
    let (store, _) = Store::open(dir.path(), &sweep, Duration::from_secs(30), false).unwrap();
    worker(&store).await;
    let first = lease(&store).await.unwrap();
    assert!(!first.alone);
    store.out_of_memory(lease_ref(&first), "killed by the kernel's OOM killer".into(), true).await.unwrap();

    // Beside others: pending again, no attempt charged, and only for a worker running nothing.
    let (_, records) = read_records(dir.path()).unwrap();
    let record = records.iter().find(|r| r.id == first.trial_id).unwrap();
    assert_eq!(record.state, "pending");
    assert!(record.last_error.as_deref().unwrap().contains("beside other trials"));
    let failures: u32 = rusqlite::Connection::open(dir.path().join(DB_FILE))
        .unwrap()
        .query_row("SELECT failures FROM trials WHERE id = ?1", [&first.trial_id], |r| r.get(0))
        .unwrap();
    assert_eq!(failures, 0);
    // A worker with a free device beside a busy one.
    let two =
        Registration { worker_id: "w2".into(), hostname: "h".into(), devices: 2, memory_mb: Vec::new() };
    store.register(two).await.unwrap();
    let busy = LeaseAsk {
        worker_id: "w2".into(),
        devices: vec![vec!["another-lease".into()], Vec::new()],
        held: Vec::new(),
        cached: Vec::new(),
        condition: String::new(),
        usage: None,
    };
    let beside = store.lease(busy).await.unwrap().grant.unwrap();
    assert_ne!(beside.trial_id, first.trial_id, "the trial that must run alone went to a busy worker");
    let beside_ref = LeaseRef {
        lease_id: beside.lease_id.clone(),
        trial_id: beside.trial_id.clone(),
        holder: "w2".into(),
    };
    store.release(beside_ref).await.unwrap();
    let alone = loop {
        let grant = lease(&store).await.unwrap();
        if grant.trial_id == first.trial_id {
            break grant;
        }
        store.release(lease_ref(&grant)).await.unwrap();
    };
    assert!(alone.alone, "the worker is told to run it alone");

    // Alone, out of memory again: failed for good, with why.
    store.out_of_memory(lease_ref(&alone), "CUDA out of memory".into(), false).await.unwrap();
    let (_, records) = read_records(dir.path()).unwrap();
    let record = records.iter().find(|r| r.id == first.trial_id).unwrap();
    assert_eq!(record.state, "failed");
    let error = record.last_error.as_deref().unwrap();
    assert!(error.contains("out of memory running alone") && error.contains("CUDA out of memory"), "{error}");
}
