//! What a rank owns while it trains ([`Setup`] in, [`Output`] out), and preparing it: data on
//! the device, the model broadcast from rank 0, the optimizer, SAL, a resumed checkpoint, the
//! epoch's batches.

use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use common::outcome::EpochReport;
use common::trial::{Method, TrialSpec};
use sal::{Collective, SalController};
use tch::nn::VarStore;
use tch::{Device, Tensor};

use super::acceleration::Acceleration;
use super::batches::plan_batches;
use super::collectives::CollectiveSeed;
use super::evaluate::{evaluate, Evaluation};
use super::model::build_locked;
use super::step::{float_buffers, Learner};
use super::{checkpoint, report, ModelFactory};
use crate::contract::{RunOptions, TrialOutcome};
use crate::data::Split;
use crate::error::WorkerError;
use crate::optim;
use crate::optim::sam;

/// Everything a rank thread owns.
pub struct Setup {
    pub rank: usize,
    pub world: usize,
    pub device: Device,
    pub collective: CollectiveSeed,
    pub train: Split,
    pub val: Split,
    pub classes: Vec<String>,
    pub spec: TrialSpec,
    pub options: RunOptions,
    pub factory: Arc<ModelFactory>,
    pub check_replicas: bool,
    /// Intra-op threads for this rank's thread (CPU ranks share the cores), or libtorch's default.
    pub threads: Option<i32>,
    pub stop_at: Arc<AtomicU64>,
}

/// How a rank ended, and its checksum after every epoch (when asked for).
pub struct Output {
    pub outcome: TrialOutcome,
    pub checksums: Vec<u64>,
}

/// One rank's trainer, from its setup to its result.
pub(super) struct Replica {
    pub(super) rank: usize,
    pub(super) world: usize,
    pub(super) device: Device,
    pub(super) collective: Box<dyn Collective>,
    pub(super) spec: TrialSpec,
    pub(super) options: RunOptions,
    pub(super) factory: Arc<ModelFactory>,
    pub(super) classes: Vec<String>,
    pub(super) check_replicas: bool,
    pub(super) stop_at: Arc<AtomicU64>,
    pub(super) data: OnDevice,
    pub(super) vs: VarStore,
    pub(super) learner: Learner,
    /// Batch-norm running statistics, averaged over the ranks after every epoch.
    pub(super) buffers: Vec<Tensor>,
    /// SAL's controller for SAL and its ablation arms; none for the baseline.
    pub(super) sal: Option<SalController>,
    pub(super) plan: Plan,
    /// 1, or the one after a resumed checkpoint's.
    pub(super) first_epoch: u32,
    pub(super) history: Vec<EpochReport>,
    pub(super) last_checkpoint: Option<PathBuf>,
    /// `sal::model_checksum` after every epoch, with `check_replicas`.
    pub(super) checksums: Vec<u64>,
    /// Sampled after each epoch's steps and after the final evaluation, when usage is highest.
    pub(super) peak_device_mb: Option<f64>,
}

/// The whole dataset, moved to the device once (as `u8`): batches are cut there.
pub(super) struct OnDevice {
    pub(super) train_images: Tensor,
    pub(super) train_labels: Tensor,
    pub(super) val_images: Tensor,
    pub(super) val_labels: Tensor,
}

/// Every epoch's global batches, the same on every rank.
pub(super) struct Plan {
    pub(super) samples: i64,
    pub(super) batch: i64,
    /// `(offset, length)` into the epoch's permutation.
    pub(super) batches: Vec<(i64, i64)>,
    /// Images trained on per epoch, all ranks together.
    pub(super) epoch_images: f64,
    /// Progress is announced every this many steps (about a hundred times an epoch).
    pub(super) progress_every: usize,
}

impl Replica {
    /// Opens the rank's collective and builds everything it trains with; all ranks start from
    /// rank 0's weights, or from the checkpoint the run resumes.
    pub(super) fn prepare(setup: Setup) -> Result<Self, WorkerError> {
        let Setup {
            rank,
            world,
            device,
            collective,
            train,
            val,
            classes,
            spec,
            options,
            factory,
            check_replicas,
            threads,
            stop_at,
        } = setup;
        if let Some(threads) = threads {
            // Per thread (OpenMP's setting is per calling thread): this rank's ops use that many.
            tch::set_num_threads(threads);
        }
        let collective = collective.open()?;
        let class_count = classes.len() as i64;
        let data = OnDevice::new(train, val, device);
        let (vs, model) = shared_model(factory.as_ref(), &spec, class_count, device, collective.as_ref())?;
        let acceleration = Acceleration::new(&spec, device);
        acceleration.prepare_model(&vs);

        let optimizer = optim::build(&spec.optimizer, &vs, spec.learning_rate)?;
        let sam_rho = (spec.method == Method::Sam).then(|| spec.sam_rho.unwrap_or(sam::DEFAULT_RHO));
        let mut sal = match spec.arm()? {
            Some(arm) => Some(SalController::new(spec.sal.clone(), spec.seed, spec.epochs)?.with_arm(arm)),
            None => None,
        };
        let (history, last_checkpoint, first_epoch) = match &options.resume_from {
            Some(path) => {
                let state = optimizer.state_tensors();
                let restored =
                    checkpoint::load(path, &spec, class_count, &vs, &state, sal.as_mut(), factory.as_ref())?;
                (restored.history, Some(path.clone()), restored.epoch + 1)
            }
            None => (Vec::new(), None, 1),
        };

        let plan = Plan::new(data.train_labels.size()[0], i64::from(spec.batch_size), world);
        let trainable = vs.trainable_variables();
        let buffers = float_buffers(&vs, &trainable);
        let learner = Learner { model, optimizer, acceleration, trainable, sam_rho };
        Ok(Self {
            rank,
            world,
            device,
            collective,
            spec,
            options,
            factory,
            classes,
            check_replicas,
            stop_at,
            data,
            vs,
            learner,
            buffers,
            sal,
            plan,
            first_epoch,
            history,
            last_checkpoint,
            checksums: Vec::new(),
            peak_device_mb: None,
        })
    }

    pub(super) fn class_count(&self) -> i64 {
        self.classes.len() as i64
    }

    /// Evaluates the model on this rank's shard of the validation split (not yet reduced).
    pub(super) fn evaluate(&self, full: bool) -> Result<Evaluation, WorkerError> {
        evaluate(
            self.learner.model.as_ref(),
            &self.learner.acceleration,
            &self.data.val_images,
            &self.data.val_labels,
            self.rank,
            self.world,
            self.plan.batch,
            self.class_count(),
            full,
        )
    }

    /// Raises the peak device memory to what the device uses now.
    pub(super) fn sample_device(&mut self) {
        if let Some(used) = report::device_used_mb(self.device) {
            self.peak_device_mb = Some(self.peak_device_mb.map_or(used, |peak: f64| peak.max(used)));
        }
    }

    /// The rank's end: `outcome`, with the checksums gathered on the way.
    pub(super) fn output(self, outcome: TrialOutcome) -> Output {
        Output { outcome, checksums: self.checksums }
    }
}

impl OnDevice {
    fn new(train: Split, val: Split, device: Device) -> Self {
        let (train_images, train_labels) = (train.images.to_device(device), train.labels.to_device(device));
        let (val_images, val_labels) = (val.images.to_device(device), val.labels.to_device(device));
        drop((train, val));
        Self { train_images, train_labels, val_images, val_labels }
    }
}

impl Plan {
    fn new(samples: i64, batch: i64, world: usize) -> Self {
        let batches = plan_batches(samples, batch, world);
        let epoch_images = batches.iter().map(|&(_, len)| len).sum::<i64>() as f64;
        let progress_every = (batches.len() / 100).max(1);
        Self { samples, batch, batches, epoch_images, progress_every }
    }

    pub(super) fn steps(&self) -> usize {
        self.batches.len()
    }
}

/// The trial's model with rank 0's initial (or pretrained) weights, on `device`.
fn shared_model(
    factory: &ModelFactory,
    spec: &TrialSpec,
    classes: i64,
    device: Device,
    collective: &dyn Collective,
) -> Result<(VarStore, crate::models::Model), WorkerError> {
    let vs = VarStore::new(device);
    let model = build_locked(factory, &vs, spec, classes, Some(spec.seed))?;
    // Every rank reads the file, so that a bad one fails all ranks alike instead of leaving the
    // others waiting in a collective (NCCL has no abort); rank 0's copy is broadcast anyway.
    if let Some(path) = &spec.pretrained {
        crate::models::load_pretrained(&vs, path)?;
    }
    let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    variables.sort_by(|a, b| a.0.cmp(&b.0));
    let variables: Vec<Tensor> = variables.into_iter().map(|(_, t)| t).collect();
    collective.broadcast_many(&variables, 0)?;
    Ok((vs, model))
}
