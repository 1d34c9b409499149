//! __NAME__: a sei-operator task module (task type `__TASK_TYPE__`).
//!
//! Waits for the node's StatefulSet, then asks the node's sidecar to mark the node ready
//! (submitted once with the plan's task id, then polled), and completes with the sidecar's
//! status. Every step is idempotent: the controller may run one again after a crash.

use sei_task_sdk::PendingStep;
use sei_task_sdk::prelude::*;
use sei_task_sdk::sidecar::{DriveOptions, drive};

struct Module;

/// The checkpoint of a step that waited for the StatefulSet.
const WAITING: &str = "waiting";

impl TaskModule for Module {
    fn info() -> ModuleInfo {
        ModuleInfo::new("__NAME__", env!("CARGO_PKG_VERSION"))
            .task_type("__TASK_TYPE__")
            .capability(Capability::KubeRead)
            .capability(Capability::Sidecar)
    }

    fn execute(input: Input) -> Result<Step, TaskError> {
        let (name, _namespace) = input.node_ref()?;
        // Not submitted yet: no checkpoint, or the one of a step that waited for the StatefulSet.
        let submitted = input.checkpoint.as_deref().is_some_and(|c| c != WAITING);
        if !submitted && kube::get_raw("apps/v1", "StatefulSet", &name)?.is_none() {
            return Ok(Step::Pending(PendingStep {
                requeue_after_ms: 2_000,
                checkpoint: WAITING.into(),
                message: format!("waiting for StatefulSet {name}"),
            }));
        }
        let checkpoint = if submitted { input.checkpoint.clone() } else { None };
        let input = Input { checkpoint, ..input };
        match drive(&input, "mark-ready", None, DriveOptions { fire_and_forget: false, poll_interval_ms: 2_000 })? {
            Step::Complete(_) => {
                let status = sidecar::status()?;
                log::info(&format!("node {name} marked ready; sidecar says {status}"));
                Ok(Step::complete(&serde_json::json!({ "sidecarStatus": status, "statefulSet": name })))
            }
            pending => Ok(pending),
        }
    }
}

sei_task_sdk::export_task_module!(Module);

#[cfg(test)]
mod tests {
    use super::*;
    use sei_task_sdk::mock::{MockHost, MockScript};

    fn node() -> serde_json::Value {
        serde_json::json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "node-0", "namespace": "default", "uid": "u-0"}})
    }

    #[test]
    fn marks_ready_once_the_statefulset_exists() {
        let host = MockHost::new()
            .object(serde_json::json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "node-0"}}))
            .script("mark-ready", MockScript::CompleteAfter(0))
            .sidecar_status("Ready")
            .install();
        let step = Module::execute(Input::for_test("__TASK_TYPE__", node(), serde_json::json!({}))).unwrap();
        assert!(matches!(step, Step::Complete(ref out) if out.contains("Ready")), "{step:?}");
        assert_eq!(host.calls().iter().filter(|c| c.contains("submit-task")).count(), 1);
    }

    #[test]
    fn waits_without_a_statefulset() {
        let host = MockHost::new().install();
        let step = Module::execute(Input::for_test("__TASK_TYPE__", node(), serde_json::json!({}))).unwrap();
        assert!(matches!(step, Step::Pending(_)));
        assert!(host.calls().iter().all(|c| !c.starts_with("sidecar")));
    }
}
