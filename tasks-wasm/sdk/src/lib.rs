//! Guest SDK for sei-operator task modules.
//!
//! A task module is a WebAssembly component built against `wit/task.wit`. This crate wraps the
//! generated bindings so that a task is a small Rust function:
//!
//! ```ignore
//! use sei_task_sdk::prelude::*;
//!
//! struct Hello;
//! impl TaskModule for Hello {
//!     fn info() -> ModuleInfo {
//!         ModuleInfo::new("hello", "0.1.0").task_type("hello").capability(Capability::KubeRead)
//!     }
//!     fn execute(input: Input) -> Result<Step, TaskError> {
//!         let params: HelloParams = input.params()?;
//!         log::info(&format!("hello {}", params.name));
//!         Ok(Step::complete(&serde_json::json!({"greeted": params.name})))
//!     }
//! }
//! sei_task_sdk::export_task_module!(Hello);
//! ```
//!
//! Invariants:
//! - A panic in a task is reported to the host through `log` (level error, prefix `panic: `)
//!   before the module traps, so the host can name the panic message in the task's failure
//!   (guarded by the host test `sandbox_guests::trap_reports_panic_message`).
//! - Sidecar tasks follow the submit-then-poll protocol of [`sidecar::drive`]: the first step
//!   submits with the plan's task id, later steps only poll (they never re-submit a running
//!   task), a failed sidecar task is a `transient` error so the retry re-submits the same id.

#![forbid(unsafe_op_in_unsafe_fn)]

#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        world: "task-module",
        path: "../../wit",
        pub_export_macro: true,
        export_macro_name: "__export_task_module_world",
        default_bindings_module: "sei_task_sdk::bindings",
        generate_all,
    });
}

pub use bindings::sei::task::types::{Capability, PendingStep};
use bindings::sei::task::types::{Step as WitStep, TaskError as WitTaskError, TaskInfo, TaskInput};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod kube;
pub mod log;
pub mod sidecar;

/// Everything a task module usually needs.
pub mod prelude {
    pub use crate::{Capability, Input, ModuleInfo, Step, TaskError, TaskModule, kube, log, sidecar};
    pub use serde::{Deserialize, Serialize};
}

/// What a module says about itself (`describe`).
#[derive(Debug, Clone)]
pub struct ModuleInfo {
    name: String,
    version: String,
    task_types: Vec<String>,
    capabilities: Vec<Capability>,
    default_timeout_ms: u32,
    max_retries: u32,
}

impl ModuleInfo {
    pub fn new(name: &str, version: &str) -> Self {
        Self {
            name: name.to_string(),
            version: version.to_string(),
            task_types: Vec::new(),
            capabilities: Vec::new(),
            default_timeout_ms: 0,
            max_retries: 0,
        }
    }
    pub fn task_type(mut self, task_type: &str) -> Self {
        self.task_types.push(task_type.to_string());
        self
    }
    pub fn capability(mut self, capability: Capability) -> Self {
        if !self.capabilities.contains(&capability) {
            self.capabilities.push(capability);
        }
        self
    }
    pub fn default_timeout_ms(mut self, ms: u32) -> Self {
        self.default_timeout_ms = ms;
        self
    }
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }
}

/// The input of one step.
#[derive(Debug, Clone)]
pub struct Input {
    pub task_type: String,
    pub task_id: String,
    pub plan_id: String,
    /// The SeiNode as raw JSON; use [`Input::node`] for a typed view.
    pub node_json: String,
    /// The params as raw JSON; use [`Input::params`] for a typed view.
    pub params_json: String,
    pub checkpoint: Option<String>,
    pub attempt: u32,
}

impl Input {
    /// The params, deserialized. A mismatch is `invalid-params` naming the task type.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, TaskError> {
        let raw = if self.params_json.trim().is_empty() { "{}" } else { &self.params_json };
        serde_json::from_str(raw).map_err(|e| {
            TaskError::InvalidParams(format!("params of task {}: {e}", self.task_type))
        })
    }

    /// The SeiNode, deserialized into any shape the task needs (a `serde_json::Value`, or a
    /// struct with the fields it reads).
    pub fn node<N: DeserializeOwned>(&self) -> Result<N, TaskError> {
        serde_json::from_str(&self.node_json)
            .map_err(|e| TaskError::InvalidParams(format!("node of task {}: {e}", self.task_type)))
    }

    /// The checkpoint of the previous step, deserialized; `None` on the first step.
    pub fn checkpoint<C: DeserializeOwned>(&self) -> Result<Option<C>, TaskError> {
        match &self.checkpoint {
            None => Ok(None),
            Some(raw) => serde_json::from_str(raw).map(Some).map_err(|e| {
                TaskError::Permanent(format!("checkpoint of task {} is unreadable: {e}", self.task_type))
            }),
        }
    }

    /// Name and namespace of the SeiNode (from `metadata`).
    pub fn node_ref(&self) -> Result<(String, String), TaskError> {
        #[derive(serde::Deserialize)]
        struct Meta {
            name: Option<String>,
            namespace: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct Obj {
            metadata: Meta,
        }
        let obj: Obj = self.node()?;
        match (obj.metadata.name, obj.metadata.namespace) {
            (Some(n), Some(ns)) => Ok((n, ns)),
            _ => Err(TaskError::InvalidParams("node has no metadata.name/namespace".into())),
        }
    }
}

/// The outcome of a successful step.
#[derive(Debug, Clone)]
pub enum Step {
    /// Done; the output is JSON.
    Complete(String),
    /// Not done; call again after `requeue_after_ms` with this checkpoint.
    Pending(PendingStep),
}

impl Step {
    /// Complete with a JSON output.
    pub fn complete<T: Serialize>(output: &T) -> Step {
        Step::Complete(serde_json::to_string(output).unwrap_or_else(|_| "null".to_string()))
    }
    /// Complete with no output.
    pub fn done() -> Step {
        Step::Complete("null".to_string())
    }
    /// Ask to be called again.
    pub fn pending<C: Serialize>(requeue_after_ms: u32, checkpoint: &C, message: impl Into<String>) -> Step {
        Step::Pending(PendingStep {
            requeue_after_ms,
            checkpoint: serde_json::to_string(checkpoint).unwrap_or_else(|_| "null".to_string()),
            message: message.into(),
        })
    }
}

/// Why a step failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    InvalidParams(String),
    Transient(String),
    Permanent(String),
    Denied(String),
}

impl std::fmt::Display for TaskError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TaskError::InvalidParams(m) => write!(f, "invalid params: {m}"),
            TaskError::Transient(m) => write!(f, "transient: {m}"),
            TaskError::Permanent(m) => write!(f, "permanent: {m}"),
            TaskError::Denied(m) => write!(f, "denied: {m}"),
        }
    }
}

/// A task module: what it is, and how it runs one step.
pub trait TaskModule {
    fn info() -> ModuleInfo;
    fn execute(input: Input) -> Result<Step, TaskError>;
}

#[doc(hidden)]
pub fn __describe<M: TaskModule>() -> TaskInfo {
    let info = M::info();
    TaskInfo {
        name: info.name,
        version: info.version,
        task_types: info.task_types,
        capabilities: info.capabilities,
        default_timeout_ms: info.default_timeout_ms,
        max_retries: info.max_retries,
    }
}

#[doc(hidden)]
pub fn __execute<M: TaskModule>(input: TaskInput) -> Result<WitStep, WitTaskError> {
    install_panic_hook();
    let input = Input {
        task_type: input.task_type,
        task_id: input.task_id,
        plan_id: input.plan_id,
        node_json: input.node,
        params_json: input.params,
        checkpoint: input.checkpoint,
        attempt: input.attempt,
    };
    match M::execute(input) {
        Ok(Step::Complete(out)) => Ok(WitStep::Complete(out)),
        Ok(Step::Pending(p)) => Ok(WitStep::Pending(p)),
        Err(TaskError::InvalidParams(m)) => Err(WitTaskError::InvalidParams(m)),
        Err(TaskError::Transient(m)) => Err(WitTaskError::Transient(m)),
        Err(TaskError::Permanent(m)) => Err(WitTaskError::Permanent(m)),
        Err(TaskError::Denied(m)) => Err(WitTaskError::Denied(m)),
    }
}

fn install_panic_hook() {
    use std::sync::Once;
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            log::error(&format!("panic: {info}"));
        }));
    });
}

/// Export a [`TaskModule`] implementation as the component's `describe`/`execute`.
#[macro_export]
macro_rules! export_task_module {
    ($module:ty) => {
        struct __SeiTaskGuest;
        impl $crate::bindings::Guest for __SeiTaskGuest {
            fn describe() -> $crate::bindings::sei::task::types::TaskInfo {
                $crate::__describe::<$module>()
            }
            fn execute(
                input: $crate::bindings::sei::task::types::TaskInput,
            ) -> ::core::result::Result<
                $crate::bindings::sei::task::types::Step,
                $crate::bindings::sei::task::types::TaskError,
            > {
                $crate::__execute::<$module>(input)
            }
        }
        $crate::bindings::__export_task_module_world!(__SeiTaskGuest with_types_in $crate::bindings);
    };
}
