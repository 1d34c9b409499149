//! Record and replay the host calls of a task run.
//!
//! `RecordingKube` and `RecordingSidecar` wrap any adapter (a real API server, a real sidecar,
//! or the in-memory ones) and append every call with its answer to a [`Tape`]. `ReplayKube` and
//! `ReplaySidecar` answer from a recorded tape, with no network: each call takes the first unused
//! recorded exchange with the same call (same verb, object and body), so a replay is
//! deterministic; a call the recording does not have is answered `unavailable` and shows in the
//! diff. [`diff_calls`] lines up the recorded calls and the replayed ones (longest common
//! subsequence) and names, for a write of the same object with another body, the fields that
//! changed.
//!
//! The `sei.io/module-digest` annotation the host stamps on every write is left out of the
//! comparison: a new module version always has a new digest.
//!
//! Guarded by `replay_answers_in_order_and_reports_unrecorded_calls`,
//! `diff_names_the_changed_field_of_a_write` (below) and `tests/author_kit.rs`.

use crate::adapters::kube::{KubeAdapter, KubeAdapterError, ListLimits, Listed, TypeRef};
use crate::adapters::sidecar::{SidecarAdapterError, SidecarClient, TaskRequest, TaskResult};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// The annotation the host writes on every object; not part of a call's identity.
const DIGEST_ANNOTATION: &str = "sei.io/module-digest";

/// One host call, as the adapters see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "call", rename_all = "kebab-case")]
pub enum Call {
    Get { api_version: String, kind: String, namespace: String, name: String },
    List { api_version: String, kind: String, namespace: String, label_selector: Option<String> },
    Create { api_version: String, kind: String, namespace: String, object: Value },
    Apply { api_version: String, kind: String, namespace: String, name: String, object: Value },
    Delete { api_version: String, kind: String, namespace: String, name: String },
    SubmitTask { request: TaskRequest },
    GetTask { id: String },
    Status,
    Healthz,
    NodeId,
}

impl Call {
    fn get(ty: &TypeRef, namespace: &str, name: &str) -> Call {
        Call::Get { api_version: ty.api_version.clone(), kind: ty.kind.clone(), namespace: namespace.into(), name: name.into() }
    }
    fn list(ty: &TypeRef, namespace: &str, label_selector: Option<&str>) -> Call {
        Call::List {
            api_version: ty.api_version.clone(),
            kind: ty.kind.clone(),
            namespace: namespace.into(),
            label_selector: label_selector.map(str::to_string),
        }
    }
    fn create(ty: &TypeRef, namespace: &str, object: Value) -> Call {
        Call::Create { api_version: ty.api_version.clone(), kind: ty.kind.clone(), namespace: namespace.into(), object }
    }
    fn apply(ty: &TypeRef, namespace: &str, name: &str, object: Value) -> Call {
        Call::Apply { api_version: ty.api_version.clone(), kind: ty.kind.clone(), namespace: namespace.into(), name: name.into(), object }
    }
    fn delete(ty: &TypeRef, namespace: &str, name: &str) -> Call {
        Call::Delete { api_version: ty.api_version.clone(), kind: ty.kind.clone(), namespace: namespace.into(), name: name.into() }
    }

    /// One line for humans: `apply v1/ConfigMap sei/x`.
    pub fn line(&self) -> String {
        match self {
            Call::Get { api_version, kind, namespace, name } => format!("kube get {api_version}/{kind} {namespace}/{name}"),
            Call::List { api_version, kind, namespace, label_selector } => {
                format!("kube list {api_version}/{kind} {namespace} {}", label_selector.as_deref().unwrap_or("")).trim_end().to_string()
            }
            Call::Create { api_version, kind, namespace, object } => {
                format!(
                    "kube create {api_version}/{kind} {namespace}/{}",
                    object.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("?")
                )
            }
            Call::Apply { api_version, kind, namespace, name, .. } => format!("kube apply {api_version}/{kind} {namespace}/{name}"),
            Call::Delete { api_version, kind, namespace, name } => format!("kube delete {api_version}/{kind} {namespace}/{name}"),
            Call::SubmitTask { request } => format!("sidecar submit-task {} {}", request.task_type, request.id),
            Call::GetTask { id } => format!("sidecar get-task {id}"),
            Call::Status => "sidecar status".into(),
            Call::Healthz => "sidecar healthz".into(),
            Call::NodeId => "sidecar node-id".into(),
        }
    }

    /// The body a write carries (create, apply, submit-task), if any.
    pub fn body(&self) -> Option<Value> {
        match self {
            Call::Create { object, .. } | Call::Apply { object, .. } => Some(object.clone()),
            Call::SubmitTask { request } => request.params.clone(),
            _ => None,
        }
    }

    /// Does the call change something (a write, a delete, a sidecar submission)?
    pub fn is_write(&self) -> bool {
        matches!(self, Call::Create { .. } | Call::Apply { .. } | Call::Delete { .. } | Call::SubmitTask { .. })
    }

    /// The identity a replay matches on: the call with the host's digest annotation removed.
    fn key(&self) -> String {
        let mut c = self.clone();
        if let Call::Create { object, .. } | Call::Apply { object, .. } = &mut c {
            strip_digest(object);
        }
        serde_json::to_string(&c).unwrap_or_default()
    }
}

fn strip_digest(object: &mut Value) {
    if let Some(annotations) = object.pointer_mut("/metadata/annotations").and_then(Value::as_object_mut) {
        annotations.remove(DIGEST_ANNOTATION);
        if annotations.is_empty()
            && let Some(meta) = object.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
}

/// What a call answered: a JSON value, or an error kind and message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Answer {
    Ok(Value),
    Err { error: String, message: String },
}

/// One call and its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Exchange {
    pub call: Call,
    pub answer: Answer,
}

/// The most exchanges a tape keeps (a run of many steps of a module that loops on host
/// calls); the rest are counted in [`Tape::dropped`].
pub const MAX_EXCHANGES: usize = 10_000;
/// Above this many cells (recorded × replayed calls) the diff pairs calls by position instead
/// of computing the longest common subsequence (whose table is that many `u32`s).
const MAX_LCS_CELLS: usize = 4_000_000;

#[derive(Debug, Default)]
struct TapeInner {
    exchanges: Vec<Exchange>,
    dropped: usize,
}

/// The calls of a run, in order; shared by the recording adapters. Bounded by [`MAX_EXCHANGES`].
#[derive(Debug, Clone, Default)]
pub struct Tape(Arc<Mutex<TapeInner>>);

impl Tape {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn push(&self, call: Call, answer: Answer) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if t.exchanges.len() < MAX_EXCHANGES {
            t.exchanges.push(Exchange { call, answer });
        } else {
            t.dropped += 1;
        }
    }
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).exchanges.clone()
    }
    /// Exchanges past [`MAX_EXCHANGES`], not kept.
    pub fn dropped(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).dropped
    }
    pub fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).exchanges.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn kube_err(e: &KubeAdapterError) -> Answer {
    let (error, message) = match e {
        KubeAdapterError::NotFound => ("not-found", String::new()),
        KubeAdapterError::Conflict(m) => ("conflict", m.clone()),
        KubeAdapterError::Forbidden(m) => ("forbidden", m.clone()),
        KubeAdapterError::Refused(m) => ("refused", m.clone()),
        KubeAdapterError::Invalid(m) => ("invalid", m.clone()),
        KubeAdapterError::Unavailable(m) => ("unavailable", m.clone()),
    };
    Answer::Err { error: error.into(), message }
}

fn kube_err_of(error: &str, message: &str) -> KubeAdapterError {
    match error {
        "not-found" => KubeAdapterError::NotFound,
        "conflict" => KubeAdapterError::Conflict(message.into()),
        "forbidden" => KubeAdapterError::Forbidden(message.into()),
        "refused" => KubeAdapterError::Refused(message.into()),
        "invalid" => KubeAdapterError::Invalid(message.into()),
        _ => KubeAdapterError::Unavailable(message.into()),
    }
}

fn sidecar_err(e: &SidecarAdapterError) -> Answer {
    let (error, message) = match e {
        SidecarAdapterError::NotFound => ("not-found", String::new()),
        SidecarAdapterError::Rejected(m) => ("rejected", m.clone()),
        SidecarAdapterError::Unavailable(m) => ("unavailable", m.clone()),
    };
    Answer::Err { error: error.into(), message }
}

fn sidecar_err_of(error: &str, message: &str) -> SidecarAdapterError {
    match error {
        "not-found" => SidecarAdapterError::NotFound,
        "rejected" => SidecarAdapterError::Rejected(message.into()),
        _ => SidecarAdapterError::Unavailable(message.into()),
    }
}

/// JSON text from an adapter, as a value on the tape (text that is not JSON is kept as a string).
fn value_of_text(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
}

fn text_of_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Records every Kubernetes call `inner` answers.
pub struct RecordingKube {
    pub inner: Arc<dyn KubeAdapter>,
    pub tape: Tape,
}

#[async_trait]
impl KubeAdapter for RecordingKube {
    async fn get(&self, ty: &TypeRef, namespace: &str, name: &str) -> Result<Option<String>, KubeAdapterError> {
        let res = self.inner.get(ty, namespace, name).await;
        let call = Call::get(ty, namespace, name);
        let answer = match &res {
            Ok(Some(t)) => Answer::Ok(value_of_text(t)),
            Ok(None) => Answer::Ok(Value::Null),
            Err(e) => kube_err(e),
        };
        self.tape.push(call, answer);
        res
    }

    async fn list(&self, ty: &TypeRef, namespace: &str, label_selector: Option<&str>, limits: ListLimits) -> Listed {
        let listed = self.inner.list(ty, namespace, label_selector, limits).await;
        let call = Call::list(ty, namespace, label_selector);
        let answer = match &listed.result {
            Ok(items) => Answer::Ok(Value::Array(items.iter().map(|t| value_of_text(t)).collect())),
            Err(e) => kube_err(e),
        };
        self.tape.push(call, answer);
        listed
    }

    async fn create(&self, ty: &TypeRef, namespace: &str, object: Value, field_manager: &str) -> Result<String, KubeAdapterError> {
        let call = Call::create(ty, namespace, object.clone());
        let res = self.inner.create(ty, namespace, object, field_manager).await;
        self.tape.push(call, res.as_ref().map_or_else(kube_err, |t| Answer::Ok(value_of_text(t))));
        res
    }

    async fn apply(
        &self,
        ty: &TypeRef,
        namespace: &str,
        name: &str,
        object: Value,
        field_manager: &str,
    ) -> Result<String, KubeAdapterError> {
        let call = Call::apply(ty, namespace, name, object.clone());
        let res = self.inner.apply(ty, namespace, name, object, field_manager).await;
        self.tape.push(call, res.as_ref().map_or_else(kube_err, |t| Answer::Ok(value_of_text(t))));
        res
    }

    async fn delete(&self, ty: &TypeRef, namespace: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError> {
        let res = self.inner.delete(ty, namespace, name, uid).await;
        let call = Call::delete(ty, namespace, name);
        self.tape.push(call, res.as_ref().map_or_else(kube_err, |b| Answer::Ok(Value::Bool(*b))));
        res
    }
}

/// Records every sidecar call `inner` answers.
pub struct RecordingSidecar {
    pub inner: Arc<dyn SidecarClient>,
    pub tape: Tape,
}

fn to_value<T: Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

#[async_trait]
impl SidecarClient for RecordingSidecar {
    async fn submit_task(&self, request: &TaskRequest) -> Result<String, SidecarAdapterError> {
        let res = self.inner.submit_task(request).await;
        self.tape.push(
            Call::SubmitTask { request: request.clone() },
            res.as_ref().map_or_else(sidecar_err, |id| Answer::Ok(Value::String(id.clone()))),
        );
        res
    }
    async fn get_task(&self, id: &str) -> Result<TaskResult, SidecarAdapterError> {
        let res = self.inner.get_task(id).await;
        self.tape.push(Call::GetTask { id: id.into() }, res.as_ref().map_or_else(sidecar_err, |t| Answer::Ok(to_value(t))));
        res
    }
    async fn status(&self) -> Result<String, SidecarAdapterError> {
        let res = self.inner.status().await;
        self.tape.push(Call::Status, res.as_ref().map_or_else(sidecar_err, |s| Answer::Ok(Value::String(s.clone()))));
        res
    }
    async fn healthz(&self) -> Result<bool, SidecarAdapterError> {
        let res = self.inner.healthz().await;
        self.tape.push(Call::Healthz, res.as_ref().map_or_else(sidecar_err, |b| Answer::Ok(Value::Bool(*b))));
        res
    }
    async fn node_id(&self) -> Result<String, SidecarAdapterError> {
        let res = self.inner.node_id().await;
        self.tape.push(Call::NodeId, res.as_ref().map_or_else(sidecar_err, |s| Answer::Ok(Value::String(s.clone()))));
        res
    }
}

/// Answers calls from a recorded tape; records the calls it was asked (for the diff).
pub struct Replay {
    recorded: Mutex<Vec<(String, Exchange, bool)>>,
    /// The calls the replayed module made.
    pub made: Tape,
}

/// The message of the `unavailable` answer to a call the recording does not have.
pub const NOT_RECORDED: &str = "this call is not in the recording";

impl Replay {
    pub fn new(recorded: Vec<Exchange>) -> Arc<Self> {
        Arc::new(Self { recorded: Mutex::new(recorded.into_iter().map(|e| (e.call.key(), e, false)).collect()), made: Tape::new() })
    }

    /// The recorded answer of the first unused exchange with this call; for a write with
    /// another body, that of the first unused write of the same object (so the run goes on and
    /// the diff shows the change); `None` if there is neither.
    fn answer(&self, call: Call) -> Option<Answer> {
        let key = call.key();
        let line = call.line();
        let mut recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner());
        let exact = recorded.iter().position(|(k, _, used)| !*used && *k == key);
        let same_object = || recorded.iter().position(|(_, e, used)| !*used && call.body().is_some() && e.call.line() == line);
        let found = exact.or_else(same_object).map(|i| {
            recorded[i].2 = true;
            recorded[i].1.answer.clone()
        });
        let answer = found.clone().unwrap_or_else(|| Answer::Err { error: "unavailable".into(), message: NOT_RECORDED.into() });
        self.made.push(call, answer);
        found
    }
}

fn kube_answer(a: Option<Answer>) -> Result<Value, KubeAdapterError> {
    match a {
        Some(Answer::Ok(v)) => Ok(v),
        Some(Answer::Err { error, message }) => Err(kube_err_of(&error, &message)),
        None => Err(KubeAdapterError::Unavailable(NOT_RECORDED.into())),
    }
}

fn sidecar_answer(a: Option<Answer>) -> Result<Value, SidecarAdapterError> {
    match a {
        Some(Answer::Ok(v)) => Ok(v),
        Some(Answer::Err { error, message }) => Err(sidecar_err_of(&error, &message)),
        None => Err(SidecarAdapterError::Unavailable(NOT_RECORDED.into())),
    }
}

/// The Kubernetes side of a replay.
pub struct ReplayKube(pub Arc<Replay>);
/// The sidecar side of a replay.
pub struct ReplaySidecar(pub Arc<Replay>);

#[async_trait]
impl KubeAdapter for ReplayKube {
    async fn get(&self, ty: &TypeRef, namespace: &str, name: &str) -> Result<Option<String>, KubeAdapterError> {
        let call = Call::get(ty, namespace, name);
        kube_answer(self.0.answer(call)).map(|v| (!v.is_null()).then(|| text_of_value(&v)))
    }
    async fn list(&self, ty: &TypeRef, namespace: &str, label_selector: Option<&str>, _limits: ListLimits) -> Listed {
        let call = Call::list(ty, namespace, label_selector);
        let result =
            kube_answer(self.0.answer(call)).map(|v| v.as_array().map(|a| a.iter().map(text_of_value).collect()).unwrap_or_default());
        Listed { result, requests: 1 }
    }
    async fn create(&self, ty: &TypeRef, namespace: &str, object: Value, _field_manager: &str) -> Result<String, KubeAdapterError> {
        let call = Call::create(ty, namespace, object);
        kube_answer(self.0.answer(call)).map(|v| text_of_value(&v))
    }
    async fn apply(
        &self,
        ty: &TypeRef,
        namespace: &str,
        name: &str,
        object: Value,
        _field_manager: &str,
    ) -> Result<String, KubeAdapterError> {
        let call = Call::apply(ty, namespace, name, object);
        kube_answer(self.0.answer(call)).map(|v| text_of_value(&v))
    }
    async fn delete(&self, ty: &TypeRef, namespace: &str, name: &str, _uid: Option<&str>) -> Result<bool, KubeAdapterError> {
        let call = Call::delete(ty, namespace, name);
        kube_answer(self.0.answer(call)).map(|v| v.as_bool().unwrap_or(false))
    }
}

#[async_trait]
impl SidecarClient for ReplaySidecar {
    async fn submit_task(&self, request: &TaskRequest) -> Result<String, SidecarAdapterError> {
        sidecar_answer(self.0.answer(Call::SubmitTask { request: request.clone() })).map(|v| text_of_value(&v))
    }
    async fn get_task(&self, id: &str) -> Result<TaskResult, SidecarAdapterError> {
        let v = sidecar_answer(self.0.answer(Call::GetTask { id: id.into() }))?;
        serde_json::from_value(v).map_err(|e| SidecarAdapterError::Unavailable(format!("recorded answer unreadable: {e}")))
    }
    async fn status(&self) -> Result<String, SidecarAdapterError> {
        sidecar_answer(self.0.answer(Call::Status)).map(|v| text_of_value(&v))
    }
    async fn healthz(&self) -> Result<bool, SidecarAdapterError> {
        sidecar_answer(self.0.answer(Call::Healthz)).map(|v| v.as_bool().unwrap_or(false))
    }
    async fn node_id(&self) -> Result<String, SidecarAdapterError> {
        sidecar_answer(self.0.answer(Call::NodeId)).map(|v| text_of_value(&v))
    }
}

/// One line of a diff between recorded and replayed calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum DiffLine {
    /// The same call in both.
    Same { call: String },
    /// Only in the recording.
    Removed { call: String },
    /// Only in the replay.
    Added { call: String },
    /// The same write with another body; the JSON paths whose values differ.
    Changed { call: String, fields: Vec<String> },
}

/// Line up recorded and replayed calls (longest common subsequence on the call identity); a
/// removed and an added write of the same object next to each other become one `Changed`.
pub fn diff_calls(recorded: &[Call], replayed: &[Call]) -> Vec<DiffLine> {
    let a: Vec<String> = recorded.iter().map(Call::key).collect();
    let b: Vec<String> = replayed.iter().map(Call::key).collect();
    let (n, m) = (a.len(), b.len());
    if n.saturating_mul(m) > MAX_LCS_CELLS {
        return diff_by_position(recorded, replayed, &a, &b);
    }
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] { lcs[i + 1][j + 1] + 1 } else { lcs[i + 1][j].max(lcs[i][j + 1]) };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out: Vec<DiffLine> = Vec::new();
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            out.push(DiffLine::Same { call: recorded[i].line() });
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            // Removals first, so that an added write right after can pair with a removed one.
            out.push(DiffLine::Removed { call: recorded[i].line() });
            i += 1;
        } else {
            let added = &replayed[j];
            // A removed write of the same object just before: a changed body.
            match out.last() {
                Some(DiffLine::Removed { call }) if *call == added.line() && added.body().is_some() => {
                    let before = recorded[..i].iter().rev().find(|c| c.line() == added.line()).and_then(Call::body);
                    let fields = changed_fields(before.as_ref().unwrap_or(&Value::Null), &added.body().unwrap_or(Value::Null));
                    out.pop();
                    out.push(DiffLine::Changed { call: added.line(), fields });
                }
                _ => out.push(DiffLine::Added { call: added.line() }),
            }
            j += 1;
        }
    }
    out
}

/// The i-th recorded call against the i-th replayed one (for runs too long for the LCS table).
fn diff_by_position(recorded: &[Call], replayed: &[Call], a: &[String], b: &[String]) -> Vec<DiffLine> {
    let mut out = Vec::new();
    for i in 0..recorded.len().max(replayed.len()) {
        match (recorded.get(i), replayed.get(i)) {
            (Some(r), Some(_)) if a[i] == b[i] => out.push(DiffLine::Same { call: r.line() }),
            (Some(r), Some(p)) if r.line() == p.line() && p.body().is_some() => out.push(DiffLine::Changed {
                call: p.line(),
                fields: changed_fields(&r.body().unwrap_or(Value::Null), &p.body().unwrap_or(Value::Null)),
            }),
            (r, p) => {
                if let Some(r) = r {
                    out.push(DiffLine::Removed { call: r.line() });
                }
                if let Some(p) = p {
                    out.push(DiffLine::Added { call: p.line() });
                }
            }
        }
    }
    out
}

/// The JSON paths (`/data/status`) where two values differ, leaving out the digest annotation.
pub fn changed_fields(before: &Value, after: &Value) -> Vec<String> {
    let (mut b, mut a) = (before.clone(), after.clone());
    strip_digest(&mut b);
    strip_digest(&mut a);
    let mut out = Vec::new();
    walk(&b, &a, String::new(), &mut out);
    out
}

fn walk(b: &Value, a: &Value, path: String, out: &mut Vec<String>) {
    match (b, a) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let p = format!("{path}/{}", k.replace('~', "~0").replace('/', "~1"));
                walk(x.get(k).unwrap_or(&Value::Null), y.get(k).unwrap_or(&Value::Null), p, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                walk(p, q, format!("{path}/{i}"), out);
            }
        }
        _ if b != a => out.push(if path.is_empty() { "/".into() } else { path }),
        _ => {}
    }
}

/// Is there any difference?
pub fn has_difference(diff: &[DiffLine]) -> bool {
    diff.iter().any(|d| !matches!(d, DiffLine::Same { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn apply(data: &str, digest: &str) -> Call {
        Call::Apply {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: "sei".into(),
            name: "x".into(),
            object: json!({"metadata": {"name": "x", "annotations": {DIGEST_ANNOTATION: digest}}, "data": {"status": data}}),
        }
    }

    #[tokio::test]
    async fn replay_answers_in_order_and_reports_unrecorded_calls() {
        let replay = Replay::new(vec![
            Exchange { call: Call::Status, answer: Answer::Ok(json!("Initializing")) },
            Exchange { call: Call::Status, answer: Answer::Ok(json!("Ready")) },
            Exchange { call: Call::NodeId, answer: Answer::Err { error: "unavailable".into(), message: "down".into() } },
        ]);
        let sidecar = ReplaySidecar(replay.clone());
        assert_eq!(sidecar.status().await.unwrap(), "Initializing");
        assert_eq!(sidecar.status().await.unwrap(), "Ready");
        assert_eq!(sidecar.status().await, Err(SidecarAdapterError::Unavailable(NOT_RECORDED.into())));
        assert_eq!(sidecar.node_id().await, Err(SidecarAdapterError::Unavailable("down".into())));
        assert_eq!(replay.made.len(), 4);
        // A write with another body gets the answer of the recorded write of the same object.
        let changed = Replay::new(vec![Exchange { call: apply("Ready", "a"), answer: Answer::Ok(json!({"kind": "ConfigMap"})) }]);
        assert_eq!(changed.answer(apply("Busy", "b")), Some(Answer::Ok(json!({"kind": "ConfigMap"}))));
        assert_eq!(changed.answer(apply("Busy", "b")), None, "each recorded exchange answers once");
        let kube = ReplayKube(Replay::new(vec![Exchange {
            call: Call::Get { api_version: "v1".into(), kind: "ConfigMap".into(), namespace: "sei".into(), name: "x".into() },
            answer: Answer::Ok(Value::Null),
        }]));
        let cm = TypeRef { api_version: "v1".into(), kind: "ConfigMap".into() };
        assert_eq!(kube.get(&cm, "sei", "x").await, Ok(None));
    }

    #[test]
    fn a_write_matches_across_module_digests() {
        assert_eq!(apply("Ready", "aaa").key(), apply("Ready", "bbb").key());
        assert_ne!(apply("Ready", "aaa").key(), apply("Busy", "aaa").key());
    }

    #[test]
    fn diff_names_the_changed_field_of_a_write() {
        let recorded = vec![Call::Status, apply("Ready", "aaa")];
        let same = diff_calls(&recorded, &[Call::Status, apply("Ready", "bbb")]);
        assert!(!has_difference(&same), "{same:?}");
        let changed = diff_calls(&recorded, &[Call::Status, apply("Ready!", "bbb")]);
        assert_eq!(changed[1], DiffLine::Changed { call: "kube apply v1/ConfigMap sei/x".into(), fields: vec!["/data/status".into()] });
        let long: Vec<Call> = (0..3000).map(|_| Call::Status).collect();
        let mut longer = long.clone();
        longer.push(Call::NodeId);
        let by_position = diff_calls(&long, &longer);
        assert_eq!(by_position.len(), 3001, "a long run is compared call by call");
        assert_eq!(by_position[3000], DiffLine::Added { call: "sidecar node-id".into() });
        let more = diff_calls(&recorded, &[Call::Status, Call::NodeId, apply("Ready", "a")]);
        assert_eq!(more[1], DiffLine::Added { call: "sidecar node-id".into() });
        let fewer = diff_calls(&recorded, &[apply("Ready", "a")]);
        assert_eq!(fewer[0], DiffLine::Removed { call: "sidecar status".into() });
    }
}
