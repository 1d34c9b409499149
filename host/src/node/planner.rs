//! The planner: pure functions from a SeiNode (and what was observed of its objects) to the plan
//! it should run. No client, no clock, no randomness: the caller passes the new plan's id.
//!
//! Behaviour follows the reference controller: the mode planners, the sidecar progression with
//! `insert_before`, the base / bootstrap / genesis / convergence task lists, one params factory
//! (`params_for`, exhaustive over the closed `TaskType`, building the typed params of
//! `tasks-wasm/params` that the built-in modules read), UUID v5 task ids over
//! `planID/type/index`, and config-apply overrides merged common → mode → user. Fixed quirk: a Running node gets a convergence plan
//! only when its StatefulSet or Service drifts from what the node asks for.
//!
//! Invariants (tests below): every row of the reference's plan table (`table_*` tests), the
//! bootstrap plan's 19 tasks, the genesis plan's 11, `insert_before` erroring on a missing
//! target, ids distinct for a type appearing twice, and no convergence plan without drift.

use crate::api::seinode::{PeerSource, PlannedTask, SeiNode, SeiNodePhase, SnapshotSource, TaskPlan, TaskPlanPhase, TaskStatus};
use crate::platform::PlatformConfig;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use sei_task_params as params;
use sei_task_params::{TaskParams, TaskType};
use std::collections::BTreeMap;

pub use crate::api::seinode::{TASK_ID_NAMESPACE, task_id};

/// Retry budget of `configure-genesis` in a genesis ceremony (waits for the group's genesis).
pub const GENESIS_CONFIGURE_MAX_RETRIES: i32 = 180;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("SeiNode {0}: no mode is set (one of fullNode, archive, replayer, validator)")]
    NoMode(String),
    #[error("SeiNode {node}: {message}")]
    Invalid { node: String, message: String },
    #[error("insert_before: target {target} not found in [{progression}] (inserting {task})")]
    InsertTargetMissing { target: String, task: String, progression: String },
}

/// The mode of a node, in the reference's precedence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Full,
    Archive,
    Replayer,
    Validator,
}

impl Mode {
    pub fn of(node: &SeiNode) -> Option<Mode> {
        let s = &node.spec;
        if s.full_node.is_some() {
            Some(Mode::Full)
        } else if s.archive.is_some() {
            Some(Mode::Archive)
        } else if s.replayer.is_some() {
            Some(Mode::Replayer)
        } else if s.validator.is_some() {
            Some(Mode::Validator)
        } else {
            None
        }
    }

    /// The `mode` of config-apply (a replayer is configured as a full node).
    pub fn config_mode(self) -> &'static str {
        match self {
            Mode::Full | Mode::Replayer => "full",
            Mode::Archive => "archive",
            Mode::Validator => "validator",
        }
    }
}

fn node_name(node: &SeiNode) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

fn node_namespace(node: &SeiNode) -> String {
    node.metadata.namespace.clone().unwrap_or_default()
}

/// The node's snapshot source: fullNode / validator snapshot, the replayer's, none for archive.
pub fn snapshot_source(node: &SeiNode) -> Option<&SnapshotSource> {
    let s = &node.spec;
    match Mode::of(node)? {
        Mode::Full => s.full_node.as_ref()?.snapshot.as_ref(),
        Mode::Archive => None,
        Mode::Replayer => s.replayer.as_ref().map(|r| &r.snapshot),
        Mode::Validator => s.validator.as_ref()?.snapshot.as_ref(),
    }
}

/// The reference's mode validation (beyond the CRD schema).
pub fn validate(node: &SeiNode) -> Result<Mode, PlanError> {
    let name = node_name(node);
    let mode = Mode::of(node).ok_or_else(|| PlanError::NoMode(name.clone()))?;
    let invalid = |message: &str| PlanError::Invalid { node: name.clone(), message: message.to_string() };
    let bootstrap_rule = |snap: Option<&SnapshotSource>| -> Result<(), PlanError> {
        if let Some(s) = snap
            && s.bootstrap_image.as_deref().is_some_and(|i| !i.is_empty())
            && s.s3.as_ref().is_none_or(|s3| s3.target_height <= 0)
        {
            return Err(invalid("snapshot.bootstrapImage needs snapshot.s3 with targetHeight > 0"));
        }
        Ok(())
    };
    match mode {
        Mode::Full => bootstrap_rule(snapshot_source(node))?,
        Mode::Archive => {}
        Mode::Replayer => {
            let snap = snapshot_source(node);
            if snap.and_then(|s| s.s3.as_ref()).is_none_or(|s3| s3.target_height <= 0) {
                return Err(invalid("a replayer needs snapshot.s3 with targetHeight > 0"));
            }
            if node.spec.peers.as_ref().is_none_or(|p| p.is_empty()) {
                return Err(invalid("a replayer needs at least one peer source"));
            }
        }
        Mode::Validator => match node.spec.validator.as_ref().and_then(|v| v.genesis_ceremony.as_ref()) {
            Some(gc) if gc.chain_id.is_empty() || gc.staking_amount.is_empty() => {
                return Err(invalid("genesisCeremony needs chainId and stakingAmount"));
            }
            Some(_) => {}
            None => bootstrap_rule(snapshot_source(node))?,
        },
    }
    Ok(mode)
}

/// Bootstrap when the snapshot has s3 with a target height and a bootstrap image.
pub fn needs_bootstrap(node: &SeiNode) -> bool {
    snapshot_source(node).is_some_and(|s| {
        s.bootstrap_image.as_deref().is_some_and(|i| !i.is_empty()) && s.s3.as_ref().is_some_and(|s3| s3.target_height > 0)
    })
}

/// `snapshot`, `state-sync` or `genesis`.
fn bootstrap_mode(snap: Option<&SnapshotSource>) -> &'static str {
    match snap {
        Some(s) if s.s3.is_some() => "snapshot",
        Some(s) if s.state_sync.is_some() => "state-sync",
        _ => "genesis",
    }
}

/// Insert `task` right before the first `target`; unchanged if `task` is already present; an
/// error if `target` is absent.
pub fn insert_before<T: Copy + PartialEq + std::fmt::Display>(progression: &mut Vec<T>, target: T, task: T) -> Result<(), PlanError> {
    if progression.contains(&task) {
        return Ok(());
    }
    match progression.iter().position(|t| *t == target) {
        Some(i) => {
            progression.insert(i, task);
            Ok(())
        }
        None => Err(PlanError::InsertTargetMissing {
            target: target.to_string(),
            task: task.to_string(),
            progression: progression.iter().map(T::to_string).collect::<Vec<_>>().join(", "),
        }),
    }
}

/// The sidecar progression (the reference's `buildSidecarProgression`).
pub fn sidecar_progression(snap: Option<&SnapshotSource>, has_peers: bool) -> Result<Vec<TaskType>, PlanError> {
    use TaskType::*;
    let mut p: Vec<TaskType> = match bootstrap_mode(snap) {
        "snapshot" => vec![SnapshotRestore, ConfigApply, ConfigValidate, MarkReady],
        _ => vec![ConfigApply, ConfigValidate, MarkReady],
    };
    insert_before(&mut p, ConfigApply, ConfigureGenesis)?;
    if has_peers {
        insert_before(&mut p, ConfigValidate, DiscoverPeers)?;
    }
    if snap.is_some() {
        insert_before(&mut p, ConfigValidate, ConfigureStateSync)?;
    }
    Ok(p)
}

/// Config overrides, composed as the reference does: common, then the mode's controller overrides, then the user's.
pub fn config_apply_overrides(node: &SeiNode, mode: Mode) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(addr) = node.status.as_ref().and_then(|s| s.external_address.as_deref()).filter(|a| !a.is_empty()) {
        out.insert("network.p2p.external_address".to_string(), addr.to_string());
    }
    let mut put = |k: &str, v: String| {
        out.insert(k.to_string(), v);
    };
    match mode {
        Mode::Full => {
            if let Some(g) = node.spec.full_node.as_ref().and_then(|f| f.snapshot_generation.as_ref()) {
                put("storage.snapshot_interval", "2000".into());
                put("storage.snapshot_keep_recent", g.keep_recent.to_string());
                put("storage.pruning_keep_recent", "50000".into());
                put("storage.pruning_keep_every", "0".into());
                put("chain.min_retain_blocks", "50000".into());
                put("network.p2p.max_connections", "500".into());
                put("network.p2p.send_rate", "20971520".into());
                put("network.p2p.recv_rate", "20971520".into());
            }
        }
        Mode::Archive => {
            if let Some(g) = node.spec.archive.as_ref().and_then(|a| a.snapshot_generation.as_ref()) {
                put("storage.snapshot_interval", "2000".into());
                put("storage.snapshot_keep_recent", g.keep_recent.to_string());
            }
        }
        Mode::Replayer => {
            put("storage.state_commit.async_commit_buffer", "100".into());
            put("storage.state_commit.memiavl.snapshot_keep_recent", "2".into());
            put("storage.state_commit.memiavl.snapshot_min_time_interval", "3600".into());
        }
        Mode::Validator => {}
    }
    for (k, v) in node.spec.overrides.iter().flatten() {
        out.insert(k.clone(), v.clone());
    }
    out
}

fn peer_sources(node: &SeiNode) -> Vec<params::PeerSource> {
    let resolved: Vec<String> = node.status.as_ref().map(|s| s.resolved_peers.clone()).unwrap_or_default();
    node.spec
        .peers
        .iter()
        .flatten()
        .filter_map(|p: &PeerSource| {
            if let Some(e) = &p.ec2_tags {
                Some(params::PeerSource::Ec2Tags { region: e.region.clone(), tags: e.tags.clone() })
            } else if let Some(s) = &p.static_peers {
                Some(params::PeerSource::Static { addresses: s.addresses.clone() })
            } else {
                p.label.as_ref().map(|_| params::PeerSource::DnsEndpoints { endpoints: resolved.clone() })
            }
        })
        .collect()
}

/// The single params factory (`snap` is `None` for the post-bootstrap
/// progression). `None`: the task has no params for this node (a genesis task outside a
/// ceremony; the planner puts those only in genesis plans).
pub fn params_for(
    node: &SeiNode,
    mode: Mode,
    task: TaskType,
    snap: Option<&SnapshotSource>,
    platform: &PlatformConfig,
) -> Option<TaskParams> {
    let name = node_name(node);
    let namespace = node_namespace(node);
    let gc = node.spec.validator.as_ref().and_then(|v| v.genesis_ceremony.as_ref());
    let bootstrap_job = format!("{name}-bootstrap");
    Some(match task {
        TaskType::EnsureDataPvc => {
            let (storage_class, storage_size) = match mode {
                Mode::Archive => (platform.storage_class_archive.clone(), platform.storage_size_archive.clone()),
                _ => {
                    (platform.storage_class_perf.clone().or(platform.storage_class_default.clone()), platform.storage_size_default.clone())
                }
            };
            TaskParams::EnsureDataPvc(params::EnsureDataPvc { node_name: name, namespace, storage_class, storage_size })
        }
        TaskType::ApplyStatefulSet => TaskParams::ApplyStatefulSet(params::ApplyStatefulSet {
            node_name: name,
            namespace,
            platform: statefulset_platform(mode, platform),
        }),
        TaskType::ApplyService => TaskParams::ApplyService(params::NodeObject { node_name: name, namespace }),
        TaskType::DeployBootstrapService => {
            TaskParams::DeployBootstrapService(params::DeployBootstrapService { service_name: name, namespace })
        }
        TaskType::DeployBootstrapJob => TaskParams::DeployBootstrapJob(params::DeployBootstrapJob {
            job_name: bootstrap_job,
            namespace,
            platform: statefulset_platform(mode, platform),
        }),
        TaskType::AwaitBootstrapComplete => {
            TaskParams::AwaitBootstrapComplete(params::AwaitBootstrapComplete { job_name: bootstrap_job, namespace })
        }
        TaskType::TeardownBootstrap => {
            TaskParams::TeardownBootstrap(params::TeardownBootstrap { job_name: bootstrap_job, service_name: name, namespace })
        }
        TaskType::SnapshotRestore => TaskParams::SnapshotRestore(params::SnapshotRestore {
            target_height: snap.and_then(|s| s.s3.as_ref()).map(|s3| s3.target_height).filter(|h| *h > 0),
        }),
        TaskType::ConfigureGenesis => TaskParams::ConfigureGenesis(params::NoParams {}),
        TaskType::ConfigValidate => TaskParams::ConfigValidate(params::NoParams {}),
        TaskType::MarkReady => TaskParams::MarkReady(params::NoParams {}),
        TaskType::SetGenesisPeers => {
            gc?;
            TaskParams::SetGenesisPeers(params::NoParams {})
        }
        TaskType::ConfigApply => TaskParams::ConfigApply(params::ConfigApply {
            mode: mode.config_mode().to_string(),
            overrides: config_apply_overrides(node, mode),
        }),
        TaskType::DiscoverPeers => TaskParams::DiscoverPeers(params::DiscoverPeers { sources: peer_sources(node) }),
        TaskType::ConfigureStateSync => TaskParams::ConfigureStateSync(params::ConfigureStateSync {
            use_local_snapshot: snap.and_then(|s| s.s3.as_ref()).map(|_| true),
            trust_period: snap.and_then(|s| s.trust_period.clone()).filter(|t| !t.is_empty()),
            backfill_blocks: snap.and_then(|s| s.backfill_blocks).filter(|b| *b > 0),
        }),
        TaskType::GenerateIdentity => {
            TaskParams::GenerateIdentity(params::GenerateIdentity { chain_id: gc?.chain_id.clone(), moniker: name })
        }
        TaskType::GenerateGentx => {
            let g = gc?;
            TaskParams::GenerateGentx(params::GenerateGentx {
                chain_id: g.chain_id.clone(),
                staking_amount: g.staking_amount.clone(),
                account_balance: g.account_balance.clone(),
                genesis_params: g.genesis_params.clone().filter(|s| !s.is_empty()),
            })
        }
        TaskType::UploadGenesisArtifacts => {
            gc?;
            TaskParams::UploadGenesisArtifacts(params::UploadGenesisArtifacts { node_name: name })
        }
    })
}

/// The platform part of `apply-statefulset`'s and `deploy-bootstrap-job`'s params (node pool and
/// requests by mode).
pub fn statefulset_platform(mode: Mode, platform: &PlatformConfig) -> params::Platform {
    let archive = mode == Mode::Archive;
    let pick = |a: &Option<String>, d: &Option<String>| if archive { a.clone().or(d.clone()) } else { d.clone() };
    params::Platform {
        sidecar_image: platform.sidecar_image.clone(),
        genesis_bucket: platform.genesis_bucket.clone(),
        genesis_region: platform.genesis_region.clone(),
        snapshot_bucket: platform.snapshot_bucket.clone(),
        snapshot_region: platform.snapshot_region.clone(),
        service_account: platform.service_account.clone(),
        toleration_key: platform.toleration_key.clone(),
        node_pool: pick(&platform.node_pool_archive, &platform.node_pool),
        cpu: pick(&platform.cpu_archive, &platform.cpu_default),
        memory: pick(&platform.memory_archive, &platform.memory_default),
    }
}

fn plan_of(plan_id: &str, tasks: Vec<(TaskType, Option<TaskParams>)>, target: SeiNodePhase, failed: Option<SeiNodePhase>) -> TaskPlan {
    TaskPlan {
        id: plan_id.to_string(),
        phase: TaskPlanPhase::Active,
        tasks: tasks
            .into_iter()
            .enumerate()
            .map(|(i, (t, params))| PlannedTask {
                task_type: t.as_str().to_string(),
                id: task_id(plan_id, t.as_str(), i),
                status: TaskStatus::Pending,
                params: params.map(|p| p.to_json()),
                max_retries: 0,
                ..Default::default()
            })
            .collect(),
        target_phase: Some(target),
        failed_phase: failed,
        failed_task_index: None,
        failed_task_detail: None,
    }
}

/// What was observed of the node's StatefulSet and Service, for drift detection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Observed {
    /// The seid container image of the StatefulSet; `None` when it does not exist.
    pub statefulset_image: Option<String>,
    /// The StatefulSet's pod template labels.
    pub statefulset_labels: BTreeMap<String, String>,
    pub service_exists: bool,
    /// The StatefulSet has rolled its current template out: its status observed its generation
    /// and every replica is updated and ready.
    pub statefulset_rolled_out: bool,
}

/// The image a Running node runs, for `status.currentImage`: the StatefulSet's seid image once it
/// is rolled out and is the one the node asks for; otherwise what status said before.
pub fn current_image(node: &SeiNode, observed: &Observed) -> Option<String> {
    let previous = node.status.as_ref().and_then(|s| s.current_image.clone());
    match &observed.statefulset_image {
        Some(image) if observed.statefulset_rolled_out && *image == node.spec.image => Some(image.clone()),
        _ => previous,
    }
}

/// Why a Running node needs a convergence plan; `None`: no drift.
pub fn drift(node: &SeiNode, observed: &Observed) -> Option<String> {
    let Some(image) = &observed.statefulset_image else { return Some("the StatefulSet is missing".into()) };
    if *image != node.spec.image {
        return Some(format!("the StatefulSet runs {image}, the node asks for {}", node.spec.image));
    }
    if !observed.service_exists {
        return Some("the Service is missing".into());
    }
    let mut want = node.spec.pod_labels.clone().unwrap_or_default();
    want.insert("sei.io/node".into(), node_name(node));
    if want.iter().any(|(k, v)| observed.statefulset_labels.get(k) != Some(v)) {
        return Some("the pod labels differ from spec.podLabels".into());
    }
    None
}

/// The outcome of `resolve_plan`.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanDecision {
    /// The active plan goes on.
    Resume,
    /// Persist this plan (and the phase) before running anything.
    New { plan: TaskPlan, phase: SeiNodePhase, reason: String },
    /// Nothing to do (a Running node without drift, or a terminal Failed node).
    Idle,
}

/// The reference's `ResolvePlan`, pure: resume an Active plan, or build one for the node's mode
/// and phase. `plan_id` is the id a new plan gets (UUID v4 from the caller).
pub fn resolve_plan(
    node: &SeiNode,
    observed: &Observed,
    platform: &PlatformConfig,
    plan_id: &str,
    now: &Time,
) -> Result<PlanDecision, PlanError> {
    let status = node.status.clone().unwrap_or_default();
    if status.plan.as_ref().is_some_and(|p| p.phase == TaskPlanPhase::Active) {
        return Ok(PlanDecision::Resume);
    }
    let phase = status.phase.unwrap_or_default();
    if matches!(phase, SeiNodePhase::Failed | SeiNodePhase::Terminating) {
        return Ok(PlanDecision::Idle);
    }
    let mode = validate(node)?;
    if phase == SeiNodePhase::Running {
        // A failed convergence plan is rebuilt only after its back-off (no hot loop).
        let backing_off = status.plan.as_ref().filter(|p| p.phase == TaskPlanPhase::Failed).and_then(|p| {
            let i = usize::try_from(p.failed_task_index?).ok()?;
            super::stepper::wait_remaining(p.tasks.get(i)?, now)
        });
        if backing_off.is_some() {
            return Ok(PlanDecision::Idle);
        }
        return Ok(match drift(node, observed) {
            Some(reason) => PlanDecision::New { plan: build_convergence_plan(node, mode, platform, plan_id), phase, reason },
            None => PlanDecision::Idle,
        });
    }
    let (plan, reason) = if node.spec.validator.as_ref().is_some_and(|v| v.genesis_ceremony.is_some()) {
        (build_genesis_plan(node, mode, platform, plan_id), "genesis ceremony".to_string())
    } else if needs_bootstrap(node) {
        (build_bootstrap_plan(node, mode, platform, plan_id)?, "bootstrap from snapshot".to_string())
    } else {
        (build_base_plan(node, mode, platform, plan_id)?, format!("{} node initialisation", mode.config_mode()))
    };
    Ok(PlanDecision::New { plan, phase: SeiNodePhase::Initializing, reason })
}

fn has_peers(node: &SeiNode) -> bool {
    node.spec.peers.as_ref().is_some_and(|p| !p.is_empty())
}

/// The task list with the params of each task for this node.
fn with_params(
    node: &SeiNode,
    mode: Mode,
    types: &[TaskType],
    snap: Option<&SnapshotSource>,
    platform: &PlatformConfig,
) -> Vec<(TaskType, Option<TaskParams>)> {
    types.iter().map(|t| (*t, params_for(node, mode, *t, snap, platform))).collect()
}

/// The base plan.
pub fn build_base_plan(node: &SeiNode, mode: Mode, platform: &PlatformConfig, plan_id: &str) -> Result<TaskPlan, PlanError> {
    let snap = snapshot_source(node);
    let mut types = vec![TaskType::EnsureDataPvc, TaskType::ApplyStatefulSet, TaskType::ApplyService];
    types.extend(sidecar_progression(snap, has_peers(node))?);
    Ok(plan_of(plan_id, with_params(node, mode, &types, snap, platform), SeiNodePhase::Running, Some(SeiNodePhase::Failed)))
}

/// The bootstrap plan (19 tasks with peers).
pub fn build_bootstrap_plan(node: &SeiNode, mode: Mode, platform: &PlatformConfig, plan_id: &str) -> Result<TaskPlan, PlanError> {
    use TaskType::*;
    let snap = snapshot_source(node);
    let mut tasks = with_params(node, mode, &[EnsureDataPvc, DeployBootstrapService, DeployBootstrapJob], snap, platform);
    tasks.extend(with_params(node, mode, &sidecar_progression(snap, has_peers(node))?, snap, platform));
    let mut after = vec![AwaitBootstrapComplete, TeardownBootstrap, ApplyStatefulSet, ApplyService, ConfigureGenesis, ConfigApply];
    if has_peers(node) {
        after.push(DiscoverPeers);
    }
    after.extend([ConfigValidate, MarkReady]);
    tasks.extend(with_params(node, mode, &after, None, platform));
    Ok(plan_of(plan_id, tasks, SeiNodePhase::Running, Some(SeiNodePhase::Failed)))
}

/// The genesis-ceremony plan (11 tasks; `configure-genesis` may retry 180 times).
pub fn build_genesis_plan(node: &SeiNode, mode: Mode, platform: &PlatformConfig, plan_id: &str) -> TaskPlan {
    use TaskType::*;
    let types = [
        EnsureDataPvc,
        ApplyStatefulSet,
        ApplyService,
        GenerateIdentity,
        GenerateGentx,
        UploadGenesisArtifacts,
        ConfigureGenesis,
        ConfigApply,
        SetGenesisPeers,
        ConfigValidate,
        MarkReady,
    ];
    let mut plan = plan_of(plan_id, with_params(node, mode, &types, None, platform), SeiNodePhase::Running, Some(SeiNodePhase::Failed));
    for t in plan.tasks.iter_mut().filter(|t| t.task_type == ConfigureGenesis.as_str()) {
        t.max_retries = GENESIS_CONFIGURE_MAX_RETRIES;
    }
    plan
}

/// The convergence plan: `apply-statefulset`, `apply-service`; a failure leaves the node Running.
pub fn build_convergence_plan(node: &SeiNode, mode: Mode, platform: &PlatformConfig, plan_id: &str) -> TaskPlan {
    let tasks = with_params(node, mode, &[TaskType::ApplyStatefulSet, TaskType::ApplyService], None, platform);
    plan_of(plan_id, tasks, SeiNodePhase::Running, None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::seinode::*;
    use serde_json::{Value, json};
    use uuid::Uuid;

    /// `params_for` by task type name, as the JSON stored in the plan (`null`: none).
    fn params_json(n: &SeiNode, mode: Mode, task: &str, snap: Option<&SnapshotSource>, platform: &PlatformConfig) -> Value {
        let task = TaskType::parse(task).unwrap_or_else(|| panic!("unknown task type {task}"));
        params_for(n, mode, task, snap, platform).map(|p| p.to_json()).unwrap_or(Value::Null)
    }

    fn node(spec: serde_json::Value) -> SeiNode {
        let mut s = json!({"chainId": "pacific-1", "image": "seid:v1"});
        s.as_object_mut().unwrap().extend(spec.as_object().unwrap().clone());
        serde_json::from_value(json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "rpc", "namespace": "sei"},
            "spec": s
        }))
        .unwrap()
    }

    fn t0() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn types(plan: &TaskPlan) -> Vec<&str> {
        plan.tasks.iter().map(|t| t.task_type.as_str()).collect()
    }

    fn new_plan(n: &SeiNode) -> TaskPlan {
        match resolve_plan(n, &Observed::default(), &PlatformConfig::for_local(), "plan-1", &t0()).unwrap() {
            PlanDecision::New { plan, phase, .. } => {
                assert_eq!(phase, SeiNodePhase::Initializing);
                plan
            }
            other => panic!("{other:?}"),
        }
    }

    const STATIC_PEERS: &str = r#"[{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]"#;

    fn peers() -> Value {
        serde_json::from_str(STATIC_PEERS).unwrap()
    }

    #[test]
    fn table_full_s3_no_peers() {
        let p = new_plan(&node(json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}}}})));
        assert_eq!(
            types(&p),
            [
                "ensure-data-pvc",
                "apply-statefulset",
                "apply-service",
                "snapshot-restore",
                "configure-genesis",
                "config-apply",
                "configure-state-sync",
                "config-validate",
                "mark-ready"
            ]
        );
        assert_eq!(p.target_phase, Some(SeiNodePhase::Running));
        assert_eq!(p.failed_phase, Some(SeiNodePhase::Failed));
    }

    #[test]
    fn table_full_s3_peers() {
        let p = new_plan(&node(json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}}}, "peers": peers()})));
        assert_eq!(
            types(&p),
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
    }

    #[test]
    fn table_state_sync_peers_full_and_validator() {
        let want = [
            "ensure-data-pvc",
            "apply-statefulset",
            "apply-service",
            "configure-genesis",
            "config-apply",
            "discover-peers",
            "configure-state-sync",
            "config-validate",
            "mark-ready",
        ];
        for mode in ["fullNode", "validator"] {
            let p = new_plan(&node(json!({mode: {"snapshot": {"stateSync": {}}}, "peers": peers()})));
            assert_eq!(types(&p), want, "{mode}");
        }
    }

    #[test]
    fn table_no_snapshot_with_and_without_peers() {
        for mode in ["fullNode", "validator"] {
            let p = new_plan(&node(json!({mode: {}})));
            assert_eq!(
                types(&p),
                [
                    "ensure-data-pvc",
                    "apply-statefulset",
                    "apply-service",
                    "configure-genesis",
                    "config-apply",
                    "config-validate",
                    "mark-ready"
                ]
            );
            let p = new_plan(&node(json!({mode: {}, "peers": peers()})));
            assert_eq!(
                types(&p),
                [
                    "ensure-data-pvc",
                    "apply-statefulset",
                    "apply-service",
                    "configure-genesis",
                    "config-apply",
                    "discover-peers",
                    "config-validate",
                    "mark-ready"
                ]
            );
        }
    }

    #[test]
    fn table_archive_with_peers() {
        let p = new_plan(&node(json!({"archive": {}, "peers": peers()})));
        assert_eq!(
            types(&p),
            [
                "ensure-data-pvc",
                "apply-statefulset",
                "apply-service",
                "configure-genesis",
                "config-apply",
                "discover-peers",
                "config-validate",
                "mark-ready"
            ]
        );
    }

    #[test]
    fn table_replayer() {
        let p = new_plan(&node(json!({"replayer": {"snapshot": {"s3": {"targetHeight": 5}}}, "peers": peers()})));
        assert_eq!(
            types(&p),
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
        let apply = p.tasks.iter().find(|t| t.task_type == "config-apply").unwrap();
        assert_eq!(apply.params.as_ref().unwrap()["mode"], "full");
        assert_eq!(apply.params.as_ref().unwrap()["overrides"]["storage.state_commit.async_commit_buffer"], "100");
    }

    #[test]
    fn table_bootstrap_has_19_tasks() {
        let n = node(json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}, "bootstrapImage": "seid:boot"}}, "peers": peers()}));
        let p = new_plan(&n);
        assert_eq!(
            types(&p),
            [
                "ensure-data-pvc",
                "deploy-bootstrap-service",
                "deploy-bootstrap-job",
                "snapshot-restore",
                "configure-genesis",
                "config-apply",
                "discover-peers",
                "configure-state-sync",
                "config-validate",
                "mark-ready",
                "await-bootstrap-complete",
                "teardown-bootstrap",
                "apply-statefulset",
                "apply-service",
                "configure-genesis",
                "config-apply",
                "discover-peers",
                "config-validate",
                "mark-ready"
            ]
        );
        let job_params = p.tasks[2].params.as_ref().unwrap();
        assert_eq!((job_params["jobName"].as_str(), job_params["namespace"].as_str()), (Some("rpc-bootstrap"), Some("sei")));
        assert_eq!(job_params["platform"]["snapshotBucket"], "local-snapshots");
        assert_eq!(p.tasks[11].params, Some(json!({"jobName": "rpc-bootstrap", "serviceName": "rpc", "namespace": "sei"})));
        // A type appearing twice gets distinct ids (the index differs).
        assert_ne!(p.tasks[4].id, p.tasks[14].id);
    }

    #[test]
    fn table_genesis_ceremony_has_11_tasks() {
        let n = node(
            json!({"validator": {"genesisCeremony": {"chainId": "c", "stakingAmount": "1usei", "accountBalance": "2usei", "index": 0}}, "peers": peers()}),
        );
        let p = new_plan(&n);
        assert_eq!(
            types(&p),
            [
                "ensure-data-pvc",
                "apply-statefulset",
                "apply-service",
                "generate-identity",
                "generate-gentx",
                "upload-genesis-artifacts",
                "configure-genesis",
                "config-apply",
                "set-genesis-peers",
                "config-validate",
                "mark-ready"
            ]
        );
        let budgets: Vec<i32> = p.tasks.iter().map(|t| t.max_retries).collect();
        assert_eq!(budgets[6], GENESIS_CONFIGURE_MAX_RETRIES);
        assert_eq!(budgets.iter().filter(|b| **b != 0).count(), 1);
        assert_eq!(p.tasks[3].params, Some(json!({"chainId": "c", "moniker": "rpc"})));
        assert_eq!(p.tasks[4].params, Some(json!({"chainId": "c", "stakingAmount": "1usei", "accountBalance": "2usei"})));
        assert_eq!(p.tasks[5].params, Some(json!({"nodeName": "rpc"})));
        assert_eq!(p.tasks[7].params, Some(json!({"mode": "validator"})));
    }

    fn running(mut n: SeiNode) -> SeiNode {
        n.status = Some(SeiNodeStatus { phase: Some(SeiNodePhase::Running), ..Default::default() });
        n
    }

    fn in_sync(n: &SeiNode) -> Observed {
        Observed {
            statefulset_image: Some(n.spec.image.clone()),
            statefulset_labels: BTreeMap::from([("sei.io/node".into(), "rpc".into())]),
            service_exists: true,
            statefulset_rolled_out: true,
        }
    }

    #[test]
    fn table_running_converges_only_on_drift() {
        let n = running(node(json!({"fullNode": {}})));
        let platform = PlatformConfig::for_local();
        assert_eq!(resolve_plan(&n, &in_sync(&n), &platform, "p", &t0()).unwrap(), PlanDecision::Idle);
        let mut drifted = in_sync(&n);
        drifted.statefulset_image = Some("seid:v0".into());
        match resolve_plan(&n, &drifted, &platform, "p", &t0()).unwrap() {
            PlanDecision::New { plan, phase, reason } => {
                assert_eq!(types(&plan), ["apply-statefulset", "apply-service"]);
                assert_eq!(plan.failed_phase, None, "a failed convergence leaves the node Running");
                assert_eq!(phase, SeiNodePhase::Running);
                assert!(reason.contains("seid:v0"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        let mut no_svc = in_sync(&n);
        no_svc.service_exists = false;
        assert!(matches!(resolve_plan(&n, &no_svc, &platform, "p", &t0()).unwrap(), PlanDecision::New { .. }));
    }

    #[test]
    fn failed_convergence_backs_off_before_a_new_plan() {
        let mut n = running(node(json!({"fullNode": {}})));
        let platform = PlatformConfig::for_local();
        let mut drifted = in_sync(&n);
        drifted.statefulset_image = Some("seid:v0".into());
        let PlanDecision::New { mut plan, .. } = resolve_plan(&n, &drifted, &platform, "p", &t0()).unwrap() else { panic!() };
        crate::node::stepper::record_step(
            &mut plan,
            0,
            crate::node::stepper::TaskOutcome::Failed { reason: "webhook said no".into(), retryable: false },
            "d",
            &t0(),
        );
        n.status.as_mut().unwrap().plan = Some(plan);
        assert_eq!(resolve_plan(&n, &drifted, &platform, "p2", &t0()).unwrap(), PlanDecision::Idle, "backing off");
        let later = crate::node::stepper::after(&t0(), crate::node::stepper::CONVERGENCE_RETRY_AFTER + std::time::Duration::from_secs(1));
        assert!(matches!(resolve_plan(&n, &drifted, &platform, "p2", &later).unwrap(), PlanDecision::New { .. }));
    }

    #[test]
    fn active_plan_resumes_and_failed_node_idles() {
        let mut n = node(json!({"fullNode": {}}));
        n.status =
            Some(SeiNodeStatus { plan: Some(TaskPlan { phase: TaskPlanPhase::Active, ..Default::default() }), ..Default::default() });
        assert_eq!(resolve_plan(&n, &Observed::default(), &PlatformConfig::for_local(), "p", &t0()).unwrap(), PlanDecision::Resume);
        n.status = Some(SeiNodeStatus { phase: Some(SeiNodePhase::Failed), ..Default::default() });
        assert_eq!(resolve_plan(&n, &Observed::default(), &PlatformConfig::for_local(), "p", &t0()).unwrap(), PlanDecision::Idle);
    }

    #[test]
    fn insert_before_errors_on_missing_target() {
        let mut p = vec!["config-apply", "mark-ready"];
        let err = insert_before(&mut p, "config-validate", "discover-peers").unwrap_err();
        assert_eq!(
            err.to_string(),
            "insert_before: target config-validate not found in [config-apply, mark-ready] (inserting discover-peers)"
        );
        insert_before(&mut p, "mark-ready", "config-validate").unwrap();
        insert_before(&mut p, "mark-ready", "config-validate").unwrap();
        assert_eq!(p, ["config-apply", "config-validate", "mark-ready"], "present already: unchanged");
    }

    #[test]
    fn current_image_is_the_rolled_out_image_the_node_asks_for() {
        let mut n = node(json!({"fullNode": {}}));
        n.status = Some(SeiNodeStatus { current_image: Some("seid:old".into()), ..Default::default() });
        let observed = |image: &str, rolled_out: bool| Observed {
            statefulset_image: Some(image.into()),
            statefulset_rolled_out: rolled_out,
            service_exists: true,
            ..Default::default()
        };
        assert_eq!(current_image(&n, &observed(&n.spec.image.clone(), true)), Some(n.spec.image.clone()));
        assert_eq!(current_image(&n, &observed(&n.spec.image.clone(), false)).as_deref(), Some("seid:old"), "still rolling out");
        assert_eq!(current_image(&n, &observed("seid:other", true)).as_deref(), Some("seid:old"), "not the image asked for");
    }

    #[test]
    fn task_ids_are_uuid_v5_of_plan_type_index() {
        let id = task_id("plan-1", "config-apply", 5);
        let parsed = Uuid::parse_str(&id).unwrap();
        assert_eq!(parsed.get_version_num(), 5);
        assert_eq!(id, Uuid::new_v5(&TASK_ID_NAMESPACE, b"plan-1/config-apply/5").to_string());
        assert_ne!(id, task_id("plan-2", "config-apply", 5));
        assert_eq!(TASK_ID_NAMESPACE.to_string(), "b7e89c3a-4f12-4d8b-9a6e-1c2d3e4f5a6b");
    }

    #[test]
    fn params_use_the_reference_wire_keys() {
        let mut n = node(json!({
            "fullNode": {"snapshot": {"s3": {"targetHeight": 42}, "trustPeriod": "9999h0m0s", "backfillBlocks": 10}},
            "peers": [
                {"ec2Tags": {"region": "eu-west-1", "tags": {"role": "sei"}}},
                {"static": {"addresses": ["a@h:1"]}},
                {"label": {"selector": {"role": "rpc"}}}
            ]
        }));
        n.status = Some(SeiNodeStatus { resolved_peers: vec!["x-0.x.sei.svc.cluster.local".into()], ..Default::default() });
        let snap = snapshot_source(&n);
        let platform = PlatformConfig::for_local();
        assert_eq!(params_json(&n, Mode::Full, "snapshot-restore", snap, &platform), json!({"targetHeight": 42}));
        assert_eq!(
            params_json(&n, Mode::Full, "configure-state-sync", snap, &platform),
            json!({"useLocalSnapshot": true, "trustPeriod": "9999h0m0s", "backfillBlocks": 10})
        );
        assert_eq!(
            params_json(&n, Mode::Full, "discover-peers", snap, &platform),
            json!({"sources": [
                {"type": "ec2Tags", "region": "eu-west-1", "tags": {"role": "sei"}},
                {"type": "static", "addresses": ["a@h:1"]},
                {"type": "dnsEndpoints", "endpoints": ["x-0.x.sei.svc.cluster.local"]}
            ]})
        );
        assert_eq!(params_json(&n, Mode::Full, "configure-genesis", snap, &platform), json!({}));
        assert_eq!(params_json(&n, Mode::Full, "mark-ready", snap, &platform), json!({}));
        assert_eq!(params_json(&n, Mode::Full, "generate-identity", snap, &platform), Value::Null, "no ceremony: null");
        assert_eq!(params_json(&n, Mode::Full, "set-genesis-peers", snap, &platform), Value::Null);
        assert_eq!(params_json(&n, Mode::Full, "snapshot-restore", None, &platform), json!({}));
    }

    #[test]
    fn overrides_merge_common_then_mode_then_user() {
        let mut n = node(json!({
            "fullNode": {"snapshotGeneration": {"keepRecent": 3}},
            "overrides": {"storage.snapshot_interval": "1000", "evm.http_port": "8545"}
        }));
        n.status = Some(SeiNodeStatus { external_address: Some("1.2.3.4:26656".into()), ..Default::default() });
        let o = config_apply_overrides(&n, Mode::Full);
        assert_eq!(o["network.p2p.external_address"], "1.2.3.4:26656");
        assert_eq!(o["storage.snapshot_keep_recent"], "3");
        assert_eq!(o["storage.snapshot_interval"], "1000", "the user's value wins");
        assert_eq!(o["evm.http_port"], "8545");
        assert!(config_apply_overrides(&node(json!({"validator": {}})), Mode::Validator).is_empty());
    }

    #[test]
    fn platform_storage_goes_into_pvc_params() {
        let platform = PlatformConfig {
            storage_class_perf: Some("perf".into()),
            storage_class_archive: Some("cold".into()),
            node_pool: Some("rpc-pool".into()),
            node_pool_archive: Some("archive-pool".into()),
            ..PlatformConfig::for_local()
        };
        let full = node(json!({"fullNode": {}}));
        assert_eq!(
            params_json(&full, Mode::Full, "ensure-data-pvc", None, &platform),
            json!({"nodeName": "rpc", "namespace": "sei", "storageClass": "perf", "storageSize": "2000Gi"})
        );
        let archive = node(json!({"archive": {}}));
        assert_eq!(params_json(&archive, Mode::Archive, "ensure-data-pvc", None, &platform)["storageClass"], "cold");
        assert_eq!(params_json(&archive, Mode::Archive, "ensure-data-pvc", None, &platform)["storageSize"], "20Ti");
        assert_eq!(params_json(&archive, Mode::Archive, "apply-statefulset", None, &platform)["platform"]["nodePool"], "archive-pool");
        assert_eq!(params_json(&full, Mode::Full, "apply-statefulset", None, &platform)["platform"]["nodePool"], "rpc-pool");
        assert_eq!(params_json(&full, Mode::Full, "apply-statefulset", None, &platform)["platform"]["snapshotBucket"], "local-snapshots");
    }

    #[test]
    fn validation_errors_name_the_node() {
        let err = validate(&node(json!({}))).unwrap_err();
        assert_eq!(err.to_string(), "SeiNode rpc: no mode is set (one of fullNode, archive, replayer, validator)");
        let err = validate(&node(json!({"replayer": {"snapshot": {"s3": {"targetHeight": 1}}}}))).unwrap_err();
        assert!(err.to_string().contains("at least one peer source"), "{err}");
        let err = validate(&node(json!({"fullNode": {"snapshot": {"stateSync": {}, "bootstrapImage": "x"}}}))).unwrap_err();
        assert!(err.to_string().contains("bootstrapImage"), "{err}");
    }
}
