//! Built-in module `sei-builtin-sidecar`: every node sidecar task of the reference controller, driven
//! with the submit-then-poll protocol of `sei_task_sdk::sidecar::drive` and the plan's task id
//! as the sidecar task id.
//!
//! Invariants (unit tests below):
//! - `config-validate` and `mark-ready` are fire-and-forget on the wire, but unlike the
//!   reference they check the sidecar's answer: `mark-ready` completes only once `/v0/healthz`
//!   reports ready, `config-validate` only once the sidecar task completed
//!   (`fire_and_forget_types_are_checked`);
//! - the params are checked against the task's typed params (`tasks-wasm/params`, the types the
//!   planner writes; a mismatch is `invalid-params`), and sent exactly as the planner wrote them
//!   (`params_are_checked_against_their_type`).

use sei_task_params::{TaskParams, TaskType};
use sei_task_sdk::prelude::*;
use sei_task_sdk::sidecar::{DriveOptions, drive};

/// The sidecar task types this module serves.
pub const TASK_TYPES: [TaskType; 11] = [
    TaskType::SnapshotRestore,
    TaskType::ConfigureGenesis,
    TaskType::ConfigApply,
    TaskType::DiscoverPeers,
    TaskType::ConfigureStateSync,
    TaskType::ConfigValidate,
    TaskType::MarkReady,
    TaskType::GenerateIdentity,
    TaskType::GenerateGentx,
    TaskType::UploadGenesisArtifacts,
    TaskType::SetGenesisPeers,
];

/// How a task type is driven: all of them poll to completion (see module docs).
pub fn drive_options(_task_type: &str) -> DriveOptions {
    DriveOptions { fire_and_forget: false, poll_interval_ms: 5_000 }
}

/// The task's params, checked against its type; then what to send: `None` for an empty object
/// (the reference sends no params then).
pub fn checked_params(task: TaskType, params_json: &str) -> Result<Option<serde_json::Value>, TaskError> {
    let params = wire_params(params_json)?;
    let value = params.clone().unwrap_or_else(|| serde_json::json!({}));
    TaskParams::from_json(task, &value).map_err(|e| TaskError::InvalidParams(format!("params of {task}: {e}")))?;
    Ok(params)
}

/// Params to send: `None` for an empty object or null (the reference sends no params then).
pub fn wire_params(params_json: &str) -> Result<Option<serde_json::Value>, TaskError> {
    let raw = if params_json.trim().is_empty() { "null" } else { params_json };
    let value: serde_json::Value = serde_json::from_str(raw).map_err(|e| TaskError::InvalidParams(format!("params are not JSON: {e}")))?;
    Ok(match value {
        serde_json::Value::Null => None,
        serde_json::Value::Object(m) if m.is_empty() => None,
        v @ serde_json::Value::Object(_) => Some(v),
        other => return Err(TaskError::InvalidParams(format!("params must be a JSON object, got {other}"))),
    })
}

pub struct SidecarTasks;

impl TaskModule for SidecarTasks {
    fn info() -> ModuleInfo {
        TASK_TYPES
            .iter()
            .fold(ModuleInfo::new("sei-builtin-sidecar", env!("CARGO_PKG_VERSION")), |m, t| m.task_type(t.as_str()))
            .capability(Capability::Sidecar)
            .default_timeout_ms(30_000)
    }

    fn execute(input: Input) -> Result<Step, TaskError> {
        let Some(task) = TaskType::parse(&input.task_type).filter(|t| TASK_TYPES.contains(t)) else {
            return Err(TaskError::Permanent(format!("sei-builtin-sidecar does not implement {}", input.task_type)));
        };
        let params = checked_params(task, &input.params_json)?;
        let step = drive(&input, &input.task_type, params.as_ref(), drive_options(&input.task_type))?;
        if input.task_type == "mark-ready" && matches!(step, Step::Complete(_)) && !sidecar::healthz()? {
            return Ok(Step::pending(
                2_000,
                &sei_task_sdk::sidecar::DriveState::Submitted,
                "mark-ready completed but /v0/healthz is not 200 yet",
            ));
        }
        Ok(step)
    }
}

sei_task_sdk::export_task_module!(SidecarTasks);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fire_and_forget_types_are_checked() {
        assert!(!drive_options("mark-ready").fire_and_forget);
        assert!(!drive_options("config-validate").fire_and_forget);
    }

    #[test]
    fn empty_params_send_nothing() {
        assert_eq!(wire_params("").unwrap(), None);
        assert_eq!(wire_params("{}").unwrap(), None);
        assert_eq!(wire_params("null").unwrap(), None);
        assert_eq!(wire_params(r#"{"targetHeight":5}"#).unwrap(), Some(serde_json::json!({"targetHeight":5})));
    }

    #[test]
    fn non_object_params_are_invalid() {
        assert!(matches!(wire_params("[1]"), Err(TaskError::InvalidParams(_))));
        assert!(matches!(wire_params("{"), Err(TaskError::InvalidParams(_))));
    }

    #[test]
    fn serves_every_sidecar_task_of_the_reference() {
        assert_eq!(TASK_TYPES.len(), 11);
        assert!(TASK_TYPES.contains(&TaskType::GenerateGentx));
    }

    #[test]
    fn params_are_checked_against_their_type() {
        assert_eq!(
            checked_params(TaskType::SnapshotRestore, r#"{"targetHeight":5}"#).unwrap(),
            Some(serde_json::json!({"targetHeight":5}))
        );
        assert_eq!(checked_params(TaskType::MarkReady, "{}").unwrap(), None);
        let typo = checked_params(TaskType::SnapshotRestore, r#"{"targetHeight":"five"}"#).unwrap_err();
        assert!(matches!(&typo, TaskError::InvalidParams(m) if m.contains("params of snapshot-restore")), "{typo:?}");
        assert!(matches!(checked_params(TaskType::ConfigApply, "{}"), Err(TaskError::InvalidParams(_))), "config-apply needs its mode");
    }
}
