//! Kill-anywhere: twenty SeiNodes of four modes (state-sync full node, archive, replayer, genesis
//! validator), whose sidecar tasks each take several polls, while the controller process (the
//! real binary, as the chart's ServiceAccount) is crashed again and again: first at each crash
//! point of `host/src/failpoint.rs` (a plan built and not persisted, a step run and not written,
//! a module's Kubernetes write or sidecar submit sent and not answered), then with SIGKILL at
//! random moments, then left to finish.
//!
//! What must hold: every node reaches Running; each node ran exactly one plan (a crash never makes
//! a second one); the sidecar saw each task type of a node under one id only, its plan's (a
//! completed task is never submitted under a new id); a completed id is submitted again only as
//! often as crashes can explain (and the sidecar, idempotent by id, does not run it again); each
//! StatefulSet was written with one content (generation 1: no flapping). Each random SIGKILL
//! lands after the process's first reconcile.
//!
//! The schedule comes from a seed, printed at the start; `SEI_CHAOS_SEED=<seed>` replays it and
//! `SEI_CHAOS_KILLS=<n>` changes the number of crashes (default 30).

mod common;

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, PostParams};
use sei_operator::adapters::sidecar::Script;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase, TaskStatus};
use sei_operator::failpoint::POINTS;
use sei_test_sidecar::TestSidecar;
use sei_testkit::controllers::{ControllerProcess, Replica};
use sei_testkit::{TestCluster, eventually};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

/// xorshift64*: a small, seeded, replayable schedule.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_anywhere_every_node_reaches_running_and_nothing_runs_twice() {
    let seed = std::env::var("SEI_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64))
        | 1;
    let kills: usize = std::env::var("SEI_CHAOS_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    println!("chaos seed {seed} ({kills} crashes); replay with SEI_CHAOS_SEED={seed}");
    let mut schedule = Schedule(seed);

    let cluster = TestCluster::shared();
    cluster.install_crds(&sei_operator::crds::all()).await.unwrap();
    cluster.install_controller_identity().await.unwrap();
    let ns = cluster.namespace("chaos").await;
    let admin = cluster.client().await;
    let kubeconfig = cluster.controller_kubeconfig().await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    for t in common::sidecar_task_types() {
        sidecar.script(t, Script::CompleteAfter(2));
    }
    let template = sidecar.url_template();
    let cache = tempfile::tempdir().unwrap();
    let cache_arg = format!("--module-cache={}", cache.path().display());
    let extra = [cache_arg.as_str()];

    // Every plan id each node ever had in its status.
    let nodes: Api<SeiNode> = Api::namespaced(admin.clone(), ns.name());
    let (seen, recorder) = common::record_nodes(nodes.clone());
    for i in 0..20 {
        nodes.create(&PostParams::default(), &common::mixed_node(i)).await.unwrap();
    }

    let exe = Path::new(env!("CARGO_BIN_EXE_sei-operator"));
    let start = |id: &str, env: &[(&str, &str)]| {
        let replica = Replica {
            exe,
            id,
            kubeconfig: &kubeconfig,
            timing: None,
            sidecar_template: &template,
            namespace: ns.name(),
            extra: &extra,
            env,
        };
        ControllerProcess::start(cluster, &replica).expect("controller process")
    };
    let all_running = || async {
        let list = nodes.list(&Default::default()).await.ok()?;
        (list.items.len() == 20 && list.items.iter().all(|n| n.status.as_ref().and_then(|s| s.phase) == Some(SeiNodePhase::Running)))
            .then_some(())
    };

    // The crashes: first two rounds over the crash points (each at its 1st to 3rd hit), then
    // SIGKILL after a random 50 ms to 1.5 s.
    let mut fired: BTreeMap<&str, usize> = BTreeMap::new();
    let mut mid_work = 0;
    let began = Instant::now();
    for k in 0..kills {
        let id = format!("chaos-{k}");
        if k < 2 * POINTS.len() {
            let point = POINTS[k % POINTS.len()];
            let spec = format!("{point}:{}", 1 + schedule.below(3));
            let mut p = start(&id, &[(sei_operator::failpoint::VARIABLE, spec.as_str())]);
            // The point is reached within seconds while work remains; if not, it is killed.
            match p.wait_exit(Duration::from_secs(30)).await {
                Ok(_) => {
                    if p.logged(&format!("failpoint {point} #")) {
                        *fired.entry(point).or_default() += 1;
                    }
                }
                Err(_) => p.signal(libc::SIGKILL),
            }
            println!("crash {k}: {spec}");
        } else {
            let after = Duration::from_millis(50 + schedule.below(1450));
            let mut p = start(&id, &[]);
            // Counted from its first reconcile, so the crash lands in work, not in start-up.
            let working = p.wait_for_log("first reconcile of this replica", Duration::from_secs(30)).await.is_ok();
            // The random moment of the crash is the test's input, not a wait for a condition.
            tokio::time::sleep(after).await;
            p.signal(libc::SIGKILL);
            mid_work += usize::from(working);
            println!("crash {k}: SIGKILL {} ms after its first reconcile", after.as_millis());
        }
    }
    println!(
        "{kills} crashes in {:.1} s; crash points fired: {fired:?}; {mid_work} SIGKILLs after a first reconcile",
        began.elapsed().as_secs_f64()
    );
    for point in POINTS {
        assert!(fired.get(point).is_some_and(|n| *n >= 1), "crash point {point} never fired (seed {seed}): {fired:?}");
    }

    // Left alone, the controller finishes every node.
    let mut last = start("chaos-final", &[]);
    let finished = eventually("every node Running after the crashes", Duration::from_secs(300), all_running).await;
    if let Err(e) = finished {
        let phases: Vec<_> = nodes
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .iter()
            .map(|n| (n.metadata.name.clone(), n.status.as_ref().and_then(|s| s.phase)))
            .collect();
        panic!("{e} (seed {seed}); phases: {phases:?}\nlog tail:\n{}", last.log_tail(40));
    }
    last.signal(libc::SIGTERM);
    let _ = last.wait_exit(Duration::from_secs(30)).await;
    recorder.abort();

    // One plan per node, every task complete.
    let plans = seen.lock().unwrap().plans.clone();
    let statefulsets: Api<StatefulSet> = Api::namespaced(admin.clone(), ns.name());
    let (mut late, mut ids) = (0, 0);
    for n in nodes.list(&Default::default()).await.unwrap().items {
        let name = n.metadata.name.clone().unwrap_or_default();
        let plan = n.status.as_ref().and_then(|s| s.plan.clone()).expect("a plan");
        assert!(plan.tasks.iter().all(|t| t.status == TaskStatus::Complete), "{name}: {:?}", plan.tasks);
        assert_eq!(plans.get(&name), Some(&BTreeSet::from([plan.id.clone()])), "{name} had another plan than its last (seed {seed})");
        // The sidecar saw each task type under one id (the persisted plan's), and ran it once.
        let submitted = sidecar.node(ns.name(), &name).submitted();
        let mut by_type: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in &submitted {
            by_type.entry(r.task_type.clone()).or_default().insert(r.id.clone());
        }
        for (task_type, set) in &by_type {
            assert_eq!(set.len(), 1, "{name}: {task_type} submitted under several ids (seed {seed}): {set:?}");
            let id = set.iter().next().unwrap();
            assert!(plan.tasks.iter().any(|t| &t.id == id), "{name}: {task_type} ran under {id}, not an id of its plan");
            assert_eq!(sidecar.node(ns.name(), &name).runs(id), 1, "{name}: {task_type} ({id}) ran twice (seed {seed})");
            late += sidecar.node(ns.name(), &name).submitted_after_completion(id);
            ids += 1;
        }
        // Written with one content: the StatefulSet's spec never changed.
        let sts = statefulsets.get(&name).await.unwrap();
        assert_eq!(sts.metadata.generation, Some(1), "{name}: the StatefulSet was written with different content (seed {seed})");
    }
    println!("{ids} sidecar tasks, each run once; {late} re-submissions of an already completed id (no-ops)");
    // A completed id comes back only when a crash lost the step that saw it complete: at most one
    // per reconcile in flight (8) per crash. (That it then does not run again is the sidecar's
    // contract, as with seictl: ids are idempotent.)
    assert!(late as usize <= kills * 8, "{late} re-submissions of completed tasks for {kills} crashes (seed {seed})");
}
