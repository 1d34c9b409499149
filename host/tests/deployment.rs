//! The controller as a cluster operator runs it.
//!
//! - `chart_lints_installs_upgrades_and_keeps_its_crds`: `helm lint` and `helm template` are
//!   clean; `helm install` on a fresh real control plane draws no warning (the CRDs included),
//!   creates the Deployment with its security contexts and probes; `helm upgrade` changes it;
//!   `helm uninstall` keeps the CRDs;
//! - `leader_killed_mid_plan_…_and_a_lost_lease_stops_it`: two
//!   `sei-operator` processes as the chart's ServiceAccount, leader election on; 20 SeiNodes;
//!   the leader is SIGKILLed mid-plan; the standby (ready all along, without the Lease) takes
//!   over, every node reaches Running, no sidecar task was submitted under a second id and none
//!   ran twice (counted by the test sidecar); then SIGTERM hands the Lease to a fresh standby and
//!   the old leader exits 0; a leader that finds its Lease taken stops at once and exits non-zero.
//!
//! Times are measured by `host/examples/failover.rs` (BENCHMARKS.md), not asserted here.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, PostParams};
use sei_operator::adapters::sidecar::Script;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase, TaskStatus};
use sei_test_sidecar::TestSidecar;
use sei_testkit::controllers::{ControllerProcess, LeaseTiming, Replica};
use sei_testkit::identity::{CONTROLLER_NAMESPACE, LEASE_NAME, chart_dir, test_values};
use sei_testkit::{TestCluster, eventually};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn helm(cluster: &TestCluster, args: &[&str]) -> (bool, String, String) {
    let out = cluster.run_helm(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The values a user must give (the platform's buckets); the rest are the chart's defaults.
fn sets() -> Vec<String> {
    test_values().into_iter().filter(|v| v.starts_with("platform.")).flat_map(|v| ["--set".to_string(), v]).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_lints_installs_upgrades_and_keeps_its_crds() {
    // A control plane of its own: the chart installs its CRDs and RBAC from scratch.
    let cluster = tokio::task::spawn_blocking(TestCluster::start).await.unwrap().unwrap();
    let chart = chart_dir().display().to_string();
    let sets = sets();
    let with_sets = |base: &[&str]| base.iter().map(|s| s.to_string()).chain(sets.iter().cloned()).collect::<Vec<String>>();

    let lint = with_sets(&["lint", &chart, "--strict"]);
    let (ok, out, err) = helm(&cluster, &lint.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "helm lint failed:\n{out}\n{err}");
    assert!(!out.contains("[WARNING]") && !out.contains("[ERROR]"), "helm lint is not clean:\n{out}");

    // Rendering refuses what cannot work, with a message.
    let (ok, _, err) = helm(&cluster, &["template", "x", &chart]);
    assert!(!ok && err.contains("platform.snapshotBucket"), "rendering without the buckets must fail and say why: {err}");
    let unelected = with_sets(&["template", "x", &chart, "--set", "leaderElection.enabled=false", "--set", "replicaCount=2"]);
    let (ok, _, err) = helm(&cluster, &unelected.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!ok && err.contains("leader election"), "two replicas without leader election must be refused: {err}");

    let install = with_sets(&["install", "sei-operator", &chart, "--namespace", CONTROLLER_NAMESPACE, "--create-namespace"]);
    let (ok, out, err) = helm(&cluster, &install.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "helm install failed:\n{out}\n{err}");
    assert!(!err.to_lowercase().contains("warn"), "the API server warned about the chart's objects:\n{err}");

    let client = cluster.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for name in ["seinodes.sei.io", "seinodedeployments.sei.io", "taskmodules.sei.io"] {
        let crd = eventually(&format!("CRD {name} Established"), Duration::from_secs(30), || async {
            let c = crds.get(name).await.ok()?;
            c.status.as_ref()?.conditions.as_ref()?.iter().any(|c| c.type_ == "Established" && c.status == "True").then_some(c)
        })
        .await
        .unwrap();
        assert_eq!(crd.metadata.annotations.unwrap().get("helm.sh/resource-policy").map(String::as_str), Some("keep"));
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), CONTROLLER_NAMESPACE);
    let d = deployments.get("sei-operator").await.unwrap();
    let spec = d.spec;
    assert_eq!(spec.replicas, Some(2));
    let pod = spec.template.spec.unwrap();
    let psc = pod.security_context.unwrap();
    assert_eq!((psc.run_as_non_root, psc.run_as_user), (Some(true), Some(65532)));
    assert_eq!(psc.seccomp_profile.unwrap().type_, "RuntimeDefault");
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.capabilities.unwrap().drop, Some(vec!["ALL".to_string()]));
    assert_eq!(c.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/readyz"));
    assert_eq!(c.liveness_probe.as_ref().unwrap().http_get.as_ref().unwrap().path.as_deref(), Some("/healthz"));
    let args = c.args.clone().unwrap();
    assert!(args.iter().any(|a| a == "--leader-election"), "{args:?}");
    let mounts = c.volume_mounts.clone().unwrap();
    assert!(mounts.iter().any(|m| m.mount_path == "/var/cache/sei-operator"), "the module cache is a mounted volume: {mounts:?}");

    let upgrade = with_sets(&["upgrade", "sei-operator", &chart, "--namespace", CONTROLLER_NAMESPACE, "--set", "replicaCount=3"]);
    let (ok, out, err) = helm(&cluster, &upgrade.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "helm upgrade failed:\n{out}\n{err}");
    assert!(!err.to_lowercase().contains("warn"), "the upgrade drew warnings:\n{err}");
    assert_eq!(deployments.get("sei-operator").await.unwrap().spec.replicas, Some(3));

    let (ok, out, err) = helm(&cluster, &["uninstall", "sei-operator", "--namespace", CONTROLLER_NAMESPACE]);
    assert!(ok, "helm uninstall failed:\n{out}\n{err}");
    eventually("the Deployment gone", Duration::from_secs(30), || async {
        deployments.get_opt("sei-operator").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    for name in ["seinodes.sei.io", "seinodedeployments.sei.io", "taskmodules.sei.io"] {
        let kept = crds.get_opt(name).await.unwrap();
        assert!(kept.is_some_and(|c| c.metadata.deletion_timestamp.is_none()), "CRD {name} is kept on uninstall");
    }
}

fn exe() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sei-operator"))
}

fn node(name: &str) -> SeiNode {
    serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name},
        "spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}, "peers": [{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]}
    }))
    .unwrap()
}

async fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let r = reqwest::get(format!("http://{addr}{path}")).await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// The replica holding the Lease now.
async fn holder(client: &kube::Client) -> Option<String> {
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), CONTROLLER_NAMESPACE);
    leases.get_opt(LEASE_NAME).await.ok()??.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_plan_the_standby_finishes_every_node_then_hands_over_on_sigterm_and_a_lost_lease_stops_it() {
    let cluster = TestCluster::shared();
    cluster.install_crds(&sei_operator::crds::all()).await.unwrap();
    let ns = cluster.namespace("failover").await;
    let client = cluster.client().await;
    let kubeconfig = cluster.controller_kubeconfig().await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    // Sidecar tasks take a few polls each, so the plans are in flight when the leader dies.
    sidecar.script("config-apply", Script::CompleteAfter(2));
    sidecar.script("configure-state-sync", Script::CompleteAfter(2));
    let template = sidecar.url_template();
    let replica = |id: &'static str| Replica {
        exe: exe(),
        id,
        kubeconfig: &kubeconfig,
        timing: Some(LeaseTiming::FAST),
        sidecar_template: &template,
        namespace: ns.name(),
        extra: &[],
        env: &[],
    };
    let mut a = ControllerProcess::start(cluster, &replica("replica-a")).unwrap();
    a.wait_for_log("became the leader", Duration::from_secs(60)).await.unwrap();
    let mut b = ControllerProcess::start(cluster, &replica("replica-b")).unwrap();
    b.wait_for_log("standing by for the leader Lease", Duration::from_secs(60)).await.unwrap();
    // The standby is ready although it does not hold the Lease.
    let ready = eventually("the standby's /readyz", Duration::from_secs(30), || async {
        (http_get(&b.metrics_addr, "/readyz").await? == (200, "ok".to_string())).then_some(())
    })
    .await;
    assert!(ready.is_ok(), "{ready:?}\n{}", b.log_tail(20));
    assert!(holder(&client).await.is_some_and(|h| h.starts_with("replica-a_")));

    let nodes: Api<SeiNode> = Api::namespaced(client.clone(), ns.name());
    let names: Vec<String> = (0..20).map(|i| format!("node-{i:02}")).collect();
    for n in &names {
        nodes.create(&PostParams::default(), &node(n)).await.unwrap();
    }
    // Mid-plan: some tasks done, no node finished.
    let progress = |n: &SeiNode| {
        n.status.as_ref().and_then(|s| s.plan.as_ref()).map_or(0, |p| p.tasks.iter().filter(|t| t.status == TaskStatus::Complete).count())
    };
    eventually("plans in flight", Duration::from_secs(60), || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        list.items.iter().any(|n| progress(n) >= 3).then_some(())
    })
    .await
    .unwrap();
    let list = nodes.list(&ListParams::default()).await.unwrap();
    let running = list.items.iter().filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(SeiNodePhase::Running)).count();
    assert!(running < names.len(), "the leader must die mid-plan, not after");
    a.signal(libc::SIGKILL);
    a.wait_exit(Duration::from_secs(10)).await.unwrap();
    b.wait_for_log("became the leader", Duration::from_secs(60)).await.unwrap();

    let all_running = eventually("20 nodes Running under the new leader", Duration::from_secs(180), || async {
        let list = nodes.list(&ListParams::default()).await.ok()?;
        (list.items.len() == names.len()
            && list.items.iter().all(|n| n.status.as_ref().and_then(|s| s.phase) == Some(SeiNodePhase::Running)))
        .then_some(list.items)
    })
    .await;
    let finished = all_running.unwrap_or_else(|e| panic!("{e}\nnew leader's log:\n{}", b.log_tail(40)));

    // Nothing ran twice: every sidecar task was submitted under exactly one id (the plan's) and
    // ran once.
    for n in &finished {
        let name = n.metadata.name.clone().unwrap();
        let plan = n.status.as_ref().unwrap().plan.as_ref().unwrap();
        let node_sidecar = sidecar.node(ns.name(), &name);
        let submitted = node_sidecar.submitted();
        let mut by_type: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for r in &submitted {
            by_type.entry(r.task_type.as_str()).or_default().push(r.id.as_str());
        }
        for (task_type, ids) in &by_type {
            assert_eq!(ids.len(), 1, "{name}: sidecar task {task_type} submitted under several ids: {ids:?}");
            let planned = plan.tasks.iter().find(|t| t.task_type == *task_type).map(|t| t.id.as_str());
            assert_eq!(planned, Some(ids[0]), "{name}: {task_type} was submitted under the plan's task id");
            assert_eq!(node_sidecar.runs(ids[0]), 1, "{name}: {task_type} ran more than once");
        }
        assert!(by_type.contains_key("config-apply"), "{name}: the sidecar saw the plan's tasks: {by_type:?}");
    }

    // SIGTERM: the leader stops, releases the Lease, exits 0; a fresh standby, watching the
    // Lease, takes it on that change (not on its timer), and writes nothing before the old
    // leader's last write.
    let mut c = ControllerProcess::start(cluster, &replica("replica-c")).unwrap();
    c.wait_for_log("standing by for the leader Lease", Duration::from_secs(60)).await.unwrap();
    b.signal(libc::SIGTERM);
    let status = b.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "the old leader exits 0 on SIGTERM: {status}\n{}", b.log_tail(20));
    assert!(b.logged("released the leader Lease"), "{}", b.log_tail(20));
    c.wait_for_log("became the leader", Duration::from_secs(30)).await.unwrap();
    assert!(c.logged("after=\"a change of the Lease\""), "taken through the watch: {}", c.log_tail(10));
    c.wait_for_log("first reconcile of this replica", Duration::from_secs(30)).await.unwrap();
    assert!(holder(&client).await.is_some_and(|h| h.starts_with("replica-c_")));
    drive_one_more(&nodes, "after-c").await;
    writes_in_order(cluster, "replica-b", "replica-c");

    // The Lease deleted under the leader: it stops at once and exits non-zero; a standby waits a
    // whole lease duration before it creates the Lease anew.
    let mut d = ControllerProcess::start(cluster, &replica("replica-d")).unwrap();
    d.wait_for_log("standing by for the leader Lease", Duration::from_secs(60)).await.unwrap();
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = Api::namespaced(client.clone(), CONTROLLER_NAMESPACE);
    leases.delete(LEASE_NAME, &Default::default()).await.unwrap();
    let status = c.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(!status.success(), "a replica whose Lease was deleted exits non-zero: {status}");
    assert!(c.logged("the Lease was deleted") && c.logged("lost the leader Lease"), "{}", c.log_tail(20));
    d.wait_for_log("became the leader", Duration::from_secs(30)).await.unwrap();
    assert!(d.logged("after=\"the holder's time ran out\""), "a missing Lease is created only after a lease duration: {}", d.log_tail(10));
    d.wait_for_log("first reconcile of this replica", Duration::from_secs(30)).await.unwrap();
    drive_one_more(&nodes, "after-d").await;
    writes_in_order(cluster, "replica-c", "replica-d");

    // A leader that finds the Lease taken stops reconciling at once and exits non-zero.
    let now = serde_json::to_value(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(k8s_openapi::jiff::Timestamp::now())).unwrap();
    let usurp = json!({"spec": {"holderIdentity": "usurper", "renewTime": now, "acquireTime": now, "leaseDurationSeconds": 60}});
    leases.patch(LEASE_NAME, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&usurp)).await.unwrap();
    let status = d.wait_exit(Duration::from_secs(30)).await.unwrap();
    assert!(!status.success(), "a replica that lost the Lease exits non-zero: {status}");
    assert!(d.logged("the Lease was taken or cleared") && d.logged("lost the leader Lease"), "{}", d.log_tail(20));
}

/// A new node, driven to Running by the current leader (so that it writes).
async fn drive_one_more(nodes: &Api<SeiNode>, name: &str) {
    nodes.create(&PostParams::default(), &node(name)).await.unwrap();
    eventually(&format!("{name} Running"), Duration::from_secs(120), || async {
        (nodes.get(name).await.ok()?.status?.phase == Some(SeiNodePhase::Running)).then_some(())
    })
    .await
    .unwrap();
}

/// Every write (but the Lease's) `before` made reached the API server before the first write
/// `after` made: the two never acted at once. Replicas name themselves in their user agent.
fn writes_in_order(cluster: &TestCluster, before: &str, after: &str) {
    let writes = |replica: &str| {
        let tag = format!("({replica}_");
        let mut at: Vec<String> = cluster
            .audit_events(|e| {
                e.user_agent.contains(&tag) && matches!(e.verb.as_str(), "create" | "update" | "patch" | "delete") && e.resource != "leases"
            })
            .into_iter()
            .map(|e| e.received)
            .collect();
        at.sort();
        at
    };
    let (b, a) = (writes(before), writes(after));
    assert!(!b.is_empty() && !a.is_empty(), "both replicas wrote: {before} {}, {after} {}", b.len(), a.len());
    assert!(b.last() < a.first(), "{before} wrote at {:?}, after {after} began writing at {:?}", b.last(), a.first());
}
