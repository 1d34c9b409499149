//! What a reconcile reads besides the node itself: the addresses of label-selected peers, and the
//! node's StatefulSet and Service for drift detection (`planner::drift` decides from it) and for
//! `status.currentImage` (`planner::current_image`). Read from the API server here; `caches`
//! answers the same questions from the controller's watch caches.

use super::planner::Observed;
use crate::api::seinode::SeiNode;
use crate::labels::{is_label_key, is_label_value};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};
use std::collections::BTreeSet;

/// `<name>-0.<name>.<ns>.svc.cluster.local` of every SeiNode matched by a label peer source, listed
/// from the API server (`WatchCaches::label_peers` answers from the watch cache instead).
pub async fn resolve_label_peers(client: &Client, node: &SeiNode) -> Result<Vec<String>, kube::Error> {
    let mut out = BTreeSet::new();
    for (ns, selector) in label_sources(node) {
        // Only label syntax reaches the selector: `a!=b` or `a,b` would make it match far more.
        let selector = selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let api: Api<SeiNode> = Api::namespaced(client.clone(), &ns);
        for peer in api.list(&ListParams::default().labels(&selector)).await?.items {
            out.extend(peer_address(node, &peer.name_any(), &ns));
        }
    }
    Ok(out.into_iter().collect())
}

/// The address of `peer` (in `ns`) as a peer of `node`; `None` for the node itself.
pub fn peer_address(node: &SeiNode, peer: &str, ns: &str) -> Option<String> {
    (peer != node.name_any() || ns != node.namespace().unwrap_or_default()).then(|| format!("{peer}-0.{peer}.{ns}.svc.cluster.local"))
}

/// The label peer sources of `node` whose selectors are label syntax, as (namespace, selector);
/// the others are ignored with a warning.
pub fn label_sources(node: &SeiNode) -> Vec<(String, &std::collections::BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for source in node.spec.peers.iter().flatten().filter_map(|p| p.label.as_ref()) {
        if !source.selector.iter().all(|(k, v)| is_label_key(k) && is_label_value(v)) {
            tracing::warn!(node = %node.name_any(), "a label peer selector that is not label syntax is ignored");
            continue;
        }
        out.push((source.namespace.clone().or_else(|| node.namespace()).unwrap_or_default(), &source.selector));
    }
    out
}

/// The node's StatefulSet image and pod labels, and whether its Service exists, read from the API
/// server (what a reconcile that acts works on).
pub async fn observe(client: &Client, node: &SeiNode) -> Result<Observed, kube::Error> {
    let ns = node.namespace().unwrap_or_default();
    let name = node.name_any();
    let sts = Api::<StatefulSet>::namespaced(client.clone(), &ns).get_opt(&name).await?;
    let svc = Api::<Service>::namespaced(client.clone(), &ns).get_opt(&name).await?;
    Ok(observed_from(sts.as_ref(), svc.is_some()))
}

/// What the planner needs from the node's StatefulSet (if any) and Service (pure).
pub fn observed_from(sts: Option<&StatefulSet>, service_exists: bool) -> Observed {
    let template = sts.map(|s| &s.spec.template);
    Observed {
        statefulset_image: template
            .and_then(|t| t.spec.as_ref())
            .and_then(|p| p.containers.iter().find(|c| c.name == "seid"))
            .and_then(|c| c.image.clone()),
        statefulset_labels: template.and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default(),
        service_exists,
        statefulset_rolled_out: sts.is_some_and(rolled_out),
    }
}

/// The StatefulSet's status observed its generation and every replica is updated and ready.
fn rolled_out(sts: &StatefulSet) -> bool {
    let Some(status) = &sts.status else { return false };
    let replicas = sts.spec.replicas.unwrap_or(1);
    status.observed_generation >= sts.metadata.generation
        && status.updated_replicas.unwrap_or(0) >= replicas
        && status.ready_replicas.unwrap_or(0) >= replicas
        && (status.update_revision.is_none() || status.current_revision == status.update_revision)
}
