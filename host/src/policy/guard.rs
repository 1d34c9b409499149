//! `CapabilityGuard`: every host call a module makes is checked here before it reaches an
//! adapter.
//!
//! Invariants (unit tests at the bottom of this file):
//! - a call needs the capability of its verb in the module's grants (`verb_needs_its_capability`);
//! - Kubernetes calls stay in the node's namespace; another namespace is denied
//!   (`other_namespace_is_denied`), and an object whose `metadata.namespace` differs is denied
//!   (`write_with_foreign_namespace_is_denied`);
//! - only kinds in the grant's kind list are reachable; Secrets are never in the default list
//!   (`secrets_are_not_reachable_by_default`);
//! - writes (create, apply, delete) may only touch the names the node owns
//!   (`writes_are_limited_to_owned_names`); reads may name anything in the namespace;
//! - an object written while the node's uid is known must be owned by that node alone
//!   (`written_objects_must_be_owned_by_the_node_alone`), and a workload's pod template must pass
//!   the pod policy (`pod_policy`; through the sandbox:
//!   `pod_template_mounting_a_secret_is_refused_by_pod_policy`);
//! - a group task (`Scope::group`) reaches only SeiNodes, only its members, only while owned by
//!   its SeiNodeDeployment alone, written with the group's label and no pod labels beyond the
//!   template's; its sidecar calls go only to members (`group_tasks_touch_only_their_members`).

use super::scope::Scope;
use crate::wit::Capability;
use std::collections::BTreeSet;
use std::fmt;

/// What a module is allowed to do, from its registration (built-in defaults, or a
/// `TaskModule` resource later).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub capabilities: BTreeSet<CapabilityName>,
    /// `(apiVersion, kind)` pairs the module may touch.
    pub kinds: BTreeSet<(String, String)>,
}

/// A `Capability` that can live in ordered sets, config files and the `TaskModule` spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CapabilityName {
    KubeRead,
    KubeWrite,
    KubeDelete,
    Sidecar,
}

impl CapabilityName {
    pub fn as_str(self) -> &'static str {
        match self {
            CapabilityName::KubeRead => "kube-read",
            CapabilityName::KubeWrite => "kube-write",
            CapabilityName::KubeDelete => "kube-delete",
            CapabilityName::Sidecar => "sidecar",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        [Self::KubeRead, Self::KubeWrite, Self::KubeDelete, Self::Sidecar].into_iter().find(|c| c.as_str() == s)
    }
}

impl fmt::Display for CapabilityName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Capability> for CapabilityName {
    fn from(c: Capability) -> Self {
        match c {
            Capability::KubeRead => CapabilityName::KubeRead,
            Capability::KubeWrite => CapabilityName::KubeWrite,
            Capability::KubeDelete => CapabilityName::KubeDelete,
            Capability::Sidecar => CapabilityName::Sidecar,
        }
    }
}

/// The kinds a node's tasks work with. Secrets are deliberately absent.
pub const DEFAULT_KINDS: &[(&str, &str)] = &[
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Pod"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "Job"),
    ("sei.io/v1alpha1", "SeiNode"),
];

/// Kinds a module may create, apply or delete (the node's own objects); SeiNodes and Pods are
/// read-only.
pub const WRITABLE_KINDS: &[(&str, &str)] =
    &[("v1", "PersistentVolumeClaim"), ("v1", "Service"), ("v1", "ConfigMap"), ("apps/v1", "StatefulSet"), ("batch/v1", "Job")];

/// A Kubernetes object name: a DNS-1123 subdomain (lowercase alphanumerics, `-` and `.`, at
/// most 253 bytes, starting and ending alphanumeric). Anything else never reaches a URL.
pub fn is_dns_subdomain(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !name.is_empty() && name.len() <= 253 && name.chars().all(ok_char) && edge(name.chars().next()) && edge(name.chars().last())
}

/// A sidecar task id as the sidecar issues them and the planner derives them: a UUID in its
/// canonical 8-4-4-4-12 hex form. Only such ids are formatted into a sidecar URL, so an id can
/// never add a path segment, a query or a `..` (`sidecar_task_ids_are_uuids`).
pub fn is_sidecar_task_id(id: &str) -> bool {
    let b = id.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

impl Grants {
    pub fn new(capabilities: impl IntoIterator<Item = CapabilityName>) -> Self {
        Self {
            capabilities: capabilities.into_iter().collect(),
            kinds: DEFAULT_KINDS.iter().map(|(a, k)| (a.to_string(), k.to_string())).collect(),
        }
    }
    pub fn with_kinds(mut self, kinds: &[(&str, &str)]) -> Self {
        self.kinds = kinds.iter().map(|(a, k)| (a.to_string(), k.to_string())).collect();
        self
    }
    pub fn allows(&self, c: CapabilityName) -> bool {
        self.capabilities.contains(&c)
    }

    /// Whether these grants allow nothing beyond `other`.
    pub fn within(&self, other: &Grants) -> bool {
        self.capabilities.is_subset(&other.capabilities) && self.kinds.is_subset(&other.kinds)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeVerb {
    Get,
    List,
    Create,
    Apply,
    Delete,
}

impl KubeVerb {
    pub fn capability(self) -> CapabilityName {
        match self {
            KubeVerb::Get | KubeVerb::List => CapabilityName::KubeRead,
            KubeVerb::Create | KubeVerb::Apply => CapabilityName::KubeWrite,
            KubeVerb::Delete => CapabilityName::KubeDelete,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            KubeVerb::Get => "get",
            KubeVerb::List => "list",
            KubeVerb::Create => "create",
            KubeVerb::Apply => "apply",
            KubeVerb::Delete => "delete",
        }
    }
}

/// Why a call was refused; the text goes to the guest as `denied`, to the log and to the
/// run's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Denial {
    /// Short machine-readable reason, the label of the denial counter.
    pub reason: &'static str,
    pub message: String,
}

impl fmt::Display for Denial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A Kubernetes call as the guard sees it.
#[derive(Debug, Clone, Copy)]
pub struct KubeCall<'a> {
    pub verb: KubeVerb,
    pub api_version: &'a str,
    pub kind: &'a str,
    /// The namespace the guest named (`None`: the node's).
    pub namespace: Option<&'a str>,
    /// The object name (`None` for list).
    pub name: Option<&'a str>,
}

#[derive(Debug, Clone)]
pub struct CapabilityGuard {
    grants: std::sync::Arc<Grants>,
    scope: Scope,
}

impl CapabilityGuard {
    pub fn new(grants: std::sync::Arc<Grants>, scope: Scope) -> Self {
        Self { grants, scope }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The object a create or apply writes: it must be owned by the node (when its uid is known)
    /// and by nothing else, and a workload's pod template must pass the pod policy.
    pub fn check_object(&self, kind: &str, object: &serde_json::Value, what: &str) -> Result<(), Denial> {
        self.check_owned(object, what, "the object must be owned")?;
        if self.scope.group.is_some() {
            self.check_group_node(object, what)?;
        }
        super::pod_policy::check_object(kind, object, &self.scope)
            .map_err(|m| Denial { reason: "pod-policy", message: format!("{what}: {m}") })
    }

    /// An object a module is about to apply over or delete, as it is stored now: it must be owned
    /// by the node alone too, so a module never takes over (or removes) an object it did not make
    /// (`existing_objects_must_be_the_nodes_own`).
    pub fn check_existing(&self, object: &serde_json::Value, what: &str) -> Result<(), Denial> {
        self.check_owned(object, what, "the existing object is not the node's own: it must be owned")
    }

    /// When the node's uid is known: the object's owner references name the node (kind, name and
    /// uid), and nothing else.
    fn check_owned(&self, object: &serde_json::Value, what: &str, lead: &str) -> Result<(), Denial> {
        let Some(uid) = &self.scope.owner_uid else { return Ok(()) };
        let owner_kind = self.scope.owner_kind();
        let owners = object.pointer("/metadata/ownerReferences").and_then(serde_json::Value::as_array);
        let is_node = |o: &serde_json::Value| {
            o.get("kind").and_then(serde_json::Value::as_str) == Some(owner_kind)
                && o.get("apiVersion").and_then(serde_json::Value::as_str) == Some("sei.io/v1alpha1")
                && o.get("name").and_then(serde_json::Value::as_str) == Some(self.scope.node_name.as_str())
                && o.get("uid").and_then(serde_json::Value::as_str) == Some(uid.as_str())
        };
        match owners {
            Some(list) if !list.is_empty() && list.iter().all(is_node) => Ok(()),
            _ => Err(Denial {
                reason: "owner",
                message: format!(
                    "{what}: {lead} by {owner_kind} {} (uid {uid}) and by nothing else, through metadata.ownerReferences",
                    self.scope.node_name
                ),
            }),
        }
    }

    /// Check only the capability (before the host parses anything of the call).
    pub fn check_capability(&self, c: CapabilityName, what: &str) -> Result<(), Denial> {
        self.need(c, what)
    }

    fn need(&self, c: CapabilityName, what: &str) -> Result<(), Denial> {
        if self.grants.allows(c) {
            Ok(())
        } else {
            Err(Denial { reason: "capability", message: format!("{what} needs capability `{c}`, which the module was not granted") })
        }
    }

    /// A SeiNode a group task writes: it carries the group's label, and its pods no labels
    /// beyond `sei.io/*` and the template's (so a group cannot send its nodes' pods into
    /// another Service).
    fn check_group_node(&self, object: &serde_json::Value, what: &str) -> Result<(), Denial> {
        let group = &self.scope.node_name;
        let label = object.pointer("/metadata/labels").and_then(|l| l.get(super::scope::GROUP_LABEL)).and_then(serde_json::Value::as_str);
        if label != Some(group.as_str()) {
            return Err(Denial {
                reason: "label",
                message: format!(
                    "{what}: a SeiNode of SeiNodeDeployment {group} must carry the label {}={group}",
                    super::scope::GROUP_LABEL
                ),
            });
        }
        let template = self.scope.group.as_ref().map(|g| &g.pod_labels);
        let pod_labels = object.pointer("/spec/podLabels").and_then(serde_json::Value::as_object);
        for (k, v) in pod_labels.into_iter().flatten() {
            let v = v.as_str().unwrap_or_default();
            let allowed = match k.as_str() {
                super::scope::GROUP_LABEL => v == group.as_str(),
                super::scope::REVISION_LABEL => true,
                _ => !k.starts_with("sei.io/") && template.and_then(|t| t.get(k)).is_some_and(|t| t == v),
            };
            if !allowed {
                return Err(Denial {
                    reason: "label",
                    message: format!("{what}: spec.podLabels {k}={v} is not in the template of SeiNodeDeployment {group}"),
                });
            }
        }
        // Label peers in another namespace would have the controller list SeiNodes there for it.
        let peers = object.pointer("/spec/peers").and_then(serde_json::Value::as_array);
        for source in peers.into_iter().flatten() {
            if let Some(ns) = source.pointer("/label/namespace").and_then(serde_json::Value::as_str)
                && ns != self.scope.namespace
            {
                return Err(Denial {
                    reason: "namespace",
                    message: format!(
                        "{what}: spec.peers label namespace `{ns}` is outside the group's namespace `{}`",
                        self.scope.namespace
                    ),
                });
            }
        }
        Ok(())
    }

    /// A group task's Kubernetes call: SeiNodes only; a named one must be a member.
    fn check_group_kube(&self, call: &KubeCall<'_>, group: &super::scope::GroupScope, what: &str) -> Result<(), Denial> {
        if (call.api_version, call.kind) != ("sei.io/v1alpha1", "SeiNode") {
            return Err(Denial {
                reason: "kind",
                message: format!(
                    "{what}: a task of SeiNodeDeployment {} may touch only its own SeiNodes (sei.io/v1alpha1 SeiNode), not {}/{}",
                    self.scope.node_name, call.api_version, call.kind
                ),
            });
        }
        if let Some(name) = call.name
            && !group.members.contains(name)
        {
            return Err(Denial {
                reason: "name",
                message: format!("{what}: SeiNode {name} is not a member of SeiNodeDeployment {}", self.scope.node_name),
            });
        }
        if call.name.is_none() && matches!(call.verb, KubeVerb::Create | KubeVerb::Apply | KubeVerb::Delete) {
            return Err(Denial { reason: "name", message: format!("{what}: a write names the member it writes") });
        }
        Ok(())
    }

    /// A group task's call to a member's sidecar: the capability, and a member of the group.
    pub fn check_member_sidecar(&self, op: &str, node: &str) -> Result<(), Denial> {
        let what = format!("member-sidecars {op} {node}");
        self.need(CapabilityName::Sidecar, &what)?;
        match &self.scope.group {
            None => Err(Denial {
                reason: "scope",
                message: format!("{what}: only a SeiNodeDeployment's tasks may call member sidecars; a node task calls its own sidecar"),
            }),
            Some(g) if !g.members.contains(node) => Err(Denial {
                reason: "name",
                message: format!("{what}: SeiNode {node} is not a member of SeiNodeDeployment {}", self.scope.node_name),
            }),
            Some(_) => Ok(()),
        }
    }

    /// Check a Kubernetes call; returns the namespace to use.
    pub fn check_kube(&self, call: &KubeCall<'_>) -> Result<String, Denial> {
        let what = format!(
            "kube {} {}/{} {}/{}",
            call.verb.as_str(),
            call.api_version,
            call.kind,
            call.namespace.unwrap_or(&self.scope.namespace),
            call.name.unwrap_or("*")
        );
        self.need(call.verb.capability(), &what)?;
        if let Some(name) = call.name
            && !is_dns_subdomain(name)
        {
            return Err(Denial { reason: "name", message: format!("{what}: `{name}` is not a valid object name (DNS-1123 subdomain)") });
        }
        let ns = call.namespace.unwrap_or(&self.scope.namespace);
        if ns != self.scope.namespace {
            return Err(Denial {
                reason: "namespace",
                message: format!("{what}: namespace `{ns}` is outside the node's namespace `{}`", self.scope.namespace),
            });
        }
        if !self.grants.kinds.contains(&(call.api_version.to_string(), call.kind.to_string())) {
            return Err(Denial {
                reason: "kind",
                message: format!("{what}: kind {}/{} is not in the module's allowed kinds", call.api_version, call.kind),
            });
        }
        if let Some(group) = &self.scope.group {
            self.check_group_kube(call, group, &what)?;
            return Ok(ns.to_string());
        }
        if matches!(call.verb, KubeVerb::Create | KubeVerb::Apply | KubeVerb::Delete) {
            if !WRITABLE_KINDS.contains(&(call.api_version, call.kind)) {
                return Err(Denial {
                    reason: "kind",
                    message: format!("{what}: kind {}/{} is read-only for task modules", call.api_version, call.kind),
                });
            }
            let name = call.name.unwrap_or("");
            let own = self.scope.writable_name(call.kind);
            if name != own {
                return Err(Denial {
                    reason: "name",
                    message: format!("{what}: node {} may only write the {} named {own}", self.scope.node_name, call.kind),
                });
            }
        }
        Ok(ns.to_string())
    }

    /// Check a sidecar call (`op` names it in messages, e.g. `submit-task`).
    pub fn check_sidecar(&self, op: &str) -> Result<(), Denial> {
        self.need(CapabilityName::Sidecar, &format!("sidecar {op}"))?;
        if self.scope.group.is_some() {
            return Err(Denial {
                reason: "scope",
                message: format!(
                    "sidecar {op}: a task of SeiNodeDeployment {} has no sidecar of its own; it calls its members' through member-sidecars",
                    self.scope.node_name
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn guard(caps: &[CapabilityName]) -> CapabilityGuard {
        CapabilityGuard::new(Arc::new(Grants::new(caps.iter().copied())), Scope::for_node("sei", "rpc"))
    }

    #[test]
    fn written_objects_must_be_owned_by_the_node_alone() {
        let g = CapabilityGuard::new(
            Arc::new(Grants::new([CapabilityName::KubeWrite])),
            Scope::for_node("sei", "rpc").with_owner_uid(Some("u1".into())),
        );
        let owner =
            |name: &str, uid: &str| serde_json::json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "name": name, "uid": uid});
        let obj = |owners: serde_json::Value| serde_json::json!({"metadata": {"name": "rpc", "ownerReferences": owners}});
        assert_eq!(g.check_object("ConfigMap", &obj(serde_json::json!([owner("rpc", "u1")])), "apply"), Ok(()));
        for bad in [
            serde_json::json!([]),
            serde_json::json!([owner("rpc", "other-uid")]),
            serde_json::json!([owner("other-node", "u1")]),
            serde_json::json!([owner("rpc", "u1"), {"apiVersion": "v1", "kind": "Namespace", "name": "sei", "uid": "n"}]),
        ] {
            let err = g.check_object("ConfigMap", &obj(bad.clone()), "apply v1/ConfigMap sei/rpc").unwrap_err();
            assert_eq!(err.reason, "owner", "{bad}");
            assert!(err.message.contains("must be owned by SeiNode rpc (uid u1)"), "{}", err.message);
        }
        let no_owners = serde_json::json!({"metadata": {"name": "rpc"}});
        assert_eq!(g.check_object("ConfigMap", &no_owners, "apply").unwrap_err().reason, "owner");
        assert_eq!(guard(&[CapabilityName::KubeWrite]).check_object("ConfigMap", &no_owners, "apply"), Ok(()), "no uid known: not checked");
    }

    #[test]
    fn existing_objects_must_be_the_nodes_own() {
        let g = CapabilityGuard::new(
            Arc::new(Grants::new([CapabilityName::KubeWrite])),
            Scope::for_node("sei", "rpc").with_owner_uid(Some("u1".into())),
        );
        let owned = serde_json::json!({"metadata": {"name": "rpc", "ownerReferences": [
            {"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "name": "rpc", "uid": "u1"}
        ]}});
        assert_eq!(g.check_existing(&owned, "apply v1/ConfigMap sei/rpc"), Ok(()));
        for foreign in [
            serde_json::json!({"metadata": {"name": "rpc"}}),
            serde_json::json!({"metadata": {"name": "rpc", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app", "uid": "d1"}]}}),
        ] {
            let d = g.check_existing(&foreign, "apply v1/ConfigMap sei/rpc").unwrap_err();
            assert_eq!(d.reason, "owner");
            assert!(d.message.contains("the existing object is not the node's own"), "{}", d.message);
        }
    }

    fn call<'a>(verb: KubeVerb, kind: &'a str, ns: Option<&'a str>, name: Option<&'a str>) -> KubeCall<'a> {
        let api_version = if kind == "StatefulSet" { "apps/v1" } else { "v1" };
        KubeCall { verb, api_version, kind, namespace: ns, name }
    }

    #[test]
    fn verb_needs_its_capability() {
        let g = guard(&[CapabilityName::KubeRead]);
        assert!(g.check_kube(&call(KubeVerb::Get, "ConfigMap", None, Some("x"))).is_ok());
        assert!(g.check_kube(&call(KubeVerb::List, "ConfigMap", None, None)).is_ok());
        let d = g.check_kube(&call(KubeVerb::Apply, "Service", None, Some("rpc"))).unwrap_err();
        assert_eq!(d.reason, "capability");
        assert!(d.message.contains("kube-write"), "{d}");
        let d = g.check_kube(&call(KubeVerb::Delete, "Service", None, Some("rpc"))).unwrap_err();
        assert!(d.message.contains("kube-delete"), "{d}");
        assert_eq!(g.check_sidecar("status").unwrap_err().reason, "capability");
        assert!(guard(&[CapabilityName::Sidecar]).check_sidecar("status").is_ok());
    }

    #[test]
    fn other_namespace_is_denied() {
        let g = guard(&[CapabilityName::KubeRead]);
        let d = g.check_kube(&call(KubeVerb::Get, "ConfigMap", Some("kube-system"), Some("x"))).unwrap_err();
        assert_eq!(d.reason, "namespace");
        assert!(d.message.contains("kube-system") && d.message.contains("`sei`"), "{d}");
        assert_eq!(g.check_kube(&call(KubeVerb::Get, "ConfigMap", Some("sei"), Some("x"))).unwrap(), "sei");
    }

    #[test]
    fn write_with_foreign_namespace_is_denied() {
        let g = guard(&[CapabilityName::KubeWrite]);
        let d = g.check_kube(&call(KubeVerb::Apply, "Service", Some("other"), Some("rpc"))).unwrap_err();
        assert_eq!(d.reason, "namespace");
    }

    #[test]
    fn secrets_are_not_reachable_by_default() {
        let g = guard(&[CapabilityName::KubeRead]);
        let d = g.check_kube(&call(KubeVerb::Get, "Secret", None, Some("keys"))).unwrap_err();
        assert_eq!(d.reason, "kind");
    }

    #[test]
    fn writes_are_limited_to_owned_names() {
        let g = guard(&[CapabilityName::KubeWrite, CapabilityName::KubeDelete]);
        let kinded = |verb, api_version, kind, name| KubeCall { verb, api_version, kind, namespace: None, name: Some(name) };
        assert!(g.check_kube(&kinded(KubeVerb::Apply, "v1", "Service", "rpc")).is_ok());
        assert!(g.check_kube(&kinded(KubeVerb::Apply, "apps/v1", "StatefulSet", "rpc")).is_ok());
        assert!(g.check_kube(&kinded(KubeVerb::Create, "v1", "PersistentVolumeClaim", "data-rpc")).is_ok());
        assert!(g.check_kube(&kinded(KubeVerb::Delete, "batch/v1", "Job", "rpc-bootstrap")).is_ok());
        for (kind, api, name) in
            [("Service", "v1", "rpc-2"), ("Service", "v1", "data-rpc"), ("PersistentVolumeClaim", "v1", "rpc"), ("Job", "batch/v1", "rpc")]
        {
            let d = g.check_kube(&kinded(KubeVerb::Create, api, kind, name)).unwrap_err();
            assert_eq!(d.reason, "name", "{kind} {name}");
        }
        // A node named like another node's PVC cannot reach that PVC.
        let data_v = CapabilityGuard::new(Arc::new(Grants::new([CapabilityName::KubeDelete])), Scope::for_node("sei", "data-v"));
        let d = data_v.check_kube(&kinded(KubeVerb::Delete, "v1", "PersistentVolumeClaim", "data-v")).unwrap_err();
        assert!(d.message.contains("may only write the PersistentVolumeClaim named data-data-v"), "{}", d.message);
        assert_eq!(g.check_kube(&call(KubeVerb::Delete, "Service", None, None)).unwrap_err().reason, "name");
    }

    #[test]
    fn reads_may_name_anything_in_the_namespace() {
        let g = guard(&[CapabilityName::KubeRead]);
        assert!(g.check_kube(&call(KubeVerb::Get, "StatefulSet", None, Some("some-peer"))).is_ok());
    }

    #[test]
    fn names_must_be_dns_subdomains() {
        let g = guard(&[CapabilityName::KubeRead]);
        for bad in ["x/../../secrets/y", "UPPER", "a?b", "", "-x", &"a".repeat(254)] {
            let d = g.check_kube(&call(KubeVerb::Get, "ConfigMap", None, Some(bad))).unwrap_err();
            assert_eq!(d.reason, "name", "{bad}");
        }
        assert!(is_dns_subdomain("data-rpc.v1"));
    }

    #[test]
    fn seinodes_and_pods_are_read_only() {
        let g = CapabilityGuard::new(
            Arc::new(Grants::new([CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete])),
            Scope::for_node("sei", "rpc"),
        );
        let node = KubeCall { verb: KubeVerb::Apply, api_version: "sei.io/v1alpha1", kind: "SeiNode", namespace: None, name: Some("rpc") };
        assert_eq!(g.check_kube(&node).unwrap_err().reason, "kind");
        let pod = KubeCall { verb: KubeVerb::Delete, api_version: "v1", kind: "Pod", namespace: None, name: Some("rpc") };
        assert_eq!(g.check_kube(&pod).unwrap_err().reason, "kind");
        let read = KubeCall { verb: KubeVerb::Get, api_version: "sei.io/v1alpha1", kind: "SeiNode", namespace: None, name: Some("peer") };
        assert!(g.check_kube(&read).is_ok());
    }

    #[test]
    fn sidecar_task_ids_are_uuids() {
        for ok in ["7f0c2a4e-0000-5000-8000-000000000001", "7F0C2A4E-0000-5000-8000-00000000000A"] {
            assert!(is_sidecar_task_id(ok), "{ok}");
        }
        for bad in [
            "",
            "../../other/rpc/v0/tasks/7f0c2a4e-0000-5000-8000-000000000001",
            "7f0c2a4e-0000-5000-8000-00000000000",
            "7f0c2a4e-0000-5000-8000-0000000000011",
            "7f0c2a4e/0000-5000-8000-000000000001",
            "7f0c2a4e-0000-5000-8000-00000000000?",
            "7f0c2a4e-0000-5000-8000-0000000000%2",
            "7f0c2a4e00000-5000-8000-000000000001",
            "zf0c2a4e-0000-5000-8000-000000000001",
        ] {
            assert!(!is_sidecar_task_id(bad), "{bad}");
        }
    }

    #[test]
    fn capability_names_round_trip() {
        for c in [CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete, CapabilityName::Sidecar] {
            assert_eq!(CapabilityName::parse(c.as_str()), Some(c));
        }
        assert_eq!(CapabilityName::parse("filesystem"), None);
    }

    #[test]
    fn group_tasks_touch_only_their_members() {
        use CapabilityName::*;
        let members = ["net-0".to_string(), "net-1".to_string()].into();
        let object_labels = [("team".to_string(), "ops".to_string())].into();
        let pod_labels = [("tier".to_string(), "val".to_string())].into();
        let g = CapabilityGuard::new(
            Arc::new(Grants::new([KubeRead, KubeWrite, KubeDelete, Sidecar])),
            Scope::for_group("sei", "net", "g-uid", members, object_labels, pod_labels),
        );
        let call = |verb, api_version, kind, name| KubeCall { verb, api_version, kind, namespace: None, name };
        assert!(g.check_kube(&call(KubeVerb::Apply, "sei.io/v1alpha1", "SeiNode", Some("net-1"))).is_ok());
        assert!(g.check_kube(&call(KubeVerb::List, "sei.io/v1alpha1", "SeiNode", None)).is_ok());
        let denied = |c: KubeCall<'_>| g.check_kube(&c).unwrap_err();
        let d = denied(call(KubeVerb::Apply, "sei.io/v1alpha1", "SeiNode", Some("other-0")));
        assert_eq!(d.reason, "name");
        assert!(d.message.contains("SeiNode other-0 is not a member of SeiNodeDeployment net"), "{d}");
        assert_eq!(denied(call(KubeVerb::Get, "sei.io/v1alpha1", "SeiNode", Some("other-0"))).reason, "name", "reads too");
        for (api, kind) in [("v1", "ConfigMap"), ("apps/v1", "StatefulSet"), ("v1", "Pod")] {
            let d = denied(call(KubeVerb::Get, api, kind, Some("net-0")));
            assert_eq!(d.reason, "kind", "{kind}");
            assert!(d.message.contains("may touch only its own SeiNodes"), "{d}");
        }
        // Secrets are not even in the grant's kinds.
        assert_eq!(denied(call(KubeVerb::Get, "v1", "Secret", Some("net-0"))).reason, "kind");
        // Written SeiNodes: owned by the group alone, with its label, and the template's pod labels only.
        let node = |owner: serde_json::Value, labels: serde_json::Value, pod_labels: serde_json::Value| serde_json::json!({"metadata": {"name": "net-0", "labels": labels, "ownerReferences": [owner]}, "spec": {"podLabels": pod_labels}});
        let group_owner = serde_json::json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "name": "net", "uid": "g-uid"});
        let ok_labels = serde_json::json!({"sei.io/nodedeployment": "net", "team": "ops"});
        let ok_pods = serde_json::json!({"tier": "val", "sei.io/nodedeployment": "net", "sei.io/revision": "3"});
        assert_eq!(g.check_object("SeiNode", &node(group_owner.clone(), ok_labels.clone(), ok_pods), "w"), Ok(()));
        let node_owner = serde_json::json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "name": "net", "uid": "g-uid"});
        let d = g.check_object("SeiNode", &node(node_owner, ok_labels.clone(), serde_json::json!({})), "w").unwrap_err();
        assert!(d.message.contains("owned by SeiNodeDeployment net (uid g-uid)"), "{d}");
        let d = g
            .check_object("SeiNode", &node(group_owner.clone(), serde_json::json!({"team": "ops"}), serde_json::json!({})), "w")
            .unwrap_err();
        assert!(d.message.contains("must carry the label sei.io/nodedeployment=net"), "{d}");
        for bad in [
            serde_json::json!({"app": "payments"}),
            serde_json::json!({"sei.io/nodedeployment": "other"}),
            serde_json::json!({"sei.io/node": "other-0"}),
            serde_json::json!({"team": "ops"}),
        ] {
            let d = g.check_object("SeiNode", &node(group_owner.clone(), ok_labels.clone(), bad.clone()), "w").unwrap_err();
            assert!(d.message.contains("is not in the template of SeiNodeDeployment net"), "{bad}: {d}");
        }
        // The object's own labels: the group's, never another's, and no exporter role but on the exporter.
        for bad in [
            serde_json::json!({"sei.io/nodedeployment": "other"}),
            serde_json::json!({"sei.io/nodedeployment": "net", "sei.io/role": "exporter"}),
        ] {
            let d = g.check_object("SeiNode", &node(group_owner.clone(), bad.clone(), serde_json::json!({})), "w").unwrap_err();
            assert!(d.message.contains("is not allowed") || d.message.contains("must carry the label"), "{bad}: {d}");
        }
        let mut cross = node(group_owner.clone(), ok_labels.clone(), serde_json::json!({}));
        cross["spec"]["peers"] = serde_json::json!([{"label": {"selector": {"a": "b"}, "namespace": "other-tenant"}}]);
        assert_eq!(g.check_object("SeiNode", &cross, "w").unwrap_err().reason, "namespace");
        let exporter = serde_json::json!({"metadata": {"name": "net-exporter", "labels": {"sei.io/nodedeployment": "net", "sei.io/role": "exporter"},
            "ownerReferences": [group_owner.clone()]}, "spec": {}});
        assert_eq!(g.check_object("SeiNode", &exporter, "w"), Ok(()));
        // Sidecars: members only, and only through member-sidecars.
        assert!(g.check_member_sidecar("status", "net-1").is_ok());
        assert_eq!(g.check_member_sidecar("status", "other-0").unwrap_err().reason, "name");
        assert_eq!(g.check_sidecar("status").unwrap_err().reason, "scope");
        let node_guard = guard(&[Sidecar]);
        assert_eq!(node_guard.check_member_sidecar("status", "rpc").unwrap_err().reason, "scope", "a node task has no members");
    }

    #[test]
    fn review_group_writes_must_name_a_member() {
        use CapabilityName::*;
        let members = ["net-0".to_string()].into();
        let g = CapabilityGuard::new(
            Arc::new(Grants::new([KubeRead, KubeWrite, KubeDelete])),
            Scope::for_group("sei", "net", "g-uid", members, Default::default(), Default::default()),
        );
        let call = |verb, name| KubeCall { verb, api_version: "sei.io/v1alpha1", kind: "SeiNode", namespace: None, name };
        for verb in [KubeVerb::Create, KubeVerb::Apply, KubeVerb::Delete] {
            assert_eq!(g.check_kube(&call(verb, None)).unwrap_err().reason, "name", "{verb:?} without a name");
            assert_eq!(g.check_kube(&call(verb, Some(""))).unwrap_err().reason, "name", "{verb:?} with an empty name");
            assert_eq!(g.check_kube(&call(verb, Some("net-1"))).unwrap_err().reason, "name", "{verb:?} of a non-member");
            assert_eq!(g.check_kube(&call(verb, Some("NET-0"))).unwrap_err().reason, "name", "{verb:?} in another case");
        }
        assert!(g.check_kube(&call(KubeVerb::List, None)).is_ok());
        assert!(g.check_kube(&call(KubeVerb::Apply, Some("net-0"))).is_ok());
    }
}
