//! Hostile modules in a real controller against the real API server (issue #9): one module, the
//! misbehaving test guest, serves `config-apply` for every node of a test; the node's annotation
//! `test.sei.io/misbehave` picks what its step does (`ok` for the well-behaved nodes). Each test
//! asserts that the hostile node fails (or is held to the floor) alone, that the other nodes reach
//! Running meanwhile, and measures what the hostile steps cost: the controller's memory, and what
//! reached the API server (from its audit log).

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use sei_operator::api::seinode::{SeiNode, SeiNodePhase, TaskStatus};
use sei_operator::embedded::test_guest_path;
use sei_operator::node::{Context, MIN_REQUEUE, SidecarResolver, run};
use sei_operator::platform::PlatformConfig;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::registry::{ModuleEntry, ModuleSource, TaskRegistry};
use sei_operator::sandbox::{ModuleGrant, Sandbox, SandboxConfig};
use sei_test_sidecar::TestSidecar;
use sei_testkit::{AuditEvent, TestCluster, TestNamespace, eventually};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    ns: TestNamespace,
    nodes: Api<SeiNode>,
    ctx: Arc<Context>,
    _sidecar: TestSidecar,
}

/// A namespace, a test sidecar and a controller whose `config-apply` is the misbehaving guest.
async fn harness(prefix: &str) -> Harness {
    let cluster = TestCluster::shared();
    cluster.install_crds(&[sei_operator::crds::seinode()]).await.unwrap();
    let ns = cluster.namespace(prefix).await;
    let client = cluster.client().await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox).await.unwrap();
    let wasm = std::fs::read(test_guest_path("test-misbehaving")).unwrap();
    let mut grant = ModuleGrant::new(Grants::new([CapabilityName::KubeRead]));
    grant.task_types = Some(vec!["config-apply".into()]);
    let hostile = sandbox.load_module(&wasm, grant).await.unwrap();
    registry.install(&["config-apply".into()], ModuleEntry::new(ModuleSource::Directory { path: "hostile.wasm".into() }, hostile));
    let ctx = Context::builder(
        cluster.controller_client().await,
        sandbox,
        registry,
        PlatformConfig::for_local(),
        SidecarResolver::Template(sidecar.url_template()),
    )
    .build();
    tokio::spawn(run(ctx.clone(), 4, Some(ns.name().to_string())));
    Harness { nodes: Api::namespaced(client, ns.name()), ns, ctx, _sidecar: sidecar }
}

fn node(name: &str, misbehave: &str) -> SeiNode {
    serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
        "metadata": {"name": name, "annotations": {"test.sei.io/misbehave": misbehave}},
        "spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}}
    }))
    .unwrap()
}

async fn wait_phase(h: &Harness, name: &str, phase: SeiNodePhase) -> SeiNode {
    let got = eventually(&format!("SeiNode {name} to be {phase:?}"), Duration::from_secs(120), || async {
        let n = h.nodes.get(name).await.ok()?;
        (n.status.as_ref()?.phase == Some(phase)).then_some(n)
    })
    .await;
    match got {
        Ok(n) => n,
        Err(e) => {
            let status = h.nodes.get(name).await.ok().and_then(|n| n.status);
            panic!("{e}; status now: {}", serde_json::to_string_pretty(&status).unwrap_or_default())
        }
    }
}

/// The controller's resident memory (this test process), in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// The status writes (PUTs of the status subresource) of one node, in order.
fn status_writes(ns: &str, name: &str) -> Vec<AuditEvent> {
    TestCluster::shared().audit_events(|e| {
        e.verb == "update" && e.resource == "seinodes" && e.subresource == "status" && e.namespace == ns && e.name == name
    })
}

fn at(e: &AuditEvent) -> Timestamp {
    e.received.parse().unwrap_or_else(|err| panic!("audit timestamp {:?}: {err}", e.received))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_storm_fails_its_node_alone_and_memory_stays_bounded() {
    let h = harness("hostile-log").await;
    for good in ["good-a", "good-b"] {
        h.nodes.create(&PostParams::default(), &node(good, "ok")).await.unwrap();
    }
    wait_phase(&h, "good-a", SeiNodePhase::Running).await;
    let baseline = rss();
    let peak = Arc::new(std::sync::atomic::AtomicU64::new(baseline));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    h.nodes.create(&PostParams::default(), &node("storm", "log-storm")).await.unwrap();
    h.nodes.create(&PostParams::default(), &node("good-c", "ok")).await.unwrap();
    let storm = wait_phase(&h, "storm", SeiNodePhase::Failed).await;
    for good in ["good-b", "good-c"] {
        wait_phase(&h, good, SeiNodePhase::Running).await;
    }
    sampler.abort();
    let detail = storm.status.unwrap().plan.unwrap().failed_task_detail.unwrap();
    assert_eq!(detail.task_type, "config-apply");
    assert!(detail.error.contains("the step made more than 10000 log calls, its per-step budget"), "{}", detail.error);
    let grew = peak.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(baseline);
    assert!(grew < 48 << 20, "the controller grew by {} MiB during the log storm", grew >> 20);
    let budgets = h.ctx.sandbox().metrics().budget_counts();
    assert!(budgets.iter().any(|((_, b), n)| *b == "log-calls" && *n >= 1), "{budgets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_call_flood_reaches_the_api_server_at_most_the_budget() {
    let h = harness("hostile-flood").await;
    h.nodes.create(&PostParams::default(), &node("flood", "call-flood")).await.unwrap();
    h.nodes.create(&PostParams::default(), &node("good", "ok")).await.unwrap();
    let flood = wait_phase(&h, "flood", SeiNodePhase::Failed).await;
    wait_phase(&h, "good", SeiNodePhase::Running).await;
    let plan = flood.status.unwrap().plan.unwrap();
    let detail = plan.failed_task_detail.unwrap();
    assert!(detail.error.contains("the step made more than 64 kube and sidecar calls, its per-step budget"), "{}", detail.error);
    assert_eq!(plan.tasks.iter().find(|t| t.task_type == "config-apply").unwrap().status, TaskStatus::Failed);
    // One step ran (a budget failure is not retried), and the API server saw the budget of GETs.
    let gets = TestCluster::shared()
        .audit_events(|e| e.verb == "get" && e.resource == "configmaps" && e.namespace == h.ns.name() && e.name == "peers");
    assert_eq!(gets.len(), 64, "GETs of the flooded ConfigMap that reached the API server");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requeue_storm_is_floored_and_an_honest_sub_second_poll_is_honoured() {
    let h = harness("hostile-requeue").await;
    h.nodes.create(&PostParams::default(), &node("storm", "requeue-storm")).await.unwrap();
    h.nodes.create(&PostParams::default(), &node("honest", "poll-500")).await.unwrap();
    h.nodes.create(&PostParams::default(), &node("good", "ok")).await.unwrap();
    wait_phase(&h, "honest", SeiNodePhase::Running).await;
    wait_phase(&h, "good", SeiNodePhase::Running).await;
    let ns = h.ns.name();

    // The honest node's five polls: each step waited its 500 ms, never less (a status write does
    // not wake a step early) and not rounded up to seconds.
    let honest = status_writes(ns, "honest");
    let polls: Vec<Timestamp> = honest.iter().map(at).collect();
    assert!(polls.len() >= 7, "plan persisted, infrastructure, five polls and the rest: {} writes", polls.len());
    let plan = h.nodes.get("honest").await.unwrap().status.unwrap().plan.unwrap();
    let config_apply = plan.tasks.iter().find(|t| t.task_type == "config-apply").unwrap();
    assert_eq!(config_apply.status, TaskStatus::Complete);
    // The writes between the first pending step and its completion are 500 ms apart.
    let gaps: Vec<i64> = polls.windows(2).map(|w| w[1].as_millisecond() - w[0].as_millisecond()).collect();
    let paced: Vec<i64> = gaps.iter().copied().filter(|g| (450..1500).contains(g)).collect();
    assert!(paced.len() >= 5, "five polls about 500 ms apart, found gaps {gaps:?} ms");

    // The storm node asked for 0 ms: it is held to the floor, in steps and in status writes.
    let window = (polls[polls.len() - 1].as_millisecond() - polls[0].as_millisecond()).max(1);
    let storm: Vec<AuditEvent> = status_writes(ns, "storm");
    let in_window = storm.iter().filter(|e| at(e) >= polls[0] && at(e) <= polls[polls.len() - 1]).count() as i64;
    let floor_ms = MIN_REQUEUE.as_millis() as i64;
    eprintln!("honest gaps {gaps:?} ms; storm: {in_window} status writes in {window} ms");
    assert!(
        in_window <= window / floor_ms + 3,
        "{in_window} status writes of the storm node in {window} ms (floor {floor_ms} ms: at most {})",
        window / floor_ms + 3
    );
    let n = h.nodes.get("storm").await.unwrap().status.unwrap();
    assert_eq!(n.phase, Some(SeiNodePhase::Initializing), "the storm node keeps polling, alone");
}
