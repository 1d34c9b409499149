//! The scale benchmark (issue #15, `make bench-scale N=1000`; figures in BENCHMARKS.md).
//!
//! A fresh test control plane (etcd, kube-apiserver, kube-controller-manager built from Go
//! modules), the test sidecar, and the release `sei-operator` binary as a separate process, run as
//! the Helm chart's ServiceAccount under the chart's RBAC. `N` SeiNodes of mixed modes (state-sync
//! full nodes, archive nodes, replayers, genesis validators; the sidecar completes each task after
//! two polls) are created at once (64 creates in flight), and the benchmark prints:
//! - time until every node is Running, nodes per second, each node's time from its creation to
//!   Running (p50, p99, max: a node that waits behind a burst of others shows in the p99);
//! - each node's wait between its plan being persisted and its first step (the audit log's
//!   status write and the controller's next request on that node);
//! - the controller's peak RSS (`VmHWM`) and CPU seconds, the API server's and etcd's CPU seconds;
//! - the controller's API requests by verb and resource, per node, its status writes per node and
//!   its conflicts (409): from the API server's audit log, filtered to the controller's user, so
//!   the benchmark's own requests and the test StatefulSet faker's are not counted;
//! - the same for a steady window afterwards (`STEADY` seconds, default 60) with nothing changing:
//!   requests per node per minute and CPU.
//!
//! `cargo build --release -p sei-operator --bin sei-operator --example scale` then
//! `target/release/examples/scale N [STEADY]`. `SEI_OPERATOR_BIN` overrides the binary; extra
//! controller arguments go in `SEI_SCALE_ARGS` (space separated, e.g. `--concurrency=16`).

#[path = "../tests/common/mod.rs"]
mod common;

use futures::StreamExt;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::watcher;
use sei_operator::adapters::sidecar::Script;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase};
use sei_test_sidecar::TestSidecar;
use sei_testkit::controllers::{ControllerProcess, Replica};
use sei_testkit::identity::{CONTROLLER_ACCOUNT, CONTROLLER_NAMESPACE};
use sei_testkit::{AuditEvent, TestCluster, eventually};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAMESPACE: &str = "scale";

fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("SEI_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("this example's path");
    exe.parent().and_then(|examples| examples.parent()).expect("target/<profile>/examples").join("sei-operator")
}

/// RSS now (MiB).
fn rss(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

/// (user + system) CPU seconds and peak RSS (MiB) of a process.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, r)| r.split_whitespace().collect()).unwrap_or_default();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 (1-based), that is 11 and 12 after the command.
    let cpu = (ticks(11) + ticks(12)) / 100.0;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Requests by `verb resource[/subresource]`, most first.
fn by_kind(events: &[&AuditEvent]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for e in events {
        let resource = if e.resource.is_empty() {
            "(discovery)".to_string()
        } else if e.subresource.is_empty() {
            e.resource.clone()
        } else {
            format!("{}/{}", e.resource, e.subresource)
        };
        *counts.entry(format!("{} {resource}", e.verb)).or_default() += 1;
    }
    let mut v: Vec<_> = counts.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

fn print_requests(what: &str, events: &[&AuditEvent], nodes: usize, per_minute: Option<f64>) {
    let total = events.len();
    let per_node = total as f64 / nodes as f64;
    match per_minute {
        Some(minutes) => println!("{what}: {total} requests, {:.3} per node per minute", per_node / minutes),
        None => println!("{what}: {total} requests, {per_node:.2} per node"),
    }
    for (kind, n) in by_kind(events) {
        println!("    {kind:<40} {n:>8}  {:>7.2} per node", n as f64 / nodes as f64);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let steady = Duration::from_secs(args.next().and_then(|a| a.parse().ok()).unwrap_or(60));
    let exe = binary();
    assert!(exe.exists(), "{} not found: build it first (cargo build --release -p sei-operator --bin sei-operator)", exe.display());

    let cluster = TestCluster::shared();
    cluster.install_crds(&sei_operator::crds::all()).await.expect("CRDs");
    let client = cluster.client().await;
    let kubeconfig = cluster.controller_kubeconfig().await;
    let sidecar = TestSidecar::start(0).await.expect("test sidecar");
    for t in common::sidecar_task_types() {
        sidecar.script(t, Script::CompleteAfter(2));
    }
    let ns = cluster.namespace(NAMESPACE).await;
    let controller_user = format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_ACCOUNT}");

    let extra: Vec<String> = std::env::var("SEI_SCALE_ARGS").unwrap_or_default().split_whitespace().map(String::from).collect();
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    let template = sidecar.url_template();
    let replica = Replica {
        exe: &exe,
        id: "scale",
        kubeconfig: &kubeconfig,
        timing: None,
        sidecar_template: &template,
        namespace: ns.name(),
        extra: &extra,
        env: &[("SEI_LOG", "warn")],
    };
    let controller = ControllerProcess::start(cluster, &replica).expect("controller process");
    eventually("the controller ready", Duration::from_secs(120), || async {
        let r = reqwest::get(format!("http://{}/readyz", controller.metrics_addr)).await.ok()?;
        r.status().is_success().then_some(())
    })
    .await
    .expect("controller ready");
    let pid = controller.pid();
    let idle_rss = rss(pid);
    let plane: HashMap<String, u32> = cluster.pids().into_iter().collect();
    let cpu_of = |name: &str| plane.get(name).map(|p| usage(*p).0).unwrap_or(0.0);
    let (controller_cpu0, _) = usage(pid);
    let (apiserver_cpu0, etcd_cpu0) = (cpu_of("kube-apiserver"), cpu_of("etcd"));

    // When each node was first seen Running, from a watch.
    let nodes: Api<SeiNode> = Api::namespaced(client.clone(), ns.name());
    let running: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let recorder = {
        let running = running.clone();
        let nodes = nodes.clone();
        tokio::spawn(async move {
            use kube::runtime::WatchStreamExt;
            let mut events = std::pin::pin!(watcher(nodes, watcher::Config::default()).default_backoff().applied_objects());
            while let Some(event) = events.next().await {
                if let Ok(node) = event
                    && node.status.as_ref().and_then(|s| s.phase) == Some(SeiNodePhase::Running)
                {
                    running
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .entry(node.metadata.name.clone().unwrap_or_default())
                        .or_insert_with(Instant::now);
                }
            }
        })
    };

    println!("scale: {n} SeiNodes (mixed modes), controller {} {}", exe.display(), extra.join(" "));
    let started = Instant::now();
    let created: Vec<(String, Instant, Timestamp)> = futures::stream::iter(0..n)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let node = common::mixed_node(i);
                let name = node.metadata.name.clone().unwrap_or_default();
                for attempt in 0..10 {
                    match nodes.create(&PostParams::default(), &node).await {
                        Ok(_) => break,
                        Err(e) if attempt < 9 => eprintln!("create {name}: {e}; retrying"),
                        Err(e) => panic!("create {name}: {e}"),
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                (name, Instant::now(), Timestamp::now())
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let all_created = started.elapsed();
    let deadline = Duration::from_secs(300) + Duration::from_millis(200) * n as u32;
    eventually("every node Running", deadline, || async { (running.lock().unwrap_or_else(|p| p.into_inner()).len() >= n).then_some(()) })
        .await
        .expect("every node Running");
    let all_running = started.elapsed();
    let run_end = chrono_now();
    let (controller_cpu1, controller_rss1) = usage(pid);
    let (apiserver_cpu1, etcd_cpu1) = (cpu_of("kube-apiserver"), cpu_of("etcd"));

    let times = running.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut latency: Vec<Duration> =
        created.iter().filter_map(|(name, at, _)| times.get(name).map(|r| r.saturating_duration_since(*at))).collect();
    latency.sort();

    println!();
    println!(
        "created all in {:.1} s; all Running after {:.1} s: {:.1} nodes/s",
        all_created.as_secs_f64(),
        all_running.as_secs_f64(),
        n as f64 / all_running.as_secs_f64()
    );
    println!(
        "creation to Running per node: p50 {}  p99 {}  max {}",
        ms(percentile(&latency, 0.5)),
        ms(percentile(&latency, 0.99)),
        ms(percentile(&latency, 1.0))
    );
    println!(
        "controller: peak RSS {controller_rss1:.1} MiB (RSS {idle_rss:.1} MiB before the first node, {:.1} MiB now), CPU {:.1} s; kube-apiserver CPU {:.1} s; etcd CPU {:.1} s",
        rss(pid),
        controller_cpu1 - controller_cpu0,
        apiserver_cpu1 - apiserver_cpu0,
        etcd_cpu1 - etcd_cpu0
    );

    // The rollout, from the audit log.
    let audit = cluster.audit_events(|e| e.user == controller_user);
    let rollout: Vec<&AuditEvent> = audit.iter().filter(|e| received(e).is_some_and(|t| t <= run_end)).collect();
    print_requests("controller requests until all Running", &rollout, n, None);
    let status_writes = rollout.iter().filter(|e| e.resource == "seinodes" && e.subresource == "status" && e.verb != "get").count();
    let conflicts = rollout.iter().filter(|e| e.code == 409).count();
    println!("status writes per node: {:.2}; conflicts: {conflicts}", status_writes as f64 / n as f64);
    let mut first_step: Vec<Duration> = Vec::new();
    let mut per_node: HashMap<&str, Vec<&AuditEvent>> = HashMap::new();
    for e in rollout.iter().filter(|e| e.resource == "seinodes" && !e.name.is_empty()) {
        per_node.entry(e.name.as_str()).or_default().push(e);
    }
    for events in per_node.values() {
        // The first status write persists the plan; the controller's next request on the node
        // (a read, or the next status write when the step ran in the same reconcile) marks its
        // first step.
        let Some(i) = events.iter().position(|e| e.subresource == "status" && e.verb == "update") else { continue };
        if let Some(next) = events.get(i + 1)
            && let (Some(a), Some(b)) = (received(events[i]), received(next))
        {
            first_step.push(b.duration_since(a).unsigned_abs());
        }
    }
    first_step.sort();
    // Creation (the benchmark's create request answered) to the plan persisted (the controller's
    // first status write): how long a node waits behind the burst before anything is planned.
    let creates: HashMap<&str, Timestamp> = created.iter().map(|(name, _, at)| (name.as_str(), *at)).collect();
    let mut to_plan: Vec<Duration> = per_node
        .iter()
        .filter_map(|(name, events)| {
            let persisted = events.iter().find(|e| e.subresource == "status" && e.verb == "update").and_then(|e| received(e))?;
            Some(persisted.duration_since(*creates.get(*name)?).unsigned_abs())
        })
        .collect();
    to_plan.sort();
    println!(
        "creation to plan persisted: p50 {}  p99 {}  max {}",
        ms(percentile(&to_plan, 0.5)),
        ms(percentile(&to_plan, 0.99)),
        ms(percentile(&to_plan, 1.0))
    );
    println!(
        "plan persisted to the node's next request: p50 {}  p99 {}  max {}  ({} nodes)",
        ms(percentile(&first_step, 0.5)),
        ms(percentile(&first_step, 0.99)),
        ms(percentile(&first_step, 1.0)),
        first_step.len()
    );

    // A steady window: nothing changes.
    let steady_start = chrono_now();
    let (c0, _) = usage(pid);
    let (a0, e0) = (cpu_of("kube-apiserver"), cpu_of("etcd"));
    // A measurement window, not a synchronisation: the benchmark counts what happens in it.
    tokio::time::sleep(steady).await;
    let (c1, rss_end) = usage(pid);
    let rss_now = rss(pid);
    let (a1, e1) = (cpu_of("kube-apiserver"), cpu_of("etcd"));
    let audit = cluster.audit_events(|e| e.user == controller_user && received(e).is_some_and(|t| t >= steady_start));
    let window: Vec<&AuditEvent> = audit.iter().collect();
    println!();
    print_requests(&format!("steady {} s", steady.as_secs()), &window, n, Some(steady.as_secs_f64() / 60.0));
    println!(
        "steady: controller CPU {:.2} s, peak RSS {rss_end:.1} MiB, RSS {:.1} MiB; kube-apiserver CPU {:.2} s; etcd CPU {:.2} s",
        c1 - c0,
        rss_now,
        a1 - a0,
        e1 - e0
    );
    recorder.abort();
    drop(controller);
}

fn chrono_now() -> Timestamp {
    Timestamp::now()
}

/// When the API server received the request.
fn received(e: &AuditEvent) -> Option<Timestamp> {
    e.received.parse().ok()
}
