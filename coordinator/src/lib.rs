//! The coordinator: sweep files, the durable store, scheduling, the gRPC service, reports.
