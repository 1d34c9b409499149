//! The group planner: pure functions from a SeiNodeDeployment to the plan it should run. No
//! client, no clock, no randomness: the caller passes the new plan's id (and the time, where a
//! deadline is checked).
//!
//! Behaviour follows the reference's `ForGroup`: a genesis plan when the ceremony is due and
//! every incumbent child exists; else a deployment plan when a rollout is recorded; else none.
//! Task lists, params (typed, `tasks-wasm/params/src/group.rs`) and ids (UUID v5 over
//! `planID/type/index`, as node plans) are the reference's, with two changes:
//! - **peers are set after the children run**: `collect-and-set-peers` comes after
//!   `await-nodes-running`, so it never changes a child's spec while that child's genesis plan
//!   runs (the reference's quirk). The children get their genesis peers from the ceremony's
//!   artifacts (`set-genesis-peers`); `spec.peers` keeps them for every later plan;
//! - **InPlace in batches** of `maxUnavailable` (default 1): each batch runs the reference's
//!   `update-node-specs`, `await-spec-update`, `mark-nodes-ready`, and every batch but the last
//!   ends with `await-nodes-running` over its nodes, so the next batch starts only when the
//!   previous one is Running again. With one batch the plan is exactly the reference's.
//!
//! Invariants (tests below): every group plan row of the reference (`table_*`), the batching
//! (`in_place_batches_wait_for_the_previous_batch`), the order fix
//! (`peers_are_collected_after_the_children_run`), and the decision rules (`decide_*`).

use crate::api::seinode::{PlannedTask, TaskPlan, TaskPlanPhase, TaskStatus, task_id};
use crate::api::seinodedeployment::{GroupPhase, SeiNodeDeployment, UpdateStrategyType, condition};
use sei_task_params::group::{self as params, GroupTaskParams};
use sha2::{Digest, Sha256};

/// Retry budget of the genesis assembly (the reference's: it waits for every child's gentx).
pub const ASSEMBLE_MAX_RETRIES: i32 = 180;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupPlanError {
    #[error("SeiNodeDeployment {group}: {message}")]
    Invalid { group: String, message: String },
}

/// Which plan a group got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupPlanKind {
    Genesis,
    ForkGenesis,
    InPlace,
    BlueGreen,
    HardFork,
}

impl GroupPlanKind {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPlanKind::Genesis => "genesis",
            GroupPlanKind::ForkGenesis => "fork genesis",
            GroupPlanKind::InPlace => "InPlace rollout",
            GroupPlanKind::BlueGreen => "BlueGreen rollout",
            GroupPlanKind::HardFork => "HardFork rollout",
        }
    }
}

/// What the group should do about its plan.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupPlanDecision {
    /// The active plan in status goes on.
    Resume,
    /// No plan is due.
    Idle,
    /// Persist this plan, then run it.
    New { plan: TaskPlan, kind: GroupPlanKind },
}

fn group_name(g: &SeiNodeDeployment) -> String {
    g.metadata.name.clone().unwrap_or_default()
}

fn group_namespace(g: &SeiNodeDeployment) -> String {
    g.metadata.namespace.clone().unwrap_or_default()
}

/// The children of the group: `<name>-0` … `<name>-<replicas-1>`.
pub fn child_names(g: &SeiNodeDeployment) -> Vec<String> {
    let name = group_name(g);
    (0..g.spec.replicas.max(0)).map(|i| format!("{name}-{i}")).collect()
}

/// A rollout's new nodes: `<name>-g<generation>-<i>` (the reference's).
pub fn entrant_names(g: &SeiNodeDeployment, generation: i64) -> Vec<String> {
    let name = group_name(g);
    (0..g.spec.replicas.max(0)).map(|i| format!("{name}-g{generation}-{i}")).collect()
}

/// The fork exporter's name.
pub fn exporter_name(g: &SeiNodeDeployment) -> String {
    format!("{}-exporter", group_name(g))
}

/// 16 hex digits of sha256 over what a rollout changes: chain id, image, entrypoint, sidecar
/// image (the reference's fields). Labels, annotations and pod labels are synced without one.
pub fn template_hash(g: &SeiNodeDeployment) -> String {
    let s = &g.spec.template.spec;
    let mut h = Sha256::new();
    h.update(s.chain_id.as_bytes());
    h.update([0]);
    h.update(s.image.as_bytes());
    h.update([0]);
    if let Some(e) = &s.entrypoint {
        h.update(serde_json::to_vec(e).unwrap_or_default());
    }
    h.update([0]);
    if let Some(i) = s.sidecar.as_ref().and_then(|c| c.image.as_deref()) {
        h.update(i.as_bytes());
    }
    hex::encode(&h.finalize()[..8])
}

/// Whether the group's genesis ceremony is still to run, and which kind.
pub fn ceremony_due(g: &SeiNodeDeployment) -> Option<GroupPlanKind> {
    let genesis = g.spec.genesis.as_ref()?;
    let done = g
        .status
        .as_ref()
        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == condition::GENESIS_CEREMONY_COMPLETE && c.status == "True"));
    if done {
        return None;
    }
    Some(if genesis.fork.is_some() { GroupPlanKind::ForkGenesis } else { GroupPlanKind::Genesis })
}

/// The reference's `ForGroup`: resume an active plan; a genesis plan when the ceremony is due
/// and every child exists; a deployment plan when a rollout is recorded; else nothing. A failed
/// group idles (its failed plan stays in status).
pub fn resolve_group_plan(g: &SeiNodeDeployment, plan_id: &str) -> Result<GroupPlanDecision, GroupPlanError> {
    let status = g.status.clone().unwrap_or_default();
    if status.plan.as_ref().is_some_and(|p| p.phase == TaskPlanPhase::Active) {
        return Ok(GroupPlanDecision::Resume);
    }
    if status.phase == Some(GroupPhase::Failed) {
        return Ok(GroupPlanDecision::Idle);
    }
    if let Some(kind) = ceremony_due(g) {
        if status.incumbent_nodes.len() < usize::try_from(g.spec.replicas).unwrap_or(0) {
            return Ok(GroupPlanDecision::Idle);
        }
        let plan = genesis_plan(g, &status.incumbent_nodes, plan_id)?;
        return Ok(GroupPlanDecision::New { plan, kind });
    }
    if status.rollout.is_some() {
        let (plan, kind) = deployment_plan(g, plan_id)?;
        return Ok(GroupPlanDecision::New { plan, kind });
    }
    Ok(GroupPlanDecision::Idle)
}

fn plan_of(plan_id: &str, tasks: Vec<(GroupTaskParams, i32)>) -> TaskPlan {
    let tasks = tasks
        .into_iter()
        .enumerate()
        .map(|(i, (p, max_retries))| {
            let t = p.task_type().as_str();
            PlannedTask {
                task_type: t.to_string(),
                id: task_id(plan_id, t, i),
                status: TaskStatus::Pending,
                params: Some(p.to_json()),
                max_retries,
                ..Default::default()
            }
        })
        .collect();
    TaskPlan { id: plan_id.to_string(), phase: TaskPlanPhase::Active, tasks, target_phase: None, failed_phase: None, ..Default::default() }
}

/// The genesis plan over `nodes` (fork export first when `spec.genesis.fork` is set).
pub fn genesis_plan(g: &SeiNodeDeployment, nodes: &[String], plan_id: &str) -> Result<TaskPlan, GroupPlanError> {
    let name = group_name(g);
    let namespace = group_namespace(g);
    let genesis = g
        .spec
        .genesis
        .as_ref()
        .ok_or_else(|| GroupPlanError::Invalid { group: name.clone(), message: "no spec.genesis: no ceremony to plan".into() })?;
    let genesis_nodes: Vec<params::GenesisNode> = nodes.iter().map(|n| params::GenesisNode { name: n.clone() }).collect();
    let accounts: Vec<params::GenesisAccount> =
        genesis.accounts.iter().map(|a| params::GenesisAccount { address: a.address.clone(), balance: a.balance.clone() }).collect();
    let mut tasks = Vec::new();
    if let Some(fork) = &genesis.fork {
        let exporter = params::Exporter { exporter_name: exporter_name(g), namespace: namespace.clone() };
        tasks.push((
            GroupTaskParams::CreateExporter(params::CreateExporter {
                group_name: name.clone(),
                exporter_name: exporter_name(g),
                namespace: namespace.clone(),
                source_chain_id: fork.source_chain_id.clone(),
                source_image: fork.source_image.clone(),
                export_height: fork.export_height,
            }),
            0,
        ));
        tasks.push((GroupTaskParams::AwaitExporterRunning(exporter.clone()), 0));
        tasks.push((
            GroupTaskParams::SubmitExportState(params::SubmitExportState {
                exporter_name: exporter_name(g),
                namespace: namespace.clone(),
                export_height: fork.export_height,
                source_chain_id: fork.source_chain_id.clone(),
            }),
            0,
        ));
        tasks.push((GroupTaskParams::TeardownExporter(exporter), 0));
        tasks.push((
            GroupTaskParams::AssembleGenesisFork(params::AssembleGenesisFork {
                account_balance: genesis.account_balance.clone(),
                namespace: namespace.clone(),
                nodes: genesis_nodes,
                accounts,
                source_chain_id: fork.source_chain_id.clone(),
                chain_id: genesis.chain_id.clone(),
            }),
            ASSEMBLE_MAX_RETRIES,
        ));
    } else {
        tasks.push((
            GroupTaskParams::AssembleAndUploadGenesis(params::AssembleGenesis {
                account_balance: genesis.account_balance.clone(),
                namespace: namespace.clone(),
                nodes: genesis_nodes,
                accounts,
            }),
            ASSEMBLE_MAX_RETRIES,
        ));
    }
    tasks.push((
        GroupTaskParams::AwaitNodesRunning(params::AwaitNodesRunning {
            group_name: name.clone(),
            namespace: namespace.clone(),
            expected: i32::try_from(nodes.len()).unwrap_or(i32::MAX),
            node_names: nodes.to_vec(),
        }),
        0,
    ));
    tasks.push((GroupTaskParams::CollectAndSetPeers(params::GroupNodes { group_name: name, namespace, node_names: nodes.to_vec() }), 0));
    Ok(plan_of(plan_id, tasks))
}

/// The deployment plan of the recorded rollout, by the update strategy.
pub fn deployment_plan(g: &SeiNodeDeployment, plan_id: &str) -> Result<(TaskPlan, GroupPlanKind), GroupPlanError> {
    let name = group_name(g);
    let namespace = group_namespace(g);
    let invalid = |message: &str| GroupPlanError::Invalid { group: name.clone(), message: message.to_string() };
    let status = g.status.clone().unwrap_or_default();
    let rollout = status.rollout.ok_or_else(|| invalid("no rollout is recorded"))?;
    let incumbents = if rollout.incumbent_nodes.is_empty() { status.incumbent_nodes } else { rollout.incumbent_nodes };
    let nodes = |names: &[String]| params::Nodes { namespace: namespace.clone(), node_names: names.to_vec() };
    let running = |names: &[String]| {
        GroupTaskParams::AwaitNodesRunning(params::AwaitNodesRunning {
            group_name: name.clone(),
            namespace: namespace.clone(),
            expected: i32::try_from(names.len()).unwrap_or(i32::MAX),
            node_names: names.to_vec(),
        })
    };
    match g.spec.update_strategy.strategy_type {
        UpdateStrategyType::InPlace => {
            if incumbents.is_empty() {
                return Err(invalid("an InPlace rollout needs incumbent nodes"));
            }
            let batch = usize::try_from(g.spec.update_strategy.max_unavailable.unwrap_or(1).max(1)).unwrap_or(1);
            let template = &g.spec.template.spec;
            let batches: Vec<&[String]> = incumbents.chunks(batch).collect();
            let mut tasks = Vec::new();
            for (i, b) in batches.iter().enumerate() {
                tasks.push((
                    GroupTaskParams::UpdateNodeSpecs(params::UpdateNodeSpecs {
                        group_name: name.clone(),
                        namespace: namespace.clone(),
                        node_names: b.to_vec(),
                        image: template.image.clone(),
                        sidecar_image: template.sidecar.as_ref().and_then(|s| s.image.clone()),
                    }),
                    0,
                ));
                tasks.push((GroupTaskParams::AwaitSpecUpdate(nodes(b)), 0));
                tasks.push((GroupTaskParams::MarkNodesReady(nodes(b)), 0));
                if i + 1 < batches.len() {
                    tasks.push((running(b), 0));
                }
            }
            Ok((plan_of(plan_id, tasks), GroupPlanKind::InPlace))
        }
        kind @ (UpdateStrategyType::BlueGreen | UpdateStrategyType::HardFork) => {
            let revision = rollout.entrant_revision.clone().ok_or_else(|| invalid("the rollout has no entrant revision"))?;
            let entrants = rollout.entrant_nodes.clone();
            if entrants.is_empty() {
                return Err(invalid("the rollout has no entrant nodes"));
            }
            let mut tasks = vec![
                (
                    GroupTaskParams::CreateEntrantNodes(params::CreateEntrantNodes {
                        group_name: name.clone(),
                        namespace: namespace.clone(),
                        entrant_revision: revision.clone(),
                        node_names: entrants.clone(),
                    }),
                    0,
                ),
                (running(&entrants), 0),
            ];
            if kind == UpdateStrategyType::HardFork {
                let halt = g
                    .spec
                    .update_strategy
                    .hard_fork
                    .as_ref()
                    .map(|h| h.halt_height)
                    .filter(|h| *h >= 1)
                    .ok_or_else(|| invalid("a HardFork update needs hardFork.haltHeight >= 1"))?;
                tasks.push((
                    GroupTaskParams::SubmitHaltSignal(params::SubmitHaltSignal {
                        namespace: namespace.clone(),
                        node_names: incumbents.clone(),
                        halt_height: halt,
                    }),
                    0,
                ));
                tasks.push((
                    GroupTaskParams::AwaitNodesAtHeight(params::AwaitNodesAtHeight {
                        namespace: namespace.clone(),
                        node_names: entrants.clone(),
                        target_height: halt,
                    }),
                    0,
                ));
            } else {
                tasks.push((GroupTaskParams::AwaitNodesCaughtUp(nodes(&entrants)), 0));
            }
            tasks.push((
                GroupTaskParams::SwitchTraffic(params::SwitchTraffic {
                    group_name: name.clone(),
                    namespace: namespace.clone(),
                    entrant_revision: revision,
                }),
                0,
            ));
            tasks.push((GroupTaskParams::TeardownNodes(nodes(&incumbents)), 0));
            let kind = if kind == UpdateStrategyType::HardFork { GroupPlanKind::HardFork } else { GroupPlanKind::BlueGreen };
            Ok((plan_of(plan_id, tasks), kind))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::seinodedeployment::{RolloutStatus, SeiNodeDeploymentStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
    use serde_json::json;

    fn group(spec: serde_json::Value) -> SeiNodeDeployment {
        let mut g: SeiNodeDeployment = serde_json::from_value(json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment",
            "metadata": {"name": "net", "namespace": "sei", "generation": 3},
            "spec": spec
        }))
        .unwrap();
        g.status = Some(SeiNodeDeploymentStatus::default());
        g
    }

    fn genesis_group(fork: bool) -> SeiNodeDeployment {
        let mut genesis = json!({"chainId": "net-1", "accounts": [{"address": "sei1faucet", "balance": "9usei"}]});
        if fork {
            genesis["fork"] = json!({"sourceChainId": "pacific-1", "sourceImage": "seid:5", "exportHeight": 1000});
        }
        let mut g = group(json!({
            "replicas": 4,
            "template": {"spec": {"chainId": "net-1", "image": "seid:6", "validator": {}}},
            "genesis": genesis,
            "updateStrategy": {"type": "InPlace"}
        }));
        g.status.as_mut().unwrap().incumbent_nodes = child_names(&g);
        g
    }

    fn rollout_group(strategy: serde_json::Value, replicas: i32) -> SeiNodeDeployment {
        let mut g = group(json!({
            "replicas": replicas,
            "template": {"spec": {"chainId": "pacific-1", "image": "seid:7", "fullNode": {}, "sidecar": {"image": "seictl:2"}}},
            "updateStrategy": strategy
        }));
        let incumbents = child_names(&g);
        let entrants = entrant_names(&g, 3);
        let status = g.status.as_mut().unwrap();
        status.incumbent_nodes = incumbents.clone();
        status.rollout = Some(RolloutStatus {
            strategy: UpdateStrategyType::InPlace,
            target_hash: "abc".into(),
            incumbent_nodes: incumbents,
            entrant_nodes: entrants,
            incumbent_revision: Some("1".into()),
            entrant_revision: Some("3".into()),
            ..Default::default()
        });
        g
    }

    fn types(p: &TaskPlan) -> Vec<&str> {
        p.tasks.iter().map(|t| t.task_type.as_str()).collect()
    }

    fn params(p: &TaskPlan, i: usize) -> serde_json::Value {
        p.tasks[i].params.clone().unwrap()
    }

    fn new_plan(g: &SeiNodeDeployment) -> (TaskPlan, GroupPlanKind) {
        match resolve_group_plan(g, "plan-1").unwrap() {
            GroupPlanDecision::New { plan, kind } => (plan, kind),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn table_genesis() {
        let (p, kind) = new_plan(&genesis_group(false));
        assert_eq!(kind, GroupPlanKind::Genesis);
        assert_eq!(types(&p), ["assemble-and-upload-genesis", "await-nodes-running", "collect-and-set-peers"]);
        let names = json!(["net-0", "net-1", "net-2", "net-3"]);
        assert_eq!(
            params(&p, 0),
            json!({"accountBalance": crate::api::seinodedeployment::DEFAULT_ACCOUNT_BALANCE, "namespace": "sei",
                   "nodes": [{"name": "net-0"}, {"name": "net-1"}, {"name": "net-2"}, {"name": "net-3"}],
                   "accounts": [{"address": "sei1faucet", "balance": "9usei"}]})
        );
        assert_eq!(p.tasks[0].max_retries, ASSEMBLE_MAX_RETRIES);
        assert_eq!(params(&p, 1), json!({"groupName": "net", "namespace": "sei", "expected": 4, "nodeNames": names}));
        assert_eq!(params(&p, 2), json!({"groupName": "net", "namespace": "sei", "nodeNames": names}));
        assert_eq!((p.target_phase, p.failed_phase), (None, None), "group plans stamp no node phase");
        assert!(p.tasks.iter().all(|t| t.status == TaskStatus::Pending));
    }

    #[test]
    fn table_fork_genesis() {
        let (p, kind) = new_plan(&genesis_group(true));
        assert_eq!(kind, GroupPlanKind::ForkGenesis);
        assert_eq!(
            types(&p),
            [
                "create-exporter",
                "await-exporter-running",
                "submit-export-state",
                "teardown-exporter",
                "assemble-genesis-fork",
                "await-nodes-running",
                "collect-and-set-peers"
            ]
        );
        assert_eq!(
            params(&p, 0),
            json!({"groupName": "net", "exporterName": "net-exporter", "namespace": "sei", "sourceChainId": "pacific-1",
                   "sourceImage": "seid:5", "exportHeight": 1000})
        );
        assert_eq!(params(&p, 1), json!({"exporterName": "net-exporter", "namespace": "sei"}));
        assert_eq!(
            params(&p, 2),
            json!({"exporterName": "net-exporter", "namespace": "sei", "exportHeight": 1000, "sourceChainId": "pacific-1"})
        );
        assert_eq!(params(&p, 3), json!({"exporterName": "net-exporter", "namespace": "sei"}));
        assert_eq!(params(&p, 4)["sourceChainId"], "pacific-1");
        assert_eq!(params(&p, 4)["chainId"], "net-1");
        assert_eq!(p.tasks[4].max_retries, ASSEMBLE_MAX_RETRIES);
    }

    #[test]
    fn peers_are_collected_after_the_children_run() {
        for fork in [false, true] {
            let (p, _) = new_plan(&genesis_group(fork));
            let at = |t: &str| types(&p).iter().position(|x| *x == t).unwrap();
            assert!(at("await-nodes-running") < at("collect-and-set-peers"), "{:?}", types(&p));
        }
    }

    #[test]
    fn table_in_place_one_batch_is_the_references() {
        let (p, kind) = new_plan(&rollout_group(json!({"type": "InPlace", "maxUnavailable": 4}), 4));
        assert_eq!(kind, GroupPlanKind::InPlace);
        assert_eq!(types(&p), ["update-node-specs", "await-spec-update", "mark-nodes-ready"]);
        let names = json!(["net-0", "net-1", "net-2", "net-3"]);
        assert_eq!(
            params(&p, 0),
            json!({"groupName": "net", "namespace": "sei", "nodeNames": names, "image": "seid:7", "sidecarImage": "seictl:2"})
        );
        assert_eq!(params(&p, 1), json!({"namespace": "sei", "nodeNames": names}));
        assert_eq!(params(&p, 2), json!({"namespace": "sei", "nodeNames": names}));
    }

    #[test]
    fn in_place_batches_wait_for_the_previous_batch() {
        let (p, _) = new_plan(&rollout_group(json!({"type": "InPlace"}), 4));
        let mut want = Vec::new();
        for i in 0..4 {
            want.extend(["update-node-specs", "await-spec-update", "mark-nodes-ready"]);
            if i < 3 {
                want.push("await-nodes-running");
            }
        }
        assert_eq!(types(&p), want);
        assert_eq!(params(&p, 0)["nodeNames"], json!(["net-0"]));
        assert_eq!(params(&p, 3), json!({"groupName": "net", "namespace": "sei", "expected": 1, "nodeNames": ["net-0"]}));
        assert_eq!(params(&p, 4)["nodeNames"], json!(["net-1"]));
        assert_eq!(params(&p, 14)["nodeNames"], json!(["net-3"]));
        // Two at a time over five nodes: 2, 2, 1.
        let (p, _) = new_plan(&rollout_group(json!({"type": "InPlace", "maxUnavailable": 2}), 5));
        let batches: Vec<serde_json::Value> =
            p.tasks.iter().filter(|t| t.task_type == "update-node-specs").map(|t| t.params.clone().unwrap()["nodeNames"].clone()).collect();
        assert_eq!(batches, [json!(["net-0", "net-1"]), json!(["net-2", "net-3"]), json!(["net-4"])]);
        let ids: std::collections::BTreeSet<&str> = p.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids.len(), p.tasks.len(), "a type appearing in every batch still gets distinct ids");
    }

    #[test]
    fn table_hard_fork() {
        let (p, kind) = new_plan(&rollout_group(json!({"type": "HardFork", "hardFork": {"haltHeight": 5000}}), 2));
        assert_eq!(kind, GroupPlanKind::HardFork);
        assert_eq!(
            types(&p),
            [
                "create-entrant-nodes",
                "await-nodes-running",
                "submit-halt-signal",
                "await-nodes-at-height",
                "switch-traffic",
                "teardown-nodes"
            ]
        );
        let entrants = json!(["net-g3-0", "net-g3-1"]);
        let incumbents = json!(["net-0", "net-1"]);
        assert_eq!(params(&p, 0), json!({"groupName": "net", "namespace": "sei", "entrantRevision": "3", "nodeNames": entrants}));
        assert_eq!(params(&p, 1), json!({"groupName": "net", "namespace": "sei", "expected": 2, "nodeNames": entrants}));
        assert_eq!(params(&p, 2), json!({"namespace": "sei", "nodeNames": incumbents, "haltHeight": 5000}));
        assert_eq!(params(&p, 3), json!({"namespace": "sei", "nodeNames": entrants, "targetHeight": 5000}));
        assert_eq!(params(&p, 4), json!({"groupName": "net", "namespace": "sei", "entrantRevision": "3"}));
        assert_eq!(params(&p, 5), json!({"namespace": "sei", "nodeNames": incumbents}));
    }

    #[test]
    fn table_blue_green() {
        let (p, kind) = new_plan(&rollout_group(json!({"type": "BlueGreen"}), 2));
        assert_eq!(kind, GroupPlanKind::BlueGreen);
        assert_eq!(types(&p), ["create-entrant-nodes", "await-nodes-running", "await-nodes-caught-up", "switch-traffic", "teardown-nodes"]);
        assert_eq!(params(&p, 2), json!({"namespace": "sei", "nodeNames": ["net-g3-0", "net-g3-1"]}));
        assert_eq!(params(&p, 4), json!({"namespace": "sei", "nodeNames": ["net-0", "net-1"]}));
    }

    #[test]
    fn ids_are_uuid_v5_of_plan_type_index() {
        let (p, _) = new_plan(&genesis_group(false));
        for (i, t) in p.tasks.iter().enumerate() {
            assert_eq!(t.id, task_id("plan-1", &t.task_type, i));
        }
    }

    #[test]
    fn decide_resume_an_active_plan() {
        let mut g = genesis_group(false);
        g.status.as_mut().unwrap().plan = Some(TaskPlan { id: "p".into(), phase: TaskPlanPhase::Active, ..Default::default() });
        assert_eq!(resolve_group_plan(&g, "plan-2").unwrap(), GroupPlanDecision::Resume);
    }

    #[test]
    fn decide_genesis_waits_for_every_child() {
        let mut g = genesis_group(false);
        g.status.as_mut().unwrap().incumbent_nodes.pop();
        assert_eq!(resolve_group_plan(&g, "plan-1").unwrap(), GroupPlanDecision::Idle);
    }

    #[test]
    fn decide_no_second_ceremony_and_a_failed_group_idles() {
        let mut g = genesis_group(false);
        g.status.as_mut().unwrap().conditions.push(Condition {
            type_: condition::GENESIS_CEREMONY_COMPLETE.into(),
            status: "True".into(),
            reason: "CeremonyComplete".into(),
            message: String::new(),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
            observed_generation: None,
        });
        assert_eq!(ceremony_due(&g), None);
        assert_eq!(resolve_group_plan(&g, "plan-1").unwrap(), GroupPlanDecision::Idle, "complete, and no rollout");
        let mut failed = genesis_group(false);
        failed.status.as_mut().unwrap().phase = Some(GroupPhase::Failed);
        assert_eq!(resolve_group_plan(&failed, "plan-1").unwrap(), GroupPlanDecision::Idle);
    }

    #[test]
    fn decide_idle_without_genesis_or_rollout() {
        let g = group(
            json!({"replicas": 2, "template": {"spec": {"chainId": "c", "image": "i", "fullNode": {}}}, "updateStrategy": {"type": "InPlace"}}),
        );
        assert_eq!(resolve_group_plan(&g, "plan-1").unwrap(), GroupPlanDecision::Idle);
    }

    #[test]
    fn a_hard_fork_without_a_height_is_a_typed_error() {
        let g = rollout_group(json!({"type": "HardFork"}), 2);
        let err = resolve_group_plan(&g, "plan-1").unwrap_err();
        assert_eq!(err.to_string(), "SeiNodeDeployment net: a HardFork update needs hardFork.haltHeight >= 1");
    }

    #[test]
    fn template_hash_moves_with_what_a_rollout_changes_only() {
        let g = rollout_group(json!({"type": "InPlace"}), 2);
        let h = template_hash(&g);
        assert_eq!(h.len(), 16);
        assert!(h.chars().all(|c| c.is_ascii_hexdigit()));
        let mut image = g.clone();
        image.spec.template.spec.image = "seid:8".into();
        assert_ne!(template_hash(&image), h);
        let mut sidecar = g.clone();
        sidecar.spec.template.spec.sidecar.as_mut().unwrap().image = Some("seictl:3".into());
        assert_ne!(template_hash(&sidecar), h);
        let mut labels = g.clone();
        labels.spec.template.spec.pod_labels = Some([("team".to_string(), "x".to_string())].into());
        assert_eq!(template_hash(&labels), h, "pod labels are synced without a rollout");
    }
}
