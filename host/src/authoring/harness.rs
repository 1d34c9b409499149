//! Run the steps of one task of one module the way the controller does: the node's scope
//! (`node::scope::node_scope`: its uid owns every write), the module's grants, the sandbox's
//! limits for the task type, each pending checkpoint fed to the next step. Every call that
//! reaches Kubernetes or the sidecar is recorded on a [`Tape`].
//!
//! Shared by `task run`, `task test`, `task replay` and `task bench`.

use super::recording::{RecordingKube, RecordingSidecar, Tape};
use crate::adapters::kube::KubeAdapter;
use crate::adapters::sidecar::SidecarClient;
use crate::policy::scope::Scope;
use crate::sandbox::{LoadedModule, RunEnv, RunInput, RunReport, Sandbox, StepOutcome};
use std::sync::Arc;

/// The task id every author-kit run uses (a fixed UUID: runs are reproducible).
pub const TASK_ID: &str = "00000000-0000-5000-8000-000000000001";

/// What to run.
#[derive(Debug, Clone)]
pub struct StepsSpec {
    pub task_type: String,
    /// The SeiNode as JSON.
    pub node: serde_json::Value,
    /// The params as JSON text.
    pub params: String,
    pub checkpoint: Option<String>,
    /// Steps to run at most; the run stops at the first step that does not return `pending`.
    pub max_steps: u32,
    pub scope: Scope,
}

/// What the steps did.
pub struct StepsRun {
    pub reports: Vec<RunReport>,
    /// Every call that reached Kubernetes or the sidecar, with its answer.
    pub tape: Tape,
}

/// How a run ended, for exit codes and the case table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Complete,
    /// The last step asked to be called again.
    Pending,
    Failed,
}

impl StepsRun {
    pub fn ending(&self) -> Ending {
        match self.reports.last().map(|r| &r.outcome) {
            Some(Ok(StepOutcome::Complete { .. })) => Ending::Complete,
            Some(Ok(StepOutcome::Pending { .. })) => Ending::Pending,
            _ => Ending::Failed,
        }
    }
}

/// Run up to `spec.max_steps` steps of `module` against `kube` and `sidecar`.
pub async fn run_steps(
    sandbox: &Sandbox,
    module: &LoadedModule,
    spec: &StepsSpec,
    kube: Arc<dyn KubeAdapter>,
    sidecar: Arc<dyn SidecarClient>,
) -> StepsRun {
    let tape = Tape::new();
    let env = RunEnv {
        scope: spec.scope.clone(),
        kube: Arc::new(RecordingKube { inner: kube, tape: tape.clone() }),
        sidecar: Some(Arc::new(RecordingSidecar { inner: sidecar, tape: tape.clone() })),
        members: None,
    };
    let mut checkpoint = spec.checkpoint.clone();
    let mut reports = Vec::new();
    for _ in 0..spec.max_steps.max(1) {
        let input = RunInput {
            task_type: spec.task_type.clone(),
            task_id: TASK_ID.into(),
            plan_id: "author-kit".into(),
            node: spec.node.to_string(),
            params: spec.params.clone(),
            checkpoint: checkpoint.clone(),
            attempt: 1,
        };
        let report = sandbox.run(module, input, &env).await;
        let next = match &report.outcome {
            Ok(StepOutcome::Pending { checkpoint, .. }) => Some(checkpoint.clone()),
            _ => None,
        };
        reports.push(report);
        match next {
            Some(c) => checkpoint = Some(c),
            None => break,
        }
    }
    StepsRun { reports, tape }
}
