//! Ranks as threads of one process, for CPU training (tests and local mode).
//!
//! Every operation is one exchange: each rank deposits its values, the last to arrive publishes
//! all deposits, and each rank computes the result from them in rank order. The arithmetic is the
//! same on every rank, so the results are bit-identical. Sums are taken in f64.
//!
//! Tensors are summed without leaving their memory: each rank deposits a handle on its CPU
//! tensor, then sums one slice of the elements over all deposits (in rank order, in f64) and
//! writes the result into that slice of every rank's tensor; a second exchange waits until every
//! slice is written. Each element is computed once, so every rank holds the same bits, and the
//! ranks share the work.
//!
//! A rank that is dropped (it returned an error, or its thread panicked) aborts the group, so the
//! other ranks get [`SalError::Aborted`] at their next operation instead of waiting forever.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tch::{Device, Kind, Tensor};

use super::{copy_from_f64, to_f64_vec, Collective};
use crate::error::SalError;

/// Creates the ranks of an in-process group.
pub struct ThreadGroup;

impl ThreadGroup {
    /// `world_size` connected ranks; move each one into its own thread.
    pub fn ranks(world_size: usize) -> Vec<ThreadRank> {
        assert!(world_size > 0, "a thread group needs at least one rank");
        let shared = Arc::new(Shared {
            world_size,
            state: Mutex::new(ExchangeState {
                deposits: vec![None; world_size],
                tensor_deposits: (0..world_size).map(|_| None).collect(),
                published_tensors: Vec::new(),
                arrived: 0,
                round: 0,
                published: Arc::new(Vec::new()),
                aborted: false,
            }),
            round_done: Condvar::new(),
        });
        (0..world_size).map(|rank| ThreadRank { rank, shared: Arc::clone(&shared) }).collect()
    }
}

struct Shared {
    world_size: usize,
    state: Mutex<ExchangeState>,
    round_done: Condvar,
}

struct ExchangeState {
    deposits: Vec<Option<Vec<f64>>>,
    /// Handles on the ranks' tensors in a tensor round (`Tensor` is `Send` but not `Sync`: each
    /// rank takes its own handles under the lock).
    tensor_deposits: Vec<Option<Tensor>>,
    published_tensors: Vec<Tensor>,
    arrived: usize,
    /// Incremented each time a round's deposits are published.
    round: u64,
    published: Arc<Vec<Vec<f64>>>,
    aborted: bool,
}

/// One rank of a [`ThreadGroup`].
pub struct ThreadRank {
    rank: usize,
    shared: Arc<Shared>,
}

impl ThreadRank {
    fn lock(&self) -> MutexGuard<'_, ExchangeState> {
        // A panic while holding this lock can only come from a bug in this file; the state is
        // still consistent (every field is written in one go), so keep going.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Deposits `values` and returns every rank's deposit, indexed by rank.
    fn exchange(&self, values: Vec<f64>) -> Result<Arc<Vec<Vec<f64>>>, SalError> {
        self.round(
            |state| state.deposits[self.rank] = Some(values),
            |state| {
                let deposits: Vec<Vec<f64>> =
                    state.deposits.iter_mut().map(|d| d.take().unwrap_or_default()).collect();
                state.published = Arc::new(deposits);
            },
            |state| Arc::clone(&state.published),
        )
    }

    /// Deposits a handle on `tensor` and returns handles on every rank's, indexed by rank.
    fn exchange_tensor(&self, tensor: Tensor) -> Result<Vec<Tensor>, SalError> {
        self.round(
            |state| state.tensor_deposits[self.rank] = Some(tensor),
            |state| {
                state.published_tensors = state.tensor_deposits.iter_mut().filter_map(Option::take).collect()
            },
            |state| state.published_tensors.iter().map(Tensor::shallow_clone).collect(),
        )
    }

    /// One round: `deposit` this rank's part; the last rank to arrive `publish`es everyone's;
    /// every rank then `read`s the published parts.
    fn round<R>(
        &self,
        deposit: impl FnOnce(&mut ExchangeState),
        publish: impl FnOnce(&mut ExchangeState),
        read: impl FnOnce(&ExchangeState) -> R,
    ) -> Result<R, SalError> {
        let mut state = self.lock();
        if state.aborted {
            return Err(SalError::Aborted);
        }
        deposit(&mut state);
        state.arrived += 1;
        if state.arrived == self.shared.world_size {
            publish(&mut state);
            state.arrived = 0;
            state.round += 1;
            self.shared.round_done.notify_all();
            return Ok(read(&state));
        }
        let my_round = state.round;
        while state.round == my_round {
            if state.aborted {
                return Err(SalError::Aborted);
            }
            state = self.shared.round_done.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        Ok(read(&state))
    }

    /// Sums CPU tensors in place (see the module documentation).
    fn all_reduce_tensor_in_place(&self, flat: &Tensor) -> Result<(), SalError> {
        let all = self.exchange_tensor(flat.shallow_clone())?;
        let numel = flat.numel() as i64;
        if let Some((rank, other)) = all.iter().enumerate().find(|(_, t)| t.numel() as i64 != numel) {
            return Err(SalError::Collective {
                op: "all_reduce_sum",
                rank: self.rank,
                reason: format!("rank {rank} sent {} values, this rank {numel}", other.numel()),
            });
        }
        let world = self.shared.world_size as i64;
        let (from, len) = (numel * self.rank as i64 / world, numel * (self.rank as i64 + 1) / world);
        let len = len - from;
        if len > 0 && world == 2 && flat.kind() == Kind::Float {
            let _guard = tch::no_grad_guard();
            // Two f32 summands: their f32 sum is their exact sum rounded once, and so is their
            // f64 sum rounded to f32 (53 bits hold twice 24 plus 2, so the double rounding is
            // harmless): the same bits as the general path below but the sign of a zero sum
            // of two negative zeros, with no f64 buffer to fill and read per step (a rank's half of
            // a ResNet-18's gradient is 45 MB in f64).
            let mine = all[0].narrow(0, from, len);
            let _ = mine.shallow_clone().g_add_(&all[1].narrow(0, from, len));
            all[1].narrow(0, from, len).copy_(&mine);
        } else if len > 0 {
            let _guard = tch::no_grad_guard();
            // From zero, in rank order, in f64: the same arithmetic as the host path.
            let mut sum = Tensor::zeros([len], (Kind::Double, Device::Cpu));
            for part in &all {
                let _ = sum.g_add_(&part.narrow(0, from, len));
            }
            for part in &all {
                part.narrow(0, from, len).copy_(&sum);
            }
        }
        drop(all);
        // Every slice written before any rank reads or changes its tensor again.
        self.barrier()
    }

    fn sum_in_rank_order(&self, values: Vec<f64>, op: &'static str) -> Result<Vec<f64>, SalError> {
        let len = values.len();
        let all = self.exchange(values)?;
        let mut sum = vec![0.0; len];
        for (rank, deposit) in all.iter().enumerate() {
            if deposit.len() != len {
                return Err(SalError::Collective {
                    op,
                    rank: self.rank,
                    reason: format!("rank {rank} sent {} values, this rank {len}", deposit.len()),
                });
            }
            for (acc, value) in sum.iter_mut().zip(deposit) {
                *acc += value;
            }
        }
        Ok(sum)
    }
}

impl Drop for ThreadRank {
    fn drop(&mut self) {
        let mut state = self.lock();
        state.aborted = true;
        self.shared.round_done.notify_all();
    }
}

impl Collective for ThreadRank {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.shared.world_size
    }

    fn all_reduce_sum_f64(&self, values: &mut [f64]) -> Result<(), SalError> {
        let sum = self.sum_in_rank_order(values.to_vec(), "all_reduce_sum_f64")?;
        values.copy_from_slice(&sum);
        Ok(())
    }

    fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), SalError> {
        if tensor.device() == Device::Cpu && tensor.is_contiguous() {
            return self.all_reduce_tensor_in_place(&tensor.view([-1]));
        }
        let sum = self.sum_in_rank_order(to_f64_vec(tensor)?, "all_reduce_sum")?;
        copy_from_f64(tensor, &sum);
        Ok(())
    }

    fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), SalError> {
        if root >= self.shared.world_size {
            return Err(SalError::Collective {
                op: "broadcast",
                rank: self.rank,
                reason: format!("root {root} is not a rank of a group of {}", self.shared.world_size),
            });
        }
        let mine = if self.rank == root { to_f64_vec(tensor)? } else { Vec::new() };
        let all = self.exchange(mine)?;
        if self.rank != root {
            let from_root = &all[root];
            if from_root.len() != tensor.numel() {
                return Err(SalError::Collective {
                    op: "broadcast",
                    rank: self.rank,
                    reason: format!("root sent {} values, tensor holds {}", from_root.len(), tensor.numel()),
                });
            }
            copy_from_f64(tensor, from_root);
        }
        Ok(())
    }

    fn barrier(&self) -> Result<(), SalError> {
        self.exchange(Vec::new()).map(|_| ())
    }
}
