//! Sharding on the real control plane (issue #15): two `sei-operator` processes, each installed as
//! its own Helm release (its own ServiceAccount and RBAC, rendered from the chart with
//! `controller.shardSelector`), with disjoint shard selectors and leader election on. Each
//! reconciles only its own shard's SeiNodes (the API server's audit log names who touched what),
//! a node in no shard is left alone, and each shard leads through a Lease of its own, the one its
//! chart's Role names.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::rbac::v1::Role;
use kube::api::{Api, PostParams};
use sei_operator::api::seinode::{SeiNode, SeiNodePhase};
use sei_operator::shard::{ShardSelector, lease_name};
use sei_test_sidecar::TestSidecar;
use sei_testkit::controllers::{ControllerProcess, LeaseTiming, Replica};
use sei_testkit::identity::{CONTROLLER_NAMESPACE, LEASE_NAME, MODULE_NAMESPACE};
use sei_testkit::{TestCluster, eventually};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

fn node(name: &str, shard: Option<&str>) -> SeiNode {
    let labels = shard.map(|s| json!({"sei.io/shard": s})).unwrap_or(json!({}));
    serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name, "labels": labels},
        "spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}, "peers": [{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]}
    }))
    .expect("a SeiNode")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_with_disjoint_selectors_each_reconcile_only_their_shard() {
    let cluster = TestCluster::shared();
    cluster.install_crds(&sei_operator::crds::all()).await.unwrap();
    cluster.ensure_namespace(CONTROLLER_NAMESPACE).await.unwrap();
    cluster.ensure_namespace(MODULE_NAMESPACE).await.unwrap();
    let ns = cluster.namespace("shards").await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    let template = sidecar.url_template();
    let exe = Path::new(env!("CARGO_BIN_EXE_sei-operator"));

    let mut controllers = Vec::new();
    let mut leases = Vec::new();
    for shard in ["a", "b"] {
        // One Helm release per shard, as the README tells a user to split nodes.
        let release = format!("sei-shard-{shard}");
        let selector = format!("sei.io/shard={shard}");
        let rendered =
            cluster.render_chart(&[&format!("fullnameOverride={release}"), &format!("controller.shardSelector={selector}")]).unwrap();
        let applied = cluster
            .apply_manifests(&rendered, |k| matches!(k, "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding"))
            .await
            .unwrap();
        assert!(applied >= 7, "{applied} RBAC documents");
        // The chart's Role names the Lease the binary derives from the selector.
        let lease = lease_name(LEASE_NAME, Some(&ShardSelector::parse(&selector).unwrap()));
        let role: Role = rendered
            .split("\n---")
            .filter_map(|d| serde_yaml::from_str::<serde_json::Value>(d).ok())
            .filter(|v| v["kind"] == "Role" && v["metadata"]["name"] == format!("{release}-leader-election"))
            .find_map(|v| serde_json::from_value(v).ok())
            .expect("the chart's leader-election Role");
        let names: Vec<String> = role.rules.unwrap_or_default().into_iter().flat_map(|r| r.resource_names.unwrap_or_default()).collect();
        assert_eq!(names, std::slice::from_ref(&lease), "the Role and the binary agree on the shard's Lease");
        let user = format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{release}");
        cluster.wait_authorized(&user, "update", "coordination.k8s.io", "leases", Some(CONTROLLER_NAMESPACE), Some(&lease)).await.unwrap();
        cluster.wait_authorized(&user, "list", "sei.io", "seinodes", None, None).await.unwrap();
        let kubeconfig = cluster.service_account_kubeconfig(CONTROLLER_NAMESPACE, &release).await.unwrap();
        let extra = [format!("--shard-selector={selector}"), "--groups=false".to_string()];
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let replica = Replica {
            exe,
            id: &release,
            kubeconfig: &kubeconfig,
            timing: Some(LeaseTiming::FAST),
            sidecar_template: &template,
            namespace: ns.name(),
            extra: &extra,
            env: &[],
        };
        controllers.push(ControllerProcess::start(cluster, &replica).unwrap());
        leases.push(lease);
    }
    for c in &mut controllers {
        c.wait_for_log("became the leader", Duration::from_secs(60)).await.unwrap_or_else(|e| panic!("{e}\n{}", c.log_tail(30)));
    }

    let client = cluster.client().await;
    let nodes: Api<SeiNode> = Api::namespaced(client.clone(), ns.name());
    for (name, shard) in [("a-0", Some("a")), ("a-1", Some("a")), ("b-0", Some("b")), ("b-1", Some("b")), ("none-0", None)] {
        nodes.create(&PostParams::default(), &node(name, shard)).await.unwrap();
    }
    eventually("the shards' nodes Running", Duration::from_secs(180), || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        let running = |n: &SeiNode| n.status.as_ref().and_then(|s| s.phase) == Some(SeiNodePhase::Running);
        list.items.iter().filter(|n| n.metadata.name.as_deref() != Some("none-0")).all(running).then_some(())
    })
    .await
    .unwrap();

    // Who touched which SeiNode: each shard's ServiceAccount only its own.
    for (shard, other) in [("a", "b"), ("b", "a")] {
        let user = format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:sei-shard-{shard}");
        let touched: std::collections::BTreeSet<String> = cluster
            .audit_events(|e| e.user == user && e.namespace == ns.name() && e.resource == "seinodes" && !e.name.is_empty())
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(
            touched,
            [format!("{shard}-0"), format!("{shard}-1")].into_iter().collect(),
            "shard {shard} touched only its nodes (not {other}'s, not the unlabelled one)"
        );
    }
    let none = nodes.get("none-0").await.unwrap();
    assert!(none.status.is_none() && none.metadata.finalizers.is_none(), "a node in no shard is left alone: {:?}", none.status);

    // Each shard leads through its own Lease.
    let lease_api: Api<Lease> = Api::namespaced(client, CONTROLLER_NAMESPACE);
    for (lease, c) in leases.iter().zip(&controllers) {
        let held = lease_api.get(lease).await.unwrap();
        let holder = held.spec.and_then(|s| s.holder_identity).unwrap_or_default();
        assert!(holder.starts_with(&format!("{}_", c.id)), "{lease} held by {holder}, not {}", c.id);
    }
}
