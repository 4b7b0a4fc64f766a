//! End-to-end tests live in `tests/tests/`: they start the real `coordinator` and `worker`
//! binaries as processes on loopback (port 0, readiness read from the coordinator's
//! `listening on ADDR` line, never a sleep), kill them, restart them, and read the state dir.
//!
//! The binaries are found beside the test executable, in `target/<profile>/`. Cargo builds a
//! package's binaries for that package's own integration tests only; `cargo test --workspace`
//! builds both (the `coordinator` and `worker` packages have integration tests of their own), and
//! `cargo test -p e2e` needs a `cargo build -p coordinator -p worker` first (the tests say so).
