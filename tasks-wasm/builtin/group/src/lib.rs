//! Built-in module `sei-builtin-group`: every task of a SeiNodeDeployment's plans (genesis, fork
//! export, InPlace, BlueGreen, HardFork). It works only through the group's scope: the group's
//! own SeiNodes (read, create, apply, delete) and their sidecars (`member-sidecars`); the input's
//! `node` is the SeiNodeDeployment.
//!
//! Behaviour (the reference's, with these changes):
//! - `collect-and-set-peers` writes a member's `spec.peers` only while that member has no active
//!   plan (it runs after `await-nodes-running`, so in a ceremony it never waits);
//! - `update-node-specs` rolls out the image in its params (the plan's), not the group's current one;
//! - `switch-traffic` checks that every entrant is Running; the group controller then moves
//!   `incumbentRevision` to the entrants and points the `<group>-external` Service at them before
//!   the next task (`teardown-nodes`) runs (the module may not write the group or a Service);
//! - `submit-export-state` sends no bucket: the exporter's sidecar uses its own genesis bucket.
//!
//! Invariants (unit tests below): peer addresses are `<id>@<node>-0.<node>.<ns>.svc.cluster.local:26656`
//! (`peer_address_is_the_references`); an entrant is the template with the group's labels,
//! pod labels and owner (`entrants_are_the_template_owned_by_the_group`); a member's readiness
//! is read from its phase (`running_counts_and_failures`).

use sei_task_params::group::{self as p, GroupTaskParams, GroupTaskType, sub_task_id};
use sei_task_sdk::prelude::*;
use sei_task_sdk::sidecar::SidecarError;
use serde_json::{Value, json};

pub const GROUP_LABEL: &str = "sei.io/nodedeployment";
pub const ORDINAL_LABEL: &str = "sei.io/nodedeployment-ordinal";
pub const REVISION_LABEL: &str = "sei.io/revision";
pub const ROLE_LABEL: &str = "sei.io/role";
const SEINODE: (&str, &str) = ("sei.io/v1alpha1", "SeiNode");
/// How often a waiting group task looks again.
pub const POLL_MS: u32 = 2_000;

/// The group, as the input's `node`.
#[derive(Debug, Clone, Deserialize)]
pub struct GroupView {
    pub metadata: Meta,
    pub spec: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub uid: Option<String>,
}

/// `<id>@<node>-0.<node>.<ns>.svc.cluster.local:26656`.
pub fn peer_address(node_id: &str, node: &str, namespace: &str) -> String {
    format!("{node_id}@{node}-0.{node}.{namespace}.svc.cluster.local:26656")
}

/// The owner reference every SeiNode of the group carries.
pub fn group_owner(group: &GroupView) -> Result<Value, TaskError> {
    let uid = group.metadata.uid.clone().ok_or_else(|| TaskError::InvalidParams("the SeiNodeDeployment has no metadata.uid".into()))?;
    Ok(json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "name": group.metadata.name, "uid": uid,
              "controller": true}))
}

/// A SeiNode made from the group's template: the template's labels plus the group's, pod labels
/// with the group and revision, owned by the group.
pub fn member_from_template(group: &GroupView, name: &str, ordinal: usize, revision: &str) -> Result<Value, TaskError> {
    let template = group.spec.get("template").cloned().unwrap_or(Value::Null);
    let mut spec = template.get("spec").cloned().ok_or_else(|| TaskError::InvalidParams("the group has no template.spec".into()))?;
    let mut labels = template.pointer("/metadata/labels").and_then(Value::as_object).cloned().unwrap_or_default();
    labels.insert(GROUP_LABEL.into(), json!(group.metadata.name));
    labels.insert(ORDINAL_LABEL.into(), json!(ordinal.to_string()));
    labels.insert(REVISION_LABEL.into(), json!(revision));
    let mut pod_labels = spec.get("podLabels").and_then(Value::as_object).cloned().unwrap_or_default();
    pod_labels.insert(GROUP_LABEL.into(), json!(group.metadata.name));
    pod_labels.insert(REVISION_LABEL.into(), json!(revision));
    spec["podLabels"] = Value::Object(pod_labels);
    Ok(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
        "metadata": {"name": name, "namespace": group.metadata.namespace, "labels": labels, "ownerReferences": [group_owner(group)?]},
        "spec": spec
    }))
}

/// A member's phase, as its status says.
pub fn phase_of(node: &Value) -> &str {
    node.pointer("/status/phase").and_then(Value::as_str).unwrap_or("Pending")
}

/// How many of `nodes` are Running; the first Failed one is an error.
pub fn running_count(nodes: &[(String, Option<Value>)]) -> Result<usize, String> {
    let mut running = 0;
    for (name, node) in nodes {
        match node.as_ref().map(phase_of) {
            Some("Failed") => return Err(format!("SeiNode {name} failed")),
            Some("Running") => running += 1,
            _ => {}
        }
    }
    Ok(running)
}

fn get_member(name: &str) -> Result<Option<Value>, TaskError> {
    match kube::get_raw(SEINODE.0, SEINODE.1, name)? {
        None => Ok(None),
        Some(raw) => serde_json::from_str(&raw).map(Some).map_err(|e| TaskError::Transient(format!("SeiNode {name} is not JSON: {e}"))),
    }
}

fn members(names: &[String]) -> Result<Vec<(String, Option<Value>)>, TaskError> {
    names.iter().map(|n| Ok((n.clone(), get_member(n)?))).collect()
}

fn wait(message: String) -> Step {
    Step::pending(POLL_MS, &json!({}), message)
}

fn sidecar_err(node: &str, e: SidecarError) -> TaskError {
    match e {
        SidecarError::Denied(m) => TaskError::Denied(m),
        SidecarError::Rejected(m) => TaskError::Permanent(format!("sidecar of {node} rejected the task: {m}")),
        SidecarError::Unavailable(m) => TaskError::Unavailable(format!("sidecar of {node} unreachable: {m}")),
        SidecarError::NotFound => TaskError::Transient(format!("sidecar of {node}: not found")),
    }
}

/// Submit (idempotently, under `id`) and poll a sidecar task on `node`: `Some(result)` once it
/// completed (with what the sidecar reports it produced), `None` while it runs, an error when it
/// failed.
fn drive_on(node: &str, id: &str, kind: &str, params: Option<&Value>) -> Result<Option<Value>, TaskError> {
    member_sidecars::submit_task(node, id, kind, params).map_err(|e| sidecar_err(node, e))?;
    match member_sidecars::get_task(node, id) {
        Ok(t) if t.status == "completed" => Ok(Some(t.output.and_then(|r| serde_json::from_str(&r).ok()).unwrap_or(Value::Null))),
        Ok(t) if t.status == "failed" => Err(TaskError::Transient(format!(
            "sidecar task {kind} on {node} failed: {}",
            t.error.unwrap_or_else(|| "unknown error".into())
        ))),
        Ok(_) | Err(SidecarError::NotFound) => Ok(None),
        Err(e) => Err(sidecar_err(node, e)),
    }
}

pub struct GroupTasks;

impl TaskModule for GroupTasks {
    fn info() -> ModuleInfo {
        GroupTaskType::ALL
            .iter()
            .fold(ModuleInfo::new("sei-builtin-group", env!("CARGO_PKG_VERSION")), |m, t| m.task_type(t.as_str()))
            .capability(Capability::KubeRead)
            .capability(Capability::KubeWrite)
            .capability(Capability::KubeDelete)
            .capability(Capability::Sidecar)
            .default_timeout_ms(30_000)
    }

    fn execute(input: Input) -> Result<Step, TaskError> {
        let task = GroupTaskType::parse(&input.task_type)
            .ok_or_else(|| TaskError::Permanent(format!("sei-builtin-group does not implement {}", input.task_type)))?;
        let raw: Value = input.params()?;
        let params = GroupTaskParams::from_json(task, &raw).map_err(|e| TaskError::InvalidParams(format!("params of {task}: {e}")))?;
        let group: GroupView = input.node()?;
        run(&input, &group, params)
    }
}

fn run(input: &Input, group: &GroupView, params: GroupTaskParams) -> Result<Step, TaskError> {
    use GroupTaskParams as P;
    match params {
        P::AwaitNodesRunning(p) => await_running(&p.node_names, usize::try_from(p.expected).unwrap_or(0)),
        P::CollectAndSetPeers(p) => collect_and_set_peers(group, &p),
        P::UpdateNodeSpecs(p) => update_node_specs(group, &p),
        P::AwaitSpecUpdate(p) => {
            let pending: Vec<String> = members(&p.node_names)?
                .into_iter()
                .filter(|(_, n)| {
                    n.as_ref().is_none_or(|n| n.pointer("/status/currentImage") != n.pointer("/spec/image") || phase_of(n) == "Failed")
                })
                .map(|(name, _)| name)
                .collect();
            if pending.is_empty() { Ok(Step::done()) } else { Ok(wait(format!("waiting for the new image on {}", pending.join(", ")))) }
        }
        P::MarkNodesReady(p) => {
            let mut waiting = Vec::new();
            for node in &p.node_names {
                if member_sidecars::status(node).map_err(|e| sidecar_err(node, e))? == "Ready" {
                    continue;
                }
                member_sidecars::submit_task(node, &sub_task_id(node, "mark-ready", &input.task_id), "mark-ready", None)
                    .map_err(|e| sidecar_err(node, e))?;
                waiting.push(node.clone());
            }
            if waiting.is_empty() { Ok(Step::done()) } else { Ok(wait(format!("waiting for {} to be Ready", waiting.join(", ")))) }
        }
        P::CreateEntrantNodes(p) => {
            for (i, name) in p.node_names.iter().enumerate() {
                if get_member(name)?.is_none() {
                    let node = member_from_template(group, name, i, &p.entrant_revision)?;
                    match kube::create_raw(&node.to_string()) {
                        Ok(_) | Err(kube::KubeError::Conflict(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(Step::done())
        }
        P::SubmitHaltSignal(p) => {
            let params = json!({"condition": "height", "targetHeight": p.halt_height, "action": "SIGTERM_SEID"});
            for node in &p.node_names {
                // Best effort, as in the reference: a node that cannot be told halts anyway at
                // the height its chain's upgrade plan names.
                if let Err(e) =
                    member_sidecars::submit_task(node, &sub_task_id(node, "halt", &input.task_id), "await-condition", Some(&params))
                {
                    log::warn(&format!("halt signal to {node} not delivered: {}", sidecar_err(node, e)));
                }
            }
            Ok(Step::done())
        }
        P::AwaitNodesAtHeight(p) => {
            let params = json!({"condition": "height", "targetHeight": p.target_height});
            let mut waiting = Vec::new();
            for node in &p.node_names {
                let id = sub_task_id(node, "await-height", &input.task_id);
                if drive_on(node, &id, "await-condition", Some(&params)).map_err(permanent)?.is_none() {
                    waiting.push(node.clone());
                }
            }
            if waiting.is_empty() {
                Ok(Step::done())
            } else {
                Ok(wait(format!("waiting for {} to reach height {}", waiting.join(", "), p.target_height)))
            }
        }
        P::AwaitNodesCaughtUp(p) => {
            let mut waiting = Vec::new();
            for node in &p.node_names {
                if member_sidecars::status(node).map_err(|e| sidecar_err(node, e))? != "Ready" {
                    waiting.push(node.clone());
                }
            }
            if waiting.is_empty() { Ok(Step::done()) } else { Ok(wait(format!("waiting for {} to catch up", waiting.join(", ")))) }
        }
        P::SwitchTraffic(p) => {
            let entrants: Vec<String> = kube::list_raw(SEINODE.0, SEINODE.1, Some(&format!("{REVISION_LABEL}={}", p.entrant_revision)))?
                .iter()
                .filter_map(|raw| serde_json::from_str::<Value>(raw).ok())
                .filter(|n| phase_of(n) != "Running")
                .filter_map(|n| n.pointer("/metadata/name").and_then(Value::as_str).map(str::to_string))
                .collect();
            if entrants.is_empty() {
                Ok(Step::complete(&json!({"incumbentRevision": p.entrant_revision})))
            } else {
                Ok(wait(format!("entrants not Running yet: {}", entrants.join(", "))))
            }
        }
        P::TeardownNodes(p) => teardown(&p.node_names),
        P::CreateExporter(p) => create_exporter(group, &p),
        P::AwaitExporterRunning(p) => match get_member(&p.exporter_name)? {
            None => Err(TaskError::Permanent(format!("exporter {} does not exist", p.exporter_name))),
            Some(n) if phase_of(&n) == "Running" => Ok(Step::done()),
            Some(n) if phase_of(&n) == "Failed" => Err(TaskError::Permanent(format!("exporter {} failed", p.exporter_name))),
            Some(n) => Ok(wait(format!("exporter {} is {}", p.exporter_name, phase_of(&n)))),
        },
        P::SubmitExportState(p) => {
            let params = json!({"height": p.export_height, "chainId": p.source_chain_id, "s3Key": format!("{}/exported-state.json", p.source_chain_id)});
            if drive_on(&p.exporter_name, &input.task_id, "export-state", Some(&params))?.is_some() {
                Ok(Step::done())
            } else {
                Ok(wait(format!("exporter {} is exporting height {}", p.exporter_name, p.export_height)))
            }
        }
        P::TeardownExporter(p) => teardown(std::slice::from_ref(&p.exporter_name)),
        P::AssembleAndUploadGenesis(p) => {
            assemble(input, "assemble-and-upload-genesis", &p.nodes, &GroupTaskParams::AssembleAndUploadGenesis(p.clone()))
        }
        P::AssembleGenesisFork(p) => assemble(input, "assemble-genesis-fork", &p.nodes, &GroupTaskParams::AssembleGenesisFork(p.clone())),
    }
}

fn permanent(e: TaskError) -> TaskError {
    match e {
        TaskError::Transient(m) => TaskError::Permanent(m),
        other => other,
    }
}

fn await_running(names: &[String], expected: usize) -> Result<Step, TaskError> {
    let nodes = members(names)?;
    let running = running_count(&nodes).map_err(TaskError::Permanent)?;
    if running >= expected { Ok(Step::done()) } else { Ok(wait(format!("{running}/{expected} SeiNodes Running"))) }
}

/// The assembler (the first validator's sidecar) builds the genesis from every validator's
/// artifacts and uploads it, under the plan's task id.
fn assemble(input: &Input, kind: &str, nodes: &[p::GenesisNode], params: &GroupTaskParams) -> Result<Step, TaskError> {
    let assembler =
        nodes.first().map(|n| n.name.clone()).ok_or_else(|| TaskError::InvalidParams(format!("{kind} needs at least one node")))?;
    if let Some(result) = drive_on(&assembler, &input.task_id, kind, Some(&params.to_json()))? {
        // The group records the genesis hash from this output; bounded like any output.
        let hash = result.get("genesisHash").and_then(Value::as_str).filter(|h| h.len() <= 128).map(str::to_string);
        Ok(Step::complete(&json!({"assembler": assembler, "genesisHash": hash})))
    } else {
        Ok(wait(format!("{assembler} is assembling the genesis")))
    }
}

fn collect_and_set_peers(group: &GroupView, p: &p::GroupNodes) -> Result<Step, TaskError> {
    let mut addresses = Vec::new();
    for node in &p.node_names {
        let id = member_sidecars::node_id(node).map_err(|e| sidecar_err(node, e))?;
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TaskError::Transient(format!("sidecar of {node} answered a node id that is not hex")));
        }
        addresses.push(peer_address(&id, node, &p.namespace));
    }
    let owner = group_owner(group)?;
    let mut busy = Vec::new();
    for (name, node) in members(&p.node_names)? {
        let Some(node) = node else { return Err(TaskError::Transient(format!("SeiNode {name} is gone"))) };
        if node.pointer("/status/plan/phase").and_then(Value::as_str) == Some("Active") {
            // Never change a spec under a running plan.
            busy.push(name);
            continue;
        }
        let patch = json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": name, "namespace": p.namespace, "labels": {GROUP_LABEL: p.group_name}, "ownerReferences": [owner]},
            "spec": {"peers": [{"static": {"addresses": addresses}}]}
        });
        kube::apply_raw(&patch.to_string())?;
    }
    if busy.is_empty() {
        Ok(Step::complete(&json!({"peers": addresses})))
    } else {
        Ok(wait(format!("waiting for the plans of {} before setting peers", busy.join(", "))))
    }
}

fn update_node_specs(group: &GroupView, p: &p::UpdateNodeSpecs) -> Result<Step, TaskError> {
    let owner = group_owner(group)?;
    for (name, node) in members(&p.node_names)? {
        let Some(node) = node else { return Err(TaskError::Transient(format!("SeiNode {name} is gone"))) };
        let sidecar_now = node.pointer("/spec/sidecar/image").and_then(Value::as_str);
        let same_sidecar = p.sidecar_image.is_none() || sidecar_now == p.sidecar_image.as_deref();
        if node.pointer("/spec/image").and_then(Value::as_str) == Some(p.image.as_str()) && same_sidecar {
            continue;
        }
        let mut spec = json!({"image": p.image});
        if let Some(image) = &p.sidecar_image {
            spec["sidecar"] = json!({"image": image});
        }
        let patch = json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": name, "namespace": p.namespace, "labels": {GROUP_LABEL: p.group_name}, "ownerReferences": [owner]},
            "spec": spec
        });
        kube::apply_raw(&patch.to_string())?;
    }
    Ok(Step::done())
}

fn teardown(names: &[String]) -> Result<Step, TaskError> {
    let mut left = Vec::new();
    for name in names {
        kube::delete_raw(SEINODE.0, SEINODE.1, name)?;
        if get_member(name)?.is_some() {
            left.push(name.clone());
        }
    }
    if left.is_empty() { Ok(Step::done()) } else { Ok(wait(format!("waiting for {} to be deleted", left.join(", ")))) }
}

fn create_exporter(group: &GroupView, p: &p::CreateExporter) -> Result<Step, TaskError> {
    if let Some(existing) = get_member(&p.exporter_name)? {
        if phase_of(&existing) == "Failed" {
            // Made again on the next step.
            kube::delete_raw(SEINODE.0, SEINODE.1, &p.exporter_name)?;
            return Ok(wait(format!("exporter {} failed; deleted to be made again", p.exporter_name)));
        }
        return Ok(Step::done());
    }
    let template = group.spec.pointer("/template/spec").cloned().unwrap_or(Value::Null);
    let mut spec = json!({
        "chainId": p.source_chain_id,
        "image": p.source_image,
        "fullNode": {"snapshot": {"s3": {"targetHeight": p.export_height}, "bootstrapImage": p.source_image}}
    });
    for key in ["sidecar", "peers"] {
        if let Some(v) = template.get(key) {
            spec[key] = v.clone();
        }
    }
    let node = json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
        "metadata": {"name": p.exporter_name, "namespace": p.namespace,
                     "labels": {GROUP_LABEL: p.group_name, ROLE_LABEL: "exporter"}, "ownerReferences": [group_owner(group)?]},
        "spec": spec
    });
    match kube::create_raw(&node.to_string()) {
        Ok(_) | Err(kube::KubeError::Conflict(_)) => Ok(Step::done()),
        Err(e) => Err(e.into()),
    }
}

sei_task_sdk::export_task_module!(GroupTasks);

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> GroupView {
        serde_json::from_value(json!({
            "metadata": {"name": "net", "namespace": "sei", "uid": "g-uid"},
            "spec": {"template": {"metadata": {"labels": {"team": "ops"}}, "spec": {"chainId": "c", "image": "seid:1", "validator": {}, "podLabels": {"tier": "val"}}}}
        }))
        .unwrap()
    }

    #[test]
    fn peer_address_is_the_references() {
        assert_eq!(peer_address("abc123", "net-0", "sei"), "abc123@net-0-0.net-0.sei.svc.cluster.local:26656");
    }

    #[test]
    fn entrants_are_the_template_owned_by_the_group() {
        let n = member_from_template(&group(), "net-g3-1", 1, "3").unwrap();
        assert_eq!(n["metadata"]["labels"], json!({"team": "ops", GROUP_LABEL: "net", ORDINAL_LABEL: "1", REVISION_LABEL: "3"}));
        assert_eq!(n["spec"]["podLabels"], json!({"tier": "val", GROUP_LABEL: "net", REVISION_LABEL: "3"}));
        assert_eq!(n["metadata"]["ownerReferences"][0]["kind"], "SeiNodeDeployment");
        assert_eq!(n["metadata"]["ownerReferences"][0]["uid"], "g-uid");
        assert_eq!(n["spec"]["image"], "seid:1");
        let mut no_uid = group();
        no_uid.metadata.uid = None;
        assert!(member_from_template(&no_uid, "x", 0, "1").is_err());
    }

    #[test]
    fn running_counts_and_failures() {
        let node = |phase: &str| Some(json!({"status": {"phase": phase}}));
        let nodes = vec![("a".to_string(), node("Running")), ("b".to_string(), node("Initializing")), ("c".to_string(), None)];
        assert_eq!(running_count(&nodes), Ok(1));
        let failed = vec![("a".to_string(), node("Running")), ("b".to_string(), node("Failed"))];
        assert_eq!(running_count(&failed), Err("SeiNode b failed".to_string()));
    }
}
