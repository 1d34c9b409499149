//! Self-tests of the test control plane: real etcd + kube-apiserver + kube-controller-manager.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use sei_testkit::{TestCluster, eventually};
use std::time::Duration;

fn configmap(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "data": data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
    }))
    .unwrap()
}

#[tokio::test]
async fn configmap_create_get_patch() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-cm").await;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, ns.name());
    api.create(&PostParams::default(), &configmap("a", &[("k", "1")])).await.unwrap();
    let got = api.get("a").await.unwrap();
    assert_eq!(got.data.unwrap()["k"], "1");
    let patch = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "2"}});
    api.patch("a", &PatchParams::apply("harness").force(), &Patch::Apply(&patch)).await.unwrap();
    assert_eq!(api.get("a").await.unwrap().data.unwrap()["k"], "2");
    // Optimistic locking is real: a stale resourceVersion conflicts.
    let mut stale = api.get("a").await.unwrap();
    stale.metadata.resource_version = Some("1".into());
    let err = api.replace("a", &PostParams::default(), &stale).await.unwrap_err();
    assert!(matches!(err, kube::Error::Api(ref s) if s.code == 409), "{err:?}");
}

fn widget_crd() -> CustomResourceDefinition {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.testkit.sei.io"},
        "spec": {
            "group": "testkit.sei.io",
            "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object",
                        "x-kubernetes-validations": [{"rule": "self.replicas <= 5", "message": "replicas must be at most 5"}],
                        "properties": {"replicas": {"type": "integer"}}
                    }}
                }}
            }]
        }
    }))
    .unwrap()
}

#[tokio::test]
async fn audit_log_names_every_request_and_its_user() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-audit").await;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, ns.name());
    api.create(&PostParams::default(), &configmap("audited", &[("k", "1")])).await.unwrap();
    api.delete("audited", &DeleteParams::default()).await.unwrap();
    let events = cluster.audit_events(|e| e.namespace == ns.name() && e.resource == "configmaps" && e.name == "audited");
    let verbs: Vec<&str> = events.iter().map(|e| e.verb.as_str()).collect();
    assert_eq!(verbs, ["create", "delete"], "{events:?}");
    assert!(
        events
            .iter()
            .all(|e| e.user == "sei-testkit-admin" && e.code / 100 == 2 && e.user_agent == "sei-testkit" && !e.received.is_empty()),
        "{events:?}"
    );
}

#[tokio::test]
async fn crd_with_cel_rule_rejects_invalid_object() {
    let cluster = TestCluster::shared();
    cluster.install_crds(&[widget_crd()]).await.unwrap();
    let ns = cluster.namespace("harness-cel").await;
    let ar = ApiResource {
        group: "testkit.sei.io".into(),
        version: "v1".into(),
        api_version: "testkit.sei.io/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(cluster.client().await, ns.name(), &ar);
    let widget = |name: &str, replicas: i64| -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "testkit.sei.io/v1", "kind": "Widget",
            "metadata": {"name": name}, "spec": {"replicas": replicas}
        }))
        .unwrap()
    };
    api.create(&PostParams::default(), &widget("ok", 3)).await.unwrap();
    let err = api.create(&PostParams::default(), &widget("too-many", 9)).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422);
            assert!(s.message.contains("replicas must be at most 5"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn deleting_an_owner_garbage_collects_its_dependent() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-gc").await;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client().await, ns.name());
    let owner = api.create(&PostParams::default(), &configmap("owner", &[])).await.unwrap();
    let mut dependent = configmap("dependent", &[]);
    dependent.metadata.owner_references = Some(vec![k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }]);
    api.create(&PostParams::default(), &dependent).await.unwrap();
    api.delete("owner", &DeleteParams::background()).await.unwrap();
    eventually("the dependent ConfigMap to be garbage-collected", Duration::from_secs(60), || async {
        match api.get_opt("dependent").await {
            Ok(None) => Some(()),
            _ => None,
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn kubectl_works_against_the_kubeconfig() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-kubectl").await;
    let out = tokio::process::Command::new(cluster.bin_dir().join("kubectl"))
        .arg("--kubeconfig")
        .arg(cluster.kubeconfig_path())
        .args(["get", "namespace", ns.name(), "-o", "name"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("namespace/{}", ns.name()));
}

#[tokio::test]
async fn parallel_tests_get_separate_namespaces() {
    let cluster = TestCluster::shared();
    let (a, b) = tokio::join!(cluster.namespace("harness-par"), cluster.namespace("harness-par"));
    assert_ne!(a.name(), b.name());
    let client = cluster.client().await;
    for ns in [&a, &b] {
        // The same object name in both namespaces does not clash.
        Api::<ConfigMap>::namespaced(client.clone(), ns.name()).create(&PostParams::default(), &configmap("same", &[])).await.unwrap();
    }
}

#[tokio::test]
async fn namespace_is_deleted_when_its_guard_drops() {
    let cluster = TestCluster::shared();
    let name = {
        let ns = cluster.namespace("harness-drop").await;
        ns.name().to_string()
    };
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(cluster.client().await);
    // The namespace controller of kube-controller-manager really finalizes it.
    eventually("the dropped namespace to be gone", Duration::from_secs(60), || async {
        matches!(api.get_opt(&name).await, Ok(None)).then_some(())
    })
    .await
    .unwrap();
}

fn statefulset(name: &str, image: &str) -> StatefulSet {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "serviceName": name,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": image}]}}
        }
    }))
    .unwrap()
}

async fn observed(api: &Api<StatefulSet>, name: &str) -> (i64, i64, Option<i32>) {
    let s = api.get(name).await.unwrap();
    let st = s.status.unwrap_or_default();
    (s.metadata.generation.unwrap_or(0), st.observed_generation.unwrap_or(0), st.ready_replicas)
}

#[tokio::test]
async fn statefulset_faker_rolls_out_and_can_be_paused() {
    let cluster = TestCluster::shared();
    let ns = cluster.namespace("harness-sts").await;
    let api: Api<StatefulSet> = Api::namespaced(cluster.client().await, ns.name());
    api.create(&PostParams::default(), &statefulset("node", "img:1")).await.unwrap();
    eventually("generation 1 to roll out", Duration::from_secs(30), || async {
        (observed(&api, "node").await == (1, 1, Some(1))).then_some(())
    })
    .await
    .unwrap();

    let faker = cluster.statefulsets();
    faker.pause(ns.name());
    api.patch(
        "node",
        &PatchParams::apply("harness").force(),
        &Patch::Apply(&serde_json::json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "img:2"}]}}}
        })),
    )
    .await
    .unwrap();
    eventually("the faker to see generation 2", Duration::from_secs(10), || async {
        (faker.seen_generation(ns.name(), "node") == Some(2)).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(observed(&api, "node").await, (2, 1, Some(1)), "paused: generation 2 is held mid-rollout");

    faker.resume(ns.name());
    eventually("generation 2 to roll out after resume", Duration::from_secs(30), || async {
        (observed(&api, "node").await == (2, 2, Some(1))).then_some(())
    })
    .await
    .unwrap();
}

/// Not a test of its own: run by `no_process_outlives_a_failing_test` in a child process. It
/// starts a private control plane, prints the pids, and fails.
#[test]
fn child_that_starts_a_cluster_and_fails() {
    if std::env::var_os("SEI_TESTKIT_CHILD").is_none() {
        return;
    }
    let cluster = TestCluster::start().expect("control plane");
    for (name, pid) in cluster.pids() {
        println!("PID {name} {pid}");
    }
    std::mem::forget(cluster); // not even Drop runs: only the parent-death signal is left
    panic!("failing on purpose with the control plane running");
}

#[tokio::test]
async fn no_process_outlives_a_failing_test() {
    let exe = std::env::current_exe().unwrap();
    let out = tokio::process::Command::new(exe)
        .args(["--exact", "child_that_starts_a_cluster_and_fails", "--nocapture", "--test-threads=1"])
        .env("SEI_TESTKIT_CHILD", "1")
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "the child test fails on purpose");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pids: Vec<(String, i32)> = stdout
        .lines()
        .filter_map(|l| l.find("PID ").map(|i| &l[i + 4..]))
        .filter_map(|l| l.split_once(' ').map(|(n, p)| (n.to_string(), p.trim().parse().unwrap())))
        .collect();
    let names: Vec<&str> = pids.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["etcd", "kube-apiserver", "kube-controller-manager"], "child output:\n{stdout}");
    eventually("the child's control plane to be gone", Duration::from_secs(20), || async {
        // A killed child of the exited test process is reaped by init; /proc/<pid> disappears.
        pids.iter()
            .all(|(_, pid)| {
                !std::path::Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat")).map(|s| s.contains(") Z ")).unwrap_or(true)
            })
            .then_some(())
    })
    .await
    .unwrap();
}
