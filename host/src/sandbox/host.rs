//! The store data of one run (`TaskCtx`) and the host side of the `log`, `kube` and `sidecar`
//! imports. Every import goes through the `CapabilityGuard` first; a refusal is answered with
//! `denied`, logged with task type, node, module digest and the refused call, counted in
//! `SandboxMetrics`, and listed in the run report.

use crate::adapters::kube::{KubeAdapter, KubeAdapterError, TypeRef};
use crate::adapters::sidecar::{SidecarAdapterError, SidecarClient, TaskRequest};
use crate::bindings::sei::task::{kube, log, sidecar};
use crate::guard::{CapabilityGuard, Denial, KubeCall, KubeVerb};
use crate::metrics::SandboxMetrics;
use crate::sandbox::limits::RunLimits;
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;

/// Annotation recording which module digest last wrote an object.
pub const MODULE_DIGEST_ANNOTATION: &str = "sei.io/module-digest";

/// One host call as the run report shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostCall {
    /// `log`, `kube` or `sidecar`.
    pub interface: &'static str,
    /// e.g. `get v1/ConfigMap sei/peers`.
    pub call: String,
    /// `ok`, `denied: …` or `error: …`.
    pub outcome: String,
    pub micros: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// Tracks the module's memory: the cap (a growth past it traps with a precise error) and the
/// peak it reached.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub cap: usize,
    pub peak: usize,
    /// Set when a growth was refused: (current, desired) bytes.
    pub refused: Option<(usize, usize)>,
}

/// The error a refused memory growth traps with.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {cap} bytes exceeded (the module asked to grow from {current} to {desired} bytes)")]
pub struct MemoryLimitExceeded {
    pub cap: usize,
    pub current: usize,
    pub desired: usize,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.refused = Some((current, desired));
            return Err(wasmtime::Error::new(MemoryLimitExceeded { cap: self.cap, current, desired }));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }

    // The cap is per linear memory: allow one, so a component cannot multiply it (the pooling
    // allocator enforces the same; this covers the on-demand fallback).
    fn memories(&self) -> usize {
        1
    }

    fn instances(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        16
    }
}

/// Caps on what a guest hands the host in one call (checked before anything is parsed).
pub const MAX_NAME_BYTES: usize = 253;
pub const MAX_OBJECT_BYTES: usize = 3 << 20;
pub const MAX_SELECTOR_BYTES: usize = 4 << 10;
pub const MAX_ID_BYTES: usize = 128;
/// Denials logged per step; the rest are counted, not logged.
pub const MAX_LOGGED_DENIALS: u32 = 5;

/// Shorten guest-supplied text for messages and records.
pub fn clip(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…[{} bytes]", &s[..cut], s.len())
}

/// Everything a run's host functions need; the `Store`'s data.
pub struct TaskCtx {
    pub limiter: MemoryLimiter,
    pub guard: CapabilityGuard,
    pub kube: Arc<dyn KubeAdapter>,
    pub sidecar: Option<Arc<dyn SidecarClient>>,
    pub metrics: Arc<SandboxMetrics>,
    pub limits: RunLimits,
    pub task_type: String,
    pub module_digest: Arc<str>,
    pub module_name: Arc<str>,
    pub deadline: Instant,
    pub calls: Vec<HostCall>,
    pub unrecorded_calls: u64,
    pub logs: Vec<LogLine>,
    pub log_bytes: usize,
    pub dropped_log_bytes: u64,
    pub denials: u32,
}

impl TaskCtx {
    fn field_manager(&self) -> String {
        format!("sei-operator/{}", self.task_type)
    }

    fn record(&mut self, interface: &'static str, call: String, outcome: String, started: Instant) {
        if self.calls.len() < self.limits.max_recorded_host_calls {
            let (call, outcome) = (clip(&call, 512), clip(&outcome, 512));
            self.calls.push(HostCall { interface, call, outcome, micros: started.elapsed().as_micros() as u64 });
        } else {
            self.unrecorded_calls += 1;
        }
    }

    fn deny(&mut self, interface: &'static str, call: String, denial: &Denial, started: Instant) {
        self.denials += 1;
        self.metrics.denied(&self.module_digest, denial.reason);
        self.record(interface, call.clone(), format!("denied: {denial}"), started);
        if self.denials > MAX_LOGGED_DENIALS {
            return;
        }
        tracing::warn!(
            task_type = %self.task_type,
            module = %self.module_name,
            module_digest = %self.module_digest,
            node = %format!("{}/{}", self.guard.scope().namespace, self.guard.scope().node_name),
            refused_call = %call,
            reason = denial.reason,
            "host call denied: {denial}{}",
            if self.denials == MAX_LOGGED_DENIALS { " (further denials of this step are counted, not logged)" } else { "" }
        );
    }

    /// The `sei.io/module-digest` annotation on an object about to be written.
    fn stamp(&self, object: &mut Value) {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(MODULE_DIGEST_ANNOTATION.into(), Value::String(self.module_digest.to_string()));
            }
        }
    }
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Trace => "trace",
        log::Level::Debug => "debug",
        log::Level::Info => "info",
        log::Level::Warn => "warn",
        log::Level::Error => "error",
    }
}

fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() > max {
        let mut cut = max;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("…[truncated]");
    }
}

impl log::Host for TaskCtx {
    fn log(&mut self, level: log::Level, mut message: String) {
        truncate_utf8(&mut message, self.limits.max_log_line_bytes);
        if self.log_bytes + message.len() > self.limits.max_log_bytes_per_step {
            self.dropped_log_bytes += message.len() as u64;
            return;
        }
        self.log_bytes += message.len();
        let level = level_name(level);
        match level {
            "error" => tracing::error!(task_type = %self.task_type, module_digest = %self.module_digest, "module: {message}"),
            "warn" => tracing::warn!(task_type = %self.task_type, module_digest = %self.module_digest, "module: {message}"),
            "info" => tracing::info!(task_type = %self.task_type, module_digest = %self.module_digest, "module: {message}"),
            _ => tracing::debug!(task_type = %self.task_type, module_digest = %self.module_digest, "module: {message}"),
        }
        self.logs.push(LogLine { level, message });
    }
}

fn kube_error(e: KubeAdapterError) -> kube::KubeError {
    match e {
        KubeAdapterError::NotFound => kube::KubeError::NotFound,
        KubeAdapterError::Conflict(m) => kube::KubeError::Conflict(m),
        KubeAdapterError::Forbidden(m) => kube::KubeError::Denied(format!("the API server refused: {m}")),
        KubeAdapterError::Invalid(m) => kube::KubeError::Invalid(m),
        KubeAdapterError::Unavailable(m) => kube::KubeError::Unavailable(m),
    }
}

fn outcome_of<T, E: std::fmt::Display>(r: &Result<T, E>) -> String {
    match r {
        Ok(_) => "ok".into(),
        Err(e) => format!("error: {e}"),
    }
}

/// Parse an object the guest wants to write; returns it with its type and name.
fn parse_object(json: &str) -> Result<(Value, TypeRef, String, Option<String>), kube::KubeError> {
    let object: Value = serde_json::from_str(json).map_err(|e| kube::KubeError::Invalid(format!("object is not JSON: {e}")))?;
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).map(str::to_string);
    let (Some(api_version), Some(kind), Some(name)) = (s("/apiVersion"), s("/kind"), s("/metadata/name")) else {
        return Err(kube::KubeError::Invalid("object needs apiVersion, kind and metadata.name".into()));
    };
    let namespace = s("/metadata/namespace");
    Ok((object, TypeRef { api_version, kind }, name, namespace))
}

impl TaskCtx {
    /// Guard a write and put the namespace and digest annotation on the object.
    fn admit_write(&mut self, verb: KubeVerb, json: &str, started: Instant) -> Result<(Value, TypeRef, String, String), kube::KubeError> {
        // Refuse before parsing: a module without the capability, or with an oversized object,
        // makes the host do no work.
        if let Err(d) = self.guard.check_capability(verb.capability(), &format!("kube {}", verb.as_str())) {
            self.deny("kube", format!("{} <object of {} bytes>", verb.as_str(), json.len()), &d, started);
            return Err(kube::KubeError::Denied(d.message));
        }
        if json.len() > MAX_OBJECT_BYTES {
            let msg = format!("object of {} bytes is over the limit of {MAX_OBJECT_BYTES} bytes", json.len());
            self.record("kube", format!("{} <oversized object>", verb.as_str()), format!("error: {msg}"), started);
            return Err(kube::KubeError::Invalid(msg));
        }
        let (mut object, ty, name, namespace) = parse_object(json)
            .inspect_err(|e| self.record("kube", format!("{} <unparsable object>", verb.as_str()), format!("error: {e}"), started))?;
        let call = KubeCall { verb, api_version: &ty.api_version, kind: &ty.kind, namespace: namespace.as_deref(), name: Some(&name) };
        let desc = format!(
            "{} {}/{} {}/{}",
            verb.as_str(),
            ty.api_version,
            ty.kind,
            namespace.as_deref().unwrap_or(&self.guard.scope().namespace),
            name
        );
        match self.guard.check_kube(&call).and_then(|ns| self.guard.check_object(&ty.kind, &object, &desc).map(|()| ns)) {
            Ok(ns) => {
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("namespace".into(), Value::String(ns.clone()));
                }
                self.stamp(&mut object);
                Ok((object, ty, name, ns))
            }
            Err(d) => {
                self.deny("kube", desc, &d, started);
                Err(kube::KubeError::Denied(d.message))
            }
        }
    }
}

fn oversized_ref(r: &kube::ObjectRef) -> Option<String> {
    let long = [("name", r.name.len(), MAX_NAME_BYTES), ("kind", r.kind.len(), 63), ("apiVersion", r.api_version.len(), 127)]
        .into_iter()
        .chain(r.namespace.as_ref().map(|n| ("namespace", n.len(), 63)))
        .find(|(_, len, max)| len > max);
    long.map(|(what, len, max)| format!("{what} of {len} bytes is over the limit of {max} bytes"))
}

impl TaskCtx {
    /// Size-check and guard a get/delete of one object. Returns its type, namespace, and
    /// (description for the report, name).
    fn admit_ref(
        &mut self,
        verb: KubeVerb,
        r: kube::ObjectRef,
        started: Instant,
    ) -> Result<(TypeRef, String, (String, String)), kube::KubeError> {
        if let Some(msg) = oversized_ref(&r) {
            self.record("kube", format!("{} <oversized reference>", verb.as_str()), format!("error: {msg}"), started);
            return Err(kube::KubeError::Invalid(msg));
        }
        let call = KubeCall { verb, api_version: &r.api_version, kind: &r.kind, namespace: r.namespace.as_deref(), name: Some(&r.name) };
        let ns_shown = r.namespace.as_deref().unwrap_or(&self.guard.scope().namespace).to_string();
        let desc = format!("{} {}/{} {ns_shown}/{}", verb.as_str(), r.api_version, r.kind, r.name);
        match self.guard.check_kube(&call) {
            Ok(ns) => Ok((TypeRef { api_version: r.api_version, kind: r.kind }, ns, (desc, r.name))),
            Err(d) => {
                self.deny("kube", desc, &d, started);
                Err(kube::KubeError::Denied(d.message))
            }
        }
    }
}

impl kube::Host for TaskCtx {
    async fn get(&mut self, r: kube::ObjectRef) -> Result<Option<String>, kube::KubeError> {
        let started = Instant::now();
        let (ty, ns, desc) = self.admit_ref(KubeVerb::Get, r, started)?;
        let res = self.kube.get(&ty, &ns, &desc.1).await;
        self.record("kube", desc.0, outcome_of(&res), started);
        res.map(|o| o.map(|v| v.to_string())).map_err(kube_error)
    }

    async fn list_objects(
        &mut self,
        api_version: String,
        kind: String,
        label_selector: Option<String>,
    ) -> Result<Vec<String>, kube::KubeError> {
        let started = Instant::now();
        let call = KubeCall { verb: KubeVerb::List, api_version: &api_version, kind: &kind, namespace: None, name: None };
        let desc = format!("list {api_version}/{kind} {} {}", self.guard.scope().namespace, label_selector.as_deref().unwrap_or(""));
        let ns = match self.guard.check_kube(&call) {
            Ok(ns) => ns,
            Err(d) => {
                self.deny("kube", desc, &d, started);
                return Err(kube::KubeError::Denied(d.message));
            }
        };
        let ty = TypeRef { api_version, kind };
        let res = self.kube.list(&ty, &ns, label_selector.as_deref()).await;
        self.record("kube", desc, outcome_of(&res), started);
        res.map(|v| v.iter().map(Value::to_string).collect()).map_err(kube_error)
    }

    async fn create(&mut self, object: String) -> Result<String, kube::KubeError> {
        let started = Instant::now();
        let (object, ty, name, ns) = self.admit_write(KubeVerb::Create, &object, started)?;
        let res = self.kube.create(&ty, &ns, object).await;
        self.record("kube", format!("create {}/{} {ns}/{name}", ty.api_version, ty.kind), outcome_of(&res), started);
        res.map(|v| v.to_string()).map_err(kube_error)
    }

    async fn apply(&mut self, object: String) -> Result<String, kube::KubeError> {
        let started = Instant::now();
        let (object, ty, name, ns) = self.admit_write(KubeVerb::Apply, &object, started)?;
        let manager = self.field_manager();
        let res = self.kube.apply(&ty, &ns, &name, object, &manager).await;
        self.record("kube", format!("apply {}/{} {ns}/{name} as {manager}", ty.api_version, ty.kind), outcome_of(&res), started);
        res.map(|v| v.to_string()).map_err(kube_error)
    }

    async fn delete(&mut self, r: kube::ObjectRef) -> Result<bool, kube::KubeError> {
        let started = Instant::now();
        let (ty, ns, desc) = self.admit_ref(KubeVerb::Delete, r, started)?;
        let res = self.kube.delete(&ty, &ns, &desc.1).await;
        self.record("kube", desc.0, outcome_of(&res), started);
        res.map_err(kube_error)
    }
}

fn sidecar_error(e: SidecarAdapterError) -> sidecar::SidecarError {
    match e {
        SidecarAdapterError::NotFound => sidecar::SidecarError::NotFound,
        SidecarAdapterError::Rejected(m) => sidecar::SidecarError::Rejected(m),
        SidecarAdapterError::Unavailable(m) => sidecar::SidecarError::Unavailable(m),
    }
}

impl TaskCtx {
    /// Guard a sidecar call and hand back the client.
    fn sidecar_for(&mut self, op: &str, desc: &str, started: Instant) -> Result<Arc<dyn SidecarClient>, sidecar::SidecarError> {
        if let Err(d) = self.guard.check_sidecar(op) {
            self.deny("sidecar", desc.to_string(), &d, started);
            return Err(sidecar::SidecarError::Denied(d.message));
        }
        match &self.sidecar {
            Some(s) => Ok(s.clone()),
            None => {
                let msg = "no sidecar is configured for this run".to_string();
                self.record("sidecar", desc.to_string(), format!("error: {msg}"), started);
                Err(sidecar::SidecarError::Unavailable(msg))
            }
        }
    }
}

impl sidecar::Host for TaskCtx {
    async fn submit_task(&mut self, id: String, task_type: String, params: Option<String>) -> Result<String, sidecar::SidecarError> {
        let started = Instant::now();
        if id.len() > MAX_ID_BYTES || task_type.len() > 63 || params.as_ref().is_some_and(|p| p.len() > MAX_OBJECT_BYTES) {
            let msg = "task id, type or params over its size limit".to_string();
            self.record("sidecar", "submit-task <oversized arguments>".into(), format!("error: {msg}"), started);
            return Err(sidecar::SidecarError::Rejected(msg));
        }
        let desc = format!("submit-task {task_type} {id}");
        let client = self.sidecar_for("submit-task", &desc, started)?;
        let params = match params.as_deref().map(serde_json::from_str::<Value>).transpose() {
            Ok(p) => p,
            Err(e) => {
                let msg = format!("params are not JSON: {e}");
                self.record("sidecar", desc, format!("error: {msg}"), started);
                return Err(sidecar::SidecarError::Rejected(msg));
            }
        };
        let res = client.submit_task(&TaskRequest { id, task_type, params }).await;
        self.record("sidecar", desc, outcome_of(&res), started);
        res.map_err(sidecar_error)
    }

    async fn get_task(&mut self, id: String) -> Result<sidecar::SidecarTask, sidecar::SidecarError> {
        let started = Instant::now();
        if id.len() > MAX_ID_BYTES {
            let msg = format!("task id of {} bytes is over the limit of {MAX_ID_BYTES} bytes", id.len());
            self.record("sidecar", "get-task <oversized id>".into(), format!("error: {msg}"), started);
            return Err(sidecar::SidecarError::Rejected(msg));
        }
        let desc = format!("get-task {id}");
        let client = self.sidecar_for("get-task", &desc, started)?;
        let res = client.get_task(&id).await;
        self.record("sidecar", desc, res.as_ref().map(|t| format!("ok: {}", t.status)).unwrap_or_else(|e| format!("error: {e}")), started);
        res.map(|t| sidecar::SidecarTask { id: t.id, task_type: t.task_type, status: t.status, error: t.error }).map_err(sidecar_error)
    }

    async fn status(&mut self) -> Result<String, sidecar::SidecarError> {
        let started = Instant::now();
        let client = self.sidecar_for("status", "status", started)?;
        let res = client.status().await;
        self.record("sidecar", "status".into(), outcome_of(&res), started);
        res.map_err(sidecar_error)
    }

    async fn healthz(&mut self) -> Result<bool, sidecar::SidecarError> {
        let started = Instant::now();
        let client = self.sidecar_for("healthz", "healthz", started)?;
        let res = client.healthz().await;
        self.record("sidecar", "healthz".into(), outcome_of(&res), started);
        res.map_err(sidecar_error)
    }

    async fn node_id(&mut self) -> Result<String, sidecar::SidecarError> {
        let started = Instant::now();
        let client = self.sidecar_for("node-id", "node-id", started)?;
        let res = client.node_id().await;
        self.record("sidecar", "node-id".into(), outcome_of(&res), started);
        res.map_err(sidecar_error)
    }
}

impl crate::bindings::sei::task::types::Host for TaskCtx {}
