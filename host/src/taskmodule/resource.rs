//! The `TaskModule` custom resource (`taskmodules.sei.io/v1alpha1`, short name `tmod`): which
//! module serves which task types, where its bytes come from (pinned by sha256), what it may
//! do, its limits and its rollout policy; its status has one entry per controller replica.
//!
//! Cluster-scoped: the registry a TaskModule changes is the controller's, shared by the
//! SeiNodes of every namespace, so the object that changes it is a cluster object too; RBAC on a
//! cluster resource keeps a namespace admin from re-routing other tenants' tasks.
//!
//! Invariants (tests below; server-side in `tests/task_modules.rs`):
//! - `sha256` is 64 lowercase hex digits; `taskTypes` is 1..32 DNS-1123 labels, unique;
//! - `source` is exactly one of `configMap` / `url`, and a URL is `https://` or `http://` (CEL);
//! - limits are bounded: `timeoutSeconds` 1..300, `memoryMiB` 1..4096, `hostCallsPerStep`
//!   1..1000, `logCallsPerStep` 1..100000; `autoRollback.window` 1..10000 and
//!   `maxFailurePercent` 0..100;
//! - `status.replicas` and each replica's `conditions` are list-maps (keys `replica`, `type`),
//!   so each replica owns its own entry under server-side apply.

use crate::policy::guard::{CapabilityName, Grants};
use crate::registry::rollout::AutoRollbackPolicy;
use crate::sandbox::ModuleLimits;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// A wasm task module and the task types it serves, in every namespace.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "sei.io",
    version = "v1alpha1",
    kind = "TaskModule",
    shortname = "tmod",
    status = "TaskModuleStatus",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Task Types","type":"string","jsonPath":".spec.taskTypes"}"#,
    printcolumn = r#"{"name":"Sha256","type":"string","jsonPath":".spec.sha256","priority":1}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.replicas[0].conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","jsonPath":".status.replicas[0].conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.taskTypes.all(t, self.taskTypes.exists_one(u, u == t))").message("spec.taskTypes must not repeat a task type"))]
#[serde(rename_all = "camelCase")]
pub struct TaskModuleSpec {
    /// The task types this module serves. Its `describe` must claim each of them.
    #[schemars(length(min = 1, max = 32), inner(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")))]
    pub task_types: Vec<String>,
    /// Where the component's bytes come from.
    pub source: TaskModuleSource,
    /// The sha256 of the component's bytes (64 lowercase hex digits). Bytes that differ are
    /// refused; changing this field is how a new module is rolled out (or an old one back).
    #[schemars(regex(pattern = r"^[0-9a-f]{64}$"))]
    pub sha256: String,
    /// What the module may do; its `describe` must not ask for more.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub capabilities: Vec<CapabilityName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<TaskModuleLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutPolicy>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = Rule::new("(has(self.configMap) ? 1 : 0) + (has(self.url) ? 1 : 0) == 1").message("spec.source sets exactly one of configMap or url"))]
#[serde(rename_all = "camelCase")]
pub struct TaskModuleSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapModuleSource>,
    /// An `https://` (or, for development, `http://`) URL of the component.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self.startsWith('https://') || self.startsWith('http://')").message("spec.source.url must be an https:// or http:// URL"))]
    #[schemars(length(max = 2048))]
    pub url: Option<String>,
}

/// A key of a ConfigMap's `binaryData` (or `data`) holding the component.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMapModuleSource {
    #[schemars(length(min = 1, max = 63))]
    pub namespace: String,
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Limits of every step this module runs; unset fields keep the controller's policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskModuleLimits {
    /// Capped by the controller's longest deadline (300 s by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: Option<u32>,
    /// Up to the controller's memory slot (64 MiB by default); more is rejected at load.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "memoryMiB")]
    #[schemars(range(min = 1, max = 4096))]
    pub memory_mib: Option<u32>,
    /// Kubernetes and sidecar calls one step may make (each API request counts); the call past
    /// it fails the step. Default: the controller's (64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub host_calls_per_step: Option<u32>,
    /// `log` calls one step may make; the call past it fails the step. Default: the
    /// controller's (10000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub log_calls_per_step: Option<u32>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RolloutPolicy {
    /// Withdraw the module automatically when too many of its first runs fail; the module it
    /// replaced serves again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_rollback: Option<AutoRollback>,
}

#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AutoRollback {
    /// How many first task steps of the new module are watched.
    #[schemars(range(min = 1, max = 10000))]
    pub window: u32,
    /// The largest share of failed steps in the window, in percent, that is still accepted.
    #[schemars(range(min = 0, max = 100))]
    pub max_failure_percent: u32,
}

/// What each controller replica made of the TaskModule.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TaskModuleStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["replica".into()]))]
    pub replicas: Vec<ReplicaModuleStatus>,
}

/// One replica's view: which digest it runs for this TaskModule, and why.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ReplicaModuleStatus {
    /// The replica (its pod name, or `--replica-id`).
    pub replica: String,
    /// The generation of the spec this entry describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The digest this TaskModule serves on this replica now (none: the task types fall back to
    /// the built-in or directory module).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_digest: Option<String>,
    /// The digest it served before the last swap, kept for rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_digest: Option<String>,
    /// `name@version` from the active module's `describe`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// How long the last successful load took, and whether the precompiled cache served it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_time_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compiled: Option<String>,
    /// `Ready`: the spec's digest is active. `Rejected`: the last load failed (reason and full
    /// message), the previous module keeps serving.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<Time>,
}

impl TaskModuleSpec {
    pub fn grants(&self) -> Grants {
        Grants::new(self.capabilities.iter().copied())
    }

    pub fn module_limits(&self) -> ModuleLimits {
        let l = self.limits.clone().unwrap_or_default();
        ModuleLimits {
            deadline: l.timeout_seconds.map(|s| Duration::from_secs(s.into())),
            memory_bytes: l.memory_mib.map(|m| (m as usize) << 20),
            host_calls: l.host_calls_per_step,
            log_calls: l.log_calls_per_step,
        }
    }

    pub fn auto_rollback(&self) -> Option<AutoRollbackPolicy> {
        self.rollout
            .as_ref()
            .and_then(|r| r.auto_rollback.as_ref())
            .map(|a| AutoRollbackPolicy { window: a.window, max_failure_percent: a.max_failure_percent })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_is_cluster_scoped_with_list_maps_and_rules() {
        let crd = serde_json::to_value(TaskModule::crd()).unwrap();
        assert_eq!(crd["spec"]["scope"], "Cluster");
        assert_eq!(crd["metadata"]["name"], "taskmodules.sei.io");
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        let replicas = &schema["status"]["properties"]["replicas"];
        assert_eq!(replicas["x-kubernetes-list-type"], "map");
        assert_eq!(replicas["x-kubernetes-list-map-keys"], serde_json::json!(["replica"]));
        assert_eq!(replicas["items"]["properties"]["conditions"]["x-kubernetes-list-map-keys"], serde_json::json!(["type"]));
        let spec = &schema["spec"];
        assert_eq!(spec["properties"]["sha256"]["pattern"], "^[0-9a-f]{64}$");
        let rules = spec["properties"]["source"]["x-kubernetes-validations"].to_string();
        assert!(rules.contains("exactly one of configMap or url"), "{rules}");
        assert_eq!(
            spec["properties"]["capabilities"]["items"]["enum"],
            serde_json::json!(["kube-read", "kube-write", "kube-delete", "sidecar"])
        );
    }

    #[test]
    fn sample_manifest_parses() {
        let tm: TaskModule = serde_yaml::from_str(include_str!("../../../deploy/samples/task-module.yaml")).unwrap();
        assert_eq!(tm.spec.task_types, ["apply-statefulset"]);
        assert_eq!(tm.spec.source.config_map.as_ref().unwrap().key, "module.wasm");
        assert_eq!(tm.spec.auto_rollback(), Some(AutoRollbackPolicy { window: 20, max_failure_percent: 10 }));
    }

    #[test]
    fn spec_maps_to_grants_limits_and_rollout() {
        let spec: TaskModuleSpec = serde_json::from_value(serde_json::json!({
            "taskTypes": ["apply-statefulset"],
            "source": {"configMap": {"namespace": "sei-system", "name": "m", "key": "module.wasm"}},
            "sha256": "0".repeat(64),
            "capabilities": ["kube-read", "kube-write"],
            "limits": {"timeoutSeconds": 5, "memoryMiB": 16, "hostCallsPerStep": 8, "logCallsPerStep": 100},
            "rollout": {"autoRollback": {"window": 10, "maxFailurePercent": 20}}
        }))
        .unwrap();
        assert!(spec.grants().allows(CapabilityName::KubeWrite));
        assert!(!spec.grants().allows(CapabilityName::Sidecar));
        assert_eq!(
            spec.module_limits(),
            ModuleLimits {
                deadline: Some(Duration::from_secs(5)),
                memory_bytes: Some(16 << 20),
                host_calls: Some(8),
                log_calls: Some(100)
            }
        );
        assert_eq!(spec.auto_rollback(), Some(AutoRollbackPolicy { window: 10, max_failure_percent: 20 }));
    }
}
