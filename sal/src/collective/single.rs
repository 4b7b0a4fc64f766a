//! One replica: nothing to agree with.

use tch::Tensor;

use super::Collective;
use crate::error::SalError;

/// The collective of a group of one.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleRank;

impl Collective for SingleRank {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce_sum_f64(&self, _values: &mut [f64]) -> Result<(), SalError> {
        Ok(())
    }

    fn all_reduce_sum(&self, _tensor: &Tensor) -> Result<(), SalError> {
        Ok(())
    }

    fn broadcast(&self, _tensor: &Tensor, _root: usize) -> Result<(), SalError> {
        Ok(())
    }

    fn barrier(&self) -> Result<(), SalError> {
        Ok(())
    }
}
