//! The node's StatefulSet (the reference's shape).

use super::{NODE_LABEL, NodeView, meta};
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec};
use k8s_openapi::api::core::v1::{
    Affinity, Container, ContainerPort, EnvVar, HTTPGetAction, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, ResourceRequirements, Toleration, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use sei_task_params::Platform;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The spec fields the StatefulSet reads.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpecView {
    pub chain_id: String,
    pub image: String,
    #[serde(default)]
    pub entrypoint: Option<Entrypoint>,
    #[serde(default)]
    pub sidecar: Option<SidecarView>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Entrypoint {
    pub command: Vec<String>,
    #[serde(default)]
    pub args: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct SidecarView {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub port: Option<i32>,
    #[serde(default)]
    pub resources: Option<ResourceRequirements>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct NodeWithSpec {
    pub spec: SpecView,
}

pub const SIDECAR_PORT: i32 = 7777;
pub const DATA_DIR: &str = "/sei";

/// Single-quote a word for `sh`.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn http_probe(path: &str, port: i32, delay: i32, period: i32, failures: i32, timeout: Option<i32>) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction { path: Some(path.into()), port: IntOrString::Int(port), ..Default::default() }),
        initial_delay_seconds: Some(delay),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: timeout,
        ..Default::default()
    }
}

pub fn env(name: &str, value: &str) -> EnvVar {
    EnvVar { name: name.into(), value: Some(value.into()), ..Default::default() }
}

pub fn mount() -> Vec<VolumeMount> {
    vec![VolumeMount { name: "data".into(), mount_path: DATA_DIR.into(), ..Default::default() }]
}

/// The `seid` start command: wait until the sidecar's healthz is 200, then start.
pub fn seid_script(spec: &SpecView, sidecar_port: i32) -> String {
    let start = match &spec.entrypoint {
        Some(e) => e.command.iter().chain(e.args.iter().flatten()).map(|w| shell_quote(w)).collect::<Vec<_>>().join(" "),
        None => format!("seid start --home {DATA_DIR}"),
    };
    format!(
        "until exec 3<>/dev/tcp/127.0.0.1/{sidecar_port} && printf 'GET /v0/healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200'; do \
         echo 'waiting for the sidecar to mark the node ready'; sleep 5; done; exec {start}"
    )
}

/// `seid-init`: `seid init` unless the data volume already has a genesis, then the tmp dir.
pub fn init_container(image: &str, chain: &str) -> Container {
    Container {
        name: "seid-init".into(),
        image: Some(image.into()),
        command: Some(vec!["/bin/sh".into(), "-c".into()]),
        args: Some(vec![format!(
            "if [ -f {DATA_DIR}/config/genesis.json ]; then echo 'already initialised'; else seid init {c} --chain-id {c} --home {DATA_DIR} --overwrite; fi; mkdir -p {DATA_DIR}/tmp",
            c = shell_quote(chain)
        )]),
        volume_mounts: Some(mount()),
        ..Default::default()
    }
}

/// The native sidecar (`restartPolicy: Always` init container); probes only for the StatefulSet.
pub fn sidecar_container(spec: &SpecView, platform: &Platform, probes: bool) -> Container {
    let sidecar_port = sidecar_port(spec);
    let chain = &spec.chain_id;
    Container {
        name: "sei-sidecar".into(),
        image: Some(spec.sidecar.as_ref().and_then(|s| s.image.clone()).unwrap_or_else(|| platform.sidecar_image.clone())),
        restart_policy: Some("Always".into()),
        command: Some(vec!["seictl".into(), "serve".into()]),
        env: Some(vec![
            env("SEI_CHAIN_ID", chain),
            env("SEI_SIDECAR_PORT", &sidecar_port.to_string()),
            env("SEI_HOME", DATA_DIR),
            env("SEI_GENESIS_BUCKET", &platform.genesis_bucket),
            env("SEI_GENESIS_REGION", &platform.genesis_region),
            env("SEI_SNAPSHOT_BUCKET", &platform.snapshot_bucket),
            env("SEI_SNAPSHOT_REGION", &platform.snapshot_region),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("sidecar".into()),
            container_port: sidecar_port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        volume_mounts: Some(mount()),
        liveness_probe: probes.then(|| http_probe("/v0/livez", sidecar_port, 5, 10, 3, None)),
        readiness_probe: probes.then(|| http_probe("/v0/healthz", sidecar_port, 2, 5, 6, None)),
        resources: spec.sidecar.as_ref().and_then(|s| s.resources.clone()),
        ..Default::default()
    }
}

pub fn sidecar_port(spec: &SpecView) -> i32 {
    spec.sidecar.as_ref().and_then(|s| s.port).unwrap_or(SIDECAR_PORT)
}

/// Resource requests of `seid` from the platform (by mode, resolved by the planner).
pub fn seid_resources(platform: &Platform) -> Option<ResourceRequirements> {
    let requests: BTreeMap<String, Quantity> = [("cpu", &platform.cpu), ("memory", &platform.memory)]
        .into_iter()
        .filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), Quantity(v))))
        .collect();
    (!requests.is_empty()).then(|| ResourceRequirements { requests: Some(requests), ..Default::default() })
}

/// Service account, toleration, node affinity, shared PID namespace and the data volume.
pub fn base_pod(node_name: &str, platform: &Platform) -> PodSpec {
    let pool = platform.node_pool.clone();
    PodSpec {
        service_account_name: platform.service_account.clone(),
        share_process_namespace: Some(true),
        volumes: Some(vec![Volume {
            name: "data".into(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource { claim_name: format!("data-{node_name}"), read_only: None }),
            ..Default::default()
        }]),
        tolerations: platform.toleration_key.as_ref().map(|key| {
            vec![Toleration {
                key: Some(key.clone()),
                operator: Some("Equal".into()),
                value: pool.clone(),
                effect: Some("NoSchedule".into()),
                ..Default::default()
            }]
        }),
        affinity: pool.as_ref().map(|pool| Affinity {
            node_affinity: Some(NodeAffinity {
                required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: "karpenter.sh/nodepool".into(),
                            operator: "In".into(),
                            values: Some(vec![pool.clone()]),
                        }]),
                        ..Default::default()
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn seid_ports() -> Vec<ContainerPort> {
    super::SEID_PORTS
        .iter()
        .map(|(n, p)| ContainerPort { name: Some((*n).into()), container_port: *p, protocol: Some("TCP".into()), ..Default::default() })
        .collect()
}

pub fn statefulset(node: &NodeView, spec: &SpecView, platform: &Platform) -> StatefulSet {
    let name = node.metadata.name.clone();
    let labels = super::resource_labels(node);
    let sidecar_port = sidecar_port(spec);
    let init = init_container(&spec.image, &spec.chain_id);
    let sidecar = sidecar_container(spec, platform, true);
    let seid = Container {
        name: "seid".into(),
        image: Some(spec.image.clone()),
        command: Some(vec!["/bin/bash".into(), "-c".into()]),
        args: Some(vec![seid_script(spec, sidecar_port)]),
        env: Some(vec![env("TMPDIR", &format!("{DATA_DIR}/tmp"))]),
        ports: Some(seid_ports()),
        volume_mounts: Some(mount()),
        resources: seid_resources(platform),
        startup_probe: Some(http_probe("/v0/healthz", sidecar_port, 5, 5, 86_400, None)),
        readiness_probe: Some(http_probe("/lag_status", 26657, 30, 10, 3, Some(5))),
        ..Default::default()
    };
    let pod = PodSpec { init_containers: Some(vec![init, sidecar]), containers: vec![seid], ..base_pod(&name, platform) };
    StatefulSet {
        metadata: meta(node, name.clone()),
        spec: StatefulSetSpec {
            replicas: Some(1),
            service_name: Some(name.clone()),
            selector: LabelSelector { match_labels: Some(BTreeMap::from([(NODE_LABEL.to_string(), name.clone())])), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([("karpenter.sh/do-not-disrupt".to_string(), "true".to_string())])),
                    ..Default::default()
                }),
                spec: Some(pod),
            },
            ..Default::default()
        },
        ..Default::default()
    }
}
