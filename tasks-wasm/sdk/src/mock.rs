//! A mock host for native tests of a guest (`cargo test`, no wasm, no cluster).
//!
//! Install one per test; every SDK call on that thread then reaches it instead of the
//! component's imports:
//!
//! ```
//! use sei_task_sdk::mock::{MockHost, MockScript};
//! let host = MockHost::new().sidecar_status("Ready").script("mark-ready", MockScript::CompleteAfter(1)).install();
//! assert_eq!(sei_task_sdk::sidecar::status().unwrap(), "Ready");
//! assert_eq!(host.calls(), vec!["sidecar status".to_string()]);
//! ```
//!
//! It follows the host's rules where a test can notice them: a verb whose capability is not
//! granted, or an object in another namespace, is `denied`; `create` of an existing object is a
//! `conflict`; `apply` replaces the object; a sidecar task id submitted twice runs once; member
//! sidecars answer only for the members named with [`MockHost::members`]. It does not check the
//! pod policy or the ownership rule: `sei-operator task test` runs the module in the real
//! sandbox for that.

use crate::Capability;
use crate::bindings::sei::task::kube::{KubeError, ObjectRef};
use crate::bindings::sei::task::log::Level;
use crate::bindings::sei::task::member_sidecars::MemberTask;
use crate::bindings::sei::task::sidecar::SidecarError;
use serde_json::Value;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// What the mock sidecar does with a task type (default: complete at the first poll).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MockScript {
    /// `running` for this many polls, then `completed`.
    CompleteAfter(u32),
    /// `running` for this many polls, then `failed` with the message.
    FailAfter(u32, String),
    /// `running` forever.
    Stall,
}

#[derive(Debug, Clone)]
struct MockTask {
    task_type: String,
    polls: u32,
}

/// The mock host's state: objects, sidecar answers, and what the guest did.
#[derive(Debug, Clone)]
pub struct MockHost {
    namespace: String,
    grants: Vec<Capability>,
    objects: BTreeMap<(String, String, String), Value>,
    status: String,
    healthz: bool,
    node_id: String,
    down: Option<String>,
    scripts: BTreeMap<String, MockScript>,
    tasks: BTreeMap<(Option<String>, String), MockTask>,
    members: Vec<String>,
    calls: Vec<String>,
    logs: Vec<(Level, String)>,
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

thread_local! {
    static HOST: RefCell<Option<MockHost>> = const { RefCell::new(None) };
}

/// Run `f` on this thread's mock host.
pub(crate) fn with_host<T>(f: impl FnOnce(&mut MockHost) -> T) -> T {
    HOST.with(|h| {
        let mut h = h.borrow_mut();
        let host = h.as_mut().unwrap_or_else(|| {
            panic!("a host call in a native build with no mock host: start the test with `let host = sei_task_sdk::mock::MockHost::new().install();`")
        });
        f(host)
    })
}

fn key_of(api_version: &str, kind: &str, name: &str) -> (String, String, String) {
    (api_version.to_string(), kind.to_string(), name.to_string())
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn matches_selector(object: &Value, selector: Option<&str>) -> bool {
    selector.unwrap_or("").split(',').filter(|t| !t.trim().is_empty()).all(|term| match term.split_once('=') {
        Some((k, v)) => object.pointer("/metadata/labels").and_then(|l| l.get(k.trim())).and_then(Value::as_str) == Some(v.trim()),
        None => object.pointer("/metadata/labels").and_then(|l| l.get(term.trim())).is_some(),
    })
}

impl MockHost {
    /// Namespace `default`, every capability granted, a sidecar that says `Initializing`.
    pub fn new() -> Self {
        Self {
            namespace: "default".into(),
            grants: vec![Capability::KubeRead, Capability::KubeWrite, Capability::KubeDelete, Capability::Sidecar],
            objects: BTreeMap::new(),
            status: "Initializing".into(),
            healthz: false,
            node_id: "0123456789abcdef0123456789abcdef01234567".into(),
            down: None,
            scripts: BTreeMap::new(),
            tasks: BTreeMap::new(),
            members: Vec::new(),
            calls: Vec::new(),
            logs: Vec::new(),
        }
    }
    /// The node's namespace (objects elsewhere are denied).
    pub fn namespace(mut self, namespace: &str) -> Self {
        self.namespace = namespace.into();
        self
    }
    /// Grant only these capabilities (an empty slice grants nothing).
    pub fn grant(mut self, capabilities: &[Capability]) -> Self {
        self.grants = capabilities.to_vec();
        self
    }
    /// An object present before the step (JSON with apiVersion, kind and metadata.name).
    pub fn object(mut self, object: Value) -> Self {
        let key = key_of(
            str_at(&object, "/apiVersion").unwrap_or(""),
            str_at(&object, "/kind").unwrap_or(""),
            str_at(&object, "/metadata/name").unwrap_or(""),
        );
        self.objects.insert(key, object);
        self
    }
    /// What `GET /v0/status` answers.
    pub fn sidecar_status(mut self, status: &str) -> Self {
        self.status = status.into();
        self
    }
    /// What `GET /v0/healthz` answers.
    pub fn sidecar_healthz(mut self, ready: bool) -> Self {
        self.healthz = ready;
        self
    }
    /// What `GET /v0/node-id` answers.
    pub fn sidecar_node_id(mut self, id: &str) -> Self {
        self.node_id = id.into();
        self
    }
    /// Every sidecar call fails as `unavailable` with this message.
    pub fn sidecar_down(mut self, message: &str) -> Self {
        self.down = Some(message.into());
        self
    }
    /// What the sidecar does with tasks of this type.
    pub fn script(mut self, task_type: &str, script: MockScript) -> Self {
        self.scripts.insert(task_type.into(), script);
        self
    }
    /// The group members whose sidecars `member_sidecars` may call.
    pub fn members(mut self, members: &[&str]) -> Self {
        self.members = members.iter().map(|m| m.to_string()).collect();
        self
    }
    /// Make this the thread's host until the guard is dropped.
    pub fn install(self) -> MockGuard {
        HOST.with(|h| *h.borrow_mut() = Some(self));
        MockGuard { _not_send: std::marker::PhantomData }
    }

    fn granted(&self, cap: Capability, what: &str) -> Result<(), String> {
        if self.grants.contains(&cap) { Ok(()) } else { Err(format!("{what}: capability {cap:?} not granted")) }
    }
    fn in_namespace(&self, namespace: Option<&str>, what: &str) -> Result<(), String> {
        match namespace {
            Some(ns) if ns != self.namespace => Err(format!("{what}: namespace {ns} is not the node's ({})", self.namespace)),
            _ => Ok(()),
        }
    }

    pub(crate) fn log(&mut self, level: Level, msg: &str) {
        self.logs.push((level, msg.to_string()));
    }

    pub(crate) fn kube_get(&mut self, r: &ObjectRef) -> Result<Option<String>, KubeError> {
        let what = format!("get {}/{} {}", r.api_version, r.kind, r.name);
        self.calls.push(what.clone());
        self.granted(Capability::KubeRead, &what)
            .and_then(|()| self.in_namespace(r.namespace.as_deref(), &what))
            .map_err(KubeError::Denied)?;
        Ok(self.objects.get(&key_of(&r.api_version, &r.kind, &r.name)).map(Value::to_string))
    }

    pub(crate) fn kube_list(&mut self, api_version: &str, kind: &str, selector: Option<&str>) -> Result<Vec<String>, KubeError> {
        let what = format!("list {api_version}/{kind} {}", selector.unwrap_or(""));
        self.calls.push(what.trim_end().to_string());
        self.granted(Capability::KubeRead, &what).map_err(KubeError::Denied)?;
        Ok(self
            .objects
            .iter()
            .filter(|((a, k, _), o)| a == api_version && k == kind && matches_selector(o, selector))
            .map(|(_, o)| o.to_string())
            .collect())
    }

    fn write(&mut self, verb: &str, object: &str, replace: bool) -> Result<String, KubeError> {
        let mut value: Value = serde_json::from_str(object).map_err(|e| KubeError::Invalid(format!("{verb}: not JSON: {e}")))?;
        let (Some(api), Some(kind), Some(name)) =
            (str_at(&value, "/apiVersion"), str_at(&value, "/kind"), str_at(&value, "/metadata/name"))
        else {
            self.calls.push(format!("{verb} (no apiVersion, kind or name)"));
            return Err(KubeError::Invalid(format!("{verb}: the object needs apiVersion, kind and metadata.name")));
        };
        let key = key_of(api, kind, name);
        let what = format!("{verb} {api}/{kind} {name}");
        self.calls.push(what.clone());
        self.granted(Capability::KubeWrite, &what)
            .and_then(|()| self.in_namespace(str_at(&value, "/metadata/namespace"), &what))
            .map_err(KubeError::Denied)?;
        if !replace && self.objects.contains_key(&key) {
            return Err(KubeError::Conflict(format!("{what}: already exists")));
        }
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.entry("namespace").or_insert_with(|| Value::String(self.namespace.clone()));
        }
        let stored = value.to_string();
        self.objects.insert(key, value);
        Ok(stored)
    }

    pub(crate) fn kube_create(&mut self, object: &str) -> Result<String, KubeError> {
        self.write("create", object, false)
    }

    pub(crate) fn kube_apply(&mut self, object: &str) -> Result<String, KubeError> {
        self.write("apply", object, true)
    }

    pub(crate) fn kube_delete(&mut self, r: &ObjectRef) -> Result<bool, KubeError> {
        let what = format!("delete {}/{} {}", r.api_version, r.kind, r.name);
        self.calls.push(what.clone());
        self.granted(Capability::KubeDelete, &what)
            .and_then(|()| self.in_namespace(r.namespace.as_deref(), &what))
            .map_err(KubeError::Denied)?;
        Ok(self.objects.remove(&key_of(&r.api_version, &r.kind, &r.name)).is_some())
    }

    fn sidecar_call(&mut self, member: Option<&str>, what: String) -> Result<(), SidecarError> {
        let what = match member {
            Some(m) => format!("member {m} {what}"),
            None => format!("sidecar {what}"),
        };
        self.calls.push(what.clone());
        self.granted(Capability::Sidecar, &what).map_err(SidecarError::Denied)?;
        if let Some(m) = member
            && !self.members.iter().any(|x| x == m)
        {
            return Err(SidecarError::Denied(format!("{what}: {m} is not a member of the group")));
        }
        match &self.down {
            Some(msg) => Err(SidecarError::Unavailable(msg.clone())),
            None => Ok(()),
        }
    }

    pub(crate) fn sidecar_submit(
        &mut self,
        member: Option<&str>,
        id: &str,
        task_type: &str,
        _params: Option<&str>,
    ) -> Result<String, SidecarError> {
        self.sidecar_call(member, format!("submit-task {id} {task_type}"))?;
        let key = (member.map(str::to_string), id.to_string());
        let failed = self.tasks.get(&key).is_some_and(|t| self.state_of(t).0 == "failed");
        if failed || !self.tasks.contains_key(&key) {
            self.tasks.insert(key, MockTask { task_type: task_type.into(), polls: 0 });
        }
        Ok(id.to_string())
    }

    fn state_of(&self, t: &MockTask) -> (String, Option<String>) {
        match self.scripts.get(&t.task_type).cloned().unwrap_or(MockScript::CompleteAfter(0)) {
            MockScript::CompleteAfter(n) if t.polls >= n => ("completed".into(), None),
            MockScript::FailAfter(n, msg) if t.polls >= n => ("failed".into(), Some(msg)),
            _ => ("running".into(), None),
        }
    }

    pub(crate) fn sidecar_get_task(&mut self, member: Option<&str>, id: &str) -> Result<MemberTask, SidecarError> {
        self.sidecar_call(member, format!("get-task {id}"))?;
        let key = (member.map(str::to_string), id.to_string());
        let task = self.tasks.get(&key).cloned().ok_or(SidecarError::NotFound)?;
        let (status, error) = self.state_of(&task);
        if let Some(t) = self.tasks.get_mut(&key) {
            t.polls += 1;
        }
        Ok(MemberTask { id: id.into(), task_type: task.task_type, status, error, output: None })
    }

    pub(crate) fn answer_status(&mut self, member: Option<&str>) -> Result<String, SidecarError> {
        self.sidecar_call(member, "status".into())?;
        Ok(self.status.clone())
    }

    pub(crate) fn answer_healthz(&mut self) -> Result<bool, SidecarError> {
        self.sidecar_call(None, "healthz".into())?;
        Ok(self.healthz)
    }

    pub(crate) fn answer_node_id(&mut self, member: Option<&str>) -> Result<String, SidecarError> {
        self.sidecar_call(member, "node-id".into())?;
        Ok(self.node_id.clone())
    }
}

/// The installed mock host; reads what the guest did. Dropping it uninstalls the host.
pub struct MockGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

impl MockGuard {
    fn read<T>(&self, f: impl FnOnce(&MockHost) -> T) -> T {
        with_host(|h| f(h))
    }
    /// Every host call so far, in order (`get v1/ConfigMap x`, `sidecar submit-task ID TYPE`).
    pub fn calls(&self) -> Vec<String> {
        self.read(|h| h.calls.clone())
    }
    /// Every log line so far.
    pub fn logs(&self) -> Vec<String> {
        self.read(|h| h.logs.iter().map(|(_, m)| m.clone()).collect())
    }
    /// An object as it is now (after the guest's writes).
    pub fn object(&self, api_version: &str, kind: &str, name: &str) -> Option<Value> {
        self.read(|h| h.objects.get(&key_of(api_version, kind, name)).cloned())
    }
    /// Change the host between steps (e.g. the sidecar becomes `Ready`).
    pub fn update(&self, f: impl FnOnce(MockHost) -> MockHost) {
        with_host(|h| *h = f(h.clone()))
    }
}

impl Drop for MockGuard {
    fn drop(&mut self) {
        HOST.with(|h| *h.borrow_mut() = None);
    }
}
