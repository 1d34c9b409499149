//! The built-in sidecar module's protocol, run in the real sandbox against the in-memory sidecar:
//! submit once and poll, never re-submit a running task, re-submit (same id) when the sidecar
//! lost the task, and `mark-ready` completes only once healthz is 200.

use sei_operator::adapters::kube::InMemoryKube;
use sei_operator::adapters::sidecar::{InMemorySidecar, Script};
use sei_operator::policy::scope::Scope;
use sei_operator::registry::TaskRegistry;
use sei_operator::sandbox::{RunEnv, RunInput, Sandbox, SandboxConfig, StepOutcome};
use std::sync::Arc;

const ID: &str = "6f1d1c1e-0000-5000-8000-000000000003";

fn input(task_type: &str, checkpoint: Option<String>) -> RunInput {
    RunInput {
        task_type: task_type.into(),
        task_id: ID.into(),
        plan_id: "p".into(),
        node: r#"{"metadata":{"name":"rpc","namespace":"sei"}}"#.into(),
        params: r#"{"targetHeight":5}"#.into(),
        checkpoint,
        attempt: 1,
    }
}

fn checkpoint(r: &sei_operator::sandbox::RunReport) -> String {
    match &r.outcome {
        Ok(StepOutcome::Pending { checkpoint, .. }) => checkpoint.clone(),
        other => panic!("expected pending, got {other:?}"),
    }
}

#[tokio::test]
async fn lost_task_is_resubmitted_with_the_same_id() {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let registry = TaskRegistry::new();
    registry.load_builtins(&sandbox).await.unwrap();
    let module = &registry.resolve("snapshot-restore").unwrap().module;
    let sidecar = Arc::new(InMemorySidecar::new());
    sidecar.script("snapshot-restore", Script::Stall);
    let env =
        RunEnv { scope: Scope::for_node("sei", "rpc"), kube: Arc::new(InMemoryKube::new()), sidecar: Some(sidecar.clone()), members: None };

    let first = sandbox.run(module, input("snapshot-restore", None), &env).await;
    let mut cp = checkpoint(&first);
    assert_eq!(cp, r#""submitted""#);
    assert_eq!(sidecar.submitted()[0].params, Some(serde_json::json!({"targetHeight": 5})));

    // Polls of a running task never re-submit.
    for _ in 0..3 {
        cp = checkpoint(&sandbox.run(module, input("snapshot-restore", Some(cp.clone())), &env).await);
    }
    assert_eq!(sidecar.runs(ID), 1);

    // The sidecar loses the task: three "not found" polls, then the same id is submitted again.
    sidecar.forget(ID);
    for n in 1..=3 {
        cp = checkpoint(&sandbox.run(module, input("snapshot-restore", Some(cp.clone())), &env).await);
        assert_eq!(cp, format!(r#"{{"notFound":{n}}}"#));
    }
    cp = checkpoint(&sandbox.run(module, input("snapshot-restore", Some(cp)), &env).await);
    assert_eq!(cp, r#""submitted""#);
    assert_eq!(sidecar.runs(ID), 1, "a fresh run under the same id");
    assert_eq!(sidecar.submitted().len(), 1);
    assert_eq!(sidecar.submitted()[0].id, ID);
}

#[tokio::test]
async fn mark_ready_waits_for_healthz() {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let registry = TaskRegistry::new();
    registry.load_builtins(&sandbox).await.unwrap();
    let module = &registry.resolve("mark-ready").unwrap().module;
    let sidecar = Arc::new(InMemorySidecar::new());
    sidecar.script("mark-ready", Script::CompleteAfter(1));
    let env =
        RunEnv { scope: Scope::for_node("sei", "rpc"), kube: Arc::new(InMemoryKube::new()), sidecar: Some(sidecar.clone()), members: None };
    let first = sandbox.run(module, input("mark-ready", None), &env).await;
    let cp = checkpoint(&first);
    let second = sandbox.run(module, input("mark-ready", Some(cp)), &env).await;
    assert!(matches!(second.outcome, Ok(StepOutcome::Complete { .. })), "{:?}", second.outcome);
    assert!(second.host_calls.iter().any(|c| c.call == "healthz" && c.outcome == "ok"), "{:?}", second.host_calls);
}
