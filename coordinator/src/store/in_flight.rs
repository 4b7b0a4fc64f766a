//! What `coordinator status` shows of each trial in flight: where it runs, how far it is, its
//! last loss and SAL's stress, read from the trial's latest epoch report of its current attempt.

use rusqlite::{params, OptionalExtension};

use common::{EpochReport, TrialSpec};

use super::Core;

/// One leased trial's progress.
#[derive(Debug, Clone, PartialEq)]
pub struct TrialProgress {
    pub trial_id: String,
    pub worker_id: String,
    /// `architecture/optimizer/dataset@resolution method seed N`.
    pub label: String,
    /// The last epoch reported by this attempt (0 before the first report).
    pub epoch: u32,
    pub epochs: u32,
    pub train_loss: Option<f64>,
    pub val_accuracy: Option<f64>,
    /// SAL's stress after Equation 1 in the last epoch; `None` for baselines.
    pub stress: Option<f64>,
}

impl Core {
    /// The trials under a lease now, by worker then trial id. A trial whose rows cannot be read is
    /// still listed, without numbers: status must not fail because one report is odd.
    pub(super) fn in_flight(&self) -> Vec<TrialProgress> {
        let mut leases: Vec<_> = self.sched.leases().collect();
        leases.sort_by(|a, b| (&a.worker_id, &a.trial_id).cmp(&(&b.worker_id, &b.trial_id)));
        leases
            .into_iter()
            .map(|lease| {
                let mut progress = TrialProgress {
                    trial_id: lease.trial_id.clone(),
                    worker_id: lease.worker_id.clone(),
                    label: String::new(),
                    epoch: 0,
                    epochs: 0,
                    train_loss: None,
                    val_accuracy: None,
                    stress: None,
                };
                match self.read_progress(&lease.trial_id, lease.attempt) {
                    Ok((spec, report)) => {
                        if let Some(spec) = spec {
                            progress.label = spec.label();
                            progress.epochs = spec.epochs;
                        }
                        if let Some(report) = report {
                            progress.epoch = report.epoch;
                            progress.train_loss = Some(report.train_loss);
                            progress.val_accuracy = Some(report.val_accuracy);
                            progress.stress = report.sal.map(|s| s.stress);
                        }
                    }
                    Err(e) => tracing::warn!(trial = %lease.trial_id, "status: reading its progress: {e}"),
                }
                progress
            })
            .collect()
    }

    fn read_progress(
        &self,
        trial_id: &str,
        attempt: u32,
    ) -> super::Result<(Option<TrialSpec>, Option<EpochReport>)> {
        let spec_json: Option<String> = self
            .conn
            .prepare_cached("SELECT spec_json FROM trials WHERE id = ?1")?
            .query_row(params![trial_id], |r| r.get(0))
            .optional()?;
        let report_json: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT report_json FROM epochs WHERE trial_id = ?1 AND attempt = ?2 ORDER BY epoch DESC LIMIT 1",
            )?
            .query_row(params![trial_id, attempt], |r| r.get(0))
            .optional()?;
        // Unparsable JSON reads as "unknown" rather than failing the whole status.
        let spec = spec_json.and_then(|json| serde_json::from_str(&json).ok());
        let report = report_json.and_then(|json| serde_json::from_str(&json).ok());
        Ok((spec, report))
    }
}
