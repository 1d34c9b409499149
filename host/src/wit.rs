//! The task contract's types, generated from `wit/task.wit` by wasmtime's `bindgen!`, and the
//! version of the `sei:task` package this host implements.
//!
//! Only the types are used: the host registers the imports itself with bounded argument types
//! (`sandbox/host.rs`) and calls the exports through bounded result types (`sandbox/abi.rs`).

wasmtime::component::bindgen!({
    world: "task-module",
    path: "../wit",
    imports: {
        "sei:task/log.log": exact,
        default: async,
    },
    exports: {
        default: async,
    },
});

pub use sei::task::types::{Capability, PendingStep};

/// The WIT package this host implements; a module's `sei:task` imports must carry a version this
/// host links: 0.1.0 up to `WIT_VERSION` (wasmtime's linker resolves an older 0.1.z import to the
/// host's 0.1.1 definitions).
pub const WIT_PACKAGE: &str = "sei:task";
pub const WIT_VERSION: &str = "0.1.1";
/// The oldest `sei:task` version this host links (the same minor: 0.1.z, z <= 1).
pub const WIT_OLDEST: &str = "0.1.0";
