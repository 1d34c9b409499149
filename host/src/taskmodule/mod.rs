//! The TaskModule controller: hot-swappable task modules (the sources above the built-in
//! modules) and what loads them into the `TaskRegistry`.
//!
//! - `resource`: the `TaskModule` custom resource;
//! - `fetch`: a TaskModule's bytes from a ConfigMap or a URL;
//! - `status`: the per-replica status entry, its condition types and reasons (pure);
//! - `decide`: what the loader does about a TaskModule, and what a load's result leads to (pure);
//! - `loader`: the watch loop that carries the decisions out;
//! - `directory`: `--task-dir`, a watched directory of `.wasm` files.
//!
//! Imports point down in that order; nothing here imports the SeiNode controller (`node`).

pub mod decide;
pub mod directory;
pub mod fetch;
pub mod loader;
pub mod resource;
pub mod status;
