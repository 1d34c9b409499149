//! The SeiNode controller on the real control plane: every task of the plan runs as a wasm
//! module, sidecar tasks talk to the test sidecar over HTTP, the StatefulSet status faker stands
//! in for kubelets. Each test runs its own controller watching only its namespace.

mod common;

use common::completed_job_status;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Event, PersistentVolumeClaim, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sei_operator::adapters::sidecar::Script;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase, TaskPlanPhase, TaskStatus};
use sei_operator::node::{Context, ContextBuilder, SidecarResolver, run};
use sei_operator::platform::PlatformConfig;
use sei_operator::registry::TaskRegistry;
use sei_operator::sandbox::{Sandbox, SandboxConfig};
use sei_test_sidecar::TestSidecar;
use sei_testkit::{TestCluster, TestNamespace, eventually};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

struct Harness {
    ns: TestNamespace,
    nodes: Api<SeiNode>,
    sidecar: TestSidecar,
    client: kube::Client,
}

/// A namespace, the CRD, a test sidecar and a controller watching only that namespace.
async fn harness(prefix: &str, scripts: &[(&str, Script)]) -> Harness {
    harness_with(prefix, scripts, |c| c).await.0
}

fn node(name: &str, spec: serde_json::Value) -> SeiNode {
    let mut s = json!({"chainId": "pacific-1", "image": "seid:v1"});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name}, "spec": s})).unwrap()
}

async fn wait_phase(h: &Harness, name: &str, phase: SeiNodePhase) -> SeiNode {
    let waited = eventually(&format!("SeiNode {name} to be {phase:?}"), Duration::from_secs(180), || async {
        let n = h.nodes.get(name).await.ok()?;
        (n.status.as_ref()?.phase == Some(phase)).then_some(n)
    })
    .await;
    match waited {
        Ok(n) => n,
        Err(e) => {
            let status = h.nodes.get(name).await.ok().and_then(|n| n.status);
            panic!("{e}; status now: {}", serde_json::to_string_pretty(&status).unwrap_or_default())
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_node_with_s3_and_peers_reaches_running() {
    let h = harness("ctl-full", &[("snapshot-restore", Script::CompleteAfter(1))]).await;
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    h.nodes
        .create(&PostParams::default(), &node("rpc", json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}}}, "peers": peers})))
        .await
        .unwrap();
    let n = wait_phase(&h, "rpc", SeiNodePhase::Running).await;

    let plan = n.status.as_ref().unwrap().plan.clone().expect("the init plan stays in status");
    assert_eq!(plan.phase, TaskPlanPhase::Complete);
    let types: Vec<&str> = plan.tasks.iter().map(|t| t.task_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "ensure-data-pvc",
            "apply-statefulset",
            "apply-service",
            "snapshot-restore",
            "configure-genesis",
            "config-apply",
            "discover-peers",
            "configure-state-sync",
            "config-validate",
            "mark-ready"
        ]
    );
    for t in &plan.tasks {
        assert_eq!(t.status, TaskStatus::Complete, "{}", t.task_type);
        assert_eq!(t.module_digest.as_ref().map(|d| d.len()), Some(64), "{} records its module digest", t.task_type);
    }
    assert_eq!(n.status.as_ref().unwrap().plan_progress.as_deref(), Some("10/10"));
    assert_eq!(n.status.as_ref().unwrap().current_task, None, "a finished plan has no current task");

    // The sidecar saw every sidecar task under the plan's task ids, with the wire params.
    let submitted = h.sidecar.node(h.ns.name(), "rpc").submitted();
    let restore = submitted.iter().find(|r| r.task_type == "snapshot-restore").unwrap();
    assert_eq!(restore.id, plan.tasks[3].id);
    assert_eq!(restore.params, Some(json!({"targetHeight": 100})));
    assert_eq!(h.sidecar.node(h.ns.name(), "rpc").runs(&plan.tasks[3].id), 1, "polled, never re-submitted");

    let sts = Api::<StatefulSet>::namespaced(h.client.clone(), h.ns.name()).get("rpc").await.unwrap();
    assert_eq!(sts.spec.template.spec.unwrap().containers[0].image.as_deref(), Some("seid:v1"));
    assert!(Api::<Service>::namespaced(h.client.clone(), h.ns.name()).get_opt("rpc").await.unwrap().is_some());
    let pvc = Api::<PersistentVolumeClaim>::namespaced(h.client.clone(), h.ns.name()).get("data-rpc").await.unwrap();
    assert_eq!(pvc.metadata.owner_references.unwrap()[0].kind, "SeiNode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_failure_fails_the_plan_and_the_node() {
    let (h, _handle, ctx) =
        harness_with("ctl-fail", &[("config-apply", Script::FailAfter(0, "invalid override evm.http_port".into()))], |c| c).await;
    h.nodes.create(&PostParams::default(), &node("bad", json!({"fullNode": {}}))).await.unwrap();
    let n = wait_phase(&h, "bad", SeiNodePhase::Failed).await;
    let plan = n.status.as_ref().unwrap().plan.clone().unwrap();
    assert_eq!(plan.phase, TaskPlanPhase::Failed);
    let detail = plan.failed_task_detail.unwrap();
    assert_eq!(detail.task_type, "config-apply");
    assert!(detail.error.contains("invalid override evm.http_port"), "{}", detail.error);
    assert_eq!(plan.failed_task_index, Some(4));
    let cond = n.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "PlanFailed").unwrap();
    assert_eq!(cond.status, "True");
    let events: Api<Event> = Api::namespaced(h.client.clone(), h.ns.name());
    eventually("a Warning event for the failed task", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.iter().any(|e| e.type_.as_deref() == Some("Warning") && e.reason.as_deref() == Some("TaskFailed")).then_some(())
    })
    .await
    .unwrap();

    // Failed is terminal: later reconciles (here forced by a change to the node) submit nothing.
    let sidecar = h.sidecar.node(h.ns.name(), "bad");
    let submitted = sidecar.submitted().len();
    let runs = sidecar.runs(&detail_id(&h, "bad").await);
    let seen = ctx.telemetry().reconciles();
    let poke = json!({"metadata": {"annotations": {"test/poke": "1"}}});
    h.nodes.patch("bad", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&poke)).await.unwrap();
    eventually("a reconcile after the change", Duration::from_secs(30), || async { (ctx.telemetry().reconciles() > seen).then_some(()) })
        .await
        .unwrap();
    assert_eq!(sidecar.submitted().len(), submitted);
    assert_eq!(sidecar.runs(&detail_id(&h, "bad").await), runs);
    assert_eq!(h.nodes.get("bad").await.unwrap().status.unwrap().phase, Some(SeiNodePhase::Failed));
}

async fn detail_id(h: &Harness, name: &str) -> String {
    h.nodes.get(name).await.unwrap().status.unwrap().plan.unwrap().failed_task_detail.unwrap().id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_node_removes_its_pvc_and_collects_its_objects() {
    let h = harness("ctl-delete", &[]).await;
    h.nodes.create(&PostParams::default(), &node("gone", json!({"archive": {}}))).await.unwrap();
    wait_phase(&h, "gone", SeiNodePhase::Running).await;
    h.nodes.delete("gone", &DeleteParams::default()).await.unwrap();
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), h.ns.name());
    let sts: Api<StatefulSet> = Api::namespaced(h.client.clone(), h.ns.name());
    let svc: Api<Service> = Api::namespaced(h.client.clone(), h.ns.name());
    eventually("the node, its PVC, StatefulSet and Service to be gone", Duration::from_secs(90), || async {
        let gone = h.nodes.get_opt("gone").await.ok()?.is_none()
            && pvcs.get_opt("data-gone").await.ok()?.is_none_or(|p| p.metadata.deletion_timestamp.is_some())
            && sts.get_opt("gone").await.ok()?.is_none()
            && svc.get_opt("gone").await.ok()?.is_none();
        gone.then_some(())
    })
    .await
    .unwrap();
    // The controller's finalizer did the deletion (not only garbage collection): it said so.
    let events: Api<Event> = Api::namespaced(h.client.clone(), h.ns.name());
    eventually("the Terminating event of the finalizer", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.iter().any(|e| e.reason.as_deref() == Some("Terminating")).then_some(())
    })
    .await
    .unwrap();
}

async fn harness_with(
    prefix: &str,
    scripts: &[(&str, Script)],
    tune: impl FnOnce(ContextBuilder) -> ContextBuilder,
) -> (Harness, tokio::task::JoinHandle<()>, Arc<Context>) {
    let cluster = TestCluster::shared();
    cluster.install_crds(&[sei_operator::crds::seinode()]).await.unwrap();
    let ns = cluster.namespace(prefix).await;
    let client = cluster.client().await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    for (t, s) in scripts {
        sidecar.script(t, s.clone());
    }
    // The controller runs as the Helm chart's ServiceAccount, under the chart's RBAC.
    let ctx = controller_context(&cluster.controller_client().await, &sidecar, tune).await;
    let handle = tokio::spawn(run(ctx.clone(), 4, Some(ns.name().to_string())));
    (Harness { nodes: Api::namespaced(client.clone(), ns.name()), ns, sidecar, client }, handle, ctx)
}

async fn controller_context(
    client: &kube::Client,
    sidecar: &TestSidecar,
    tune: impl FnOnce(ContextBuilder) -> ContextBuilder,
) -> Arc<Context> {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox).await.unwrap();
    tune(Context::builder(
        client.clone(),
        sandbox,
        registry,
        PlatformConfig::for_local(),
        SidecarResolver::Template(sidecar.url_template()),
    ))
    .build()
}

/// Play the Job controller: mark Job `name` complete.
async fn complete_job(jobs: &Api<k8s_openapi::api::batch::v1::Job>, name: &str) {
    jobs.patch_status(name, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&completed_job_status())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_reaches_running_with_the_reference_plan() {
    let h = harness("ctl-modes", &[]).await;
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    let cases = [
        ("state-sync", json!({"fullNode": {"snapshot": {"stateSync": {}}}, "peers": peers}), 9),
        ("archive", json!({"archive": {}, "peers": peers}), 8),
        ("replayer", json!({"replayer": {"snapshot": {"s3": {"targetHeight": 5}}}, "peers": peers}), 10),
        (
            "genesis",
            json!({"validator": {"genesisCeremony": {"chainId": "c", "stakingAmount": "1", "accountBalance": "2", "index": 0}}}),
            11,
        ),
    ];
    for (name, spec, _) in &cases {
        h.nodes.create(&PostParams::default(), &node(name, spec.clone())).await.unwrap();
    }
    for (name, spec, count) in &cases {
        let n = wait_phase(&h, name, SeiNodePhase::Running).await;
        let plan = n.status.unwrap().plan.unwrap();
        let mut want_node = node(name, spec.clone());
        want_node.metadata.namespace = Some(h.ns.name().to_string());
        let expected = match sei_operator::node::planner::resolve_plan(
            &want_node,
            &Default::default(),
            &PlatformConfig::for_local(),
            "x",
            &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
        )
        .unwrap()
        {
            sei_operator::node::planner::PlanDecision::New { plan, .. } => plan.tasks.into_iter().map(|t| t.task_type).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        let ran: Vec<String> = plan.tasks.iter().map(|t| t.task_type.clone()).collect();
        assert_eq!(ran, expected, "{name}");
        assert_eq!(ran.len(), *count, "{name}");
        assert!(plan.tasks.iter().all(|t| t.status == TaskStatus::Complete && t.module_digest.is_some()), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_change_converges_and_no_drift_means_no_new_plan() {
    let (h, _handle, ctx) = harness_with("ctl-converge", &[], |c| c.drift_check_interval(Duration::from_millis(100))).await;
    h.nodes.create(&PostParams::default(), &node("rpc", json!({"fullNode": {}}))).await.unwrap();
    let n = wait_phase(&h, "rpc", SeiNodePhase::Running).await;
    let init_plan = n.status.unwrap().plan.unwrap().id;

    // No drift: many reconciles, no new plan, the init plan stays.
    let start = ctx.telemetry().reconciles();
    eventually("50 reconciles of the Running node", Duration::from_secs(60), || async {
        (ctx.telemetry().reconciles() >= start + 50).then_some(())
    })
    .await
    .unwrap();
    let n = h.nodes.get("rpc").await.unwrap();
    assert_eq!(n.status.as_ref().unwrap().plan.as_ref().unwrap().id, init_plan, "no drift: no convergence plan");

    // Drift: a new image is rolled into the StatefulSet by a convergence plan.
    let patch = json!({"spec": {"image": "seid:v2"}});
    h.nodes.patch("rpc", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    let sts: Api<StatefulSet> = Api::namespaced(h.client.clone(), h.ns.name());
    eventually("the StatefulSet to run seid:v2", Duration::from_secs(60), || async {
        let s = sts.get("rpc").await.ok()?;
        (s.spec.template.spec?.containers[0].image.as_deref() == Some("seid:v2")).then_some(())
    })
    .await
    .unwrap();
    // The convergence plan completes (its last write follows the StatefulSet update) and is
    // removed from status; the node stays Running throughout.
    let status = eventually("the completed convergence plan to be removed", Duration::from_secs(60), || async {
        let status = h.nodes.get("rpc").await.ok()?.status?;
        status.plan.is_none().then_some(status)
    })
    .await
    .unwrap();
    assert_eq!(status.phase, Some(SeiNodePhase::Running));
    assert_eq!(status.plan_progress, None);
}

/// Issue #15: an idle Running node is checked from the watch caches (no API request), and a
/// StatefulSet changed behind the controller's back still converges, woken by the watch (the
/// periodic check is an hour away).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_node_costs_no_request_and_drift_converges_from_the_watch() {
    let (h, _handle, ctx) = harness_with("ctl-idle", &[], |c| c.drift_check_interval(Duration::from_millis(100))).await;
    h.nodes.create(&PostParams::default(), &node("rpc", json!({"fullNode": {}}))).await.unwrap();
    wait_phase(&h, "rpc", SeiNodePhase::Running).await;
    let cluster = TestCluster::shared();
    let me = format!("system:serviceaccount:{}:{}", sei_testkit::identity::CONTROLLER_NAMESPACE, sei_testkit::identity::CONTROLLER_ACCOUNT);
    let requests = || cluster.audit_events(|e| e.user == me && e.namespace == h.ns.name()).len();
    // Past the last write: status.currentImage is recorded once the StatefulSet faker has rolled
    // the StatefulSet out, which may come after the first idle checks (a legitimate write, woken
    // by the watch). Then the idle checks of the settled node.
    eventually("the rolled-out image in status", Duration::from_secs(60), || async {
        (h.nodes.get("rpc").await.ok()?.status?.current_image.as_deref() == Some("seid:v1")).then_some(())
    })
    .await
    .unwrap();
    let start = ctx.telemetry().idle_checks();
    eventually("idle checks from the caches", Duration::from_secs(60), || async { (ctx.telemetry().idle_checks() > start).then_some(()) })
        .await
        .unwrap();
    let (before, checks) = (requests(), ctx.telemetry().idle_checks());
    eventually("30 more idle checks", Duration::from_secs(60), || async { (ctx.telemetry().idle_checks() >= checks + 30).then_some(()) })
        .await
        .unwrap();
    assert_eq!(requests(), before, "30 drift checks of an idle node made API requests");

    // Drift behind the controller's back, with the periodic check far away: the watch wakes it.
    let (h2, _handle2, _ctx2) = harness_with("ctl-drift", &[], |c| c.drift_check_interval(Duration::from_secs(3600))).await;
    h2.nodes.create(&PostParams::default(), &node("rpc", json!({"fullNode": {}}))).await.unwrap();
    wait_phase(&h2, "rpc", SeiNodePhase::Running).await;
    let sts: Api<StatefulSet> = Api::namespaced(h2.client.clone(), h2.ns.name());
    let mut changed = sts.get("rpc").await.unwrap();
    changed.metadata.managed_fields = None;
    if let Some(pod) = changed.spec.template.spec.as_mut() {
        pod.containers[0].image = Some("seid:someone-elses".into());
    }
    sts.replace("rpc", &PostParams::default(), &changed).await.unwrap();
    eventually("the StatefulSet back on seid:v1", Duration::from_secs(60), || async {
        let s = sts.get("rpc").await.ok()?;
        (s.spec.template.spec?.containers[0].image.as_deref() == Some("seid:v1")).then_some(())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarted_controller_finishes_the_plan_without_repeating_tasks() {
    let (h, handle, _ctx) = harness_with("ctl-restart", &[("snapshot-restore", Script::Stall)], |c| c).await;
    h.nodes.create(&PostParams::default(), &node("rpc", json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 7}}}}))).await.unwrap();
    eventually("snapshot-restore to be Running", Duration::from_secs(60), || async {
        let n = h.nodes.get("rpc").await.ok()?;
        let plan = n.status?.plan?;
        (plan.tasks[3].status == TaskStatus::Running).then_some(())
    })
    .await
    .unwrap();
    let before = h.nodes.get("rpc").await.unwrap().status.unwrap().plan.unwrap();
    handle.abort();
    let _ = handle.await;

    // The sidecar finishes the task while no controller runs; a new controller picks up.
    h.sidecar.script("snapshot-restore", Script::CompleteAfter(0));
    let ctx = controller_context(&h.client, &h.sidecar, |c| c).await;
    tokio::spawn(run(ctx.clone(), 4, Some(h.ns.name().to_string())));
    let n = wait_phase(&h, "rpc", SeiNodePhase::Running).await;
    let after = n.status.unwrap().plan.unwrap();
    assert_eq!(after.id, before.id, "the same plan was finished, not a new one");
    let sidecar = h.sidecar.node(h.ns.name(), "rpc");
    for t in after.tasks.iter().skip(3) {
        assert_eq!(sidecar.runs(&t.id), 1, "{} was submitted exactly once", t.task_type);
    }
    let metrics = ctx.sandbox().metrics();
    for t in before.tasks.iter().take(3) {
        assert_eq!(metrics.steps_of(&t.task_type), 0, "{} completed before the restart and did not run again", t.task_type);
    }
    assert!(metrics.steps_of("snapshot-restore") >= 1, "the new controller polled the running task");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_node_runs_its_job_then_reaches_running() {
    use k8s_openapi::api::batch::v1::Job;
    let h = harness("ctl-boot", &[]).await;
    h.nodes.create(&PostParams::default(), &node("boot", bootstrap_spec())).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), h.ns.name());
    let job = eventually("the bootstrap Job to exist", Duration::from_secs(60), || async { jobs.get_opt("boot-bootstrap").await.ok()? })
        .await
        .unwrap();
    assert_eq!(job.spec.as_ref().unwrap().template.spec.as_ref().unwrap().containers[0].image.as_deref(), Some("seid:boot"));
    let svc = Api::<Service>::namespaced(h.client.clone(), h.ns.name()).get("boot").await.unwrap();
    assert_eq!(svc.spec.unwrap().selector.unwrap()["sei.io/component"], "bootstrap", "the bootstrap Service comes first");
    play_the_job_controller(&h, "boot").await;

    let n = wait_phase(&h, "boot", SeiNodePhase::Running).await;
    let plan = n.status.unwrap().plan.unwrap();
    assert_eq!(plan.tasks.len(), 19);
    assert!(plan.tasks.iter().all(|t| t.status == TaskStatus::Complete));
    assert!(jobs.get_opt("boot-bootstrap").await.unwrap().is_none_or(|j| j.metadata.deletion_timestamp.is_some()), "torn down");
    let svc = Api::<Service>::namespaced(h.client.clone(), h.ns.name()).get("boot").await.unwrap();
    assert_eq!(svc.spec.unwrap().ports.unwrap().len(), 7, "the production Service replaced the bootstrap one");
    assert_nothing_collected(&h);
}

/// Issue #14, the load that once showed the garbage collector deleting a live node's bootstrap
/// Job: eight bootstrap nodes at once, each Job left running until its node waits on it. Every
/// node reaches Running, and kube-controller-manager deletes nothing in the namespace (the audit
/// log is the witness).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_nodes_in_parallel_keep_their_jobs_until_they_tear_them_down() {
    let h = harness("ctl-boot-load", &[]).await;
    let names: Vec<String> = (0..8).map(|i| format!("boot-{i}")).collect();
    for name in &names {
        h.nodes.create(&PostParams::default(), &node(name, bootstrap_spec())).await.unwrap();
    }
    futures::future::join_all(names.iter().map(|name| play_the_job_controller(&h, name))).await;
    for name in &names {
        wait_phase(&h, name, SeiNodePhase::Running).await;
    }
    assert_nothing_collected(&h);
}

/// Issue #14: the bootstrap pod's sidecar is gone once its Job has finished, so a sidecar task
/// of the bootstrap phase that still waits (its completion lost to a crash, or a fail-over slower
/// than the Job) would wait on it forever. The Job's outcome settles it: success completes the
/// task (the Job's seid starts only after `mark-ready`), failure fails the node with the Job's
/// reason. Here the sidecar goes down while `mark-ready` is in flight, then one Job succeeds and
/// the other fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bootstrap_job_settles_the_tasks_its_gone_sidecar_cannot() {
    use k8s_openapi::api::batch::v1::Job;
    let h = harness("ctl-boot-gone", &[("mark-ready", Script::Stall)]).await;
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), h.ns.name());
    // The bootstrap phase's mark-ready, the tenth task of the plan.
    let nodes = &h.nodes;
    let task = move |name: &'static str| async move { nodes.get(name).await.ok()?.status?.plan?.tasks.into_iter().nth(9) };
    for name in ["proven", "doomed"] {
        h.nodes.create(&PostParams::default(), &node(name, bootstrap_spec())).await.unwrap();
        let in_flight = format!("{name}'s mark-ready in flight");
        eventually(&in_flight, Duration::from_secs(120), || async {
            task(name).await.filter(|t| t.task_type == "mark-ready" && t.status == TaskStatus::Running)
        })
        .await
        .unwrap();
        h.sidecar.fault(h.ns.name(), name, Some(sei_test_sidecar::Fault::Down));
        let waiting = format!("{name}'s mark-ready waiting on its sidecar");
        eventually(&waiting, Duration::from_secs(60), || async {
            task(name).await.filter(|t| t.message.as_deref().is_some_and(|m| m.starts_with("waiting:")))
        })
        .await
        .unwrap();
    }
    complete_job(&jobs, "proven-bootstrap").await;
    let failed = common::failed_job_status("Job has reached the specified backoff limit");
    jobs.patch_status("doomed-bootstrap", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&failed)).await.unwrap();

    // The sidecar is still down: only the Job can have completed the task.
    let proven = eventually("proven's mark-ready settled by its Job", Duration::from_secs(60), || async {
        task("proven").await.filter(|t| t.status == TaskStatus::Complete)
    })
    .await
    .unwrap();
    assert_eq!(proven.message.as_deref(), Some("done: await-bootstrap-complete succeeded, which proves it ran"));
    let doomed = wait_phase(&h, "doomed", SeiNodePhase::Failed).await;
    let detail = doomed.status.unwrap().plan.unwrap().failed_task_detail.unwrap();
    assert_eq!(detail.task_type, "mark-ready");
    assert!(detail.error.starts_with("unreachable, and await-bootstrap-complete failed: "), "{}", detail.error);
    assert!(
        detail.error.contains("bootstrap job doomed-bootstrap failed: Job has reached the specified backoff limit"),
        "{}",
        detail.error
    );
    // Each node's event names its own waiting task, not the witness.
    let events: Api<Event> = Api::namespaced(h.client.clone(), h.ns.name());
    let settled = eventually("the nodes' events", Duration::from_secs(30), || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let about = |name: &str, reason: &str| {
            list.items.iter().any(|e| {
                e.involved_object.name.as_deref() == Some(name)
                    && e.reason.as_deref() == Some(reason)
                    && e.message.as_deref().is_some_and(|m| m.starts_with("task mark-ready ("))
            })
        };
        (about("proven", "TaskSettled") && about("doomed", "TaskFailed")).then_some(())
    });
    settled.await.unwrap();

    // The production pod's sidecar answers: the rest of the plan runs.
    h.sidecar.script("mark-ready", Script::CompleteAfter(0));
    h.sidecar.fault(h.ns.name(), "proven", None);
    let n = wait_phase(&h, "proven", SeiNodePhase::Running).await;
    assert!(n.status.unwrap().plan.unwrap().tasks.iter().all(|t| t.status == TaskStatus::Complete));
}

/// A full node restored by a bootstrap Job.
fn bootstrap_spec() -> serde_json::Value {
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}, "bootstrapImage": "seid:boot"}}, "peers": peers})
}

/// No Job controller or kubelet runs here: once the node's plan waits on its Job, play the Job
/// controller and mark it complete. Should the Job vanish under a live node, the panic carries
/// the audit trail of who deleted what.
async fn play_the_job_controller(h: &Harness, node: &str) {
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(h.client.clone(), h.ns.name());
    let waiting = eventually(&format!("the plan of {node} to wait on its Job"), Duration::from_secs(120), || async {
        let plan = h.nodes.get(node).await.ok()?.status?.plan?;
        let task = plan.tasks.iter().find(|t| t.task_type == "await-bootstrap-complete")?;
        (task.status == TaskStatus::Running).then_some(())
    })
    .await;
    if let Err(e) = waiting {
        panic!("{e}; collector trail:\n{}", collector_trail(h.ns.name()));
    }
    let job = format!("{node}-bootstrap");
    if let Err(e) = jobs.patch_status(&job, &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&completed_job_status())).await {
        panic!("marking Job {job} complete: {e}; collector trail:\n{}", collector_trail(h.ns.name()));
    }
}

/// kube-controller-manager (garbage collector, namespace controller) deleted nothing in the
/// test's namespace: every node there lived throughout.
fn assert_nothing_collected(h: &Harness) {
    let collected = TestCluster::shared().audit_events(|e| {
        matches!(e.verb.as_str(), "delete" | "deletecollection")
            && e.namespace == h.ns.name()
            && e.user_agent.starts_with("kube-controller-manager/")
    });
    assert!(collected.is_empty(), "kube-controller-manager deleted objects of live SeiNodes:\n{}", collector_trail(h.ns.name()));
}

/// What kube-controller-manager did in a namespace, and every failed read of a SeiNode or write
/// of a CRD, from the audit log: the trail a test prints when an object vanishes under it.
fn collector_trail(ns: &str) -> String {
    let events = TestCluster::shared().audit_events(|e| {
        (e.namespace == ns && e.user_agent.starts_with("kube-controller-manager/") && e.verb != "watch" && e.verb != "list")
            || (e.resource == "seinodes" && e.code >= 400)
            || (e.resource == "customresourcedefinitions" && !matches!(e.verb.as_str(), "get" | "list" | "watch"))
    });
    events
        .iter()
        .map(|e| {
            format!("{} {} {} {}/{} {} by {} ({})", e.received, e.verb, e.code, e.namespace, e.name, e.request_uri, e.user, e.user_agent)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Issue #14: a SeiNode deleted and created again under the same name does not adopt the
/// bootstrap Job (or PVC, or Service) its predecessor left, which the garbage collector deletes
/// under it: the task waits until the old one is gone, then creates its own. The audit log names
/// the garbage collector as the one that deleted the predecessor's Job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_node_waits_for_its_predecessors_job_instead_of_adopting_it() {
    use k8s_openapi::api::batch::v1::Job;
    use kube::api::{Patch, PatchParams};
    let h = harness("ctl-reborn", &[]).await;
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    let spec = json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}, "bootstrapImage": "seid:boot"}}, "peers": peers});
    let old = h.nodes.create(&PostParams::default(), &node("boot", spec.clone())).await.unwrap();
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), h.ns.name());
    eventually("the first node's Job", Duration::from_secs(60), || async { jobs.get_opt("boot-bootstrap").await.ok()? }).await.unwrap();
    // Hold the old Job after its deletion (as a slow Job controller would), then delete its node.
    let hold = json!({"metadata": {"finalizers": ["test.sei.io/hold"]}});
    jobs.patch("boot-bootstrap", &PatchParams::default(), &Patch::Merge(&hold)).await.unwrap();
    h.nodes.delete("boot", &DeleteParams::default()).await.unwrap();
    // No PVC-protection controller runs here: play it (the claim is in use by no pod).
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(h.client.clone(), h.ns.name());
    let release = json!({"metadata": {"finalizers": null}});
    eventually("the first node gone", Duration::from_secs(60), || async {
        let _ = pvcs.patch("data-boot", &PatchParams::default(), &Patch::Merge(&release)).await;
        h.nodes.get_opt("boot").await.ok()?.is_none().then_some(())
    })
    .await
    .unwrap();
    // The garbage collector runs in kube-controller-manager (here with the test's admin
    // credentials, so its user agent names it).
    eventually("the garbage collector deletes the old Job", Duration::from_secs(90), || async {
        let cluster = TestCluster::shared();
        let deleted = cluster
            .audit_events(|e| e.verb == "delete" && e.resource == "jobs" && e.namespace == h.ns.name() && e.name == "boot-bootstrap");
        deleted.iter().any(|e| e.user_agent.starts_with("kube-controller-manager/") && e.code < 300).then_some(())
    })
    .await
    .unwrap();

    // The same name again: its Job task waits for the old Job rather than adopting it.
    let new = h.nodes.create(&PostParams::default(), &node("boot", spec)).await.unwrap();
    assert_ne!(new.metadata.uid, old.metadata.uid);
    let message = eventually("deploy-bootstrap-job waits for the old Job", Duration::from_secs(90), || async {
        let _ = pvcs.patch("data-boot", &PatchParams::default(), &Patch::Merge(&release)).await;
        let plan = h.nodes.get("boot").await.ok()?.status?.plan?;
        let task = plan.tasks.iter().find(|t| t.task_type == "deploy-bootstrap-job")?;
        task.message.clone().filter(|m| m.contains("belongs to a deleted SeiNode of the same name"))
    })
    .await
    .unwrap();
    assert!(message.contains(old.metadata.uid.as_deref().unwrap()), "{message}");

    // The old Job goes; the new node's own Job comes, and the node completes.
    let unhold = json!({"metadata": {"finalizers": null}});
    jobs.patch("boot-bootstrap", &PatchParams::default(), &Patch::Merge(&unhold)).await.unwrap();
    eventually("the new node's own Job", Duration::from_secs(90), || async {
        let job = jobs.get_opt("boot-bootstrap").await.ok()??;
        (job.metadata.owner_references?[0].uid == new.metadata.uid.clone()?).then_some(())
    })
    .await
    .unwrap();
    complete_job(&jobs, "boot-bootstrap").await;
    wait_phase(&h, "boot", SeiNodePhase::Running).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_peers_are_resolved_into_status_and_params() {
    let h = harness("ctl-peers", &[]).await;
    let mut seed = node("seed-a", json!({"fullNode": {}}));
    seed.metadata.labels = Some([("role".to_string(), "seed".to_string())].into());
    h.nodes.create(&PostParams::default(), &seed).await.unwrap();
    let peers = json!([{"label": {"selector": {"role": "seed"}}}]);
    h.nodes.create(&PostParams::default(), &node("rpc", json!({"fullNode": {}, "peers": peers}))).await.unwrap();
    let n = wait_phase(&h, "rpc", SeiNodePhase::Running).await;
    let status = n.status.unwrap();
    let want = format!("seed-a-0.seed-a.{}.svc.cluster.local", h.ns.name());
    assert_eq!(status.resolved_peers, vec![want.clone()]);
    let discover = status.plan.unwrap().tasks.into_iter().find(|t| t.task_type == "discover-peers").unwrap();
    assert_eq!(discover.params, Some(json!({"sources": [{"type": "dnsEndpoints", "endpoints": [want]}]})));
}
