//! The built-in infrastructure tasks through the real `KubeClientAdapter` against the real
//! control plane (sei-testkit): objects have the reference shapes, server-side apply uses the
//! task type's field manager, every write carries the module digest, the PVC is created once
//! and never updated, and the guard keeps writes inside the node's names.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use kube::api::Api;
use sei_operator::adapters::kube::KubeClientAdapter;
use sei_operator::policy::scope::Scope;
use sei_operator::registry::TaskRegistry;
use sei_operator::sandbox::{RunEnv, RunInput, Sandbox, SandboxConfig, StepOutcome};
use sei_testkit::TestCluster;
use serde_json::json;
use std::sync::Arc;

fn node(ns: &str, uid: &str) -> String {
    serde_json::json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
        "metadata": {"name": "rpc", "namespace": ns, "uid": uid},
        "spec": {"podLabels": {"team": "rpc"}}
    })
    .to_string()
}

fn input(task_type: &str, ns: &str, params: serde_json::Value) -> RunInput {
    RunInput {
        task_type: task_type.into(),
        task_id: "7f0c2a4e-0000-5000-8000-000000000001".into(),
        plan_id: "plan".into(),
        node: node(ns, "5d1c6a2e-8c1f-4f57-9d1b-000000000001"),
        params: params.to_string(),
        checkpoint: None,
        attempt: 1,
    }
}

#[tokio::test]
async fn infra_tasks_write_reference_shapes_through_the_real_api_server() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("adapter").await;
    let client = cluster.client().await;
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let registry = TaskRegistry::new();
    registry.load_builtins(&sandbox).await.unwrap();
    // The node's scope, as the controller derives it (`node_scope`): its pod labels may be on its pods.
    let scope = Scope::for_node(ns.name(), "rpc").with_pod_labels([("team".to_string(), "rpc".to_string())].into());
    let env = RunEnv { scope, kube: Arc::new(KubeClientAdapter::new(client.clone())), sidecar: None, members: None };
    let params = serde_json::json!({"nodeName": "rpc", "namespace": ns.name(), "storageClass": "fast", "storageSize": "10Gi"});

    let pvc_module = registry.resolve("ensure-data-pvc").unwrap();
    let r = sandbox.run(&pvc_module.module, input("ensure-data-pvc", ns.name(), params.clone()), &env).await;
    assert!(matches!(r.outcome, Ok(StepOutcome::Complete { .. })), "{}", r.summary());
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), ns.name());
    let pvc = pvcs.get("data-rpc").await.unwrap();
    assert_eq!(pvc.metadata.annotations.as_ref().unwrap()["sei.io/module-digest"], r.module_digest);
    assert_eq!(pvc.metadata.owner_references.as_ref().unwrap()[0].kind, "SeiNode");
    assert_eq!(pvc.spec.as_ref().unwrap().storage_class_name.as_deref(), Some("fast"));
    let version = pvc.metadata.resource_version.clone();

    // Created once, never updated: a second run with other params succeeds and changes nothing.
    let mut other = params.clone();
    other["storageSize"] = "99Gi".into();
    let again = sandbox.run(&pvc_module.module, input("ensure-data-pvc", ns.name(), other), &env).await;
    assert!(matches!(again.outcome, Ok(StepOutcome::Complete { .. })), "{}", again.summary());
    assert_eq!(pvcs.get("data-rpc").await.unwrap().metadata.resource_version, version);

    let svc_module = registry.resolve("apply-service").unwrap();
    let r = sandbox.run(&svc_module.module, input("apply-service", ns.name(), params), &env).await;
    assert!(matches!(r.outcome, Ok(StepOutcome::Complete { .. })), "{}", r.summary());
    let svc = Api::<Service>::namespaced(client.clone(), ns.name()).get("rpc").await.unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.ports.unwrap().len(), 7);
    let managers: Vec<String> = svc.metadata.managed_fields.unwrap().iter().filter_map(|m| m.manager.clone()).collect();
    assert!(managers.contains(&"sei-operator/apply-service".to_string()), "{managers:?}");
    assert_eq!(svc.metadata.annotations.unwrap()["sei.io/module-digest"], r.module_digest);

    let sts_module = registry.resolve("apply-statefulset").unwrap();
    let mut i = input(
        "apply-statefulset",
        ns.name(),
        json!({"nodeName": "rpc", "namespace": ns.name(), "platform": {"sidecarImage": "seictl:test"}}),
    );
    i.node = json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
        "metadata": {"name": "rpc", "namespace": ns.name(), "uid": "5d1c6a2e-8c1f-4f57-9d1b-000000000001"},
        "spec": {"chainId": "pacific-1", "image": "seid:v6", "podLabels": {"team": "rpc"}, "fullNode": {}}
    })
    .to_string();
    let r = sandbox.run(&sts_module.module, i, &env).await;
    assert!(matches!(r.outcome, Ok(StepOutcome::Complete { .. })), "{}", r.summary());
    let sts = Api::<StatefulSet>::namespaced(client, ns.name()).get("rpc").await.unwrap();
    let pod = sts.spec.template.spec.unwrap();
    assert_eq!(pod.containers[0].image.as_deref(), Some("seid:v6"));
    assert_eq!(pod.init_containers.unwrap()[1].image.as_deref(), Some("seictl:test"));
    assert_eq!(sts.metadata.annotations.unwrap()["sei.io/module-digest"], r.module_digest);
}

#[tokio::test]
async fn list_follows_continue_tokens_and_refuses_oversized_answers() {
    use sei_operator::adapters::kube::{KubeAdapter, ListLimits, TypeRef};
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("adapter-list").await;
    let client = cluster.client().await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), ns.name());
    for i in 0..5 {
        let cm = serde_json::from_value(json!({"metadata": {"name": format!("peer-{i}"), "labels": {"sei.io/test": "paged"}}})).unwrap();
        cms.create(&kube::api::PostParams::default(), &cm).await.unwrap();
    }
    let adapter = KubeClientAdapter::new(client.clone()).with_page_size(2);
    let ty = TypeRef { api_version: "v1".into(), kind: "ConfigMap".into() };
    let limits = |max_requests| ListLimits { max_requests, max_bytes: 1 << 20 };
    let listed = adapter.list(&ty, ns.name(), Some("sei.io/test=paged"), limits(10)).await;
    assert_eq!(listed.requests, 3);
    let mut names: Vec<String> = listed
        .result
        .unwrap()
        .iter()
        .map(|o| serde_json::from_str::<serde_json::Value>(o).unwrap()["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, (0..5).map(|i| format!("peer-{i}")).collect::<Vec<_>>(), "three pages of two, all five objects");
    // The caller's request budget bounds the pages, and the requests made are reported also when
    // the list fails.
    let over = adapter.list(&ty, ns.name(), Some("sei.io/test=paged"), limits(2)).await;
    assert_eq!(over.requests, 2);
    let err = over.result.unwrap_err();
    assert!(err.to_string().contains("needs more than 2 requests"), "{err}");
    let capped = KubeClientAdapter::new(client.clone()).with_page_size(2).with_max_items(3);
    let err = capped.list(&ty, ns.name(), Some("sei.io/test=paged"), limits(10)).await.result.unwrap_err();
    assert!(err.to_string().contains("over 3 objects"), "{err}");
    // The byte cap stops the list as soon as it is passed.
    let tight = adapter.list(&ty, ns.name(), Some("sei.io/test=paged"), ListLimits { max_requests: 10, max_bytes: 300 }).await;
    assert!(tight.result.unwrap_err().to_string().contains("300 bytes"));
    assert!(tight.requests < 3, "stopped before the last page: {}", tight.requests);
}
