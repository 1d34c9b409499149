//! Typed task params across both sides: the planner writes them (`node/planner.rs`), the built-in
//! modules read the same types (`tasks-wasm/params`). Every task type a plan can contain is claimed
//! by a built-in module, and every task of every plan of the reference reaches its module with
//! params the module accepts.

use sei_operator::adapters::kube::InMemoryKube;
use sei_operator::adapters::sidecar::InMemorySidecar;
use sei_operator::api::seinode::SeiNode;
use sei_operator::node::planner::{PlanDecision, resolve_plan};
use sei_operator::node::scope::node_scope;
use sei_operator::platform::PlatformConfig;
use sei_operator::registry::TaskRegistry;
use sei_operator::sandbox::{RunEnv, RunError, RunInput, Sandbox, SandboxConfig};
use sei_task_params::{TaskParams, TaskType};
use serde_json::json;
use std::sync::Arc;

fn node(name: &str, spec: serde_json::Value) -> SeiNode {
    let mut s = json!({"chainId": "pacific-1", "image": "seid:v1"});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
        "metadata": {"name": name, "namespace": "sei", "uid": "7f0c2a4e-0000-4000-8000-00000000000a"},
        "spec": s
    }))
    .unwrap()
}

/// A node for every plan of the reference: base (s3, state sync, none; with peers), archive,
/// replayer, bootstrap, genesis ceremony.
fn nodes() -> Vec<SeiNode> {
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}, {"ec2Tags": {"region": "eu-west-1", "tags": {"role": "sei"}}}]);
    vec![
        node("full-s3", json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}, "trustPeriod": "9999h0m0s"}}, "peers": peers})),
        node("full-sync", json!({"fullNode": {"snapshot": {"stateSync": {}}}, "peers": peers, "overrides": {"evm.http_port": "8545"}})),
        node("full-bare", json!({"fullNode": {}})),
        node("archive", json!({"archive": {"snapshotGeneration": {"keepRecent": 3}}, "peers": peers})),
        node("replayer", json!({"replayer": {"snapshot": {"s3": {"targetHeight": 5}}}, "peers": peers})),
        node("boot", json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}, "bootstrapImage": "seid:boot"}}, "peers": peers})),
        node(
            "genesis",
            json!({"validator": {"genesisCeremony": {"chainId": "c", "stakingAmount": "1usei", "accountBalance": "2usei", "index": 0}}}),
        ),
    ]
}

fn now() -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_planned_task_type_is_claimed_by_a_builtin() {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let registry = TaskRegistry::new();
    registry.load_builtins(&sandbox).await.unwrap();
    for task in TaskType::ALL {
        let entry = registry.resolve(task.as_str()).unwrap_or_else(|| panic!("no built-in module claims {task}"));
        assert!(entry.module.info.task_types.iter().any(|t| t == task.as_str()), "{task}");
    }
    // And every task type of every plan is one the planner knows.
    for n in nodes() {
        let PlanDecision::New { plan, .. } = resolve_plan(&n, &Default::default(), &PlatformConfig::for_local(), "p", &now()).unwrap()
        else {
            panic!("no plan for {:?}", n.metadata.name)
        };
        for t in &plan.tasks {
            assert!(TaskType::parse(&t.task_type).is_some(), "{} in {:?}", t.task_type, n.metadata.name);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_task_of_every_plan_reaches_its_builtin_with_params_it_accepts() {
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let registry = TaskRegistry::new();
    registry.load_builtins(&sandbox).await.unwrap();
    let platform = PlatformConfig::for_local();
    let mut checked = 0;
    for n in nodes() {
        let PlanDecision::New { plan, .. } = resolve_plan(&n, &Default::default(), &platform, "plan-1", &now()).unwrap() else {
            panic!("no plan")
        };
        let sidecar = Arc::new(InMemorySidecar::new());
        let env =
            RunEnv { scope: node_scope(&n, &platform), kube: Arc::new(InMemoryKube::new()), sidecar: Some(sidecar.clone()), members: None };
        for t in &plan.tasks {
            let task = TaskType::parse(&t.task_type).unwrap();
            let params = t.params.clone().unwrap_or(json!({}));
            // The planner's side: the JSON in the plan is exactly the typed params.
            let typed = TaskParams::from_json(task, &params).unwrap_or_else(|e| panic!("{task} of {:?}: {e}: {params}", n.metadata.name));
            assert_eq!(typed.to_json(), params, "{task} round-trips");
            // The module's side: the built-in accepts them.
            let input = RunInput {
                task_type: t.task_type.clone(),
                task_id: t.id.clone(),
                plan_id: plan.id.clone(),
                node: serde_json::to_string(&n).unwrap(),
                params: params.to_string(),
                checkpoint: None,
                attempt: 1,
            };
            let entry = registry.resolve(&t.task_type).unwrap();
            let report = sandbox.run(&entry.module, input, &env).await;
            assert!(
                !matches!(report.outcome, Err(RunError::InvalidParams(_))),
                "{task} of {:?} refused its params: {:?}",
                n.metadata.name,
                report.outcome
            );
            checked += 1;
        }
        // What a sidecar task sent is what the planner wrote.
        for req in sidecar.submitted() {
            let planned = plan.tasks.iter().find(|t| t.id == req.id).unwrap();
            let sent = req.params.unwrap_or(json!({}));
            assert_eq!(sent, planned.params.clone().unwrap_or(json!({})), "{} of {:?}", req.task_type, n.metadata.name);
        }
    }
    assert!(checked >= 70, "{checked} tasks checked");
}
