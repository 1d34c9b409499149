//! Sidecar faults (issue #14), one node each, beside healthy nodes, on the real control plane:
//! a sidecar that is down (503) for `SEI_FAULT_DOWN_SECONDS` (15 in CI; `make sidecar-faults`
//! runs the 60), one that never answers (the client's 10 s timeout ends each request), one
//! that serves requests but answers garbage, one that answers 2 MiB, one that loses a submitted
//! task, and four slow ones (every answer 5 s late).
//!
//! What must hold: the healthy nodes reach Running while the faulty and the slow ones are still
//! on their way (a bad or slow sidecar holds up nobody else); a faulty node's task waits as `unavailable` and spends none of
//! its retry budget; the lost task is submitted again under the same id; once the faults end,
//! every node reaches Running.

mod common;

use kube::api::{Api, PostParams};
use sei_operator::adapters::sidecar::Script;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase};
use sei_operator::node::{Context, SidecarResolver};
use sei_operator::platform::PlatformConfig;
use sei_test_sidecar::{Fault, TestSidecar};
use sei_testkit::{TestCluster, eventually};
use serde_json::json;
use std::time::{Duration, Instant};

const DEADLINE: Duration = Duration::from_secs(240);

fn node(name: &str) -> SeiNode {
    serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name},
        "spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {"snapshot": {"stateSync": {}}},
                 "peers": [{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]}
    }))
    .unwrap()
}

fn phase(n: &SeiNode) -> Option<SeiNodePhase> {
    n.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_faulty_sidecar_stalls_only_its_node_and_spends_no_retry_budget() {
    let down_for = Duration::from_secs(std::env::var("SEI_FAULT_DOWN_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15));
    let cluster = TestCluster::shared();
    cluster.install_crds(&sei_operator::crds::all()).await.unwrap();
    let ns = cluster.namespace("faults").await;
    let admin = cluster.client().await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    sidecar.script("configure-state-sync", Script::CompleteAfter(3));
    let faulty = [("down", Fault::Down), ("hang", Fault::Hang), ("garbage", Fault::Garbage), ("big", Fault::Oversized)];
    for (name, fault) in &faulty {
        sidecar.fault(ns.name(), name, Some(fault.clone()));
    }
    let slow: Vec<String> = (0..4).map(|i| format!("slow-{i}")).collect();
    for name in &slow {
        sidecar.fault(ns.name(), name, Some(Fault::Slow(Duration::from_secs(5))));
    }
    let healthy: Vec<String> = (0..4).map(|i| format!("ok-{i}")).collect();

    let client = cluster.controller_client().await;
    let (sandbox, registry) = common::builtins().await;
    let ctx =
        Context::builder(client, sandbox, registry, PlatformConfig::for_local(), SidecarResolver::Template(sidecar.url_template())).build();
    let controller = tokio::spawn(sei_operator::node::run(ctx, 8, Some(ns.name().to_string())));

    let nodes: Api<SeiNode> = Api::namespaced(admin.clone(), ns.name());
    let started = Instant::now();
    let names: Vec<String> =
        faulty.iter().map(|(n, _)| n.to_string()).chain(["lost".to_string()]).chain(slow.clone()).chain(healthy.clone()).collect();
    for name in &names {
        nodes.create(&PostParams::default(), &node(name)).await.unwrap();
    }

    // The lost task: once the sidecar has it, it forgets it (as a sidecar restarted without its
    // database would).
    let lost = eventually("lost's configure-state-sync submitted", DEADLINE, || async {
        sidecar.node(ns.name(), "lost").submitted().into_iter().find(|r| r.task_type == "configure-state-sync").map(|r| r.id)
    })
    .await
    .unwrap();
    sidecar.node(ns.name(), "lost").forget(&lost);

    // The healthy nodes run while the faulty ones are stuck.
    eventually("the healthy nodes Running", DEADLINE, || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        healthy
            .iter()
            .all(|h| list.items.iter().any(|n| n.metadata.name.as_ref() == Some(h) && phase(n) == Some(SeiNodePhase::Running)))
            .then_some(())
    })
    .await
    .unwrap();
    let healthy_after = started.elapsed();
    // Four slow sidecars (5 s an answer) hold up nobody else: the healthy nodes ran first.
    for name in &slow {
        assert_ne!(phase(&nodes.get(name).await.unwrap()), Some(SeiNodePhase::Running), "{name} ran before the healthy nodes");
    }
    for (name, _) in &faulty {
        let n = nodes.get(name).await.unwrap();
        assert_ne!(phase(&n), Some(SeiNodePhase::Running), "{name} ran although its sidecar is faulty");
        let plan = n.status.as_ref().and_then(|s| s.plan.clone()).expect("a plan");
        let waiting = plan.tasks.iter().find(|t| t.message.as_deref().is_some_and(|m| m.starts_with("waiting:")));
        assert!(waiting.is_some(), "{name}: a task waits as unavailable: {:?}", plan.tasks);
    }

    // The faults last their time, then end.
    if let Some(rest) = down_for.checked_sub(started.elapsed()) {
        // The outage's length is the test's input, not a wait for a condition.
        tokio::time::sleep(rest).await;
    }
    for (name, _) in &faulty {
        sidecar.fault(ns.name(), name, None);
    }
    let all = eventually("every node Running once the faults end", DEADLINE, || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        (list.items.len() == names.len() && list.items.iter().all(|n| phase(n) == Some(SeiNodePhase::Running))).then_some(list.items)
    })
    .await
    .unwrap();
    println!(
        "healthy nodes Running after {:.1} s while 4 sidecars were faulty and 4 slow (5 s an answer); all Running {:.1} s after the faults ended at {:.1} s",
        healthy_after.as_secs_f64(),
        started.elapsed().as_secs_f64() - down_for.as_secs_f64().max(healthy_after.as_secs_f64()),
        down_for.as_secs_f64().max(healthy_after.as_secs_f64())
    );
    for n in &all {
        let name = n.metadata.name.clone().unwrap_or_default();
        let plan = n.status.as_ref().and_then(|s| s.plan.clone()).unwrap();
        assert!(plan.tasks.iter().all(|t| t.retry_count == 0), "{name} spent retry budget on a sidecar fault: {:?}", plan.tasks);
    }
    // The lost task went again under the same id, and ran (again) once it was known.
    let lost_sidecar = sidecar.node(ns.name(), "lost");
    let ids: Vec<String> = lost_sidecar.submitted().into_iter().filter(|r| r.task_type == "configure-state-sync").map(|r| r.id).collect();
    assert_eq!(ids, std::slice::from_ref(&lost), "resubmitted under the same id");
    assert_eq!(lost_sidecar.runs(&lost), 1, "known once more after it was lost (the sidecar's record restarts at its resubmission)");
    controller.abort();
}
