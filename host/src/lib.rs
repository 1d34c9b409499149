//! sei-operator: a Kubernetes controller for Sei nodes whose plan tasks run as sandboxed
//! WebAssembly components.
//!
//! Layout, imports pointing down only (checked by `tests/layout.rs`):
//!
//! | layer | modules |
//! |---|---|
//! | front ends | `operator` (starts the controllers), `crds`, `authoring` (the author kit behind the `task` subcommands); in the binary: `main.rs` (the composition root) and `cli/` (developer commands) |
//! | controllers | `node` (SeiNode), `group` (SeiNodeDeployment), `taskmodule` (TaskModule loader, `--task-dir`), `leader` (leader election on a Lease) |
//! | executor | `executor` (runs a persisted plan's steps in the sandbox; both controllers) |
//! | telemetry | `telemetry` (Prometheus metrics, health endpoints) |
//! | modules | `registry` (task type → module, rollout) |
//! | sandbox | `sandbox` (wasmtime: load, limits, host functions, runs) |
//! | policy | `policy` (scope, capability guard, pod policy) |
//! | edges | `adapters` (Kubernetes and sidecar clients), `plan_step` (pure plan stepping over `api`), `shard` (`--shard-selector`: which nodes this controller reconciles) |
//! | shared | `api` (the custom resources' types), `wit`, `text`, `failpoint` (crash points for fault tests), `conditions`, `platform`, `embedded`, `release_tag`, `labels` (label syntax) |
//!
//! The pure core (planner, plan stepper, policy, decisions of the TaskModule loader) is tested
//! without wasm or a cluster; the edges (wasmtime, the Kubernetes client, the sidecar client) sit
//! behind small traits.

pub mod adapters;
pub mod api;
pub mod authoring;
pub mod conditions;
pub mod crds;
pub mod embedded;
pub mod executor;
pub mod failpoint;
pub mod group;
pub mod labels;
pub mod leader;
pub mod node;
pub mod operator;
pub mod plan_step;
pub mod platform;
pub mod policy;
pub mod registry;
pub mod release_tag;
pub mod sandbox;
pub mod shard;
pub mod taskmodule;
pub mod telemetry;
pub mod text;
pub mod wit;
