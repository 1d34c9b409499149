//! Helpers several integration tests share (each test binary includes this with `mod common;`).
#![allow(dead_code)]

use sei_operator::api::seinode::SeiNode;
use sei_operator::registry::TaskRegistry;
use sei_operator::sandbox::{Sandbox, SandboxConfig};
use serde_json::json;
use std::sync::Arc;

/// Node `i` of a mixed set: a state-sync full node, an archive node, a replayer and a
/// single-validator genesis node, in turn (each mode's plan reaches Running with the test sidecar).
pub fn mixed_node(i: usize) -> SeiNode {
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    let (name, mode) = match i % 4 {
        0 => (format!("sync-{i}"), json!({"fullNode": {"snapshot": {"stateSync": {}}}, "peers": peers})),
        1 => (format!("archive-{i}"), json!({"archive": {}, "peers": peers})),
        2 => (format!("replay-{i}"), json!({"replayer": {"snapshot": {"s3": {"targetHeight": 5}}}, "peers": peers})),
        _ => (
            format!("genesis-{i}"),
            json!({"validator": {"genesisCeremony": {"chainId": format!("c{i}"), "stakingAmount": "1", "accountBalance": "2", "index": 0}}}),
        ),
    };
    let mut spec = json!({"chainId": "pacific-1", "image": "seid:v1"});
    for (k, v) in mode.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name}, "spec": spec}))
        .expect("a SeiNode")
}

/// The status the Job controller writes when a Job succeeds: no Job controller runs on the test
/// control plane, so tests that need a finished Job play it.
pub fn completed_job_status() -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    json!({"status": {
        "startTime": now, "completionTime": now, "succeeded": 1,
        "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": now},
            {"type": "Complete", "status": "True", "lastTransitionTime": now}
        ]
    }})
}

/// The status the Job controller writes when a Job's pod failed past its backoff limit (the
/// API server wants the `FailureTarget` condition beside `Failed`, and no completion time).
pub fn failed_job_status(message: &str) -> serde_json::Value {
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    let condition = |kind: &str| json!({"type": kind, "status": "True", "reason": "BackoffLimitExceeded", "message": message, "lastTransitionTime": now});
    json!({"status": {"startTime": now, "failed": 1, "conditions": [condition("FailureTarget"), condition("Failed")]}})
}

/// Every task type a node plan may send to the sidecar (the built-in sidecar module's).
pub fn sidecar_task_types() -> Vec<&'static str> {
    use sei_task_params::TaskType as T;
    let infra = [T::EnsureDataPvc, T::ApplyStatefulSet, T::ApplyService, T::DeployBootstrapService, T::DeployBootstrapJob];
    let infra_too = [T::AwaitBootstrapComplete, T::TeardownBootstrap];
    T::ALL.into_iter().filter(|t| !infra.contains(t) && !infra_too.contains(t)).map(T::as_str).collect()
}

/// A sandbox and a registry of the built-in modules, as a controller starts with.
pub async fn builtins() -> (Arc<Sandbox>, Arc<TaskRegistry>) {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).expect("a sandbox"));
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox).await.expect("the built-in modules load");
    (sandbox, registry)
}

/// What a watch of a namespace's SeiNodes saw: every plan id each node had in its status, its
/// last resourceVersion, and when each write was seen (a new resourceVersion, not a relist of an
/// unchanged node).
#[derive(Default)]
pub struct Seen {
    pub plans: std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    versions: std::collections::BTreeMap<String, String>,
    pub writes: Vec<std::time::Instant>,
}

/// Record `nodes` into a `Seen` until the task is aborted; through watch errors too (back-off,
/// then a relist), so no plan goes unseen.
pub fn record_nodes(nodes: kube::Api<SeiNode>) -> (Arc<std::sync::Mutex<Seen>>, tokio::task::JoinHandle<()>) {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let seen: Arc<std::sync::Mutex<Seen>> = Arc::default();
    let recording = seen.clone();
    let task = tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(nodes, watcher::Config::default()).default_backoff());
        while let Some(event) = events.next().await {
            if let Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) = event
                && let Some(plan) = n.status.as_ref().and_then(|s| s.plan.as_ref())
            {
                let mut seen = recording.lock().unwrap_or_else(|p| p.into_inner());
                let name = n.metadata.name.clone().unwrap_or_default();
                seen.plans.entry(name.clone()).or_default().insert(plan.id.clone());
                let version = n.metadata.resource_version.clone().unwrap_or_default();
                if seen.versions.insert(name, version.clone()) != Some(version) {
                    seen.writes.push(std::time::Instant::now());
                }
            }
        }
    });
    (seen, task)
}

/// One line per node, for a failed wait: its phase, and its plan's tasks with their status,
/// retries and last error (what a timeout alone does not say).
pub fn describe_nodes(nodes: &[SeiNode]) -> String {
    use kube::ResourceExt;
    let mut out = String::new();
    for n in nodes {
        let status = n.status.clone().unwrap_or_default();
        let tasks = status.plan.iter().flat_map(|p| p.tasks.iter()).map(|t| {
            let error = t.error.as_deref().map(|e| format!(" ({e})")).unwrap_or_default();
            format!("{}={:?}/{}{error}", t.task_type, t.status, t.retry_count)
        });
        let plan = status.plan.as_ref().map(|p| format!("{:?}", p.phase)).unwrap_or_else(|| "none".into());
        out.push_str(&format!("{}: {:?}, plan {plan}: {}\n", n.name_any(), status.phase, tasks.collect::<Vec<_>>().join(", ")));
    }
    out
}
