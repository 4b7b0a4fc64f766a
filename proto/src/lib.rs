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
/// 4: running out of room and memory: a worker's `condition`, a full state dir (answered
/// `RESOURCE_EXHAUSTED` with [`STATE_DIR_FULL_METADATA`]), `FailRequest.out_of_memory`/`shared`.
pub const PROTOCOL_VERSION: u32 = 4;

/// The encoded descriptors of the protocol, for server reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("sal_sweep_descriptor");

/// Metadata key of the session a worker's registration returned; every later worker request
/// carries it (see `RegisterResponse.session_id`).
pub const SESSION_METADATA: &str = "x-sal-session";

/// Metadata key set on a `RESOURCE_EXHAUSTED` answer when the coordinator's state dir is full: the
/// message was not stored, nothing is wrong with it, and the worker keeps it and sends it again
/// later (without counting the coordinator as away). Other `RESOURCE_EXHAUSTED` answers (a
/// message over the size limit) do not carry it.
pub const STATE_DIR_FULL_METADATA: &str = "x-sal-state-dir-full";
