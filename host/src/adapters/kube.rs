//! `KubeAdapter`: the Kubernetes verbs a task module may use, already scoped and checked by the
//! `CapabilityGuard`. `KubeClientAdapter` talks to a real API server (server-side apply with a
//! stable field manager per task type); `InMemoryKube` is a small object store with the same
//! create/apply/delete semantics for `task run`, tests and benchmarks.
//!
//! `list` pages through the API server (16 objects a page, following continue tokens), makes at
//! most the requests the caller allows (a module's remaining host-call budget), stops as soon as
//! the answer passes the caller's byte cap or `MAX_LIST_ITEMS`, and reports the requests it made
//! also when it failed (`list_follows_continue_tokens_and_refuses_oversized_answers` in
//! `tests/kube_adapter.rs`); `delete` can be made conditional on the object's uid; every call
//! times out after 10 s as `unavailable`.

use async_trait::async_trait;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Identifies a kind: `apiVersion` + `kind`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TypeRef {
    pub api_version: String,
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KubeAdapterError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("invalid: {0}")]
    Invalid(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

/// The bounds of one `list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListLimits {
    /// API requests (pages) it may make.
    pub max_requests: u32,
    /// JSON bytes of all the objects it may hold.
    pub max_bytes: usize,
}

/// What a `list` found, and how many API requests it made (also when it failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub result: Result<Vec<Value>, KubeAdapterError>,
    pub requests: u32,
}

#[async_trait]
pub trait KubeAdapter: Send + Sync {
    async fn get(&self, ty: &TypeRef, namespace: &str, name: &str) -> Result<Option<Value>, KubeAdapterError>;
    /// List within `limits`; an answer that needs more requests or bytes is `Invalid`.
    async fn list(&self, ty: &TypeRef, namespace: &str, label_selector: Option<&str>, limits: ListLimits) -> Listed;
    async fn create(&self, ty: &TypeRef, namespace: &str, object: Value) -> Result<Value, KubeAdapterError>;
    /// Server-side apply, forcing ownership, as `field_manager`.
    async fn apply(&self, ty: &TypeRef, namespace: &str, name: &str, object: Value, field_manager: &str)
    -> Result<Value, KubeAdapterError>;
    /// `Ok(false)` when the object was already gone. With `uid`, only that very object is
    /// deleted (a precondition): another object of the same name is a `Conflict`.
    async fn delete(&self, ty: &TypeRef, namespace: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError>;
}

/// Counts the bytes written to it.
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The JSON size of a value, without building the JSON.
pub fn json_size<T: serde::Serialize>(value: &T) -> usize {
    let mut count = ByteCount(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A real API server through `kube::Client`, with dynamic objects.
#[derive(Clone)]
pub struct KubeClientAdapter {
    client: ::kube::Client,
    page_size: u32,
    max_items: usize,
}

/// Objects one `list` may return: a larger answer is refused (narrow the label selector), so a
/// module cannot make the host hold a whole cluster's objects.
pub const MAX_LIST_ITEMS: usize = 1000;
/// Objects per page: one page (at most 16 objects of at most ~1.5 MiB each) is what the
/// controller holds beyond the caller's byte cap before it stops.
pub const LIST_PAGE_SIZE: u32 = 16;

impl KubeClientAdapter {
    pub fn new(client: ::kube::Client) -> Self {
        Self { client, page_size: LIST_PAGE_SIZE, max_items: MAX_LIST_ITEMS }
    }

    /// Page lists by `page_size` objects (tests use small pages).
    pub fn with_page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size.max(1);
        self
    }

    /// Refuse lists of more than `max_items` objects (default `MAX_LIST_ITEMS`).
    pub fn with_max_items(mut self, max_items: usize) -> Self {
        self.max_items = max_items;
        self
    }

    fn api(&self, ty: &TypeRef, namespace: &str) -> Result<::kube::Api<::kube::api::DynamicObject>, KubeAdapterError> {
        let (group, version) = match ty.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", ty.api_version.as_str()),
        };
        let gvk = ::kube::api::GroupVersionKind::gvk(group, version, &ty.kind);
        let ar = ::kube::api::ApiResource::from_gvk(&gvk);
        Ok(::kube::Api::namespaced_with(self.client.clone(), namespace, &ar))
    }
}

impl KubeClientAdapter {
    /// The pages of a `list`, counting each request in `requests` as it is made.
    async fn list_pages(
        &self,
        ty: &TypeRef,
        namespace: &str,
        label_selector: Option<&str>,
        limits: ListLimits,
        requests: &mut u32,
    ) -> Result<Vec<Value>, KubeAdapterError> {
        let api = self.api(ty, namespace)?;
        let mut lp = ::kube::api::ListParams::default();
        if let Some(sel) = label_selector {
            lp = lp.labels(sel);
        }
        lp = lp.limit(self.page_size);
        let mut items = Vec::new();
        let mut bytes = 0usize;
        loop {
            if *requests >= limits.max_requests {
                return Err(KubeAdapterError::Invalid(format!(
                    "listing {} needs more than {} requests (the step's remaining host-call budget); narrow the label selector",
                    ty.kind, limits.max_requests
                )));
            }
            *requests += 1;
            let page = timed(api.list(&lp)).await?;
            for item in page.items {
                bytes += json_size(&item);
                if bytes > limits.max_bytes || items.len() >= self.max_items {
                    return Err(KubeAdapterError::Invalid(format!(
                        "the {} objects matched are over {} objects or {} bytes; narrow the label selector",
                        ty.kind, self.max_items, limits.max_bytes
                    )));
                }
                items.push(to_value(item)?);
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => return Ok(items),
            }
        }
    }
}

fn map_kube_error(e: ::kube::Error) -> KubeAdapterError {
    match e {
        ::kube::Error::Api(status) => {
            let msg = status.message.clone();
            match status.code {
                404 => KubeAdapterError::NotFound,
                409 => KubeAdapterError::Conflict(msg),
                401 | 403 => KubeAdapterError::Forbidden(msg),
                400 | 422 => KubeAdapterError::Invalid(msg),
                _ => KubeAdapterError::Unavailable(format!("{} {}", status.code, msg)),
            }
        }
        other => KubeAdapterError::Unavailable(other.to_string()),
    }
}

/// Longest a single API call of a task may take; past it the call is `Unavailable`, which the
/// task reports as a dependency to wait for rather than a failure.
pub const KUBE_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

async fn timed<T>(fut: impl std::future::Future<Output = Result<T, ::kube::Error>>) -> Result<T, KubeAdapterError> {
    match tokio::time::timeout(KUBE_CALL_TIMEOUT, fut).await {
        Ok(r) => r.map_err(map_kube_error),
        Err(_) => Err(KubeAdapterError::Unavailable(format!("the API server did not answer within {KUBE_CALL_TIMEOUT:?}"))),
    }
}

fn to_value(obj: ::kube::api::DynamicObject) -> Result<Value, KubeAdapterError> {
    serde_json::to_value(obj).map_err(|e| KubeAdapterError::Invalid(e.to_string()))
}

fn from_value(obj: Value) -> Result<::kube::api::DynamicObject, KubeAdapterError> {
    serde_json::from_value(obj).map_err(|e| KubeAdapterError::Invalid(format!("not a Kubernetes object: {e}")))
}

#[async_trait]
impl KubeAdapter for KubeClientAdapter {
    async fn get(&self, ty: &TypeRef, namespace: &str, name: &str) -> Result<Option<Value>, KubeAdapterError> {
        let api = self.api(ty, namespace)?;
        match timed(api.get_opt(name)).await? {
            Some(o) => Ok(Some(to_value(o)?)),
            None => Ok(None),
        }
    }

    async fn list(&self, ty: &TypeRef, namespace: &str, label_selector: Option<&str>, limits: ListLimits) -> Listed {
        let mut requests = 0u32;
        let result = self.list_pages(ty, namespace, label_selector, limits, &mut requests).await;
        Listed { result, requests }
    }

    async fn create(&self, ty: &TypeRef, namespace: &str, object: Value) -> Result<Value, KubeAdapterError> {
        let api = self.api(ty, namespace)?;
        let obj = from_value(object)?;
        to_value(timed(api.create(&::kube::api::PostParams::default(), &obj)).await?)
    }

    async fn apply(
        &self,
        ty: &TypeRef,
        namespace: &str,
        name: &str,
        object: Value,
        field_manager: &str,
    ) -> Result<Value, KubeAdapterError> {
        let api = self.api(ty, namespace)?;
        let pp = ::kube::api::PatchParams::apply(field_manager).force();
        to_value(timed(api.patch(name, &pp, &::kube::api::Patch::Apply(&object))).await?)
    }

    async fn delete(&self, ty: &TypeRef, namespace: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError> {
        let api = self.api(ty, namespace)?;
        let dp = ::kube::api::DeleteParams {
            propagation_policy: Some(::kube::api::PropagationPolicy::Background),
            preconditions: uid.map(|u| ::kube::api::Preconditions { uid: Some(u.to_string()), resource_version: None }),
            ..Default::default()
        };
        match timed(api.delete(name, &dp)).await {
            Ok(_) => Ok(true),
            Err(KubeAdapterError::NotFound) => Ok(false),
            Err(other) => Err(other),
        }
    }
}

/// An in-memory object store: create fails on an existing name, apply merges the given fields
/// over the stored object (a simplified server-side apply), every write bumps
/// `metadata.resourceVersion` and `metadata.generation`.
#[derive(Debug, Default)]
pub struct InMemoryKube {
    objects: Mutex<BTreeMap<(TypeRef, String, String), Value>>,
    next_version: Mutex<u64>,
}

impl InMemoryKube {
    pub fn new() -> Self {
        Self::default()
    }

    /// Put an object as if it already existed (test and CLI fixtures).
    pub fn insert(&self, object: Value) -> Result<(), KubeAdapterError> {
        let (ty, ns, name) = Self::key_of(&object)?;
        self.lock().insert((ty, ns, name), object);
        Ok(())
    }

    /// Every stored object, in key order.
    pub fn objects(&self) -> Vec<Value> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(TypeRef, String, String), Value>> {
        self.objects.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn key_of(object: &Value) -> Result<(TypeRef, String, String), KubeAdapterError> {
        let s = |p: &str| object.pointer(p).and_then(Value::as_str).map(str::to_string);
        match (s("/apiVersion"), s("/kind"), s("/metadata/namespace"), s("/metadata/name")) {
            (Some(api_version), Some(kind), Some(ns), Some(name)) => Ok((TypeRef { api_version, kind }, ns, name)),
            _ => Err(KubeAdapterError::Invalid("object needs apiVersion, kind, metadata.namespace and metadata.name".into())),
        }
    }

    fn stamp(&self, object: &mut Value) {
        let mut v = self.next_version.lock().unwrap_or_else(|p| p.into_inner());
        *v += 1;
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("resourceVersion".into(), Value::String(v.to_string()));
            let generation = meta.get("generation").and_then(Value::as_i64).unwrap_or(0) + 1;
            meta.insert("generation".into(), Value::from(generation));
        }
    }
}

fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    let Some(selector) = selector else { return true };
    selector.split(',').filter(|t| !t.is_empty()).all(|term| {
        let (k, v) = term.split_once('=').unwrap_or((term, ""));
        let label = object.pointer("/metadata/labels").and_then(|l| l.get(k.trim())).and_then(Value::as_str);
        if v.is_empty() { label.is_some() } else { label == Some(v.trim()) }
    })
}

#[async_trait]
impl KubeAdapter for InMemoryKube {
    async fn get(&self, ty: &TypeRef, namespace: &str, name: &str) -> Result<Option<Value>, KubeAdapterError> {
        Ok(self.lock().get(&(ty.clone(), namespace.to_string(), name.to_string())).cloned())
    }

    async fn list(&self, ty: &TypeRef, namespace: &str, label_selector: Option<&str>, limits: ListLimits) -> Listed {
        let items: Vec<Value> = self
            .lock()
            .iter()
            .filter(|((t, ns, _), o)| t == ty && ns == namespace && matches_selector(o, label_selector))
            .map(|(_, o)| o.clone())
            .collect();
        let result = if items.iter().map(json_size).sum::<usize>() > limits.max_bytes {
            Err(KubeAdapterError::Invalid(format!(
                "the {} objects matched are over {} bytes; narrow the label selector",
                ty.kind, limits.max_bytes
            )))
        } else {
            Ok(items)
        };
        Listed { result, requests: 1 }
    }

    async fn create(&self, ty: &TypeRef, namespace: &str, mut object: Value) -> Result<Value, KubeAdapterError> {
        let name = object
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .ok_or_else(|| KubeAdapterError::Invalid("metadata.name is required".into()))?
            .to_string();
        let key = (ty.clone(), namespace.to_string(), name.clone());
        if self.lock().contains_key(&key) {
            return Err(KubeAdapterError::Conflict(format!("{} {namespace}/{name} already exists", ty.kind)));
        }
        self.stamp(&mut object);
        self.lock().insert(key, object.clone());
        Ok(object)
    }

    async fn apply(
        &self,
        ty: &TypeRef,
        namespace: &str,
        name: &str,
        object: Value,
        _field_manager: &str,
    ) -> Result<Value, KubeAdapterError> {
        let key = (ty.clone(), namespace.to_string(), name.to_string());
        let mut stored = self.lock().get(&key).cloned().unwrap_or_else(|| Value::Object(Default::default()));
        merge(&mut stored, &object);
        self.stamp(&mut stored);
        self.lock().insert(key, stored.clone());
        Ok(stored)
    }

    async fn delete(&self, ty: &TypeRef, namespace: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError> {
        let key = (ty.clone(), namespace.to_string(), name.to_string());
        let mut objects = self.lock();
        if let (Some(want), Some(object)) = (uid, objects.get(&key))
            && object.pointer("/metadata/uid").and_then(Value::as_str) != Some(want)
        {
            return Err(KubeAdapterError::Conflict(format!("{} {namespace}/{name} is not the object with uid {want}", ty.kind)));
        }
        Ok(objects.remove(&key).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cm() -> TypeRef {
        TypeRef { api_version: "v1".into(), kind: "ConfigMap".into() }
    }

    #[tokio::test]
    async fn in_memory_create_conflicts_on_existing_name() {
        let k = InMemoryKube::new();
        let obj = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"}});
        k.create(&cm(), "ns", obj.clone()).await.unwrap();
        assert!(matches!(k.create(&cm(), "ns", obj).await, Err(KubeAdapterError::Conflict(_))));
    }

    #[tokio::test]
    async fn in_memory_apply_merges_and_bumps_generation() {
        let k = InMemoryKube::new();
        let a = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"},"data":{"x":"1"}});
        let first = k.apply(&cm(), "ns", "a", a, "m").await.unwrap();
        let b = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"},"data":{"y":"2"}});
        let second = k.apply(&cm(), "ns", "a", b, "m").await.unwrap();
        assert_eq!(second["data"], json!({"x":"1","y":"2"}));
        assert_eq!(first["metadata"]["generation"], json!(1));
        assert_eq!(second["metadata"]["generation"], json!(2));
    }

    #[tokio::test]
    async fn in_memory_list_filters_by_label_and_namespace() {
        let k = InMemoryKube::new();
        for (name, ns, role) in [("a", "ns", "full"), ("b", "ns", "archive"), ("c", "other", "full")] {
            k.insert(json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":name,"namespace":ns,"labels":{"role":role}}})).unwrap();
        }
        let limits = ListLimits { max_requests: 1, max_bytes: 1 << 20 };
        let got = k.list(&cm(), "ns", Some("role=full"), limits).await.result.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0]["metadata"]["name"], "a");
        assert_eq!(k.list(&cm(), "ns", None, limits).await.result.unwrap().len(), 2);
        let tight = ListLimits { max_requests: 1, max_bytes: 10 };
        assert!(matches!(k.list(&cm(), "ns", None, tight).await.result, Err(KubeAdapterError::Invalid(_))));
    }

    #[tokio::test]
    async fn in_memory_delete_reports_whether_it_existed() {
        let k = InMemoryKube::new();
        k.insert(json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"}})).unwrap();
        assert!(k.delete(&cm(), "ns", "a", None).await.unwrap());
        assert!(!k.delete(&cm(), "ns", "a", None).await.unwrap());
        k.insert(json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"ns","uid":"u-b"}})).unwrap();
        assert!(
            matches!(k.delete(&cm(), "ns", "b", Some("u-other")).await, Err(KubeAdapterError::Conflict(_))),
            "a precondition on the uid"
        );
        assert!(k.delete(&cm(), "ns", "b", Some("u-b")).await.unwrap());
    }
}
