//! The params of every task the sei-operator planner builds, one type per task, with the wire
//! keys of the reference task catalogue. The planner (in the host) serializes these types and the
//! built-in modules (in the guests) deserialize the same types, so a key the planner writes is a
//! key the module reads: a typo does not compile, and a missing key is `invalid-params`, not a
//! silent `null`.
//!
//! Invariants (unit tests below): every task type has exactly one params type
//! (`every_task_type_round_trips`), and the JSON of each is the reference's wire shape
//! (`wire_keys_match_the_reference`).

pub mod group;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Every task type the planner puts in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TaskType {
    EnsureDataPvc,
    ApplyStatefulSet,
    ApplyService,
    DeployBootstrapService,
    DeployBootstrapJob,
    AwaitBootstrapComplete,
    TeardownBootstrap,
    SnapshotRestore,
    ConfigureGenesis,
    ConfigApply,
    DiscoverPeers,
    ConfigureStateSync,
    ConfigValidate,
    MarkReady,
    GenerateIdentity,
    GenerateGentx,
    UploadGenesisArtifacts,
    SetGenesisPeers,
}

impl TaskType {
    pub const ALL: [TaskType; 18] = [
        TaskType::EnsureDataPvc,
        TaskType::ApplyStatefulSet,
        TaskType::ApplyService,
        TaskType::DeployBootstrapService,
        TaskType::DeployBootstrapJob,
        TaskType::AwaitBootstrapComplete,
        TaskType::TeardownBootstrap,
        TaskType::SnapshotRestore,
        TaskType::ConfigureGenesis,
        TaskType::ConfigApply,
        TaskType::DiscoverPeers,
        TaskType::ConfigureStateSync,
        TaskType::ConfigValidate,
        TaskType::MarkReady,
        TaskType::GenerateIdentity,
        TaskType::GenerateGentx,
        TaskType::UploadGenesisArtifacts,
        TaskType::SetGenesisPeers,
    ];

    /// The task type's name in plans and in modules' `describe`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::EnsureDataPvc => "ensure-data-pvc",
            TaskType::ApplyStatefulSet => "apply-statefulset",
            TaskType::ApplyService => "apply-service",
            TaskType::DeployBootstrapService => "deploy-bootstrap-service",
            TaskType::DeployBootstrapJob => "deploy-bootstrap-job",
            TaskType::AwaitBootstrapComplete => "await-bootstrap-complete",
            TaskType::TeardownBootstrap => "teardown-bootstrap",
            TaskType::SnapshotRestore => "snapshot-restore",
            TaskType::ConfigureGenesis => "configure-genesis",
            TaskType::ConfigApply => "config-apply",
            TaskType::DiscoverPeers => "discover-peers",
            TaskType::ConfigureStateSync => "configure-state-sync",
            TaskType::ConfigValidate => "config-validate",
            TaskType::MarkReady => "mark-ready",
            TaskType::GenerateIdentity => "generate-identity",
            TaskType::GenerateGentx => "generate-gentx",
            TaskType::UploadGenesisArtifacts => "upload-genesis-artifacts",
            TaskType::SetGenesisPeers => "set-genesis-peers",
        }
    }

    pub fn parse(name: &str) -> Option<TaskType> {
        TaskType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for TaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// No params: the JSON object `{}` (unknown keys are ignored, as in every params type).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoParams {}

/// `ensure-data-pvc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnsureDataPvc {
    pub node_name: String,
    pub namespace: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    pub storage_size: String,
}

/// `apply-service`: the node's own object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeObject {
    pub node_name: String,
    pub namespace: String,
}

/// What the platform gives a node's pods (resolved by the planner from the controller's
/// settings, per mode). Every key is optional: a missing one is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Platform {
    pub sidecar_image: String,
    pub genesis_bucket: String,
    pub genesis_region: String,
    pub snapshot_bucket: String,
    pub snapshot_region: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub toleration_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
}

/// `apply-statefulset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApplyStatefulSet {
    pub node_name: String,
    pub namespace: String,
    pub platform: Platform,
}

/// `deploy-bootstrap-service`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployBootstrapService {
    pub service_name: String,
    pub namespace: String,
}

/// `deploy-bootstrap-job`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeployBootstrapJob {
    pub job_name: String,
    pub namespace: String,
    pub platform: Platform,
}

/// `await-bootstrap-complete`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwaitBootstrapComplete {
    pub job_name: String,
    pub namespace: String,
}

/// `teardown-bootstrap`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TeardownBootstrap {
    pub job_name: String,
    pub service_name: String,
    pub namespace: String,
}

/// `snapshot-restore` (no height: `{}`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotRestore {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_height: Option<i64>,
}

/// `config-apply`: the mode and the merged overrides (none: the key is absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigApply {
    pub mode: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
}

/// One source of `discover-peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum PeerSource {
    Ec2Tags { region: String, tags: BTreeMap<String, String> },
    Static { addresses: Vec<String> },
    DnsEndpoints { endpoints: Vec<String> },
}

/// `discover-peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscoverPeers {
    pub sources: Vec<PeerSource>,
}

/// `configure-state-sync`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigureStateSync {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_local_snapshot: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill_blocks: Option<i64>,
}

/// `generate-identity`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateIdentity {
    pub chain_id: String,
    pub moniker: String,
}

/// `generate-gentx`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GenerateGentx {
    pub chain_id: String,
    pub staking_amount: String,
    pub account_balance: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_params: Option<String>,
}

/// `upload-genesis-artifacts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadGenesisArtifacts {
    pub node_name: String,
}

/// The params of one task, by task type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskParams {
    EnsureDataPvc(EnsureDataPvc),
    ApplyStatefulSet(ApplyStatefulSet),
    ApplyService(NodeObject),
    DeployBootstrapService(DeployBootstrapService),
    DeployBootstrapJob(DeployBootstrapJob),
    AwaitBootstrapComplete(AwaitBootstrapComplete),
    TeardownBootstrap(TeardownBootstrap),
    SnapshotRestore(SnapshotRestore),
    ConfigureGenesis(NoParams),
    ConfigApply(ConfigApply),
    DiscoverPeers(DiscoverPeers),
    ConfigureStateSync(ConfigureStateSync),
    ConfigValidate(NoParams),
    MarkReady(NoParams),
    GenerateIdentity(GenerateIdentity),
    GenerateGentx(GenerateGentx),
    UploadGenesisArtifacts(UploadGenesisArtifacts),
    SetGenesisPeers(NoParams),
}

fn json<T: Serialize>(value: &T) -> serde_json::Value {
    // Every params type is a struct of strings, numbers, booleans and maps with string keys:
    // serializing it cannot fail.
    serde_json::to_value(value).unwrap_or(serde_json::Value::Null)
}

fn parse<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, serde_json::Error> {
    T::deserialize(value)
}

impl TaskParams {
    pub fn task_type(&self) -> TaskType {
        match self {
            TaskParams::EnsureDataPvc(_) => TaskType::EnsureDataPvc,
            TaskParams::ApplyStatefulSet(_) => TaskType::ApplyStatefulSet,
            TaskParams::ApplyService(_) => TaskType::ApplyService,
            TaskParams::DeployBootstrapService(_) => TaskType::DeployBootstrapService,
            TaskParams::DeployBootstrapJob(_) => TaskType::DeployBootstrapJob,
            TaskParams::AwaitBootstrapComplete(_) => TaskType::AwaitBootstrapComplete,
            TaskParams::TeardownBootstrap(_) => TaskType::TeardownBootstrap,
            TaskParams::SnapshotRestore(_) => TaskType::SnapshotRestore,
            TaskParams::ConfigureGenesis(_) => TaskType::ConfigureGenesis,
            TaskParams::ConfigApply(_) => TaskType::ConfigApply,
            TaskParams::DiscoverPeers(_) => TaskType::DiscoverPeers,
            TaskParams::ConfigureStateSync(_) => TaskType::ConfigureStateSync,
            TaskParams::ConfigValidate(_) => TaskType::ConfigValidate,
            TaskParams::MarkReady(_) => TaskType::MarkReady,
            TaskParams::GenerateIdentity(_) => TaskType::GenerateIdentity,
            TaskParams::GenerateGentx(_) => TaskType::GenerateGentx,
            TaskParams::UploadGenesisArtifacts(_) => TaskType::UploadGenesisArtifacts,
            TaskParams::SetGenesisPeers(_) => TaskType::SetGenesisPeers,
        }
    }

    /// The params as they are stored in the plan and handed to the module.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            TaskParams::EnsureDataPvc(p) => json(p),
            TaskParams::ApplyStatefulSet(p) => json(p),
            TaskParams::ApplyService(p) => json(p),
            TaskParams::DeployBootstrapService(p) => json(p),
            TaskParams::DeployBootstrapJob(p) => json(p),
            TaskParams::AwaitBootstrapComplete(p) => json(p),
            TaskParams::TeardownBootstrap(p) => json(p),
            TaskParams::SnapshotRestore(p) => json(p),
            TaskParams::ConfigureGenesis(p) | TaskParams::ConfigValidate(p) | TaskParams::MarkReady(p) | TaskParams::SetGenesisPeers(p) => {
                json(p)
            }
            TaskParams::ConfigApply(p) => json(p),
            TaskParams::DiscoverPeers(p) => json(p),
            TaskParams::ConfigureStateSync(p) => json(p),
            TaskParams::GenerateIdentity(p) => json(p),
            TaskParams::GenerateGentx(p) => json(p),
            TaskParams::UploadGenesisArtifacts(p) => json(p),
        }
    }

    /// The params of `task_type` from their JSON (what a module reads).
    pub fn from_json(task_type: TaskType, value: &serde_json::Value) -> Result<TaskParams, serde_json::Error> {
        Ok(match task_type {
            TaskType::EnsureDataPvc => TaskParams::EnsureDataPvc(parse(value)?),
            TaskType::ApplyStatefulSet => TaskParams::ApplyStatefulSet(parse(value)?),
            TaskType::ApplyService => TaskParams::ApplyService(parse(value)?),
            TaskType::DeployBootstrapService => TaskParams::DeployBootstrapService(parse(value)?),
            TaskType::DeployBootstrapJob => TaskParams::DeployBootstrapJob(parse(value)?),
            TaskType::AwaitBootstrapComplete => TaskParams::AwaitBootstrapComplete(parse(value)?),
            TaskType::TeardownBootstrap => TaskParams::TeardownBootstrap(parse(value)?),
            TaskType::SnapshotRestore => TaskParams::SnapshotRestore(parse(value)?),
            TaskType::ConfigureGenesis => TaskParams::ConfigureGenesis(parse(value)?),
            TaskType::ConfigApply => TaskParams::ConfigApply(parse(value)?),
            TaskType::DiscoverPeers => TaskParams::DiscoverPeers(parse(value)?),
            TaskType::ConfigureStateSync => TaskParams::ConfigureStateSync(parse(value)?),
            TaskType::ConfigValidate => TaskParams::ConfigValidate(parse(value)?),
            TaskType::MarkReady => TaskParams::MarkReady(parse(value)?),
            TaskType::GenerateIdentity => TaskParams::GenerateIdentity(parse(value)?),
            TaskType::GenerateGentx => TaskParams::GenerateGentx(parse(value)?),
            TaskType::UploadGenesisArtifacts => TaskParams::UploadGenesisArtifacts(parse(value)?),
            TaskType::SetGenesisPeers => TaskParams::SetGenesisPeers(parse(value)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn platform() -> Platform {
        Platform {
            sidecar_image: "seictl:1".into(),
            genesis_bucket: "g".into(),
            genesis_region: "us-east-1".into(),
            snapshot_bucket: "s".into(),
            snapshot_region: "us-east-1".into(),
            service_account: Some("sei-node".into()),
            toleration_key: None,
            node_pool: Some("pool".into()),
            cpu: None,
            memory: Some("8Gi".into()),
        }
    }

    /// One example of every task's params.
    fn examples() -> Vec<TaskParams> {
        let ns = || "sei".to_string();
        vec![
            TaskParams::EnsureDataPvc(EnsureDataPvc {
                node_name: "rpc".into(),
                namespace: ns(),
                storage_class: None,
                storage_size: "2000Gi".into(),
            }),
            TaskParams::ApplyStatefulSet(ApplyStatefulSet { node_name: "rpc".into(), namespace: ns(), platform: platform() }),
            TaskParams::ApplyService(NodeObject { node_name: "rpc".into(), namespace: ns() }),
            TaskParams::DeployBootstrapService(DeployBootstrapService { service_name: "rpc".into(), namespace: ns() }),
            TaskParams::DeployBootstrapJob(DeployBootstrapJob { job_name: "rpc-bootstrap".into(), namespace: ns(), platform: platform() }),
            TaskParams::AwaitBootstrapComplete(AwaitBootstrapComplete { job_name: "rpc-bootstrap".into(), namespace: ns() }),
            TaskParams::TeardownBootstrap(TeardownBootstrap {
                job_name: "rpc-bootstrap".into(),
                service_name: "rpc".into(),
                namespace: ns(),
            }),
            TaskParams::SnapshotRestore(SnapshotRestore { target_height: Some(42) }),
            TaskParams::ConfigureGenesis(NoParams {}),
            TaskParams::ConfigApply(ConfigApply { mode: "full".into(), overrides: [("a.b".to_string(), "1".to_string())].into() }),
            TaskParams::DiscoverPeers(DiscoverPeers { sources: vec![PeerSource::Static { addresses: vec!["a@h:1".into()] }] }),
            TaskParams::ConfigureStateSync(ConfigureStateSync {
                use_local_snapshot: Some(true),
                trust_period: None,
                backfill_blocks: Some(10),
            }),
            TaskParams::ConfigValidate(NoParams {}),
            TaskParams::MarkReady(NoParams {}),
            TaskParams::GenerateIdentity(GenerateIdentity { chain_id: "c".into(), moniker: "rpc".into() }),
            TaskParams::GenerateGentx(GenerateGentx {
                chain_id: "c".into(),
                staking_amount: "1usei".into(),
                account_balance: "2usei".into(),
                genesis_params: None,
            }),
            TaskParams::UploadGenesisArtifacts(UploadGenesisArtifacts { node_name: "rpc".into() }),
            TaskParams::SetGenesisPeers(NoParams {}),
        ]
    }

    #[test]
    fn every_task_type_round_trips() {
        let examples = examples();
        assert_eq!(examples.iter().map(TaskParams::task_type).collect::<Vec<_>>(), TaskType::ALL, "one example per task type, in order");
        for p in examples {
            let t = p.task_type();
            assert_eq!(TaskType::parse(t.as_str()), Some(t));
            assert_eq!(TaskParams::from_json(t, &p.to_json()).unwrap(), p, "{t}");
        }
        assert_eq!(TaskType::parse("apply-statefulsets"), None);
    }

    #[test]
    fn wire_keys_match_the_reference() {
        let e = examples();
        assert_eq!(e[0].to_json(), json!({"nodeName": "rpc", "namespace": "sei", "storageSize": "2000Gi"}));
        assert_eq!(e[7].to_json(), json!({"targetHeight": 42}));
        assert_eq!(TaskParams::SnapshotRestore(SnapshotRestore::default()).to_json(), json!({}));
        assert_eq!(e[8].to_json(), json!({}));
        assert_eq!(e[9].to_json(), json!({"mode": "full", "overrides": {"a.b": "1"}}));
        assert_eq!(
            TaskParams::ConfigApply(ConfigApply { mode: "archive".into(), overrides: BTreeMap::new() }).to_json(),
            json!({"mode": "archive"})
        );
        let peers = TaskParams::DiscoverPeers(DiscoverPeers {
            sources: vec![
                PeerSource::Ec2Tags { region: "eu-west-1".into(), tags: [("role".to_string(), "sei".to_string())].into() },
                PeerSource::DnsEndpoints { endpoints: vec!["x-0.x.sei.svc.cluster.local".into()] },
            ],
        });
        assert_eq!(
            peers.to_json(),
            json!({"sources": [
                {"type": "ec2Tags", "region": "eu-west-1", "tags": {"role": "sei"}},
                {"type": "dnsEndpoints", "endpoints": ["x-0.x.sei.svc.cluster.local"]}
            ]})
        );
        assert_eq!(e[11].to_json(), json!({"useLocalSnapshot": true, "backfillBlocks": 10}));
        assert_eq!(e[1].to_json()["platform"]["nodePool"], "pool");
        assert!(e[1].to_json()["platform"].get("tolerationKey").is_none(), "unset platform settings are absent");
    }

    #[test]
    fn a_missing_key_is_an_error_not_a_null() {
        let err = TaskParams::from_json(TaskType::EnsureDataPvc, &json!({"nodeName": "rpc"})).unwrap_err();
        assert!(err.to_string().contains("namespace"), "{err}");
        let err = TaskParams::from_json(TaskType::SnapshotRestore, &json!({"targetHeight": "five"})).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }
}
