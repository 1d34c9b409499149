//! A test sidecar: the node sidecar's `/v0` API for any number of nodes, each under
//! `/nodes/{namespace}/{name}`, with the semantics of `InMemorySidecar` (caller-chosen ids,
//! idempotent re-submission, failed ids re-run on re-submit, `healthz` 200 after `mark-ready`) and
//! a script per task type (complete after N polls, fail with a message, stall).
//!
//! Faults per node ([`TestSidecar::fault`]): down (503), hanging (no answer), garbage (an answer
//! that is not JSON), oversized (2 MiB), slow (every answer delayed); and a task can be lost
//! ([`InMemorySidecar::forget`]).
//!
//! The controller reaches it with `--sidecar-url-template 'http://127.0.0.1:PORT/nodes/{namespace}/{name}'`.
//! Tests script it in process ([`TestSidecar::script`]); the binary takes `--script type=spec`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sei_operator::adapters::sidecar::{InMemorySidecar, Script, SidecarAdapterError, SidecarClient, TaskRequest};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Inner {
    scripts: Mutex<BTreeMap<String, Script>>,
    nodes: Mutex<BTreeMap<(String, String), Arc<InMemorySidecar>>>,
    faults: Mutex<BTreeMap<(String, String), Fault>>,
}

/// How one node's sidecar misbehaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// 503 to everything (a sidecar that is down).
    Down,
    /// Never answers (the client's timeout ends each request).
    Hang,
    /// The request is served, and then its answer is replaced by a body that is not JSON (a
    /// task accepted, its answer unreadable).
    Garbage,
    /// 200 with a 2 MiB body.
    Oversized,
    /// Every answer after this delay.
    Slow(std::time::Duration),
}

/// Answer as the node's fault says, or pass the request on.
async fn faults(State(s): State<TestSidecar>, req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut parts = req.uri().path().trim_start_matches('/').split('/');
    let key = match (parts.next(), parts.next(), parts.next()) {
        (Some("nodes"), Some(ns), Some(name)) => (ns.to_string(), name.to_string()),
        _ => return next.run(req).await,
    };
    let fault = s.inner.faults.lock().unwrap_or_else(|p| p.into_inner()).get(&key).cloned();
    match fault {
        None => next.run(req).await,
        Some(Fault::Down) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error": "sidecar down"}))).into_response(),
        Some(Fault::Hang) => {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        Some(Fault::Garbage) => {
            let _served = next.run(req).await;
            (StatusCode::OK, "{\"id\": \u{1b}[31m not json").into_response()
        }
        Some(Fault::Oversized) => (StatusCode::OK, "a".repeat(2 << 20)).into_response(),
        Some(Fault::Slow(d)) => {
            tokio::time::sleep(d).await;
            next.run(req).await
        }
    }
}

/// A running test sidecar.
#[derive(Clone)]
pub struct TestSidecar {
    inner: Arc<Inner>,
    port: u16,
}

/// Parse `complete:N`, `fail:N:message` or `stall`.
pub fn parse_script(spec: &str) -> Result<Script, String> {
    let mut parts = spec.splitn(3, ':');
    match (parts.next(), parts.next(), parts.next()) {
        (Some("complete"), n, None) => Ok(Script::CompleteAfter(n.unwrap_or("0").parse().map_err(|e| format!("{spec}: {e}"))?)),
        (Some("fail"), Some(n), msg) => {
            Ok(Script::FailAfter(n.parse().map_err(|e| format!("{spec}: {e}"))?, msg.unwrap_or("scripted failure").to_string()))
        }
        (Some("stall"), None, None) => Ok(Script::Stall),
        _ => Err(format!("unknown script {spec:?}: use complete:N, fail:N:message or stall")),
    }
}

impl TestSidecar {
    /// Serve on 127.0.0.1 (port 0: any free port) on the current tokio runtime.
    pub async fn start(port: u16) -> std::io::Result<TestSidecar> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        let port = listener.local_addr()?.port();
        let sidecar = TestSidecar { inner: Arc::default(), port };
        let app = Router::new()
            .route("/nodes/{ns}/{name}/v0/tasks", post(submit))
            .route("/nodes/{ns}/{name}/v0/tasks/{id}", get(get_task))
            .route("/nodes/{ns}/{name}/v0/status", get(status))
            .route("/nodes/{ns}/{name}/v0/healthz", get(healthz))
            .route("/nodes/{ns}/{name}/v0/livez", get(|| async { StatusCode::OK }))
            .route("/nodes/{ns}/{name}/v0/node-id", get(node_id))
            .layer(axum::middleware::from_fn_with_state(sidecar.clone(), faults))
            .with_state(sidecar.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(sidecar)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The controller's `--sidecar-url-template` for this sidecar.
    pub fn url_template(&self) -> String {
        format!("http://127.0.0.1:{}/nodes/{{namespace}}/{{name}}", self.port)
    }

    /// Script a task type for every node (nodes already seen included).
    pub fn script(&self, task_type: &str, script: Script) {
        self.inner.scripts.lock().unwrap_or_else(|p| p.into_inner()).insert(task_type.into(), script.clone());
        for n in self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner()).values() {
            n.script(task_type, script.clone());
        }
    }

    /// Make one node's sidecar misbehave (`Some`) or behave again (`None`).
    pub fn fault(&self, namespace: &str, name: &str, fault: Option<Fault>) {
        let mut faults = self.inner.faults.lock().unwrap_or_else(|p| p.into_inner());
        let key = (namespace.to_string(), name.to_string());
        match fault {
            Some(f) => faults.insert(key, f),
            None => faults.remove(&key),
        };
    }

    /// The state of one node's sidecar.
    pub fn node(&self, namespace: &str, name: &str) -> Arc<InMemorySidecar> {
        let mut nodes = self.inner.nodes.lock().unwrap_or_else(|p| p.into_inner());
        nodes
            .entry((namespace.to_string(), name.to_string()))
            .or_insert_with(|| {
                let s = Arc::new(InMemorySidecar::for_node(&format!("{namespace}/{name}")));
                for (t, script) in self.inner.scripts.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    s.script(t, script.clone());
                }
                s
            })
            .clone()
    }
}

fn error(e: SidecarAdapterError) -> Response {
    match e {
        SidecarAdapterError::NotFound => (StatusCode::NOT_FOUND, Json(serde_json::json!({"error": "task not found"}))).into_response(),
        SidecarAdapterError::Rejected(m) => (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": m}))).into_response(),
        SidecarAdapterError::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"error": m}))).into_response(),
    }
}

async fn submit(State(s): State<TestSidecar>, Path((ns, name)): Path<(String, String)>, Json(req): Json<TaskRequest>) -> Response {
    match s.node(&ns, &name).submit_task(&req).await {
        Ok(id) => (StatusCode::CREATED, Json(serde_json::json!({"id": id}))).into_response(),
        Err(e) => error(e),
    }
}

async fn get_task(State(s): State<TestSidecar>, Path((ns, name, id)): Path<(String, String, String)>) -> Response {
    match s.node(&ns, &name).get_task(&id).await {
        Ok(t) => Json(t).into_response(),
        Err(e) => error(e),
    }
}

async fn status(State(s): State<TestSidecar>, Path((ns, name)): Path<(String, String)>) -> Response {
    match s.node(&ns, &name).status().await {
        Ok(st) => Json(serde_json::json!({"status": st})).into_response(),
        Err(e) => error(e),
    }
}

async fn healthz(State(s): State<TestSidecar>, Path((ns, name)): Path<(String, String)>) -> StatusCode {
    match s.node(&ns, &name).healthz().await {
        Ok(true) => StatusCode::OK,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

async fn node_id(State(s): State<TestSidecar>, Path((ns, name)): Path<(String, String)>) -> Response {
    match s.node(&ns, &name).node_id().await {
        Ok(id) => Json(serde_json::json!({"nodeId": id})).into_response(),
        Err(e) => error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sei_operator::adapters::sidecar::HttpSidecarClient;
    use std::time::Duration;

    #[test]
    fn scripts_parse() {
        assert_eq!(parse_script("complete:3"), Ok(Script::CompleteAfter(3)));
        assert_eq!(parse_script("fail:0:bad config"), Ok(Script::FailAfter(0, "bad config".into())));
        assert_eq!(parse_script("stall"), Ok(Script::Stall));
        assert!(parse_script("explode").is_err());
    }

    /// The real HTTP client against the test sidecar: the /v0 protocol end to end.
    #[tokio::test]
    async fn http_client_speaks_v0_to_the_test_sidecar() {
        let sidecar = TestSidecar::start(0).await.unwrap();
        sidecar.script("snapshot-restore", Script::CompleteAfter(1));
        sidecar.script("config-apply", Script::FailAfter(0, "bad override".into()));
        let url = sidecar.url_template().replace("{namespace}", "sei").replace("{name}", "rpc");
        let client = HttpSidecarClient::new(url, Duration::from_secs(5)).unwrap();
        let req =
            |id: &str, t: &str| TaskRequest { id: id.into(), task_type: t.into(), params: Some(serde_json::json!({"targetHeight": 5})) };

        assert_eq!(client.get_task("a").await, Err(SidecarAdapterError::NotFound));
        assert_eq!(client.submit_task(&req("a", "snapshot-restore")).await.unwrap(), "a");
        assert_eq!(client.get_task("a").await.unwrap().status, "running");
        assert_eq!(client.get_task("a").await.unwrap().status, "completed");
        client.submit_task(&req("b", "config-apply")).await.unwrap();
        let b = client.get_task("b").await.unwrap();
        assert_eq!((b.status.as_str(), b.error.as_deref()), ("failed", Some("bad override")));
        client.submit_task(&req("b", "config-apply")).await.unwrap();
        assert_eq!(sidecar.node("sei", "rpc").runs("b"), 2, "a failed id runs again on re-submit");

        assert!(!client.healthz().await.unwrap());
        client.submit_task(&req("m", "mark-ready")).await.unwrap();
        client.get_task("m").await.unwrap();
        assert!(client.healthz().await.unwrap());
        assert_eq!(client.status().await.unwrap(), "Ready");
        assert_eq!(client.node_id().await.unwrap().len(), 40);
        assert_eq!(sidecar.node("sei", "rpc").submitted()[0].params, Some(serde_json::json!({"targetHeight": 5})));
    }
}
