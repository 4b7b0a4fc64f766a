//! Serving a sweep: the gRPC service and its message conversions, who may call ([`auth`]), which
//! worker calls ([`sessions`]), what it may send ([`validate`]); the [`runner`] that serves a sweep
//! to its end; and `--local`'s worker processes ([`local_workers`]). TLS is [`crate::tls`]'s.

pub mod auth;
pub mod convert;
pub mod local_workers;
pub mod rpc_timing;
pub mod runner;
pub mod service;
pub mod sessions;
pub mod validate;
