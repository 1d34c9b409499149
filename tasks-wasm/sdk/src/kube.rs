//! Kubernetes objects in the node's namespace (the `kube` host interface).
//!
//! Raw functions take and return JSON; with the `k8s` feature the typed helpers take
//! k8s-openapi types. Every call is checked by the host's capability guard: a call outside the
//! node's namespace, or one whose capability was not granted, returns [`KubeError::Denied`].

use crate::TaskError;
pub use crate::bindings::sei::task::kube::{KubeError, ObjectRef};
use crate::host as raw;

impl From<KubeError> for TaskError {
    /// The usual mapping: denied stays denied, an invalid object is permanent, everything
    /// else may go away by itself.
    fn from(e: KubeError) -> Self {
        match e {
            KubeError::Denied(m) => TaskError::Denied(m),
            KubeError::Invalid(m) => TaskError::Permanent(format!("kubernetes rejected the object: {m}")),
            KubeError::Unavailable(m) => TaskError::Unavailable(format!("kubernetes: {m}")),
            other => TaskError::Transient(format!("kubernetes: {other}")),
        }
    }
}

/// Get one object as JSON.
pub fn get_raw(api_version: &str, kind: &str, name: &str) -> Result<Option<String>, KubeError> {
    raw::kube_get(&ObjectRef { api_version: api_version.into(), kind: kind.into(), namespace: None, name: name.into() })
}

/// Get one object in an explicit namespace (the guard refuses any but the node's).
pub fn get_raw_in(api_version: &str, kind: &str, namespace: &str, name: &str) -> Result<Option<String>, KubeError> {
    raw::kube_get(&ObjectRef { api_version: api_version.into(), kind: kind.into(), namespace: Some(namespace.into()), name: name.into() })
}

pub fn list_raw(api_version: &str, kind: &str, label_selector: Option<&str>) -> Result<Vec<String>, KubeError> {
    raw::kube_list(api_version, kind, label_selector)
}
pub fn create_raw(object: &str) -> Result<String, KubeError> {
    raw::kube_create(object)
}
pub fn apply_raw(object: &str) -> Result<String, KubeError> {
    raw::kube_apply(object)
}
pub fn delete_raw(api_version: &str, kind: &str, name: &str) -> Result<bool, KubeError> {
    raw::kube_delete(&ObjectRef { api_version: api_version.into(), kind: kind.into(), namespace: None, name: name.into() })
}

#[cfg(feature = "k8s")]
mod typed {
    use super::*;
    use k8s_openapi::Resource;
    use serde::Serialize;
    use serde::de::DeserializeOwned;

    fn decode<K: DeserializeOwned>(json: &str) -> Result<K, KubeError> {
        serde_json::from_str(json).map_err(|e| KubeError::Invalid(format!("undecodable object from the host: {e}")))
    }
    pub(super) fn encode<K: Resource + Serialize>(obj: &K) -> Result<String, KubeError> {
        let mut value = serde_json::to_value(obj).map_err(|e| KubeError::Invalid(e.to_string()))?;
        if let Some(map) = value.as_object_mut() {
            map.insert("apiVersion".into(), K::API_VERSION.into());
            map.insert("kind".into(), K::KIND.into());
        }
        Ok(value.to_string())
    }

    /// Get a typed object by name in the node's namespace.
    pub fn get<K: Resource + DeserializeOwned>(name: &str) -> Result<Option<K>, KubeError> {
        get_raw(K::API_VERSION, K::KIND, name)?.map(|j| decode(&j)).transpose()
    }
    /// List typed objects in the node's namespace.
    pub fn list<K: Resource + DeserializeOwned>(label_selector: Option<&str>) -> Result<Vec<K>, KubeError> {
        list_raw(K::API_VERSION, K::KIND, label_selector)?.iter().map(|j| decode(j)).collect()
    }
    /// Create a typed object; an existing one is `Conflict`.
    pub fn create<K: Resource + Serialize + DeserializeOwned>(obj: &K) -> Result<K, KubeError> {
        decode(&create_raw(&encode(obj)?)?)
    }
    /// Server-side apply a typed object (apiVersion/kind are filled in).
    pub fn apply<K: Resource + Serialize + DeserializeOwned>(obj: &K) -> Result<K, KubeError> {
        decode(&apply_raw(&encode(obj)?)?)
    }
    /// Create a typed object without decoding the stored object the API server answers with.
    /// Prefer this to [`create`] when the answer is not needed: a module that never
    /// deserializes a kind does not carry its deserializer (smaller, faster to compile).
    pub fn create_object<K: Resource + Serialize>(obj: &K) -> Result<(), KubeError> {
        create_raw(&encode(obj)?).map(drop)
    }
    /// Server-side apply a typed object without decoding the answer (see [`create_object`]).
    pub fn apply_object<K: Resource + Serialize>(obj: &K) -> Result<(), KubeError> {
        apply_raw(&encode(obj)?).map(drop)
    }
    /// Delete a typed object by name; `false` when it was already gone.
    pub fn delete<K: Resource>(name: &str) -> Result<bool, KubeError> {
        delete_raw(K::API_VERSION, K::KIND, name)
    }
}
#[cfg(feature = "k8s")]
pub use typed::*;
