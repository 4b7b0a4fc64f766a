//! The coordinator, in folders by stage of a trial's life:
//!
//! - [`sweep`]: sweep files, validated and expanded into trials with stable ids; what a sweep
//!   expands to, the disk its checkpoints need and its cost in device-hours from measured
//!   throughput (`--dry-run`);
//! - [`schedule`]: which trial goes to which worker, on which of its device slots; what a lost
//!   attempt means;
//! - [`store`]: SQLite in the state dir, group-committed by one thread and fsynced by another;
//!   checkpoint files; one coordinator per state dir;
//! - [`server`]: the gRPC layer (who may call, which worker calls, what it may send, the
//!   transport), serving a sweep to its end, and `--local`'s worker processes;
//! - [`client`]: a client of a running coordinator, for `status` and `report --coordinator URL`;
//! - [`reproduce`]: `coordinator reproduce TRIAL`, a stored trial rerun here and compared bit for bit;
//! - [`report`]: pivots, paired statistics, the paper's tables, plots, one HTML page, `status`;
//! - [`dashboard`]: the live web page over a state dir (its API, its event stream, `/metrics`);
//! - [`export`]: the trials in other tools' formats (TensorBoard), after a sweep or while it runs;
//! - [`tls`]: TLS for the gRPC server, its clients and the dashboard (rustls), below all three.

pub mod client;
pub mod dashboard;
pub mod export;
pub mod report;
pub mod reproduce;
pub mod schedule;
pub mod server;
pub mod store;
pub mod sweep;
pub mod tls;

pub use server::local_workers::LocalWorkers;
pub use server::runner::{serve_sweep, RunnerError, Security, ServeOptions};
pub use sweep::spec::{LoadOptions, Sweep};
