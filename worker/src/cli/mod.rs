//! The `worker` binary's subcommands, each parsed by `main.rs` and run here: [`serve`] (the node
//! agent, `worker --coordinator URL`) and [`train`] (one trial, `worker train --trial FILE`).

pub mod serve;
pub mod train;
