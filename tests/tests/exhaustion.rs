//! Running out, with the real binaries: a full state dir, a full work dir, a trial killed by the
//! kernel for memory, a damaged state file, and a backup of a running store.
//!
//! The disk tests mount a small tmpfs and fill it mid-sweep with a file (then remove it), the
//! memory test puts a worker in a memory cgroup with a limit: both need root, and say SKIPPED
//! without it (CI runs as root). Nothing sleeps: every wait is for a line a process prints.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A tmpfs of `size` (`8m`) mounted at a folder of the test's, unmounted when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: PathBuf, size: &str) -> Result<Self, String> {
        if !is_root() {
            return Err("not root (mounting a tmpfs needs it)".into());
        }
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .map_err(|e| format!("mount: {e}"))?;
        if !status.success() {
            return Err(format!("mount -t tmpfs failed ({status})"));
        }
        Ok(Self { dir })
    }

    /// Fills the filesystem: a file grows until a write finds no room. Answers its path.
    fn fill(&self) -> PathBuf {
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler starts on a disk with room");
        let chunk = vec![0u8; 64 * 1024];
        loop {
            if let Err(e) = file.write_all(&chunk).and_then(|()| file.flush()) {
                assert!(::common::space::is_out_of_space(&e), "filling {}: {e}", path.display());
                break;
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// The attempts charged to each trial (`failures`): a full disk must charge none.
fn failures(state_dir: &Path) -> Vec<(String, u32)> {
    let conn = rusqlite::Connection::open_with_flags(
        state_dir.join(coordinator::store::DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut statement = conn.prepare("SELECT id, failures FROM trials").unwrap();
    statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect()
}

fn assert_no_panic(logs: &[(&str, String)]) {
    for (name, log) in logs {
        assert!(!log.contains("panicked"), "{name} panicked:\n{log}");
    }
}

#[test]
fn a_full_state_dir_says_so_once_keeps_every_result_and_the_sweep_goes_on_once_freed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(dir.path().join("disk"), "16m") {
        Ok(disk) => disk,
        Err(why) => return eprintln!("SKIPPED a_full_state_dir_...: {why}"),
    };
    let (trials, epochs) = (24, 4);
    let sweep = noop_sweep(dir.path(), trials, epochs, 40);
    let state = disk.dir.join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &[]);
    let url = coordinator.url();
    let mut a = start_worker(&url, &dir.path().join("a"), "worker-a");
    let mut b = start_worker(&url, &dir.path().join("b"), "worker-b");

    coordinator.process.stderr.wait_for("`trial completed`", |l| l.contains("trial completed"));
    let filler = disk.fill();
    let full = coordinator.process.stderr.wait_for("`state dir ... is full`", |l| l.contains("is full"));
    assert!(full.contains(&state.display().to_string()) && full.contains("free at least"), "{full}");
    eprintln!("the coordinator printed: {full}");
    // The workers keep what they could not send; the coordinator is not "away" to them.
    for worker in [&a, &b] {
        worker.stderr.wait_for("`no room to store results`", |l| l.contains("no room to store results"));
    }
    std::fs::remove_file(&filler).unwrap();
    coordinator.process.stderr.wait_for("`room again`", |l| l.contains("has room again"));

    coordinator.process.wait_success("coordinator");
    a.wait_success("worker a");
    b.wait_success("worker b");
    let log = coordinator.process.stderr.all();
    assert_eq!(log.matches("is full (").count(), 1, "said once:\n{log}");
    assert!(!log.contains("commit failed"), "{log}");
    assert_no_panic(&[("coordinator", log), ("worker a", a.stderr.all()), ("worker b", b.stderr.all())]);
    assert_all_done_once(&records(&state), trials, epochs);
    assert!(failures(&state).iter().all(|(_, n)| *n == 0), "{:?}", failures(&state));
    // Every "completed" in the log is a committed result: one line per trial.
    let completed = coordinator.process.stderr.all().matches("trial completed").count();
    assert_eq!(completed, trials);
}

#[test]
fn a_full_work_dir_hands_its_trial_back_uncharged_shows_in_status_and_takes_trials_again_once_freed() {
    let dir = tempfile::tempdir().unwrap();
    let disk = match Tmpfs::mount(dir.path().join("disk"), "8m") {
        Ok(disk) => disk,
        Err(why) => return eprintln!("SKIPPED a_full_work_dir_...: {why}"),
    };
    let (trials, epochs) = (16, 4);
    let sweep = noop_sweep(dir.path(), trials, epochs, 40);
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &[]);
    let url = coordinator.url();
    let mut a = start_worker(&url, &disk.dir.join("work"), "worker-a");
    a.stderr.wait_for("`trial started`", |l| l.contains("trial started"));
    let filler = disk.fill();
    let full =
        a.stderr.wait_for("`work dir ... is full`", |l| l.contains("work dir") && l.contains("is full"));
    assert!(full.contains("no new trials until there is room"), "{full}");
    eprintln!("worker a printed: {full}");
    // The coordinator's status names the worker and why it takes nothing.
    let status = Command::new(binary("coordinator"))
        .args(["status", "--coordinator", &url])
        .output()
        .expect("status runs");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("worker worker-a takes no trials: work dir"), "{text}");
    eprintln!("coordinator status printed:\n{text}");
    // Another worker takes the sweep on meanwhile; once freed, the first takes trials again.
    let mut b = start_worker(&url, &dir.path().join("b"), "worker-b");
    b.stderr.wait_for("`trial completed`", |l| l.contains("trial completed"));
    std::fs::remove_file(&filler).unwrap();
    a.stderr.wait_for("`room again`", |l| l.contains("has room again"));

    coordinator.process.wait_success("coordinator");
    a.wait_success("worker a");
    b.wait_success("worker b");
    let log = coordinator.process.stderr.all();
    assert_eq!(log.matches("worker takes no trials: work dir").count(), 1, "said once:\n{log}");
    assert_no_panic(&[("coordinator", log), ("worker a", a.stderr.all()), ("worker b", b.stderr.all())]);
    assert_all_done_once(&records(&state), trials, epochs);
    assert!(failures(&state).iter().all(|(_, n)| *n == 0), "{:?}", failures(&state));
}

/// A memory cgroup with a limit, for a worker and its trial processes; removed when dropped.
struct MemoryLimit {
    dir: PathBuf,
}

impl MemoryLimit {
    /// Under this process's own memory cgroup (cgroup v1's memory controller, or v2).
    fn create(name: &str, bytes: u64) -> Result<Self, String> {
        if !is_root() {
            return Err("not root (a memory cgroup needs it)".into());
        }
        let cgroups = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
        for line in cgroups.lines() {
            let fields: Vec<&str> = line.splitn(3, ':').collect();
            let [_, controllers, path] = fields[..] else { continue };
            let path = path.trim_start_matches('/');
            let (root, limit_file) = if controllers.split(',').any(|c| c == "memory") {
                ("/sys/fs/cgroup/memory", "memory.limit_in_bytes")
            } else if controllers.is_empty() && Path::new("/sys/fs/cgroup/cgroup.controllers").is_file() {
                ("/sys/fs/cgroup", "memory.max")
            } else {
                continue;
            };
            let dir = Path::new(root).join(path).join(name);
            if std::fs::create_dir(&dir).is_err() {
                continue;
            }
            let limited = Self { dir };
            if std::fs::write(limited.dir.join(limit_file), bytes.to_string()).is_ok() {
                return Ok(limited);
            }
        }
        Err("no writable memory cgroup".into())
    }

    /// A shell command line that moves itself into the cgroup, then becomes `program`.
    fn wrap(&self, program: &Path) -> Command {
        let mut command = Command::new("sh");
        command.arg("-c").arg(format!(
            "echo $$ > {}/cgroup.procs && exec {} \"$@\"",
            self.dir.display(),
            program.display()
        ));
        command.arg("sh");
        command
    }
}

impl Drop for MemoryLimit {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[test]
fn a_trial_killed_by_the_kernel_for_memory_says_so_with_its_peak_and_alone_fails_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let limit = match MemoryLimit::create(&format!("sal-oom-{}", std::process::id()), 400 << 20) {
        Ok(limit) => limit,
        Err(why) => return eprintln!("SKIPPED a_trial_killed_by_the_kernel_...: {why}"),
    };
    // 20,000 images of 64 px take about 850 MB in the trial process: far over the 400 MB limit.
    let sweep = dir.path().join("sweep.yaml");
    std::fs::write(
        &sweep,
        "name: oom\nepochs: 1\nbatch_size: 64\nlearning_rate: 0.01\nseeds: [1]\nmethods: [baseline]\n\
         architectures: [small_cnn]\noptimizers: [sgd]\nresolutions: [64]\nmax_attempts: 3\n\
         datasets:\n  big:\n    format: synthetic\n    options: {train_size: 20000, val_size: 100, classes: 4}\n",
    )
    .unwrap();
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &[]);
    let mut command = limit.wrap(&binary("worker"));
    command
        .args(["--coordinator", &coordinator.url(), "--worker-id", "worker-a", "--cpu-ranks", "1"])
        .arg("--work-dir")
        .arg(dir.path().join("a"));
    let mut worker = Process::spawn(&mut command);
    let failed = worker.stderr.wait_for("`trial failed`", |l| l.contains("trial failed"));
    assert!(
        failed.contains("OOM killer") && failed.contains("oom_kill") && failed.contains("peak RSS"),
        "{failed}"
    );
    eprintln!("the worker printed: {failed}");

    coordinator.process.wait_success("coordinator");
    worker.wait_success("worker");
    let records = records(&state);
    assert_eq!(records[0].state, "failed");
    let error = records[0].last_error.as_deref().unwrap();
    assert!(error.starts_with("out of memory running alone") && error.contains("OOM killer"), "{error}");
    // The report's failures say why.
    let report = Command::new(binary("coordinator"))
        .args(["report", "--failures", "--state-dir"])
        .arg(&state)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("out of memory running alone"), "{text}");
    eprintln!("coordinator report --failures printed:\n{text}");
}

/// A store with the results of a small finished sweep, made by the real binaries.
fn finished_store(dir: &Path) -> PathBuf {
    let sweep = noop_sweep(dir, 3, 2, 0);
    let state = dir.join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &[]);
    let mut worker = start_worker(&coordinator.url(), &dir.join("w"), "worker-a");
    coordinator.process.wait_success("coordinator");
    worker.wait_success("worker");
    // Everything into the database file itself (the log checkpointed away): the file is the store.
    let conn = rusqlite::Connection::open(state.join(coordinator::store::DB_FILE)).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
    drop(conn);
    state
}

/// The store's files (the database and anything SQLite keeps beside it) and their bytes'
/// digests; the lock file, which says who holds the state dir, is not the store.
fn snapshot(state: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.is_file()
                && p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("coordinator.sqlite"))
        })
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), format!("{:x}", md5_like(&bytes)))
        })
        .collect();
    files.sort();
    files
}

/// A digest good enough to see a changed byte (FNV-1a, 64 bits).
fn md5_like(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[test]
fn a_damaged_or_truncated_state_file_is_refused_in_one_line_without_a_byte_changed() {
    let dir = tempfile::tempdir().unwrap();
    let state = finished_store(dir.path());
    let db = state.join(coordinator::store::DB_FILE);
    let good = std::fs::read(&db).unwrap();
    for (damage, expected) in [("corrupted", "quick_check found"), ("truncated", "malformed")] {
        let bytes = match damage {
            "corrupted" => {
                let mut bytes = good.clone();
                // Past the header: b-tree pages, as a failing disk or a stray write leaves them.
                let middle = bytes.len() / 2;
                bytes[middle..middle + 3000].fill(0xff);
                bytes
            }
            _ => good[..good.len() / 2].to_vec(),
        };
        let _ = std::fs::remove_file(state.join("coordinator.sqlite-wal"));
        let _ = std::fs::remove_file(state.join("coordinator.sqlite-shm"));
        std::fs::write(&db, &bytes).unwrap();
        let before = snapshot(&state);
        let sweep = dir.path().join("sweep.yaml");
        for args in [
            vec!["report".to_string(), "--state-dir".into(), state.display().to_string()],
            vec![
                "--sweep".into(),
                sweep.display().to_string(),
                "--state-dir".into(),
                state.display().to_string(),
            ],
        ] {
            let output = Command::new(binary("coordinator")).args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(!output.status.success(), "{damage}: {args:?} accepted it");
            let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains(" INFO ")).collect();
            assert_eq!(lines.len(), 1, "{damage}: one line, got:\n{stderr}");
            let line = lines[0];
            assert!(line.starts_with("error: ") && line.contains(&db.display().to_string()), "{line}");
            assert!(line.contains(expected) && line.contains("coordinator backup"), "{damage}: {line}");
            eprintln!("{damage}, {}: {line}", args[0]);
            assert_eq!(snapshot(&state), before, "{damage}: {args:?} changed the state dir");
        }
    }
}

#[test]
fn a_backup_of_a_running_sweep_restores_a_store_that_reports() {
    let dir = tempfile::tempdir().unwrap();
    let sweep = noop_sweep(dir.path(), 6, 3, 100);
    let state = dir.path().join("state");
    let mut coordinator = Coordinator::start(&sweep, &state, "127.0.0.1:0", &[]);
    let mut worker = start_worker(&coordinator.url(), &dir.path().join("w"), "worker-a");
    coordinator.process.stderr.wait_for("`trial completed`", |l| l.contains("trial completed"));
    let copy = dir.path().join("backup.sqlite");
    let output = Command::new(binary("coordinator"))
        .args(["backup", "--state-dir"])
        .arg(&state)
        .arg("--to")
        .arg(&copy)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("(6 trials, ") && stdout.contains("to restore"), "{stdout}");
    // A second backup to the same file is refused: nothing is overwritten.
    let again = Command::new(binary("coordinator"))
        .args(["backup", "--state-dir"])
        .arg(&state)
        .arg("--to")
        .arg(&copy)
        .output()
        .unwrap();
    assert!(!again.status.success());
    coordinator.process.wait_success("coordinator");
    worker.wait_success("worker");

    // Restored as the docs say, into a state dir of its own: a consistent store that reports.
    let restored = dir.path().join("restored");
    std::fs::create_dir_all(&restored).unwrap();
    std::fs::copy(&copy, restored.join(coordinator::store::DB_FILE)).unwrap();
    let records = records(&restored);
    assert_eq!(records.len(), 6);
    assert!(records.iter().any(|r| r.state == "done"), "the backup holds the first result");
    let report =
        Command::new(binary("coordinator")).args(["report", "--state-dir"]).arg(&restored).output().unwrap();
    assert!(report.status.success(), "{}", String::from_utf8_lossy(&report.stderr));
}
