//! The API server and etcd crash mid-plan (issue #14): ten SeiNodes of four modes are part-way
//! through their plans when kube-apiserver is killed (SIGKILL) and started again on the same
//! port and data, and later etcd likewise. The controller's watches recover on their own, no
//! plan is built twice, and every node reaches Running. The test prints how long the API server
//! took to answer again and how long after that the controller wrote again (`BENCHMARKS.md`).
//! A control plane of its own: the outage must not reach other tests.

mod common;

use kube::api::{Api, PostParams};
use sei_operator::adapters::sidecar::Script;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase, TaskStatus};
use sei_operator::node::{Context, SidecarResolver};
use sei_operator::platform::PlatformConfig;
use sei_test_sidecar::TestSidecar;
use sei_testkit::identity::{CONTROLLER_ACCOUNT, CONTROLLER_NAMESPACE};
use sei_testkit::{TestCluster, eventually};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(240);
/// From the second crash to every node Running: about 110 s here (sidecar tasks of several
/// 5-second polls), so a slower machine has three times that.
const ALL_RUNNING_DEADLINE: Duration = Duration::from_secs(360);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_and_etcd_crash_mid_plan_and_every_node_still_reaches_running() {
    let cluster = Arc::new(tokio::task::spawn_blocking(TestCluster::start).await.unwrap().expect("a control plane of its own"));
    cluster.install_crds(&sei_operator::crds::all()).await.unwrap();
    let ns = "restarts";
    let admin = cluster.client().await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(admin.clone());
    namespaces.create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap()).await.unwrap();
    let sidecar = TestSidecar::start(0).await.unwrap();
    for t in common::sidecar_task_types() {
        sidecar.script(t, Script::CompleteAfter(3));
    }
    // No node finishes before both crashes: the last task waits until they are over.
    sidecar.script("mark-ready", Script::Stall);
    let client = cluster.controller_client().await;
    let (sandbox, registry) = common::builtins().await;
    let ctx =
        Context::builder(client, sandbox, registry, PlatformConfig::for_local(), SidecarResolver::Template(sidecar.url_template())).build();
    let controller = tokio::spawn(sei_operator::node::run(ctx, 8, Some(ns.to_string())));

    let nodes: Api<SeiNode> = Api::namespaced(admin.clone(), ns);
    let t0 = Instant::now();
    let (seen, recorder) = common::record_nodes(nodes.clone());
    for i in 0..10 {
        nodes.create(&PostParams::default(), &common::mixed_node(i)).await.unwrap();
    }
    let mid_plan = || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        let started = list
            .items
            .iter()
            .filter(|n| {
                n.status.as_ref().and_then(|s| s.plan.as_ref()).is_some_and(|p| p.tasks.iter().any(|t| t.status == TaskStatus::Complete))
            })
            .count();
        let running = list.items.iter().filter(|n| n.status.as_ref().and_then(|s| s.phase) == Some(SeiNodePhase::Running)).count();
        (started >= 5 && running == 0).then_some(())
    };

    let mut report = Vec::new();
    for process in ["kube-apiserver", "etcd"] {
        eventually(&format!("plans part-way before {process} crashes"), DEADLINE, mid_plan).await.unwrap();
        let took = cluster.restart(process).await.unwrap();
        let ready = Instant::now();
        // The controller writes again on its own: a node's new resourceVersion after the API
        // answered (a relist of unchanged nodes does not count).
        let resumed = eventually(&format!("a controller write after {process} came back"), DEADLINE, || async {
            seen.lock().unwrap().writes.iter().find(|w| **w > ready).copied()
        })
        .await
        .unwrap();
        report.push(format!(
            "{process}: killed {:.1} s after the nodes were created and answering again in {} ms; the controller wrote again {} ms later",
            (ready - took).duration_since(t0).as_secs_f64(),
            took.as_millis(),
            resumed.duration_since(ready).as_millis()
        ));
    }

    // Until its RBAC caches have synced a restarted kube-apiserver refuses every request; a
    // module's host call refused then waits (`kube_error` in host/src/sandbox/host.rs), so the
    // refusals are only reported.
    let me = format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_ACCOUNT}");
    let refusals: Vec<String> = cluster
        .audit_events(|e| e.user == me && (e.code == 401 || e.code == 403))
        .iter()
        .map(|e| format!("{} {} {} {}", e.code, e.verb, e.resource, e.name))
        .collect();
    report.push(format!("the API server refused the controller {} times {refusals:?}", refusals.len()));
    sidecar.script("mark-ready", Script::CompleteAfter(1));
    let all_running = eventually("every node Running after both crashes", ALL_RUNNING_DEADLINE, || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        (list.items.len() == 10 && list.items.iter().all(|n| n.status.as_ref().and_then(|s| s.phase) == Some(SeiNodePhase::Running)))
            .then_some(list.items)
    })
    .await;
    let all_running = match all_running {
        Ok(items) => items,
        Err(e) => {
            let list = nodes.list(&Default::default()).await.map(|l| l.items).unwrap_or_default();
            panic!("{e}; {}\nthe nodes:\n{}", report.join("; "), common::describe_nodes(&list));
        }
    };
    for line in &report {
        println!("{line}");
    }
    println!("every node Running {:.1} s after the nodes were created", t0.elapsed().as_secs_f64());
    let plans = seen.lock().unwrap().plans.clone();
    for n in &all_running {
        let name = n.metadata.name.clone().unwrap_or_default();
        let last = n.status.as_ref().and_then(|s| s.plan.as_ref()).map(|p| p.id.clone()).unwrap_or_default();
        assert_eq!(plans.get(&name), Some(&BTreeSet::from([last])), "{name}: a plan was built again");
    }
    controller.abort();
    recorder.abort();
    let cluster = Arc::try_unwrap(cluster).ok();
    tokio::task::spawn_blocking(move || drop(cluster)).await.unwrap();
}
