//! The gRPC protocol of the sweep orchestrator, generated from `proto/sal_sweep.proto`.
//! Business logic works on domain types converted from these messages; nothing else lives here.

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("sal_sweep.v1");
}

/// The protocol version a worker announces when it registers; the coordinator refuses any other.
/// Bump it whenever a message or its meaning changes incompatibly.
/// 2: device slots (which devices a lease request finds busy, which an assignment takes).
pub const PROTOCOL_VERSION: u32 = 2;
