//! The coordinator: sweep files, the durable store, scheduling, the gRPC service, reports.
//!
//! - [`spec`]: sweep files, validated and expanded into trials with stable ids;
//! - [`identity`]: what a trial's id hashes (what it computes, never where its files lie);
//! - [`store`]: SQLite in the state dir, group-committed by one thread; checkpoint files;
//! - [`durable`]: the fsync of those commits, on a thread of its own;
//! - [`checkpoint_files`]: checkpoint files removed only once the store stops indexing them;
//! - [`state_lock`]: one coordinator per state dir;
//! - [`checkpoint_storage`] and [`dry_run`]: what a sweep expands to and the disk it needs;
//! - [`schedule`]: which trial goes to which worker; what a lost attempt means;
//! - [`slots`]: how many trials share a device (`trials_per_gpu`) and on which devices one runs;
//! - [`service`] and [`convert`]: the gRPC layer and its message conversions;
//! - [`auth`], [`session`], [`validate`], [`tls`]: who may call, which worker calls, what it may
//!   send, and the transport;
//! - [`runner`]: serving a sweep to its end;
//! - [`local`]: `--local`'s worker processes;
//! - [`report`]: pivots, paired statistics, the paper's tables, plots, one HTML page;
//! - [`status_view`]: a running sweep's workers and trials in flight, as text.

pub mod auth;
pub mod checkpoint_files;
pub mod checkpoint_storage;
pub mod convert;
pub mod dry_run;
pub mod durable;
pub mod identity;
pub mod local;
pub mod remote;
pub mod report;
pub mod runner;
pub mod schedule;
pub mod service;
pub mod session;
pub mod slots;
pub mod spec;
pub mod state_lock;
pub mod status_view;
pub mod store;
pub mod tls;
pub mod validate;

pub use local::LocalWorkers;
pub use runner::{serve_sweep, RunnerError, Security, ServeOptions};
pub use spec::{LoadOptions, Sweep};
