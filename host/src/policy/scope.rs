//! The scope of a task step: the one SeiNode it works for, or the one SeiNodeDeployment and its
//! member SeiNodes, and everything that follows from it (pure data). The capability guard (`guard.rs`) and the pod policy (`pod_policy.rs`) decide
//! against a `Scope`; the SeiNode controller builds one per step (`node::scope::node_scope`).
//!
//! Invariants (unit tests below): each kind has exactly one name a node may write
//! (`writable_names_are_per_kind`), so a node named like another node's derived name (`data-v`)
//! cannot reach that node's objects; the placement is the platform's and nothing else
//! (`placement_follows_the_platform`).

use crate::platform::PlatformConfig;
use std::collections::{BTreeMap, BTreeSet};

/// The label that ties a node's objects and pods to it (`sei.io/node=<node>`).
pub const NODE_LABEL: &str = "sei.io/node";
/// The bootstrap pod's component label (`sei-builtin-infra`).
pub const COMPONENT_LABEL: (&str, &str) = ("sei.io/component", "bootstrap");
/// The node-pool label of the platform's node affinity (the reference's Karpenter pools).
pub const NODE_POOL_LABEL: &str = "karpenter.sh/nodepool";

/// Where a node's pods may be scheduled: what the platform configures, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    /// Node label → the values `nodeSelector` and node affinity may require.
    pub node_labels: BTreeMap<String, BTreeSet<String>>,
    /// The taint keys pods may tolerate.
    pub toleration_keys: BTreeSet<String>,
    /// Pods must be placed on a node pool (required node affinity or `nodeSelector` on
    /// `NODE_POOL_LABEL`): the platform names its default pool (`SEI_NODEPOOL_NAME`), so a pod
    /// without placement would land on any untainted node outside the pools.
    pub require_pool: bool,
}

impl Placement {
    /// The platform's node pools (`SEI_NODEPOOL_NAME`, `SEI_NODEPOOL_ARCHIVE`) and toleration key.
    pub fn for_platform(platform: &PlatformConfig) -> Self {
        let pools: BTreeSet<String> = platform.node_pool.iter().chain(platform.node_pool_archive.iter()).cloned().collect();
        let mut node_labels = BTreeMap::new();
        if !pools.is_empty() {
            node_labels.insert(NODE_POOL_LABEL.to_string(), pools);
        }
        Self { node_labels, toleration_keys: platform.toleration_key.iter().cloned().collect(), require_pool: platform.node_pool.is_some() }
    }
}

/// The node a run works for: its namespace and name (which fix the names its tasks may write),
/// the service accounts, labels and placement its pod templates may use, and its uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub namespace: String,
    pub node_name: String,
    pub pod_service_accounts: BTreeSet<String>,
    /// The SeiNode's uid: when known, every object a module writes must be owned by it (so it is
    /// garbage-collected with the node) and by nothing else.
    pub owner_uid: Option<String>,
    /// The node's `spec.podLabels`: the only labels (besides `sei.io/node`) its pods may carry.
    pub pod_labels: BTreeMap<String, String>,
    /// Where its pods may be scheduled (the platform's node pools and toleration key).
    pub placement: Placement,
    /// Set for a group task: the step works for this SeiNodeDeployment (`node_name` is the
    /// group's name, `owner_uid` its uid) and may touch only its member SeiNodes.
    pub group: Option<GroupScope>,
    /// The only value `sei.io/nodedeployment` may have on what this step writes (objects and
    /// pods): a group task's own group, or the group that owns this node; `None`: the label may
    /// not be set at all. So no object joins a group's selectors without that group owning it.
    pub group_label: Option<String>,
}

/// The label a group's exporter carries (`sei.io/role=exporter`), only on `<group>-exporter`.
pub const ROLE_LABEL: &str = "sei.io/role";
/// The revision label of a group's SeiNodes and their pods.
pub const REVISION_LABEL: &str = "sei.io/revision";

impl Scope {
    /// Whether the group-identity label `key=value` may be set on the object `object_name`:
    /// `Some(verdict)` for `sei.io/nodedeployment` (only this scope's `group_label`) and
    /// `sei.io/role` (only `exporter`, only on a group's `<group>-exporter`); `None` for any other
    /// key (the caller's rules apply).
    pub fn identity_label(&self, key: &str, value: &str, object_name: &str) -> Option<bool> {
        match key {
            GROUP_LABEL => Some(self.group_label.as_deref() == Some(value)),
            ROLE_LABEL => Some(self.group.is_some() && value == "exporter" && object_name == format!("{}-exporter", self.node_name)),
            _ => None,
        }
    }
}

/// The label that ties a group's SeiNodes to it (`sei.io/nodedeployment=<group>`).
pub const GROUP_LABEL: &str = "sei.io/nodedeployment";

/// What a group task may touch: the SeiNodes named here (the group's children, the entrants of
/// its rollout, its fork exporter), each only while owned by the group alone, and their sidecars.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupScope {
    pub members: BTreeSet<String>,
    /// The template's pod labels: the only ones (besides `sei.io/nodedeployment=<group>` and
    /// `sei.io/revision`) a written SeiNode's `spec.podLabels` may hold.
    pub pod_labels: BTreeMap<String, String>,
}

impl Scope {
    /// The names a SeiNode owns: `<node>` (StatefulSet, Service, bootstrap Service),
    /// `data-<node>` (PVC) and `<node>-bootstrap` (bootstrap Job); see `writable_name`.
    pub fn for_node(namespace: &str, node_name: &str) -> Self {
        Self {
            namespace: namespace.to_string(),
            node_name: node_name.to_string(),
            pod_service_accounts: ["default".to_string()].into_iter().collect(),
            owner_uid: None,
            pod_labels: Default::default(),
            placement: Default::default(),
            group: None,
            group_label: None,
        }
    }

    /// The group whose label this node's objects and pods may carry (the group that owns it).
    pub fn with_group_label(mut self, group: Option<String>) -> Self {
        self.group_label = group;
        self
    }

    /// A group task's scope: SeiNodeDeployment `group` (uid `uid`) and the SeiNodes it may
    /// touch. Labels its SeiNodes may carry: `object_labels` (the template's) besides the group's
    /// own; their `spec.podLabels`: `pod_labels` (the template's) besides the group's own.
    pub fn for_group(
        namespace: &str,
        group: &str,
        uid: &str,
        members: BTreeSet<String>,
        object_labels: BTreeMap<String, String>,
        pod_labels: BTreeMap<String, String>,
    ) -> Self {
        Self {
            owner_uid: Some(uid.to_string()),
            pod_labels: object_labels,
            group: Some(GroupScope { members, pod_labels }),
            group_label: Some(group.to_string()),
            ..Self::for_node(namespace, group)
        }
    }

    /// The kind (`SeiNode` or `SeiNodeDeployment`) that must own what a step writes.
    pub fn owner_kind(&self) -> &'static str {
        if self.group.is_some() { "SeiNodeDeployment" } else { "SeiNode" }
    }

    /// The node's `spec.podLabels`, which its pod templates may carry.
    pub fn with_pod_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.pod_labels = labels;
        self
    }

    /// Where the node's pods may be scheduled.
    pub fn with_placement(mut self, placement: Placement) -> Self {
        self.placement = placement;
        self
    }

    /// The one name the node's object of `kind` has: `data-<node>` for its PVC,
    /// `<node>-bootstrap` for its Job, `<node>` for the others. Per kind, so that a node whose
    /// name looks like another's derived name (`data-v`) cannot reach that node's PVC.
    pub fn writable_name(&self, kind: &str) -> String {
        match kind {
            "PersistentVolumeClaim" => format!("data-{}", self.node_name),
            "Job" => format!("{}-bootstrap", self.node_name),
            _ => self.node_name.clone(),
        }
    }

    /// Require written objects to be owned by the SeiNode with this uid.
    pub fn with_owner_uid(mut self, uid: Option<String>) -> Self {
        self.owner_uid = uid;
        self
    }

    /// Also allow the platform's service account (`SEI_SERVICE_ACCOUNT`) in pod templates.
    pub fn with_service_account(mut self, service_account: Option<String>) -> Self {
        self.pod_service_accounts.extend(service_account);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writable_names_are_per_kind() {
        let s = Scope::for_node("sei", "rpc");
        assert_eq!(s.writable_name("PersistentVolumeClaim"), "data-rpc");
        assert_eq!(s.writable_name("Job"), "rpc-bootstrap");
        for kind in ["StatefulSet", "Service", "ConfigMap"] {
            assert_eq!(s.writable_name(kind), "rpc");
        }
        assert_eq!(Scope::for_node("sei", "data-v").writable_name("PersistentVolumeClaim"), "data-data-v");
        assert!(s.pod_service_accounts.contains("default") && s.owner_uid.is_none());
    }

    #[test]
    fn placement_follows_the_platform() {
        let mut p = PlatformConfig::for_local();
        assert_eq!(Placement::for_platform(&p), Placement::default(), "no pool, no toleration: nothing may be required");
        p.node_pool = Some("rpc".into());
        p.node_pool_archive = Some("archive".into());
        p.toleration_key = Some("sei.io/pool".into());
        let placement = Placement::for_platform(&p);
        assert_eq!(placement.node_labels[NODE_POOL_LABEL], ["archive".to_string(), "rpc".to_string()].into());
        assert_eq!(placement.toleration_keys, ["sei.io/pool".to_string()].into());
    }
}
