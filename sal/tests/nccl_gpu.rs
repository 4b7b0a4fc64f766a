//! NCCL collectives on every visible GPU. Needs CUDA devices, so these tests are ignored by a
//! plain `cargo test`; `scripts/gpu-check.sh` runs them with `--ignored` on a GPU machine, where
//! they fail (not skip) if no GPU is visible.
#![cfg(feature = "nccl")]

use std::thread;

use sal::collective::{nccl_unique_id, NcclRank};
use sal::intervene::{apply_noise, apply_plastic, intervention_rng, Intervention};
use sal::{model_checksum, Collective};
use tch::nn::{self, VarStore};
use tch::{Device, Kind, Tensor};

fn gpus() -> usize {
    let count = tch::Cuda::device_count() as usize;
    assert!(count > 0, "no CUDA device visible: libtorch_cuda not linked, or no GPU");
    count
}

/// Runs `body(rank)` on one thread per GPU, each with its own NCCL rank.
fn on_gpus<T: Send + 'static>(body: fn(NcclRank, usize) -> T) -> Vec<T> {
    let world = gpus();
    let id = nccl_unique_id().expect("NCCL loads");
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let id = id.clone();
            thread::spawn(move || {
                let comm = NcclRank::new(id, rank, world, rank).expect("NCCL rank joins");
                body(comm, world)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().expect("GPU rank panicked")).collect()
}

#[test]
#[ignore = "needs CUDA GPUs; run by scripts/gpu-check.sh"]
fn nccl_all_reduce_broadcast_barrier_on_every_gpu() {
    let results = on_gpus(|comm, world| {
        let device = Device::Cuda(comm.rank());
        let r = comm.rank() as f64;
        let tensor = Tensor::full([1000], r + 1.0, (Kind::Float, device));
        comm.all_reduce_sum(&tensor).unwrap();
        let mut scalars = [r, 1.0];
        comm.all_reduce_sum_f64(&mut scalars).unwrap();
        let broadcast = Tensor::full([3], r, (Kind::Double, device));
        comm.broadcast(&broadcast, world - 1).unwrap();
        comm.barrier().unwrap();
        (
            tensor.sum(Kind::Double).double_value(&[]),
            scalars,
            broadcast.sum(Kind::Double).double_value(&[]),
            world,
        )
    });
    for (sum, scalars, broadcast, world) in results {
        let w = world as f64;
        assert_eq!(sum, 1000.0 * w * (w + 1.0) / 2.0);
        assert_eq!(scalars, [w * (w - 1.0) / 2.0, w]);
        assert_eq!(broadcast, 3.0 * (w - 1.0));
    }
}

#[test]
#[ignore = "needs CUDA GPUs; run by scripts/gpu-check.sh"]
fn interventions_keep_gpu_replicas_bit_identical() {
    let checksums = on_gpus(|comm, _world| {
        let vs = VarStore::new(Device::Cuda(comm.rank()));
        let _fc1 = nn::linear(vs.root() / "fc1", 64, 64, Default::default());
        let _fc2 = nn::linear(vs.root() / "fc2", 64, 10, Default::default());
        let mut variables: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        variables.sort_by(|a, b| a.0.cmp(&b.0));
        let ordered: Vec<Tensor> = variables.into_iter().map(|(_, t)| t).collect();
        tch::no_grad(|| comm.broadcast_many(&ordered, 0)).unwrap();
        apply_noise(&vs, 0.01, &mut intervention_rng(7, 3, Intervention::Noise));
        apply_plastic(&vs, 1, 0.9, 0.02, &mut intervention_rng(7, 3, Intervention::Plastic)).unwrap();
        model_checksum(&vs)
    });
    assert!(checksums.windows(2).all(|w| w[0] == w[1]), "{checksums:?}");
}

#[test]
#[ignore = "needs 2 or more CUDA GPUs; run by scripts/gpu-check.sh"]
fn a_rank_that_leaves_releases_a_peer_blocked_in_all_reduce() {
    let world = gpus();
    assert!(world >= 2, "needs two GPUs (NCCL puts one rank per device), {world} visible");
    let id = nccl_unique_id().expect("NCCL loads");
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let handles: Vec<_> = (0..world)
        .map(|rank| {
            let id = id.clone();
            let done_tx = done_tx.clone();
            thread::spawn(move || {
                let comm = NcclRank::new(id, rank, world, rank).expect("NCCL rank joins");
                comm.barrier().expect("everyone is here");
                if rank == 1 {
                    // Rank 1 fails between collectives: it leaves without joining the next one.
                    drop(comm);
                    return;
                }
                let tensor = Tensor::ones([1 << 20], (Kind::Float, Device::Cuda(rank)));
                let outcome = comm.all_reduce_sum(&tensor);
                tch::Cuda::synchronize(rank as i64);
                let _ = done_tx.send((rank, outcome.is_ok()));
            })
        })
        .collect();
    for _ in 0..world - 1 {
        let (rank, _) = done_rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("a rank blocked in all_reduce was released within a minute");
        assert_ne!(rank, 1);
    }
    for handle in handles {
        let _ = handle.join();
    }
}
