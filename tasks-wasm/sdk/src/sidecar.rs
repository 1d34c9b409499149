//! The node's sidecar `/v0` API (the `sidecar` host interface), and [`drive`], the
//! submit-then-poll protocol every sidecar task uses.

pub use crate::bindings::sei::task::sidecar::{SidecarError, SidecarTask};
use crate::host as raw;
use crate::{Input, Step, TaskError};
use serde::{Deserialize, Serialize};

impl From<SidecarError> for TaskError {
    fn from(e: SidecarError) -> Self {
        match e {
            SidecarError::Denied(m) => TaskError::Denied(m),
            SidecarError::Rejected(m) => TaskError::Permanent(format!("sidecar rejected the task: {m}")),
            SidecarError::Unavailable(m) => TaskError::Unavailable(format!("sidecar unreachable: {m}")),
            SidecarError::NotFound => TaskError::Transient("sidecar: task not found".into()),
        }
    }
}

pub fn submit_task(id: &str, task_type: &str, params: Option<&serde_json::Value>) -> Result<String, SidecarError> {
    let params = params.map(|p| p.to_string());
    raw::sidecar_submit(id, task_type, params.as_deref())
}
pub fn get_task(id: &str) -> Result<SidecarTask, SidecarError> {
    raw::sidecar_get_task(id)
}
pub fn status() -> Result<String, SidecarError> {
    raw::sidecar_status()
}
pub fn healthz() -> Result<bool, SidecarError> {
    raw::sidecar_healthz()
}
pub fn node_id() -> Result<String, SidecarError> {
    raw::sidecar_node_id()
}

/// Where a sidecar task stands between steps (kept in the task's checkpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum DriveState {
    /// Submitted; poll `GET /v0/tasks/{id}` next.
    Submitted,
    /// Submitted, but the sidecar answered "not found" this many polls in a row (it may have
    /// restarted and lost the task): after [`RESUBMIT_AFTER_NOT_FOUND`] the same id is submitted
    /// again, which is idempotent.
    NotFound(u32),
}

/// Polls answered "not found" before the task is submitted again.
pub const RESUBMIT_AFTER_NOT_FOUND: u32 = 3;

/// How a sidecar task is driven.
#[derive(Debug, Clone, Copy)]
pub struct DriveOptions {
    /// Fire-and-forget: complete right after a successful submit.
    pub fire_and_forget: bool,
    /// How long to wait between polls.
    pub poll_interval_ms: u32,
}

impl Default for DriveOptions {
    fn default() -> Self {
        Self { fire_and_forget: false, poll_interval_ms: 5_000 }
    }
}

/// One step of a sidecar task, with the plan's task id as the sidecar task id.
///
/// - no checkpoint (first step, or first step of a retry): submit (`complete` at once when
///   fire-and-forget), then poll once;
/// - checkpoint `Submitted`: poll only, never re-submit;
/// - a poll: `completed` → complete; `running` or not yet known → pending with the `Submitted`
///   checkpoint; `failed` → `transient` with the sidecar's error (the retry re-submits the same
///   id, which the sidecar re-runs).
pub fn drive(input: &Input, sidecar_type: &str, params: Option<&serde_json::Value>, opts: DriveOptions) -> Result<Step, TaskError> {
    let state: Option<DriveState> = input.checkpoint()?;
    let resubmit = matches!(state, Some(DriveState::NotFound(n)) if n >= RESUBMIT_AFTER_NOT_FOUND);
    if state.is_none() || resubmit {
        submit_task(&input.task_id, sidecar_type, params)?;
        if opts.fire_and_forget {
            return Ok(Step::complete(&serde_json::json!({ "sidecarTaskId": input.task_id })));
        }
    }
    // Poll (right after submitting too: a task the sidecar finishes at once completes in the
    // same step, without waiting a poll interval).
    match get_task(&input.task_id) {
        Ok(t) => match t.status.as_str() {
            "completed" => Ok(Step::complete(&serde_json::json!({ "sidecarTaskId": input.task_id }))),
            "failed" => Err(TaskError::Transient(format!(
                "sidecar task {sidecar_type} {} failed: {}",
                input.task_id,
                t.error.unwrap_or_else(|| "unknown error".into())
            ))),
            _ => Ok(Step::pending(opts.poll_interval_ms, &DriveState::Submitted, format!("sidecar task {sidecar_type} is {}", t.status))),
        },
        Err(SidecarError::NotFound) => {
            let misses = match state {
                Some(DriveState::NotFound(n)) if !resubmit => n + 1,
                _ => 1,
            };
            Ok(Step::pending(
                opts.poll_interval_ms,
                &DriveState::NotFound(misses),
                format!("sidecar does not know task {} ({misses} polls)", input.task_id),
            ))
        }
        Err(e) => Err(e.into()),
    }
}
