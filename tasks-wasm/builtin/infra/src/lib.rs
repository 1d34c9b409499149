//! Built-in module `sei-builtin-infra`: the node's data PVC, StatefulSet and headless Service
//! (the reference's shapes), generated here and applied through the host.
//!
//! Invariants (unit tests in this file):
//! - every object carries a controller owner reference to the SeiNode (`owner_reference_is_controller`);
//! - the PVC is created once and never updated: an existing PVC is success (`ensure_data_pvc` path);
//! - an object created once (PVC, bootstrap Service and Job) that already exists is adopted only if
//!   no other SeiNode controls it: one left by a deleted SeiNode of the same name (the garbage
//!   collector is removing it) makes the task wait until it is gone, instead of adopting an object
//!   the garbage collector deletes under the new node (`a_predecessors_object_is_not_adopted`);
//! - the Service is headless, selects only `sei.io/node`, lists the seven seid ports with `grpc` as
//!   h2c, and publishes not-ready addresses (`service_shape_matches_reference`);
//! - the StatefulSet has one replica, selects only `sei.io/node`, runs `seid-init`, the native
//!   sidecar and `seid` with the reference's probes, ports, env and volume
//!   (`statefulset_shape_matches_reference`), and the entrypoint override is shell-quoted
//!   (`entrypoint_is_shell_quoted`).

mod bootstrap;
mod statefulset;
pub use bootstrap::{bootstrap_job, bootstrap_service, job_outcome};
pub use statefulset::statefulset;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, Service, ServicePort, ServiceSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sei_task_params::{
    ApplyStatefulSet, AwaitBootstrapComplete, DeployBootstrapJob, DeployBootstrapService, EnsureDataPvc, NodeObject, TeardownBootstrap,
};
use sei_task_sdk::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;

pub const NODE_LABEL: &str = "sei.io/node";

/// The parts of a SeiNode these tasks read.
#[derive(Debug, Clone, Deserialize)]
pub struct NodeView {
    pub metadata: NodeMeta,
    #[serde(default)]
    pub spec: NodeSpecView,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeMeta {
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub uid: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeSpecView {
    #[serde(default)]
    pub pod_labels: BTreeMap<String, String>,
    #[serde(default)]
    pub archive: Option<serde_json::Value>,
}

pub fn owner_reference(node: &NodeView) -> Option<OwnerReference> {
    node.metadata.uid.as_ref().map(|uid| OwnerReference {
        api_version: "sei.io/v1alpha1".into(),
        kind: "SeiNode".into(),
        name: node.metadata.name.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    })
}

/// `spec.podLabels` overlaid by `sei.io/node=<node>`.
pub fn resource_labels(node: &NodeView) -> BTreeMap<String, String> {
    let mut labels = node.spec.pod_labels.clone();
    labels.insert(NODE_LABEL.into(), node.metadata.name.clone());
    labels
}

pub(crate) fn meta(node: &NodeView, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: Some(node.metadata.namespace.clone()),
        labels: Some(resource_labels(node)),
        owner_references: owner_reference(node).map(|o| vec![o]),
        ..Default::default()
    }
}

pub fn data_pvc(node: &NodeView, params: &EnsureDataPvc) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: meta(node, format!("data-{}", node.metadata.name)),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: params.storage_class.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), Quantity(params.storage_size.clone()))])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The seven seid ports of the headless Service (name, port).
pub const SEID_PORTS: [(&str, i32); 7] =
    [("evm-rpc", 8545), ("evm-ws", 8546), ("grpc", 9090), ("rest", 1317), ("p2p", 26656), ("rpc", 26657), ("metrics", 26660)];

pub fn headless_service(node: &NodeView) -> Service {
    Service {
        metadata: meta(node, node.metadata.name.clone()),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(BTreeMap::from([(NODE_LABEL.to_string(), node.metadata.name.clone())])),
            publish_not_ready_addresses: Some(true),
            ports: Some(
                SEID_PORTS
                    .iter()
                    .map(|(name, port)| ServicePort {
                        name: Some((*name).into()),
                        port: *port,
                        target_port: Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(*port)),
                        protocol: Some("TCP".into()),
                        app_protocol: (*name == "grpc").then(|| "kubernetes.io/h2c".to_string()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The uid of the SeiNode that controls an object (its JSON), if a SeiNode does.
fn controlling_node(raw: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(raw).ok()?;
    v.pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .find(|o| o.get("controller").and_then(serde_json::Value::as_bool) == Some(true))
        .filter(|o| o.get("kind").and_then(serde_json::Value::as_str) == Some("SeiNode"))
        .and_then(|o| o.get("uid")?.as_str().map(str::to_string))
}

/// Why an object that exists is not this node's: another SeiNode of the same name (a deleted
/// predecessor) controls it. `None`: it is this node's, or no SeiNode controls it.
pub fn predecessor(raw: &str, node_uid: Option<&str>) -> Option<String> {
    let uid = node_uid?;
    controlling_node(raw).filter(|owner| owner != uid)
}

/// What a create of an object that is created once found.
enum Created {
    /// Created now, or it exists and is this node's (never updated).
    Done,
    /// It exists and is not this node's: wait and try again.
    Wait(String),
}

/// Create an object once; see `predecessor` for an existing one. The existing object is looked
/// up by listing the node's label (`sei.io/node=<node>`, which every object a SeiNode's modules
/// write carries; the controller may list these kinds but not get PVCs): one without the label
/// is not a SeiNode's, and is adopted as before.
fn create_once<K: k8s_openapi::Resource + Serialize>(node: &NodeView, obj: &K, name: &str) -> Result<Created, TaskError> {
    match kube::create_object(obj) {
        Ok(()) => Ok(Created::Done),
        Err(kube::KubeError::Conflict(_)) => {
            let selector = format!("{NODE_LABEL}={}", node.metadata.name);
            let existing = kube::list_raw(K::API_VERSION, K::KIND, Some(&selector))?.into_iter().find(|raw| named(raw, name));
            match existing.and_then(|raw| predecessor(&raw, node.metadata.uid.as_deref())) {
                None => Ok(Created::Done),
                Some(owner) => Ok(Created::Wait(format!(
                    "{} {name} belongs to a deleted SeiNode of the same name (uid {owner}); waiting for the garbage collector to remove it",
                    K::KIND
                ))),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Whether an object's JSON has `metadata.name` `name`.
fn named(raw: &str, name: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(raw).ok().and_then(|v| v.pointer("/metadata/name")?.as_str().map(|n| n == name)) == Some(true)
}

/// The step of a create-once task: complete with `output`, or wait.
fn created_step(created: Created, output: serde_json::Value) -> Result<Step, TaskError> {
    match created {
        Created::Done => Ok(Step::complete(&output)),
        Created::Wait(message) => {
            log::info(&message);
            Ok(Step::pending(5_000, &"waiting-for-predecessor", message))
        }
    }
}

fn check_target(node: &NodeView, name: &str, namespace: &str) -> Result<(), TaskError> {
    if name != node.metadata.name || namespace != node.metadata.namespace {
        return Err(TaskError::InvalidParams(format!(
            "params name {namespace}/{name} but the task runs for node {}/{}",
            node.metadata.namespace, node.metadata.name
        )));
    }
    Ok(())
}

pub struct Infra;

impl TaskModule for Infra {
    fn info() -> ModuleInfo {
        ModuleInfo::new("sei-builtin-infra", env!("CARGO_PKG_VERSION"))
            .task_type("ensure-data-pvc")
            .task_type("apply-service")
            .task_type("apply-statefulset")
            .task_type("deploy-bootstrap-service")
            .task_type("deploy-bootstrap-job")
            .task_type("await-bootstrap-complete")
            .task_type("teardown-bootstrap")
            .capability(Capability::KubeRead)
            .capability(Capability::KubeWrite)
            .capability(Capability::KubeDelete)
            .default_timeout_ms(30_000)
    }

    fn execute(input: Input) -> Result<Step, TaskError> {
        let node: NodeView = input.node()?;
        match input.task_type.as_str() {
            "ensure-data-pvc" => {
                let params: EnsureDataPvc = input.params()?;
                check_target(&node, &params.node_name, &params.namespace)?;
                let pvc = data_pvc(&node, &params);
                let name = format!("data-{}", node.metadata.name);
                let created = create_once(&node, &pvc, &name)?;
                created_step(created, serde_json::json!({ "pvc": name }))
            }
            "apply-statefulset" => {
                let params: ApplyStatefulSet = input.params()?;
                check_target(&node, &params.node_name, &params.namespace)?;
                let spec: statefulset::SpecView = input.node::<statefulset::NodeWithSpec>()?.spec;
                kube::apply_object(&statefulset(&node, &spec, &params.platform))?;
                Ok(Step::complete(&serde_json::json!({ "statefulSet": node.metadata.name, "image": spec.image })))
            }
            "deploy-bootstrap-service" => {
                let params: DeployBootstrapService = input.params()?;
                check_target(&node, &params.service_name, &params.namespace)?;
                let spec: statefulset::SpecView = input.node::<statefulset::NodeWithSpec>()?.spec;
                let created = create_once(&node, &bootstrap_service(&node, &spec), &node.metadata.name)?;
                created_step(created, serde_json::json!({ "service": node.metadata.name, "namespace": params.namespace }))
            }
            "deploy-bootstrap-job" => {
                let params: DeployBootstrapJob = input.params()?;
                check_target(&node, &node.metadata.name, &params.namespace)?;
                #[derive(Deserialize)]
                struct WithSpec {
                    spec: bootstrap::BootstrapSpec,
                }
                let spec = input.node::<WithSpec>()?.spec;
                let job = bootstrap_job(&node, &spec, &params.platform).map_err(TaskError::InvalidParams)?;
                let name = format!("{}-bootstrap", node.metadata.name);
                let created = create_once(&node, &job, &name)?;
                created_step(created, serde_json::json!({ "job": name }))
            }
            "await-bootstrap-complete" => {
                let params: AwaitBootstrapComplete = input.params()?;
                check_target(&node, &node.metadata.name, &params.namespace)?;
                let job_name = format!("{}-bootstrap", node.metadata.name);
                let raw = kube::get_raw("batch/v1", "Job", &job_name)?;
                if let Some(owner) = raw.as_deref().and_then(|r| predecessor(r, node.metadata.uid.as_deref())) {
                    let message = format!("Job {job_name} belongs to a deleted SeiNode of the same name (uid {owner}), not to this one");
                    return Ok(Step::pending(5_000, &"waiting-for-predecessor", message));
                }
                let job = raw
                    .map(|raw| serde_json::from_str::<bootstrap::JobStatusView>(&raw))
                    .transpose()
                    .map_err(|e| TaskError::Transient(format!("undecodable Job {job_name}: {e}")))?;
                match job {
                    None => Err(TaskError::Permanent(format!("bootstrap job {job_name} not found"))),
                    Some(job) => match job_outcome(&job) {
                        Some(Ok(())) => Ok(Step::complete(&serde_json::json!({ "job": job_name }))),
                        Some(Err(message)) => Err(TaskError::Permanent(format!("bootstrap job {job_name} failed: {message}"))),
                        None => Ok(Step::pending(2_000, &"running", format!("bootstrap job {job_name} is running"))),
                    },
                }
            }
            "teardown-bootstrap" => {
                let params: TeardownBootstrap = input.params()?;
                check_target(&node, &params.service_name, &params.namespace)?;
                let job_name = format!("{}-bootstrap", node.metadata.name);
                let job_gone =
                    !kube::delete::<k8s_openapi::api::batch::v1::Job>(&job_name)? && kube::get_raw("batch/v1", "Job", &job_name)?.is_none();
                let svc_gone = match kube::get_raw("v1", "Service", &node.metadata.name)? {
                    None => true,
                    Some(raw) if raw.contains("\"sei.io/component\":\"bootstrap\"") => {
                        !kube::delete::<Service>(&node.metadata.name)? && kube::get_raw("v1", "Service", &node.metadata.name)?.is_none()
                    }
                    Some(_) => true,
                };
                if job_gone && svc_gone {
                    Ok(Step::complete(&serde_json::json!({ "removed": [job_name, node.metadata.name] })))
                } else {
                    Ok(Step::pending(2_000, &"deleting", "waiting for the bootstrap Job and Service to be gone"))
                }
            }
            "apply-service" => {
                let params: NodeObject = input.params()?;
                check_target(&node, &params.node_name, &params.namespace)?;
                kube::apply_object(&headless_service(&node))?;
                Ok(Step::complete(&serde_json::json!({ "service": node.metadata.name })))
            }
            other => Err(TaskError::Permanent(format!("sei-builtin-infra does not implement task type {other}"))),
        }
    }
}

sei_task_sdk::export_task_module!(Infra);

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeView {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rpc-0", "namespace": "sei", "uid": "u-1"},
            "spec": {"podLabels": {"team": "infra", "sei.io/node": "spoofed"}}
        }))
        .unwrap()
    }

    #[test]
    fn owner_reference_is_controller() {
        let pvc = data_pvc(
            &node(),
            &EnsureDataPvc { node_name: "rpc-0".into(), namespace: "sei".into(), storage_class: None, storage_size: "2000Gi".into() },
        );
        let owners = pvc.metadata.owner_references.unwrap();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].kind, "SeiNode");
        assert_eq!(owners[0].uid, "u-1");
        assert_eq!(owners[0].controller, Some(true));
    }

    #[test]
    fn pvc_shape_matches_reference() {
        let pvc = data_pvc(
            &node(),
            &EnsureDataPvc {
                node_name: "rpc-0".into(),
                namespace: "sei".into(),
                storage_class: Some("gp3".into()),
                storage_size: "100Gi".into(),
            },
        );
        assert_eq!(pvc.metadata.name.as_deref(), Some("data-rpc-0"));
        let spec = pvc.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), vec!["ReadWriteOnce".to_string()]);
        assert_eq!(spec.storage_class_name.as_deref(), Some("gp3"));
        assert_eq!(spec.resources.unwrap().requests.unwrap()["storage"].0, "100Gi");
    }

    #[test]
    fn labels_overlay_node_label() {
        let labels = resource_labels(&node());
        assert_eq!(labels["sei.io/node"], "rpc-0");
        assert_eq!(labels["team"], "infra");
    }

    #[test]
    fn service_shape_matches_reference() {
        let svc = headless_service(&node());
        let spec = svc.spec.unwrap();
        assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
        assert_eq!(spec.publish_not_ready_addresses, Some(true));
        assert_eq!(spec.selector.unwrap(), BTreeMap::from([("sei.io/node".to_string(), "rpc-0".to_string())]));
        let ports = spec.ports.unwrap();
        assert_eq!(ports.len(), 7);
        let grpc = ports.iter().find(|p| p.name.as_deref() == Some("grpc")).unwrap();
        assert_eq!(grpc.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
        assert!(ports.iter().filter(|p| p.name.as_deref() != Some("grpc")).all(|p| p.app_protocol.is_none()));
    }

    fn spec() -> statefulset::SpecView {
        serde_json::from_value(serde_json::json!({"chainId": "pacific-1", "image": "seid:v6", "sidecar": {"port": 7000}})).unwrap()
    }

    #[test]
    fn statefulset_shape_matches_reference() {
        let platform = sei_task_params::Platform {
            service_account: Some("sei".into()),
            toleration_key: Some("sei.io/pool".into()),
            node_pool: Some("rpc-pool".into()),
            cpu: Some("4".into()),
            memory: Some("16Gi".into()),
            ..Default::default()
        };
        let sts = statefulset(&node(), &spec(), &platform);
        assert_eq!(sts.metadata.name.as_deref(), Some("rpc-0"));
        assert_eq!(sts.spec.replicas, Some(1));
        assert_eq!(sts.spec.service_name.as_deref(), Some("rpc-0"));
        assert_eq!(sts.spec.selector.match_labels.clone().unwrap(), BTreeMap::from([("sei.io/node".to_string(), "rpc-0".to_string())]));
        let template = sts.spec.template;
        let tmeta = template.metadata.unwrap();
        assert_eq!(tmeta.labels.unwrap()["team"], "infra");
        assert_eq!(tmeta.annotations.unwrap()["karpenter.sh/do-not-disrupt"], "true");
        let pod = template.spec.unwrap();
        assert_eq!(pod.share_process_namespace, Some(true));
        assert_eq!(pod.service_account_name.as_deref(), Some("sei"));
        let tol = &pod.tolerations.unwrap()[0];
        assert_eq!(
            (tol.key.as_deref(), tol.value.as_deref(), tol.effect.as_deref()),
            (Some("sei.io/pool"), Some("rpc-pool"), Some("NoSchedule"))
        );
        let inits = pod.init_containers.unwrap();
        assert_eq!(inits.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["seid-init", "sei-sidecar"]);
        assert_eq!(inits[1].restart_policy.as_deref(), Some("Always"), "native sidecar");
        assert_eq!(inits[1].ports.as_ref().unwrap()[0].container_port, 7000);
        let env: Vec<&str> = inits[1].env.as_ref().unwrap().iter().map(|e| e.name.as_str()).collect();
        assert_eq!(
            env,
            [
                "SEI_CHAIN_ID",
                "SEI_SIDECAR_PORT",
                "SEI_HOME",
                "SEI_GENESIS_BUCKET",
                "SEI_GENESIS_REGION",
                "SEI_SNAPSHOT_BUCKET",
                "SEI_SNAPSHOT_REGION"
            ]
        );
        let seid = &pod.containers[0];
        assert_eq!(seid.name, "seid");
        assert_eq!(seid.image.as_deref(), Some("seid:v6"));
        assert_eq!(seid.ports.as_ref().unwrap().len(), 7);
        assert_eq!(seid.startup_probe.as_ref().unwrap().failure_threshold, Some(86_400));
        assert!(seid.args.as_ref().unwrap()[0].contains("/dev/tcp/127.0.0.1/7000"));
        assert!(seid.args.as_ref().unwrap()[0].ends_with("exec seid start --home /sei"));
        assert_eq!(seid.resources.as_ref().unwrap().requests.as_ref().unwrap()["memory"].0, "16Gi");
        assert_eq!(pod.volumes.unwrap()[0].persistent_volume_claim.as_ref().unwrap().claim_name, "data-rpc-0");
    }

    #[test]
    fn entrypoint_is_shell_quoted() {
        let mut s = spec();
        s.entrypoint =
            Some(statefulset::Entrypoint { command: vec!["seid".into(), "start".into()], args: Some(vec!["--note=it's".into()]) });
        let script = statefulset::seid_script(&s, 7777);
        assert!(script.ends_with(r"exec 'seid' 'start' '--note=it'\''s'"), "{script}");
    }

    #[test]
    fn bootstrap_job_shape_matches_reference() {
        let spec: bootstrap::BootstrapSpec = serde_json::from_value(serde_json::json!({
            "chainId": "pacific-1", "image": "seid:v6",
            "fullNode": {"snapshot": {"s3": {"targetHeight": 42}, "bootstrapImage": "seid:boot"}}
        }))
        .unwrap();
        let job = bootstrap_job(&node(), &spec, &sei_task_params::Platform::default()).unwrap();
        assert_eq!(job.metadata.name.as_deref(), Some("rpc-0-bootstrap"));
        assert_eq!(job.metadata.labels.as_ref().unwrap()["sei.io/component"], "bootstrap");
        let js = job.spec.unwrap();
        assert_eq!((js.backoff_limit, js.ttl_seconds_after_finished), (Some(0), None), "kept until the teardown");
        let pod = js.template.spec.unwrap();
        assert_eq!((pod.hostname.as_deref(), pod.subdomain.as_deref()), (Some("rpc-0-0"), Some("rpc-0")));
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        assert_eq!(pod.termination_grace_period_seconds, Some(120));
        assert_eq!(pod.containers[0].image.as_deref(), Some("seid:boot"));
        assert!(pod.containers[0].args.as_ref().unwrap()[0].contains("--halt-height 42"));
        assert!(pod.containers[0].args.as_ref().unwrap()[0].contains("-eq 130"));
        let sidecar = &pod.init_containers.unwrap()[1];
        assert!(sidecar.readiness_probe.is_none() && sidecar.liveness_probe.is_none(), "no probes in the Job");
    }

    #[test]
    fn bootstrap_job_needs_a_target_height() {
        let spec: bootstrap::BootstrapSpec =
            serde_json::from_value(serde_json::json!({"chainId": "c", "image": "i", "fullNode": {"snapshot": {"stateSync": {}}}})).unwrap();
        assert!(bootstrap_job(&node(), &spec, &sei_task_params::Platform::default()).unwrap_err().contains("targetHeight"));
    }

    #[test]
    fn job_outcome_reads_conditions() {
        let job = |conds: serde_json::Value| -> bootstrap::JobStatusView {
            serde_json::from_value(serde_json::json!({"status": {"conditions": conds}})).unwrap()
        };
        assert_eq!(job_outcome(&job(serde_json::json!([]))), None);
        assert_eq!(job_outcome(&job(serde_json::json!([{"type": "Complete", "status": "True"}]))), Some(Ok(())));
        assert_eq!(
            job_outcome(&job(serde_json::json!([{"type": "Failed", "status": "True", "message": "BackoffLimitExceeded"}]))),
            Some(Err("BackoffLimitExceeded".into()))
        );
        assert_eq!(job_outcome(&job(serde_json::json!([{"type": "Failed", "status": "True"}]))), Some(Err("bootstrap job failed".into())));
    }

    #[test]
    fn bootstrap_service_selects_the_bootstrap_pod() {
        let spec: statefulset::SpecView = serde_json::from_value(serde_json::json!({"chainId": "c", "image": "i"})).unwrap();
        let svc = bootstrap_service(&node(), &spec);
        let s = svc.spec.unwrap();
        assert_eq!(s.selector.unwrap()["sei.io/component"], "bootstrap");
        assert_eq!(s.ports.unwrap()[0].port, 7777);
    }

    #[test]
    fn target_mismatch_is_invalid_params() {
        let err = check_target(&node(), "other", "sei").unwrap_err();
        assert!(matches!(err, TaskError::InvalidParams(m) if m.contains("sei/other")));
    }

    #[test]
    fn a_predecessors_object_is_not_adopted() {
        let owned = |uid: &str, kind: &str, controller: bool| {
            serde_json::json!({"metadata": {"name": "rpc-0-bootstrap", "ownerReferences": [
                {"apiVersion": "sei.io/v1alpha1", "kind": kind, "name": "rpc-0", "uid": uid, "controller": controller}
            ]}})
            .to_string()
        };
        assert_eq!(predecessor(&owned("u-1", "SeiNode", true), Some("u-1")), None, "this node's own");
        assert_eq!(predecessor(&owned("u-0", "SeiNode", true), Some("u-1")).as_deref(), Some("u-0"), "a deleted node's");
        assert_eq!(predecessor(&owned("u-0", "SeiNode", false), Some("u-1")), None, "not a controller reference");
        assert_eq!(predecessor(&owned("x", "StatefulSet", true), Some("u-1")), None, "controlled by something else: as before");
        assert_eq!(predecessor(r#"{"metadata": {"name": "data-rpc-0"}}"#, Some("u-1")), None, "a volume the user made: adopted");
        assert_eq!(predecessor(&owned("u-0", "SeiNode", true), None), None, "no uid to compare (task run)");
        assert_eq!(predecessor("not json", Some("u-1")), None);
    }
}
