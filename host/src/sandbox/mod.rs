//! The wasm sandbox: one wasmtime `Engine` for the controller, modules loaded once per content
//! digest, and a fresh `Store` per task step.
//!
//! Invariants, each guarded by a test in `tests/sandbox_guests.rs` unless noted:
//! - a module that imports anything but `sei:task/{log,kube,sidecar}` fails at load, naming the
//!   import (`wasi_import_fails_at_load`);
//! - a step past its deadline is stopped with `RunError::Timeout` (`spinning_guest_times_out`),
//!   a growth past the memory cap with `RunError::MemoryLimit` (`memory_hog_hits_the_cap`), a
//!   trap with `RunError::Trap` carrying the guest's panic message (`trap_reports_panic_message`),
//!   an output or checkpoint past its cap with `RunError::OutputTooLarge` /
//!   `CheckpointTooLarge` (`oversized_output_is_refused`);
//! - a misbehaving run never disturbs another: each case runs next to a well-behaved run that
//!   must succeed;
//! - a trapped instance is never reused: every step gets a new `Store` (by construction: `run`
//!   creates and drops it);
//! - the engine falls back from the pooling allocator to on-demand allocation when the pool
//!   cannot be reserved (`engine_falls_back_to_on_demand`, unit test below);
//! - nothing a guest hands the host is copied before its size is checked (`abi`), every step's
//!   host and log calls are budgeted (`host`), and untrusted components compile in a bounded
//!   child process (`compile`).

//!
//! Files, imports pointing down only: `mod.rs` (declarations and re-exports) → `run` (one step)
//! → `module` (the load pipeline) → `engine` (the `Sandbox`: engine, linker, cache) → `host`
//! (the store's data and the host functions) → `abi` (bounded lifting), `counters`, `limits`,
//! `cache`, `compile` (the compiler and the engine settings).

pub mod abi;
pub mod cache;
pub mod compile;
pub mod counters;
pub mod engine;
pub mod host;
pub mod limits;
pub mod module;
pub mod run;

pub use compile::{CompileLimits, Compiler};
pub use engine::{Allocator, EPOCH_TICK, Sandbox, SandboxConfig, SandboxError};
pub use host::HostCall;
pub use limits::{ModuleLimits, RunLimits};
pub use module::{LoadError, LoadFailure, LoadedModule, ModuleGrant, ModuleInfo};
pub use run::{RunEnv, RunError, RunInput, RunReport, StepOutcome};
