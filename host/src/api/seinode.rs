//! The `SeiNode` custom resource (`seinodes.sei.io/v1alpha1`, short name `snode`): spec fields of
//! the reference controller, validation in the schema and in CEL, and the status with its persisted
//! plan.
//!
//! Invariants (tests: `tests` below; server-side in `tests/crd_validation.rs`):
//! - exactly one of `fullNode`, `archive`, `replayer`, `validator` (CEL, message names the rule);
//! - a replayer needs at least one peer source (CEL);
//! - a snapshot source is exactly one of `s3` / `stateSync`; `bootstrapImage` needs `s3` (CEL);
//! - a peer source is exactly one of `ec2Tags` / `static` / `label` (CEL);
//! - `chainId` is non-empty, `image` is 1..512 characters, `s3.targetHeight` >= 1,
//!   `keepRecent` >= 2, `entrypoint.command` 1..16 items (schema bounds);
//! - `deploy/crds/crds.yaml` equals what `sei-operator crds` prints (`crds.rs`,
//!   `checked_in_crd_matches_the_types`).

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, MicroTime, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A Sei node: one seid process with its sidecar, its data volume and its headless Service.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "sei.io",
    version = "v1alpha1",
    kind = "SeiNode",
    namespaced,
    shortname = "snode",
    status = "SeiNodeStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Plan","type":"string","jsonPath":".status.planProgress"}"#,
    printcolumn = r#"{"name":"Task","type":"string","jsonPath":".status.currentTask"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("(has(self.fullNode) ? 1 : 0) + (has(self.archive) ? 1 : 0) + (has(self.replayer) ? 1 : 0) + (has(self.validator) ? 1 : 0) == 1").message("exactly one mode must be set: fullNode, archive, replayer or validator"),
    validation = Rule::new("!has(self.replayer) || (has(self.peers) && size(self.peers) > 0)").message("a replayer needs at least one peer source in spec.peers")
)]
#[serde(rename_all = "camelCase")]
pub struct SeiNodeSpec {
    /// The chain this node joins (e.g. `pacific-1`).
    #[schemars(length(min = 1, max = 128))]
    pub chain_id: String,
    /// The seid container image.
    #[schemars(length(min = 1, max = 512))]
    pub image: String,
    /// Where the node finds its peers. Required (non-empty) for a replayer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 32))]
    pub peers: Option<Vec<PeerSource>>,
    /// Overrides `seid start --home /sei`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<EntrypointConfig>,
    /// Flat dotted sei-config keys (e.g. `evm.http_port`) applied over the mode's defaults by
    /// `config-apply`; user values win over the controller's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overrides: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar: Option<SidecarConfig>,
    /// Labels merged into the StatefulSet, pod, Service and PVC labels (`sei.io/node` always wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_labels: Option<BTreeMap<String, String>>,
    /// A full node (RPC), optionally restored from a snapshot or state sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_node: Option<FullNodeSpec>,
    /// An archive node: block-syncs from genesis and keeps all history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveSpec>,
    /// A replayer: restores an S3 snapshot and replays blocks from its peers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayer: Option<ReplayerSpec>,
    /// A validator, optionally part of a genesis ceremony.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validator: Option<ValidatorSpec>,
}

/// One peer discovery source: exactly one of `ec2Tags`, `static`, `label`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("(has(self.ec2Tags) ? 1 : 0) + (has(self.static) ? 1 : 0) + (has(self.label) ? 1 : 0) == 1").message("a peer source sets exactly one of ec2Tags, static or label")
)]
#[serde(rename_all = "camelCase")]
pub struct PeerSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ec2_tags: Option<Ec2TagsPeerSource>,
    #[serde(default, rename = "static", skip_serializing_if = "Option::is_none")]
    pub static_peers: Option<StaticPeerSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelPeerSource>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Ec2TagsPeerSource {
    #[schemars(length(min = 1))]
    pub region: String,
    #[x_kube(validation = Rule::new("size(self) >= 1").message("ec2Tags.tags needs at least one tag"))]
    pub tags: BTreeMap<String, String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct StaticPeerSource {
    /// `nodeId@host:port` addresses.
    #[schemars(length(min = 1, max = 256))]
    pub addresses: Vec<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LabelPeerSource {
    /// SeiNodes whose labels match become peers (resolved into `status.resolvedPeers`).
    #[x_kube(validation = Rule::new("size(self) >= 1").message("label.selector needs at least one label"))]
    pub selector: BTreeMap<String, String>,
    /// Defaults to the node's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct EntrypointConfig {
    #[schemars(length(min = 1, max = 16))]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub args: Option<Vec<String>>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SidecarConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Default 7777.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FullNodeSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_generation: Option<SnapshotGenerationConfig>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_generation: Option<SnapshotGenerationConfig>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplayerSpec {
    pub snapshot: SnapshotSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result_export: Option<ResultExportConfig>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ValidatorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<SnapshotSource>,
    /// Set by a SeiNodeDeployment running a genesis ceremony, not by users.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_ceremony: Option<GenesisCeremonyNodeConfig>,
}

/// Where the node's state comes from: exactly one of `s3` and `stateSync`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("has(self.s3) != has(self.stateSync)").message("a snapshot source sets exactly one of s3 or stateSync"),
    validation = Rule::new("!has(self.bootstrapImage) || has(self.s3)").message("snapshot.bootstrapImage needs snapshot.s3 with a targetHeight")
)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Snapshot>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_sync: Option<StateSyncSource>,
    /// e.g. `9999h0m0s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_period: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backfill_blocks: Option<i64>,
    /// Image of a bootstrap Job that replays to `s3.targetHeight` before the node starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_image: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct S3Snapshot {
    /// Restore the highest snapshot at or below this height.
    #[schemars(range(min = 1))]
    pub target_height: i64,
}

/// State sync (no fields).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct StateSyncSource {}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotGenerationConfig {
    #[schemars(range(min = 2))]
    pub keep_recent: i32,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ResultExportConfig {
    #[schemars(length(min = 1))]
    pub canonical_rpc: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenesisCeremonyNodeConfig {
    #[schemars(length(min = 1))]
    pub chain_id: String,
    #[schemars(length(min = 1))]
    pub staking_amount: String,
    #[schemars(length(min = 1))]
    pub account_balance: String,
    /// JSON of genesis overrides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_params: Option<String>,
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub index: i32,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema, Default)]
pub enum SeiNodePhase {
    #[default]
    Pending,
    Initializing,
    Running,
    Failed,
    Terminating,
}

impl SeiNodePhase {
    pub const ALL: [SeiNodePhase; 5] =
        [SeiNodePhase::Pending, SeiNodePhase::Initializing, SeiNodePhase::Running, SeiNodePhase::Failed, SeiNodePhase::Terminating];

    /// The phase as it is written in status (and in event reasons and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            SeiNodePhase::Pending => "Pending",
            SeiNodePhase::Initializing => "Initializing",
            SeiNodePhase::Running => "Running",
            SeiNodePhase::Failed => "Failed",
            SeiNodePhase::Terminating => "Terminating",
        }
    }
}

impl std::fmt::Display for SeiNodePhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TaskPlanPhase {
    #[default]
    Active,
    Complete,
    Failed,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum TaskStatus {
    #[default]
    Pending,
    /// Submitted or started; waiting (e.g. polling the sidecar). Never re-submitted.
    Running,
    Complete,
    Failed,
}

/// The observed state of a SeiNode.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SeiNodeStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SeiNodePhase>,
    /// The image observed fully rolled out on the StatefulSet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    /// The active plan (or the last completed or failed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<TaskPlan>,
    /// `complete/total` of the plan, e.g. `4/9` (printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan_progress: Option<String>,
    /// Type of the plan's current task (printer column).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_task: Option<String>,
    /// Sorted, de-duplicated DNS names resolved from `label` peer sources.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved_peers: Vec<String>,
    /// Routable `host:port` P2P address; becomes the `network.p2p.external_address` override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// A persisted plan: ordered tasks, each with its params, so execution needs only the plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskPlan {
    /// UUID v4, fresh per plan build.
    pub id: String,
    pub phase: TaskPlanPhase,
    pub tasks: Vec<PlannedTask>,
    /// Phase stamped on the node when the plan completes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_phase: Option<SeiNodePhase>,
    /// Phase stamped on the node when the plan fails; none: no transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_phase: Option<SeiNodePhase>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_task_index: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed_task_detail: Option<FailedTaskInfo>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct FailedTaskInfo {
    #[serde(rename = "type")]
    pub task_type: String,
    pub id: String,
    pub error: String,
    pub retry_count: i32,
    pub max_retries: i32,
}

fn preserve_unknown(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "x-kubernetes-preserve-unknown-fields": true })
}

/// The fixed namespace of task ids (the reference's).
pub const TASK_ID_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0xb7e89c3a_4f12_4d8b_9a6e_1c2d3e4f5a6b);

/// A planned task's id: UUID v5 of `planID/type/index` in [`TASK_ID_NAMESPACE`] (node and group
/// plans alike).
pub fn task_id(plan_id: &str, task_type: &str, index: usize) -> String {
    uuid::Uuid::new_v5(&TASK_ID_NAMESPACE, format!("{plan_id}/{task_type}/{index}").as_bytes()).to_string()
}

/// One task of a plan.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PlannedTask {
    #[serde(rename = "type")]
    pub task_type: String,
    /// UUID v5 over `planID/type/index`; also the sidecar task id.
    pub id: String,
    pub status: TaskStatus,
    /// The task's full params (opaque JSON; the wire keys of the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "preserve_unknown")]
    pub params: Option<serde_json::Value>,
    /// First step run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitted_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// 0: the first failure is terminal.
    #[serde(default)]
    pub max_retries: i32,
    #[serde(default)]
    pub retry_count: i32,
    /// Opaque state of a pending task, handed back to its next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// sha256 of the module that ran the task's last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module_digest: Option<String>,
    /// What the task is waiting for (from its last pending step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The next step does not run before this time (a poll interval or a retry backoff), even
    /// when a watch event triggers a reconcile earlier. Microsecond precision, so a sub-second
    /// poll interval survives the round trip through the API server. Written with a step that
    /// changes something else: a repeated poll that changes nothing keeps the earlier value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<MicroTime>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn crd_json() -> serde_json::Value {
        serde_json::to_value(SeiNode::crd()).unwrap()
    }

    fn rules(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(rs)) = m.get("x-kubernetes-validations") {
                    for r in rs {
                        out.push((r["rule"].as_str().unwrap_or("").into(), r["message"].as_str().unwrap_or("").into()));
                    }
                }
                m.values().for_each(|x| rules(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| rules(x, out)),
            _ => {}
        }
    }

    #[test]
    fn crd_names_and_columns() {
        let crd = crd_json();
        assert_eq!(crd["metadata"]["name"], "seinodes.sei.io");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "snode");
        assert_eq!(crd["spec"]["scope"], "Namespaced");
        let cols: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, ["Phase", "Plan", "Task", "Age"]);
        assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
    }

    #[test]
    fn every_cel_rule_has_a_message() {
        let mut found = Vec::new();
        rules(&crd_json(), &mut found);
        let messages: Vec<&str> = found.iter().map(|(_, m)| m.as_str()).collect();
        for want in [
            "exactly one mode must be set: fullNode, archive, replayer or validator",
            "a replayer needs at least one peer source in spec.peers",
            "a snapshot source sets exactly one of s3 or stateSync",
            "snapshot.bootstrapImage needs snapshot.s3 with a targetHeight",
            "a peer source sets exactly one of ec2Tags, static or label",
        ] {
            assert!(messages.contains(&want), "missing rule message {want:?} in {messages:?}");
        }
        assert!(found.iter().all(|(_, m)| !m.is_empty()));
    }

    #[test]
    fn plan_params_preserve_unknown_fields() {
        let crd = crd_json();
        let params = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["plan"]["properties"]["tasks"]
            ["items"]["properties"]["params"];
        assert_eq!(params["x-kubernetes-preserve-unknown-fields"], true, "{params}");
    }

    #[test]
    fn phases_display_as_written_in_status() {
        for phase in SeiNodePhase::ALL {
            assert_eq!(serde_json::to_value(phase).unwrap(), phase.to_string());
        }
    }

    #[test]
    fn manifest_round_trips() {
        let yaml = include_str!("../../../deploy/samples/full-node.yaml");
        let node: SeiNode = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(node.spec.chain_id, "pacific-1");
        assert_eq!(node.spec.full_node.as_ref().unwrap().snapshot.as_ref().unwrap().s3.as_ref().unwrap().target_height, 100_000_000);
        let back: SeiNode = serde_json::from_value(serde_json::to_value(&node).unwrap()).unwrap();
        assert_eq!(back, node);
    }
}
