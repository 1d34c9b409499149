//! How the controllers reach a node's sidecar: the address (`SidecarResolver`: the reference's pod
//! DNS name, or a URL template for tests and the demo) and one sidecar client per node, kept for
//! the node's later steps (`sidecar_urls`). Every node's client goes through one shared HTTP
//! client (one connection pool, one TLS configuration): a node costs a URL, not a client
//! (`tests/sidecar_clients.rs`). The cache holds one entry per node (a changed address replaces
//! it) and forgets a deleted node, so no spec change can grow it
//! (`one_client_per_node_whatever_its_port`).

use super::sidecar::{DEFAULT_SIDECAR_TIMEOUT, HttpSidecarClient, SidecarClient};
use crate::api::seinode::SeiNode;
use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const DEFAULT_SIDECAR_PORT: i32 = 7777;

/// How the controller finds a node's sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarResolver {
    /// `http://<node>-0.<node>.<ns>.svc.cluster.local:<spec.sidecar.port or 7777>` (reference).
    PodDns,
    /// A template with `{name}` and `{namespace}` (tests, the demo).
    Template(String),
}

impl SidecarResolver {
    pub fn url(&self, node: &SeiNode) -> String {
        let name = node.name_any();
        let ns = node.namespace().unwrap_or_default();
        match self {
            SidecarResolver::PodDns => {
                let port = node.spec.sidecar.as_ref().and_then(|s| s.port).unwrap_or(DEFAULT_SIDECAR_PORT);
                HttpSidecarClient::pod_dns_url(&name, &ns, port as u16)
            }
            SidecarResolver::Template(t) => t.replace("{name}", &name).replace("{namespace}", &ns),
        }
    }
}

/// The sidecar clients, one per node (`namespace/name`), with the address it was made for.
#[derive(Debug)]
pub struct Sidecars {
    resolver: SidecarResolver,
    /// Shared by every node's client; `None` only if it could not be built (then no node has a
    /// client: the steps that need one wait as unavailable).
    http: Option<reqwest::Client>,
    clients: Mutex<HashMap<String, (String, Arc<HttpSidecarClient>)>>,
}

impl Sidecars {
    pub fn new(resolver: SidecarResolver) -> Self {
        let http = HttpSidecarClient::http_client(DEFAULT_SIDECAR_TIMEOUT).ok();
        Self { resolver, http, clients: Mutex::new(HashMap::new()) }
    }

    /// The client of `node`'s sidecar (`None` when its address is not a URL).
    pub fn client_for(&self, node: &SeiNode) -> Option<Arc<dyn SidecarClient>> {
        let url = self.resolver.url(node);
        let key = format!("{}/{}", node.namespace().unwrap_or_default(), node.name_any());
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((known, c)) = clients.get(&key)
            && *known == url
        {
            return Some(c.clone());
        }
        let client = Arc::new(HttpSidecarClient::with_http(url.clone(), self.http.clone()?).ok()?);
        clients.insert(key, (url, client.clone()));
        Some(client)
    }

    /// Drop the client of a deleted node.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).remove(&format!("{namespace}/{name}"));
    }

    /// How many clients are kept.
    pub fn len(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_urls() {
        let node: SeiNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "rpc", "namespace": "sei"},
            "spec": {"chainId": "c", "image": "i", "fullNode": {}, "sidecar": {"port": 7000}}
        }))
        .unwrap();
        assert_eq!(SidecarResolver::PodDns.url(&node), "http://rpc-0.rpc.sei.svc.cluster.local:7000");
        assert_eq!(
            SidecarResolver::Template("http://127.0.0.1:9/nodes/{namespace}/{name}".into()).url(&node),
            "http://127.0.0.1:9/nodes/sei/rpc"
        );
    }

    #[test]
    fn one_client_per_node_whatever_its_port() {
        let sidecars = Sidecars::new(SidecarResolver::PodDns);
        let mut node: SeiNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "rpc", "namespace": "sei"},
            "spec": {"chainId": "c", "image": "i", "fullNode": {}}
        }))
        .unwrap();
        for port in 1000..1100 {
            node.spec.sidecar = Some(crate::api::seinode::SidecarConfig { port: Some(port), ..Default::default() });
            assert!(sidecars.client_for(&node).is_some());
        }
        assert_eq!(sidecars.len(), 1, "a changed address replaces the node's client");
        sidecars.forget("sei", "rpc");
        assert!(sidecars.is_empty());
    }
}
