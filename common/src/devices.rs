//! What a trial runs on.

use serde::{Deserialize, Serialize};

/// The devices a trial runs on: one replica per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Devices {
    /// `ranks` replicas as threads on the CPU.
    Cpu { ranks: usize },
    /// One replica per CUDA device ordinal.
    Cuda(Vec<usize>),
}

impl Devices {
    pub fn count(&self) -> usize {
        match self {
            Devices::Cpu { ranks } => *ranks,
            Devices::Cuda(ordinals) => ordinals.len(),
        }
    }
}
