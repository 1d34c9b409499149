//! `KubeAdapter`: the Kubernetes verbs a task module may use, already scoped and checked by the
//! `CapabilityGuard`. `KubeClientAdapter` talks to a real API server (server-side apply with a
//! stable field manager per task type); `InMemoryKube` is a small object store with the same
//! create/apply/delete semantics for `task run`, tests and benchmarks.
//!
//! Answers are handed back as the API server's JSON text, read with a byte limit and never parsed
//! into trees (a parsed object costs many times its JSON: a module could make the host allocate
//! hundreds of MiB with objects it wrote itself): an object answer (`get`, `create`, `apply`) is
//! at most `MAX_OBJECT_ANSWER` bytes; `list` pages through the API server (16 objects a page,
//! following continue tokens), reads each page only up to what is left of the caller's byte cap,
//! makes at most the requests the caller allows (a module's remaining host-call budget and
//! request rate), refuses more than `MAX_LIST_ITEMS` objects, and reports the requests it made
//! also when it failed (`list_follows_continue_tokens_and_refuses_oversized_answers` and
//! `answers_are_read_within_their_byte_limit` in `tests/kube_adapter.rs`); `delete` can be made
//! conditional on the object's uid; every call times out after 10 s as `unavailable`.

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
    /// A 403 from an admission plugin (quota, pod security, a terminating namespace, a webhook):
    /// about the object, so it stays.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The API server refused the controller itself: 401, a 403 from the authorizer (`User "…"
    /// cannot …`), or one from an admission plugin not yet ready. A restarted kube-apiserver
    /// answers so until its caches have synced; an RBAC gap answers so until it is granted.
    #[error("refused: {0}")]
    Refused(String),
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

/// What a `list` found (each object as JSON text), and how many API requests it made (also when
/// it failed).
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub result: Result<Vec<String>, KubeAdapterError>,
    pub requests: u32,
}

/// The largest answer read for one object (`get`, `create`, `apply`): the API server keeps
/// objects under ~1.5 MiB (etcd's request limit); their JSON, managed fields included, fits.
pub const MAX_OBJECT_ANSWER: usize = 4 << 20;
/// Room for a list page's envelope (`apiVersion`, `kind`, `metadata`, the `items` array) beyond
/// the objects' bytes.
const PAGE_ENVELOPE: usize = 64 << 10;

/// Every answer is the API server's JSON text of the object (or objects).
#[async_trait]
pub trait KubeAdapter: Send + Sync {
    async fn get(&self, ty: &TypeRef, namespace: &str, name: &str) -> Result<Option<String>, KubeAdapterError>;
    /// List within `limits`; an answer that needs more requests or bytes is `Invalid`.
    async fn list(&self, ty: &TypeRef, namespace: &str, label_selector: Option<&str>, limits: ListLimits) -> Listed;
    async fn create(&self, ty: &TypeRef, namespace: &str, object: Value, field_manager: &str) -> Result<String, KubeAdapterError>;
    /// Server-side apply, forcing ownership, as `field_manager`.
    async fn apply(
        &self,
        ty: &TypeRef,
        namespace: &str,
        name: &str,
        object: Value,
        field_manager: &str,
    ) -> Result<String, KubeAdapterError>;
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

    /// Requests for objects of `ty` in `namespace`.
    fn request(&self, ty: &TypeRef, namespace: &str) -> ::kube::core::Request {
        let (group, version) = match ty.api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", ty.api_version.as_str()),
        };
        let gvk = ::kube::api::GroupVersionKind::gvk(group, version, &ty.kind);
        let ar = ::kube::api::ApiResource::from_gvk(&gvk);
        ::kube::core::Request::new(<::kube::api::DynamicObject as ::kube::Resource>::url_path(&ar, Some(namespace)))
    }

    /// Send `request` and read at most `max` bytes of its answer: the JSON text of a success; an
    /// error from the status of anything else. Past `max` the answer is not read further.
    async fn send(
        &self,
        request: Result<http::Request<Vec<u8>>, ::kube::core::request::Error>,
        max: usize,
    ) -> Result<Vec<u8>, KubeAdapterError> {
        use http_body_util::BodyExt;
        let request = request.map_err(|e| KubeAdapterError::Invalid(format!("building the request: {e}")))?;
        let exchange = async {
            let response = self.client.send(request.map(::kube::client::Body::from)).await.map_err(map_kube_error)?;
            let status = response.status();
            let length = response.headers().get(http::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
            let mut body = response.into_body();
            // One allocation when the length is announced (a growing buffer would hold up to
            // three times the answer while it doubles).
            let mut read = Vec::with_capacity(length.unwrap_or(0).min(max));
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| KubeAdapterError::Unavailable(format!("reading the answer: {e}")))?;
                if let Ok(data) = frame.into_data() {
                    if read.len() + data.len() > max {
                        return Err(KubeAdapterError::Invalid(format!("the API server's answer is over {max} bytes")));
                    }
                    read.extend_from_slice(&data);
                }
            }
            if status.is_success() {
                return Ok(read);
            }
            let message = serde_json::from_slice::<::kube::core::Status>(&read)
                .map(|s| s.message)
                .unwrap_or_else(|_| String::from_utf8_lossy(&read[..read.len().min(1024)]).into_owned());
            Err(error_of(status.as_u16(), message))
        };
        match tokio::time::timeout(KUBE_CALL_TIMEOUT, exchange).await {
            Ok(r) => r,
            Err(_) => Err(KubeAdapterError::Unavailable(format!("the API server did not answer within {KUBE_CALL_TIMEOUT:?}"))),
        }
    }
}

/// One page of a list: the objects' JSON text as it came, and the continue token.
#[derive(serde::Deserialize)]
struct Page {
    #[serde(default)]
    metadata: PageMeta,
    #[serde(default)]
    items: Vec<Box<serde_json::value::RawValue>>,
}

#[derive(serde::Deserialize, Default)]
struct PageMeta {
    #[serde(rename = "continue", default)]
    continue_: Option<String>,
}

fn text(bytes: Vec<u8>) -> Result<String, KubeAdapterError> {
    String::from_utf8(bytes).map_err(|_| KubeAdapterError::Invalid("the API server's answer is not UTF-8".into()))
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
    ) -> Result<Vec<String>, KubeAdapterError> {
        let mut lp = ::kube::api::ListParams::default();
        if let Some(sel) = label_selector {
            lp = lp.labels(sel);
        }
        lp = lp.limit(self.page_size);
        let mut items = Vec::new();
        let mut bytes = 0usize;
        let over = |ty: &TypeRef, max_items: usize| {
            KubeAdapterError::Invalid(format!(
                "the {} objects matched are over {max_items} objects or {} bytes; narrow the label selector",
                ty.kind, limits.max_bytes
            ))
        };
        loop {
            if *requests >= limits.max_requests {
                return Err(KubeAdapterError::Invalid(format!(
                    "listing {} needs more than {} requests (the step's remaining host-call budget); narrow the label selector",
                    ty.kind, limits.max_requests
                )));
            }
            *requests += 1;
            // Read the page only as far as what is left of the byte cap allows.
            let left = limits.max_bytes.saturating_sub(bytes).saturating_add(PAGE_ENVELOPE);
            let body = match self.send(self.request(ty, namespace).list(&lp), left).await {
                Err(KubeAdapterError::Invalid(m)) if m.contains("answer is over") => return Err(over(ty, self.max_items)),
                other => other?,
            };
            let page: Page = serde_json::from_slice(&body).map_err(|e| KubeAdapterError::Invalid(format!("not a list: {e}")))?;
            for item in page.items {
                bytes += item.get().len();
                if bytes > limits.max_bytes || items.len() >= self.max_items {
                    return Err(over(ty, self.max_items));
                }
                items.push(item.get().to_string());
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => lp = lp.continue_token(&token),
                None => return Ok(items),
            }
        }
    }
}

/// The error of an answer with HTTP status `code` (`error_of_each_answer`).
fn error_of(code: u16, message: String) -> KubeAdapterError {
    match code {
        404 => KubeAdapterError::NotFound,
        409 => KubeAdapterError::Conflict(message),
        401 => KubeAdapterError::Refused(message),
        403 if refuses_the_caller(&message) => KubeAdapterError::Refused(message),
        403 => KubeAdapterError::Forbidden(message),
        400 | 422 => KubeAdapterError::Invalid(message),
        _ => KubeAdapterError::Unavailable(format!("{code} {message}")),
    }
}

/// Whether a 403's message is the authorizer's (`<resource> "<name>" is forbidden: User "<user>"
/// cannot <verb> resource …`, the format of kube-apiserver's forbidden responses) or an admission
/// plugin's "not yet ready to handle request" (a restarted API server warming up), rather than an
/// admission plugin's refusal of the object. Matched from the start of the message: a webhook or
/// policy that echoes object text (`admission webhook "x" denied the request: <text>`) cannot pass
/// for one.
fn refuses_the_caller(message: &str) -> bool {
    let Some((subject, reason)) = message.split_once(" is forbidden: ") else { return false };
    let plain = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '/' | ':'));
    let subject_is_a_resource = match subject.split_once(' ') {
        None => plain(subject),
        Some((resource, name)) => {
            plain(resource) && name.len() >= 2 && name.starts_with('"') && name.ends_with('"') && plain(&name[1..name.len() - 1])
        }
    };
    subject_is_a_resource
        && ((reason.starts_with("User \"") && reason.contains("\" cannot ")) || reason == "not yet ready to handle request")
}

fn map_kube_error(e: ::kube::Error) -> KubeAdapterError {
    match e {
        ::kube::Error::Api(status) => error_of(status.code, status.message.clone()),
        other => KubeAdapterError::Unavailable(other.to_string()),
    }
}

/// Longest a single API call of a task may take; past it the call is `Unavailable`, which the
/// task reports as a dependency to wait for rather than a failure.
pub const KUBE_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

#[async_trait]
impl KubeAdapter for KubeClientAdapter {
    async fn get(&self, ty: &TypeRef, namespace: &str, name: &str) -> Result<Option<String>, KubeAdapterError> {
        match self.send(self.request(ty, namespace).get(name, &Default::default()), MAX_OBJECT_ANSWER).await {
            Ok(body) => text(body).map(Some),
            Err(KubeAdapterError::NotFound) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn list(&self, ty: &TypeRef, namespace: &str, label_selector: Option<&str>, limits: ListLimits) -> Listed {
        let mut requests = 0u32;
        let result = self.list_pages(ty, namespace, label_selector, limits, &mut requests).await;
        Listed { result, requests }
    }

    async fn create(&self, ty: &TypeRef, namespace: &str, object: Value, field_manager: &str) -> Result<String, KubeAdapterError> {
        let pp = ::kube::api::PostParams { field_manager: Some(field_manager.to_string()), ..Default::default() };
        let body = serde_json::to_vec(&object).map_err(|e| KubeAdapterError::Invalid(e.to_string()))?;
        let answer = self.send(self.request(ty, namespace).create(&pp, body), MAX_OBJECT_ANSWER).await;
        crate::failpoint::hit("kube-write-sent");
        text(answer?)
    }

    async fn apply(
        &self,
        ty: &TypeRef,
        namespace: &str,
        name: &str,
        object: Value,
        field_manager: &str,
    ) -> Result<String, KubeAdapterError> {
        let pp = ::kube::api::PatchParams::apply(field_manager).force();
        let answer = self.send(self.request(ty, namespace).patch(name, &pp, &::kube::api::Patch::Apply(&object)), MAX_OBJECT_ANSWER).await;
        crate::failpoint::hit("kube-write-sent");
        text(answer?)
    }

    async fn delete(&self, ty: &TypeRef, namespace: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError> {
        let dp = ::kube::api::DeleteParams {
            propagation_policy: Some(::kube::api::PropagationPolicy::Background),
            preconditions: uid.map(|u| ::kube::api::Preconditions { uid: Some(u.to_string()), resource_version: None }),
            ..Default::default()
        };
        let answer = self.send(self.request(ty, namespace).delete(name, &dp), MAX_OBJECT_ANSWER).await;
        crate::failpoint::hit("kube-delete-sent");
        match answer {
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
    async fn get(&self, ty: &TypeRef, namespace: &str, name: &str) -> Result<Option<String>, KubeAdapterError> {
        Ok(self.lock().get(&(ty.clone(), namespace.to_string(), name.to_string())).map(Value::to_string))
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
            Ok(items.iter().map(Value::to_string).collect())
        };
        Listed { result, requests: 1 }
    }

    async fn create(&self, ty: &TypeRef, namespace: &str, mut object: Value, _field_manager: &str) -> Result<String, KubeAdapterError> {
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
        let written = object.to_string();
        self.lock().insert(key, object);
        Ok(written)
    }

    async fn apply(
        &self,
        ty: &TypeRef,
        namespace: &str,
        name: &str,
        object: Value,
        _field_manager: &str,
    ) -> Result<String, KubeAdapterError> {
        let key = (ty.clone(), namespace.to_string(), name.to_string());
        let mut stored = self.lock().get(&key).cloned().unwrap_or_else(|| Value::Object(Default::default()));
        merge(&mut stored, &object);
        self.stamp(&mut stored);
        let written = stored.to_string();
        self.lock().insert(key, stored);
        Ok(written)
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

/// An `Api` in `namespace`, or across every namespace (`None`): how the controllers watch.
pub fn api_in<K>(client: &::kube::Client, namespace: Option<&str>) -> ::kube::Api<K>
where
    K: ::kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => ::kube::Api::namespaced(client.clone(), ns),
        None => ::kube::Api::all(client.clone()),
    }
}

/// The metric label of a Kubernetes client error (both controllers' reconcile errors).
pub fn kube_error_label(e: &::kube::Error) -> &'static str {
    match e {
        ::kube::Error::Api(s) if s.code == 409 => "conflict",
        ::kube::Error::Api(s) if s.code == 404 => "not-found",
        ::kube::Error::Api(s) if s.code == 401 || s.code == 403 => "forbidden",
        ::kube::Error::Api(_) => "api",
        _ => "transport",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn error_of_each_answer() {
        let refused = |m: &str| KubeAdapterError::Refused(m.into());
        let forbidden = |m: &str| KubeAdapterError::Forbidden(m.into());
        let rbac = r#"configmaps "peers" is forbidden: User "system:serviceaccount:sei-system:sei-operator" cannot get resource "configmaps" in API group "" in the namespace "sei""#;
        let rbac_list = r#"persistentvolumeclaims is forbidden: User "system:serviceaccount:sei-system:x" cannot list resource "persistentvolumeclaims" in API group "" at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "x" not found"#;
        let warming = r#"persistentvolumeclaims "data-rpc" is forbidden: not yet ready to handle request"#;
        let quota = r#"persistentvolumeclaims "data-rpc" is forbidden: exceeded quota: storage, requested: requests.storage=2000Gi, used: requests.storage=0, limited: requests.storage=100Gi"#;
        let terminating = r#"persistentvolumeclaims "data-rpc" is forbidden: unable to create new content in namespace sei because it is being terminated"#;
        let pod_security = r#"pods "x" is forbidden: violates PodSecurity "restricted:latest": privileged"#;
        // Policies that echo object text a module chose: still about the object.
        let webhook = r#"admission webhook "check.example" denied the request: bad note: x is forbidden: User "u" cannot get it"#;
        let webhook_ready = r#"admission webhook "check.example" denied the request: bad note: not yet ready to handle request"#;
        let policy = r#"configmaps "c" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: not yet ready to handle request"#;
        let cases: [(u16, &str, KubeAdapterError); 14] = [
            (404, "gone", KubeAdapterError::NotFound),
            (409, "exists", KubeAdapterError::Conflict("exists".into())),
            (401, "Unauthorized", refused("Unauthorized")),
            (403, rbac, refused(rbac)),
            (403, rbac_list, refused(rbac_list)),
            (403, warming, refused(warming)),
            (403, quota, forbidden(quota)),
            (403, terminating, forbidden(terminating)),
            (403, pod_security, forbidden(pod_security)),
            (403, webhook, forbidden(webhook)),
            (403, webhook_ready, forbidden(webhook_ready)),
            (403, policy, forbidden(policy)),
            (422, "bad", KubeAdapterError::Invalid("bad".into())),
            (503, "down", KubeAdapterError::Unavailable("503 down".into())),
        ];
        for (code, message, want) in cases {
            assert_eq!(error_of(code, message.into()), want, "{code} {message}");
        }
    }

    fn cm() -> TypeRef {
        TypeRef { api_version: "v1".into(), kind: "ConfigMap".into() }
    }

    #[tokio::test]
    async fn in_memory_create_conflicts_on_existing_name() {
        let k = InMemoryKube::new();
        let obj = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"}});
        k.create(&cm(), "ns", obj.clone(), "m").await.unwrap();
        assert!(matches!(k.create(&cm(), "ns", obj, "m").await, Err(KubeAdapterError::Conflict(_))));
    }

    #[tokio::test]
    async fn in_memory_apply_merges_and_bumps_generation() {
        let k = InMemoryKube::new();
        let a = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"},"data":{"x":"1"}});
        let first: Value = serde_json::from_str(&k.apply(&cm(), "ns", "a", a, "m").await.unwrap()).unwrap();
        let b = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","namespace":"ns"},"data":{"y":"2"}});
        let second: Value = serde_json::from_str(&k.apply(&cm(), "ns", "a", b, "m").await.unwrap()).unwrap();
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
        assert_eq!(serde_json::from_str::<Value>(&got[0]).unwrap()["metadata"]["name"], "a");
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
