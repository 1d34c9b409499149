//! The bootstrap tasks (the reference's, and its shapes): a headless Service and a Job
//! that restore the S3 snapshot and replay to `targetHeight` before the production StatefulSet
//! exists, then their teardown.
//!
//! Fixed quirk: `teardown-bootstrap` completes only once the Job and Service are gone, so the
//! production `apply-service` never meets the terminating bootstrap Service of the same name.
//! Fixed quirk: the Job has no `ttlSecondsAfterFinished` (the reference's 3600 s): its outcome is
//! what `await-bootstrap-complete` reads, and settles the bootstrap pod's sidecar tasks when that
//! sidecar is gone, so it stays until `teardown-bootstrap` deletes it (or the garbage collector,
//! with its SeiNode). After a controller outage longer than the TTL, the plan failed on "bootstrap
//! job not found" although the Job had succeeded. Test: `tests::bootstrap_job_shape_matches_reference` (lib.rs).

use super::statefulset::{DATA_DIR, SpecView, base_pod, env, init_container, mount, seid_resources, sidecar_container, sidecar_port};
use super::{NodeView, meta};
use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sei_task_params::Platform;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The snapshot fields the Job reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapSpec {
    #[serde(flatten)]
    pub base: SpecView,
    #[serde(default)]
    pub full_node: Option<ModeWithSnapshot>,
    #[serde(default)]
    pub validator: Option<ModeWithSnapshot>,
    #[serde(default)]
    pub replayer: Option<ModeWithSnapshot>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ModeWithSnapshot {
    #[serde(default)]
    pub snapshot: Option<SnapshotView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotView {
    #[serde(default)]
    pub s3: Option<S3View>,
    #[serde(default)]
    pub bootstrap_image: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct S3View {
    pub target_height: i64,
}

impl BootstrapSpec {
    pub fn snapshot(&self) -> Option<&SnapshotView> {
        [&self.full_node, &self.validator, &self.replayer].into_iter().flatten().find_map(|m| m.snapshot.as_ref())
    }
}

pub fn bootstrap_labels(node: &NodeView) -> BTreeMap<String, String> {
    BTreeMap::from([(super::NODE_LABEL.to_string(), node.metadata.name.clone()), ("sei.io/component".to_string(), "bootstrap".to_string())])
}

pub fn bootstrap_service(node: &NodeView, spec: &SpecView) -> Service {
    let mut m = meta(node, node.metadata.name.clone());
    m.labels = Some(bootstrap_labels(node));
    Service {
        metadata: m,
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            selector: Some(bootstrap_labels(node)),
            publish_not_ready_addresses: Some(true),
            ports: Some(vec![ServicePort {
                name: Some("sidecar".into()),
                port: sidecar_port(spec),
                target_port: Some(IntOrString::Int(sidecar_port(spec))),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Job: `seid` halts at the target height; exit code 130 (SIGINT at halt height) is success.
pub fn bootstrap_job(node: &NodeView, spec: &BootstrapSpec, platform: &Platform) -> Result<Job, String> {
    let name = node.metadata.name.clone();
    let snap = spec.snapshot().ok_or("the node has no snapshot source")?;
    let height = snap.s3.as_ref().map(|s| s.target_height).filter(|h| *h > 0).ok_or("the snapshot source has no s3.targetHeight")?;
    let image = snap.bootstrap_image.clone().filter(|i| !i.is_empty()).unwrap_or_else(|| spec.base.image.clone());
    let port = sidecar_port(&spec.base);
    let script = format!(
        "until exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /v0/healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200'; do sleep 5; done; \
         seid start --home {DATA_DIR} --halt-height {height}; code=$?; if [ $code -eq 130 ]; then exit 0; fi; exit $code"
    );
    let seid = Container {
        name: "seid".into(),
        image: Some(image.clone()),
        command: Some(vec!["/bin/bash".into(), "-c".into()]),
        args: Some(vec![script]),
        env: Some(vec![env("TMPDIR", &format!("{DATA_DIR}/tmp"))]),
        volume_mounts: Some(mount()),
        resources: seid_resources(platform),
        ..Default::default()
    };
    let pod = PodSpec {
        hostname: Some(format!("{name}-0")),
        subdomain: Some(name.clone()),
        restart_policy: Some("Never".into()),
        termination_grace_period_seconds: Some(120),
        init_containers: Some(vec![init_container(&image, &spec.base.chain_id), sidecar_container(&spec.base, platform, false)]),
        containers: vec![seid],
        ..base_pod(&name, platform)
    };
    let mut m = meta(node, format!("{name}-bootstrap"));
    m.labels = Some(bootstrap_labels(node));
    Ok(Job {
        metadata: m,
        spec: Some(JobSpec {
            backoff_limit: Some(0),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(bootstrap_labels(node)),
                    annotations: Some(BTreeMap::from([("karpenter.sh/do-not-disrupt".to_string(), "true".to_string())])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// The part of a Job `await-bootstrap-complete` reads. Decoding only this (instead of the whole
/// k8s-openapi `Job` with its pod template) keeps the module small.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobStatusView {
    #[serde(default)]
    pub status: Option<JobStatusConditions>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobStatusConditions {
    #[serde(default)]
    pub conditions: Vec<JobCondition>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct JobCondition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// Where a Job stands: `Some(Ok(()))` complete, `Some(Err(message))` failed, `None` running.
pub fn job_outcome(job: &JobStatusView) -> Option<Result<(), String>> {
    let conditions = &job.status.as_ref()?.conditions;
    let true_condition = |t: &str| conditions.iter().find(|c| c.type_ == t && c.status == "True");
    if true_condition("Complete").is_some() {
        return Some(Ok(()));
    }
    true_condition("Failed").map(|c| Err(c.message.clone().filter(|m| !m.is_empty()).unwrap_or_else(|| "bootstrap job failed".into())))
}
