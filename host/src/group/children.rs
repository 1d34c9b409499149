//! The group's children, pure: which SeiNodes the group should have (from the template and, for
//! a genesis ceremony, one validator per ordinal), what changed on the ones it has, which to
//! delete on scale-down, when a template change is a rollout, and the group's phase and
//! conditions from its children and its plan.
//!
//! Invariants (tests below):
//! - a child is the template with the group's labels (`sei.io/nodedeployment`, its ordinal, its
//!   revision), the template's annotations, the group as its only (controller) owner, and in a
//!   ceremony `validator.genesisCeremony` with its index (`children_are_the_template_with_the_group`);
//! - only labels, annotations and pod labels are synced onto an existing child; its image,
//!   entrypoint and sidecar change only through a rollout plan (`sync_touches_metadata_and_pod_labels_only`);
//! - scale-down deletes the highest ordinals first (`scale_down_deletes_the_highest_ordinals`);
//! - a rollout starts when the template hash moves, never during a ceremony or a running plan
//!   (`a_template_change_is_a_rollout`);
//! - a ceremony past `maxCeremonyDuration` has overrun (`ceremony_deadline`);
//! - a child wakes its group only when its phase, image, generation, labels, owners or deletion
//!   change (`a_child_wakes_its_group_only_when_it_matters`).

use super::planner::{ceremony_due, entrant_names, template_hash};
use crate::api::seinode::{GenesisCeremonyNodeConfig, SeiNode, SeiNodePhase, TaskPlanPhase};
use crate::api::seinodedeployment::{GroupNodeStatus, GroupPhase, RolloutStatus, SeiNodeDeployment, UpdateStrategyType};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use kube::ResourceExt;
use std::collections::BTreeMap;

pub use crate::policy::scope::GROUP_LABEL;
pub const ORDINAL_LABEL: &str = "sei.io/nodedeployment-ordinal";
pub const REVISION_LABEL: &str = "sei.io/revision";
pub const ROLE_LABEL: &str = "sei.io/role";
pub const FINALIZER: &str = "sei.io/seinodedeployment-finalizer";

/// The group as the one controller owner of its children.
pub fn owner_of(g: &SeiNodeDeployment) -> OwnerReference {
    OwnerReference {
        api_version: "sei.io/v1alpha1".into(),
        kind: "SeiNodeDeployment".into(),
        name: g.name_any(),
        uid: g.uid().unwrap_or_default(),
        controller: Some(true),
        // Not blocking: that would need `update` on seinodedeployments/finalizers where the
        // OwnerReferencesPermissionEnforcement admission plugin runs; nothing here relies on it.
        block_owner_deletion: None,
    }
}

/// A child's ordinal, from its label.
pub fn ordinal_of(n: &SeiNode) -> Option<i32> {
    n.labels().get(ORDINAL_LABEL)?.parse().ok()
}

/// Whether `n` is one of the group's (labelled, and owned by its uid alone), and not its exporter.
pub fn is_child(g: &SeiNodeDeployment, n: &SeiNode) -> bool {
    n.labels().get(GROUP_LABEL).is_some_and(|v| *v == g.name_any())
        && owned_alone(g, n)
        && n.labels().get(ROLE_LABEL).is_none_or(|r| r != "exporter")
}

/// Whether `n` is owned by the group alone: the rule the guard applies to the group's tasks.
pub fn owned_alone(g: &SeiNodeDeployment, n: &SeiNode) -> bool {
    let uid = g.uid().unwrap_or_default();
    !n.owner_references().is_empty() && n.owner_references().iter().all(|o| o.kind == "SeiNodeDeployment" && o.uid == uid)
}

/// The revision that takes traffic and that a new child gets: a rollout's `incumbentRevision`
/// (moved to the entrants' at `switch-traffic`), else the group's `servingRevision`, else its
/// generation.
pub fn revision(g: &SeiNodeDeployment) -> String {
    let status = g.status.as_ref();
    status
        .and_then(|s| s.rollout.as_ref())
        .and_then(|r| r.incumbent_revision.clone())
        .or_else(|| status.and_then(|s| s.serving_revision.clone()))
        .unwrap_or_else(|| g.metadata.generation.unwrap_or(1).to_string())
}

/// The serving revision of a group that has none recorded yet: its lowest ordinal child's, else
/// its generation (a group made before `servingRevision` existed keeps serving what it served).
pub fn initial_serving_revision(g: &SeiNodeDeployment, children: &[SeiNode]) -> String {
    let mut by_ordinal: Vec<(i32, String, Option<String>)> =
        children.iter().filter_map(|c| ordinal_of(c).map(|o| (o, c.name_any(), c.labels().get(REVISION_LABEL).cloned()))).collect();
    by_ordinal.sort();
    by_ordinal.into_iter().find_map(|(_, _, r)| r).unwrap_or_else(|| g.metadata.generation.unwrap_or(1).to_string())
}

/// Labels every child carries: the template's, then the group's.
fn child_labels(g: &SeiNodeDeployment, ordinal: i32, revision: &str) -> BTreeMap<String, String> {
    let mut labels = g.spec.template.metadata.as_ref().map(|m| m.labels.clone()).unwrap_or_default();
    labels.insert(GROUP_LABEL.into(), g.name_any());
    labels.insert(ORDINAL_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    labels
}

/// The pod labels of a child: the template's, plus the group's and the revision.
fn child_pod_labels(g: &SeiNodeDeployment, revision: &str) -> BTreeMap<String, String> {
    let mut labels = g.spec.template.spec.pod_labels.clone().unwrap_or_default();
    labels.insert(GROUP_LABEL.into(), g.name_any());
    labels.insert(REVISION_LABEL.into(), revision.to_string());
    labels
}

/// The child of `ordinal`, as the group creates it.
pub fn desired_child(g: &SeiNodeDeployment, name: &str, ordinal: i32) -> SeiNode {
    let revision = revision(g);
    let mut spec = g.spec.template.spec.clone();
    spec.pod_labels = Some(child_pod_labels(g, &revision));
    if let (Some(genesis), Some(validator)) = (&g.spec.genesis, spec.validator.as_mut()) {
        validator.genesis_ceremony = Some(GenesisCeremonyNodeConfig {
            chain_id: genesis.chain_id.clone(),
            staking_amount: genesis.staking_amount.clone(),
            account_balance: genesis.account_balance.clone(),
            genesis_params: (!genesis.overrides.is_empty()).then(|| serde_json::to_string(&genesis.overrides).unwrap_or_default()),
            index: ordinal,
        });
    }
    SeiNode {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: g.namespace(),
            labels: Some(child_labels(g, ordinal, &revision)),
            annotations: g.spec.template.metadata.as_ref().map(|m| m.annotations.clone()).filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner_of(g)]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// What to merge into an existing child so its labels, annotations and pod labels follow the
/// template (keys are added or changed, never removed); `None`: nothing to change.
pub fn sync_patch(g: &SeiNodeDeployment, child: &SeiNode) -> Option<serde_json::Value> {
    let ordinal = ordinal_of(child)?;
    let revision = child.labels().get(REVISION_LABEL).cloned().unwrap_or_else(|| revision(g));
    let missing = |want: &BTreeMap<String, String>, have: &BTreeMap<String, String>| -> BTreeMap<String, String> {
        want.iter().filter(|(k, v)| have.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect()
    };
    let labels = missing(&child_labels(g, ordinal, &revision), child.labels());
    let annotations = missing(&g.spec.template.metadata.as_ref().map(|m| m.annotations.clone()).unwrap_or_default(), child.annotations());
    let pod_labels = missing(&child_pod_labels(g, &revision), &child.spec.pod_labels.clone().unwrap_or_default());
    if labels.is_empty() && annotations.is_empty() && pod_labels.is_empty() {
        return None;
    }
    let mut patch = serde_json::json!({"metadata": {}});
    if !labels.is_empty() {
        patch["metadata"]["labels"] = serde_json::json!(labels);
    }
    if !annotations.is_empty() {
        patch["metadata"]["annotations"] = serde_json::json!(annotations);
    }
    if !pod_labels.is_empty() {
        patch["spec"] = serde_json::json!({"podLabels": pod_labels});
    }
    Some(patch)
}

/// The children to delete on scale-down: ordinals at or past `replicas`, highest first.
pub fn scale_down(g: &SeiNodeDeployment, children: &[SeiNode]) -> Vec<String> {
    let mut extra: Vec<(i32, String)> =
        children.iter().filter_map(|c| ordinal_of(c).filter(|o| *o >= g.spec.replicas).map(|o| (o, c.name_any()))).collect();
    extra.sort_by(|a, b| b.cmp(a));
    extra.into_iter().map(|(_, n)| n).collect()
}

/// The ordinals `0..replicas` with no child.
pub fn missing_ordinals(g: &SeiNodeDeployment, children: &[SeiNode]) -> Vec<i32> {
    (0..g.spec.replicas).filter(|o| !children.iter().any(|c| ordinal_of(c) == Some(*o))).collect()
}

/// The children in ordinal order (the incumbents of a rollout, the validators of a ceremony).
pub fn incumbents(children: &[SeiNode]) -> Vec<String> {
    let mut named: Vec<(i32, String)> = children.iter().filter_map(|c| ordinal_of(c).map(|o| (o, c.name_any()))).collect();
    named.sort();
    named.into_iter().map(|(_, n)| n).collect()
}

/// Whether a plan is running in the group's status.
pub fn plan_active(g: &SeiNodeDeployment) -> bool {
    g.status.as_ref().and_then(|s| s.plan.as_ref()).is_some_and(|p| p.phase == TaskPlanPhase::Active)
}

/// A rollout to record: the template hash moved since the last one applied, no ceremony is
/// still to run, and no plan runs. `None`: nothing to roll out.
pub fn detect_rollout(g: &SeiNodeDeployment, children: &[SeiNode], now: &Time) -> Option<RolloutStatus> {
    let status = g.status.as_ref()?;
    let applied = status.template_hash.as_deref()?;
    let target = template_hash(g);
    if target == applied || ceremony_due(g).is_some() || plan_active(g) || children.is_empty() {
        return None;
    }
    if status.rollout.as_ref().is_some_and(|r| r.target_hash == target) {
        return None;
    }
    let strategy = g.spec.update_strategy.strategy_type;
    let generation = g.metadata.generation.unwrap_or(1);
    let entrants = match strategy {
        UpdateStrategyType::InPlace => Vec::new(),
        _ => entrant_names(g, generation),
    };
    let incumbent_revision = children.first().and_then(|c| c.labels().get(REVISION_LABEL).cloned()).unwrap_or_else(|| revision(g));
    Some(RolloutStatus {
        strategy,
        target_hash: target,
        started_at: Some(now.clone()),
        incumbent_nodes: incumbents(children),
        entrant_nodes: entrants,
        incumbent_revision: Some(incumbent_revision),
        entrant_revision: (strategy != UpdateStrategyType::InPlace).then(|| generation.to_string()),
    })
}

/// What of a SeiNode its group reacts to: its generation, phase, rolled-out image, labels, owners
/// and whether it is being deleted. A child's other status writes (each plan step) change none of
/// these and do not wake the group (`a_child_wakes_its_group_only_when_it_matters`).
pub fn child_fingerprint(n: &SeiNode) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    n.metadata.generation.hash(&mut h);
    n.metadata.deletion_timestamp.is_some().hash(&mut h);
    n.labels().hash(&mut h);
    n.owner_references().iter().map(|o| &o.uid).collect::<Vec<_>>().hash(&mut h);
    let status = n.status.as_ref();
    status.and_then(|s| s.phase).hash(&mut h);
    status.and_then(|s| s.current_image.as_deref()).hash(&mut h);
    h.finish()
}

/// `maxCeremonyDuration` as a duration (a Go duration string: `15m`, `1h30m`, `90s`).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let (mut total, mut num) = (0f64, String::new());
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_digit() || n == '.' {
                break;
            }
            unit.push(n);
            chars.next();
        }
        let value: f64 = num.parse().ok()?;
        num.clear();
        let seconds = match unit.as_str() {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * seconds;
        any = true;
    }
    (any && num.is_empty() && total.is_finite()).then(|| std::time::Duration::from_secs_f64(total))
}

/// Whether the ceremony started at `started` has overrun its `maxCeremonyDuration` at `now`.
pub fn ceremony_overran(g: &SeiNodeDeployment, started: &Time, now: &Time) -> bool {
    let Some(limit) = g.spec.genesis.as_ref().and_then(|gc| parse_duration(&gc.max_ceremony_duration)) else { return false };
    let elapsed = now.0.as_millisecond() - started.0.as_millisecond();
    elapsed > i64::try_from(limit.as_millis()).unwrap_or(i64::MAX)
}

/// The group's phase from its children, its ceremony and its rollout.
pub fn phase(g: &SeiNodeDeployment, nodes: &[GroupNodeStatus], failed: bool) -> GroupPhase {
    let running = nodes.iter().filter(|n| n.phase == Some(SeiNodePhase::Running)).count();
    let status = g.status.clone().unwrap_or_default();
    if g.metadata.deletion_timestamp.is_some() {
        GroupPhase::Terminating
    } else if failed {
        if ceremony_due(g).is_some() { GroupPhase::Failed } else { GroupPhase::Degraded }
    } else if status.rollout.is_some() {
        GroupPhase::Upgrading
    } else if nodes.is_empty() {
        GroupPhase::Pending
    } else if running == nodes.len() && running as i32 >= g.spec.replicas {
        GroupPhase::Ready
    } else if ceremony_due(g).is_some() || status.phase.is_none_or(|p| matches!(p, GroupPhase::Pending | GroupPhase::Initializing)) {
        GroupPhase::Initializing
    } else {
        GroupPhase::Degraded
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::seinodedeployment::SeiNodeDeploymentStatus;
    use serde_json::json;

    fn group(spec: serde_json::Value) -> SeiNodeDeployment {
        let mut g: SeiNodeDeployment = serde_json::from_value(json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment",
            "metadata": {"name": "net", "namespace": "sei", "uid": "g-uid", "generation": 2},
            "spec": spec
        }))
        .unwrap();
        g.status = Some(SeiNodeDeploymentStatus::default());
        g
    }

    fn genesis() -> SeiNodeDeployment {
        group(json!({
            "replicas": 3,
            "template": {"metadata": {"labels": {"team": "ops"}, "annotations": {"note": "x"}},
                         "spec": {"chainId": "net-1", "image": "seid:1", "validator": {}, "podLabels": {"tier": "val"}}},
            "genesis": {"chainId": "net-1", "stakingAmount": "5usei", "accountBalance": "9usei", "overrides": {"gov.x": "1"}},
            "updateStrategy": {"type": "InPlace"}
        }))
    }

    fn rpc() -> SeiNodeDeployment {
        group(json!({
            "replicas": 2,
            "template": {"spec": {"chainId": "pacific-1", "image": "seid:1", "fullNode": {}}},
            "updateStrategy": {"type": "BlueGreen"}
        }))
    }

    fn children_of(g: &SeiNodeDeployment, n: i32) -> Vec<SeiNode> {
        (0..n).map(|i| desired_child(g, &format!("{}-{i}", g.name_any()), i)).collect()
    }

    #[test]
    fn children_are_the_template_with_the_group() {
        let g = genesis();
        let c = desired_child(&g, "net-1", 1);
        let labels = c.metadata.labels.clone().unwrap();
        assert_eq!(labels.get("team").map(String::as_str), Some("ops"));
        assert_eq!(labels.get(GROUP_LABEL).map(String::as_str), Some("net"));
        assert_eq!(labels.get(ORDINAL_LABEL).map(String::as_str), Some("1"));
        assert_eq!(labels.get(REVISION_LABEL).map(String::as_str), Some("2"));
        assert_eq!(c.metadata.annotations.clone().unwrap().get("note").map(String::as_str), Some("x"));
        let owners = c.metadata.owner_references.clone().unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!((owners[0].kind.as_str(), owners[0].uid.as_str(), owners[0].controller), ("SeiNodeDeployment", "g-uid", Some(true)));
        let pod_labels = c.spec.pod_labels.clone().unwrap();
        assert_eq!(pod_labels.get("tier").map(String::as_str), Some("val"));
        assert_eq!(pod_labels.get(GROUP_LABEL).map(String::as_str), Some("net"));
        let ceremony = c.spec.validator.as_ref().unwrap().genesis_ceremony.clone().unwrap();
        assert_eq!((ceremony.chain_id.as_str(), ceremony.staking_amount.as_str(), ceremony.index), ("net-1", "5usei", 1));
        assert_eq!(ceremony.genesis_params.as_deref(), Some(r#"{"gov.x":"1"}"#));
        assert!(is_child(&g, &c));
        let full = desired_child(&rpc(), "net-0", 0);
        assert!(full.spec.validator.is_none() && full.spec.full_node.is_some(), "no ceremony outside a genesis group");
    }

    #[test]
    fn sync_touches_metadata_and_pod_labels_only() {
        let g = genesis();
        let child = desired_child(&g, "net-0", 0);
        assert_eq!(sync_patch(&g, &child), None, "in sync");
        let mut changed = g.clone();
        changed.spec.template.metadata.as_mut().unwrap().labels.insert("team".into(), "core".into());
        changed.spec.template.spec.image = "seid:2".into();
        let patch = sync_patch(&changed, &child).unwrap();
        assert_eq!(patch, json!({"metadata": {"labels": {"team": "core"}}}), "the image waits for a rollout");
        changed.spec.template.spec.pod_labels.as_mut().unwrap().insert("zone".into(), "a".into());
        assert_eq!(sync_patch(&changed, &child).unwrap()["spec"], json!({"podLabels": {"zone": "a"}}));
    }

    #[test]
    fn scale_down_deletes_the_highest_ordinals() {
        let mut g = rpc();
        let children = children_of(&g, 4);
        g.spec.replicas = 2;
        assert_eq!(scale_down(&g, &children), ["net-3", "net-2"]);
        assert!(missing_ordinals(&g, &children).is_empty());
        g.spec.replicas = 5;
        assert_eq!(missing_ordinals(&g, &children), [4]);
        assert_eq!(incumbents(&children), ["net-0", "net-1", "net-2", "net-3"]);
    }

    #[test]
    fn a_template_change_is_a_rollout() {
        let now = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        let mut g = rpc();
        let children = children_of(&g, 2);
        assert_eq!(detect_rollout(&g, &children, &now), None, "no hash recorded yet: the first one is recorded, not rolled out");
        g.status.as_mut().unwrap().template_hash = Some(template_hash(&g));
        assert_eq!(detect_rollout(&g, &children, &now), None, "unchanged");
        g.spec.template.spec.image = "seid:2".into();
        g.metadata.generation = Some(3);
        let r = detect_rollout(&g, &children, &now).unwrap();
        assert_eq!(r.target_hash, template_hash(&g));
        assert_eq!(r.incumbent_nodes, ["net-0", "net-1"]);
        assert_eq!(r.entrant_nodes, ["net-g3-0", "net-g3-1"]);
        assert_eq!((r.incumbent_revision.as_deref(), r.entrant_revision.as_deref()), (Some("2"), Some("3")));
        let mut running = g.clone();
        running.status.as_mut().unwrap().plan = Some(crate::api::seinode::TaskPlan { phase: TaskPlanPhase::Active, ..Default::default() });
        assert_eq!(detect_rollout(&running, &children, &now), None, "not while a plan runs");
        let mut ceremony = genesis();
        ceremony.status.as_mut().unwrap().template_hash = Some("old".into());
        assert_eq!(detect_rollout(&ceremony, &children_of(&ceremony, 3), &now), None, "not before the ceremony completed");
    }

    #[test]
    fn ceremony_deadline() {
        assert_eq!(parse_duration("15m"), Some(std::time::Duration::from_secs(900)));
        assert_eq!(parse_duration("1h30m"), Some(std::time::Duration::from_secs(5400)));
        assert_eq!(parse_duration("1.5s"), Some(std::time::Duration::from_millis(1500)));
        for bad in ["", "15", "m", "5 m", "5d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        let g = genesis();
        let at = |s: i64| Time(k8s_openapi::jiff::Timestamp::from_second(s).unwrap());
        assert!(!ceremony_overran(&g, &at(0), &at(900)));
        assert!(ceremony_overran(&g, &at(0), &at(901)));
    }

    #[test]
    fn a_child_wakes_its_group_only_when_it_matters() {
        let base: SeiNode = serde_json::from_value(json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "net-0", "generation": 1, "labels": {"sei.io/nodedeployment": "net"}},
            "spec": {"chainId": "c", "image": "i", "fullNode": {}},
            "status": {"phase": "Initializing", "plan": {"id": "p", "phase": "Active", "tasks": []}}
        }))
        .unwrap();
        let fp = child_fingerprint(&base);
        let mut step = base.clone();
        step.status.as_mut().unwrap().plan.as_mut().unwrap().id = "q".into();
        step.metadata.resource_version = Some("99".into());
        assert_eq!(child_fingerprint(&step), fp, "a plan step's status write does not wake the group");
        type Change = Box<dyn Fn(&mut SeiNode)>;
        let changed: Vec<(&str, Change)> = vec![
            ("phase", Box::new(|n: &mut SeiNode| n.status.as_mut().unwrap().phase = Some(SeiNodePhase::Running))),
            ("image", Box::new(|n: &mut SeiNode| n.status.as_mut().unwrap().current_image = Some("i2".into()))),
            ("generation", Box::new(|n: &mut SeiNode| n.metadata.generation = Some(2))),
            (
                "labels",
                Box::new(|n: &mut SeiNode| {
                    n.labels_mut().insert("x".into(), "y".into());
                }),
            ),
            ("deletion", Box::new(|n: &mut SeiNode| n.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now())))),
        ];
        for (what, change) in changed {
            let mut n = base.clone();
            change(&mut n);
            assert_ne!(child_fingerprint(&n), fp, "{what} wakes the group");
        }
    }

    #[test]
    fn the_serving_revision_is_the_rollouts_then_the_groups() {
        let labelled = |name: &str, ordinal: i32, rev: &str| -> SeiNode {
            serde_json::from_value(json!({
                "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
                "metadata": {"name": name, "labels": {"sei.io/nodedeployment-ordinal": ordinal.to_string(), "sei.io/revision": rev}},
                "spec": {"chainId": "c", "image": "i", "fullNode": {}}
            }))
            .unwrap()
        };
        let mut g = rpc();
        g.metadata.generation = Some(4);
        // Nothing recorded: the generation; a group from before the field: its lowest ordinal's.
        assert_eq!(revision(&g), "4");
        assert_eq!(initial_serving_revision(&g, &[labelled("rpc-1", 1, "3"), labelled("rpc-0", 0, "2")]), "2");
        assert_eq!(initial_serving_revision(&g, &[]), "4");
        // Recorded: new children (a scale-up at any generation) get it.
        g.status = Some(SeiNodeDeploymentStatus { serving_revision: Some("2".into()), ..Default::default() });
        assert_eq!(revision(&g), "2");
        assert_eq!(desired_child(&g, "rpc-5", 5).labels().get(REVISION_LABEL).map(String::as_str), Some("2"));
        // A rollout: its incumbent revision, which switch-traffic moves to the entrants'.
        g.status.as_mut().unwrap().rollout = Some(RolloutStatus {
            strategy: UpdateStrategyType::BlueGreen,
            target_hash: "h".into(),
            incumbent_revision: Some("5".into()),
            entrant_revision: Some("5".into()),
            ..Default::default()
        });
        assert_eq!(revision(&g), "5");
    }
}
