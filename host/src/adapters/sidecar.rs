//! `SidecarClient`: the node sidecar's `/v0` HTTP API. `HttpSidecarClient` is
//! the real client (timeouts on every request, no redirects, answers capped at 1 MiB, every path
//! built segment by segment so a task id is always exactly one percent-encoded segment:
//! `task_id_is_one_path_segment`); `InMemorySidecar` follows the same semantics
//! (caller-chosen ids, idempotent re-submission, failed ids re-run on re-submit, healthz turns
//! 200 after `mark-ready`) for `task run`, tests and benchmarks.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// `POST /v0/tasks` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRequest {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<serde_json::Value>,
}

/// `GET /v0/tasks/{id}` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskResult {
    pub id: String,
    #[serde(rename = "type")]
    pub task_type: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What the sidecar reports the task produced (e.g. `{"genesisHash": …}`), if anything:
    /// kept as the JSON text it came as (checked, never parsed into a tree), so an answer costs
    /// the host its bytes and no more (`tests/hostile_review_2.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Box<serde_json::value::RawValue>>,
}

impl PartialEq for TaskResult {
    fn eq(&self, other: &Self) -> bool {
        let text = |r: &Option<Box<serde_json::value::RawValue>>| r.as_ref().map(|r| r.get().to_string());
        (&self.id, &self.task_type, &self.status, &self.error) == (&other.id, &other.task_type, &other.status, &other.error)
            && text(&self.result) == text(&other.result)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarAdapterError {
    #[error("not found")]
    NotFound,
    #[error("rejected: {0}")]
    Rejected(String),
    #[error("unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait SidecarClient: Send + Sync {
    async fn submit_task(&self, request: &TaskRequest) -> Result<String, SidecarAdapterError>;
    async fn get_task(&self, id: &str) -> Result<TaskResult, SidecarAdapterError>;
    async fn status(&self) -> Result<String, SidecarAdapterError>;
    async fn healthz(&self) -> Result<bool, SidecarAdapterError>;
    async fn node_id(&self) -> Result<String, SidecarAdapterError>;
}

/// The sidecars of a group's member SeiNodes, by node name (a group task's `member-sidecars`).
pub trait MemberSidecars: Send + Sync {
    /// The client of `node`'s sidecar; `None` when the node is not known (not a member, or not
    /// created yet).
    fn client_for(&self, node: &str) -> Option<Arc<dyn SidecarClient>>;
}

impl MemberSidecars for std::collections::BTreeMap<String, Arc<dyn SidecarClient>> {
    fn client_for(&self, node: &str) -> Option<Arc<dyn SidecarClient>> {
        self.get(node).cloned()
    }
}

/// HTTP client for one node's sidecar.
#[derive(Debug, Clone)]
pub struct HttpSidecarClient {
    base_url: reqwest::Url,
    http: reqwest::Client,
}

/// The reference's client timeout.
pub const DEFAULT_SIDECAR_TIMEOUT: Duration = Duration::from_secs(10);

impl HttpSidecarClient {
    /// The HTTP client sidecar clients use: no redirects (a sidecar is not trusted to send the
    /// controller elsewhere), `timeout` on every request. One is shared by every node's client
    /// (`node_sidecars::Sidecars`): one connection pool and one TLS configuration for all.
    pub fn http_client(timeout: Duration) -> Result<reqwest::Client, SidecarAdapterError> {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .build()
            .map_err(|e| SidecarAdapterError::Unavailable(format!("building the HTTP client: {e}")))
    }

    /// `base_url` like `http://rpc-0.rpc.sei.svc.cluster.local:7777` (no trailing `/v0`), with
    /// an HTTP client of its own.
    pub fn new(base_url: impl Into<String>, timeout: Duration) -> Result<Self, SidecarAdapterError> {
        Self::with_http(base_url, Self::http_client(timeout)?)
    }

    /// `base_url` through a shared HTTP client (from `http_client`).
    pub fn with_http(base_url: impl Into<String>, http: reqwest::Client) -> Result<Self, SidecarAdapterError> {
        let base = base_url.into();
        let base_url = reqwest::Url::parse(base.trim_end_matches('/'))
            .map_err(|e| SidecarAdapterError::Unavailable(format!("sidecar URL {base:?} is not a URL: {e}")))?;
        if base_url.cannot_be_a_base() || !matches!(base_url.scheme(), "http" | "https") {
            return Err(SidecarAdapterError::Unavailable(format!("sidecar URL {base:?} is not an http(s) base URL")));
        }
        Ok(Self { base_url, http })
    }

    /// The reference's pod DNS address of a node's sidecar.
    pub fn pod_dns_url(node: &str, namespace: &str, port: u16) -> String {
        format!("http://{node}-0.{node}.{namespace}.svc.cluster.local:{port}")
    }

    /// `<base>/v0/<segments…>`, each segment percent-encoded on its own (a `/`, `?` or `..` in
    /// one cannot change the path).
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base_url.clone();
        url.set_query(None);
        url.set_fragment(None);
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().push("v0");
            for s in segments {
                path.push(s);
            }
        }
        url
    }

    /// `<base>/v0/tasks/<id>`; an id that is not a path segment of its own (empty, `.`, `..`)
    /// is refused.
    fn task_url(&self, id: &str) -> Result<reqwest::Url, SidecarAdapterError> {
        if id.is_empty() || id == "." || id == ".." {
            return Err(SidecarAdapterError::Rejected(format!("task id {id:?} is not a path segment")));
        }
        Ok(self.url(&["tasks", id]))
    }

    async fn error_of(resp: reqwest::Response) -> SidecarAdapterError {
        let code = resp.status();
        #[derive(Deserialize)]
        struct ErrBody {
            error: Option<String>,
        }
        let body = read_capped(resp).await.unwrap_or_default();
        // Decode first, escape after: a JSON escape such as \u001b must not come back raw.
        let raw = String::from_utf8_lossy(&body);
        let msg =
            crate::text::safe(&serde_json::from_str::<ErrBody>(&raw).ok().and_then(|b| b.error).unwrap_or_else(|| raw.to_string()), 1024);
        if code == reqwest::StatusCode::NOT_FOUND {
            SidecarAdapterError::NotFound
        } else if code.is_client_error() {
            SidecarAdapterError::Rejected(format!("{code}: {msg}"))
        } else {
            SidecarAdapterError::Unavailable(format!("{code}: {msg}"))
        }
    }
}

fn transport(e: reqwest::Error) -> SidecarAdapterError {
    SidecarAdapterError::Unavailable(e.to_string())
}

/// Largest response body read from a sidecar.
pub const MAX_SIDECAR_BODY: usize = 1 << 20;

/// Read a response body, refusing one over [`MAX_SIDECAR_BODY`] without buffering it.
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, SidecarAdapterError> {
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if body.len() + chunk.len() > MAX_SIDECAR_BODY {
            return Err(SidecarAdapterError::Unavailable(format!("sidecar answer over {MAX_SIDECAR_BODY} bytes")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

async fn json_of<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, SidecarAdapterError> {
    let body = read_capped(resp).await?;
    serde_json::from_slice(&body).map_err(|e| SidecarAdapterError::Unavailable(format!("undecodable sidecar answer: {e}")))
}

#[async_trait]
impl SidecarClient for HttpSidecarClient {
    async fn submit_task(&self, request: &TaskRequest) -> Result<String, SidecarAdapterError> {
        let resp = self.http.post(self.url(&["tasks"])).json(request).send().await.map_err(transport)?;
        crate::failpoint::hit("sidecar-submit-sent");
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        Ok(json_of::<Id>(resp).await?.id)
    }

    async fn get_task(&self, id: &str) -> Result<TaskResult, SidecarAdapterError> {
        let resp = self.http.get(self.task_url(id)?).send().await.map_err(transport)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        json_of(resp).await
    }

    async fn status(&self) -> Result<String, SidecarAdapterError> {
        let resp = self.http.get(self.url(&["status"])).send().await.map_err(transport)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        #[derive(Deserialize)]
        struct Status {
            status: String,
        }
        Ok(json_of::<Status>(resp).await?.status)
    }

    async fn healthz(&self) -> Result<bool, SidecarAdapterError> {
        let resp = self.http.get(self.url(&["healthz"])).send().await.map_err(transport)?;
        match resp.status().as_u16() {
            200 => Ok(true),
            503 => Ok(false),
            _ => Err(Self::error_of(resp).await),
        }
    }

    async fn node_id(&self) -> Result<String, SidecarAdapterError> {
        let resp = self.http.get(self.url(&["node-id"])).send().await.map_err(transport)?;
        if !resp.status().is_success() {
            return Err(Self::error_of(resp).await);
        }
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct NodeId {
            node_id: String,
        }
        Ok(json_of::<NodeId>(resp).await?.node_id)
    }
}

/// What the in-memory sidecar does with a task type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Report `running` for this many polls, then `completed`.
    CompleteAfter(u32),
    /// Report `running` for this many polls, then `failed` with the message.
    FailAfter(u32, String),
    /// Stay `running` forever.
    Stall,
    /// Report `completed` at once, with no output (a sidecar that reports no result).
    CompleteWithoutOutput,
}

#[derive(Debug, Clone)]
struct Entry {
    request: TaskRequest,
    polls: u32,
    runs: u32,
    /// Submissions of this id after it had completed (a no-op, as in the real sidecar).
    after_completion: u32,
    result: Option<Box<serde_json::value::RawValue>>,
}

/// What the in-memory sidecar reports a completed task produced: a genesis assembly reports the
/// sha256 of the params it was given as its genesis hash (the real sidecar hashes the genesis).
fn result_of(request: &TaskRequest) -> Option<Box<serde_json::value::RawValue>> {
    use sha2::Digest;
    request.task_type.starts_with("assemble-").then(|| {
        let params = request.params.as_ref().map(|p| p.to_string()).unwrap_or_default();
        let result = serde_json::json!({"genesisHash": hex::encode(sha2::Sha256::digest(params.as_bytes()))});
        serde_json::value::to_raw_value(&result).ok()
    })?
}

/// An in-memory sidecar with scripted outcomes per task type (default: complete at once).
#[derive(Debug, Default)]
pub struct InMemorySidecar {
    scripts: Mutex<BTreeMap<String, Script>>,
    tasks: Mutex<BTreeMap<String, Entry>>,
    ready: Mutex<bool>,
    node_id: Option<String>,
    /// Answers set by a script (`task test`, `task run --sidecar-script`).
    status_word: Mutex<Option<String>>,
    healthz: Mutex<Option<bool>>,
    down: Mutex<Option<String>>,
}

impl InMemorySidecar {
    pub fn new() -> Self {
        Self::default()
    }

    /// A sidecar of the node `seed` names: its node id is the first 40 hex digits of
    /// sha256(`seed`), so every node of a test network has its own.
    pub fn for_node(seed: &str) -> Self {
        use sha2::Digest;
        let id = hex::encode(sha2::Sha256::digest(seed.as_bytes()))[..40].to_string();
        Self { node_id: Some(id), ..Self::default() }
    }

    pub fn script(&self, task_type: &str, script: Script) {
        self.scripts.lock().unwrap_or_else(|p| p.into_inner()).insert(task_type.into(), script);
    }

    /// `GET /v0/status` answers this from now on.
    pub fn set_status(&self, status: &str) {
        *self.status_word.lock().unwrap_or_else(|p| p.into_inner()) = Some(status.into());
    }

    /// `GET /v0/healthz` answers this from now on.
    pub fn set_healthz(&self, ready: bool) {
        *self.healthz.lock().unwrap_or_else(|p| p.into_inner()) = Some(ready);
    }

    /// Every call fails as `unavailable` with this message from now on (a sidecar that is down).
    pub fn set_down(&self, message: &str) {
        *self.down.lock().unwrap_or_else(|p| p.into_inner()) = Some(message.into());
    }

    fn check_up(&self) -> Result<(), SidecarAdapterError> {
        match &*self.down.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(m) => Err(SidecarAdapterError::Unavailable(m.clone())),
            None => Ok(()),
        }
    }

    /// How many times the task with this id was (re-)started.
    pub fn runs(&self, id: &str) -> u32 {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(id).map_or(0, |e| e.runs)
    }

    /// How many times the task with this id was submitted again after it had completed (it does
    /// not run again; a controller that lost the completion may do this, never under a new id).
    pub fn submitted_after_completion(&self, id: &str) -> u32 {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).get(id).map_or(0, |e| e.after_completion)
    }

    /// Drop a task, as a sidecar that restarted without its database would (tests).
    pub fn forget(&self, id: &str) {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Every request submitted so far, in id order.
    pub fn submitted(&self) -> Vec<TaskRequest> {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).values().map(|e| e.request.clone()).collect()
    }

    fn script_of(&self, task_type: &str) -> Script {
        self.scripts.lock().unwrap_or_else(|p| p.into_inner()).get(task_type).cloned().unwrap_or(Script::CompleteAfter(0))
    }

    fn status_of(&self, entry: &Entry) -> (String, Option<String>) {
        match self.script_of(&entry.request.task_type) {
            Script::CompleteAfter(n) if entry.polls >= n => ("completed".into(), None),
            Script::CompleteWithoutOutput => ("completed".into(), None),
            Script::FailAfter(n, msg) if entry.polls >= n => ("failed".into(), Some(msg)),
            _ => ("running".into(), None),
        }
    }
}

#[async_trait]
impl SidecarClient for InMemorySidecar {
    async fn submit_task(&self, request: &TaskRequest) -> Result<String, SidecarAdapterError> {
        self.check_up()?;
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let state = tasks.get(&request.id).map(|e| self.status_of(e).0);
        match state.as_deref() {
            None | Some("failed") => {
                let runs = tasks.get(&request.id).map_or(0, |e| e.runs) + 1;
                let entry = Entry { request: request.clone(), polls: 0, runs, after_completion: 0, result: result_of(request) };
                tasks.insert(request.id.clone(), entry);
            }
            Some("completed") => {
                if let Some(e) = tasks.get_mut(&request.id) {
                    e.after_completion += 1;
                }
            }
            _ => {}
        }
        Ok(request.id.clone())
    }

    async fn get_task(&self, id: &str) -> Result<TaskResult, SidecarAdapterError> {
        self.check_up()?;
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        let entry = tasks.get_mut(id).ok_or(SidecarAdapterError::NotFound)?;
        let (status, error) = self.status_of(entry);
        entry.polls += 1;
        if status == "completed" && entry.request.task_type == "mark-ready" {
            *self.ready.lock().unwrap_or_else(|p| p.into_inner()) = true;
        }
        let quiet = matches!(self.script_of(&entry.request.task_type), Script::CompleteWithoutOutput);
        let result = (status == "completed" && !quiet).then(|| entry.result.clone()).flatten();
        Ok(TaskResult { id: id.into(), task_type: entry.request.task_type.clone(), status, error, result })
    }

    async fn status(&self) -> Result<String, SidecarAdapterError> {
        self.check_up()?;
        if let Some(s) = &*self.status_word.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(s.clone());
        }
        Ok(if *self.ready.lock().unwrap_or_else(|p| p.into_inner()) { "Ready" } else { "Initializing" }.into())
    }

    async fn healthz(&self) -> Result<bool, SidecarAdapterError> {
        self.check_up()?;
        if let Some(h) = *self.healthz.lock().unwrap_or_else(|p| p.into_inner()) {
            return Ok(h);
        }
        Ok(*self.ready.lock().unwrap_or_else(|p| p.into_inner()))
    }

    async fn node_id(&self) -> Result<String, SidecarAdapterError> {
        self.check_up()?;
        Ok(self.node_id.clone().unwrap_or_else(|| "0123456789abcdef0123456789abcdef01234567".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(id: &str, ty: &str) -> TaskRequest {
        TaskRequest { id: id.into(), task_type: ty.into(), params: None }
    }

    #[tokio::test]
    async fn resubmitting_a_running_id_is_a_no_op() {
        let s = InMemorySidecar::new();
        s.script("snapshot-restore", Script::CompleteAfter(2));
        s.submit_task(&req("a", "snapshot-restore")).await.unwrap();
        assert_eq!(s.get_task("a").await.unwrap().status, "running");
        s.submit_task(&req("a", "snapshot-restore")).await.unwrap();
        assert_eq!(s.runs("a"), 1);
        assert_eq!(s.get_task("a").await.unwrap().status, "running");
        assert_eq!(s.get_task("a").await.unwrap().status, "completed");
        assert_eq!(s.submitted_after_completion("a"), 0);
        s.submit_task(&req("a", "snapshot-restore")).await.unwrap();
        assert_eq!((s.runs("a"), s.submitted_after_completion("a")), (1, 1), "a completed id does not run again; counted");
    }

    #[tokio::test]
    async fn resubmitting_a_failed_id_runs_it_again() {
        let s = InMemorySidecar::new();
        s.script("config-apply", Script::FailAfter(0, "bad config".into()));
        s.submit_task(&req("a", "config-apply")).await.unwrap();
        let r = s.get_task("a").await.unwrap();
        assert_eq!((r.status.as_str(), r.error.as_deref()), ("failed", Some("bad config")));
        s.submit_task(&req("a", "config-apply")).await.unwrap();
        assert_eq!(s.runs("a"), 2);
    }

    #[tokio::test]
    async fn healthz_turns_ready_after_mark_ready() {
        let s = InMemorySidecar::new();
        assert!(!s.healthz().await.unwrap());
        s.submit_task(&req("m", "mark-ready")).await.unwrap();
        s.get_task("m").await.unwrap();
        assert!(s.healthz().await.unwrap());
        assert_eq!(s.status().await.unwrap(), "Ready");
    }

    #[tokio::test]
    async fn unknown_id_is_not_found() {
        assert_eq!(InMemorySidecar::new().get_task("x").await, Err(SidecarAdapterError::NotFound));
    }

    #[test]
    fn task_id_is_one_path_segment() {
        let c = HttpSidecarClient::new("http://127.0.0.1:9/nodes/sei/rpc/", DEFAULT_SIDECAR_TIMEOUT).unwrap();
        assert_eq!(
            c.url(&["tasks", "7f0c2a4e-0000-5000-8000-000000000001"]).as_str(),
            "http://127.0.0.1:9/nodes/sei/rpc/v0/tasks/7f0c2a4e-0000-5000-8000-000000000001"
        );
        for bad in ["", ".", ".."] {
            assert!(c.task_url(bad).is_err(), "{bad:?}");
        }
        for hostile in ["../../other/rpc/v0/tasks/x", "x?admin=1", "x#f", "a/b", "%2e%2e"] {
            let url = c.task_url(hostile).unwrap();
            assert!(url.path().starts_with("/nodes/sei/rpc/v0/tasks/"), "{hostile}: {url}");
            assert_eq!(url.path_segments().unwrap().count(), 6, "{hostile}: {url}");
            assert_eq!(url.query(), None, "{hostile}: {url}");
        }
        let pod = HttpSidecarClient::new(HttpSidecarClient::pod_dns_url("rpc", "sei", 7777), DEFAULT_SIDECAR_TIMEOUT).unwrap();
        assert_eq!(pod.url(&["status"]).as_str(), "http://rpc-0.rpc.sei.svc.cluster.local:7777/v0/status");
        assert!(HttpSidecarClient::new("not a url", DEFAULT_SIDECAR_TIMEOUT).is_err());
    }

    #[test]
    fn task_request_uses_the_wire_keys() {
        let r = TaskRequest { id: "i".into(), task_type: "config-apply".into(), params: Some(serde_json::json!({"mode":"full"})) };
        assert_eq!(serde_json::to_value(&r).unwrap(), serde_json::json!({"id":"i","type":"config-apply","params":{"mode":"full"}}));
        let bare = TaskRequest { id: "i".into(), task_type: "mark-ready".into(), params: None };
        assert_eq!(serde_json::to_string(&bare).unwrap(), r#"{"id":"i","type":"mark-ready"}"#);
    }
}
