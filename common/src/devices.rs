//! What a trial runs on.

/// The devices a trial runs on: one replica per entry.
#[derive(Debug, Clone, PartialEq, Eq)]
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
