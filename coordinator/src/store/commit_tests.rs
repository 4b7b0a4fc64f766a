//! The store's edge cases around commits and checkpoint files, driven batch by batch on a
//! [`Core`] as the store's thread drives it, so that a batch can be made to fail where wanted.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TrialResult, TrialStatus};
use rusqlite::Connection;

use std::collections::HashSet;

use super::actor::{job, Job};
use super::handle::answered_at_commit;
use super::*;
use crate::sweep::spec::Sweep;
use crate::sweep::spec::{self, LoadOptions};

const TTL: Duration = Duration::from_secs(30);

fn sweep(seeds: &str, max_attempts: u32) -> Sweep {
    let text = format!(
        "name: t\nepochs: 2\nbatch_size: 1\nlearning_rate: 0.1\nseeds: {seeds}\nmethods: [baseline]\n\
         architectures: [noop]\noptimizers: [sgd]\nresolutions: [32]\nmax_attempts: {max_attempts}\n\
         datasets:\n  s:\n    format: synthetic\n"
    );
    spec::parse(Path::new("t.yaml"), &text, &LoadOptions::default()).unwrap()
}

fn result(status: TrialStatus) -> TrialResult {
    super::stand_in_result(status, 0.5)
}

fn ask() -> LeaseAsk {
    LeaseAsk {
        worker_id: "w".into(),
        devices: vec![Vec::new()],
        held: Vec::new(),
        cached: Vec::new(),
        condition: String::new(),
        usage: None,
    }
}

fn lease_ref(grant: &Grant) -> LeaseRef {
    LeaseRef { lease_id: grant.lease_id.clone(), trial_id: grant.trial_id.clone(), holder: "w".into() }
}

/// Runs `batch` as the store's thread would, the disk syncing at once.
fn run_batch(core: &mut Core, batch: Vec<Job>) {
    for after_sync in core.run_batch(batch) {
        after_sync(Ok(()));
    }
}

/// Runs `f` as a batch of its own, as the store's thread would; answers its outcome.
fn run_now<R: Send + 'static>(
    core: &mut Core,
    f: impl FnOnce(&mut Core) -> Result<R> + Send + 'static,
) -> Result<R> {
    let (job, mut answer) = job(f, None, |_| false);
    run_batch(core, vec![job]);
    answer.try_recv().expect("a job is answered when its batch ends")
}

/// A core with a registered worker holding the sweep's only trial.
fn leased_core(dir: &Path) -> (Core, Grant) {
    let (mut core, _, _) = Core::open(dir, &sweep("[1]", 3), TTL, false).unwrap();
    let registration =
        Registration { worker_id: "w".into(), hostname: "h".into(), devices: 1, memory_mb: Vec::new() };
    run_now(&mut core, move |core| core.register(registration)).unwrap();
    let grant = run_now(&mut core, |core| core.lease(ask())).unwrap().grant.unwrap();
    (core, grant)
}

/// Writes a checkpoint file as an upload leaves it, and records it.
fn upload(core: &mut Core, grant: &Grant, epoch: u32) -> (PathBuf, Result<()>) {
    let folder = core.checkpoint_folder(&grant.trial_id);
    std::fs::create_dir_all(&folder).unwrap();
    let path = folder.join(format!("epoch-{epoch}"));
    std::fs::write(&path, format!("epoch {epoch}")).unwrap();
    let (lease, file) = (lease_ref(grant), path.clone());
    let outcome = run_now(core, move |core| core.record_checkpoint(&lease, epoch, &file, 7));
    (path, outcome)
}

#[test]
fn when_the_transaction_cannot_begin_no_job_of_the_batch_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (mut core, _, _) = Core::open(dir.path(), &sweep("[1]", 3), TTL, false).unwrap();
    let registration =
        Registration { worker_id: "w".into(), hostname: "h".into(), devices: 1, memory_mb: Vec::new() };
    run_now(&mut core, move |core| core.register(registration)).unwrap();
    core.conn.busy_timeout(Duration::ZERO).unwrap();
    // Another connection holds the write lock, so BEGIN IMMEDIATE fails at once.
    let blocker = Arc::new(Mutex::new(Connection::open(dir.path().join(DB_FILE)).unwrap()));
    blocker.lock().unwrap().execute_batch("BEGIN IMMEDIATE").unwrap();
    // The batch's first job lets go of that lock: were jobs run without the batch's transaction,
    // the lease after it would commit by itself while its caller hears of a failed commit.
    let (release, mut released) = job(
        {
            let blocker = blocker.clone();
            move |_: &mut Core| Ok(blocker.lock().unwrap().execute_batch("COMMIT")?)
        },
        None,
        |_| false,
    );
    let (lease, mut leased) = job(|core| core.lease(ask()), None, |_| true);
    run_batch(&mut core, vec![release, lease]);
    assert!(matches!(released.try_recv().unwrap(), Err(StoreError::Commit { .. })));
    let refused = leased.try_recv().unwrap();
    assert!(matches!(refused, Err(StoreError::Commit { .. })), "{refused:?}");
    // The releasing job never ran: the blocker still has its transaction to end.
    blocker.lock().unwrap().execute_batch("COMMIT").unwrap();
    let (_, records) = read_records(dir.path()).unwrap();
    assert_eq!((records[0].state.as_str(), records[0].attempts), ("pending", 0));
    // Memory agrees with the disk: the next lease is the trial's first attempt.
    let grant = run_now(&mut core, |core| core.lease(ask())).unwrap().grant.unwrap();
    assert_eq!(grant.attempt, 1);
}

#[test]
fn a_lease_is_answered_at_commit_a_result_and_the_sweep_s_end_once_the_disk_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut core, _, _) = Core::open(dir.path(), &sweep("[1, 2]", 3), TTL, false).unwrap();
    let registration =
        Registration { worker_id: "w".into(), hostname: "h".into(), devices: 1, memory_mb: Vec::new() };
    run_now(&mut core, move |core| core.register(registration)).unwrap();
    let complete = |grant: &Grant| {
        let (lease, json) =
            (lease_ref(grant), serde_json::to_string(&result(TrialStatus::Completed)).unwrap());
        job(move |core| core.complete(&lease, &result(TrialStatus::Completed), &json, &[]), None, |_| false)
    };
    let first = run_now(&mut core, |core| core.lease(ask())).unwrap().grant.unwrap();

    // A result and the next lease in one batch: the lease leaves at commit, the result waits.
    let (completion, mut completed) = complete(&first);
    let (next, mut leased) = job(|core| core.lease(ask()), None, answered_at_commit);
    let after_sync = core.run_batch(vec![completion, next]);
    let second = leased.try_recv().expect("answered at commit").unwrap().grant.unwrap();
    assert!(completed.try_recv().is_err(), "a result is not safe before the disk has it");
    after_sync.into_iter().for_each(|answer| answer(Ok(())));
    completed.try_recv().unwrap().unwrap();

    // "The sweep is done" waits for the disk too: a worker told so leaves for good.
    let (completion, mut completed) = complete(&second);
    let (last, mut told) = job(|core| core.lease(ask()), None, answered_at_commit);
    let after_sync = core.run_batch(vec![completion, last]);
    assert!(told.try_recv().is_err() && completed.try_recv().is_err());
    after_sync.into_iter().for_each(|answer| answer(Ok(())));
    assert!(told.try_recv().unwrap().unwrap().sweep_done);
    completed.try_recv().unwrap().unwrap();
}

#[test]
fn a_replaced_checkpoint_is_removed_only_once_its_replacement_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut core, grant) = leased_core(dir.path());
    let (first, recorded) = upload(&mut core, &grant, 1);
    recorded.unwrap();

    // A batch whose commit fails: the job after the upload leaves a deferred foreign key
    // violation, which SQLite checks at COMMIT.
    let folder = core.checkpoint_folder(&grant.trial_id);
    let second = folder.join("epoch-2");
    std::fs::write(&second, "epoch 2").unwrap();
    let (record, mut recorded) = job(
        {
            let (lease, file) = (lease_ref(&grant), second.clone());
            move |core| core.record_checkpoint(&lease, 2, &file, 7)
        },
        None,
        |_| false,
    );
    let (poison, _) = job(
        |core: &mut Core| {
            Ok(core.conn.execute_batch(
                "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent_id INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
             INSERT INTO child VALUES (1);",
            )?)
        },
        None,
        |_| false,
    );
    run_batch(&mut core, vec![record, poison]);
    assert!(matches!(recorded.try_recv().unwrap(), Err(StoreError::Commit { .. })));
    assert!(first.exists(), "the store still indexes epoch 1: its file must stay");
    assert!(!second.exists(), "the uncommitted upload is garbage");
    let trial = grant.trial_id.clone();
    assert_eq!(run_now(&mut core, move |core| core.checkpoint_of(&trial)).unwrap(), Some((1, first.clone())));

    // Committed, the replacement removes the file it replaced.
    let (second, recorded) = upload(&mut core, &grant, 2);
    recorded.unwrap();
    assert!(!first.exists() && second.exists());
}

#[test]
fn an_ended_trial_leaves_no_checkpoint_and_a_retried_one_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let (mut core, _, _) = Core::open(dir.path(), &sweep("[1, 2, 3, 4]", 2), TTL, false).unwrap();
    let registration =
        Registration { worker_id: "w".into(), hostname: "h".into(), devices: 1, memory_mb: Vec::new() };
    run_now(&mut core, move |core| core.register(registration)).unwrap();
    let lease_one = |core: &mut Core| {
        let grant = run_now(core, |core| core.lease(ask())).unwrap().grant.unwrap();
        let (path, recorded) = upload(core, &grant, 1);
        recorded.unwrap();
        (grant, path)
    };
    let gone = |core: &Core, grant: &Grant| {
        let trial = grant.trial_id.clone();
        !core.checkpoint_folder(&trial).exists() && core.checkpoint_of(&trial).unwrap().is_none()
    };

    let (done, _) = lease_one(&mut core);
    let json = serde_json::to_string(&result(TrialStatus::Completed)).unwrap();
    let lease = lease_ref(&done);
    run_now(&mut core, move |core| core.complete(&lease, &result(TrialStatus::Completed), &json, &[]))
        .unwrap();
    assert!(gone(&core, &done), "done");

    let (diverged, _) = lease_one(&mut core);
    let json = serde_json::to_string(&result(TrialStatus::Diverged)).unwrap();
    let lease = lease_ref(&diverged);
    run_now(&mut core, move |core| core.complete(&lease, &result(TrialStatus::Diverged), &json, &[]))
        .unwrap();
    assert!(gone(&core, &diverged), "diverged");

    let (failed, _) = lease_one(&mut core);
    let lease = lease_ref(&failed);
    run_now(&mut core, move |core| core.fail(&lease, "bad data", false)).unwrap();
    assert!(gone(&core, &failed), "failed for good");

    // A retryable failure with attempts left: the next attempt resumes from the checkpoint.
    let (retried, path) = lease_one(&mut core);
    let lease = lease_ref(&retried);
    run_now(&mut core, move |core| core.fail(&lease, "out of memory", true)).unwrap();
    assert!(path.exists());
    let again = run_now(&mut core, |core| core.lease(ask())).unwrap().grant.unwrap();
    assert_eq!((again.trial_id.as_str(), again.resume_epoch), (retried.trial_id.as_str(), 1));
    // Its last attempt expires: failed for good, and its checkpoint goes too.
    let later = now_ms() + 10 * TTL.as_millis() as u64;
    assert_eq!(run_now(&mut core, move |core| core.expire(later)).unwrap(), 1);
    assert!(gone(&core, &again), "failed after its last attempt");
    let (_, records) = read_records(dir.path()).unwrap();
    let states: HashSet<&str> = records.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, HashSet::from(["done", "diverged", "failed"]));
}

#[test]
fn opening_removes_the_checkpoints_of_trials_that_had_ended() {
    let dir = tempfile::tempdir().unwrap();
    let (ended, pending) = {
        let (mut core, _, _) = Core::open(dir.path(), &sweep("[1, 2]", 3), TTL, false).unwrap();
        let registration =
            Registration { worker_id: "w".into(), hostname: "h".into(), devices: 1, memory_mb: Vec::new() };
        run_now(&mut core, move |core| core.register(registration)).unwrap();
        let done = run_now(&mut core, |core| core.lease(ask())).unwrap().grant.unwrap();
        let json = serde_json::to_string(&result(TrialStatus::Completed)).unwrap();
        let lease = lease_ref(&done);
        run_now(&mut core, move |core| core.complete(&lease, &result(TrialStatus::Completed), &json, &[]))
            .unwrap();
        let other = run_now(&mut core, |core| core.lease(ask())).unwrap().grant.unwrap();
        let (_, recorded) = upload(&mut core, &other, 1);
        recorded.unwrap();
        // As a crash between a commit and its removals leaves it (or a store from before the rule).
        let stale = core.checkpoint_folder(&done.trial_id);
        std::fs::create_dir_all(&stale).unwrap();
        std::fs::write(stale.join("epoch-2"), "left behind").unwrap();
        (stale, core.checkpoint_folder(&other.trial_id))
    };
    let _reopened = Core::open(dir.path(), &sweep("[1, 2]", 3), TTL, false).unwrap();
    assert!(!ended.exists());
    assert!(pending.join("epoch-1").exists(), "an unfinished trial resumes from its checkpoint");
}

#[test]
fn a_full_state_dir_refuses_writes_keeps_leases_alive_and_goes_on_by_itself_once_there_is_room() {
    let dir = tempfile::tempdir().unwrap();
    let (mut core, grant) = leased_core(dir.path());
    let health = core.health.subscribe();
    // No page more for the store's connection: the next write that needs one fails as a full disk
    // does (SQLITE_FULL, "database or disk is full").
    let pages: i64 = core.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
    core.conn.execute_batch(&format!("PRAGMA max_page_count = {pages}")).unwrap();
    let mut big = result(TrialStatus::Completed);
    big.per_class = (0..2000)
        .map(|i| common::ClassMetrics {
            label: format!("class {i}"),
            precision: 0.5,
            recall: 0.5,
            f1: 0.5,
            support: 1,
        })
        .collect();
    let complete = |grant: &Grant, result: &TrialResult| {
        let (lease, result) = (lease_ref(grant), result.clone());
        let json = serde_json::to_string(&result).unwrap();
        job(move |core| core.complete(&lease, &result, &json, &[]), None, |_| false)
    };
    let take = |core: &mut Core, batch: Vec<Job>| {
        for after_sync in core.take_batch(batch) {
            after_sync(Ok(()));
        }
    };

    // The result finds no room; SQLite rolls the batch back, and the job behind it must not run
    // on its own (it would commit by itself).
    let (completion, mut completed) = complete(&grant, &big);
    let (behind, mut behind_answer) = job(|core| core.lease(ask()), None, |_| false);
    take(&mut core, vec![completion, behind]);
    let refused = completed.try_recv().unwrap();
    assert!(matches!(refused, Err(StoreError::Full(_))), "{refused:?}");
    assert!(matches!(behind_answer.try_recv().unwrap(), Err(StoreError::Full(_))));
    let full = health.borrow().clone().expect("the store says it is full");
    assert_eq!(full.dir, dir.path());
    assert!(full.describe().contains(&dir.path().display().to_string()), "{}", full.describe());

    // Full: nothing is leased or written; a worker's leases live on in memory.
    let held = vec![grant.lease_id.clone()];
    let waiting = held.clone();
    let (ask_again, mut asked) = job(
        |core| core.lease(ask()),
        Some(Box::new(move |core: &mut Core| core.keep_alive("w", &waiting, "", None))),
        |_| false,
    );
    let (report, mut reported) = job(
        {
            let lease = lease_ref(&grant);
            move |core| {
                let report = common::EpochReport {
                    epoch: 1,
                    train_loss: 1.0,
                    train_accuracy: 0.5,
                    val_loss: 1.0,
                    val_accuracy: 0.5,
                    grad_norm: 1.0,
                    sal: None,
                    seconds: 1.0,
                    peak_device_mb: None,
                    train_images_per_s: 0.0,
                    eval_images_per_s: 0.0,
                };
                core.report_epoch(&lease, &report, "{}")
            }
        },
        None,
        |_| false,
    );
    let deadline_before = core.sched.lease(&grant.lease_id).unwrap().deadline_ms;
    take(&mut core, vec![ask_again, report]);
    let reply = asked.try_recv().unwrap().unwrap();
    assert!(reply.grant.is_none() && reply.lost.is_empty() && !reply.sweep_done);
    assert!(core.sched.lease(&grant.lease_id).unwrap().deadline_ms >= deadline_before);
    assert!(matches!(reported.try_recv().unwrap(), Err(StoreError::Full(_))));

    // Room again: the next look finds it, the result commits, the store says it goes on.
    core.conn.execute_batch("PRAGMA max_page_count = 1073741823").unwrap();
    core.probe_now();
    let (completion, mut completed) = complete(&grant, &big);
    take(&mut core, vec![completion]);
    completed.try_recv().unwrap().unwrap();
    assert!(health.borrow().is_none(), "room again");
    let (_, records) = read_records(dir.path()).unwrap();
    assert_eq!((records[0].state.as_str(), records[0].attempts), ("done", 1));
    assert_eq!(records[0].result.as_ref().unwrap().per_class.len(), 2000);
}
