//! The SeiNodeDeployment controller on the real control plane, beside the SeiNode controller:
//! every group task runs as the built-in wasm module `sei-builtin-group` in the group's scope,
//! sidecar calls go to the test sidecar over HTTP, the StatefulSet status faker stands in for
//! kubelets. Both controllers run as the Helm chart's ServiceAccount, watching only the test's
//! namespace.

mod common;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase, TaskPlanPhase, TaskStatus};
use sei_operator::api::seinodedeployment::{GroupPhase, SeiNodeDeployment};
use sei_operator::group::GroupContext;
use sei_operator::node::{Context, SidecarResolver};
use sei_operator::platform::PlatformConfig;
use sei_test_sidecar::TestSidecar;
use sei_testkit::{TestCluster, TestNamespace, eventually};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(180);

/// One observed state of a SeiNode: name, spec image, current image, phase.
type Seen = (String, String, Option<String>, Option<SeiNodePhase>);

struct Harness {
    ns: TestNamespace,
    nodes: Api<SeiNode>,
    groups: Api<SeiNodeDeployment>,
    sidecar: TestSidecar,
    _controllers: Vec<tokio::task::JoinHandle<()>>,
}

async fn harness(prefix: &str) -> Harness {
    harness_with(prefix, false).await
}

/// `hostile`: a TaskModule-ranked module that misbehaves serves `collect-and-set-peers`.
async fn harness_with(prefix: &str, hostile: bool) -> Harness {
    let cluster = TestCluster::shared();
    cluster.install_crds(&[sei_operator::crds::seinode(), sei_operator::crds::seinodedeployment()]).await.unwrap();
    let ns = cluster.namespace(prefix).await;
    let admin = cluster.client().await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    let client = cluster.controller_client().await;
    let (sandbox, registry) = common::builtins().await;
    if hostile {
        use sei_operator::policy::guard::{CapabilityName, Grants};
        let bytes = std::fs::read(sei_operator::embedded::test_guest_path("test-misbehaving")).unwrap();
        let grant = sei_operator::sandbox::ModuleGrant::new(Grants::new([CapabilityName::KubeRead, CapabilityName::KubeWrite]));
        let module = sandbox.load_module(&bytes, grant).await.unwrap();
        let source = sei_operator::registry::ModuleSource::TaskModule { name: "hostile".into() };
        registry.install(&["collect-and-set-peers".to_string()], sei_operator::registry::ModuleEntry::new(source, module));
    }
    let resolver = SidecarResolver::Template(sidecar.url_template());
    let nodes = Context::builder(client.clone(), sandbox.clone(), registry.clone(), PlatformConfig::for_local(), resolver.clone()).build();
    let steps = (nodes.shared_module_slots(), nodes.module_step_cap());
    let groups = GroupContext::new(client, sandbox, registry, PlatformConfig::for_local(), resolver, nodes.telemetry().clone(), steps);
    let namespace = Some(ns.name().to_string());
    let controllers = vec![
        tokio::spawn(sei_operator::node::run(nodes, 8, namespace.clone())),
        tokio::spawn(sei_operator::group::run_until(groups, 4, namespace, std::future::pending())),
    ];
    Harness {
        nodes: Api::namespaced(admin.clone(), ns.name()),
        groups: Api::namespaced(admin, ns.name()),
        ns,
        sidecar,
        _controllers: controllers,
    }
}

fn group(name: &str, spec: serde_json::Value) -> SeiNodeDeployment {
    serde_json::from_value(json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "metadata": {"name": name}, "spec": spec}))
        .unwrap()
}

async fn wait_group<F>(h: &Harness, name: &str, what: &str, ok: F) -> SeiNodeDeployment
where
    F: Fn(&SeiNodeDeployment) -> bool,
{
    let waited = eventually(&format!("SeiNodeDeployment {name}: {what}"), DEADLINE, || async {
        let g = h.groups.get(name).await.ok()?;
        ok(&g).then_some(g)
    })
    .await;
    match waited {
        Ok(g) => g,
        Err(e) => {
            let g = h.groups.get(name).await.ok().and_then(|g| g.status);
            panic!("{e}; status now: {}", serde_json::to_string_pretty(&g).unwrap_or_default())
        }
    }
}

fn condition(g: &SeiNodeDeployment, type_: &str) -> Option<String> {
    g.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).map(|c| c.status.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_validators_form_a_network_through_the_genesis_ceremony() {
    let h = harness("grp-genesis").await;
    let spec = json!({
        "replicas": 4,
        "template": {"metadata": {"labels": {"team": "chain"}}, "spec": {"chainId": "demo-1", "image": "seid:v1", "validator": {}}},
        "genesis": {"chainId": "demo-1", "accounts": [{"address": "sei1faucet", "balance": "5usei"}]},
        "updateStrategy": {"type": "InPlace"}
    });
    h.groups.create(&PostParams::default(), &group("net", spec)).await.unwrap();
    let g = wait_group(&h, "net", "Ready with the ceremony complete", |g| {
        g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Ready))
            && condition(g, "GenesisCeremonyComplete").as_deref() == Some("True")
    })
    .await;
    let status = g.status.clone().unwrap();
    assert_eq!(status.ready_replicas, 4);
    assert_eq!(status.nodes.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["net-0", "net-1", "net-2", "net-3"]);
    let hash = status.genesis_hash.clone().expect("the genesis hash the assembly reported");
    assert_eq!(hash.len(), 64);
    assert_eq!(status.genesis_s3_uri.as_deref(), Some("s3://local-genesis/demo-1/genesis.json"));
    assert!(status.plan.is_none(), "a completed group plan is cleared");
    assert!(status.ceremony_started_at.is_some());

    // The assembler (the first validator's sidecar) got every validator and the extra account,
    // under the plan's task id.
    let assembled = h.sidecar.node(h.ns.name(), "net-0").submitted();
    let assemble = assembled.iter().find(|r| r.task_type == "assemble-and-upload-genesis").expect("assembly submitted to net-0");
    let params = assemble.params.clone().unwrap();
    assert_eq!(params["nodes"], json!([{"name": "net-0"}, {"name": "net-1"}, {"name": "net-2"}, {"name": "net-3"}]));
    assert_eq!(params["accounts"], json!([{"address": "sei1faucet", "balance": "5usei"}]));

    // Every child ran its genesis plan and holds all four peers; each is the group's.
    let mut peer_lists = Vec::new();
    for i in 0..4 {
        let n = h.nodes.get(&format!("net-{i}")).await.unwrap();
        let ns = n.status.as_ref().unwrap();
        assert_eq!(ns.phase, Some(SeiNodePhase::Running));
        let types: Vec<&str> = ns.plan.as_ref().unwrap().tasks.iter().map(|t| t.task_type.as_str()).collect();
        assert!(types.contains(&"generate-gentx") && types.contains(&"set-genesis-peers"), "{types:?}");
        let ceremony = n.spec.validator.as_ref().unwrap().genesis_ceremony.clone().unwrap();
        assert_eq!((ceremony.chain_id.as_str(), ceremony.index), ("demo-1", i));
        assert_eq!(n.metadata.labels.as_ref().unwrap().get("team").map(String::as_str), Some("chain"));
        let owner = &n.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("SeiNodeDeployment", g.metadata.uid.as_deref().unwrap()));
        let peers = n.spec.peers.clone().expect("collect-and-set-peers wrote spec.peers");
        let addresses = peers[0].static_peers.as_ref().unwrap().addresses.clone();
        assert_eq!(addresses.len(), 4, "{addresses:?}");
        for j in 0..4 {
            assert!(
                addresses.iter().any(|a| a.ends_with(&format!("@net-{j}-0.net-{j}.{}.svc.cluster.local:26656", h.ns.name()))),
                "{addresses:?}"
            );
        }
        peer_lists.push(addresses);
    }
    assert!(peer_lists.windows(2).all(|w| w[0] == w[1]), "every node holds the same list");
    let ids: std::collections::BTreeSet<&str> = peer_lists[0].iter().filter_map(|a| a.split('@').next()).collect();
    assert_eq!(ids.len(), 4, "each peer is a node of its own (its sidecar's node id): {:?}", peer_lists[0]);
    // The status as a user reads it: the reference's key names.
    let raw = serde_json::to_value(&g).unwrap();
    assert!(raw.pointer("/status/genesisS3URI").is_some(), "{raw}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fork_genesis_exports_the_source_chain_through_an_exporter_first() {
    let h = harness("grp-forkgen").await;
    let spec = json!({
        "replicas": 2,
        "template": {"spec": {"chainId": "fork-1", "image": "seid:v2", "validator": {}}},
        "genesis": {"chainId": "fork-1", "fork": {"sourceChainId": "pacific-1", "sourceImage": "seid:pacific", "exportHeight": 1200}},
        "updateStrategy": {"type": "InPlace"}
    });
    // Every status the group is written with, to see the export's completion written before the
    // teardown of the exporter starts (`PERSIST_BEFORE` in host/src/group/reconcile.rs).
    let export_written_first = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let recorder = {
        use futures::StreamExt;
        use kube::runtime::WatchStreamExt;
        let (groups, seen) = (h.groups.clone(), export_written_first.clone());
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(groups, watcher::Config::default()).default_backoff());
            while let Some(event) = events.next().await {
                let Ok(watcher::Event::Apply(g) | watcher::Event::InitApply(g)) = event else { continue };
                let Some(plan) = g.status.and_then(|s| s.plan) else { continue };
                let task = |t: &str| plan.tasks.iter().find(|x| x.task_type == t).cloned();
                if let (Some(export), Some(teardown)) = (task("submit-export-state"), task("teardown-exporter"))
                    && export.status == TaskStatus::Complete
                    && teardown.submitted_at.is_none()
                {
                    seen.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        })
    };
    h.groups.create(&PostParams::default(), &group("fk", spec)).await.unwrap();

    // The exporter: a full node of the source chain restored at the export height (its
    // bootstrap Job is completed here, as a kubelet would), labelled as the group's exporter.
    let exporter = eventually("the exporter SeiNode", DEADLINE, || async { h.nodes.get_opt("fk-exporter").await.ok()? }).await.unwrap();
    assert_eq!((exporter.spec.chain_id.as_str(), exporter.spec.image.as_str()), ("pacific-1", "seid:pacific"));
    let labels = exporter.metadata.labels.clone().unwrap_or_default();
    assert_eq!(
        (labels.get("sei.io/role").map(String::as_str), labels.get("sei.io/nodedeployment").map(String::as_str)),
        (Some("exporter"), Some("fk"))
    );
    let snapshot = exporter.spec.full_node.as_ref().and_then(|f| f.snapshot.as_ref()).expect("a snapshot restore");
    assert_eq!(serde_json::to_value(snapshot).unwrap()["s3"]["targetHeight"], 1200);
    let jobs: Api<k8s_openapi::api::batch::v1::Job> = Api::namespaced(h.groups.clone().into_client(), h.ns.name());
    eventually("the exporter's bootstrap Job", DEADLINE, || async { jobs.get_opt("fk-exporter-bootstrap").await.ok()? }).await.unwrap();
    jobs.patch_status("fk-exporter-bootstrap", &PatchParams::default(), &Patch::Merge(&common::completed_job_status())).await.unwrap();

    let g = wait_group(&h, "fk", "Ready with the fork ceremony complete", |g| {
        g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Ready))
            && condition(g, "GenesisCeremonyComplete").as_deref() == Some("True")
    })
    .await;
    let status = g.status.clone().unwrap();
    assert_eq!(status.ready_replicas, 2);
    assert_eq!(status.genesis_hash.as_ref().map(String::len), Some(64));
    assert_eq!(condition(&g, "ForkGenesisCeremonyNeeded").as_deref(), Some("False"));

    // The exporter was asked for the state at the height, then torn down.
    let exported = h.sidecar.node(h.ns.name(), "fk-exporter").submitted();
    let export = exported.iter().find(|r| r.task_type == "export-state").expect("export-state on the exporter");
    assert_eq!(export.params, Some(json!({"height": 1200, "chainId": "pacific-1", "s3Key": "pacific-1/exported-state.json"})));
    eventually("the exporter gone", DEADLINE, || async { h.nodes.get_opt("fk-exporter").await.ok()?.is_none().then_some(()) })
        .await
        .unwrap();
    assert_eq!(names(&h).await, ["fk-0", "fk-1"]);
    recorder.abort();
    assert!(
        export_written_first.load(std::sync::atomic::Ordering::SeqCst),
        "no status held submit-export-state complete with teardown-exporter not started: the teardown ran before the export's completion was written"
    );

    // The fork genesis was assembled from the exported state by the first validator's sidecar.
    let assembled = h.sidecar.node(h.ns.name(), "fk-0").submitted();
    let assemble = assembled.iter().find(|r| r.task_type == "assemble-genesis-fork").expect("fork assembly on fk-0");
    let params = assemble.params.clone().unwrap();
    assert_eq!((params["sourceChainId"].as_str(), params["chainId"].as_str()), (Some("pacific-1"), Some("fork-1")));
    assert_eq!(params["nodes"], json!([{"name": "fk-0"}, {"name": "fk-1"}]));
    assert!(!assembled.iter().any(|r| r.task_type == "assemble-and-upload-genesis"), "a fork does not assemble a fresh genesis");
    for i in 0..2 {
        let n = h.nodes.get(&format!("fk-{i}")).await.unwrap();
        assert_eq!(n.status.as_ref().and_then(|s| s.phase), Some(SeiNodePhase::Running));
        assert_eq!(n.spec.peers.as_ref().and_then(|p| p[0].static_peers.as_ref()).map(|s| s.addresses.len()), Some(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_place_rollout_updates_one_node_at_a_time() {
    let h = harness("grp-inplace").await;
    let spec = json!({
        "replicas": 4,
        "template": {"spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}}},
        "updateStrategy": {"type": "InPlace", "maxUnavailable": 1}
    });
    h.groups.create(&PostParams::default(), &group("rpc", spec)).await.unwrap();
    wait_group(&h, "rpc", "Ready", |g| g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Ready) && s.ready_replicas == 4))
        .await;
    eventually("every node's rolled-out image observed in status.currentImage", DEADLINE, || async {
        let nodes = h.nodes.list(&Default::default()).await.ok()?.items;
        (nodes.len() == 4 && nodes.iter().all(|n| n.status.as_ref().and_then(|s| s.current_image.as_deref()) == Some("seid:v1")))
            .then_some(())
    })
    .await
    .unwrap();

    // Record every change of the SeiNodes while the rollout runs.
    let history: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let recorder = {
        let history = history.clone();
        let api = h.nodes.clone();
        tokio::spawn(async move {
            use futures::StreamExt;
            let mut events = std::pin::pin!(watcher(api, watcher::Config::default()));
            while let Some(Ok(event)) = events.next().await {
                if let watcher::Event::Apply(n) | watcher::Event::InitApply(n) = event {
                    let status = n.status.clone().unwrap_or_default();
                    let name = n.metadata.name.clone().unwrap_or_default();
                    history.lock().unwrap().push((name, n.spec.image.clone(), status.current_image, status.phase));
                }
            }
        })
    };
    h.groups
        .patch("rpc", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"template": {"spec": {"image": "seid:v2"}}}})))
        .await
        .unwrap();
    let g = wait_group(&h, "rpc", "the rollout complete", |g| {
        g.status.as_ref().is_some_and(|s| s.rollout.is_none() && s.template_hash.is_some() && s.phase == Some(GroupPhase::Ready))
            && g.status.as_ref().and_then(|s| s.observed_generation) == g.metadata.generation
    })
    .await;
    recorder.abort();
    assert_eq!(condition(&g, "RolloutInProgress").as_deref(), Some("False"));
    for i in 0..4 {
        let n = h.nodes.get(&format!("rpc-{i}")).await.unwrap();
        assert_eq!(n.spec.image, "seid:v2");
        let s = n.status.unwrap();
        assert_eq!((s.current_image.as_deref(), s.phase), (Some("seid:v2"), Some(SeiNodePhase::Running)), "rpc-{i}");
    }

    // Replay the history: at no point was more than one node asked for v2 without running it,
    // and node i+1 was asked only after node i ran v2.
    let history = history.lock().unwrap().clone();
    let mut state: std::collections::BTreeMap<String, (String, Option<String>, Option<SeiNodePhase>)> = Default::default();
    let mut asked_at = std::collections::BTreeMap::new();
    let mut done_at = std::collections::BTreeMap::new();
    for (i, (name, image, current, phase)) in history.iter().enumerate() {
        state.insert(name.clone(), (image.clone(), current.clone(), *phase));
        if image == "seid:v2" {
            asked_at.entry(name.clone()).or_insert(i);
        }
        if current.as_deref() == Some("seid:v2") && *phase == Some(SeiNodePhase::Running) {
            done_at.entry(name.clone()).or_insert(i);
        }
        let away: Vec<&String> = state
            .iter()
            .filter(|(_, (img, cur, ph))| img == "seid:v2" && (cur.as_deref() != Some("seid:v2") || *ph != Some(SeiNodePhase::Running)))
            .map(|(n, _)| n)
            .collect();
        assert!(away.len() <= 1, "more than one node away from the new image at event {i}: {away:?}");
    }
    for i in 1..4 {
        let (prev, this) = (format!("rpc-{}", i - 1), format!("rpc-{i}"));
        assert!(done_at[&prev] < asked_at[&this], "{this} was updated before {prev} ran the new image");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_deletes_the_highest_ordinals_and_retain_keeps_the_children() {
    let h = harness("grp-scale").await;
    let spec = json!({
        "replicas": 4,
        "deletionPolicy": "Retain",
        "template": {"spec": {"chainId": "pacific-1", "image": "seid:v1", "archive": {}}},
        "updateStrategy": {"type": "InPlace"}
    });
    h.groups.create(&PostParams::default(), &group("arc", spec)).await.unwrap();
    wait_group(&h, "arc", "4 children", |g| g.status.as_ref().is_some_and(|s| s.nodes.len() == 4)).await;
    h.groups.patch("arc", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 2}}))).await.unwrap();
    eventually("arc-3 and arc-2 gone, arc-0 and arc-1 kept", DEADLINE, || async {
        let names: Vec<String> = h.nodes.list(&Default::default()).await.ok()?.items.into_iter().filter_map(|n| n.metadata.name).collect();
        (names == ["arc-0", "arc-1"]).then_some(())
    })
    .await
    .unwrap();
    wait_group(&h, "arc", "2 nodes listed", |g| g.status.as_ref().is_some_and(|s| s.nodes.len() == 2 && s.replicas == 2)).await;

    h.groups.delete("arc", &DeleteParams::default()).await.unwrap();
    eventually("the group gone", DEADLINE, || async { h.groups.get_opt("arc").await.ok()?.is_none().then_some(()) }).await.unwrap();
    for name in ["arc-0", "arc-1"] {
        let n = h.nodes.get(name).await.unwrap_or_else(|e| panic!("{name} retained: {e}"));
        assert!(n.metadata.deletion_timestamp.is_none(), "{name} is not being deleted");
        assert!(
            n.metadata.owner_references.unwrap_or_default().iter().all(|o| o.kind != "SeiNodeDeployment"),
            "{name} no longer names the group as its owner, so the garbage collector leaves it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_assembly_is_retried_and_an_overrun_ceremony_fails_the_group() {
    let h = harness("grp-fail").await;
    // The assembler's sidecar refuses the assembly: the task is retried, and the ceremony's
    // deadline (the shortest the schema allows) fails the group.
    h.sidecar
        .script("assemble-and-upload-genesis", sei_operator::adapters::sidecar::Script::FailAfter(0, "gentx of net-2 is missing".into()));
    let spec = json!({
        "replicas": 2,
        "template": {"spec": {"chainId": "bad-1", "image": "seid:v1", "validator": {}}},
        "genesis": {"chainId": "bad-1", "maxCeremonyDuration": "1m"},
        "updateStrategy": {"type": "InPlace"}
    });
    h.groups.create(&PostParams::default(), &group("bad", spec)).await.unwrap();
    // The assembly is retried within its budget (180): its failure shows as a retry first.
    let g = wait_group(&h, "bad", "the assembly retried", |g| {
        g.status.as_ref().and_then(|s| s.plan.as_ref()).is_some_and(|p| p.tasks[0].retry_count >= 1)
    })
    .await;
    let task = &g.status.as_ref().unwrap().plan.as_ref().unwrap().tasks[0];
    assert_eq!(task.task_type, "assemble-and-upload-genesis");
    let error = task.error.clone().unwrap_or_default();
    assert!(error.contains("gentx of net-2 is missing") && error.contains("sei-builtin-group"), "the reason names the module: {error}");
    assert_eq!(g.status.as_ref().unwrap().plan.as_ref().unwrap().phase, TaskPlanPhase::Active);

    // A minute after it started, the ceremony has overrun: the group fails, saying why.
    let g = wait_group(&h, "bad", "Failed by its ceremony deadline", |g| {
        g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Failed))
    })
    .await;
    let status = g.status.clone().unwrap();
    let complete = status.conditions.iter().find(|c| c.type_ == "GenesisCeremonyComplete").unwrap();
    assert_eq!((complete.status.as_str(), complete.reason.as_str()), ("False", "CeremonyTimedOut"));
    assert!(complete.message.contains("maxCeremonyDuration 1m"), "{}", complete.message);
    let plan = status.plan.unwrap();
    assert_eq!(plan.phase, TaskPlanPhase::Failed);
    assert!(plan.failed_task_detail.unwrap().error.contains("did not complete within maxCeremonyDuration 1m"));
}

/// A template change rolled out with `strategy`: returns the group once the rollout completed.
async fn roll_out(h: &Harness, name: &str, image: &str) -> SeiNodeDeployment {
    let change = json!({"spec": {"template": {"spec": {"image": image}}}});
    h.groups.patch(name, &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    wait_group(h, name, "the rollout complete", |g| {
        let s = g.status.as_ref();
        s.is_some_and(|s| s.rollout.is_none() && s.phase == Some(GroupPhase::Ready) && s.ready_replicas == g.spec.replicas)
            && s.and_then(|s| s.observed_generation) == g.metadata.generation
    })
    .await
}

async fn names(h: &Harness) -> Vec<String> {
    h.nodes.list(&Default::default()).await.unwrap().items.into_iter().filter_map(|n| n.metadata.name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hard_fork_halts_the_incumbents_at_the_height_and_hands_over_to_the_entrants() {
    let h = harness("grp-fork").await;
    let spec = json!({
        "replicas": 2,
        "template": {"spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}}},
        "updateStrategy": {"type": "HardFork", "hardFork": {"haltHeight": 5000}}
    });
    h.groups.create(&PostParams::default(), &group("fork", spec)).await.unwrap();
    let g = wait_group(&h, "fork", "Ready", |g| g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Ready))).await;
    let generation = g.metadata.generation.unwrap() + 1;
    let g = roll_out(&h, "fork", "seid:v2").await;
    let entrants = [format!("fork-g{generation}-0"), format!("fork-g{generation}-1")];
    assert_eq!(names(&h).await, entrants, "the incumbents were torn down, the entrants run");
    assert_eq!(g.status.as_ref().unwrap().nodes.iter().map(|n| n.name.clone()).collect::<Vec<_>>(), entrants);
    for (i, name) in entrants.iter().enumerate() {
        let n = h.nodes.get(name).await.unwrap();
        assert_eq!(n.spec.image, "seid:v2");
        let labels = n.metadata.labels.unwrap();
        assert_eq!(labels.get("sei.io/nodedeployment-ordinal"), Some(&i.to_string()));
        assert_eq!(labels.get("sei.io/revision"), Some(&generation.to_string()));
        // Each entrant was asked to reach the halt height.
        let asked = h.sidecar.node(h.ns.name(), name).submitted();
        let wait = asked.iter().find(|r| r.task_type == "await-condition").expect("await-condition on the entrant");
        assert_eq!(wait.params, Some(json!({"condition": "height", "targetHeight": 5000})));
    }
    for incumbent in ["fork-0", "fork-1"] {
        let told = h.sidecar.node(h.ns.name(), incumbent).submitted();
        let halt = told.iter().find(|r| r.task_type == "await-condition").expect("the halt signal");
        assert_eq!(halt.params, Some(json!({"condition": "height", "targetHeight": 5000, "action": "SIGTERM_SEID"})));
    }
    // A rollout does not recreate the old ordinals' names: the group is its entrants now.
    let poke = json!({"metadata": {"annotations": {"test/poke": "1"}}});
    h.groups.patch("fork", &PatchParams::default(), &Patch::Merge(&poke)).await.unwrap();
    wait_group(&h, "fork", "still Ready after a resync", |g| g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Ready))).await;
    assert_eq!(names(&h).await, entrants);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blue_green_brings_up_the_entrants_before_the_incumbents_go() {
    let h = harness("grp-bluegreen").await;
    let spec = json!({
        "replicas": 2,
        "template": {"spec": {"chainId": "pacific-1", "image": "seid:v1", "archive": {}}},
        "updateStrategy": {"type": "BlueGreen"},
        "networking": {}
    });
    h.groups.create(&PostParams::default(), &group("bg", spec)).await.unwrap();
    let g = wait_group(&h, "bg", "Ready", |g| g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Ready))).await;
    let generation = g.metadata.generation.unwrap() + 1;
    let services: Api<Service> = Api::namespaced(h.groups.clone().into_client(), h.ns.name());
    let selected = |s: &Service| s.spec.as_ref()?.selector.as_ref()?.get("sei.io/revision").cloned();
    let before = eventually("the external Service", DEADLINE, || async { services.get_opt("bg-external").await.ok()? }).await.unwrap();
    assert_eq!(selected(&before).as_deref(), Some("1"), "traffic goes to the incumbents' revision");

    // Record, in etcd's order (resourceVersions of one etcd), when the Service first selects the
    // entrants and when the first incumbent is marked for deletion.
    let switched_at: Arc<Mutex<Option<u64>>> = Arc::default();
    let torn_down_at: Arc<Mutex<Option<u64>>> = Arc::default();
    let rv = |m: &kube::api::ObjectMeta| m.resource_version.as_deref().and_then(|v| v.parse::<u64>().ok());
    let recorders = {
        use futures::StreamExt;
        let (switched, services, entrant_revision) = (switched_at.clone(), services.clone(), generation.to_string());
        let a = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(services, watcher::Config::default().fields("metadata.name=bg-external")));
            while let Some(Ok(event)) = events.next().await {
                if let watcher::Event::Apply(svc) | watcher::Event::InitApply(svc) = event
                    && svc.spec.as_ref().and_then(|s| s.selector.as_ref()).and_then(|s| s.get("sei.io/revision")) == Some(&entrant_revision)
                {
                    switched.lock().unwrap().get_or_insert(rv(&svc.metadata).unwrap_or(0));
                }
            }
        });
        let (torn, nodes) = (torn_down_at.clone(), h.nodes.clone());
        let b = tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(nodes, watcher::Config::default()));
            while let Some(Ok(event)) = events.next().await {
                let n = match event {
                    watcher::Event::Apply(n) | watcher::Event::InitApply(n) if n.metadata.deletion_timestamp.is_some() => n,
                    watcher::Event::Delete(n) => n,
                    _ => continue,
                };
                if ["bg-0", "bg-1"].contains(&n.metadata.name.as_deref().unwrap_or_default()) {
                    torn.lock().unwrap().get_or_insert(rv(&n.metadata).unwrap_or(0));
                }
            }
        });
        [a, b]
    };
    let change = json!({"spec": {"template": {"spec": {"image": "seid:v2"}}}});
    h.groups.patch("bg", &PatchParams::default(), &Patch::Merge(&change)).await.unwrap();
    // While the entrants come up, the incumbents still run: both generations exist at once.
    let entrant = format!("bg-g{generation}-0");
    eventually("entrants and incumbents side by side", DEADLINE, || async {
        let n = names(&h).await;
        (n.contains(&"bg-0".to_string()) && n.contains(&entrant)).then_some(())
    })
    .await
    .unwrap();
    let g = roll_out(&h, "bg", "seid:v2").await;
    assert_eq!(names(&h).await, [format!("bg-g{generation}-0"), format!("bg-g{generation}-1")]);
    assert_eq!(g.status.as_ref().unwrap().ready_replicas, 2);
    assert_eq!(
        g.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "RolloutInProgress").map(|c| c.status.as_str()),
        Some("False")
    );
    // Traffic moved to the entrants before any incumbent went.
    let after = services.get("bg-external").await.unwrap();
    assert_eq!(selected(&after), Some(generation.to_string()), "traffic goes to the entrants' revision");
    let (switched, torn) = eventually("both moments recorded", DEADLINE, || async {
        let s = *switched_at.lock().unwrap();
        let t = *torn_down_at.lock().unwrap();
        s.zip(t)
    })
    .await
    .unwrap();
    recorders.iter().for_each(|r| r.abort());
    assert!(switched < torn, "the Service switched (rv {switched}) before the first incumbent was torn down (rv {torn})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_group_task_is_denied_and_fails_only_its_group() {
    let h = harness_with("grp-hostile", true).await;
    // Someone else's SeiNode, which the hostile module tries to take over.
    let victim: SeiNode = serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": "victim"},
        "spec": {"chainId": "pacific-1", "image": "seid:v1", "archive": {}}
    }))
    .unwrap();
    h.nodes.create(&PostParams::default(), &victim).await.unwrap();
    let spec = json!({
        "replicas": 2,
        "template": {"spec": {"chainId": "net-9", "image": "seid:v1", "validator": {}}},
        "genesis": {"chainId": "net-9"},
        "updateStrategy": {"type": "InPlace"}
    });
    h.groups.create(&PostParams::default(), &group("net", spec)).await.unwrap();
    let g = wait_group(&h, "net", "Failed", |g| g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Failed))).await;
    let plan = g.status.unwrap().plan.unwrap();
    let detail = plan.failed_task_detail.unwrap();
    assert_eq!(detail.task_type, "collect-and-set-peers");
    assert!(detail.error.contains("denied"), "{}", detail.error);
    assert!(detail.error.contains("SeiNode victim is not a member of SeiNodeDeployment net"), "{}", detail.error);
    assert!(detail.error.contains("test-misbehaving"), "the module is named: {}", detail.error);
    // Nothing else changed: the victim is untouched, the children still run.
    let v = h.nodes.get("victim").await.unwrap();
    assert_eq!(v.spec.image, "seid:v1");
    assert!(v.metadata.owner_references.unwrap_or_default().is_empty());
    for child in ["net-0", "net-1"] {
        let n = h.nodes.get(child).await.unwrap();
        assert_eq!(n.status.unwrap().phase, Some(SeiNodePhase::Running), "{child}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ceremony_whose_sidecar_reports_no_hash_completes_once() {
    let h = harness("grp-nohash").await;
    h.sidecar.script("assemble-and-upload-genesis", sei_operator::adapters::sidecar::Script::CompleteWithoutOutput);
    let spec = json!({
        "replicas": 1,
        "template": {"spec": {"chainId": "quiet-1", "image": "seid:v1", "validator": {}}},
        "genesis": {"chainId": "quiet-1"},
        "updateStrategy": {"type": "InPlace"}
    });
    h.groups.create(&PostParams::default(), &group("quiet", spec)).await.unwrap();
    let g = wait_group(&h, "quiet", "Ready with the ceremony complete", |g| {
        g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Ready))
            && condition(g, "GenesisCeremonyComplete").as_deref() == Some("True")
    })
    .await;
    assert_eq!(g.status.as_ref().unwrap().genesis_hash, None, "nothing reported, nothing recorded");
    // Without the fix the condition never turns True: every reconcile planned a new ceremony.
    let submitted = h.sidecar.node(h.ns.name(), "quiet-0").submitted();
    assert_eq!(submitted.iter().filter(|r| r.task_type == "assemble-and-upload-genesis").count(), 1, "one assembly, one ceremony");
    let g = h.groups.get("quiet").await.unwrap();
    assert!(g.status.unwrap().plan.is_none(), "no second genesis plan");
}
