//! The training engine: one trial, data-parallel over this node's devices.
//!
//! One replica per device, each on its own thread: CPU ranks share a [`sal::ThreadGroup`], CUDA
//! devices an NCCL group (feature `nccl`). Rank 0's initial parameters are broadcast to all; each
//! step every rank takes a disjoint shard of the global batch (cut from the epoch's seeded
//! permutation), computes the gradient of its share of the batch's mean loss, and one all-reduce
//! of all gradients (one flat bucket) sums them into the global mean. Every rank then takes the same
//! optimizer step and, at the end of the epoch, the same SAL decision from the same global
//! metrics, so replicas stay bit-identical (checked with [`Engine::check_replicas`]).
//!
//! Batch-norm running statistics are buffers each rank updates from its own shard; at the end of
//! every epoch, before validation, they are averaged over the ranks (so validation and the final
//! model see one set of statistics, and replicas stay identical). PyTorch's DDP instead copies
//! rank 0's buffers at every forward pass; averaging once per epoch costs one collective per epoch
//! and uses every shard.
//!
//! The dataset is moved whole, as `u8`, to each device; batches are cut there with `index_select`
//! and converted to floats in [0, 1]. Loss, correct count and gradient norm accumulate on the
//! device and are read once per epoch.
//!
//! - [`checkpoint`]: what a checkpoint holds, writing and resuming;
//! - [`report`]: per-class metrics and peak memory;
//! - `rank`: one replica's life, `run`: prepared (`replica`), trained epoch by epoch (`epoch`,
//!   each batch a `step`), finished (`finish`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use common::outcome::EpochReport;
use common::trial::TrialSpec;
use tch::nn;
use tch::{Device, Kind, Tensor};

use crate::contract::{Devices, RunOptions, TrialEvent, TrialOutcome};
use crate::data::{self, LoadReport};
use crate::error::WorkerError;
use crate::models::{self, Model};

mod acceleration;
mod batches;
pub mod checkpoint;
mod collectives;
mod epoch;
mod evaluate;
mod finish;
pub mod flatness;
mod model;
mod panics;
mod rank;
mod replica;
pub mod report;
mod step;

/// Builds a trial's model under a VarStore path with the given number of classes.
pub type ModelFactory = dyn Fn(&nn::Path, &TrialSpec, i64) -> Result<Model, WorkerError> + Send + Sync;

/// The model registry: what trials use unless a test substitutes its own model.
pub fn registry_model(path: &nn::Path, spec: &TrialSpec, classes: i64) -> Result<Model, WorkerError> {
    models::build(path, &spec.architecture, spec.head, classes)
}

/// A configured training engine.
pub struct Engine {
    factory: Arc<ModelFactory>,
    check_replicas: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Self { factory: Arc::new(registry_model), check_replicas: false }
    }
}

/// What a run produced, with what tests and checks look at besides the outcome.
#[derive(Debug)]
pub struct TrainRun {
    pub outcome: TrialOutcome,
    pub data: LoadReport,
    /// With [`Engine::check_replicas`]: `sal::model_checksum` of every rank after every epoch of
    /// this run, `[epoch][rank]`.
    pub replica_checksums: Vec<Vec<u64>>,
}

/// A message from rank 0 to the thread that called `run`.
enum Message {
    Progress { epoch: u32, step: usize, steps: usize },
    Epoch(EpochReport),
    Checkpoint { epoch: u32, path: PathBuf },
}

impl Engine {
    /// Trains models from `factory` instead of the registry (tests use models of their own).
    pub fn with_model_factory(mut self, factory: Arc<ModelFactory>) -> Self {
        self.factory = factory;
        self
    }

    /// Checksums every replica after every epoch (costs a copy of the model to the host).
    pub fn check_replicas(mut self, on: bool) -> Self {
        self.check_replicas = on;
        self
    }

    /// Runs `spec` to its end, its divergence or its cancellation.
    pub fn run(
        &self,
        spec: &TrialSpec,
        options: &RunOptions,
        on_event: &mut dyn FnMut(TrialEvent<'_>),
    ) -> Result<TrainRun, WorkerError> {
        spec.validate()?;
        // Before any data is read: a random shrink-and-perturb trial without its count fails here.
        spec.arm()?;
        acceleration::check(spec, &options.devices)?;
        let world = options.devices.count();
        if world == 0 {
            return Err(WorkerError::InvalidTrial("no devices to train on".into()));
        }
        if (spec.batch_size as usize) < 2 * world {
            return Err(WorkerError::field(
                "batch_size",
                format!("{} cannot be split into shards of at least 2 over {world} ranks", spec.batch_size),
            ));
        }
        // Fail fast, before decoding a dataset, on what a tiny model run reveals.
        self.probe(spec)?;
        let (dataset, load_report) = data::load(&spec.dataset, spec.resolution, &options.cache_dir)?;
        if dataset.train.len() < 2 * world || dataset.val.is_empty() {
            return Err(WorkerError::field(
                "dataset",
                format!(
                    "{} training and {} validation images: too few for {world} rank(s)",
                    dataset.train.len(),
                    dataset.val.len()
                ),
            ));
        }

        let stop_at = Arc::new(AtomicU64::new(u64::MAX));
        let collectives = collectives::collectives(&options.devices)?;
        let threads = crate::provenance::rank_threads(spec, &options.devices);
        let mut setups = collectives.into_iter().enumerate().map(|(index, collective)| replica::Setup {
            rank: index,
            world,
            device: match &options.devices {
                Devices::Cpu { .. } => Device::Cpu,
                Devices::Cuda(ordinals) => Device::Cuda(ordinals[index]),
            },
            collective,
            train: dataset.train.shallow_clone(),
            val: dataset.val.shallow_clone(),
            classes: dataset.classes.clone(),
            spec: spec.clone(),
            options: options.clone(),
            factory: Arc::clone(&self.factory),
            check_replicas: self.check_replicas,
            threads,
            stop_at: Arc::clone(&stop_at),
        });
        let Some(first) = setups.next() else {
            return Err(WorkerError::InvalidTrial("no devices to train on".into()));
        };
        // Ranks 1.. on threads of their own; rank 0 on this thread. libgomp keeps a pool of
        // OpenMP threads per thread that starts a parallel region, and once its pools together
        // hold more threads than there are cores, its threads sleep between regions instead of
        // spinning: a one-rank trial on a thread of its own (this thread has already run ops,
        // decoding and the probe) made every small op of a step wait for a futex wake-up
        // (MobileNetV2 at 32 px evaluated at 0.59x PyTorch's speed on 2 cores).
        let mut handles = Vec::with_capacity(world - 1);
        for setup in setups {
            let index = setup.rank;
            let handle = std::thread::Builder::new()
                .name(format!("rank-{index}"))
                .spawn(move || panics::quietly(move || rank::run(setup, &mut |_| {})))
                .map_err(|e| WorkerError::RankFailed {
                    rank: index,
                    message: format!("cannot start thread: {e}"),
                })?;
            handles.push(handle);
        }
        drop(dataset);
        let first = panics::quietly(|| {
            rank::run(first, &mut |message| match message {
                Message::Progress { epoch, step, steps } => {
                    on_event(TrialEvent::Progress { epoch, step, steps })
                }
                Message::Epoch(report) => on_event(TrialEvent::Epoch(&report)),
                Message::Checkpoint { epoch, path } => {
                    on_event(TrialEvent::Checkpoint { epoch, path: &path })
                }
            })
        });

        let mut outputs = Vec::with_capacity(world);
        let mut first_error: Option<WorkerError> = None;
        let joined =
            handles.into_iter().map(|handle| handle.join().unwrap_or_else(|_| Err("thread panicked".into())));
        for (index, result) in std::iter::once(first).chain(joined).enumerate() {
            let result =
                result.unwrap_or_else(|message| Err(WorkerError::RankFailed { rank: index, message }));
            match result {
                Ok(output) => outputs.push(output),
                // A peer's failure aborts the others: report the cause, not the echo.
                Err(WorkerError::Sal(sal::SalError::Aborted)) => {
                    if first_error.is_none() {
                        first_error = Some(WorkerError::Sal(sal::SalError::Aborted));
                    }
                }
                Err(e) => {
                    if first_error
                        .as_ref()
                        .is_none_or(|f| matches!(f, WorkerError::Sal(sal::SalError::Aborted)))
                    {
                        first_error = Some(e);
                    }
                }
            }
        }
        if let Some(error) = first_error {
            return Err(error);
        }
        let world_checksums: Vec<Vec<u64>> = outputs.iter().map(|o| o.checksums.clone()).collect();
        let epochs = world_checksums.first().map_or(0, Vec::len);
        let replica_checksums = (0..epochs).map(|e| world_checksums.iter().map(|c| c[e]).collect()).collect();
        let outcome = outputs
            .into_iter()
            .next()
            .map(|o| o.outcome)
            .ok_or_else(|| WorkerError::RankFailed { rank: 0, message: "no result".into() })?;
        Ok(TrainRun { outcome, data: load_report, replica_checksums })
    }

    /// Builds the model and optimizer on the CPU, loads the pretrained weights into it and runs
    /// two images of the trial's resolution through it: unknown names, a missing or misfitting
    /// weights file and resolutions too small for the architecture are reported before any data
    /// is decoded.
    fn probe(&self, spec: &TrialSpec) -> Result<(), WorkerError> {
        let vs = nn::VarStore::new(Device::Cpu);
        let model = model::build_locked(self.factory.as_ref(), &vs, spec, 2, None)?;
        if let Some(path) = &spec.pretrained {
            models::load_pretrained(&vs, path)?;
        }
        crate::optim::build(&spec.optimizer, &vs, spec.learning_rate)?;
        let side = i64::from(spec.resolution);
        let forward = panics::quietly(|| {
            let _guard = tch::no_grad_guard();
            let images = Tensor::zeros([2, 3, side, side], (Kind::Float, Device::Cpu));
            model.forward_t(&images, true).size()
        });
        match forward {
            Ok(size) if size == [2, 2] => Ok(()),
            Ok(size) => Err(WorkerError::field(
                "architecture",
                format!("`{}` gives outputs of shape {size:?} for 2 images and 2 classes", spec.architecture),
            )),
            Err(message) => Err(WorkerError::field(
                "resolution",
                format!("{} px does not fit `{}`: {message}", spec.resolution, spec.architecture),
            )),
        }
    }
}

/// Asks every rank to stop before global step `step + 1`; the first request wins, so all ranks
/// stop at the same step (ranks are never more than one step apart: each step ends in an
/// all-reduce).
fn request_stop(stop_at: &AtomicU64, step: u64) -> u64 {
    match stop_at.compare_exchange(u64::MAX, step + 1, Ordering::SeqCst, Ordering::SeqCst) {
        Ok(_) => step + 1,
        Err(current) => current,
    }
}
