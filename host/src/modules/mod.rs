//! Hot-swappable task modules (DESIGN.md §4): the sources above the built-in modules and what
//! loads them into the `TaskRegistry`.
//!
//! - `resource`: the `TaskModule` custom resource;
//! - `fetch`: a TaskModule's bytes from a ConfigMap or a URL;
//! - `status`: the per-replica status entry (pure);
//! - `rollout`: automatic rollback of a new module that fails its first runs (pure);
//! - `task_modules`: the watch loop that loads TaskModules and reports on them;
//! - `directory`: `--task-dir`, a watched directory of `.wasm` files.

pub mod directory;
pub mod fetch;
pub mod resource;
pub mod rollout;
pub mod status;
pub mod task_modules;
