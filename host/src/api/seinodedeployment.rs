//! The `SeiNodeDeployment` custom resource (`seinodedeployments.sei.io/v1alpha1`, short name
//! `snd`): a group of SeiNodes `<name>-<ordinal>` made from one template, optionally formed into a
//! new network by a genesis ceremony, and rolled out by `InPlace`, `BlueGreen` or `HardFork`.
//!
//! Invariants (tests: `tests` below; server-side in `tests/crd_validation.rs`,
//! `invalid_groups_are_rejected_with_the_rule_message`):
//! - `spec.genesis` can be neither added, removed nor changed after creation (CEL transition
//!   rules);
//! - `spec.replicas` cannot change once a ceremony has started (`status.ceremonyStartedAt`): the
//!   validator set is written into genesis (CEL on the root, with `oldSelf.status`);
//! - double-signing: a validator template without a genesis ceremony runs exactly one replica
//!   (every replica of one template would sign with the same key brought to it), and a validator
//!   group never uses `BlueGreen` (two generations of one validator side by side);
//! - `HardFork` needs `hardFork.haltHeight` >= 1; `maxUnavailable` is 1..100;
//! - a genesis group has a validator template on the same chain id, and the template leaves
//!   `validator.genesisCeremony` to the group;
//! - a group's name does not end in `-g<number>` or `-exporter`, so no group's children take the
//!   names of another group's rollout entrants or exporter, and is at most 40 characters, so
//!   its entrants, their pods and its routes keep valid names (both checked on creation only:
//!   a name never changes, and a group made before a rule existed stays writable);
//! - `genesis.maxCeremonyDuration` is a duration of at least one minute (default 15m), enforced
//!   by the group controller (a ceremony that overruns fails with `CeremonyTimedOut`).

use super::seinode::{SeiNodePhase, SeiNodeSpec, TaskPlan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The default stake of each genesis validator (the reference's).
pub const DEFAULT_STAKING_AMOUNT: &str = "10000000usei";
/// The default balance of each genesis validator's account (the reference's).
pub const DEFAULT_ACCOUNT_BALANCE: &str = "1000000000000000000000usei,1000000000000000000000uusdc,1000000000000000000000uatom";
/// The default limit on a genesis ceremony, from the children's creation to all Running.
pub const DEFAULT_MAX_CEREMONY_DURATION: &str = "15m";

/// A group of SeiNodes made from one template.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "sei.io",
    version = "v1alpha1",
    kind = "SeiNodeDeployment",
    namespaced,
    shortname = "snd",
    status = "SeiNodeDeploymentStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Ready","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"Replicas","type":"integer","jsonPath":".spec.replicas"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Revision","type":"string","jsonPath":".status.rollout.entrantRevision","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new("oldSelf.hasValue() || size(self.metadata.name) <= 40").optional_old_self(true).message("a SeiNodeDeployment name is at most 40 characters: its entrants (<name>-g<generation>-<ordinal>), their pods and its routes (<name>-evm-ws) must stay valid DNS labels"),
    validation = Rule::new("oldSelf.hasValue() || (!self.metadata.name.matches('-g[0-9]+$') && !self.metadata.name.endsWith('-exporter'))").optional_old_self(true).message("a SeiNodeDeployment name may not end in -g<number> or -exporter: those are the names of another group's rollout entrants and fork exporter"),
    validation = Rule::new("!has(self.spec.genesis) || !has(oldSelf.status) || !has(oldSelf.status.ceremonyStartedAt) || self.spec.replicas == oldSelf.spec.replicas").message("spec.replicas cannot change once the genesis ceremony has started: the validator set is written into genesis")
)]
#[x_kube(
    validation = Rule::new("has(self.genesis) == has(oldSelf.genesis)").message("spec.genesis cannot be added or removed after the group is created"),
    validation = Rule::new("!has(self.template.spec.validator) || has(self.genesis) || self.replicas == 1").message("a validator group without a genesis ceremony runs exactly 1 replica: every replica of the template would sign with the same key (double-signing)"),
    validation = Rule::new("!has(self.template.spec.validator) || self.updateStrategy.type != 'BlueGreen'").message("a validator group cannot use BlueGreen: it runs two generations of the same validators side by side (double-signing); use InPlace or HardFork"),
    validation = Rule::new("!has(self.genesis) || has(self.template.spec.validator)").message("spec.genesis needs a validator template (template.spec.validator)"),
    validation = Rule::new("!has(self.genesis) || self.template.spec.chainId == self.genesis.chainId").message("template.spec.chainId must equal spec.genesis.chainId"),
    validation = Rule::new("!has(self.template.spec.validator) || !has(self.template.spec.validator.genesisCeremony)").message("template.spec.validator.genesisCeremony is set by the group from spec.genesis; leave it out")
)]
#[serde(rename_all = "camelCase")]
pub struct SeiNodeDeploymentSpec {
    /// How many SeiNodes: `<name>-0` … `<name>-<replicas-1>`.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 100))]
    pub replicas: i32,
    /// What every child is made from.
    pub template: SeiNodeTemplate,
    /// `Delete` (default): children go with the group. `Retain`: children (and the external
    /// Service) are orphaned and keep running.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
    /// A genesis ceremony that forms a new network from the children. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == oldSelf").message("spec.genesis is immutable"))]
    pub genesis: Option<GenesisCeremonyConfig>,
    /// Presence asks for the `<name>-external` Service (and Gateway API routes when served).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<NetworkingConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitoring: Option<MonitoringConfig>,
    pub update_strategy: UpdateStrategy,
}

fn one() -> i32 {
    1
}

/// The children's metadata and spec.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SeiNodeTemplate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
    pub spec: SeiNodeSpec,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum DeletionPolicy {
    #[default]
    Delete,
    Retain,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenesisCeremonyConfig {
    /// The new chain's id.
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub chain_id: String,
    /// Each validator's self-delegation.
    #[serde(default = "default_staking_amount")]
    #[schemars(length(min = 1, max = 256))]
    pub staking_amount: String,
    /// Each validator account's genesis balance.
    #[serde(default = "default_account_balance")]
    #[schemars(length(min = 1, max = 1024))]
    pub account_balance: String,
    /// Further genesis accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub accounts: Vec<GenesisAccount>,
    /// Genesis parameter overrides, handed to each child as JSON (`genesisParams`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, String>,
    /// How long the ceremony may take, from the children's creation to all Running (a Go
    /// duration such as `15m` or `1h30m`).
    #[serde(default = "default_max_ceremony_duration")]
    #[schemars(regex(pattern = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"))]
    #[x_kube(validation = Rule::new("duration(self) >= duration('1m')").message("genesis.maxCeremonyDuration must be at least 1m"))]
    pub max_ceremony_duration: String,
    /// Fork an existing chain: export its state at a height and start the new chain from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork: Option<ForkConfig>,
}

fn default_staking_amount() -> String {
    DEFAULT_STAKING_AMOUNT.into()
}
fn default_account_balance() -> String {
    DEFAULT_ACCOUNT_BALANCE.into()
}
fn default_max_ceremony_duration() -> String {
    DEFAULT_MAX_CEREMONY_DURATION.into()
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GenesisAccount {
    #[schemars(length(min = 1, max = 128))]
    pub address: String,
    #[schemars(length(min = 1, max = 1024))]
    pub balance: String,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ForkConfig {
    #[schemars(length(min = 1, max = 128))]
    pub source_chain_id: String,
    /// The image that runs the exporter (a full node of the source chain).
    #[schemars(length(min = 1, max = 512))]
    pub source_image: String,
    #[schemars(range(min = 1))]
    pub export_height: i64,
}

/// No fields: its presence asks for networking.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct NetworkingConfig {}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MonitoringConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_monitor: Option<ServiceMonitorConfig>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ServiceMonitorConfig {
    #[serde(default = "default_interval")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

fn default_interval() -> String {
    "30s".into()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum UpdateStrategyType {
    #[default]
    InPlace,
    BlueGreen,
    HardFork,
}

impl UpdateStrategyType {
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateStrategyType::InPlace => "InPlace",
            UpdateStrategyType::BlueGreen => "BlueGreen",
            UpdateStrategyType::HardFork => "HardFork",
        }
    }
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(
    validation = Rule::new("self.type != 'HardFork' || (has(self.hardFork) && self.hardFork.haltHeight >= 1)").message("a HardFork update needs hardFork.haltHeight >= 1")
)]
#[serde(rename_all = "camelCase")]
pub struct UpdateStrategy {
    #[serde(rename = "type")]
    pub strategy_type: UpdateStrategyType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hard_fork: Option<HardForkConfig>,
    /// `InPlace`: how many nodes may be away from Running at once (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub max_unavailable: Option<i32>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct HardForkConfig {
    pub halt_height: i64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema, Default)]
pub enum GroupPhase {
    #[default]
    Pending,
    Initializing,
    Ready,
    Upgrading,
    Degraded,
    Failed,
    Terminating,
}

impl GroupPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupPhase::Pending => "Pending",
            GroupPhase::Initializing => "Initializing",
            GroupPhase::Ready => "Ready",
            GroupPhase::Upgrading => "Upgrading",
            GroupPhase::Degraded => "Degraded",
            GroupPhase::Failed => "Failed",
            GroupPhase::Terminating => "Terminating",
        }
    }
}

/// The observed state of a group.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SeiNodeDeploymentStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// 16 hex digits of sha256 over what a rollout changes (chain id, image, entrypoint,
    /// sidecar image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<GroupPhase>,
    #[serde(default)]
    pub replicas: i32,
    /// Children in `Running`.
    #[serde(default)]
    pub ready_replicas: i32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub nodes: Vec<GroupNodeStatus>,
    /// The active group plan (or the last failed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<TaskPlan>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub genesis_hash: Option<String>,
    #[serde(default, rename = "genesisS3URI", skip_serializing_if = "Option::is_none")]
    pub genesis_s3_uri: Option<String>,
    /// When the group first created children for its genesis ceremony; `replicas` is fixed from
    /// then on, and `maxCeremonyDuration` counts from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceremony_started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incumbent_nodes: Vec<String>,
    /// The revision (`sei.io/revision`) that takes traffic and that new children get; a BlueGreen
    /// or HardFork rollout moves it to its entrants at `switch-traffic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serving_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking_status: Option<NetworkingStatus>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct GroupNodeStatus {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<SeiNodePhase>,
}

/// A rollout in progress.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutStatus {
    pub strategy: UpdateStrategyType,
    /// The template hash the rollout moves to.
    pub target_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incumbent_nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrant_nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incumbent_revision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrant_revision: Option<String>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct NetworkingStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<RouteStatus>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    pub hostname: String,
    pub protocol: String,
}

/// Condition types of a group (the reference's).
pub mod condition {
    pub const NODES_READY: &str = "NodesReady";
    pub const ROUTE_READY: &str = "RouteReady";
    pub const SERVICE_MONITOR_READY: &str = "ServiceMonitorReady";
    pub const GENESIS_CEREMONY_COMPLETE: &str = "GenesisCeremonyComplete";
    pub const PLAN_IN_PROGRESS: &str = "PlanInProgress";
    pub const GENESIS_CEREMONY_NEEDED: &str = "GenesisCeremonyNeeded";
    pub const FORK_GENESIS_CEREMONY_NEEDED: &str = "ForkGenesisCeremonyNeeded";
    pub const ROLLOUT_IN_PROGRESS: &str = "RolloutInProgress";
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    fn crd_json() -> serde_json::Value {
        serde_json::to_value(SeiNodeDeployment::crd()).unwrap()
    }

    fn messages(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                if let Some(serde_json::Value::Array(rs)) = m.get("x-kubernetes-validations") {
                    out.extend(rs.iter().map(|r| r["message"].as_str().unwrap_or("").to_string()));
                }
                m.values().for_each(|x| messages(x, out));
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| messages(x, out)),
            _ => {}
        }
    }

    #[test]
    fn crd_names_and_columns() {
        let crd = crd_json();
        assert_eq!(crd["metadata"]["name"], "seinodedeployments.sei.io");
        assert_eq!(crd["spec"]["names"]["shortNames"][0], "snd");
        let cols: Vec<&str> = crd["spec"]["versions"][0]["additionalPrinterColumns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(cols, ["Ready", "Replicas", "Phase", "Revision", "Age"]);
        assert!(crd["spec"]["versions"][0]["subresources"]["status"].is_object());
    }

    #[test]
    fn every_group_rule_is_in_the_schema_with_its_message() {
        let mut found = Vec::new();
        messages(&crd_json(), &mut found);
        for want in [
            "spec.replicas cannot change once the genesis ceremony has started: the validator set is written into genesis",
            "spec.genesis cannot be added or removed after the group is created",
            "spec.genesis is immutable",
            "a validator group without a genesis ceremony runs exactly 1 replica: every replica of the template would sign with the same key (double-signing)",
            "a validator group cannot use BlueGreen: it runs two generations of the same validators side by side (double-signing); use InPlace or HardFork",
            "spec.genesis needs a validator template (template.spec.validator)",
            "template.spec.chainId must equal spec.genesis.chainId",
            "template.spec.validator.genesisCeremony is set by the group from spec.genesis; leave it out",
            "a HardFork update needs hardFork.haltHeight >= 1",
            "genesis.maxCeremonyDuration must be at least 1m",
            "a SeiNodeDeployment name may not end in -g<number> or -exporter: those are the names of another group's rollout entrants and fork exporter",
            // The SeiNode rules hold for the template too.
            "exactly one mode must be set: fullNode, archive, replayer or validator",
        ] {
            assert!(found.iter().any(|m| m == want), "missing rule message {want:?}");
        }
    }

    #[test]
    fn defaults_are_the_references() {
        let g: SeiNodeDeploymentSpec = serde_json::from_value(serde_json::json!({
            "template": {"spec": {"chainId": "arctic-9", "image": "sei:1", "validator": {}}},
            "genesis": {"chainId": "arctic-9"},
            "updateStrategy": {"type": "InPlace"}
        }))
        .unwrap();
        assert_eq!(g.replicas, 1);
        assert_eq!(g.deletion_policy, DeletionPolicy::Delete);
        let genesis = g.genesis.unwrap();
        assert_eq!(genesis.staking_amount, DEFAULT_STAKING_AMOUNT);
        assert_eq!(genesis.account_balance, DEFAULT_ACCOUNT_BALANCE);
        assert_eq!(genesis.max_ceremony_duration, "15m");
    }

    #[test]
    fn sample_round_trips() {
        let yaml = include_str!("../../../deploy/samples/genesis-group.yaml");
        let g: SeiNodeDeployment = serde_yaml::from_str(yaml).unwrap();
        assert_eq!(g.spec.replicas, 4);
        assert_eq!(g.spec.genesis.as_ref().unwrap().chain_id, "sei-demo-1");
        let back: SeiNodeDeployment = serde_json::from_value(serde_json::to_value(&g).unwrap()).unwrap();
        assert_eq!(back, g);
    }
}
