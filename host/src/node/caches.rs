//! The controller's watch caches: the SeiNodes it reconciles (the controller's own store) and the
//! StatefulSets and Services labelled `sei.io/node` that it watches to wake their owners, kept in
//! reflector stores. A Running node's periodic drift check and every label-peer lookup are
//! answered here, with no API request
//! (`an_idle_node_costs_no_request_and_drift_converges_from_the_watch` in `tests/controller.rs`).
//! A reconcile that acts reads the node fresh unless the cached copy is the version it wrote
//! itself (`written`), and takes the StatefulSet and Service from here only when they show no
//! drift: a drift is confirmed by a fresh read before it makes a plan, so a cache that lags
//! never makes one.
//!
//! Invariants:
//! - the caches answer only once every store has had its first list (`ready`); before that the
//!   reconcile reads the API server as without caches;
//! - a StatefulSet or Service is kept only with the fields the planner and the owner trigger read
//!   (`strip_statefulset`, `strip_service`): memory per node stays small at 10,000 nodes
//!   (`stripped_objects_keep_what_the_planner_reads`);
//! - label peers outside the watched namespace, or of a sharded controller (other shards' nodes
//!   are not cached), are not in the cache: `label_peers` says so (`None`) and the reconcile
//!   lists them from the API server.

use super::observe::{label_sources, observed_from, peer_address};
use super::planner::Observed;
use crate::api::seinode::SeiNode;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetStatus};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::runtime::reflector::{ObjectRef, Store};
use std::collections::BTreeSet;

pub struct WatchCaches {
    pub nodes: Store<SeiNode>,
    pub statefulsets: Store<StatefulSet>,
    pub services: Store<Service>,
    /// The one namespace watched (`None`: every namespace).
    pub namespace: Option<String>,
    /// Only this shard's SeiNodes are cached (`--shard-selector`): label peers in other shards
    /// are not, so they are listed from the API server.
    pub sharded: bool,
}

fn is_ready<K>(store: &Store<K>) -> bool
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    store.wait_until_ready().now_or_never().is_some_and(|r| r.is_ok())
}

impl WatchCaches {
    /// Every store has had its first list.
    pub fn ready(&self) -> bool {
        is_ready(&self.nodes) && is_ready(&self.statefulsets) && is_ready(&self.services)
    }

    /// What the planner needs from the node's StatefulSet and Service, as the caches have them.
    pub fn observe(&self, node: &SeiNode) -> Observed {
        let ns = node.namespace().unwrap_or_default();
        let name = node.name_any();
        let sts = self.statefulsets.get(&ObjectRef::new(&name).within(&ns));
        let service_exists = self.services.get(&ObjectRef::new(&name).within(&ns)).is_some();
        observed_from(sts.as_deref(), service_exists)
    }

    /// The addresses of the node's label peers, from the SeiNode cache; `None` when a source's
    /// namespace is not watched.
    pub fn label_peers(&self, node: &SeiNode) -> Option<Vec<String>> {
        let sources = label_sources(node);
        if self.sharded && !sources.is_empty() {
            return None;
        }
        let mut out = BTreeSet::new();
        for (ns, selector) in sources {
            if self.namespace.as_ref().is_some_and(|watched| *watched != ns) {
                return None;
            }
            let matched = self.nodes.state_filter(|p| {
                p.metadata.namespace.as_deref() == Some(ns.as_str()) && selector.iter().all(|(k, v)| p.labels().get(k) == Some(v))
            });
            for peer in matched {
                out.extend(peer_address(node, &peer.name_any(), &ns));
            }
        }
        Some(out.into_iter().collect())
    }
}

/// Only what identifies the object and wakes its owner.
fn strip_meta(meta: &mut ObjectMeta) {
    *meta = ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        generation: meta.generation,
        owner_references: meta.owner_references.take(),
        deletion_timestamp: meta.deletion_timestamp.take(),
        ..ObjectMeta::default()
    };
}

/// Keep what `observed_from` reads: the pod template's labels and container images, the replica
/// count and the rollout status.
pub fn strip_statefulset(sts: &mut StatefulSet) {
    strip_meta(&mut sts.metadata);
    let template = std::mem::take(&mut sts.spec.template);
    let labels = template.metadata.and_then(|m| m.labels);
    let containers = template
        .spec
        .map(|p| p.containers.into_iter().map(|c| Container { name: c.name, image: c.image, ..Container::default() }).collect())
        .unwrap_or_default();
    sts.spec = StatefulSetSpec {
        replicas: sts.spec.replicas,
        template: PodTemplateSpec {
            metadata: Some(ObjectMeta { labels, ..ObjectMeta::default() }),
            spec: Some(PodSpec { containers, ..PodSpec::default() }),
        },
        ..StatefulSetSpec::default()
    };
    sts.status = sts.status.take().map(|s| StatefulSetStatus {
        observed_generation: s.observed_generation,
        replicas: s.replicas,
        ready_replicas: s.ready_replicas,
        updated_replicas: s.updated_replicas,
        current_revision: s.current_revision,
        update_revision: s.update_revision,
        ..StatefulSetStatus::default()
    });
}

/// A Service is only looked up: keep its identity.
pub fn strip_service(svc: &mut Service) {
    strip_meta(&mut svc.metadata);
    svc.spec = None;
    svc.status = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn stripped_objects_keep_what_the_planner_reads() {
        let sts: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "rpc", "namespace": "sei", "uid": "u", "resourceVersion": "7", "generation": 3,
                "ownerReferences": [{"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "name": "rpc", "uid": "n", "controller": true}],
                "managedFields": [{"manager": "x", "fieldsV1": {"f:spec": {}}}], "annotations": {"a": "b"}},
            "spec": {"replicas": 1, "serviceName": "rpc", "selector": {"matchLabels": {"sei.io/node": "rpc"}},
                "template": {"metadata": {"labels": {"sei.io/node": "rpc", "team": "x"}}, "spec": {
                    "containers": [{"name": "seid", "image": "seid:v2", "env": [{"name": "A", "value": "B"}], "args": ["start"]},
                                   {"name": "sei-sidecar", "image": "sidecar:v1"}],
                    "volumes": [{"name": "data", "emptyDir": {}}]}}},
            "status": {"observedGeneration": 3, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                "currentRevision": "r1", "updateRevision": "r1", "conditions": [{"type": "X", "status": "True"}]}
        }))
        .unwrap();
        let mut stripped = sts.clone();
        strip_statefulset(&mut stripped);
        let (full, small) = (observed_from(Some(&sts), true), observed_from(Some(&stripped), true));
        assert_eq!(full, small, "the planner sees the same");
        assert!(small.statefulset_rolled_out && small.statefulset_image.as_deref() == Some("seid:v2"));
        assert_eq!(stripped.metadata.owner_references, sts.metadata.owner_references, "the owner trigger still finds its node");
        assert!(stripped.metadata.managed_fields.is_none() && stripped.metadata.annotations.is_none());
        let pod = stripped.spec.template.spec.as_ref().unwrap();
        assert!(pod.volumes.is_none() && pod.containers.iter().all(|c| c.env.is_none() && c.args.is_none()), "{pod:?}");
        assert!(stripped.spec.service_name.is_none() && stripped.status.as_ref().unwrap().conditions.is_none());

        let mut svc: Service = serde_json::from_value(json!({
            "metadata": {"name": "rpc", "namespace": "sei", "ownerReferences": sts.metadata.owner_references},
            "spec": {"selector": {"sei.io/node": "rpc"}, "ports": [{"port": 26657}]}
        }))
        .unwrap();
        strip_service(&mut svc);
        assert!(svc.spec.is_none() && svc.metadata.owner_references.is_some());
    }
}
