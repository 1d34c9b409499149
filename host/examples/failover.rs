//! Leader fail-over and hand-over times of `sei-operator` replicas (BENCHMARKS.md).
//!
//! Two controller processes run as the Helm chart's ServiceAccount against the real test control
//! plane, leader election on, with `NODES` SeiNodes Running. Each round starts a fresh standby,
//! waits until it stands by, then stops the leader and measures until the standby logs its first
//! reconcile:
//! - `SIGKILL` (fail-over): the Lease must expire on the standby's clock first;
//! - `SIGTERM` (hand-over): the leader finishes its reconciles, releases the Lease, and the
//!   standby, watching the Lease, takes it at once.
//!
//! Both with the chart's Lease settings (15 s / 10 s / 2 s) and with short ones (4 s / 3 s / 1 s).
//! Prints median and max per case. The instant of the log line is seen by polling the log every
//! 5 ms, so figures are at most 5 ms late.
//!
//! `make bench-failover` (`cargo build --release -p sei-operator --bin sei-operator` then
//! `cargo run --release -p sei-operator --example failover`). `SEI_OPERATOR_BIN` overrides the
//! binary (default: `sei-operator` next to this example's directory).

use kube::api::{Api, ListParams, PostParams};
use sei_operator::api::seinode::{SeiNode, SeiNodePhase};
use sei_test_sidecar::TestSidecar;
use sei_testkit::controllers::{ControllerProcess, LeaseTiming, Replica};
use sei_testkit::{TestCluster, eventually};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const NODES: usize = 20;
const ROUNDS: usize = 5;

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SEI_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("this example's path");
    exe.parent().and_then(|examples| examples.parent()).expect("target/<profile>/examples").join("sei-operator")
}

fn node(name: &str) -> SeiNode {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name},
        "spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}, "peers": [{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]}
    }))
    .expect("node")
}

fn summary(name: &str, timing: LeaseTiming, mut samples: Vec<Duration>) {
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<10} lease {}s / renew {}s / retry {}s: median {:>8.1} ms  max {:>8.1} ms  ({} rounds: {})",
        timing.duration,
        timing.renew_deadline,
        timing.retry_period,
        ms(samples[samples.len() / 2]),
        ms(samples[samples.len() - 1]),
        samples.len(),
        samples.iter().map(|d| format!("{:.0}", ms(*d))).collect::<Vec<_>>().join(", ")
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let exe = binary();
    assert!(exe.exists(), "{} not found: build it first (cargo build --release -p sei-operator --bin sei-operator)", exe.display());
    let cluster = TestCluster::shared();
    cluster.install_crds(&sei_operator::crds::all()).await.expect("CRDs");
    let client = cluster.client().await;
    let kubeconfig = cluster.controller_kubeconfig().await;
    let sidecar = TestSidecar::start(0).await.expect("test sidecar");
    let template = sidecar.url_template();

    for timing in [LeaseTiming::FAST, LeaseTiming::CHART] {
        for (case, signal) in [("SIGTERM", libc::SIGTERM), ("SIGKILL", libc::SIGKILL)] {
            let ns = cluster.namespace(&format!("failover-{}-{}", case.to_lowercase(), timing.duration)).await;
            let mut serial = 0;
            let start = |serial: &mut usize| {
                *serial += 1;
                let id = format!("r{serial}");
                let replica = Replica {
                    exe: &exe,
                    id: &id,
                    kubeconfig: &kubeconfig,
                    timing: Some(timing),
                    sidecar_template: &template,
                    namespace: ns.name(),
                    extra: &[],
                    env: &[],
                };
                ControllerProcess::start(cluster, &replica).expect("controller process")
            };
            let mut leader = start(&mut serial);
            leader.wait_for_log("became the leader", Duration::from_secs(60)).await.expect("the first replica leads");
            let nodes: Api<SeiNode> = Api::namespaced(client.clone(), ns.name());
            for i in 0..NODES {
                nodes.create(&PostParams::default(), &node(&format!("n{i:02}"))).await.expect("create node");
            }
            eventually("every node Running", Duration::from_secs(300), || async {
                let list = nodes.list(&ListParams::default()).await.ok()?;
                list.items.iter().all(|n| n.status.as_ref().and_then(|s| s.phase) == Some(SeiNodePhase::Running)).then_some(())
            })
            .await
            .expect("nodes Running");
            let mut samples = Vec::new();
            for _ in 0..ROUNDS {
                let mut standby = start(&mut serial);
                standby.wait_for_log("standing by for the leader Lease", Duration::from_secs(60)).await.expect("standby");
                // Warm: its TaskModules are loaded and it is ready.
                eventually("the standby ready", Duration::from_secs(60), || async {
                    let r = reqwest::get(format!("http://{}/readyz", standby.metrics_addr)).await.ok()?;
                    r.status().is_success().then_some(())
                })
                .await
                .expect("standby ready");
                let stopped = Instant::now();
                leader.signal(signal);
                let took_over = standby.wait_for_log("first reconcile of this replica", Duration::from_secs(120)).await.expect("take-over");
                samples.push(took_over - stopped);
                leader.wait_exit(Duration::from_secs(60)).await.expect("old leader exits");
                leader = standby;
            }
            summary(case, timing, samples);
        }
    }
}
