//! Test guest: one module whose task types each misbehave in one way. It is granted only
//! `kube-read` by the tests and asks for nothing more in `describe`.
//!
//! - `spin`: loops forever (deadline);
//! - `hog`: allocates without bound (memory cap);
//! - `panic`: panics with a known message (trap, message reported through `log`);
//! - `oversized-output`: completes with a 4 MiB output (output cap);
//! - `flood-log`: logs far past the per-step log cap, then completes;
//! - `escape-namespace`: reads a ConfigMap in another namespace (guard: scope);
//! - `ungranted-sidecar`: calls the sidecar without the `sidecar` capability (guard: grant);
//! - `ungranted-write`: server-side applies without `kube-write` (guard: grant);
//! - `mount-secret`: applies the node's StatefulSet with a pod that mounts a Secret (pod policy;
//!   needs `kube-write` granted to get past the capability check);
//! - `config-apply`: a broken stand-in for the real task that fails every run with a permanent
//!   error (automatic rollback of a `TaskModule`);
//! - `collect-and-set-peers`: a hostile stand-in for the group task: reads the first member's
//!   Secret, then takes over the SeiNode `victim` (group scope);
//!
//! and the holes hostile modules found (issue #9), each closed by the host:
//! - `log-storm`: two million empty `log` calls (per-step log budget; bounded report);
//! - `log-huge-line`: one 8 MiB log line (refused before it is lifted);
//! - `call-flood`: 100,000 `kube get`s in one step (per-step host-call budget);
//! - `requeue-storm`: `pending` with a 0 ms requeue forever (the controller's floor and step
//!   clock);
//! - `sidecar-traversal`: a sidecar task id with `../` path segments (only UUIDs reach a URL);
//! - `forge`: newlines and terminal escapes in a log line, a refused call's kind and the error
//!   (escaped wherever they are shown);
//! - `apply-object`: applies `params.object` as is (the pod policy, case by case);
//! - `list-selector`: lists with a label selector of `params.bytes` bytes (refused before use).
//!
//! and the hostile group tasks of the `member-sidecars` review (`hostile_group_review` in
//! `tests/sandbox_guests.rs`):
//! - `member-calls`: calls one `member-sidecars` function `params.count` times with a node name
//!   given (or `params.node_bytes` bytes long), an id, a task type and raw params text, and
//!   completes with what the last call answered (budget, bounds, escaping);
//! - `create-object`: creates `params.object` as is (the group scope of a create);
//! - `list-with-selector`: lists a kind with `params.selector` and completes with the names seen.
//!
//! and for the second review (`tests/hostile_review_2.rs`):
//! - `sidecar-get-task`: a node task polls its own sidecar for this task's id and completes with
//!   what it answered (a hostile sidecar's answer costs the host its bytes only).
//!
//! `config-apply` takes its behaviour from the node's annotation `test.sei.io/misbehave` when it
//! has one (`log-storm`, `call-flood`, `requeue-storm`, or `ok`: complete at once, or `poll-500`:
//! pending five times with an honest 500 ms requeue, then complete): the controller-level tests
//! run hostile steps on one node and well-behaved ones on the others through one module.
//!
//! The guard cases return the host's `denied` answer as a `denied` task error.

use sei_task_sdk::prelude::*;

struct Misbehaving;

impl TaskModule for Misbehaving {
    fn info() -> ModuleInfo {
        [
            "spin",
            "hog",
            "panic",
            "oversized-output",
            "flood-log",
            "escape-namespace",
            "ungranted-sidecar",
            "ungranted-write",
            "mount-secret",
            "config-apply",
            "log-storm",
            "log-huge-line",
            "call-flood",
            "requeue-storm",
            "sidecar-traversal",
            "forge",
            "apply-object",
            "list-selector",
            "delete-ref",
            "log-text",
            "list-kind",
            "get-ref",
            "member-node-id",
            "collect-and-set-peers",
            "member-calls",
            "create-object",
            "list-with-selector",
            "sidecar-get-task",
        ]
        .iter()
        .fold(ModuleInfo::new("test-misbehaving", "0.1.0"), |m, t| m.task_type(t))
        .capability(Capability::KubeRead)
    }

    fn execute(input: Input) -> Result<Step, TaskError> {
        let behaviour = match input.task_type.as_str() {
            "config-apply" => misbehaviour_of(&input)?.unwrap_or_else(|| "config-apply".to_string()),
            other => other.to_string(),
        };
        match behaviour.as_str() {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "hog" => {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                loop {
                    keep.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&keep);
                }
            }
            "panic" => panic!("misbehaving guest panicked on purpose"),
            "oversized-output" => Ok(Step::Complete(format!("\"{}\"", "x".repeat(4 << 20)))),
            "flood-log" => {
                let line = "y".repeat(1024);
                for _ in 0..10_000 {
                    log::info(&line);
                }
                Ok(Step::done())
            }
            "escape-namespace" => {
                kube::get_raw_in("v1", "ConfigMap", "kube-system", "cluster-secrets")?;
                Ok(Step::done())
            }
            "ungranted-sidecar" => {
                sidecar::status()?;
                Ok(Step::done())
            }
            "ungranted-write" => {
                kube::apply_raw(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"planted"}}"#)?;
                Ok(Step::done())
            }
            "mount-secret" => {
                let (name, _) = input.node_ref()?;
                let sts = serde_json::json!({
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
                    "spec": {"serviceName": name, "selector": {"matchLabels": {"sei.io/node": name}}, "template": {
                        "metadata": {"labels": {"sei.io/node": name}},
                        "spec": {
                            "containers": [{"name": "thief", "image": "busybox", "volumeMounts": [{"name": "creds", "mountPath": "/creds"}]}],
                            "volumes": [{"name": "creds", "secret": {"secretName": "cloud-credentials"}}]
                        }
                    }}
                });
                kube::apply_raw(&sts.to_string())?;
                Ok(Step::done())
            }
            "config-apply" => Err(TaskError::Permanent("this config-apply is broken on purpose".into())),
            "ok" => Ok(Step::done()),
            "poll-500" => {
                let n: u64 = input.checkpoint()?.unwrap_or(0);
                if n >= 5 { Ok(Step::complete(&n)) } else { Ok(Step::pending(500, &(n + 1), format!("poll {n}"))) }
            }
            "log-storm" => {
                for _ in 0..2_000_000 {
                    log::info("");
                }
                Ok(Step::done())
            }
            "log-huge-line" => {
                log::info(&"z".repeat(8 << 20));
                Ok(Step::done())
            }
            "call-flood" => {
                for _ in 0..100_000 {
                    let _ = kube::get_raw("v1", "ConfigMap", "peers");
                }
                Ok(Step::done())
            }
            "requeue-storm" => {
                let n: u64 = input.checkpoint()?.unwrap_or(0);
                Ok(Step::pending(0, &(n + 1), format!("storm step {n}")))
            }
            "sidecar-traversal" => {
                let (name, namespace) = input.node_ref()?;
                let hostile = format!("../../../{namespace}/other-{name}/v0/tasks/7f0c2a4e-0000-5000-8000-000000000001");
                let got = sidecar::get_task(&hostile).map(|t| t.status);
                let submitted = sidecar::submit_task("x?admin=true", "snapshot-restore", None);
                Err(TaskError::Permanent(format!("get-task: {got:?}; submit-task: {submitted:?}")))
            }
            "forge" => {
                log::info("step ok\n2026-11-30T00:00:00.000000Z  INFO sei_operator: forged line\x1b[2J\x1b[H");
                let refused = kube::get_raw("v1", "Kind\n2026-11-30T00:00:00Z  WARN forged", "x");
                Err(TaskError::Permanent(format!("first line\nforged second line\x1b[31m red {refused:?}")))
            }
            "apply-object" => {
                #[derive(Deserialize)]
                struct P {
                    object: serde_json::Value,
                }
                let p: P = input.params()?;
                kube::apply_raw(&p.object.to_string())?;
                Ok(Step::done())
            }
            "list-selector" => {
                #[derive(Deserialize)]
                struct P {
                    bytes: usize,
                }
                let p: P = input.params()?;
                kube::list_raw("v1", "ConfigMap", Some(&"a".repeat(p.bytes)))?;
                Ok(Step::done())
            }
            // Delete any object by reference (the guard decides).
            "delete-ref" => {
                #[derive(Deserialize)]
                struct P {
                    api_version: String,
                    kind: String,
                    name: String,
                }
                let p: P = input.params()?;
                let gone = kube::delete_raw(&p.api_version, &p.kind, &p.name)?;
                Ok(Step::complete(&gone))
            }
            // List every object of a kind in the namespace.
            "list-kind" => {
                #[derive(Deserialize)]
                struct P {
                    api_version: String,
                    kind: String,
                }
                let p: P = input.params()?;
                let items = kube::list_raw(&p.api_version, &p.kind, None)?;
                Ok(Step::complete(&items.len()))
            }
            // Get any object by reference; the answer is its name, or null.
            "get-ref" => {
                #[derive(Deserialize)]
                struct P {
                    api_version: String,
                    kind: String,
                    name: String,
                }
                let p: P = input.params()?;
                let got = kube::get_raw(&p.api_version, &p.kind, &p.name)?;
                Ok(Step::complete(&got.is_some()))
            }
            // The node id of any node's sidecar, through member-sidecars.
            "member-node-id" => {
                #[derive(Deserialize)]
                struct P {
                    node: String,
                }
                let p: P = input.params()?;
                let id = member_sidecars::node_id(&p.node)?;
                Ok(Step::complete(&id))
            }
            // A hostile group task: a Secret, then a SeiNode the group does not own.
            "collect-and-set-peers" => {
                #[derive(Deserialize)]
                #[serde(rename_all = "camelCase")]
                struct P {
                    node_names: Vec<String>,
                    namespace: String,
                }
                let p: P = input.params()?;
                let first = p.node_names.first().cloned().unwrap_or_default();
                if let Err(e) = kube::get_raw("v1", "Secret", &format!("{first}-key")) {
                    log::warn(&format!("secret refused: {e:?}"));
                }
                let victim = serde_json::json!({
                    "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
                    "metadata": {"name": "victim", "namespace": p.namespace},
                    "spec": {"chainId": "x", "image": "evil:1", "fullNode": {}}
                });
                kube::apply_raw(&victim.to_string())?;
                Ok(Step::done())
            }
            // Call one member-sidecars function, `count` times; complete with the last answer.
            "member-calls" => {
                #[derive(Deserialize)]
                struct P {
                    op: String,
                    #[serde(default)]
                    node: String,
                    node_bytes: Option<usize>,
                    count: Option<u32>,
                    id: Option<String>,
                    id_bytes: Option<usize>,
                    task_type: Option<String>,
                    params: Option<String>,
                    params_bytes: Option<usize>,
                }
                let p: P = input.params()?;
                let node = p.node_bytes.map_or(p.node.clone(), |n| "n".repeat(n));
                let id = p.id_bytes.map_or_else(|| p.id.clone().unwrap_or_else(|| input.task_id.clone()), |n| "7".repeat(n));
                let params = p.params_bytes.map(|n| format!("\"{}\"", "p".repeat(n))).or(p.params.clone());
                let task_type = p.task_type.clone().unwrap_or_else(|| "assemble-genesis".into());
                let mut last = serde_json::Value::Null;
                for _ in 0..p.count.unwrap_or(1) {
                    last = match p.op.as_str() {
                        "status" => serde_json::json!(format!("{:?}", member_sidecars::status(&node))),
                        "node-id" => serde_json::json!(format!("{:?}", member_sidecars::node_id(&node))),
                        "submit-task" => serde_json::json!(format!(
                            "{:?}",
                            sei_task_sdk::bindings::sei::task::member_sidecars::submit_task(&node, &id, &task_type, params.as_deref())
                        )),
                        "get-task" => match member_sidecars::get_task(&node, &id) {
                            Ok(t) => serde_json::json!({
                                "status": t.status, "taskType": t.task_type, "error": t.error,
                                "outputBytes": t.output.as_ref().map(|o| o.len()),
                                "outputHead": t.output.as_ref().map(|o| o.chars().take(64).collect::<String>()),
                            }),
                            Err(e) => serde_json::json!(format!("{e:?}")),
                        },
                        other => return Err(TaskError::InvalidParams(format!("unknown op {other}"))),
                    };
                }
                Ok(Step::complete(&last))
            }
            // Create an object as is (the guard decides).
            "create-object" => {
                #[derive(Deserialize)]
                struct P {
                    object: serde_json::Value,
                }
                let p: P = input.params()?;
                kube::create_raw(&p.object.to_string())?;
                Ok(Step::done())
            }
            // List a kind with the selector given; the answer is the names seen.
            "list-with-selector" => {
                #[derive(Deserialize)]
                struct P {
                    api_version: String,
                    kind: String,
                    selector: Option<String>,
                }
                let p: P = input.params()?;
                let items = kube::list_raw(&p.api_version, &p.kind, p.selector.as_deref())?;
                let names: Vec<String> = items
                    .iter()
                    .filter_map(|i| serde_json::from_str::<serde_json::Value>(i).ok())
                    .filter_map(|v| v.pointer("/metadata/name").and_then(|n| n.as_str()).map(str::to_string))
                    .collect();
                Ok(Step::complete(&names))
            }
            // The node's own sidecar: this task's id; complete with the answer's status or error.
            "sidecar-get-task" => {
                let got = sidecar::get_task(&input.task_id).map(|t| t.status);
                Ok(Step::complete(&format!("{got:?}")))
            }
            // Log the text given, and fail with it.
            "log-text" => {
                #[derive(Deserialize)]
                struct P {
                    text: String,
                }
                let p: P = input.params()?;
                log::info(&p.text);
                Err(TaskError::Permanent(p.text))
            }
            other => Err(TaskError::Permanent(format!("unknown task type {other}"))),
        }
    }
}

/// The node's `test.sei.io/misbehave` annotation, if any.
fn misbehaviour_of(input: &Input) -> Result<Option<String>, TaskError> {
    let node: serde_json::Value = input.node()?;
    Ok(node.pointer("/metadata/annotations/test.sei.io~1misbehave").and_then(|v| v.as_str()).map(str::to_string))
}

sei_task_sdk::export_task_module!(Misbehaving);
