//! `coordinator status`: counts, ETA, workers and trials in flight.

use super::api::{Status, WorkerStatus};
use super::{now_ms, Core};

impl Core {
    pub(super) fn status(&self) -> Status {
        let progress = self.progress();
        let now = now_ms();
        let mut workers: Vec<WorkerStatus> = self
            .sched
            .workers()
            .map(|w| WorkerStatus {
                worker_id: w.id.clone(),
                hostname: w.hostname.clone(),
                devices: w.devices,
                trials: self
                    .sched
                    .leases()
                    .filter(|l| l.worker_id == w.id)
                    .map(|l| l.trial_id.clone())
                    .collect(),
                idle_ms: now.saturating_sub(w.last_seen_ms),
                condition: w.condition.clone(),
                usage: w.usage.clone(),
            })
            .collect();
        workers.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        let finished_now = progress.finished().saturating_sub(self.finished_at_start);
        let remaining = progress.total() - progress.finished();
        let eta_seconds = (finished_now > 0).then(|| {
            let rate = f64::from(finished_now) / self.started.elapsed().as_secs_f64().max(1e-3);
            f64::from(remaining) / rate
        });
        Status {
            sweep_name: self.sweep_name.clone(),
            progress,
            workers,
            eta_seconds,
            in_flight: self.in_flight(),
            trials_per_device: self.sched.trials_per_device,
            unplaceable: self.sched.unplaceable().into_iter().map(|(_, why)| why).collect(),
            state_dir_full: self.full.as_ref().map(|state| state.full.clone()),
        }
    }
}
