//! What a sweep file's keys must satisfy together, checked before anything is expanded.

use std::path::Path;

use common::names::{NOOP, OPTIMIZERS};
use common::{DatasetSpec, Method};

use super::document::Document;
use super::keys::SweepFile;
use super::{known_architectures, SpecError};

/// The most epochs a sweep with `baseline_2x` may ask for: its trials train twice as many.
pub(super) const MAX_EPOCHS_2X: u32 = 50_000;

impl SweepFile {
    /// Every check, in an order that decides which error a file with several problems gets.
    pub(super) fn check(
        &self,
        doc: &Document<'_>,
        data_root: &Path,
        check_data: bool,
    ) -> Result<(), SpecError> {
        self.check_training(doc)?;
        self.check_devices(doc)?;
        self.check_grid(doc)?;
        self.check_methods(doc)?;
        self.check_flatness(doc)?;
        self.check_datasets(doc, data_root, check_data)?;
        self.check_pretrained(doc, data_root, check_data)
    }

    /// The name, and how long and how often each trial trains.
    fn check_training(&self, doc: &Document<'_>) -> Result<(), SpecError> {
        if self.name.trim().is_empty() {
            return Err(doc.error("name", "must not be empty"));
        }
        if self.epochs == 0 {
            return Err(doc.error("epochs", "must be at least 1"));
        }
        if self.methods.contains(&Method::Baseline2x) && self.epochs > MAX_EPOCHS_2X {
            return Err(doc.error(
                "epochs",
                format!(
                    "{} is too many for `baseline_2x`, which trains twice as long (at most {MAX_EPOCHS_2X})",
                    self.epochs
                ),
            ));
        }
        if self.batch_size == 0 {
            return Err(doc.error("batch_size", "must be at least 1"));
        }
        if !self.learning_rate.is_finite() || self.learning_rate <= 0.0 {
            return Err(doc
                .error("learning_rate", format!("must be a finite number > 0, got {}", self.learning_rate)));
        }
        if self.progress_timeout_s == 0 {
            return Err(doc.error("progress_timeout", "must be at least 1 second"));
        }
        if self.max_attempts == 0 {
            return Err(doc.error("max_attempts", "must be at least 1"));
        }
        Ok(())
    }

    /// Device and reproducibility options, which must suit every worker that may lease a trial.
    fn check_devices(&self, doc: &Document<'_>) -> Result<(), SpecError> {
        // CPU ranks have no bfloat16 autocast here: such a trial would fail on every worker.
        if !self.precision.is_fp32() && self.gpus_per_trial == 0 {
            return Err(doc.error("precision", "bf16 runs on GPUs only: set `gpus_per_trial` to 1 or more"));
        }
        if let Some(threads) = self.cpu_threads {
            if !(1..=common::trial::MAX_CPU_THREADS).contains(&threads) {
                return Err(doc.error(
                    "cpu_threads",
                    format!("must be in 1..={}, got {threads}", common::trial::MAX_CPU_THREADS),
                ));
            }
        }
        // What cannot be deterministic is refused here, not by every worker in turn.
        if self.deterministic && self.cudnn_benchmark {
            return Err(doc.error(
                "cudnn_benchmark",
                "cuDNN's benchmark picks algorithms by timing: it cannot be on with `deterministic: true`",
            ));
        }
        if self.deterministic && self.gpus_per_trial == 0 {
            return Err(doc.error(
                "deterministic",
                "the number of replicas would depend on the worker that runs the trial: set `gpus_per_trial`",
            ));
        }
        Ok(())
    }

    /// The grid's names and resolutions: what a worker can build.
    fn check_grid(&self, doc: &Document<'_>) -> Result<(), SpecError> {
        if let Some(r) = self.resolutions.iter().find(|r| **r < 8) {
            return Err(doc.error("resolutions", format!("{r} px is too small (at least 8)")));
        }
        let known = known_architectures();
        if let Some(a) = self.architectures.iter().find(|a| !known.contains(&a.as_str())) {
            return Err(doc.error(
                "architectures",
                format!("unknown architecture `{a}` (known: {})", known.join(", ")),
            ));
        }
        let optimizers = OPTIMIZERS;
        if let Some(o) = self.optimizers.iter().find(|o| !optimizers.contains(&o.as_str())) {
            return Err(doc
                .error("optimizers", format!("unknown optimizer `{o}` (known: {})", optimizers.join(", "))));
        }
        Ok(())
    }

    /// The methods and their settings: SAL's, the random arm's partner, SAM's radius.
    fn check_methods(&self, doc: &Document<'_>) -> Result<(), SpecError> {
        if self.methods.iter().any(|m| m.uses_stress()) {
            self.sal.validate().map_err(|e| doc.error("sal", e.to_string()))?;
        }
        if self.methods.contains(&Method::ShrinkPerturbRandom) && !self.methods.contains(&Method::Sal) {
            return Err(doc.error(
                "methods",
                "`shrink_perturb_random` repeats the deformation count of the `sal` trial of its cell and \
                 seed: add `sal` to `methods`",
            ));
        }
        if let Some(rho) = self.sam_rho {
            if !(rho.is_finite() && rho > 0.0) {
                return Err(doc.error("sam_rho", format!("must be a finite number > 0, got {rho}")));
            }
            if !self.methods.contains(&Method::Sam) {
                return Err(doc.error("sam_rho", "is set but `methods` has no `sam`"));
            }
        }
        Ok(())
    }

    /// Flatness settings that would measure nothing.
    fn check_flatness(&self, doc: &Document<'_>) -> Result<(), SpecError> {
        if let Some(flatness) = &self.flatness {
            // The error names `flatness.KEY`: point at that line when it is indexed.
            flatness.validate().map_err(|e| {
                let common::error::SpecError::InvalidField { field, reason } = e;
                doc.error(&field, reason)
            })?;
        }
        Ok(())
    }

    /// Each dataset's format, options and root.
    fn check_datasets(
        &self,
        doc: &Document<'_>,
        data_root: &Path,
        check_data: bool,
    ) -> Result<(), SpecError> {
        let only_noop = self.architectures.iter().all(|a| a == NOOP);
        for (name, entry) in &self.datasets {
            let key = format!("datasets.{name}");
            if !common::dataset::FORMATS.contains(&entry.format.as_str()) {
                return Err(doc.error(
                    &format!("{key}.format"),
                    format!(
                        "unknown dataset format `{}` (known: {})",
                        entry.format,
                        common::dataset::FORMATS.join(", ")
                    ),
                ));
            }
            // The worker's own checks of the options, so that a typo fails here and not on a
            // worker hours later. The noop stand-in reads no data and has options of its own.
            if !only_noop {
                let dataset = DatasetSpec {
                    name: name.clone(),
                    format: entry.format.clone(),
                    root: entry.root.clone(),
                    options: entry.options.clone(),
                };
                if let Err(common::SpecError::InvalidField { field, reason }) =
                    common::dataset::check(&dataset)
                {
                    let at = field.strip_prefix("dataset").unwrap_or("");
                    return Err(doc.error(&format!("{key}{at}"), reason));
                }
            }
            match (&entry.root, entry.format.as_str()) {
                (None, "synthetic") => {}
                (None, _) => return Err(doc.error(&key, format!("format `{}` needs a `root`", entry.format))),
                (Some(root), _) => {
                    let root = data_root.join(root);
                    if check_data && !root.is_dir() {
                        return Err(doc.error(
                            &format!("{key}.root"),
                            format!("dataset root {} is not a folder", root.display()),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Pretrained weights: for an architecture of the grid, and a file that fits it when this
    /// machine sees it.
    fn check_pretrained(
        &self,
        doc: &Document<'_>,
        data_root: &Path,
        check_data: bool,
    ) -> Result<(), SpecError> {
        for (architecture, weights) in &self.pretrained {
            let key = format!("pretrained.{architecture}");
            if !self.architectures.contains(architecture) {
                return Err(doc.error(&key, format!("`{architecture}` is not in `architectures`")));
            }
            let weights = data_root.join(weights);
            if check_data && !weights.is_file() {
                return Err(doc.error(&key, format!("weights file {} does not exist", weights.display())));
            }
            // A file this machine sees is checked before any trial is leased: a partial or foreign
            // one would otherwise fail every trial of the architecture, on every worker. The
            // stand-in loads nothing.
            if weights.is_file() && architecture != NOOP {
                common::weights_manifest::check_file(architecture, &weights)
                    .map_err(|e| doc.error(&key, e.to_string()))?;
            }
        }
        Ok(())
    }
}
