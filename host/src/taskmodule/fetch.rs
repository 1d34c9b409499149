//! Fetching a `TaskModule`'s bytes: a ConfigMap key or an HTTP(S) URL, capped in size, and
//! remembered by sha256 so that reverting to an earlier digest needs no fetch at all.
//!
//! Invariants (unit tests below):
//! - a body past `MAX_MODULE_BYTES` is refused while it streams (`oversized_body_is_refused`);
//! - bytes are remembered only under their own sha256, the last `REMEMBERED` digests
//!   (`memo_keeps_the_latest_digests`).

use super::resource::TaskModuleSource;
use crate::sandbox::cache::sha256_hex;
use async_trait::async_trait;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest module accepted from any source.
pub const MAX_MODULE_BYTES: usize = 32 << 20;
/// How many digests' bytes are kept in memory for instant rollback.
pub const REMEMBERED: usize = 8;
/// A module URL must answer within this (so a few unreachable URLs do not outlast start-up).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("ConfigMap {namespace}/{name} not found")]
    ConfigMapNotFound { namespace: String, name: String },
    #[error("ConfigMap {namespace}/{name} has no key {key} in binaryData or data")]
    KeyNotFound { namespace: String, name: String, key: String },
    #[error("fetching {what}: {message}")]
    Transport { what: String, message: String },
    #[error("{what} answered HTTP {status}")]
    Status { what: String, status: u16 },
    #[error("{what} is over the {MAX_MODULE_BYTES}-byte module limit")]
    TooLarge { what: String },
    #[error(
        "ConfigMap {namespace}/{name} is outside the module namespace {allowed}: this controller reads module ConfigMaps only there (--module-configmap-namespace)"
    )]
    OutsideModuleNamespace { namespace: String, name: String, allowed: String },
}

impl FetchError {
    /// Whether trying again later may succeed (the object or server may appear or recover).
    pub fn may_heal(&self) -> bool {
        match self {
            FetchError::ConfigMapNotFound { .. } | FetchError::KeyNotFound { .. } | FetchError::Transport { .. } => true,
            FetchError::Status { status, .. } => matches!(status, 404 | 408 | 425 | 429) || *status >= 500,
            FetchError::TooLarge { .. } | FetchError::OutsideModuleNamespace { .. } => false,
        }
    }
}

/// Where module bytes come from.
#[async_trait]
pub trait ModuleFetcher: Send + Sync {
    async fn fetch(&self, source: &TaskModuleSource) -> Result<Vec<u8>, FetchError>;
}

/// ConfigMaps through the API server, URLs through an HTTP client that follows no redirects (a
/// module URL names the bytes; the sha256 pin makes any other bytes fail anyway).
pub struct KubeModuleFetcher {
    client: kube::Client,
    http: reqwest::Client,
    /// The only namespace whose ConfigMaps may hold modules (`None`: any).
    configmap_namespace: Option<String>,
}

impl KubeModuleFetcher {
    /// `configmap_namespace`: the only namespace whose ConfigMaps may hold modules (`None`: any;
    /// the controller's RBAC then needs ConfigMap reads in every namespace).
    pub fn new(client: kube::Client, configmap_namespace: Option<String>) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, "could not configure the module HTTP client; URL sources use reqwest's defaults");
                reqwest::Client::new()
            });
        Self { client, http, configmap_namespace }
    }

    async fn fetch_url(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let transport = |e: reqwest::Error| FetchError::Transport { what: url.to_string(), message: format!("{e}") };
        let mut response = self.http.get(url).send().await.map_err(transport)?;
        if !response.status().is_success() {
            return Err(FetchError::Status { what: url.to_string(), status: response.status().as_u16() });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            append_capped(&mut body, &chunk, url)?;
        }
        Ok(body)
    }
}

fn append_capped(body: &mut Vec<u8>, chunk: &[u8], what: &str) -> Result<(), FetchError> {
    if body.len() + chunk.len() > MAX_MODULE_BYTES {
        return Err(FetchError::TooLarge { what: what.to_string() });
    }
    body.extend_from_slice(chunk);
    Ok(())
}

#[async_trait]
impl ModuleFetcher for KubeModuleFetcher {
    async fn fetch(&self, source: &TaskModuleSource) -> Result<Vec<u8>, FetchError> {
        if let Some(url) = &source.url {
            return self.fetch_url(url).await;
        }
        let Some(cm) = &source.config_map else {
            return Err(FetchError::Transport { what: "source".into(), message: "neither configMap nor url is set".into() });
        };
        if let Some(allowed) = self.configmap_namespace.as_ref().filter(|a| **a != cm.namespace) {
            return Err(FetchError::OutsideModuleNamespace {
                namespace: cm.namespace.clone(),
                name: cm.name.clone(),
                allowed: allowed.clone(),
            });
        }
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), &cm.namespace);
        let what = format!("ConfigMap {}/{}", cm.namespace, cm.name);
        let object = api.get_opt(&cm.name).await.map_err(|e| FetchError::Transport { what: what.clone(), message: format!("{e}") })?;
        let Some(object) = object else {
            return Err(FetchError::ConfigMapNotFound { namespace: cm.namespace.clone(), name: cm.name.clone() });
        };
        let bytes = object
            .binary_data
            .as_ref()
            .and_then(|d| d.get(&cm.key))
            .map(|b| b.0.clone())
            .or_else(|| object.data.as_ref().and_then(|d| d.get(&cm.key)).map(|s| s.as_bytes().to_vec()));
        let bytes =
            bytes.ok_or_else(|| FetchError::KeyNotFound { namespace: cm.namespace.clone(), name: cm.name.clone(), key: cm.key.clone() })?;
        if bytes.len() > MAX_MODULE_BYTES {
            return Err(FetchError::TooLarge { what });
        }
        Ok(bytes)
    }
}

/// The bytes of recently loaded modules by sha256.
#[derive(Default)]
pub struct BytesMemo {
    entries: Mutex<VecDeque<(String, Arc<[u8]>)>>,
}

impl BytesMemo {
    pub fn get(&self, sha256: &str) -> Option<Arc<[u8]>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).iter().find(|(d, _)| d == sha256).map(|(_, b)| b.clone())
    }

    /// Remember `bytes` under their own digest.
    pub fn remember(&self, bytes: Arc<[u8]>) {
        let digest = sha256_hex(&bytes);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|(d, _)| d != &digest);
        entries.push_front((digest, bytes));
        entries.truncate(REMEMBERED);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_body_is_refused() {
        let mut body = vec![0u8; MAX_MODULE_BYTES - 1];
        assert!(append_capped(&mut body, &[1], "u").is_ok());
        assert_eq!(append_capped(&mut body, &[1], "u"), Err(FetchError::TooLarge { what: "u".into() }));
    }

    #[test]
    fn only_failures_that_may_heal_are_retried() {
        assert!(FetchError::ConfigMapNotFound { namespace: "n".into(), name: "m".into() }.may_heal());
        assert!(FetchError::Status { what: "u".into(), status: 503 }.may_heal());
        assert!(FetchError::Status { what: "u".into(), status: 404 }.may_heal());
        assert!(!FetchError::Status { what: "u".into(), status: 403 }.may_heal());
        assert!(!FetchError::TooLarge { what: "u".into() }.may_heal());
    }

    #[test]
    fn memo_keeps_the_latest_digests() {
        let memo = BytesMemo::default();
        let first: Arc<[u8]> = Arc::from(&b"first"[..]);
        memo.remember(first.clone());
        assert_eq!(memo.get(&sha256_hex(b"first")).as_deref(), Some(&b"first"[..]));
        assert!(memo.get(&sha256_hex(b"other")).is_none());
        for i in 0..REMEMBERED {
            memo.remember(Arc::from(format!("m{i}").as_bytes()));
        }
        assert!(memo.get(&sha256_hex(b"first")).is_none(), "the oldest is forgotten");
        assert!(memo.get(&sha256_hex(b"m0")).is_some());
    }
}
