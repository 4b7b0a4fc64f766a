//! `coordinator status`: a running sweep's counts and ETA, its workers (devices, trials, when
//! last heard) and each trial in flight (epoch of total, last loss, stress), as text.

use std::fmt::Write as _;

use proto::pb;

use crate::report::grid::Grid;

pub fn human_duration(seconds: f64) -> String {
    let seconds = seconds.max(0.0).round() as u64;
    format!("{}h{:02}m{:02}s", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// True once nothing is pending, leased or running.
pub fn finished(status: &pb::StatusResponse) -> bool {
    status.pending + status.leased + status.running == 0
}

pub fn render(status: &pb::StatusResponse) -> String {
    let mut out = String::new();
    let total =
        status.pending + status.leased + status.running + status.done + status.failed + status.diverged;
    let _ = write!(
        out,
        "{}: {} done, {} running, {} leased, {} pending, {} failed, {} diverged ({total} trials)",
        status.sweep_name,
        status.done,
        status.running,
        status.leased,
        status.pending,
        status.failed,
        status.diverged
    );
    match status.eta_seconds {
        Some(eta) if !finished(status) => {
            let _ = writeln!(out, "; eta {}", human_duration(eta));
        }
        _ => out.push('\n'),
    }
    // Running out of room stops the sweep: said first, whatever else follows.
    if !status.state_dir_full.is_empty() {
        let _ = writeln!(out, "state dir full: {}", status.state_dir_full);
    }
    for worker in status.workers.iter().filter(|w| !w.condition.is_empty()) {
        let _ = writeln!(out, "worker {} takes no trials: {}", worker.worker_id, worker.condition);
    }
    // Pending trials that fit no registered worker would otherwise wait in silence.
    for why in &status.unplaceable {
        let _ = writeln!(out, "cannot run: {why}");
    }
    if status.workers.is_empty() {
        out.push_str("no workers registered\n");
    } else {
        let workers = Grid {
            title: "workers".into(),
            header: ["worker", "host", "devices", "trials", "last heard"].map(String::from).to_vec(),
            rows: status
                .workers
                .iter()
                .map(|w| {
                    vec![
                        w.worker_id.clone(),
                        w.hostname.clone(),
                        w.devices.to_string(),
                        w.trials.len().to_string(),
                        format!("{:.1} s ago", w.idle_ms as f64 / 1000.0),
                    ]
                })
                .collect(),
            numeric_from: 2,
            notes: Vec::new(),
            importance: &[],
        };
        out.push_str(&workers.text());
    }
    if !status.in_flight.is_empty() {
        let trials = Grid {
            title: "in flight".into(),
            header: ["trial", "setup", "worker", "epoch", "train loss", "val acc %", "stress"]
                .map(String::from)
                .to_vec(),
            rows: status
                .in_flight
                .iter()
                .map(|t| {
                    vec![
                        t.trial_id.chars().take(12).collect(),
                        t.label.clone(),
                        t.worker_id.clone(),
                        format!("{}/{}", t.epoch, t.epochs),
                        t.train_loss.map_or_else(|| "–".into(), |v| format!("{v:.4}")),
                        t.val_accuracy.map_or_else(|| "–".into(), |v| format!("{:.2}", v * 100.0)),
                        t.stress.map_or_else(|| "–".into(), |v| format!("{v:.3}")),
                    ]
                })
                .collect(),
            numeric_from: 3,
            notes: Vec::new(),
            importance: &[],
        };
        out.push_str(&trials.text());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_workers_trials_in_flight_and_the_eta() {
        let status = pb::StatusResponse {
            sweep_name: "s".into(),
            pending: 3,
            running: 1,
            done: 2,
            workers: vec![pb::WorkerStatus {
                worker_id: "w1".into(),
                hostname: "node-a".into(),
                devices: 2,
                trials: vec!["abcdef0123456789".into()],
                idle_ms: 1500,
                condition: String::new(),
                usage: None,
            }],
            eta_seconds: Some(3725.0),
            in_flight: vec![pb::TrialProgress {
                trial_id: "abcdef0123456789".into(),
                worker_id: "w1".into(),
                label: "small_cnn/adam/synthetic@32 sal seed 1".into(),
                epoch: 3,
                epochs: 10,
                train_loss: Some(1.23456),
                val_accuracy: Some(0.5),
                stress: Some(0.25),
            }],
            ..Default::default()
        };
        let text = render(&status);
        assert!(
            text.starts_with(
                "s: 2 done, 1 running, 0 leased, 3 pending, 0 failed, 0 diverged (6 trials); eta 1h02m05s"
            ),
            "{text}"
        );
        assert!(text.contains("node-a") && text.contains("1.5 s ago"), "{text}");
        assert!(text.contains("abcdef012345 ") && text.contains("3/10") && text.contains("1.2346"), "{text}");
        assert!(text.contains("50.00") && text.contains("0.250"), "{text}");
        assert!(!finished(&status));
        assert!(!text.contains("cannot run"), "{text}");
        let stuck = pb::StatusResponse {
            unplaceable: vec!["trial t needs 4 devices (gpus_per_trial); the largest worker has 2".into()],
            ..status
        };
        assert!(render(&stuck).contains("cannot run: trial t needs 4 devices"), "{}", render(&stuck));
        assert!(!render(&stuck).contains("full"), "{}", render(&stuck));
        // Running out of room is said before anything else, and each worker that takes nothing.
        let mut full =
            pb::StatusResponse { state_dir_full: "state dir /s is full (0 KiB free ...)".into(), ..stuck };
        full.workers[0].condition = "work dir /w is full (12 KiB free; needs 1.0 MiB): ...".into();
        let text = render(&full);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "state dir full: state dir /s is full (0 KiB free ...)", "{text}");
        assert_eq!(
            lines[2],
            "worker w1 takes no trials: work dir /w is full (12 KiB free; needs 1.0 MiB): ..."
        );
    }
}
