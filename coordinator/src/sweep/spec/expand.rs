//! The grid: every combination of the axes and seeds, one trial each.

use std::path::Path;

use common::{DatasetSpec, Method, TrialSpec};
use sal_core::StressConfig;

use super::document::Document;
use super::keys::SweepFile;
use super::{PlannedTrial, SpecError};
use crate::sweep::cost::estimate_cost;
use crate::sweep::identity::{self, WeightsDigests};

impl SweepFile {
    pub(super) fn expand(
        &self,
        doc: &Document<'_>,
        data_root: &Path,
        check_data: bool,
    ) -> Result<Vec<PlannedTrial>, SpecError> {
        self.check(doc, data_root, check_data)?;
        let mut digests = WeightsDigests::default();
        let mut trials = Vec::new();
        for architecture in &self.architectures {
            for optimizer in &self.optimizers {
                for (name, entry) in &self.datasets {
                    for &resolution in &self.resolutions {
                        for &method in &self.methods {
                            for &seed in &self.seeds {
                                let spec = TrialSpec {
                                    architecture: architecture.clone(),
                                    optimizer: optimizer.clone(),
                                    dataset: DatasetSpec {
                                        name: name.clone(),
                                        format: entry.format.clone(),
                                        root: entry.root.as_ref().map(|r| data_root.join(r)),
                                        options: entry.options.clone(),
                                    },
                                    resolution,
                                    method,
                                    // Baselines ignore SAL's settings: keep their ids independent of them.
                                    sal: if method.uses_stress() {
                                        self.sal.clone()
                                    } else {
                                        StressConfig::default()
                                    },
                                    // The compute-matched baseline: SAM's two gradients per step.
                                    epochs: if method == Method::Baseline2x {
                                        2 * self.epochs
                                    } else {
                                        self.epochs
                                    },
                                    batch_size: self.batch_size,
                                    learning_rate: self.learning_rate,
                                    seed,
                                    head: self.head,
                                    pretrained: self.pretrained.get(architecture).map(|p| data_root.join(p)),
                                    precision: self.precision,
                                    channels_last: self.channels_last,
                                    cudnn_benchmark: self.cudnn_benchmark,
                                    flatness: self.flatness.clone(),
                                    // Other methods ignore it: keep their ids independent of it.
                                    sam_rho: if method == Method::Sam { self.sam_rho } else { None },
                                    cpu_threads: self.cpu_threads,
                                    deterministic: self.deterministic,
                                    // Leased with the count of its `sal` trial, once that has run.
                                    deformations: None,
                                };
                                let (id, identity) =
                                    identity::identify(&spec, &mut digests).map_err(|e| {
                                        doc.error(
                                            &format!("pretrained.{architecture}"),
                                            format!("cannot read the weights file: {e}"),
                                        )
                                    })?;
                                trials.push(PlannedTrial {
                                    id,
                                    identity,
                                    cost: estimate_cost(&spec),
                                    spec,
                                    devices: self.gpus_per_trial,
                                    max_attempts: self.max_attempts,
                                });
                            }
                        }
                    }
                }
            }
        }
        Ok(trials)
    }
}
