//! The store data of one run (`TaskCtx`) and the host side of the `log`, `kube`, `sidecar` and
//! `member-sidecars` imports, registered on the linker by [`add_to_linker`].
//!
//! Every import:
//! - lifts its arguments through the bounded types of `sandbox::abi`, so an argument over its
//!   cap is refused before it is copied out of the guest (`abi` module docs);
//! - is charged against the step's budget before anything else: `kube` and `sidecar` calls
//!   against `max_host_calls` (a `list` charges one unit per API request it makes; `apply` and
//!   `delete` charge two, the read of the stored object for the owner check and the write, which
//!   lands only on the object checked: a create when it was absent, its uid when present), `log` calls
//!   against `max_log_calls`; the call past a budget traps the step with [`BudgetExceeded`]
//!   (`host_call_flood_is_stopped_by_the_budget`, `log_storm_is_stopped_by_the_budget` in
//!   `tests/sandbox_guests.rs`);
//! - goes through the `CapabilityGuard`; a refusal is answered with `denied`, logged
//!   (rate-limited) with task type, node, module digest and the refused call, counted in
//!   `SandboxMetrics`, and listed in the run report;
//! - keeps what the report stores bounded: at most `max_recorded_host_calls` calls and
//!   `max_log_lines` lines of at most `max_log_line_bytes` (and `max_log_bytes_per_step` in
//!   all); the rest is counted, not stored;
//! - for a group task, answers only with the group's own SeiNodes: a `get` of a member the group
//!   does not own alone is denied, a `list` is narrowed to the group's label and to the objects it
//!   owns alone (`a_group_task_reads_and_writes_only_its_own_seinodes`);
//! - escapes guest text (`crate::text`) before it reaches the controller's log, the report, a
//!   status or an event (`guest_text_is_escaped_everywhere`).

use super::abi::{
    BoundedStr, GuestObjectRef, MAX_LOG_LINE_LIFT, MAX_OBJECT_LIFT, MAX_SELECTOR_LIFT, MAX_SIDECAR_ID_LIFT, MAX_SIDECAR_PARAMS_LIFT,
    ObjectRefArg,
};
use super::counters::SandboxMetrics;
use super::limits::{Budget, RequestBucket, RunLimits};
use crate::adapters::kube::{KubeAdapter, KubeAdapterError, ListLimits, TypeRef};
use crate::adapters::sidecar::{MemberSidecars, SidecarAdapterError, SidecarClient, TaskRequest};
use crate::policy::guard::{CapabilityGuard, Denial, KubeCall, KubeVerb, is_sidecar_task_id};
use crate::policy::scope::GROUP_LABEL;
use crate::text;
use crate::wit::sei::task::{kube, log, member_sidecars, sidecar};
use serde_json::Value;
use std::sync::Arc;
use std::time::Instant;
use wasmtime::StoreContextMut;
use wasmtime::component::Linker;

/// Annotation recording which module digest last wrote an object.
pub const MODULE_DIGEST_ANNOTATION: &str = "sei.io/module-digest";

/// One host call as the run report shows it (escaped, clipped).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostCall {
    /// `kube` or `sidecar`.
    pub interface: &'static str,
    /// e.g. `get v1/ConfigMap sei/peers`.
    pub call: String,
    /// `ok`, `denied: …` or `error: …`.
    pub outcome: String,
    pub micros: u64,
}

/// One kept log line (escaped, clipped).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// The trap raised by the call past a budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the step made more than {limit} {} calls, its per-step budget", match budget { Budget::HostCalls => "kube and sidecar", Budget::LogCalls => "log" })]
pub struct BudgetExceeded {
    pub budget: Budget,
    pub limit: u32,
}

/// Tracks the module's memory: the cap (a growth past it traps with a precise error) and the
/// peak it reached.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub cap: usize,
    pub peak: usize,
    /// Core instances one component may have: the pooling allocator's per-component maximum,
    /// or [`ON_DEMAND_MAX_CORE_INSTANCES`] without the pool (set by `Sandbox::new_store`).
    pub max_instances: usize,
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
        self.max_instances
    }

    // As the pooling allocator's `max_tables_per_component`.
    fn tables(&self) -> usize {
        4
    }
}

/// Core instances of one component without the pooling allocator. The on-demand fallback does
/// not bound an instance's size (its globals, tables and context) as the pool's 1 MiB per
/// instance does, so it keeps the count low: a component of more instances (componentize-py's
/// 38) runs only on the pool (found by the hostile review of the author kit: 48 instances of a
/// million globals each took 780 MB of host memory on demand).
pub const ON_DEMAND_MAX_CORE_INSTANCES: usize = 16;

/// Denials logged per step; the rest are counted, not logged.
pub const MAX_LOGGED_DENIALS: u32 = 5;
/// A recorded call or outcome is clipped to this many bytes.
pub const MAX_RECORD_BYTES: usize = 512;
/// Largest JSON answer of one `list` (all items); a larger one is refused.
pub const MAX_LIST_BYTES: usize = 8 << 20;

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
    /// Kubernetes and sidecar calls made (API requests, denied calls included).
    pub host_calls: u32,
    pub log_calls: u32,
    pub logs: Vec<LogLine>,
    pub log_bytes: usize,
    pub dropped_log_bytes: u64,
    pub dropped_log_lines: u64,
    /// The last `panic: …` line the guest logged, kept even when the line itself was dropped.
    pub panic_message: Option<String>,
    pub denials: u32,
    /// The module's request bucket (`None`: not rate-limited).
    pub requests: Option<Arc<RequestBucket>>,
    /// A group task's member sidecars.
    pub members: Option<Arc<dyn MemberSidecars>>,
}

impl TaskCtx {
    /// A context for one run of `task_type` by the module `module_digest`.
    pub fn new(
        limits: RunLimits,
        guard: CapabilityGuard,
        adapters: (Arc<dyn KubeAdapter>, Option<Arc<dyn SidecarClient>>),
        metrics: Arc<SandboxMetrics>,
        task_type: String,
        module: (Arc<str>, Arc<str>),
    ) -> Self {
        Self {
            limiter: MemoryLimiter { cap: limits.memory_bytes, peak: 0, max_instances: ON_DEMAND_MAX_CORE_INSTANCES, refused: None },
            guard,
            kube: adapters.0,
            sidecar: adapters.1,
            metrics,
            task_type,
            module_digest: module.0,
            module_name: module.1,
            deadline: Instant::now() + limits.deadline,
            calls: Vec::new(),
            unrecorded_calls: 0,
            host_calls: 0,
            log_calls: 0,
            logs: Vec::new(),
            log_bytes: 0,
            dropped_log_bytes: 0,
            dropped_log_lines: 0,
            panic_message: None,
            denials: 0,
            requests: None,
            members: None,
            limits,
        }
    }

    fn field_manager(&self) -> String {
        format!("sei-operator/{}", self.task_type)
    }

    /// Charge `requests` API requests to the host-call budget; past it, trap.
    fn charge(&mut self, requests: u32) -> wasmtime::Result<()> {
        self.host_calls = self.host_calls.saturating_add(requests);
        if self.host_calls > self.limits.max_host_calls {
            let e = BudgetExceeded { budget: Budget::HostCalls, limit: self.limits.max_host_calls };
            self.metrics.budget_exceeded(&self.module_digest, e.budget);
            return Err(wasmtime::Error::new(e));
        }
        Ok(())
    }

    /// Admit one Kubernetes request under the module's sustained rate; when its bucket is empty
    /// the call is answered `unavailable` without reaching the API server (and counted as a
    /// `rate` refusal).
    fn admit_request(&mut self, desc: &str, started: Instant) -> Result<(), kube::KubeError> {
        let Some(bucket) = &self.requests else { return Ok(()) };
        if bucket.try_take(Instant::now()) {
            return Ok(());
        }
        let msg = format!("the module's Kubernetes request rate of {}/s is used up; try again later", bucket.rate().per_second);
        self.metrics.denied(&self.module_digest, "rate");
        self.record("kube", desc, &format!("error: {msg}"), started);
        Err(kube::KubeError::Unavailable(msg))
    }

    /// Requests left in the host-call budget.
    fn remaining_calls(&self) -> u32 {
        self.limits.max_host_calls.saturating_sub(self.host_calls)
    }

    fn record(&mut self, interface: &'static str, call: &str, outcome: &str, started: Instant) {
        if self.calls.len() < self.limits.max_recorded_host_calls {
            let (call, outcome) = (text::safe(call, MAX_RECORD_BYTES), text::safe(outcome, MAX_RECORD_BYTES));
            self.calls.push(HostCall { interface, call, outcome, micros: started.elapsed().as_micros() as u64 });
        } else {
            self.unrecorded_calls += 1;
        }
    }

    fn deny(&mut self, interface: &'static str, call: &str, denial: &Denial, started: Instant) {
        self.denials += 1;
        self.metrics.denied(&self.module_digest, denial.reason);
        self.record(interface, call, &format!("denied: {denial}"), started);
        if self.denials > MAX_LOGGED_DENIALS {
            return;
        }
        tracing::warn!(
            task_type = %self.task_type,
            module = %self.module_name,
            module_digest = %self.module_digest,
            node = %format!("{}/{}", self.guard.scope().namespace, self.guard.scope().node_name),
            refused_call = %text::safe(call, MAX_RECORD_BYTES),
            reason = denial.reason,
            "host call denied: {}{}",
            text::safe(&denial.message, 1024),
            if self.denials == MAX_LOGGED_DENIALS { " (further denials of this step are counted, not logged)" } else { "" }
        );
    }

    /// The module's view of an adapter error (`kube_error`); the API server's refusal of the
    /// controller is counted (`sandbox_api_refused_calls_total`) and logged at most once a minute
    /// per module (`SandboxMetrics::api_refused`), since the module only sees it as `unavailable`.
    fn kube_answer(&self, e: KubeAdapterError) -> kube::KubeError {
        if let KubeAdapterError::Refused(message) = &e
            && let Some(total) = self.metrics.api_refused(&self.module_digest, Instant::now())
        {
            tracing::warn!(
                task_type = %self.task_type,
                module = %self.module_name,
                module_digest = %self.module_digest,
                node = %format!("{}/{}", self.guard.scope().namespace, self.guard.scope().node_name),
                refusals = total,
                "the API server refused the controller's request; the step waits (this module's refusals are logged at most once a minute): {}",
                text::safe(message, 1024),
            );
        }
        kube_error(e)
    }

    /// The `sei.io/module-digest` annotation on an object about to be written.
    fn stamp(&self, object: &mut Value) {
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            let annotations = meta.entry("annotations").or_insert_with(|| Value::Object(Default::default()));
            // `null` (the policy refuses any other non-map) would drop the stamp, and with
            // server-side apply the one an earlier write left.
            if !annotations.is_object() {
                *annotations = Value::Object(Default::default());
            }
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

// log
impl TaskCtx {
    /// One `log` call: charged, escaped, clipped, kept while the step's line and byte caps allow.
    pub fn log(&mut self, level: log::Level, message: BoundedStr<MAX_LOG_LINE_LIFT>) -> wasmtime::Result<()> {
        self.log_calls = self.log_calls.saturating_add(1);
        if self.log_calls > self.limits.max_log_calls {
            let e = BudgetExceeded { budget: Budget::LogCalls, limit: self.limits.max_log_calls };
            self.metrics.budget_exceeded(&self.module_digest, e.budget);
            return Err(wasmtime::Error::new(e));
        }
        let raw = message.or_placeholder("log line");
        let message = text::safe(&raw, self.limits.max_log_line_bytes);
        if message.starts_with("panic: ") {
            self.panic_message = Some(message.clone());
        }
        let over_lines = self.logs.len() >= self.limits.max_log_lines;
        if over_lines || self.log_bytes + message.len() > self.limits.max_log_bytes_per_step {
            self.dropped_log_lines += 1;
            self.dropped_log_bytes += message.len() as u64;
            return Ok(());
        }
        self.log_bytes += message.len();
        let level = level_name(level);
        // Attributed by the host, not by the text: the node, the task type and the module digest.
        let node = format!("{}/{}", self.guard.scope().namespace, self.guard.scope().node_name);
        let (task_type, digest) = (&self.task_type, &self.module_digest);
        match level {
            "error" => tracing::error!(%node, %task_type, module_digest = %digest, "module: {message}"),
            "warn" => tracing::warn!(%node, %task_type, module_digest = %digest, "module: {message}"),
            "info" => tracing::info!(%node, %task_type, module_digest = %digest, "module: {message}"),
            _ => tracing::debug!(%node, %task_type, module_digest = %digest, "module: {message}"),
        }
        self.logs.push(LogLine { level, message });
        Ok(())
    }
}

/// What a module sees of the API server's answer. The API server refusing the controller itself
/// (`Refused`: 401, the authorizer's 403, an admission plugin not yet ready) is `unavailable`,
/// not `denied`: the capability guard allowed the call, and the refusal is about the controller's
/// identity, not the module's object. Right after a restart kube-apiserver refuses every request
/// until its RBAC caches have synced; as `denied` that failed the plan of every node that made a
/// call in that window. As `unavailable` the step waits, without spending its retries, with the
/// refusal in the task's message (a gap in the chart's RBAC shows there until it is granted, and
/// nothing is lost). An admission plugin's 403 (`Forbidden`: quota, pod security, a terminating
/// namespace, a webhook) is about the object and stays `denied`. Guarded by
/// `tests::the_api_servers_refusal_is_unavailable_not_denied`, `error_of_each_answer`
/// (host/src/adapters/kube.rs) and, on the real RBAC authorizer,
/// `a_host_call_the_api_server_refuses_waits_until_the_rbac_allows_it` (host/tests/rbac.rs).
fn kube_error(e: KubeAdapterError) -> kube::KubeError {
    match e {
        KubeAdapterError::NotFound => kube::KubeError::NotFound,
        KubeAdapterError::Conflict(m) => kube::KubeError::Conflict(m),
        KubeAdapterError::Refused(m) => kube::KubeError::Unavailable(format!(
            "the API server refused the controller's request ({m}); waiting for its RBAC caches (after a restart) or for the controller's RBAC to allow it"
        )),
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

/// JSON values (objects, arrays, scalars) an object to write may hold; a parsed value costs the
/// host about 32 bytes each, so `[[],[],…]` must not turn 1.5 MiB into 20 MiB.
pub const MAX_OBJECT_NODES: usize = 100_000;

/// An upper bound of the values in a JSON text, counted without parsing it (strings skipped).
fn json_values(json: &str) -> usize {
    let (mut count, mut in_string, mut escaped) = (1usize, false, false);
    for b in json.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else {
            match b {
                b'"' => in_string = true,
                b'[' | b'{' | b',' | b':' => count += 1,
                _ => {}
            }
        }
    }
    count
}

/// Integral floats become integers (`0.0` → `0`): the API server converts them so for integer
/// fields, and the policy must check the value that will be stored.
fn normalize_integers(value: &mut Value) {
    match value {
        Value::Number(n) if n.is_f64() => {
            if let Some(f) = n.as_f64()
                && f.fract() == 0.0
                && f.abs() < 9.0e15
            {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_integers),
        Value::Object(map) => map.values_mut().for_each(normalize_integers),
        _ => {}
    }
}

/// Parse an object the guest wants to write; returns it with its type and name.
fn parse_object(json: &str) -> Result<(Value, TypeRef, String, Option<String>), kube::KubeError> {
    let values = json_values(json);
    if values > MAX_OBJECT_NODES {
        return Err(kube::KubeError::Invalid(format!("object has about {values} JSON values, over the limit of {MAX_OBJECT_NODES}")));
    }
    let mut object: Value = serde_json::from_str(json).map_err(|e| kube::KubeError::Invalid(format!("object is not JSON: {e}")))?;
    normalize_integers(&mut object);
    let s = |p: &str| object.pointer(p).and_then(Value::as_str).map(str::to_string);
    let (Some(api_version), Some(kind), Some(name)) = (s("/apiVersion"), s("/kind"), s("/metadata/name")) else {
        return Err(kube::KubeError::Invalid("object needs apiVersion, kind and metadata.name".into()));
    };
    let namespace = s("/metadata/namespace");
    Ok((object, TypeRef { api_version, kind }, name, namespace))
}

type KubeResult<T> = wasmtime::Result<Result<T, kube::KubeError>>;

// kube
impl TaskCtx {
    /// Guard a write and put the namespace and digest annotation on the object.
    fn admit_write(
        &mut self,
        verb: KubeVerb,
        json: BoundedStr<MAX_OBJECT_LIFT>,
        started: Instant,
    ) -> Result<(Value, TypeRef, String, String), kube::KubeError> {
        // Refuse before parsing: a module without the capability, or with an oversized object,
        // makes the host do no work.
        if let Err(d) = self.guard.check_capability(verb.capability(), &format!("kube {}", verb.as_str())) {
            self.deny("kube", &format!("{} <object of {} bytes>", verb.as_str(), json.len()), &d, started);
            return Err(kube::KubeError::Denied(d.message));
        }
        let json = match json.within("object") {
            Ok(j) => j,
            Err(msg) => {
                self.record("kube", &format!("{} <oversized object>", verb.as_str()), &format!("error: {msg}"), started);
                return Err(kube::KubeError::Invalid(msg));
            }
        };
        let (mut object, ty, name, namespace) = parse_object(&json)
            .inspect_err(|e| self.record("kube", &format!("{} <unparsable object>", verb.as_str()), &format!("error: {e}"), started))?;
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
                self.deny("kube", &desc, &d, started);
                Err(kube::KubeError::Denied(d.message))
            }
        }
    }

    /// Size-check and guard a get/delete of one object. Returns its type, namespace, and
    /// (description for the report, name).
    fn admit_ref(
        &mut self,
        verb: KubeVerb,
        r: GuestObjectRef,
        started: Instant,
    ) -> Result<(TypeRef, String, (String, String)), kube::KubeError> {
        let r: ObjectRefArg = match r.checked() {
            Ok(r) => r,
            Err(msg) => {
                self.record("kube", &format!("{} <oversized reference>", verb.as_str()), &format!("error: {msg}"), started);
                return Err(kube::KubeError::Invalid(msg));
            }
        };
        let call = KubeCall { verb, api_version: &r.api_version, kind: &r.kind, namespace: r.namespace.as_deref(), name: Some(&r.name) };
        let ns_shown = r.namespace.as_deref().unwrap_or(&self.guard.scope().namespace).to_string();
        let desc = format!("{} {}/{} {ns_shown}/{}", verb.as_str(), r.api_version, r.kind, r.name);
        match self.guard.check_kube(&call) {
            Ok(ns) => Ok((TypeRef { api_version: r.api_version, kind: r.kind }, ns, (desc, r.name))),
            Err(d) => {
                self.deny("kube", &desc, &d, started);
                Err(kube::KubeError::Denied(d.message))
            }
        }
    }

    pub async fn kube_get(&mut self, r: GuestObjectRef) -> KubeResult<Option<String>> {
        self.charge(1)?;
        let started = Instant::now();
        let (ty, ns, desc) = match self.admit_ref(KubeVerb::Get, r, started) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.admit_request(&desc.0, started) {
            return Ok(Err(e));
        }
        let res = self.kube.get(&ty, &ns, &desc.1).await;
        if self.guard.scope().group.is_some()
            && let Ok(Some(stored)) = &res
            && let Err(d) = self.group_owns(stored, &desc.0)
        {
            self.deny("kube", &desc.0, &d, started);
            return Ok(Err(kube::KubeError::Denied(d.message)));
        }
        self.record("kube", &desc.0, &outcome_of(&res), started);
        Ok(res.map_err(|e| self.kube_answer(e)))
    }

    /// A group task sees only what its group owns alone (only the owner references are parsed).
    fn group_owns(&self, stored: &str, desc: &str) -> Result<(), Denial> {
        let owners = serde_json::from_str::<Ownership>(stored).map(|o| o.metadata.owner_references).unwrap_or_default();
        let view = serde_json::json!({"metadata": {"ownerReferences": owners}});
        self.guard.check_existing(&view, desc)
    }

    pub async fn kube_list(
        &mut self,
        api_version: BoundedStr<127>,
        kind: BoundedStr<63>,
        label_selector: Option<BoundedStr<MAX_SELECTOR_LIFT>>,
    ) -> KubeResult<Vec<String>> {
        self.charge(1)?;
        let started = Instant::now();
        let args = (|| {
            Ok::<_, String>((
                api_version.within("apiVersion")?,
                kind.within("kind")?,
                label_selector.map(|s| s.within("label selector")).transpose()?,
            ))
        })();
        let (api_version, kind, label_selector) = match args {
            Ok(a) => a,
            Err(msg) => {
                self.record("kube", "list <oversized arguments>", &format!("error: {msg}"), started);
                return Ok(Err(kube::KubeError::Invalid(msg)));
            }
        };
        let call = KubeCall { verb: KubeVerb::List, api_version: &api_version, kind: &kind, namespace: None, name: None };
        let desc = format!("list {api_version}/{kind} {} {}", self.guard.scope().namespace, label_selector.as_deref().unwrap_or(""));
        let ns = match self.guard.check_kube(&call) {
            Ok(ns) => ns,
            Err(d) => {
                self.deny("kube", &desc, &d, started);
                return Ok(Err(kube::KubeError::Denied(d.message)));
            }
        };
        let ty = TypeRef { api_version, kind };
        // A group task lists only the group's SeiNodes.
        let label_selector = match (&self.guard.scope().group, label_selector) {
            (None, s) => s,
            (Some(_), s) => {
                let own = format!("{GROUP_LABEL}={}", self.guard.scope().node_name);
                Some(s.filter(|s| !s.trim().is_empty()).map_or(own.clone(), |s| format!("{s},{own}")))
            }
        };
        // The first page is admitted like any request; further pages may use what is left of
        // the step's budget and take tokens of the module's rate up front (unused ones are given
        // back); every request made is charged, also when the list failed.
        if let Err(e) = self.admit_request(&desc, started) {
            return Ok(Err(e));
        }
        let budget = self.remaining_calls();
        let extra = match &self.requests {
            Some(bucket) => bucket.take_up_to(budget, Instant::now()),
            None => budget,
        };
        let limits = ListLimits { max_requests: extra.saturating_add(1), max_bytes: MAX_LIST_BYTES };
        let listed = self.kube.list(&ty, &ns, label_selector.as_deref(), limits).await;
        let pages_after_first = listed.requests.saturating_sub(1);
        if let Some(bucket) = &self.requests {
            bucket.refund(extra.saturating_sub(pages_after_first));
        }
        self.charge(pages_after_first)?;
        let mut res = listed.result;
        if res.is_err() && extra < budget && listed.requests >= limits.max_requests {
            // Stopped by the module's rate, not by the step's budget.
            let rate = self.requests.as_ref().map_or(0, |b| b.rate().per_second);
            self.metrics.denied(&self.module_digest, "rate");
            res = Err(KubeAdapterError::Unavailable(format!(
                "the list needs more pages than the module's Kubernetes request rate of {rate}/s has left; try again later"
            )));
        }
        if self.guard.scope().group.is_some()
            && let Ok(items) = &mut res
        {
            items.retain(|item| self.group_owns(item, &desc).is_ok());
        }
        self.record("kube", &desc, &outcome_of(&res), started);
        Ok(res.map_err(|e| self.kube_answer(e)))
    }

    pub async fn kube_create(&mut self, object: BoundedStr<MAX_OBJECT_LIFT>) -> KubeResult<String> {
        self.charge(1)?;
        let started = Instant::now();
        let (object, ty, name, ns) = match self.admit_write(KubeVerb::Create, object, started) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.admit_request(&format!("create {}/{} {ns}/{name}", ty.api_version, ty.kind), started) {
            return Ok(Err(e));
        }
        let res = self.kube.create(&ty, &ns, object, &self.field_manager()).await;
        self.record("kube", &format!("create {}/{} {ns}/{name}", ty.api_version, ty.kind), &outcome_of(&res), started);
        Ok(res.map_err(|e| self.kube_answer(e)))
    }

    pub async fn kube_apply(&mut self, object: BoundedStr<MAX_OBJECT_LIFT>) -> KubeResult<String> {
        self.charge(1)?;
        let started = Instant::now();
        let (object, ty, name, ns) = match self.admit_write(KubeVerb::Apply, object, started) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        let desc = format!("apply {}/{} {ns}/{name}", ty.api_version, ty.kind);
        if let Err(e) = self.admit_request(&desc, started) {
            return Ok(Err(e));
        }
        // Server-side apply merges into what is stored: the stored object must be the node's own,
        // and the write must land on that very object. Absent at the check: it is created (a
        // create fails on an object made in between, an apply would merge into it); present and
        // owned: its uid goes into the applied object (the API server refuses the write if the
        // object was replaced in between).
        let manager = self.field_manager();
        let res = match self.existing_is_own(&ty, &ns, &name, &desc, started).await? {
            Err(e) => return Ok(Err(e)),
            Ok(Existing::Absent) => self.kube.create(&ty, &ns, object, &manager).await,
            Ok(Existing::Own { uid }) => {
                let mut object = object;
                if let (Some(uid), Some(meta)) = (uid, object.get_mut("metadata").and_then(Value::as_object_mut)) {
                    meta.insert("uid".into(), Value::String(uid));
                }
                self.kube.apply(&ty, &ns, &name, object, &manager).await
            }
            Ok(Existing::NotChecked) => self.kube.apply(&ty, &ns, &name, object, &manager).await,
        };
        self.record("kube", &format!("{desc} as {manager}"), &outcome_of(&res), started);
        Ok(res.map_err(|e| self.kube_answer(e)))
    }

    pub async fn kube_delete(&mut self, r: GuestObjectRef) -> KubeResult<bool> {
        self.charge(1)?;
        let started = Instant::now();
        let (ty, ns, desc) = match self.admit_ref(KubeVerb::Delete, r, started) {
            Ok(a) => a,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = self.admit_request(&desc.0, started) {
            return Ok(Err(e));
        }
        // Only the node's own object, and only that very one (a precondition on its uid); one
        // that is absent at the check is not deleted (another could be created in between).
        let uid = match self.existing_is_own(&ty, &ns, &desc.1, &desc.0, started).await? {
            Ok(Existing::Absent) => {
                self.record("kube", &desc.0, "ok: absent", started);
                return Ok(Ok(false));
            }
            Ok(Existing::Own { uid }) => uid,
            Ok(Existing::NotChecked) => None,
            Err(e) => return Ok(Err(e)),
        };
        let res = self.kube.delete(&ty, &ns, &desc.1, uid.as_deref()).await;
        self.record("kube", &desc.0, &outcome_of(&res), started);
        Ok(res.map_err(|e| self.kube_answer(e)))
    }

    /// When the node's uid is known, read the stored object (one more request: charged to the
    /// step's budget, admitted by the module's rate) and refuse unless it is owned by the node
    /// alone. Only its `metadata.uid` and `ownerReferences` are parsed.
    async fn existing_is_own(
        &mut self,
        ty: &TypeRef,
        ns: &str,
        name: &str,
        desc: &str,
        started: Instant,
    ) -> wasmtime::Result<Result<Existing, kube::KubeError>> {
        if self.guard.scope().owner_uid.is_none() {
            return Ok(Ok(Existing::NotChecked));
        }
        self.charge(1)?;
        let check = format!("get {}/{} {ns}/{name} (owner check)", ty.api_version, ty.kind);
        if let Err(e) = self.admit_request(&check, started) {
            return Ok(Err(e));
        }
        let read = Instant::now();
        let stored = self.kube.get(ty, ns, name).await;
        self.record("kube", &check, &outcome_of(&stored), read);
        let stored = match stored {
            Ok(stored) => stored,
            Err(e) => {
                self.record("kube", desc, &format!("error: {e}"), started);
                return Ok(Err(self.kube_answer(e)));
            }
        };
        let Some(stored) = stored else { return Ok(Ok(Existing::Absent)) };
        let ownership: Ownership = match serde_json::from_str(&stored) {
            Ok(o) => o,
            Err(e) => return Ok(Err(kube::KubeError::Invalid(format!("the stored object is not an object: {e}")))),
        };
        let view = serde_json::json!({"metadata": {"ownerReferences": ownership.metadata.owner_references}});
        if let Err(d) = self.guard.check_existing(&view, desc) {
            self.deny("kube", desc, &d, started);
            return Ok(Err(kube::KubeError::Denied(d.message)));
        }
        Ok(Ok(Existing::Own { uid: ownership.metadata.uid }))
    }
}

/// What the owner check found.
enum Existing {
    /// No owner rule in this scope (no node uid): nothing was read.
    NotChecked,
    Absent,
    /// The node's own object, with its uid.
    Own {
        uid: Option<String>,
    },
}

/// The part of a stored object the owner check reads (everything else is skipped, not built).
#[derive(serde::Deserialize)]
struct Ownership {
    metadata: OwnershipMeta,
}

#[derive(serde::Deserialize)]
struct OwnershipMeta {
    uid: Option<String>,
    #[serde(rename = "ownerReferences", default)]
    owner_references: Vec<Value>,
}

fn sidecar_error(e: SidecarAdapterError) -> sidecar::SidecarError {
    match e {
        SidecarAdapterError::NotFound => sidecar::SidecarError::NotFound,
        SidecarAdapterError::Rejected(m) => sidecar::SidecarError::Rejected(m),
        SidecarAdapterError::Unavailable(m) => sidecar::SidecarError::Unavailable(m),
    }
}

type SidecarResult<T> = wasmtime::Result<Result<T, sidecar::SidecarError>>;

/// A task id for a report or a denial message, whatever the guest sent.
fn shown_id(id: &BoundedStr<MAX_SIDECAR_ID_LIFT>) -> String {
    match id {
        BoundedStr::Ok(id) => text::safe(id, 80),
        BoundedStr::Over(len) => format!("<id of {len} bytes>"),
    }
}

// sidecar
impl TaskCtx {
    /// Guard a sidecar call and hand back the client.
    fn sidecar_for(&mut self, op: &str, desc: &str, started: Instant) -> Result<Arc<dyn SidecarClient>, sidecar::SidecarError> {
        if let Err(d) = self.guard.check_sidecar(op) {
            self.deny("sidecar", desc, &d, started);
            return Err(sidecar::SidecarError::Denied(d.message));
        }
        match &self.sidecar {
            Some(s) => Ok(s.clone()),
            None => {
                let msg = "no sidecar is configured for this run".to_string();
                self.record("sidecar", desc, &format!("error: {msg}"), started);
                Err(sidecar::SidecarError::Unavailable(msg))
            }
        }
    }

    /// A task id as the sidecar issues them (a UUID); anything else never reaches a URL.
    fn checked_id(&mut self, op: &str, id: BoundedStr<MAX_SIDECAR_ID_LIFT>, started: Instant) -> Result<String, sidecar::SidecarError> {
        let id = id.within("task id").and_then(|id| {
            if is_sidecar_task_id(&id) {
                Ok(id)
            } else {
                Err(format!("task id {:?} is not a UUID (8-4-4-4-12 hex digits)", text::safe(&id, 80)))
            }
        });
        id.map_err(|msg| {
            self.record("sidecar", &format!("{op} <invalid id>"), &format!("error: {msg}"), started);
            sidecar::SidecarError::Rejected(msg)
        })
    }

    /// A submission's arguments, checked: a UUID id, a task type and params within their bounds,
    /// params that are JSON. `target` (`"<node> "` or empty) names the sidecar in the report.
    fn submit_request(
        &mut self,
        id: BoundedStr<MAX_SIDECAR_ID_LIFT>,
        task_type: BoundedStr<63>,
        params: Option<BoundedStr<MAX_SIDECAR_PARAMS_LIFT>>,
        target: &str,
        started: Instant,
    ) -> Result<TaskRequest, sidecar::SidecarError> {
        let id = self.checked_id("submit-task", id, started)?;
        let args = (|| Ok::<_, String>((task_type.within("task type")?, params.map(|p| p.within("params")).transpose()?)))();
        let (task_type, params) = args.map_err(|msg| {
            self.record("sidecar", "submit-task <oversized arguments>", &format!("error: {msg}"), started);
            sidecar::SidecarError::Rejected(msg)
        })?;
        let params = params.as_deref().map(serde_json::from_str::<Value>).transpose().map_err(|e| {
            let msg = format!("params are not JSON: {e}");
            self.record("sidecar", &format!("submit-task {target}{task_type} {id}"), &format!("error: {msg}"), started);
            sidecar::SidecarError::Rejected(msg)
        })?;
        Ok(TaskRequest { id, task_type, params })
    }

    pub async fn sidecar_submit(
        &mut self,
        id: BoundedStr<MAX_SIDECAR_ID_LIFT>,
        task_type: BoundedStr<63>,
        params: Option<BoundedStr<MAX_SIDECAR_PARAMS_LIFT>>,
    ) -> SidecarResult<String> {
        self.charge(1)?;
        let started = Instant::now();
        let client = match self.sidecar_for("submit-task", &format!("submit-task {}", shown_id(&id)), started) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let request = match self.submit_request(id, task_type, params, "", started) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let desc = format!("submit-task {} {}", request.task_type, request.id);
        let res = client.submit_task(&request).await;
        self.record("sidecar", &desc, &outcome_of(&res), started);
        Ok(res.map_err(sidecar_error))
    }

    pub async fn sidecar_get_task(&mut self, id: BoundedStr<MAX_SIDECAR_ID_LIFT>) -> SidecarResult<sidecar::SidecarTask> {
        self.charge(1)?;
        let started = Instant::now();
        let client = match self.sidecar_for("get-task", &format!("get-task {}", shown_id(&id)), started) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let id = match self.checked_id("get-task", id, started) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let res = client.get_task(&id).await;
        let outcome = res.as_ref().map(|t| format!("ok: {}", t.status)).unwrap_or_else(|e| format!("error: {e}"));
        self.record("sidecar", &format!("get-task {id}"), &outcome, started);
        Ok(res.map(|t| sidecar::SidecarTask { id: t.id, task_type: t.task_type, status: t.status, error: t.error }).map_err(sidecar_error))
    }

    /// Charge, guard and hand back the client of a call without arguments.
    fn simple_call(&mut self, op: &'static str) -> SidecarResult<(Arc<dyn SidecarClient>, Instant)> {
        self.charge(1)?;
        let started = Instant::now();
        Ok(self.sidecar_for(op, op, started).map(|c| (c, started)))
    }

    pub async fn sidecar_status(&mut self) -> SidecarResult<String> {
        let (client, started) = match self.simple_call("status")? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let res = client.status().await;
        self.record("sidecar", "status", &outcome_of(&res), started);
        Ok(res.map_err(sidecar_error))
    }

    pub async fn sidecar_healthz(&mut self) -> SidecarResult<bool> {
        let (client, started) = match self.simple_call("healthz")? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let res = client.healthz().await;
        self.record("sidecar", "healthz", &outcome_of(&res), started);
        Ok(res.map_err(sidecar_error))
    }

    pub async fn sidecar_node_id(&mut self) -> SidecarResult<String> {
        let (client, started) = match self.simple_call("node-id")? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let res = client.node_id().await;
        self.record("sidecar", "node-id", &outcome_of(&res), started);
        Ok(res.map_err(sidecar_error))
    }
}

// member-sidecars
impl TaskCtx {
    /// Charge, guard and hand back the client of `node`'s sidecar for a group task.
    fn member_for(&mut self, op: &str, node: BoundedStr<253>) -> SidecarResult<(Arc<dyn SidecarClient>, String, Instant)> {
        self.charge(1)?;
        let started = Instant::now();
        let node = match node.within("node name") {
            Ok(n) => n,
            Err(msg) => {
                self.record("sidecar", &format!("{op} <oversized node name>"), &format!("error: {msg}"), started);
                return Ok(Err(sidecar::SidecarError::Rejected(msg)));
            }
        };
        let shown = text::safe(&node, 80);
        if let Err(d) = self.guard.check_member_sidecar(op, &node) {
            self.deny("sidecar", &format!("{op} {node}"), &d, started);
            return Ok(Err(sidecar::SidecarError::Denied(d.message)));
        }
        match self.members.as_ref().and_then(|m| m.client_for(&node)) {
            Some(c) => Ok(Ok((c, node, started))),
            None => {
                let msg = format!("SeiNode {shown} has no sidecar yet (not created, or not the group's)");
                self.record("sidecar", &format!("{op} {node}"), &format!("error: {msg}"), started);
                Ok(Err(sidecar::SidecarError::Unavailable(msg)))
            }
        }
    }

    pub async fn member_submit(
        &mut self,
        node: BoundedStr<253>,
        id: BoundedStr<MAX_SIDECAR_ID_LIFT>,
        task_type: BoundedStr<63>,
        params: Option<BoundedStr<MAX_SIDECAR_PARAMS_LIFT>>,
    ) -> SidecarResult<String> {
        let (client, node, started) = match self.member_for("submit-task", node)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let request = match self.submit_request(id, task_type, params, &format!("{node} "), started) {
            Ok(r) => r,
            Err(e) => return Ok(Err(e)),
        };
        let desc = format!("submit-task {node} {} {}", request.task_type, request.id);
        let res = client.submit_task(&request).await;
        self.record("sidecar", &desc, &outcome_of(&res), started);
        Ok(res.map_err(sidecar_error))
    }

    pub async fn member_get_task(
        &mut self,
        node: BoundedStr<253>,
        id: BoundedStr<MAX_SIDECAR_ID_LIFT>,
    ) -> SidecarResult<member_sidecars::MemberTask> {
        let (client, node, started) = match self.member_for("get-task", node)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let id = match self.checked_id("get-task", id, started) {
            Ok(id) => id,
            Err(e) => return Ok(Err(e)),
        };
        let res = client.get_task(&id).await;
        let outcome = res.as_ref().map(|t| format!("ok: {}", t.status)).unwrap_or_else(|e| format!("error: {e}"));
        self.record("sidecar", &format!("get-task {node} {id}"), &outcome, started);
        Ok(res
            .map(|t| member_sidecars::MemberTask {
                id: t.id,
                task_type: t.task_type,
                status: t.status,
                error: t.error,
                output: t.result.map(|r| Box::<str>::from(r).into_string()),
            })
            .map_err(sidecar_error))
    }

    pub async fn member_status(&mut self, node: BoundedStr<253>) -> SidecarResult<String> {
        let (client, node, started) = match self.member_for("status", node)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let res = client.status().await;
        self.record("sidecar", &format!("status {node}"), &outcome_of(&res), started);
        Ok(res.map_err(sidecar_error))
    }

    pub async fn member_node_id(&mut self, node: BoundedStr<253>) -> SidecarResult<String> {
        let (client, node, started) = match self.member_for("node-id", node)? {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        let res = client.node_id().await;
        self.record("sidecar", &format!("node-id {node}"), &outcome_of(&res), started);
        Ok(res.map_err(sidecar_error))
    }
}

/// Register the `sei:task` host interfaces (this host's WIT version) on `linker`, with the
/// bounded argument types of `sandbox::abi`.
pub fn add_to_linker(linker: &mut Linker<TaskCtx>) -> wasmtime::Result<()> {
    use crate::wit::{WIT_PACKAGE, WIT_VERSION};
    type Ctx<'a> = StoreContextMut<'a, TaskCtx>;
    // `types` holds only types, but guests import it as an instance.
    linker.instance(&format!("{WIT_PACKAGE}/types@{WIT_VERSION}"))?;

    let mut l = linker.instance(&format!("{WIT_PACKAGE}/log@{WIT_VERSION}"))?;
    l.func_wrap("log", |mut store: Ctx<'_>, (level, message): (log::Level, BoundedStr<MAX_LOG_LINE_LIFT>)| {
        store.data_mut().log(level, message)
    })?;

    let mut k = linker.instance(&format!("{WIT_PACKAGE}/kube@{WIT_VERSION}"))?;
    k.func_wrap_async("get", |mut store: Ctx<'_>, (r,): (GuestObjectRef,)| {
        Box::new(async move { Ok((store.data_mut().kube_get(r).await?,)) })
    })?;
    k.func_wrap_async(
        "list-objects",
        |mut store: Ctx<'_>, (api_version, kind, selector): (BoundedStr<127>, BoundedStr<63>, Option<BoundedStr<MAX_SELECTOR_LIFT>>)| {
            Box::new(async move { Ok((store.data_mut().kube_list(api_version, kind, selector).await?,)) })
        },
    )?;
    k.func_wrap_async("create", |mut store: Ctx<'_>, (o,): (BoundedStr<MAX_OBJECT_LIFT>,)| {
        Box::new(async move { Ok((store.data_mut().kube_create(o).await?,)) })
    })?;
    k.func_wrap_async("apply", |mut store: Ctx<'_>, (o,): (BoundedStr<MAX_OBJECT_LIFT>,)| {
        Box::new(async move { Ok((store.data_mut().kube_apply(o).await?,)) })
    })?;
    k.func_wrap_async("delete", |mut store: Ctx<'_>, (r,): (GuestObjectRef,)| {
        Box::new(async move { Ok((store.data_mut().kube_delete(r).await?,)) })
    })?;

    let mut s = linker.instance(&format!("{WIT_PACKAGE}/sidecar@{WIT_VERSION}"))?;
    s.func_wrap_async(
        "submit-task",
        |mut store: Ctx<'_>,
         (id, task_type, params): (BoundedStr<MAX_SIDECAR_ID_LIFT>, BoundedStr<63>, Option<BoundedStr<MAX_SIDECAR_PARAMS_LIFT>>)| {
            Box::new(async move { Ok((store.data_mut().sidecar_submit(id, task_type, params).await?,)) })
        },
    )?;
    s.func_wrap_async("get-task", |mut store: Ctx<'_>, (id,): (BoundedStr<MAX_SIDECAR_ID_LIFT>,)| {
        Box::new(async move { Ok((store.data_mut().sidecar_get_task(id).await?,)) })
    })?;
    s.func_wrap_async("status", |mut store: Ctx<'_>, (): ()| Box::new(async move { Ok((store.data_mut().sidecar_status().await?,)) }))?;
    s.func_wrap_async("healthz", |mut store: Ctx<'_>, (): ()| Box::new(async move { Ok((store.data_mut().sidecar_healthz().await?,)) }))?;
    s.func_wrap_async("node-id", |mut store: Ctx<'_>, (): ()| Box::new(async move { Ok((store.data_mut().sidecar_node_id().await?,)) }))?;

    let mut m = linker.instance(&format!("{WIT_PACKAGE}/member-sidecars@{WIT_VERSION}"))?;
    m.func_wrap_async(
        "submit-task",
        |mut store: Ctx<'_>,
         (node, id, task_type, params): (
            BoundedStr<253>,
            BoundedStr<MAX_SIDECAR_ID_LIFT>,
            BoundedStr<63>,
            Option<BoundedStr<MAX_SIDECAR_PARAMS_LIFT>>,
        )| { Box::new(async move { Ok((store.data_mut().member_submit(node, id, task_type, params).await?,)) }) },
    )?;
    m.func_wrap_async("get-task", |mut store: Ctx<'_>, (node, id): (BoundedStr<253>, BoundedStr<MAX_SIDECAR_ID_LIFT>)| {
        Box::new(async move { Ok((store.data_mut().member_get_task(node, id).await?,)) })
    })?;
    m.func_wrap_async("status", |mut store: Ctx<'_>, (node,): (BoundedStr<253>,)| {
        Box::new(async move { Ok((store.data_mut().member_status(node).await?,)) })
    })?;
    m.func_wrap_async("node-id", |mut store: Ctx<'_>, (node,): (BoundedStr<253>,)| {
        Box::new(async move { Ok((store.data_mut().member_node_id(node).await?,)) })
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integral_floats_are_checked_as_the_integers_stored() {
        // `runAsUser: 0.0` is stored as 0 by the API server; the pod policy must see 0.
        let (object, ..) =
            parse_object(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"x":[0.0,1e0,-2.0,1.5,1e20]}"#).unwrap();
        assert_eq!(object["x"], serde_json::json!([0, 1, -2, 1.5, 1e20]));
        assert!(object["x"][0].is_i64());
    }

    #[test]
    fn the_api_servers_refusal_is_unavailable_not_denied() {
        let refused =
            kube_error(KubeAdapterError::Refused(r#"configmaps is forbidden: User "u" cannot list resource "configmaps""#.into()));
        assert!(
            matches!(&refused, kube::KubeError::Unavailable(m) if m.contains("refused the controller's request") && m.contains("cannot list")),
            "{refused:?}"
        );
        // An admission plugin's refusal is about the object: denied, as before.
        let quota = kube_error(KubeAdapterError::Forbidden("exceeded quota: storage".into()));
        assert!(matches!(&quota, kube::KubeError::Denied(m) if m.contains("exceeded quota")), "{quota:?}");
        // The other answers keep their meaning.
        assert!(matches!(kube_error(KubeAdapterError::NotFound), kube::KubeError::NotFound));
        assert!(matches!(kube_error(KubeAdapterError::Invalid("x".into())), kube::KubeError::Invalid(m) if m == "x"));
        assert!(matches!(kube_error(KubeAdapterError::Conflict("x".into())), kube::KubeError::Conflict(m) if m == "x"));
        assert!(matches!(kube_error(KubeAdapterError::Unavailable("x".into())), kube::KubeError::Unavailable(m) if m == "x"));
    }

    #[test]
    fn value_bombs_are_refused_before_parsing() {
        let bomb = format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"a"}},"x":[{}]}}"#,
            vec!["[]"; MAX_OBJECT_NODES].join(",")
        );
        let err = parse_object(&bomb).unwrap_err();
        assert!(matches!(&err, kube::KubeError::Invalid(m) if m.contains("JSON values")), "{err:?}");
        // Strings are skipped: punctuation inside them is not counted.
        assert_eq!(json_values(r#"{"a":"[,{:\"]"}"#), 3);
    }
}
