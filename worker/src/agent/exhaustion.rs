//! Running out on this node: a work dir with no room left (a state the agent waits out, taking
//! no trials), and what the kernel says when it kills a trial process for memory.
//!
//! The kernel's OOM record is read from the agent's own memory cgroup (its trial processes are in
//! it or below it): cgroup v2's `memory.events` and cgroup v1's `memory.oom_control` both count
//! `oom_kill`s. A count that grew while a trial process died of SIGKILL (not sent by the agent)
//! says that the kernel killed it for memory.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a full work dir is looked at again.
pub const PROBE_EVERY: Duration = Duration::from_secs(2);

/// Free bytes a full work dir must have again before the agent takes trials.
pub const ROOM_TO_RESUME: u64 = 1024 * 1024;

/// The work dir has no room: what the agent says, and when it looks again.
#[derive(Debug)]
pub(super) struct DiskFull {
    dir: PathBuf,
    cause: String,
    /// Free bytes when the agent found it full. The line stays the same while it waits: the
    /// coordinator logs a worker's condition when it changes, and room that came back between
    /// two looks is said by the next look, not as "full (58 MiB free)".
    free_bytes: u64,
    next_probe: Instant,
}

impl DiskFull {
    pub(super) fn new(dir: &Path, cause: String) -> Self {
        let free_bytes = common::space::free_bytes(dir).unwrap_or(0);
        let full =
            Self { dir: dir.to_path_buf(), cause, free_bytes, next_probe: Instant::now() + PROBE_EVERY };
        tracing::error!(
            "{}: no new trials until there is room (the trial's lease is handed back, no attempt charged; \
             results not yet sent are kept)",
            full.describe()
        );
        full
    }

    /// What the coordinator's `status` shows for this worker.
    pub(super) fn describe(&self) -> String {
        format!(
            "work dir {} is full ({} free; needs {}): {}",
            self.dir.display(),
            common::space::human(self.free_bytes),
            common::space::human(ROOM_TO_RESUME),
            self.cause
        )
    }

    /// Whether there is room again; looks at most every [`PROBE_EVERY`].
    pub(super) fn room_again(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next_probe {
            return false;
        }
        self.next_probe = now + PROBE_EVERY;
        let free = common::space::free_bytes(&self.dir).unwrap_or(0);
        if free < ROOM_TO_RESUME {
            return false;
        }
        tracing::info!(work_dir = %self.dir.display(), free = %common::space::human(free), "the work dir has room again: taking trials");
        true
    }

    pub(super) fn next_probe(&self) -> Instant {
        self.next_probe
    }
}

/// The kernel's count of OOM kills in the agent's memory cgroup, and the file it was read from;
/// `None` where no such file can be read.
pub(super) fn oom_kills() -> Option<(PathBuf, u64)> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    for line in cgroups.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) = (fields.next(), fields.next(), fields.next()) else {
            continue;
        };
        let path = path.trim_start_matches('/');
        let candidates: Vec<PathBuf> = if controllers.is_empty() {
            // cgroup v2 (mounted at /sys/fs/cgroup, or beside v1 at /sys/fs/cgroup/unified).
            ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
                .iter()
                .map(|root| Path::new(root).join(path).join("memory.events"))
                .collect()
        } else if controllers.split(',').any(|c| c == "memory") {
            vec![Path::new("/sys/fs/cgroup/memory").join(path).join("memory.oom_control")]
        } else {
            continue;
        };
        for file in candidates {
            if let Some(count) = read_oom_kill(&file) {
                return Some((file, count));
            }
        }
    }
    None
}

/// The `oom_kill N` line of a cgroup's memory events file.
fn read_oom_kill(file: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines().find_map(|line| line.strip_prefix("oom_kill ")?.trim().parse().ok())
}

/// A process's peak resident memory (`VmHWM`) in KiB, while it lives.
pub(super) fn peak_rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmHWM:")
}

/// A process's resident memory now (`VmRSS`) in KiB, while it lives.
pub(super) fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

/// One `... kB` figure of `/proc/PID/status`.
fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_reads_its_own_peak_memory_and_an_oom_count_file_s_line() {
        assert!(peak_rss_kib(std::process::id()).is_some_and(|kib| kib > 0));
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("memory.events");
        std::fs::write(&file, "low 0\nhigh 0\nmax 3\noom 2\noom_kill 2\n").unwrap();
        assert_eq!(read_oom_kill(&file), Some(2));
        std::fs::write(&file, "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n").unwrap();
        assert_eq!(read_oom_kill(&file), Some(7));
    }
}
