//! The grid: one base trial from the sweep-wide settings, multiplied over the axes. Each value of
//! an axis sets the field(s) it decides on a copy of every trial so far, so the trials come in
//! the order of the axes, the outermost first: architecture, optimizer, dataset, resolution,
//! method, seed.

use std::collections::BTreeMap;
use std::path::Path;

use common::{DatasetSpec, Method, TrialSpec};
use sal_core::StressConfig;

use super::document::Document;
use super::keys::{DatasetEntry, SweepFile};
use super::{PlannedTrial, SpecError};
use crate::sweep::cost::estimate_cost;
use crate::sweep::identity::{self, WeightsDigests};

/// One value of one axis.
enum AxisValue<'a> {
    Architecture(&'a str),
    Optimizer(&'a str),
    Dataset(&'a str, &'a DatasetEntry),
    Resolution(u32),
    Method(Method),
    Seed(u64),
}

impl SweepFile {
    pub(super) fn expand(
        &self,
        doc: &Document<'_>,
        data_root: &Path,
        check_data: bool,
    ) -> Result<Vec<PlannedTrial>, SpecError> {
        self.check(doc, data_root, check_data)?;
        let mut specs = vec![self.base()];
        for axis in self.axes() {
            specs = specs
                .iter()
                .flat_map(|spec| {
                    axis.iter().map(|value| {
                        let mut spec = spec.clone();
                        self.set(&mut spec, value, data_root);
                        spec
                    })
                })
                .collect();
        }
        let mut digests = WeightsDigests::default();
        specs.into_iter().map(|spec| self.plan(spec, doc, &mut digests)).collect()
    }

    /// What every trial of the sweep shares. The axes set the rest: the fields left empty here,
    /// and those that depend on the method.
    fn base(&self) -> TrialSpec {
        TrialSpec {
            architecture: String::new(),
            optimizer: String::new(),
            dataset: DatasetSpec {
                name: String::new(),
                format: String::new(),
                root: None,
                options: BTreeMap::new(),
            },
            resolution: 0,
            method: Method::Baseline,
            sal: StressConfig::default(),
            epochs: self.epochs,
            batch_size: self.batch_size,
            learning_rate: self.learning_rate,
            seed: 0,
            head: self.head,
            pretrained: None,
            precision: self.precision,
            channels_last: self.channels_last,
            cudnn_benchmark: self.cudnn_benchmark,
            flatness: self.flatness.clone(),
            sam_rho: None,
            cpu_threads: self.cpu_threads,
            deterministic: self.deterministic,
            // Leased with the count of its `sal` trial, once that has run.
            deformations: None,
        }
    }

    /// The axes, the outermost first.
    fn axes(&self) -> [Vec<AxisValue<'_>>; 6] {
        [
            self.architectures.iter().map(|a| AxisValue::Architecture(a)).collect(),
            self.optimizers.iter().map(|o| AxisValue::Optimizer(o)).collect(),
            self.datasets.iter().map(|(name, entry)| AxisValue::Dataset(name, entry)).collect(),
            self.resolutions.iter().map(|&r| AxisValue::Resolution(r)).collect(),
            self.methods.iter().map(|&m| AxisValue::Method(m)).collect(),
            self.seeds.iter().map(|&s| AxisValue::Seed(s)).collect(),
        ]
    }

    /// Sets what `value` decides on `spec`; relative paths are taken under `data_root`.
    fn set(&self, spec: &mut TrialSpec, value: &AxisValue<'_>, data_root: &Path) {
        match *value {
            AxisValue::Architecture(architecture) => {
                spec.architecture = architecture.into();
                spec.pretrained = self.pretrained.get(architecture).map(|p| data_root.join(p));
            }
            AxisValue::Optimizer(optimizer) => spec.optimizer = optimizer.into(),
            AxisValue::Dataset(name, entry) => {
                spec.dataset = DatasetSpec {
                    name: name.into(),
                    format: entry.format.clone(),
                    root: entry.root.as_ref().map(|r| data_root.join(r)),
                    options: entry.options.clone(),
                }
            }
            AxisValue::Resolution(resolution) => spec.resolution = resolution,
            AxisValue::Method(method) => {
                spec.method = method;
                // Baselines ignore SAL's settings: keep their ids independent of them.
                spec.sal = if method.uses_stress() { self.sal.clone() } else { StressConfig::default() };
                // The compute-matched baseline: SAM's two gradients per step.
                spec.epochs = if method == Method::Baseline2x { 2 * self.epochs } else { self.epochs };
                // Other methods ignore it: keep their ids independent of it.
                spec.sam_rho = if method == Method::Sam { self.sam_rho } else { None };
            }
            AxisValue::Seed(seed) => spec.seed = seed,
        }
    }

    /// The trial of `spec`, with its id (which reads the weights file, once per file).
    fn plan(
        &self,
        spec: TrialSpec,
        doc: &Document<'_>,
        digests: &mut WeightsDigests,
    ) -> Result<PlannedTrial, SpecError> {
        let (id, identity) = identity::identify(&spec, digests).map_err(|e| {
            doc.error(
                &format!("pretrained.{}", spec.architecture),
                format!("cannot read the weights file: {e}"),
            )
        })?;
        Ok(PlannedTrial {
            id,
            identity,
            cost: estimate_cost(&spec),
            spec,
            devices: self.gpus_per_trial,
            max_attempts: self.max_attempts,
        })
    }
}
