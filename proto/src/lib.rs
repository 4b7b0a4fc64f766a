//! The gRPC protocol of the sweep orchestrator, generated from `proto/sal_sweep.proto`.
//! Business logic works on domain types converted from these messages; nothing else lives here.

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("sal_sweep.v1");
}

/// The protocol version a worker announces when it registers; the coordinator refuses any other.
/// Bump it whenever a message or its meaning changes incompatibly.
/// 2: device slots (which devices a lease request finds busy, which an assignment takes).
/// 3: sessions (`RegisterResponse.session_id`, sent as `x-sal-session`), `CheckpointRequest.lease`.
pub const PROTOCOL_VERSION: u32 = 3;

/// The encoded descriptors of the protocol, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sal_sweep_descriptor");

/// Metadata key of the session a worker's registration returned; every later worker request
/// carries it (see `RegisterResponse.session_id`).
pub const SESSION_METADATA: &str = "x-sal-session";
