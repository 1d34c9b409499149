//! Hot swap through `TaskModule` resources on the real control plane: the controller loads them
//! while it drives SeiNodes, reports per replica, refuses bad modules with a precise reason, and
//! falls back when a TaskModule is deleted or rolled back. Each test runs its own controller,
//! watching its own namespace and only the TaskModules labelled for it.
//!
//! The author kit's acceptance is here too: a project made by `task new` (Rust, Python,
//! JavaScript) outside the repository, built and tested by the CLI, hot-swapped into the running
//! controller, and a SeiNode's step records its digest.

mod author;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use sei_operator::adapters::sidecar::Script;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase, TaskStatus};
use sei_operator::embedded::{BUILTIN_MODULES, test_guest_path};
use sei_operator::node::{Context, SidecarResolver};
use sei_operator::operator::Operator;
use sei_operator::platform::PlatformConfig;
use sei_operator::registry::TaskRegistry;
use sei_operator::release_tag::with_custom_section;
use sei_operator::sandbox::cache::sha256_hex;
use sei_operator::sandbox::{Sandbox, SandboxConfig};
use sei_operator::taskmodule::loader::{TaskModuleLoader, TaskModuleWatch};
use sei_operator::taskmodule::resource::{ReplicaModuleStatus, TaskModule};
use sei_test_sidecar::TestSidecar;
use sei_testkit::identity::MODULE_NAMESPACE;
use sei_testkit::{TestCluster, TestNamespace, eventually};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const REPLICA: &str = "replica-a";

struct Env {
    ns: TestNamespace,
    client: kube::Client,
    nodes: Api<SeiNode>,
    modules: Api<TaskModule>,
    sidecar: TestSidecar,
    ctx: Arc<Context>,
    _controller: tokio::task::JoinHandle<sei_operator::operator::Stopped>,
}

fn sidecar_module() -> &'static [u8] {
    BUILTIN_MODULES.iter().find(|m| m.name == "sei-builtin-sidecar").unwrap().bytes
}

/// The built-in sidecar module under a new digest: a new release with the same behaviour.
fn sidecar_release(tag: &str) -> Vec<u8> {
    with_custom_section(sidecar_module(), "sei-test-release", tag.as_bytes())
}

fn guest(name: &str) -> Vec<u8> {
    std::fs::read(test_guest_path(name)).unwrap()
}

async fn env(prefix: &str, scripts: &[(&str, Script)]) -> Env {
    let cluster = TestCluster::shared();
    cluster.install_crds(&[sei_operator::crds::seinode(), sei_operator::crds::taskmodule()]).await.unwrap();
    let ns = cluster.namespace(prefix).await;
    let client = cluster.client().await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    for (t, s) in scripts {
        sidecar.script(t, s.clone());
    }
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox).await.unwrap();
    let ctx = Context::builder(
        cluster.controller_client().await,
        sandbox,
        registry,
        PlatformConfig::for_local(),
        SidecarResolver::Template(sidecar.url_template()),
    )
    .instance(REPLICA)
    .build();
    let watch =
        TaskModuleWatch { label_selector: Some(format!("sei.io/test={}", ns.name())), configmap_namespace: Some(MODULE_NAMESPACE.into()) };
    let controller = tokio::spawn(Operator::new(ctx.clone()).with_task_modules(watch, REPLICA).run(4, Some(ns.name().to_string())));
    Env {
        nodes: Api::namespaced(client.clone(), ns.name()),
        modules: Api::all(client.clone()),
        ns,
        client,
        sidecar,
        ctx,
        _controller: controller,
    }
}

impl Env {
    /// A cluster-wide name unique to this test.
    fn module_name(&self, name: &str) -> String {
        format!("{}-{name}", self.ns.name())
    }

    fn digest_of(&self, task_type: &str) -> String {
        self.ctx.registry().resolve(task_type).unwrap().module.digest.to_string()
    }

    /// A TaskModule serving `bytes` (`sha256` filled in): from a ConfigMap holding them,
    /// unless `spec` names its own `source`.
    async fn create_module(&self, name: &str, bytes: &[u8], spec: serde_json::Value) -> String {
        let full = self.module_name(name);
        let mut spec = spec;
        if spec.get("source").is_none() {
            let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": full}})).unwrap();
            let cm = ConfigMap { binary_data: Some(BTreeMap::from([("module.wasm".to_string(), ByteString(bytes.to_vec()))])), ..cm };
            Api::<ConfigMap>::namespaced(self.client.clone(), MODULE_NAMESPACE).create(&PostParams::default(), &cm).await.unwrap();
            spec["source"] = json!({"configMap": {"namespace": MODULE_NAMESPACE, "name": full, "key": "module.wasm"}});
        }
        if spec.get("sha256").is_none() {
            spec["sha256"] = json!(sha256_hex(bytes));
        }
        let tm: TaskModule = serde_json::from_value(json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "TaskModule",
            "metadata": {"name": full, "labels": {"sei.io/test": self.ns.name()}},
            "spec": spec,
        }))
        .unwrap();
        self.modules.create(&PostParams::default(), &tm).await.unwrap();
        full
    }

    /// This replica's status entry once its condition `type_` has `status` (deadline 60 s).
    async fn wait_condition(&self, module: &str, replica: &str, type_: &str, status: &str) -> ReplicaModuleStatus {
        let what = format!("TaskModule {module}: {replica} {type_}={status}");
        let waited = eventually(&what, Duration::from_secs(60), || async {
            let tm = self.modules.get(module).await.ok()?;
            let entry = tm.status?.replicas.into_iter().find(|r| r.replica == replica)?;
            entry.conditions.iter().any(|c| c.type_ == type_ && c.status == status).then_some(entry)
        })
        .await;
        match waited {
            Ok(s) => s,
            Err(e) => panic!("{e}; now: {:?}", self.modules.get(module).await.ok().and_then(|m| m.status)),
        }
    }

    async fn create_node(&self, name: &str) {
        let node: SeiNode = serde_json::from_value(json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name},
            "spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}}
        }))
        .unwrap();
        self.nodes.create(&PostParams::default(), &node).await.unwrap();
    }

    async fn wait_nodes(&self, what: &str, names: &[String], check: impl Fn(&SeiNode) -> bool) -> Vec<SeiNode> {
        let waited = eventually(what, Duration::from_secs(240), || async {
            let mut out = Vec::new();
            for n in names {
                let node = self.nodes.get(n).await.ok()?;
                if !check(&node) {
                    return None;
                }
                out.push(node);
            }
            Some(out)
        })
        .await;
        match waited {
            Ok(v) => v,
            Err(e) => {
                let mut states = Vec::new();
                for n in names {
                    let s = self.nodes.get(n).await.ok().and_then(|n| n.status);
                    states.push(format!(
                        "{n}: {:?} {:?}",
                        s.as_ref().and_then(|s| s.phase),
                        s.as_ref().and_then(|s| s.current_task.clone())
                    ));
                }
                panic!("{e}; nodes now: {states:#?}")
            }
        }
    }

    async fn events_for(&self, namespace: &str, involved: &str) -> Vec<Event> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|e| e.involved_object.name.as_deref() == Some(involved))
            .collect()
    }

    /// Another controller replica: its own registry and TaskModule loader, reporting as `replica`.
    async fn replica(&self, replica: &str) -> (Arc<TaskRegistry>, tokio::task::JoinHandle<()>) {
        let registry = Arc::new(TaskRegistry::new());
        registry.load_builtins(self.ctx.sandbox()).await.unwrap();
        let loader = TaskModuleLoader::new(
            TestCluster::shared().controller_client().await,
            self.ctx.sandbox().clone(),
            registry.clone(),
            replica.into(),
            self.ctx.telemetry().clone(),
            TaskModuleWatch {
                label_selector: Some(format!("sei.io/test={}", self.ns.name())),
                configmap_namespace: Some(MODULE_NAMESPACE.into()),
            },
        );
        let (synced_tx, synced) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(loader.run(synced_tx));
        tokio::time::timeout(Duration::from_secs(60), synced).await.expect("replica lists TaskModules in time").unwrap();
        (registry, handle)
    }

    async fn delete_module(&self, name: &str) {
        let _ = self.modules.delete(name, &DeleteParams::default()).await;
    }
}

fn phase(n: &SeiNode) -> Option<SeiNodePhase> {
    n.status.as_ref().and_then(|s| s.phase)
}

fn task_status(n: &SeiNode, task_type: &str) -> Option<TaskStatus> {
    n.status.as_ref()?.plan.as_ref()?.tasks.iter().find(|t| t.task_type == task_type).map(|t| t.status)
}

fn condition<'a>(s: &'a ReplicaModuleStatus, type_: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    s.conditions.iter().find(|c| c.type_ == type_).unwrap()
}

/// Every task type the built-in sidecar module serves.
fn sidecar_task_types(env: &Env) -> Vec<String> {
    let builtin = env.digest_of("mark-ready");
    env.ctx.registry().active().into_iter().filter(|(_, e)| *e.module.digest == *builtin).map(|(t, _)| t).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swap_under_load_fails_no_task() {
    let env = env("tm-swap", &[("config-apply", Script::Stall)]).await;
    let builtin = env.digest_of("config-apply");
    let names: Vec<String> = (0..20).map(|i| format!("node-{i:02}")).collect();
    for n in &names {
        env.create_node(n).await;
    }
    // Every node is mid-plan: its config-apply was submitted and is being polled.
    let before =
        env.wait_nodes("20 nodes polling config-apply", &names, |n| task_status(n, "config-apply") == Some(TaskStatus::Running)).await;

    let release = sidecar_release("v2");
    let new_digest = sha256_hex(&release);
    let types = sidecar_task_types(&env);
    assert!(types.contains(&"config-apply".to_string()) && types.len() > 5, "{types:?}");
    let module = env.create_module("sidecar-v2", &release, json!({"taskTypes": types, "capabilities": ["sidecar"]})).await;
    let status = env.wait_condition(&module, REPLICA, "Ready", "True").await;
    assert_eq!(status.active_digest.as_deref(), Some(new_digest.as_str()));
    assert_eq!(status.previous_digest.as_deref(), Some(builtin.as_str()), "the digest it replaced is kept for rollback");
    assert_eq!(condition(&status, "Rejected").status, "False");
    assert_eq!(env.digest_of("config-apply"), new_digest, "the swap is visible as soon as Ready is reported");

    env.sidecar.script("config-apply", Script::CompleteAfter(0));
    let after = env.wait_nodes("20 nodes Running", &names, |n| phase(n) == Some(SeiNodePhase::Running)).await;

    for (b, a) in before.iter().zip(&after) {
        let name = a.metadata.name.clone().unwrap_or_default();
        let done_before: BTreeMap<String, Option<String>> = b
            .status
            .as_ref()
            .unwrap()
            .plan
            .as_ref()
            .unwrap()
            .tasks
            .iter()
            .filter(|t| t.status == TaskStatus::Complete)
            .map(|t| (t.id.clone(), t.module_digest.clone()))
            .collect();
        let plan = a.status.as_ref().unwrap().plan.as_ref().unwrap();
        for t in &plan.tasks {
            assert_eq!(t.status, TaskStatus::Complete, "{name}: {} complete", t.task_type);
            assert_eq!(t.retry_count, 0, "{name}: {} never failed", t.task_type);
            let digest = t.module_digest.as_deref().unwrap_or_default();
            match done_before.get(&t.id) {
                Some(old) => {
                    assert_eq!(Some(digest), old.as_deref(), "{name}: {} ran before the swap and keeps its digest", t.task_type);
                    assert_ne!(digest, new_digest, "{name}: no step before the swap ran the new module");
                }
                None if types.contains(&t.task_type) => {
                    assert_eq!(digest, new_digest, "{name}: {} ran after the swap on the new module", t.task_type)
                }
                None => {}
            }
        }
    }
    let warnings: Vec<String> = Api::<Event>::namespaced(env.client.clone(), env.ns.name())
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .map(|e| format!("{:?}: {:?}", e.reason, e.message))
        .collect();
    assert!(warnings.is_empty(), "no task failed or retried: {warnings:#?}");
    let metrics = env.ctx.telemetry().encode();
    assert!(
        metrics.contains(&format!(
            r#"sei_active_module{{task_type="config-apply",module_digest="{new_digest}",source="TaskModule {module}"}} 1"#
        )),
        "{metrics}"
    );
    env.delete_module(&module).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_modules_leave_the_old_one_serving() {
    let env = env("tm-reject", &[]).await;
    let builtin = env.digest_of("config-apply");
    let all_caps = json!(["kube-read", "kube-write", "kube-delete", "sidecar"]);
    let cases: Vec<(&str, Vec<u8>, serde_json::Value, &str, &str)> = vec![
        (
            "wrong-sha",
            sidecar_release("x"),
            json!({"sha256": sha256_hex(b"something else"), "capabilities": ["sidecar"]}),
            "DigestMismatch",
            "but",
        ),
        (
            "no-compile",
            b"\0asm\x0d\0\x01\0 definitely not a component".to_vec(),
            json!({"capabilities": all_caps}),
            "CompileFailed",
            "is not a valid component",
        ),
        ("unlinked", guest("test-wasi-importer"), json!({"capabilities": all_caps}), "LinkFailed", "wasi:clocks/wall-clock@0.2.6"),
        ("other-type", guest("test-well-behaved"), json!({"capabilities": all_caps}), "TaskTypeMismatch", "config-apply not claimed"),
        ("ungranted", sidecar_release("y"), json!({"capabilities": ["kube-read"]}), "CapabilityNotGranted", "not granted: sidecar"),
        ("future-wit", guest("test-future-wit"), json!({"capabilities": all_caps}), "WitVersionMismatch", "sei:task@0.2.0"),
    ];
    let mut created = Vec::new();
    for (name, bytes, mut spec, _, _) in cases.clone() {
        spec["taskTypes"] = json!(["config-apply"]);
        created.push(env.create_module(name, &bytes, spec).await);
    }
    for ((_, _, _, reason, detail), module) in cases.iter().zip(&created) {
        let status = env.wait_condition(module, REPLICA, "Rejected", "True").await;
        let rejected = condition(&status, "Rejected");
        assert_eq!(rejected.reason, *reason, "{module}: {}", rejected.message);
        assert!(rejected.message.contains(detail), "{module}: the message names the cause: {}", rejected.message);
        assert_eq!(condition(&status, "Ready").status, "False");
        assert_eq!(status.active_digest, None, "{module} never became active");
        let events = env.events_for("default", module).await;
        assert!(
            events
                .iter()
                .any(|e| e.reason.as_deref() == Some("ModuleRejected") && e.message.as_deref().is_some_and(|m| m.contains(reason))),
            "{module}: a ModuleRejected event: {events:?}"
        );
    }
    assert_eq!(env.digest_of("config-apply"), builtin, "the built-in module keeps serving");
    // And it still works: a node runs config-apply on it.
    env.create_node("still-works").await;
    let nodes = env.wait_nodes("the node Running", &["still-works".to_string()], |n| phase(n) == Some(SeiNodePhase::Running)).await;
    let config_apply =
        nodes[0].status.as_ref().unwrap().plan.as_ref().unwrap().tasks.iter().find(|t| t.task_type == "config-apply").unwrap();
    assert_eq!(config_apply.module_digest.as_deref(), Some(builtin.as_str()));
    for m in &created {
        env.delete_module(m).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_the_task_module_brings_back_the_builtin() {
    let env = env("tm-delete", &[("config-apply", Script::Stall)]).await;
    let builtin = env.digest_of("config-apply");
    // A second controller replica with its own registry, reporting under its own id.
    let (registry_b, replica_b) = env.replica("replica-b").await;

    env.create_node("rpc").await;
    env.wait_nodes("rpc polling config-apply", &["rpc".to_string()], |n| task_status(n, "config-apply") == Some(TaskStatus::Running)).await;
    let release = sidecar_release("v3");
    let module = env.create_module("sidecar-v3", &release, json!({"taskTypes": ["config-apply"], "capabilities": ["sidecar"]})).await;
    let a = env.wait_condition(&module, REPLICA, "Ready", "True").await;
    let b = env.wait_condition(&module, "replica-b", "Ready", "True").await;
    assert_eq!(a.active_digest, b.active_digest);
    let tm = env.modules.get(&module).await.unwrap();
    assert_eq!(tm.status.unwrap().replicas.len(), 2, "one entry per replica, each owned by its replica");
    assert_eq!(env.digest_of("config-apply"), sha256_hex(&release));
    assert_eq!(env.digest_of("mark-ready"), builtin, "task types the TaskModule does not name stay built-in");

    env.modules.delete(&module, &DeleteParams::default()).await.unwrap();
    eventually("both replicas back on the built-in", Duration::from_secs(30), || async {
        let b_digest = registry_b.resolve("config-apply")?.module.digest.to_string();
        (env.digest_of("config-apply") == builtin && b_digest == builtin).then_some(())
    })
    .await
    .unwrap();
    env.sidecar.script("config-apply", Script::CompleteAfter(0));
    let nodes = env.wait_nodes("rpc Running", &["rpc".to_string()], |n| phase(n) == Some(SeiNodePhase::Running)).await;
    let task =
        nodes[0].status.as_ref().unwrap().plan.as_ref().unwrap().tasks.iter().find(|t| t.task_type == "config-apply").unwrap().clone();
    assert_eq!(task.module_digest.as_deref(), Some(builtin.as_str()), "the next step after the deletion ran the built-in module");
    assert_eq!(task.retry_count, 0);
    replica_b.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_rollback_withdraws_a_failing_module() {
    let env = env("tm-rollback", &[]).await;
    let builtin = env.digest_of("config-apply");
    let broken = guest("test-misbehaving");
    let module = env
        .create_module(
            "broken",
            &broken,
            json!({"taskTypes": ["config-apply"], "capabilities": ["kube-read"], "rollout": {"autoRollback": {"window": 5, "maxFailurePercent": 0}}}),
        )
        .await;
    env.wait_condition(&module, REPLICA, "Ready", "True").await;
    assert_eq!(env.digest_of("config-apply"), sha256_hex(&broken));
    // A second replica serves it too, until the first one's rollback reaches it.
    let (registry_b, replica_b) = env.replica("replica-b").await;
    env.wait_condition(&module, "replica-b", "Ready", "True").await;
    assert_eq!(*registry_b.resolve("config-apply").unwrap().module.digest, *sha256_hex(&broken));

    env.create_node("victim").await;
    let victim = env.wait_nodes("the victim Failed", &["victim".to_string()], |n| phase(n) == Some(SeiNodePhase::Failed)).await;
    let detail = victim[0].status.as_ref().unwrap().plan.as_ref().unwrap().failed_task_detail.clone().unwrap();
    assert_eq!(detail.task_type, "config-apply");
    assert!(detail.error.contains("broken on purpose"), "{}", detail.error);

    let status = env.wait_condition(&module, REPLICA, "Rejected", "True").await;
    let rejected = condition(&status, "Rejected");
    assert_eq!(rejected.reason, "AutoRolledBack");
    assert!(rejected.message.contains("1 of its first 1 runs failed"), "{}", rejected.message);
    assert_eq!(status.active_digest, None, "nothing of this TaskModule serves any more");
    assert_eq!(env.digest_of("config-apply"), builtin, "the module it replaced serves again");
    let events = env.events_for("default", &module).await;
    assert!(events.iter().any(|e| e.reason.as_deref() == Some("ModuleRolledBack")), "{events:?}");

    // The other replica withdraws it as well, and a replica that starts now (a restart) never
    // loads it: the spec stays rolled back until it changes.
    let b = env.wait_condition(&module, "replica-b", "Rejected", "True").await;
    assert_eq!(condition(&b, "Rejected").reason, "AutoRolledBack");
    assert!(condition(&b, "Rejected").message.contains(&format!("by replica {REPLICA}")), "{}", condition(&b, "Rejected").message);
    assert_eq!(registry_b.resolve("config-apply").unwrap().module.digest.to_string(), builtin);
    let (registry_c, replica_c) = env.replica("replica-c").await;
    let c = env.wait_condition(&module, "replica-c", "Rejected", "True").await;
    assert_eq!(condition(&c, "Rejected").reason, "AutoRolledBack");
    assert_eq!(registry_c.resolve("config-apply").unwrap().module.digest.to_string(), builtin);
    replica_b.abort();
    replica_c.abort();

    env.create_node("survivor").await;
    let survivor = env.wait_nodes("the survivor Running", &["survivor".to_string()], |n| phase(n) == Some(SeiNodePhase::Running)).await;
    let task =
        survivor[0].status.as_ref().unwrap().plan.as_ref().unwrap().tasks.iter().find(|t| t.task_type == "config-apply").unwrap().clone();
    assert_eq!(task.module_digest.as_deref(), Some(builtin.as_str()));
    env.delete_module(&module).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_task_module_for_a_task_type_waits_for_the_first() {
    let env = env("tm-conflict", &[]).await;
    let (first_bytes, second_bytes) = (sidecar_release("first"), sidecar_release("second"));
    let first = env.create_module("first", &first_bytes, json!({"taskTypes": ["config-apply"], "capabilities": ["sidecar"]})).await;
    env.wait_condition(&first, REPLICA, "Ready", "True").await;
    let second =
        env.create_module("second", &second_bytes, json!({"taskTypes": ["mark-ready", "config-apply"], "capabilities": ["sidecar"]})).await;
    let status = env.wait_condition(&second, REPLICA, "Rejected", "True").await;
    let rejected = condition(&status, "Rejected");
    assert_eq!(rejected.reason, "Conflict");
    assert!(rejected.message.contains(&format!("already served by TaskModule {first}")), "{}", rejected.message);
    assert_eq!(env.digest_of("config-apply"), sha256_hex(&first_bytes), "the first keeps serving");
    assert_ne!(env.digest_of("mark-ready"), sha256_hex(&second_bytes), "a refused TaskModule serves none of its task types");

    // Once the first is gone, the second loads.
    env.modules.delete(&first, &DeleteParams::default()).await.unwrap();
    env.wait_condition(&second, REPLICA, "Ready", "True").await;
    assert_eq!(env.digest_of("config-apply"), sha256_hex(&second_bytes));
    assert_eq!(env.digest_of("mark-ready"), sha256_hex(&second_bytes));
    env.delete_module(&second).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_task_modules_are_refused_by_the_schema() {
    let env = env("tm-schema", &[]).await;
    let base = json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "TaskModule",
        "metadata": {"name": env.module_name("bad")},
        "spec": {"taskTypes": ["config-apply"], "sha256": "0".repeat(64), "source": {"url": "https://example.invalid/m.wasm"}}
    });
    let cases = [
        ("/spec/sha256", json!("ABC"), "should match '^[0-9a-f]{64}$'"),
        (
            "/spec/source",
            json!({"url": "https://a/b.wasm", "configMap": {"namespace": "n", "name": "m", "key": "k"}}),
            "exactly one of configMap or url",
        ),
        ("/spec/source", json!({"url": "ftp://a/b.wasm"}), "must be an https:// or http:// URL"),
        ("/spec/taskTypes", json!(["config-apply", "config-apply"]), "must not repeat a task type"),
        ("/spec/taskTypes", json!(["Config_Apply"]), "should match"),
        ("/spec/capabilities", json!(["network"]), "Unsupported value"),
        ("/spec/limits", json!({"memoryMiB": 0}), "should be greater than or equal to 1"),
        ("/spec/limits", json!({"timeoutSeconds": 301}), "should be less than or equal to 300"),
    ];
    for (pointer, value, message) in cases {
        let mut body = base.clone();
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        body.pointer_mut(parent).unwrap()[key] = value.clone();
        // Untyped, so that values the Rust types would refuse reach the API server.
        let raw: Api<kube::api::DynamicObject> = Api::all_with(env.client.clone(), &kube::api::ApiResource::erase::<TaskModule>(&()));
        let object: kube::api::DynamicObject = serde_json::from_value(body).unwrap();
        match raw.create(&PostParams::default(), &object).await {
            Err(kube::Error::Api(e)) => {
                assert_eq!(e.code, 422, "{pointer}={value}: {e:?}");
                assert!(e.message.contains(message), "{pointer}={value}: {}", e.message);
            }
            other => panic!("{pointer}={value} was accepted: {other:?}"),
        }
    }
}

/// Serve `bytes` over HTTP on loopback (any path), for a TaskModule `url` source: components
/// over a ConfigMap's 1 MiB (Python, JavaScript) come from a URL.
async fn serve_module(bytes: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/module.wasm", listener.local_addr().unwrap());
    let bytes = Arc::new(bytes);
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let bytes = bytes.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = conn.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/wasm\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    bytes.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                let _ = conn.write_all(&bytes).await;
                let _ = conn.shutdown().await;
            });
        }
    });
    url
}

/// A new author's module, from `task new` to a SeiNode step that ran it.
async fn an_authors_module_is_hot_swapped(lang: &str) {
    let name = format!("author-{lang}");
    let (dir, component) = tokio::task::spawn_blocking({
        let name = name.clone();
        let lang = lang.to_string();
        move || {
            let built = author::new_and_build(&name, &lang);
            author::cases_pass(&built.0);
            built
        }
    })
    .await
    .unwrap();
    let digest = sha256_hex(&component);
    let env = env(&format!("tm-{lang}"), &[]).await;
    let spec = if component.len() < 900 << 10 {
        json!({"taskTypes": ["mark-ready"], "capabilities": ["kube-read", "sidecar"]})
    } else {
        json!({"taskTypes": ["mark-ready"], "capabilities": ["kube-read", "sidecar"], "source": {"url": serve_module(component.clone()).await}})
    };
    let module = env.create_module(&name, &component, spec).await;
    let status = env.wait_condition(&module, REPLICA, "Ready", "True").await;
    assert_eq!(status.active_digest.as_deref(), Some(digest.as_str()));
    env.create_node("rpc").await;
    let nodes = env.wait_nodes("rpc Running", &["rpc".to_string()], |n| phase(n) == Some(SeiNodePhase::Running)).await;
    let plan = nodes[0].status.as_ref().unwrap().plan.as_ref().unwrap();
    let task = plan.tasks.iter().find(|t| t.task_type == "mark-ready").unwrap();
    assert_eq!(task.module_digest.as_deref(), Some(digest.as_str()), "the step ran the author's module ({})", dir.display());
    assert_eq!(task.status, TaskStatus::Complete);
    env.delete_module(&module).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_rust_authors_module_is_hot_swapped_into_a_running_controller() {
    an_authors_module_is_hot_swapped("rust").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_python_authors_module_is_hot_swapped_into_a_running_controller() {
    an_authors_module_is_hot_swapped("python").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_javascript_authors_module_is_hot_swapped_into_a_running_controller() {
    an_authors_module_is_hot_swapped("js").await;
}

/// `task run --kubeconfig --record` against the real API server (the chart's ServiceAccount):
/// the built-in `ensure-data-pvc` creates the node's PVC for real, and the recording replays
/// offline with no difference.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_recorded_against_the_real_cluster_replays_offline_with_no_difference() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    let cluster = TestCluster::shared();
    cluster.install_crds(&[sei_operator::crds::seinode()]).await.unwrap();
    let ns = cluster.namespace("tm-record").await;
    let client = cluster.client().await;
    let nodes: Api<SeiNode> = Api::namespaced(client.clone(), ns.name());
    let node: SeiNode = serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": "rpc"},
        "spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}}
    }))
    .unwrap();
    let node = nodes.create(&PostParams::default(), &node).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("node.yaml");
    std::fs::write(&manifest, serde_yaml::to_string(&node).unwrap()).unwrap();
    let recording = dir.path().join("run.json");
    let kubeconfig = cluster.controller_kubeconfig().await;
    let run = tokio::task::spawn_blocking(move || {
        author::expect_code(
            author::sei_operator()
                .args(["task", "run", "ensure-data-pvc", "-f"])
                .arg(&manifest)
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .arg("--record")
                .arg(&recording),
            0,
        );
        author::expect_code(author::sei_operator().args(["task", "replay"]).arg(&recording), 0)
    })
    .await
    .unwrap();
    assert!(author::stdout(&run).contains("no difference"), "{}", author::stdout(&run));
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(client, ns.name());
    let pvc = pvcs.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(pvc.len(), 1, "the recorded run created the node's PVC in the real cluster");
    let owner = &pvc[0].metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(Some(owner.uid.as_str()), node.metadata.uid.as_deref());
}
