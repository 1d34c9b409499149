//! Running one step of one task: a fresh `Store` from the module's `InstancePre`, the step's
//! limits armed, `execute` called (its result lifted through the bounded types of
//! `sandbox::abi`), the outcome checked against the output and checkpoint caps, guest text
//! escaped, and everything the run did collected in a `RunReport`.

use super::abi::{GuestStep, GuestTaskError};
use super::engine::{DeadlineExceeded, Sandbox};
use super::host::{BudgetExceeded, HostCall, LogLine, MemoryLimitExceeded, TaskCtx};
use super::limits::{Budget, RunLimits};
use super::module::LoadedModule;
use crate::adapters::kube::KubeAdapter;
use crate::adapters::sidecar::{MemberSidecars, SidecarClient};
use crate::policy::guard::CapabilityGuard;
use crate::policy::scope::Scope;
use crate::text;
use crate::wit::TaskInput;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest error message a module's error may put in status (bytes).
pub const MAX_ERROR_BYTES: usize = 1024;
/// Longest `pending` message kept (bytes).
pub const MAX_PENDING_MESSAGE_BYTES: usize = 1024;

/// The input of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunInput {
    pub task_type: String,
    pub task_id: String,
    pub plan_id: String,
    /// The SeiNode as JSON.
    pub node: String,
    /// The task's params as JSON.
    pub params: String,
    pub checkpoint: Option<String>,
    pub attempt: u32,
}

/// What a run may reach: the node's scope and the adapters behind the host interfaces.
#[derive(Clone)]
pub struct RunEnv {
    pub scope: Scope,
    pub kube: Arc<dyn KubeAdapter>,
    pub sidecar: Option<Arc<dyn SidecarClient>>,
    /// A group task's member sidecars (`None` for a node task).
    pub members: Option<Arc<dyn MemberSidecars>>,
}

/// The outcome of a step that returned normally.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum StepOutcome {
    Complete { output: serde_json::Value },
    Pending { requeue_after_ms: u32, checkpoint: String, message: String },
}

/// Why a step did not produce an outcome. Messages are for the people reading the SeiNode's
/// status and events; `kind()` is the label for metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("module does not implement task type {task_type} (it implements: {implemented})")]
    UnknownTaskType { task_type: String, implemented: String },
    #[error("step exceeded its deadline of {} ms", deadline.as_millis())]
    Timeout { deadline: Duration },
    #[error("step exceeded its memory limit of {limit} bytes (asked to grow to {requested} bytes)")]
    MemoryLimit { limit: usize, requested: usize },
    #[error("step ran out of fuel (budget {budget})")]
    OutOfFuel { budget: u64 },
    #[error("{0}")]
    BudgetExceeded(BudgetExceeded),
    #[error("module trapped: {trap}{}", panic.as_ref().map(|p| format!(" (guest {p})")).unwrap_or_default())]
    Trap { trap: String, panic: Option<String> },
    #[error("could not instantiate the module: {0}")]
    Instantiate(String),
    #[error("step output is {size} bytes, over the limit of {limit} bytes")]
    OutputTooLarge { size: usize, limit: usize },
    #[error("step checkpoint is {size} bytes, over the limit of {limit} bytes")]
    CheckpointTooLarge { size: usize, limit: usize },
    #[error("step output is not JSON: {0}")]
    InvalidOutput(String),
    #[error("invalid params: {0}")]
    InvalidParams(String),
    #[error("transient error: {0}")]
    Transient(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("permanent error: {0}")]
    Permanent(String),
    #[error("denied: {0}")]
    Denied(String),
}

impl RunError {
    /// A short label (metrics, tests).
    pub fn kind(&self) -> &'static str {
        match self {
            RunError::UnknownTaskType { .. } => "unknown-task-type",
            RunError::Timeout { .. } => "timeout",
            RunError::MemoryLimit { .. } => "memory-limit",
            RunError::OutOfFuel { .. } => "out-of-fuel",
            RunError::BudgetExceeded(BudgetExceeded { budget: Budget::HostCalls, .. }) => "host-call-budget",
            RunError::BudgetExceeded(BudgetExceeded { budget: Budget::LogCalls, .. }) => "log-call-budget",
            RunError::Trap { .. } => "trap",
            RunError::Instantiate(_) => "instantiate",
            RunError::OutputTooLarge { .. } => "output-too-large",
            RunError::CheckpointTooLarge { .. } => "checkpoint-too-large",
            RunError::InvalidOutput(_) => "invalid-output",
            RunError::InvalidParams(_) => "invalid-params",
            RunError::Transient(_) => "transient",
            RunError::Unavailable(_) => "unavailable",
            RunError::Permanent(_) => "permanent",
            RunError::Denied(_) => "denied",
        }
    }

    /// Whether the executor may retry the task (within its budget).
    pub fn is_retryable(&self) -> bool {
        matches!(self, RunError::Transient(_) | RunError::Timeout { .. } | RunError::Instantiate(_))
    }
}

/// Everything one run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RunReport {
    pub task_type: String,
    pub module: String,
    pub module_digest: String,
    #[serde(serialize_with = "ser_outcome")]
    pub outcome: Result<StepOutcome, RunError>,
    pub host_calls: Vec<HostCall>,
    /// Host calls past the recording cap (still executed).
    pub unrecorded_host_calls: u64,
    /// Kubernetes and sidecar API requests the step made (charged against `limits.max_host_calls`).
    pub host_call_count: u32,
    /// `log` calls the step made (charged against `limits.max_log_calls`).
    pub log_calls: u32,
    pub logs: Vec<LogLine>,
    pub dropped_log_bytes: u64,
    pub dropped_log_lines: u64,
    /// The limits the step ran under.
    pub limits: RunLimits,
    pub fuel_consumed: u64,
    pub peak_memory_bytes: usize,
    pub duration_micros: u64,
}

fn ser_outcome<S: serde::Serializer>(o: &Result<StepOutcome, RunError>, s: S) -> Result<S::Ok, S::Error> {
    use serde::Serialize;
    match o {
        Ok(step) => step.serialize(s),
        Err(e) => serde_json::json!({"kind": "error", "error": e.kind(), "message": e.to_string()}).serialize(s),
    }
}

impl RunReport {
    /// A one-line summary naming the task, module and digest.
    pub fn summary(&self) -> String {
        let what = match &self.outcome {
            Ok(StepOutcome::Complete { .. }) => "complete".to_string(),
            Ok(StepOutcome::Pending { requeue_after_ms, message, .. }) => format!("pending ({message}; again in {requeue_after_ms} ms)"),
            Err(e) => format!("failed: {e}"),
        };
        format!("task {} (module {} {}): {what}", self.task_type, self.module, &self.module_digest[..12.min(self.module_digest.len())])
    }
}

/// Classify an error from instantiate/call into a `RunError`.
fn classify(err: wasmtime::Error, ctx: &TaskCtx) -> RunError {
    if err.downcast_ref::<DeadlineExceeded>().is_some() {
        return RunError::Timeout { deadline: ctx.limits.deadline };
    }
    if let Some(b) = err.downcast_ref::<BudgetExceeded>() {
        return RunError::BudgetExceeded(*b);
    }
    if let Some(m) = err.downcast_ref::<MemoryLimitExceeded>() {
        return RunError::MemoryLimit { limit: m.cap, requested: m.desired };
    }
    if let Some((_, desired)) = ctx.limiter.refused {
        return RunError::MemoryLimit { limit: ctx.limiter.cap, requested: desired };
    }
    match err.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => RunError::OutOfFuel { budget: ctx.limits.fuel },
        Some(wasmtime::Trap::Interrupt) => RunError::Timeout { deadline: ctx.limits.deadline },
        Some(trap) => RunError::Trap { trap: trap.to_string(), panic: ctx.panic_message.as_ref().map(|m| text::safe(m, MAX_ERROR_BYTES)) },
        None => RunError::Trap { trap: text::safe(&format!("{err:#}"), MAX_ERROR_BYTES), panic: None },
    }
}

/// Guest text for a status or an event: escaped and clipped.
fn guest_message(m: super::abi::BoundedStr<{ super::abi::MAX_MESSAGE_LIFT }>, max: usize) -> String {
    text::safe(&m.or_placeholder("message"), max)
}

fn check_outcome(step: Result<GuestStep, GuestTaskError>, limits: &RunLimits) -> Result<StepOutcome, RunError> {
    use super::abi::BoundedStr;
    match step {
        Ok(GuestStep::Complete(out)) => {
            let out = match out {
                BoundedStr::Ok(out) if out.len() <= limits.max_output_bytes => out,
                over => return Err(RunError::OutputTooLarge { size: over.len(), limit: limits.max_output_bytes }),
            };
            let output = if out.trim().is_empty() {
                serde_json::Value::Null
            } else {
                serde_json::from_str(&out).map_err(|e| RunError::InvalidOutput(e.to_string()))?
            };
            Ok(StepOutcome::Complete { output })
        }
        Ok(GuestStep::Pending(p)) => {
            let checkpoint = match p.checkpoint {
                BoundedStr::Ok(c) if c.len() <= limits.max_checkpoint_bytes => c,
                over => return Err(RunError::CheckpointTooLarge { size: over.len(), limit: limits.max_checkpoint_bytes }),
            };
            let message = guest_message(p.message, MAX_PENDING_MESSAGE_BYTES);
            Ok(StepOutcome::Pending { requeue_after_ms: p.requeue_after_ms, checkpoint, message })
        }
        // Guest text lands in the node's status and events: escaped and short.
        Err(GuestTaskError::InvalidParams(m)) => Err(RunError::InvalidParams(guest_message(m, MAX_ERROR_BYTES))),
        Err(GuestTaskError::Transient(m)) => Err(RunError::Transient(guest_message(m, MAX_ERROR_BYTES))),
        Err(GuestTaskError::Unavailable(m)) => Err(RunError::Unavailable(guest_message(m, MAX_ERROR_BYTES))),
        Err(GuestTaskError::Permanent(m)) => Err(RunError::Permanent(guest_message(m, MAX_ERROR_BYTES))),
        Err(GuestTaskError::Denied(m)) => Err(RunError::Denied(guest_message(m, MAX_ERROR_BYTES))),
    }
}

impl Sandbox {
    /// Run one step. Never panics and never returns early on a module's misbehaviour: every
    /// failure is a `RunError` in the report.
    pub async fn run(&self, module: &LoadedModule, input: RunInput, env: &RunEnv) -> RunReport {
        let started = Instant::now();
        let limits = self.config().limits.limits_for(&input.task_type, module.info.default_timeout_ms, &module.limits);
        let ctx = TaskCtx::new(
            limits,
            CapabilityGuard::new(module.grants.clone(), env.scope.clone()),
            (env.kube.clone(), env.sidecar.clone()),
            self.metrics().clone(),
            input.task_type.clone(),
            (module.digest.clone(), Arc::from(module.info.name.as_str())),
        );
        let ctx = TaskCtx { requests: module.requests.clone(), members: env.members.clone(), ..ctx };
        let mut store = self.new_store(ctx);

        let outcome = if !module.info.task_types.contains(&input.task_type) {
            Err(RunError::UnknownTaskType { task_type: input.task_type.clone(), implemented: module.info.task_types.join(", ") })
        } else {
            let deadline = store.data().limits.deadline;
            let wit_input = TaskInput {
                task_type: input.task_type.clone(),
                task_id: input.task_id,
                plan_id: input.plan_id,
                node: input.node,
                params: input.params,
                checkpoint: input.checkpoint,
                attempt: input.attempt,
            };
            // The epoch callback stops wasm at the deadline; this timeout also bounds time
            // spent in host calls (which have their own, shorter timeouts).
            let call = async {
                let instance = match module.pre.instantiate_async(&mut store).await {
                    Ok(i) => i,
                    Err(e) => return Err(Err(e)),
                };
                let execute =
                    instance.get_typed_func::<(TaskInput,), (Result<GuestStep, GuestTaskError>,)>(&mut store, "execute").map_err(Ok)?;
                execute.call_async(&mut store, (wit_input,)).await.map(|(r,)| r).map_err(Ok)
            };
            match tokio::time::timeout(deadline + Duration::from_millis(500), call).await {
                Err(_) => Err(RunError::Timeout { deadline }),
                Ok(Ok(step)) => check_outcome(step, &store.data().limits),
                Ok(Err(Ok(call_err))) => Err(classify(call_err, store.data())),
                Ok(Err(Err(inst_err))) => match classify(inst_err, store.data()) {
                    RunError::Trap { trap, .. } => Err(RunError::Instantiate(trap)),
                    other => Err(other),
                },
            }
        };

        let fuel_left = store.get_fuel().unwrap_or(0);
        let ctx = store.into_data();
        self.metrics().record_step(&ctx.task_type);
        self.metrics().record_calls(&ctx.module_digest, ctx.host_calls, ctx.log_calls);
        if ctx.dropped_log_bytes > 0 {
            self.metrics().dropped_log_bytes.fetch_add(ctx.dropped_log_bytes, std::sync::atomic::Ordering::Relaxed);
            self.metrics().dropped_log_lines.fetch_add(ctx.dropped_log_lines, std::sync::atomic::Ordering::Relaxed);
        }
        RunReport {
            task_type: ctx.task_type,
            module: module.info.name.clone(),
            module_digest: module.digest.to_string(),
            outcome,
            host_calls: ctx.calls,
            unrecorded_host_calls: ctx.unrecorded_calls,
            host_call_count: ctx.host_calls,
            log_calls: ctx.log_calls,
            logs: ctx.logs,
            dropped_log_bytes: ctx.dropped_log_bytes,
            dropped_log_lines: ctx.dropped_log_lines,
            fuel_consumed: ctx.limits.fuel.saturating_sub(fuel_left),
            peak_memory_bytes: ctx.limiter.peak,
            duration_micros: started.elapsed().as_micros() as u64,
            limits: ctx.limits,
        }
    }
}

/// Property tests of how the host reads a module's step (issue #14; `PROPTEST_CASES` cases).
#[cfg(test)]
mod properties {
    use super::*;
    use crate::sandbox::abi::{BoundedStr, GuestPendingStep};
    use proptest::prelude::*;

    fn limits() -> RunLimits {
        RunLimits { max_output_bytes: 64, max_checkpoint_bytes: 64, ..RunLimits::default() }
    }

    fn clean(s: &str, max: usize) -> bool {
        s.len() <= max + 32 && !s.chars().any(|c| c.is_control())
    }

    proptest! {
        /// Output and checkpoint within their caps or refused by size; JSON or `InvalidOutput`;
        /// every message escaped and bounded; never a panic.
        #[test]
        fn step_outcomes_are_bounded_and_escaped(text in any::<String>(), json_ish in "[\\[\\]{}\"a-z0-9:,. \\\\\u{1b}]{0,80}", over in 0usize..usize::MAX, kind in 0u8..5) {
            for out in [text.clone(), json_ish.clone()] {
                match check_outcome(Ok(GuestStep::Complete(BoundedStr::Ok(out.clone()))), &limits()) {
                    Ok(StepOutcome::Complete { .. }) => prop_assert!(out.len() <= 64),
                    Err(RunError::OutputTooLarge { size, limit }) => prop_assert!(size > limit && out.len() > 64),
                    Err(RunError::InvalidOutput(m)) => prop_assert!(!m.contains('\u{1b}'), "{m:?}"),
                    other => prop_assert!(false, "{other:?}"),
                }
            }
            let too_large = check_outcome(Ok(GuestStep::Complete(BoundedStr::Over(over))), &limits());
            prop_assert!(matches!(too_large, Err(RunError::OutputTooLarge { .. })), "{too_large:?}");
            let pending = GuestPendingStep { requeue_after_ms: 7, checkpoint: BoundedStr::Ok(text.clone()), message: BoundedStr::Ok(text.clone()) };
            match check_outcome(Ok(GuestStep::Pending(pending)), &limits()) {
                Ok(StepOutcome::Pending { checkpoint, message, .. }) => {
                    prop_assert!(checkpoint.len() <= 64);
                    prop_assert!(clean(&message, MAX_PENDING_MESSAGE_BYTES), "{message:?}");
                }
                Err(RunError::CheckpointTooLarge { .. }) => prop_assert!(text.len() > 64),
                other => prop_assert!(false, "{other:?}"),
            }
            let m = BoundedStr::Ok(text.clone());
            let error = match kind {
                0 => GuestTaskError::InvalidParams(m),
                1 => GuestTaskError::Transient(m),
                2 => GuestTaskError::Unavailable(m),
                3 => GuestTaskError::Permanent(m),
                _ => GuestTaskError::Denied(m),
            };
            match check_outcome(Err(error), &limits()) {
                Err(RunError::InvalidParams(m) | RunError::Transient(m) | RunError::Unavailable(m) | RunError::Permanent(m) | RunError::Denied(m)) => {
                    prop_assert!(clean(&m, MAX_ERROR_BYTES), "{m:?}")
                }
                other => prop_assert!(false, "{other:?}"),
            }
        }
    }
}
