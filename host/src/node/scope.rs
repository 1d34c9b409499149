//! What a node's task steps may touch (`policy::scope::Scope`), derived from the SeiNode and the
//! platform: its namespace, its own object names, its uid as the owner of every write, its
//! `spec.podLabels`, and the platform's service account, node pools and toleration
//! (`steps_are_scoped_to_the_node_and_its_uid`). The controller and `task run` use this one
//! function, so a dry run applies exactly the controller's rules.

use crate::api::seinode::SeiNode;
use crate::platform::PlatformConfig;
use crate::policy::scope::{GROUP_LABEL, Placement, Scope};
use kube::ResourceExt;

pub fn node_scope(node: &SeiNode, platform: &PlatformConfig) -> Scope {
    Scope::for_node(&node.namespace().unwrap_or_default(), &node.name_any())
        .with_service_account(platform.service_account.clone())
        .with_owner_uid(node.uid())
        .with_pod_labels(node.spec.pod_labels.clone().unwrap_or_default())
        .with_placement(Placement::for_platform(platform))
        .with_group_label(owning_group(node))
}

/// The SeiNodeDeployment this node belongs to: labelled `sei.io/nodedeployment=<group>` and
/// owned by that group alone (the group controller's rule, `group::children::owned_alone`, by
/// name here: the node controller does not read groups). A node that only says so (a label, a
/// pod label), or that other owners share, belongs to none, so its pods cannot carry another
/// group's label (`a_node_claims_a_group_only_when_the_group_owns_it`).
fn owning_group(node: &SeiNode) -> Option<String> {
    let group = node.labels().get(GROUP_LABEL)?;
    let owners = node.owner_references();
    let alone = !owners.is_empty()
        && owners.iter().all(|o| o.api_version == "sei.io/v1alpha1" && o.kind == "SeiNodeDeployment" && o.name == *group);
    alone.then(|| group.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_scoped_to_the_node_and_its_uid() {
        let node: SeiNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "rpc", "namespace": "sei", "uid": "u-123"},
            "spec": {"chainId": "c", "image": "i", "fullNode": {}, "podLabels": {"team": "rpc"}}
        }))
        .unwrap();
        let mut platform = PlatformConfig::for_local();
        platform.service_account = Some("sei-node".into());
        platform.node_pool = Some("pool".into());
        let scope = node_scope(&node, &platform);
        assert_eq!((scope.namespace.as_str(), scope.node_name.as_str()), ("sei", "rpc"));
        assert_eq!(scope.owner_uid.as_deref(), Some("u-123"), "writes must be owned by this node");
        assert!(scope.pod_service_accounts.contains("sei-node") && scope.pod_service_accounts.contains("default"));
        assert_eq!(scope.pod_labels.get("team").map(String::as_str), Some("rpc"));
        assert_eq!(scope.placement, Placement::for_platform(&platform));
        assert_eq!(scope.group_label, None);
    }

    #[test]
    fn a_node_claims_a_group_only_when_the_group_owns_it() {
        let with = |owners: serde_json::Value| -> SeiNode {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
                "metadata": {"name": "net-0", "namespace": "sei", "labels": {"sei.io/nodedeployment": "net"}, "ownerReferences": owners},
                "spec": {"chainId": "c", "image": "i", "fullNode": {}, "podLabels": {"sei.io/nodedeployment": "net"}}
            }))
            .unwrap()
        };
        let platform = PlatformConfig::for_local();
        let owned = with(serde_json::json!([{"apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "name": "net", "uid": "g"}]));
        assert_eq!(node_scope(&owned, &platform).group_label.as_deref(), Some("net"));
        let shared = with(serde_json::json!([
            {"apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "name": "net", "uid": "g"},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "c"}
        ]));
        assert_eq!(node_scope(&shared, &platform).group_label, None, "a group that shares the node does not own it");
        let other_api = with(serde_json::json!([{"apiVersion": "evil.io/v1", "kind": "SeiNodeDeployment", "name": "net", "uid": "g"}]));
        assert_eq!(node_scope(&other_api, &platform).group_label, None, "another API's SeiNodeDeployment");
        let claimed = with(serde_json::json!([]));
        let scope = node_scope(&claimed, &platform);
        assert_eq!(scope.group_label, None, "a label alone does not make a node a group's");
        assert_eq!(scope.identity_label("sei.io/nodedeployment", "net", "net-0"), Some(false));
    }
}
