//! Tier 2 of the tests: purpose-built guest components run by the real sandbox. Each
//! misbehaving case asserts its own error kind and message, and runs next to a well-behaved
//! step that must succeed at the same time. The cases after `every_misbehaviour_at_once…` are
//! the holes hostile modules found (issue #9): call budgets, bounded arguments, sidecar ids,
//! escaped guest text and the pod policy through a real module.

use async_trait::async_trait;
use sei_operator::adapters::kube::{InMemoryKube, KubeAdapter, KubeAdapterError, ListLimits, Listed, TypeRef};
use sei_operator::adapters::sidecar::InMemorySidecar;
use sei_operator::embedded::test_guest_path;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::policy::scope::Scope;
use sei_operator::sandbox::limits::{LimitsPolicy, RequestRate};
use sei_operator::sandbox::{
    LoadError, LoadedModule, ModuleGrant, RunEnv, RunError, RunInput, RunReport, Sandbox, SandboxConfig, StepOutcome,
};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

struct Fixture {
    sandbox: Sandbox,
    well_behaved: LoadedModule,
    misbehaving: LoadedModule,
}

const SPIN_DEADLINE: Duration = Duration::from_millis(300);
const HOG_MEMORY: usize = 16 << 20;

fn read_guest(name: &str) -> Vec<u8> {
    let path = test_guest_path(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

async fn fixture() -> &'static Fixture {
    static FIXTURE: OnceCell<Fixture> = OnceCell::const_new();
    FIXTURE
        .get_or_init(|| async {
            let mut limits = LimitsPolicy::default();
            limits.deadline_by_task_type.insert("spin".into(), SPIN_DEADLINE);
            limits.memory_by_task_type.insert("hog".into(), HOG_MEMORY);
            let sandbox = Sandbox::new(SandboxConfig { limits, ..Default::default() }).expect("sandbox");
            let read_only = || ModuleGrant::new(Grants::new([CapabilityName::KubeRead]));
            let well_behaved = sandbox.load_module(&read_guest("test-well-behaved"), read_only()).await.expect("well-behaved loads");
            let misbehaving = sandbox.load_module(&read_guest("test-misbehaving"), read_only()).await.expect("misbehaving loads");
            Fixture { sandbox, well_behaved, misbehaving }
        })
        .await
}

fn node_json() -> String {
    serde_json::json!({"apiVersion":"sei.io/v1alpha1","kind":"SeiNode","metadata":{"name":"rpc","namespace":"sei","uid":"u1"},"spec":{}})
        .to_string()
}

fn input(task_type: &str, params: &str) -> RunInput {
    RunInput {
        task_type: task_type.into(),
        task_id: "7f0c2a4e-0000-5000-8000-000000000001".into(),
        plan_id: "plan-1".into(),
        node: node_json(),
        params: params.into(),
        checkpoint: None,
        attempt: 1,
    }
}

fn env() -> (RunEnv, Arc<InMemoryKube>) {
    let kube = Arc::new(InMemoryKube::new());
    kube.insert(serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"peers","namespace":"sei"}})).unwrap();
    kube.insert(serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cluster-secrets","namespace":"kube-system"}}))
        .unwrap();
    let env =
        RunEnv { scope: Scope::for_node("sei", "rpc"), kube: kube.clone(), sidecar: Some(Arc::new(InMemorySidecar::new())), members: None };
    (env, kube)
}

/// Run a misbehaving step and a well-behaved one at the same time; assert the well-behaved one
/// succeeded and return the misbehaving report.
async fn alongside_well_behaved(task_type: &str) -> RunReport {
    let f = fixture().await;
    let (env, _) = env();
    let bad = f.sandbox.run(&f.misbehaving, input(task_type, "{}"), &env);
    let good = f.sandbox.run(&f.well_behaved, input("echo", r#"{"configmap":"peers"}"#), &env);
    let (bad, good) = tokio::join!(bad, good);
    match &good.outcome {
        Ok(StepOutcome::Complete { output }) => assert_eq!(output["configmapFound"], true, "{output}"),
        other => panic!("the well-behaved step next to `{task_type}` did not complete: {other:?}"),
    }
    bad
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_behaved_step_completes_with_report() {
    let f = fixture().await;
    let (env, _) = env();
    let r = f.sandbox.run(&f.well_behaved, input("echo", r#"{"configmap":"peers"}"#), &env).await;
    let Ok(StepOutcome::Complete { output }) = &r.outcome else { panic!("{:?}", r.outcome) };
    assert_eq!(output["params"]["configmap"], "peers");
    assert_eq!(output["attempt"], 1);
    assert_eq!(r.host_calls.len(), 1);
    assert_eq!(r.host_calls[0].call, "get v1/ConfigMap sei/peers");
    assert_eq!(r.host_calls[0].outcome, "ok");
    assert_eq!(r.logs.len(), 1);
    assert_eq!(r.logs[0].message, "echo step");
    assert!(r.fuel_consumed > 0, "fuel is measured");
    assert!(r.peak_memory_bytes >= 64 << 10, "peak memory is measured: {}", r.peak_memory_bytes);
    assert_eq!(r.module_digest, f.well_behaved.digest.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_carries_state_between_steps() {
    let f = fixture().await;
    let (env, _) = env();
    let mut checkpoint = None;
    for step in 1..=3 {
        let mut i = input("count", r#"{"steps":3}"#);
        i.checkpoint = checkpoint.clone();
        let r = f.sandbox.run(&f.well_behaved, i, &env).await;
        match r.outcome {
            Ok(StepOutcome::Pending { checkpoint: c, requeue_after_ms, .. }) if step < 3 => {
                assert_eq!(c, step.to_string());
                assert_eq!(requeue_after_ms, 10);
                checkpoint = Some(c);
            }
            Ok(StepOutcome::Complete { output }) if step == 3 => assert_eq!(output, 3),
            other => panic!("step {step}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spinning_guest_times_out() {
    let started = Instant::now();
    let r = alongside_well_behaved("spin").await;
    let elapsed = started.elapsed();
    match &r.outcome {
        Err(e @ RunError::Timeout { deadline }) => {
            assert_eq!(*deadline, SPIN_DEADLINE);
            assert_eq!(e.to_string(), "step exceeded its deadline of 300 ms");
        }
        other => panic!("{other:?}"),
    }
    assert!(elapsed < SPIN_DEADLINE + Duration::from_secs(2), "stopped promptly: {elapsed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_hog_hits_the_cap() {
    let r = alongside_well_behaved("hog").await;
    match &r.outcome {
        Err(e @ RunError::MemoryLimit { limit, requested }) => {
            assert_eq!(*limit, HOG_MEMORY);
            assert!(*requested > HOG_MEMORY);
            assert!(e.to_string().starts_with("step exceeded its memory limit of 16777216 bytes"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(r.peak_memory_bytes <= HOG_MEMORY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_reports_panic_message() {
    let r = alongside_well_behaved("panic").await;
    match &r.outcome {
        Err(e @ RunError::Trap { trap, panic }) => {
            assert!(trap.contains("unreachable"), "{trap}");
            let panic = panic.as_deref().expect("the guest's panic message is captured");
            assert!(panic.contains("misbehaving guest panicked on purpose"), "{panic}");
            assert!(e.to_string().contains("module trapped"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_output_is_refused() {
    let r = alongside_well_behaved("oversized-output").await;
    match &r.outcome {
        Err(e @ RunError::OutputTooLarge { size, limit }) => {
            assert!(*size > 4 << 20);
            assert_eq!(*limit, 256 << 10);
            assert!(e.to_string().contains("over the limit of 262144 bytes"), "{e}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_flood_is_capped_and_counted() {
    let r = alongside_well_behaved("flood-log").await;
    assert!(matches!(r.outcome, Ok(StepOutcome::Complete { .. })), "{:?}", r.outcome);
    let kept: usize = r.logs.iter().map(|l| l.message.len()).sum();
    assert!(kept <= 64 << 10, "kept {kept} bytes");
    assert_eq!(kept as u64 + r.dropped_log_bytes, 10_000 * 1024, "every byte is kept or counted as dropped");
}

/// An API server that refuses the controller every request (as kube-apiserver does right after
/// a restart, until its RBAC caches have synced).
struct RefusingKube;

fn refused() -> KubeAdapterError {
    KubeAdapterError::Refused(
        r#"configmaps "peers" is forbidden: User "system:serviceaccount:sei-system:sei-operator" cannot get resource "configmaps""#.into(),
    )
}

#[async_trait]
impl KubeAdapter for RefusingKube {
    async fn get(&self, _: &TypeRef, _: &str, _: &str) -> Result<Option<String>, KubeAdapterError> {
        Err(refused())
    }
    async fn list(&self, _: &TypeRef, _: &str, _: Option<&str>, _: ListLimits) -> Listed {
        Listed { result: Err(refused()), requests: 1 }
    }
    async fn create(&self, _: &TypeRef, _: &str, _: serde_json::Value, _: &str) -> Result<String, KubeAdapterError> {
        Err(refused())
    }
    async fn apply(&self, _: &TypeRef, _: &str, _: &str, _: serde_json::Value, _: &str) -> Result<String, KubeAdapterError> {
        Err(refused())
    }
    async fn delete(&self, _: &TypeRef, _: &str, _: &str, _: Option<&str>) -> Result<bool, KubeAdapterError> {
        Err(refused())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_servers_refusal_reaches_the_module_as_unavailable_and_is_counted() {
    let f = fixture().await;
    let digest = f.well_behaved.digest.to_string();
    let refusals = || f.sandbox.metrics().api_refused_counts().get(&digest).copied().unwrap_or(0);
    let before = refusals();
    let env = RunEnv { scope: Scope::for_node("sei", "rpc"), kube: Arc::new(RefusingKube), sidecar: None, members: None };
    let r = f.sandbox.run(&f.well_behaved, input("echo", r#"{"configmap":"peers"}"#), &env).await;
    match &r.outcome {
        Err(e @ RunError::Unavailable(m)) => {
            assert!(m.contains("refused the controller's request") && m.contains("cannot get resource"), "{m}");
            assert!(!e.is_retryable(), "waits without spending the retry budget (plan_step), not retried as a failure");
        }
        other => panic!("the refused call must make the step wait as unavailable: {other:?}"),
    }
    assert_eq!(r.host_calls.len(), 1);
    assert!(!r.host_calls[0].outcome.starts_with("denied:"), "the guard allowed the call: {:?}", r.host_calls[0]);
    assert_eq!(refusals(), before + 1, "the refusal is counted for the module");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escape_namespace_is_denied_and_counted() {
    let before = fixture().await.sandbox.metrics().denied_total();
    let r = alongside_well_behaved("escape-namespace").await;
    match &r.outcome {
        Err(RunError::Denied(m)) => assert!(m.contains("namespace `kube-system` is outside the node's namespace `sei`"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(r.host_calls.len(), 1);
    assert!(r.host_calls[0].outcome.starts_with("denied:"), "{:?}", r.host_calls[0]);
    let counts = fixture().await.sandbox.metrics().denied_counts();
    assert!(counts.get(&(r.module_digest.clone(), "namespace")).copied().unwrap_or(0) >= 1, "{counts:?}");
    assert!(fixture().await.sandbox.metrics().denied_total() > before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_sidecar_call_is_denied() {
    let r = alongside_well_behaved("ungranted-sidecar").await;
    match &r.outcome {
        Err(RunError::Denied(m)) => assert_eq!(m, "sidecar status needs capability `sidecar`, which the module was not granted"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_write_is_denied_and_nothing_is_written() {
    let f = fixture().await;
    let (env, kube) = env();
    let r = f.sandbox.run(&f.misbehaving, input("ungranted-write", "{}"), &env).await;
    match &r.outcome {
        Err(RunError::Denied(m)) => assert!(m.contains("needs capability `kube-write`"), "{m}"),
        other => panic!("{other:?}"),
    }
    let cm = TypeRef { api_version: "v1".into(), kind: "ConfigMap".into() };
    assert_eq!(kube.get(&cm, "sei", "planted").await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_template_mounting_a_secret_is_refused_by_pod_policy() {
    let f = fixture().await;
    // Granted kube-write, so the write passes the capability check and meets the pod policy.
    let writer = f
        .sandbox
        .load_module(&read_guest("test-misbehaving"), ModuleGrant::new(Grants::new([CapabilityName::KubeRead, CapabilityName::KubeWrite])))
        .await
        .unwrap();
    let (env, kube) = env();
    let r = f.sandbox.run(&writer, input("mount-secret", "{}"), &env).await;
    match &r.outcome {
        Err(RunError::Denied(m)) => assert!(m.contains("volume `creds` is of type secret"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(r.host_calls.iter().any(|c| c.outcome.starts_with("denied") && c.call.contains("StatefulSet")), "{:?}", r.host_calls);
    let sts = TypeRef { api_version: "apps/v1".into(), kind: "StatefulSet".into() };
    assert_eq!(kube.get(&sts, "sei", "rpc").await.unwrap(), None, "nothing was written");
    assert!(f.sandbox.metrics().denied_counts().iter().any(|((_, reason), n)| *reason == "pod-policy" && *n >= 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_task_type_is_refused_before_running() {
    let f = fixture().await;
    let (env, _) = env();
    let r = f.sandbox.run(&f.well_behaved, input("apply-statefulset", "{}"), &env).await;
    match &r.outcome {
        Err(e @ RunError::UnknownTaskType { .. }) => {
            assert!(e.to_string().contains("implements: echo, count, noop, log-loop, kube-get-loop"), "{e}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_params_are_a_typed_error() {
    let f = fixture().await;
    let (env, _) = env();
    let r = f.sandbox.run(&f.well_behaved, input("count", r#"{"steps":"three"}"#), &env).await;
    match &r.outcome {
        Err(RunError::InvalidParams(m)) => assert!(m.contains("params"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wasi_import_fails_at_load() {
    let f = fixture().await;
    let err = f.sandbox.load_module(&read_guest("test-wasi-importer"), ModuleGrant::new(Grants::new([]))).await.unwrap_err();
    match &err {
        LoadError::Link { message, .. } => assert!(message.contains("wasi:clocks/wall-clock@0.2.6"), "{message}"),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("no WASI"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_wit_version_fails_at_load_naming_both_versions() {
    let f = fixture().await;
    let err = f.sandbox.load_module(&read_guest("test-future-wit"), ModuleGrant::new(Grants::new([]))).await.unwrap_err();
    match &err {
        LoadError::WitVersionMismatch { import, found, .. } => {
            assert_eq!(import, "sei:task/log@0.2.0");
            assert_eq!(found, "sei:task@0.2.0");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(err.reason(), "WitVersionMismatch");
    assert!(err.to_string().contains("this controller links sei:task@0.1.0 to @0.1.1"), "{err}");
}

/// `wit/task.wit` promises that a guest built against an older patch of the same minor links.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_guest_built_against_wit_0_1_0_links_and_runs() {
    let f = fixture().await;
    let module =
        f.sandbox.load_module(&read_guest("test-old-wit"), ModuleGrant::new(Grants::new([CapabilityName::Sidecar]))).await.unwrap();
    let component = wasmtime::component::Component::new(f.sandbox.engine(), read_guest("test-old-wit")).unwrap();
    let imports: Vec<String> = component.component_type().imports(f.sandbox.engine()).map(|(n, _)| n.to_string()).collect();
    assert!(imports.iter().any(|i| i == "sei:task/sidecar@0.1.0"), "{imports:?}");
    let sidecar = Arc::new(InMemorySidecar::new());
    sidecar.set_status("Ready");
    let env = RunEnv { scope: Scope::for_node("sei", "rpc"), kube: Arc::new(InMemoryKube::new()), sidecar: Some(sidecar), members: None };
    let input = RunInput {
        task_type: "old-status".into(),
        task_id: "00000000-0000-5000-8000-000000000001".into(),
        plan_id: "p".into(),
        node: "{}".into(),
        params: "{}".into(),
        checkpoint: None,
        attempt: 1,
    };
    let report = f.sandbox.run(&module, input, &env).await;
    assert_eq!(report.outcome, Ok(StepOutcome::Complete { output: serde_json::json!({"status": "Ready"}) }), "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ungranted_capability_claim_fails_at_load() {
    let f = fixture().await;
    let err = f.sandbox.load_module(&read_guest("test-misbehaving"), ModuleGrant::new(Grants::new([]))).await.unwrap_err();
    assert!(matches!(err, LoadError::UngrantedCapabilities { .. }), "{err:?}");
    assert!(err.to_string().contains("asks for capabilities it was not granted: kube-read"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_digest_mismatch_is_refused() {
    let f = fixture().await;
    let mut grant = ModuleGrant::new(Grants::new([CapabilityName::KubeRead]));
    grant.pinned_sha256 = Some("00".repeat(32));
    let err = f.sandbox.load_module(&read_guest("test-well-behaved"), grant).await.unwrap_err();
    assert!(matches!(err, LoadError::DigestMismatch { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_do_not_compile() {
    let f = fixture().await;
    let err = f.sandbox.load_module(b"\0asm garbage", ModuleGrant::new(Grants::new([]))).await.unwrap_err();
    assert!(matches!(err, LoadError::Compile { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_misbehaviour_at_once_leaves_good_runs_intact() {
    let f = fixture().await;
    let (env, _) = env();
    let bad = ["spin", "hog", "panic", "oversized-output", "escape-namespace", "ungranted-sidecar"]
        .map(|t| f.sandbox.run(&f.misbehaving, input(t, "{}"), &env));
    let good: Vec<_> = (0..20).map(|_| f.sandbox.run(&f.well_behaved, input("echo", "{}"), &env)).collect();
    let (bad, good) = tokio::join!(futures::future::join_all(bad), futures::future::join_all(good));
    let kinds: Vec<&str> = bad.iter().map(|r| r.outcome.as_ref().map(|_| "ok").unwrap_or_else(|e| e.kind())).collect();
    assert_eq!(kinds, ["timeout", "memory-limit", "trap", "output-too-large", "denied", "denied"]);
    assert!(good.iter().all(|r| r.outcome.is_ok()), "{:?}", good.iter().map(|r| &r.outcome).collect::<Vec<_>>());
}

/// An in-memory cluster that counts the requests that reach it.
#[derive(Default)]
struct CountingKube {
    inner: InMemoryKube,
    requests: std::sync::atomic::AtomicU32,
}

impl CountingKube {
    fn count(&self) -> u32 {
        self.requests.load(std::sync::atomic::Ordering::SeqCst)
    }
    fn hit(&self) {
        self.requests.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

#[async_trait]
impl KubeAdapter for CountingKube {
    async fn get(&self, ty: &TypeRef, ns: &str, name: &str) -> Result<Option<String>, KubeAdapterError> {
        self.hit();
        self.inner.get(ty, ns, name).await
    }
    async fn list(&self, ty: &TypeRef, ns: &str, sel: Option<&str>, limits: ListLimits) -> Listed {
        self.hit();
        self.inner.list(ty, ns, sel, limits).await
    }
    async fn create(&self, ty: &TypeRef, ns: &str, o: serde_json::Value, m: &str) -> Result<String, KubeAdapterError> {
        self.hit();
        self.inner.create(ty, ns, o, m).await
    }
    async fn apply(&self, ty: &TypeRef, ns: &str, name: &str, o: serde_json::Value, m: &str) -> Result<String, KubeAdapterError> {
        self.hit();
        self.inner.apply(ty, ns, name, o, m).await
    }
    async fn delete(&self, ty: &TypeRef, ns: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError> {
        self.hit();
        self.inner.delete(ty, ns, name, uid).await
    }
}

fn counting_env() -> (RunEnv, Arc<CountingKube>) {
    let kube = Arc::new(CountingKube::default());
    kube.inner.insert(serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"peers","namespace":"sei"}})).unwrap();
    let env =
        RunEnv { scope: Scope::for_node("sei", "rpc"), kube: kube.clone(), sidecar: Some(Arc::new(InMemorySidecar::new())), members: None };
    (env, kube)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_storm_is_stopped_by_the_budget() {
    let started = Instant::now();
    let r = alongside_well_behaved("log-storm").await;
    match &r.outcome {
        Err(e @ RunError::BudgetExceeded(b)) => {
            assert_eq!(b.limit, 10_000);
            assert_eq!(e.kind(), "log-call-budget");
            assert_eq!(e.to_string(), "the step made more than 10000 log calls, its per-step budget");
            assert!(!e.is_retryable(), "a module bug is not retried");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.log_calls, 10_001, "stopped at the call past the budget, not two million calls later");
    assert!(r.logs.len() <= 256, "kept lines are bounded: {}", r.logs.len());
    assert_eq!(r.logs.len() as u64 + r.dropped_log_lines, 10_000, "every line is kept or counted");
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_log_line_is_refused_before_it_is_lifted() {
    let r = alongside_well_behaved("log-huge-line").await;
    assert!(matches!(r.outcome, Ok(StepOutcome::Complete { .. })), "{:?}", r.outcome);
    assert_eq!(r.logs.len(), 1);
    assert_eq!(r.logs[0].message, "[log line of 8388608 bytes omitted: over 65536 bytes]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_call_flood_is_stopped_by_the_budget() {
    let f = fixture().await;
    // Its own instance: its request bucket is full (other tests share the fixture's).
    let flooder =
        f.sandbox.load_module(&read_guest("test-misbehaving"), ModuleGrant::new(Grants::new([CapabilityName::KubeRead]))).await.unwrap();
    let (env, kube) = counting_env();
    let good = f.sandbox.run(&f.well_behaved, input("echo", r#"{"configmap":"peers"}"#), &env);
    let bad = f.sandbox.run(&flooder, input("call-flood", "{}"), &env);
    let (good, bad) = tokio::join!(good, bad);
    assert!(good.outcome.is_ok(), "{:?}", good.outcome);
    match &bad.outcome {
        Err(e @ RunError::BudgetExceeded(b)) => {
            assert_eq!(b.limit, 64);
            assert_eq!(e.kind(), "host-call-budget");
            assert_eq!(e.to_string(), "the step made more than 64 kube and sidecar calls, its per-step budget");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(bad.host_call_count, 65);
    assert_eq!(kube.count(), 64 + 1, "the cluster saw exactly the budget (and the well-behaved step's one get)");
    let budgets = f.sandbox.metrics().budget_counts();
    assert!(budgets.get(&(bad.module_digest.clone(), "host-calls")).copied().unwrap_or(0) >= 1, "{budgets:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rate_bounds_a_module_across_steps() {
    let rate = RequestRate { per_second: 1, burst: 10 };
    let sandbox = Sandbox::new(SandboxConfig { module_request_rate: Some(rate), ..Default::default() }).unwrap();
    let module =
        sandbox.load_module(&read_guest("test-misbehaving"), ModuleGrant::new(Grants::new([CapabilityName::KubeRead]))).await.unwrap();
    let (env, kube) = counting_env();
    let first = sandbox.run(&module, input("call-flood", "{}"), &env).await;
    assert!(matches!(first.outcome, Err(RunError::BudgetExceeded(_))), "the step still ends at its budget: {:?}", first.outcome);
    assert_eq!(kube.count(), 10, "the burst reached the cluster, the rest was answered `unavailable`");
    assert!(first.host_calls.iter().any(|c| c.outcome.contains("request rate of 1/s is used up")), "{:?}", first.host_calls.last());
    let second = sandbox.run(&module, input("call-flood", "{}"), &env).await;
    assert!(second.outcome.is_err());
    assert!(kube.count() <= 12, "a second step right after gets about one request a second: {}", kube.count());
    let trusted = sandbox
        .load_module(
            &read_guest("test-misbehaving"),
            ModuleGrant { trusted_code: true, ..ModuleGrant::new(Grants::new([CapabilityName::KubeRead])) },
        )
        .await
        .unwrap();
    assert!(trusted.requests.is_none(), "built-in modules are not rate-limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_budgets_follow_the_registration() {
    let f = fixture().await;
    let mut grant = ModuleGrant::new(Grants::new([CapabilityName::KubeRead]));
    grant.limits.host_calls = Some(5);
    grant.limits.log_calls = Some(7);
    let tight = f.sandbox.load_module(&read_guest("test-misbehaving"), grant).await.unwrap();
    let (env, kube) = counting_env();
    let r = f.sandbox.run(&tight, input("call-flood", "{}"), &env).await;
    assert!(matches!(r.outcome, Err(RunError::BudgetExceeded(b)) if b.limit == 5), "{:?}", r.outcome);
    assert_eq!(kube.count(), 5);
    let r = f.sandbox.run(&tight, input("log-storm", "{}"), &env).await;
    assert!(matches!(r.outcome, Err(RunError::BudgetExceeded(b)) if b.limit == 7), "{:?}", r.outcome);
    assert_eq!((r.limits.max_host_calls, r.limits.max_log_calls), (5, 7), "the report names the limits in force");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_label_selector_is_refused_before_use() {
    let f = fixture().await;
    let (env, kube) = counting_env();
    let r = f.sandbox.run(&f.misbehaving, input("list-selector", &format!(r#"{{"bytes":{}}}"#, 20 << 20)), &env).await;
    match &r.outcome {
        Err(RunError::Permanent(m)) => assert!(m.contains("label selector of 20971520 bytes is over the limit of 4096 bytes"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(kube.count(), 0, "nothing reached the cluster");
    let ok = f.sandbox.run(&f.misbehaving, input("list-selector", r#"{"bytes":10}"#), &env).await;
    assert!(ok.outcome.is_ok(), "a selector within the cap is used: {:?}", ok.outcome);
    assert_eq!(kube.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecar_task_ids_must_be_uuids() {
    let f = fixture().await;
    let caller = f
        .sandbox
        .load_module(&read_guest("test-misbehaving"), ModuleGrant::new(Grants::new([CapabilityName::KubeRead, CapabilityName::Sidecar])))
        .await
        .unwrap();
    let sidecar = Arc::new(InMemorySidecar::new());
    let env =
        RunEnv { scope: Scope::for_node("sei", "rpc"), kube: Arc::new(InMemoryKube::new()), sidecar: Some(sidecar.clone()), members: None };
    let r = f.sandbox.run(&caller, input("sidecar-traversal", "{}"), &env).await;
    match &r.outcome {
        Err(RunError::Permanent(m)) => {
            // The guest's message quotes the id with `\"`; the host doubles every backslash it passes on.
            assert!(m.contains(r#"get-task: Err(SidecarError::Rejected("task id \\"../../../sei/other-rpc/v0/tasks/"#), "{m}");
            assert!(m.contains("is not a UUID (8-4-4-4-12 hex digits)"), "{m}");
            assert!(m.contains(r#"submit-task: Err(SidecarError::Rejected("task id \\"x?admin=true\\" is not a UUID"#), "{m}");
        }
        other => panic!("{other:?}"),
    }
    assert!(sidecar.submitted().is_empty(), "nothing reached the sidecar");
    let calls: Vec<&str> = r.host_calls.iter().map(|c| c.call.as_str()).collect();
    assert_eq!(calls, ["get-task <invalid id>", "submit-task <invalid id>"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_text_is_escaped_everywhere() {
    let r = alongside_well_behaved("forge").await;
    let control = |s: &str| s.chars().any(|c| c.is_control());
    assert_eq!(r.logs.len(), 1);
    assert!(!control(&r.logs[0].message), "{:?}", r.logs[0].message);
    assert!(
        r.logs[0].message.starts_with("step ok\\n2026-11-30T00:00:00.000000Z  INFO sei_operator: forged line\\u{1b}[2J"),
        "{}",
        r.logs[0].message
    );
    let denied = &r.host_calls[0];
    assert!(denied.outcome.starts_with("denied:"), "{denied:?}");
    assert!(!control(&denied.call) && !control(&denied.outcome), "{denied:?}");
    assert!(denied.call.contains("Kind\\n2026-11-30T00:00:00Z  WARN forged"), "{denied:?}");
    match &r.outcome {
        Err(e @ RunError::Permanent(m)) => {
            assert!(!control(m) && !control(&e.to_string()), "{m:?}");
            assert!(m.starts_with("first line\\nforged second line\\u{1b}[31m red"), "{m}");
        }
        other => panic!("{other:?}"),
    }
}

/// A StatefulSet the policy accepts, with `pod` as its pod spec and `labels` on its pods.
fn statefulset(labels: serde_json::Value, pod: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "rpc"},
        "spec": {"replicas": 1, "serviceName": "rpc", "selector": {"matchLabels": {"sei.io/node": "rpc"}},
            "template": {"metadata": {"labels": labels}, "spec": pod}}
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pod_policy_closes_the_gaps_hostile_modules_found() {
    let f = fixture().await;
    let writer = f
        .sandbox
        .load_module(&read_guest("test-misbehaving"), ModuleGrant::new(Grants::new([CapabilityName::KubeRead, CapabilityName::KubeWrite])))
        .await
        .unwrap();
    let seid = serde_json::json!([{"name": "seid", "image": "seid:v1"}]);
    let own = serde_json::json!({"sei.io/node": "rpc"});
    let pod = |extra: serde_json::Value| {
        let mut p = serde_json::json!({"containers": seid});
        for (k, v) in extra.as_object().unwrap() {
            p[k] = v.clone();
        }
        p
    };
    let cases: Vec<(&str, serde_json::Value, &str)> = vec![
        (
            "intercepts another node's traffic",
            statefulset(serde_json::json!({"sei.io/node": "rpc", "app": "validator-0"}), pod(serde_json::json!({}))),
            "label app=validator-0 is not one of the node's spec.podLabels",
        ),
        (
            "joins another node's Service",
            statefulset(serde_json::json!({"sei.io/node": "validator-0"}), pod(serde_json::json!({}))),
            "must carry the label sei.io/node=rpc",
        ),
        (
            "tolerates everything",
            statefulset(own.clone(), pod(serde_json::json!({"tolerations": [{"operator": "Exists"}]}))),
            "tolerates every taint",
        ),
        (
            "lands on the control plane",
            statefulset(own.clone(), pod(serde_json::json!({"nodeSelector": {"node-role.kubernetes.io/control-plane": ""}}))),
            "is not the platform's node pool",
        ),
        (
            "preempts system pods",
            statefulset(own.clone(), pod(serde_json::json!({"priorityClassName": "system-node-critical"}))),
            "sets priorityClassName",
        ),
        (
            "pulls with someone's credentials",
            statefulset(own.clone(), pod(serde_json::json!({"imagePullSecrets": [{"name": "regcred"}]}))),
            "sets imagePullSecrets",
        ),
        (
            "runs as spc_t",
            statefulset(own.clone(), pod(serde_json::json!({"securityContext": {"seLinuxOptions": {"type": "spc_t"}}}))),
            "sets seLinuxOptions",
        ),
        (
            "runs as root",
            statefulset(own.clone(), pod(serde_json::json!({"securityContext": {"runAsUser": 0}}))),
            "sets runAsUser: 0 (root)",
        ),
        (
            "binds an existing volume",
            serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-rpc"}, "spec": {"volumeName": "pv-validator-0"}}),
            "spec.volumeName (binding an existing volume)",
        ),
        (
            "labels a ConfigMap for another controller",
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rpc", "labels": {"grafana_dashboard": "1"}}}),
            "label grafana_dashboard=1 is not allowed",
        ),
        (
            "hides a Service from the proxy",
            serde_json::json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "rpc", "labels": {"service.kubernetes.io/service-proxy-name": "none"}},
                "spec": {"clusterIP": "None", "selector": {"sei.io/node": "rpc"}}}),
            "label service.kubernetes.io/service-proxy-name=none is not allowed",
        ),
        (
            "poses as another node's object",
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rpc", "labels": {"sei.io/node": "validator-0"}}}),
            "label sei.io/node=validator-0 is not allowed",
        ),
        (
            "selects an existing volume",
            serde_json::json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data-rpc"}, "spec": {"selector": {"matchLabels": {"node": "validator-0"}}}}),
            "spec.selector (binding an existing volume)",
        ),
    ];
    for (what, object, want) in cases {
        let (env, kube) = counting_env();
        let params = serde_json::json!({ "object": object }).to_string();
        let r = f.sandbox.run(&writer, input("apply-object", &params), &env).await;
        match &r.outcome {
            Err(RunError::Denied(m)) => assert!(m.contains(want), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        }
        assert_eq!(kube.count(), 0, "{what}: nothing was written");
    }
    // The same module writes a StatefulSet that stays within the policy.
    let (env, kube) = counting_env();
    let params = serde_json::json!({ "object": statefulset(own, pod(serde_json::json!({}))) }).to_string();
    let r = f.sandbox.run(&writer, input("apply-object", &params), &env).await;
    assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    assert_eq!(kube.count(), 1);
}

/// The findings of the hostile-guest review of this containment, each refused now.
mod hostile_review {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

    fn writer_grant() -> ModuleGrant {
        ModuleGrant::new(Grants::new([CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete]))
    }

    fn owner() -> serde_json::Value {
        serde_json::json!([{"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "name": "rpc", "uid": "u1"}])
    }

    /// Lists answer with as many pages as they are allowed (a big paged list).
    #[derive(Default)]
    struct PagedKube {
        requests: AtomicU32,
    }

    #[async_trait]
    impl KubeAdapter for PagedKube {
        async fn get(&self, _: &TypeRef, _: &str, _: &str) -> Result<Option<String>, KubeAdapterError> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            Ok(None)
        }
        async fn list(&self, _: &TypeRef, _: &str, _: Option<&str>, limits: ListLimits) -> Listed {
            self.requests.fetch_add(limits.max_requests, Ordering::SeqCst);
            Listed { result: Ok(vec![]), requests: limits.max_requests }
        }
        async fn create(&self, _: &TypeRef, _: &str, o: serde_json::Value, _: &str) -> Result<String, KubeAdapterError> {
            Ok(o.to_string())
        }
        async fn apply(&self, _: &TypeRef, _: &str, _: &str, o: serde_json::Value, _: &str) -> Result<String, KubeAdapterError> {
            Ok(o.to_string())
        }
        async fn delete(&self, _: &TypeRef, _: &str, _: &str, _: Option<&str>) -> Result<bool, KubeAdapterError> {
            Ok(false)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_page_of_a_list_takes_a_token_of_the_modules_rate() {
        let rate = RequestRate { per_second: 1, burst: 100 };
        let sandbox = Sandbox::new(SandboxConfig { module_request_rate: Some(rate), ..Default::default() }).unwrap();
        let module =
            sandbox.load_module(&read_guest("test-misbehaving"), ModuleGrant::new(Grants::new([CapabilityName::KubeRead]))).await.unwrap();
        let kube = Arc::new(PagedKube::default());
        let env = RunEnv { scope: Scope::for_node("sei", "rpc"), kube: kube.clone(), sidecar: None, members: None };
        let steps = (0..4).map(|_| sandbox.run(&module, input("list-selector", r#"{"bytes": 1}"#), &env));
        futures::future::join_all(steps).await;
        let made = kube.requests.load(Ordering::SeqCst);
        assert!(made <= 100 + 2, "four paged lists at once stay within the burst of 100: {made} requests");
    }

    /// A cluster in which someone else creates the node's ConfigMap right after the owner check.
    struct RacingKube {
        inner: InMemoryKube,
        raced: AtomicBool,
        deletes: AtomicU32,
    }

    #[async_trait]
    impl KubeAdapter for RacingKube {
        async fn get(&self, ty: &TypeRef, ns: &str, name: &str) -> Result<Option<String>, KubeAdapterError> {
            let read = self.inner.get(ty, ns, name).await;
            if !self.raced.swap(true, Ordering::SeqCst) {
                let foreign = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rpc", "namespace": "sei",
                    "uid": "someone-elses", "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "app", "uid": "d1"}]}});
                self.inner.insert(foreign).unwrap();
            }
            read
        }
        async fn list(&self, ty: &TypeRef, ns: &str, sel: Option<&str>, limits: ListLimits) -> Listed {
            self.inner.list(ty, ns, sel, limits).await
        }
        async fn create(&self, ty: &TypeRef, ns: &str, o: serde_json::Value, m: &str) -> Result<String, KubeAdapterError> {
            self.inner.create(ty, ns, o, m).await
        }
        async fn apply(&self, ty: &TypeRef, ns: &str, name: &str, o: serde_json::Value, m: &str) -> Result<String, KubeAdapterError> {
            self.inner.apply(ty, ns, name, o, m).await
        }
        async fn delete(&self, ty: &TypeRef, ns: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError> {
            self.deletes.fetch_add(1, Ordering::SeqCst);
            self.inner.delete(ty, ns, name, uid).await
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_absent_at_the_owner_check_is_not_deleted() {
        let f = fixture().await;
        let module = f.sandbox.load_module(&read_guest("test-misbehaving"), writer_grant()).await.unwrap();
        let kube = Arc::new(RacingKube { inner: InMemoryKube::new(), raced: AtomicBool::new(false), deletes: AtomicU32::new(0) });
        let env = RunEnv {
            scope: Scope::for_node("sei", "rpc").with_owner_uid(Some("u1".into())),
            kube: kube.clone(),
            sidecar: None,
            members: None,
        };
        let r = f.sandbox.run(&module, input("delete-ref", r#"{"api_version": "v1", "kind": "ConfigMap", "name": "rpc"}"#), &env).await;
        assert!(matches!(&r.outcome, Ok(StepOutcome::Complete { output }) if *output == serde_json::json!(false)), "{:?}", r.outcome);
        assert_eq!(kube.deletes.load(Ordering::SeqCst), 0, "no delete was sent");
        assert!(kube.inner.objects().iter().any(|o| o["metadata"]["uid"] == "someone-elses"), "the other object stays");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_made_between_the_check_and_the_apply_is_not_merged_into() {
        let f = fixture().await;
        let module = f.sandbox.load_module(&read_guest("test-misbehaving"), writer_grant()).await.unwrap();
        let kube = Arc::new(RacingKube { inner: InMemoryKube::new(), raced: AtomicBool::new(false), deletes: AtomicU32::new(0) });
        let env = RunEnv {
            scope: Scope::for_node("sei", "rpc").with_owner_uid(Some("u1".into())),
            kube: kube.clone(),
            sidecar: None,
            members: None,
        };
        let object = serde_json::json!({"object": {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "rpc", "ownerReferences": owner()}, "data": {"taken": "over"}}});
        let r = f.sandbox.run(&module, input("apply-object", &object.to_string()), &env).await;
        assert!(r.outcome.is_err(), "absent at the check: a create, which finds the object made in between: {:?}", r.outcome);
        let stored = kube.inner.objects().into_iter().find(|o| o["metadata"]["name"] == "rpc").unwrap();
        assert_eq!(stored["metadata"]["uid"], "someone-elses");
        assert!(stored.get("data").is_none(), "nothing was merged into someone else's object: {stored}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn null_annotations_still_carry_the_module_digest() {
        let f = fixture().await;
        let module = f.sandbox.load_module(&read_guest("test-misbehaving"), writer_grant()).await.unwrap();
        let kube = Arc::new(InMemoryKube::new());
        let env = RunEnv {
            scope: Scope::for_node("sei", "rpc").with_owner_uid(Some("u1".into())),
            kube: kube.clone(),
            sidecar: None,
            members: None,
        };
        let object = |annotations: serde_json::Value| {
            serde_json::json!({"object": {"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "rpc", "ownerReferences": owner(), "annotations": annotations}}})
            .to_string()
        };
        let r = f.sandbox.run(&module, input("apply-object", &object(serde_json::Value::Null)), &env).await;
        assert!(r.outcome.is_ok(), "{}", r.summary());
        let stored = kube.objects().into_iter().find(|o| o["metadata"]["name"] == "rpc").unwrap();
        assert_eq!(stored["metadata"]["annotations"]["sei.io/module-digest"], serde_json::json!(module.digest.to_string()));
        let r = f.sandbox.run(&module, input("apply-object", &object(serde_json::json!("not a map"))), &env).await;
        assert!(matches!(&r.outcome, Err(RunError::Denied(m)) if m.contains("annotations that are not a map")), "{:?}", r.outcome);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pod_must_be_placed_on_the_platforms_pool() {
        let f = fixture().await;
        let module = f.sandbox.load_module(&read_guest("test-misbehaving"), writer_grant()).await.unwrap();
        let mut platform = sei_operator::platform::PlatformConfig::for_local();
        platform.node_pool = Some("sei-nodes".into());
        let placement = sei_operator::policy::scope::Placement::for_platform(&platform);
        let env = RunEnv {
            scope: Scope::for_node("sei", "rpc").with_placement(placement),
            kube: Arc::new(InMemoryKube::new()),
            sidecar: None,
            members: None,
        };
        let seid = serde_json::json!([{"name": "seid", "image": "seid:v1"}]);
        let own = serde_json::json!({"sei.io/node": "rpc"});
        let unplaced = statefulset(own.clone(), serde_json::json!({"containers": seid}));
        let r = f.sandbox.run(&module, input("apply-object", &serde_json::json!({"object": unplaced}).to_string()), &env).await;
        assert!(matches!(&r.outcome, Err(RunError::Denied(m)) if m.contains("not placed on the platform's node pool")), "{:?}", r.outcome);
        let affinity = serde_json::json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "karpenter.sh/nodepool", "operator": "In", "values": ["sei-nodes"]}]}]}}});
        let placed = statefulset(own, serde_json::json!({"containers": seid, "affinity": affinity}));
        let r = f.sandbox.run(&module, input("apply-object", &serde_json::json!({"object": placed}).to_string()), &env).await;
        assert!(r.outcome.is_ok(), "{}", r.summary());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn invisible_characters_and_forged_escapes_are_shown_as_escapes() {
        let f = fixture().await;
        let (env, _) = env();
        let invisible = ["\u{180e}", "\u{fff9}", "\u{3164}", "\u{115f}", "\u{034f}", "\u{fe0f}", "\u{1d173}", "\u{2800}", "\u{e0100}"];
        let text = format!("ok{} done\\n2026-11-30T00:00:00Z INFO forged", invisible.concat());
        let params = serde_json::json!({ "text": text }).to_string();
        let r = f.sandbox.run(&f.misbehaving, input("log-text", &params), &env).await;
        let kept = &r.logs[0].message;
        for c in invisible {
            assert!(!kept.contains(c), "{c:?} reached the log line: {kept:?}");
        }
        assert!(kept.contains("done\\\\n2026"), "a literal backslash-n shows doubled, not as an escaped newline: {kept:?}");
        let error = r.outcome.unwrap_err().to_string();
        assert!(invisible.iter().all(|c| !error.contains(c)), "{error:?}");
    }
}

/// A group task's scope (`Scope::for_group`): only the group's own SeiNodes, only their sidecars.
mod group_scope {
    use super::*;
    use sei_operator::adapters::sidecar::{MemberSidecars, SidecarClient};
    use serde_json::json;
    use std::collections::BTreeMap;

    fn seinode(name: &str, owner_kind: &str, owner_uid: &str) -> serde_json::Value {
        json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
               "metadata": {"name": name, "namespace": "sei", "uid": format!("{name}-uid"),
                            "labels": {"sei.io/nodedeployment": "net"},
                            "ownerReferences": [{"apiVersion": "sei.io/v1alpha1", "kind": owner_kind, "name": "net", "uid": owner_uid}]},
               "spec": {"chainId": "c", "image": "i", "validator": {}}})
    }

    async fn setup() -> (&'static Fixture, sei_operator::sandbox::LoadedModule, RunEnv) {
        let f = fixture().await;
        let caps = [CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete, CapabilityName::Sidecar];
        let module = f.sandbox.load_module(&read_guest("test-misbehaving"), ModuleGrant::new(Grants::new(caps))).await.unwrap();
        let kube = Arc::new(InMemoryKube::new());
        kube.insert(seinode("net-0", "SeiNodeDeployment", "g-uid")).unwrap();
        // A member's name, but another group's object: never this group's to read or write.
        kube.insert(seinode("net-1", "SeiNodeDeployment", "other-uid")).unwrap();
        kube.insert(seinode("victim-0", "SeiNodeDeployment", "other-uid")).unwrap();
        kube.insert(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "net-0-key", "namespace": "sei"}})).unwrap();
        let members: BTreeMap<String, Arc<dyn SidecarClient>> =
            [("net-0".to_string(), Arc::new(InMemorySidecar::new()) as Arc<dyn SidecarClient>)].into();
        let scope =
            Scope::for_group("sei", "net", "g-uid", ["net-0".to_string(), "net-1".to_string()].into(), BTreeMap::new(), BTreeMap::new());
        let env = RunEnv { scope, kube, sidecar: None, members: Some(Arc::new(members) as Arc<dyn MemberSidecars>) };
        (f, module, env)
    }

    fn denied(r: &sei_operator::sandbox::RunReport) -> String {
        match &r.outcome {
            Err(RunError::Denied(m)) => m.clone(),
            other => panic!("expected a denial, got {other:?}"),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_task_reads_and_writes_only_its_own_seinodes() {
        let (f, module, env) = setup().await;
        let run = |mode: &'static str, params: serde_json::Value| {
            let env = &env;
            let module = &module;
            async move { f.sandbox.run(module, input(mode, &params.to_string()), env).await }
        };
        let own = run("get-ref", json!({"api_version": "sei.io/v1alpha1", "kind": "SeiNode", "name": "net-0"})).await;
        assert!(matches!(&own.outcome, Ok(StepOutcome::Complete { output }) if *output == json!(true)), "{:?}", own.outcome);

        let m = denied(&run("get-ref", json!({"api_version": "sei.io/v1alpha1", "kind": "SeiNode", "name": "net-1"})).await);
        assert!(m.contains("owned by SeiNodeDeployment net (uid g-uid) and by nothing else"), "a member name owned by another: {m}");
        let m = denied(&run("get-ref", json!({"api_version": "sei.io/v1alpha1", "kind": "SeiNode", "name": "victim-0"})).await);
        assert!(m.contains("SeiNode victim-0 is not a member of SeiNodeDeployment net"), "{m}");
        let m = denied(&run("get-ref", json!({"api_version": "v1", "kind": "Secret", "name": "net-0-key"})).await);
        assert!(m.contains("kind v1/Secret is not in the module's allowed kinds"), "{m}");
        let m = denied(&run("get-ref", json!({"api_version": "v1", "kind": "ConfigMap", "name": "net-0"})).await);
        assert!(m.contains("may touch only its own SeiNodes"), "{m}");

        let foreign = seinode("victim-0", "SeiNodeDeployment", "g-uid");
        let m = denied(&run("apply-object", json!({"object": foreign})).await);
        assert!(m.contains("SeiNode victim-0 is not a member of SeiNodeDeployment net"), "{m}");
        let m = denied(&run("delete-ref", json!({"api_version": "sei.io/v1alpha1", "kind": "SeiNode", "name": "net-1"})).await);
        assert!(m.contains("is not the node's own") || m.contains("owned by SeiNodeDeployment net"), "{m}");

        // A list sees only what the group owns.
        let listed = run("list-kind", json!({"api_version": "sei.io/v1alpha1", "kind": "SeiNode"})).await;
        assert!(matches!(&listed.outcome, Ok(StepOutcome::Complete { output }) if *output == json!(1)), "{:?}", listed.outcome);

        // Sidecars: the members' only.
        let id = run("member-node-id", json!({"node": "net-0"})).await;
        assert!(id.outcome.is_ok(), "{:?}", id.outcome);
        let m = denied(&run("member-node-id", json!({"node": "victim-0"})).await);
        assert!(m.contains("SeiNode victim-0 is not a member of SeiNodeDeployment net"), "{m}");
        // The node's own sidecar interface: a group has none (the guest reports both refusals).
        let r = run("sidecar-traversal", json!({})).await;
        assert!(
            matches!(&r.outcome, Err(RunError::Permanent(m)) if m.contains("SidecarError::Denied") && m.contains("has no sidecar of its own")),
            "{:?}",
            r.outcome
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_task_cannot_call_member_sidecars() {
        let f = fixture().await;
        let module = f
            .sandbox
            .load_module(
                &read_guest("test-misbehaving"),
                ModuleGrant::new(Grants::new([CapabilityName::KubeRead, CapabilityName::Sidecar])),
            )
            .await
            .unwrap();
        let env = RunEnv { scope: Scope::for_node("sei", "rpc"), kube: Arc::new(InMemoryKube::new()), sidecar: None, members: None };
        let r = f.sandbox.run(&module, input("member-node-id", r#"{"node": "rpc"}"#), &env).await;
        let m = denied(&r);
        assert!(m.contains("only a SeiNodeDeployment's tasks may call member sidecars"), "{m}");
    }
}

/// Hostile group tasks against the `member-sidecars` interface and the group scope (WIT
/// 0.1.1): budgets, bounded arguments, escaped text, and writes that try to leave the scope.
mod hostile_group_review {
    use super::*;
    use sei_operator::adapters::sidecar::{HttpSidecarClient, MemberSidecars, SidecarAdapterError, SidecarClient, TaskRequest, TaskResult};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicU32, Ordering};

    const GROUP_UID: &str = "g-uid";

    fn seinode(name: &str, owner_kind: &str, owner_uid: &str) -> Value {
        json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
               "metadata": {"name": name, "namespace": "sei", "uid": format!("{name}-uid"),
                            "labels": {"sei.io/nodedeployment": "net"},
                            "ownerReferences": [{"apiVersion": "sei.io/v1alpha1", "kind": owner_kind, "name": "net", "uid": owner_uid}]},
               "spec": {"chainId": "c", "image": "i", "validator": {}}})
    }

    /// A SeiNode this group may write: its own label, owned by the group alone.
    fn own(name: &str) -> Value {
        json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
               "metadata": {"name": name, "labels": {"sei.io/nodedeployment": "net"},
                            "ownerReferences": [{"apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "name": "net", "uid": GROUP_UID}]},
               "spec": {"chainId": "c", "image": "i", "validator": {}}})
    }

    fn control(s: &str) -> bool {
        s.chars().any(|c| c.is_control())
    }

    /// A sidecar that counts every request that reaches it.
    #[derive(Default)]
    struct CountingSidecar {
        inner: InMemorySidecar,
        hits: AtomicU32,
    }

    impl CountingSidecar {
        fn hits(&self) -> u32 {
            self.hits.load(Ordering::SeqCst)
        }
        fn hit(&self) {
            self.hits.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[async_trait]
    impl SidecarClient for CountingSidecar {
        async fn submit_task(&self, r: &TaskRequest) -> Result<String, SidecarAdapterError> {
            self.hit();
            self.inner.submit_task(r).await
        }
        async fn get_task(&self, id: &str) -> Result<TaskResult, SidecarAdapterError> {
            self.hit();
            self.inner.get_task(id).await
        }
        async fn status(&self) -> Result<String, SidecarAdapterError> {
            self.hit();
            self.inner.status().await
        }
        async fn healthz(&self) -> Result<bool, SidecarAdapterError> {
            self.hit();
            self.inner.healthz().await
        }
        async fn node_id(&self) -> Result<String, SidecarAdapterError> {
            self.hit();
            self.inner.node_id().await
        }
    }

    fn group_env(kube: Arc<dyn KubeAdapter>, members: &[&str], sidecars: BTreeMap<String, Arc<dyn SidecarClient>>) -> RunEnv {
        let scope = Scope::for_group(
            "sei",
            "net",
            GROUP_UID,
            members.iter().map(|m| m.to_string()).collect(),
            BTreeMap::new(),
            [("tier".to_string(), "val".to_string())].into(),
        );
        RunEnv { scope, kube, sidecar: None, members: Some(Arc::new(sidecars) as Arc<dyn MemberSidecars>) }
    }

    fn base_kube() -> Arc<InMemoryKube> {
        let kube = Arc::new(InMemoryKube::new());
        kube.insert(seinode("net-0", "SeiNodeDeployment", GROUP_UID)).unwrap();
        kube.insert(seinode("net-1", "SeiNodeDeployment", "other-uid")).unwrap();
        kube.insert(seinode("victim-0", "SeiNodeDeployment", "other-uid")).unwrap();
        kube
    }

    async fn module(host_calls: Option<u32>) -> LoadedModule {
        let f = fixture().await;
        let caps = [CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete, CapabilityName::Sidecar];
        let mut grant = ModuleGrant::new(Grants::new(caps));
        grant.limits.host_calls = host_calls;
        f.sandbox.load_module(&read_guest("test-misbehaving"), grant).await.unwrap()
    }

    fn completed(r: &RunReport) -> Value {
        match &r.outcome {
            Ok(StepOutcome::Complete { output }) => output.clone(),
            other => panic!("expected a completed step, got {other:?}"),
        }
    }

    fn no_control_in_report(r: &RunReport) {
        for c in &r.host_calls {
            assert!(!control(&c.call) && !control(&c.outcome), "{c:?}");
        }
        for l in &r.logs {
            assert!(!control(&l.message), "{l:?}");
        }
        if let Err(e) = &r.outcome {
            assert!(!control(&e.to_string()), "{e}");
        }
    }

    /// A member-sidecars call is charged before anything is looked at: a refused node, an
    /// oversized node name, an invalid id or a real call all count, and the sidecar sees at most
    /// the budget.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn member_sidecar_calls_are_charged_before_any_work() {
        let f = fixture().await;
        let m = module(Some(5)).await;
        for (what, params) in [
            ("a non-member", json!({"op": "status", "node": "victim-0", "count": 1000})),
            ("an oversized node name", json!({"op": "node-id", "node_bytes": 1 << 20, "count": 1000})),
            ("an invalid task id", json!({"op": "get-task", "node": "net-0", "id": "../x", "count": 1000})),
            ("unparsable params", json!({"op": "submit-task", "node": "net-0", "params": "{not json", "count": 1000})),
            ("real status calls", json!({"op": "status", "node": "net-0", "count": 1000})),
            ("real submissions", json!({"op": "submit-task", "node": "net-0", "params": "{}", "count": 1000})),
        ] {
            let sidecar = Arc::new(CountingSidecar::default());
            let env =
                group_env(base_kube(), &["net-0", "net-1"], [("net-0".to_string(), sidecar.clone() as Arc<dyn SidecarClient>)].into());
            let r = f.sandbox.run(&m, input("member-calls", &params.to_string()), &env).await;
            assert!(matches!(&r.outcome, Err(RunError::BudgetExceeded(b)) if b.limit == 5), "{what}: {:?}", r.outcome);
            assert_eq!(r.host_call_count, 6, "{what}: stopped at the call past the budget");
            assert!(sidecar.hits() <= 5, "{what}: the sidecar saw {} requests", sidecar.hits());
            no_control_in_report(&r);
        }
    }

    /// Every argument of a member-sidecars call is refused over its bound, without reaching the
    /// sidecar, and named in the report by its size only.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_member_arguments_are_refused_before_use() {
        let f = fixture().await;
        let m = module(None).await;
        let big = 8usize << 20;
        for (params, answer, call) in [
            (
                json!({"op": "status", "node_bytes": big}),
                format!("node name of {big} bytes is over the limit of 253 bytes"),
                "status <oversized node name>",
            ),
            (
                json!({"op": "submit-task", "node_bytes": 254}),
                "node name of 254 bytes is over the limit of 253 bytes".to_string(),
                "submit-task <oversized node name>",
            ),
            (
                json!({"op": "get-task", "node": "net-0", "id_bytes": big}),
                format!("task id of {big} bytes is over the limit of 128 bytes"),
                "get-task <invalid id>",
            ),
            (
                json!({"op": "submit-task", "node": "net-0", "params_bytes": big}),
                "params of".to_string(),
                "submit-task <oversized arguments>",
            ),
            (
                json!({"op": "submit-task", "node": "net-0", "task_type": "t".repeat(64)}),
                "task type of 64 bytes is over the limit of 63 bytes".to_string(),
                "submit-task <oversized arguments>",
            ),
        ] {
            let sidecar = Arc::new(CountingSidecar::default());
            let env = group_env(base_kube(), &["net-0"], [("net-0".to_string(), sidecar.clone() as Arc<dyn SidecarClient>)].into());
            let r = f.sandbox.run(&m, input("member-calls", &params.to_string()), &env).await;
            let out = completed(&r);
            let out = out.as_str().unwrap_or_default();
            assert!(out.contains("Rejected") && out.contains(&answer), "{params}: {out}");
            assert_eq!(sidecar.hits(), 0, "{params}: nothing reached the sidecar");
            assert_eq!(r.host_calls.len(), 1, "{params}: {:?}", r.host_calls);
            assert_eq!(r.host_calls[0].call, call, "{params}");
            assert!(r.host_calls[0].outcome.len() <= 600, "{params}: the record is bounded");
        }
    }

    /// A node name forged with newlines, terminal escapes and bidi overrides is refused (not a
    /// member) and shows up escaped in the report; a member's task type too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn forged_member_text_is_escaped_in_the_report() {
        let f = fixture().await;
        let m = module(None).await;
        let forged = "net-0\n2026-11-30T00:00:00.000000Z  WARN sei_operator: forged\u{1b}[2J\u{202e}";
        let sidecar = Arc::new(CountingSidecar::default());
        let env = group_env(base_kube(), &["net-0"], [("net-0".to_string(), sidecar.clone() as Arc<dyn SidecarClient>)].into());
        for op in ["status", "node-id", "get-task", "submit-task"] {
            let r = f.sandbox.run(&m, input("member-calls", &json!({"op": op, "node": forged}).to_string()), &env).await;
            let out = completed(&r);
            assert!(out.as_str().is_some_and(|s| s.contains("Denied") && s.contains("is not a member")), "{op}: {out}");
            no_control_in_report(&r);
            assert!(r.host_calls[0].outcome.starts_with("denied:"), "{op}: {:?}", r.host_calls);
            // The node name is escaped before it is recorded, and again by the record: shown
            // doubly escaped (over-escaped, never raw).
            assert!(r.host_calls[0].call.starts_with(&format!("{op} net-0\\")), "{op}: {:?}", r.host_calls);
        }
        let r = f
            .sandbox
            .run(
                &m,
                input("member-calls", &json!({"op": "submit-task", "node": "net-0", "task_type": "x\n\u{1b}[31mforged"}).to_string()),
                &env,
            )
            .await;
        completed(&r);
        no_control_in_report(&r);
        assert!(r.host_calls[0].call.starts_with("submit-task net-0 x\\n"), "{:?}", r.host_calls);
        assert_eq!(sidecar.hits(), 1, "only the member's own, well-formed call reached it");
    }

    /// A tiny HTTP server that answers every request with `status` and `body`.
    async fn hostile_sidecar(status: u16, body: String) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else { return };
                let body = body.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let mut seen = Vec::new();
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&buf[..n]),
                        }
                    }
                    let head = format!(
                        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(body.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        format!("http://{addr}")
    }

    /// A member's sidecar is not trusted either: its answer is read up to the body cap only, its
    /// text (status, error) is escaped in the report, and the output the guest gets is bounded.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hostile_member_sidecar_answers_are_bounded_and_escaped() {
        let f = fixture().await;
        let m = module(None).await;
        let id = "7f0c2a4e-0000-5000-8000-000000000001";
        let run = |url: String, op: &'static str| {
            let m = &m;
            async move {
                let client = Arc::new(HttpSidecarClient::new(url, Duration::from_secs(5)).unwrap()) as Arc<dyn SidecarClient>;
                let env = group_env(base_kube(), &["net-0"], [("net-0".to_string(), client)].into());
                f.sandbox.run(m, input("member-calls", &json!({"op": op, "node": "net-0", "id": id}).to_string()), &env).await
            }
        };
        let forged = "completed\n2026-11-30T00:00:00Z  WARN forged\u{1b}[2J\u{202e}";
        // Just under the cap: the output reaches the guest, bounded by the body cap.
        let blob = "a".repeat(900 << 10);
        let body =
            json!({"id": id, "type": "assemble\u{1b}", "status": forged, "error": "e\u{1b}[31m", "result": {"blob": blob}}).to_string();
        let r = run(hostile_sidecar(200, body).await, "get-task").await;
        let out = completed(&r);
        let bytes = out["outputBytes"].as_u64().expect("an output");
        assert!(bytes > 900 << 10 && bytes <= 1 << 20, "the output is bounded by the sidecar body cap: {bytes}");
        no_control_in_report(&r);
        assert!(r.host_calls[0].outcome.starts_with("ok: completed\\n2026"), "{:?}", r.host_calls);
        // Over the cap: refused as unavailable, never handed to the guest.
        let body = json!({"id": id, "type": "t", "status": "completed", "result": {"blob": "b".repeat(2 << 20)}}).to_string();
        let r = run(hostile_sidecar(200, body).await, "get-task").await;
        let out = completed(&r);
        assert!(out.as_str().is_some_and(|s| s.contains("Unavailable") && s.contains("sidecar answer over 1048576 bytes")), "{out}");
        no_control_in_report(&r);
        // A 4xx with a forged error text: escaped wherever it is shown.
        let r = run(hostile_sidecar(400, json!({"error": forged}).to_string()).await, "status").await;
        let out = completed(&r);
        assert!(out.as_str().is_some_and(|s| s.contains("Rejected")), "{out}");
        no_control_in_report(&r);
        assert!(!control(out.as_str().unwrap()), "the guest gets the escaped text too: {out}");
    }

    /// Every way a group task's write could leave its scope is refused, and nothing stored
    /// changes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn group_writes_cannot_leave_the_scope() {
        let f = fixture().await;
        let m = module(None).await;
        let kube = base_kube();
        let env = group_env(kube.clone(), &["net-0", "net-1", "net-exporter"], BTreeMap::new());
        let before: Vec<Option<String>> = {
            let mut v = Vec::new();
            for n in ["net-0", "net-1", "victim-0"] {
                v.push(kube.get(&TypeRef { api_version: "sei.io/v1alpha1".into(), kind: "SeiNode".into() }, "sei", n).await.unwrap());
            }
            v
        };
        let with = |patch: &dyn Fn(&mut Value)| {
            let mut o = own("net-0");
            patch(&mut o);
            o
        };
        let cases: Vec<(&str, &str, Value, &str)> = vec![
            (
                "another group's label",
                "apply-object",
                with(&|o| o["metadata"]["labels"]["sei.io/nodedeployment"] = json!("other")),
                "sei.io/nodedeployment=net",
            ),
            (
                "no group label",
                "apply-object",
                with(&|o| o["metadata"]["labels"] = json!({"team": "ops"})),
                "must carry the label sei.io/nodedeployment=net",
            ),
            (
                "an exporter role on a non-exporter",
                "apply-object",
                with(&|o| o["metadata"]["labels"]["sei.io/role"] = json!("exporter")),
                "sei.io/role=exporter is not allowed",
            ),
            (
                "another role",
                "apply-object",
                with(&|o| o["metadata"]["labels"]["sei.io/role"] = json!("validator")),
                "sei.io/role=validator is not allowed",
            ),
            (
                "another node's node label",
                "apply-object",
                with(&|o| o["metadata"]["labels"]["sei.io/node"] = json!("net-1")),
                "sei.io/node=net-1 is not allowed",
            ),
            (
                "a label outside the template",
                "apply-object",
                with(&|o| o["metadata"]["labels"]["app"] = json!("payments")),
                "app=payments is not allowed",
            ),
            (
                "a pod label of another node",
                "apply-object",
                with(&|o| o["spec"]["podLabels"] = json!({"sei.io/node": "net-1"})),
                "is not in the template",
            ),
            (
                "a pod label outside the template",
                "apply-object",
                with(&|o| o["spec"]["podLabels"] = json!({"app": "payments"})),
                "is not in the template",
            ),
            (
                "a template pod label with another value",
                "apply-object",
                with(&|o| o["spec"]["podLabels"] = json!({"tier": "db"})),
                "is not in the template",
            ),
            (
                "a non-string template pod label",
                "apply-object",
                with(&|o| o["spec"]["podLabels"] = json!({"tier": ["val"]})),
                "is not in the template",
            ),
            (
                "another group's pod label",
                "apply-object",
                with(&|o| o["spec"]["podLabels"] = json!({"sei.io/nodedeployment": "other"})),
                "is not in the template",
            ),
            (
                "an exporter pod role",
                "apply-object",
                with(&|o| o["spec"]["podLabels"] = json!({"sei.io/role": "exporter"})),
                "is not in the template",
            ),
            (
                "label peers in another namespace",
                "apply-object",
                with(&|o| o["spec"]["peers"] = json!([{"label": {"selector": {"a": "b"}, "namespace": "other-tenant"}}])),
                "outside the group's namespace",
            ),
            (
                "another namespace",
                "apply-object",
                with(&|o| o["metadata"]["namespace"] = json!("other-tenant")),
                "outside the node's namespace",
            ),
            (
                "a second owner",
                "apply-object",
                with(&|o| {
                    o["metadata"]["ownerReferences"]
                        .as_array_mut()
                        .unwrap()
                        .push(json!({"apiVersion": "v1", "kind": "Namespace", "name": "sei", "uid": "n"}))
                }),
                "and by nothing else",
            ),
            (
                "a SeiNode owner of the group's name",
                "apply-object",
                with(&|o| o["metadata"]["ownerReferences"][0]["kind"] = json!("SeiNode")),
                "owned by SeiNodeDeployment net (uid g-uid)",
            ),
            ("finalizers", "apply-object", with(&|o| o["metadata"]["finalizers"] = json!(["x/hold"])), "sets metadata.finalizers"),
            (
                "a foreign annotation",
                "apply-object",
                with(&|o| o["metadata"]["annotations"] = json!({"kubectl.kubernetes.io/last-applied-configuration": "x"})),
                "sets the annotation",
            ),
            (
                "a non-member by create",
                "create-object",
                {
                    let mut o = own("victim-0");
                    o["metadata"]["name"] = json!("victim-0");
                    o
                },
                "SeiNode victim-0 is not a member of SeiNodeDeployment net",
            ),
            ("a new non-member by apply", "apply-object", own("stranger-0"), "SeiNode stranger-0 is not a member"),
            ("a member name owned by another group", "apply-object", own("net-1"), "the existing object is not the node's own"),
            (
                "a ConfigMap",
                "apply-object",
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "net-0"}}),
                "may touch only its own SeiNodes",
            ),
            (
                "a StatefulSet of a member",
                "create-object",
                json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "net-0"}}),
                "may touch only its own SeiNodes",
            ),
            (
                "the exporter role on the exporter of another group",
                "create-object",
                {
                    let mut o = own("net-exporter");
                    o["metadata"]["labels"] = json!({"sei.io/nodedeployment": "other", "sei.io/role": "exporter"});
                    o
                },
                "must carry the label sei.io/nodedeployment=net",
            ),
        ];
        for (what, mode, object, expect) in cases {
            let r = f.sandbox.run(&m, input(mode, &json!({"object": object}).to_string()), &env).await;
            match &r.outcome {
                Err(RunError::Denied(msg)) => assert!(msg.contains(expect), "{what}: {msg}"),
                other => panic!("{what}: expected a denial, got {other:?}"),
            }
            no_control_in_report(&r);
        }
        // A create over a member name another group owns fails on the API server, and changes nothing.
        let r = f.sandbox.run(&m, input("create-object", &json!({"object": own("net-1")}).to_string()), &env).await;
        assert!(r.outcome.is_err(), "{:?}", r.outcome);
        let mut after = Vec::new();
        for n in ["net-0", "net-1", "victim-0"] {
            after.push(kube.get(&TypeRef { api_version: "sei.io/v1alpha1".into(), kind: "SeiNode".into() }, "sei", n).await.unwrap());
        }
        assert_eq!(before, after, "no stored SeiNode changed");
        // The control: the group's own SeiNode, and its exporter with the exporter role, are written.
        let r = f.sandbox.run(&m, input("apply-object", &json!({"object": own("net-0")}).to_string()), &env).await;
        assert!(r.outcome.is_ok(), "{:?}", r.outcome);
        let mut exporter = own("net-exporter");
        exporter["metadata"]["labels"]["sei.io/role"] = json!("exporter");
        let r = f.sandbox.run(&m, input("apply-object", &json!({"object": exporter}).to_string()), &env).await;
        assert!(r.outcome.is_ok(), "{:?}", r.outcome);
    }

    /// A kube adapter that lets another writer win the race between the host's owner check and
    /// its write: after answering the check's `get` of `name`, it stores `intruder` in its place.
    /// Its `apply` honours `metadata.uid` the way the API server does (a conflict when the stored
    /// object has another uid).
    struct RacingKube {
        inner: InMemoryKube,
        name: String,
        intruder: Mutex<Option<Value>>,
        applied: Mutex<Vec<Value>>,
    }

    #[async_trait]
    impl KubeAdapter for RacingKube {
        async fn get(&self, ty: &TypeRef, ns: &str, name: &str) -> Result<Option<String>, KubeAdapterError> {
            let answer = self.inner.get(ty, ns, name).await;
            let intruder = if name == self.name { self.intruder.lock().unwrap().take() } else { None };
            if let Some(intruder) = intruder {
                let _ = self.inner.delete(ty, ns, name, None).await;
                self.inner.insert(intruder).unwrap();
            }
            answer
        }
        async fn list(&self, ty: &TypeRef, ns: &str, sel: Option<&str>, limits: ListLimits) -> Listed {
            self.inner.list(ty, ns, sel, limits).await
        }
        async fn create(&self, ty: &TypeRef, ns: &str, o: Value, m: &str) -> Result<String, KubeAdapterError> {
            self.inner.create(ty, ns, o, m).await
        }
        async fn apply(&self, ty: &TypeRef, ns: &str, name: &str, o: Value, m: &str) -> Result<String, KubeAdapterError> {
            self.applied.lock().unwrap().push(o.clone());
            let stored: Option<Value> = self.inner.get(ty, ns, name).await?.map(|s| serde_json::from_str(&s).unwrap());
            let stored_uid = stored.as_ref().and_then(|s| s.pointer("/metadata/uid")).and_then(Value::as_str).map(str::to_string);
            if let Some(want) = o.pointer("/metadata/uid").and_then(Value::as_str)
                && stored_uid.as_deref() != Some(want)
            {
                return Err(KubeAdapterError::Conflict(format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {stored_uid:?}"
                )));
            }
            self.inner.apply(ty, ns, name, o, m).await
        }
        async fn delete(&self, ty: &TypeRef, ns: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError> {
            self.inner.delete(ty, ns, name, uid).await
        }
    }

    fn intruder(name: &str) -> Value {
        let mut o = seinode(name, "SeiNodeDeployment", "other-uid");
        o["metadata"]["uid"] = json!("intruder-uid");
        o["spec"]["image"] = json!("intruder:1");
        o
    }

    async fn stored(kube: &RacingKube, name: &str) -> Value {
        let s = kube.inner.get(&TypeRef { api_version: "sei.io/v1alpha1".into(), kind: "SeiNode".into() }, "sei", name).await.unwrap();
        serde_json::from_str(&s.expect("stored")).unwrap()
    }

    /// Absent at the owner check, created by someone else before the write: the host's write is
    /// a create, which fails, instead of an apply that would merge into the intruder.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_created_between_check_and_write_is_not_taken_over() {
        let f = fixture().await;
        let m = module(None).await;
        let kube = Arc::new(RacingKube {
            inner: InMemoryKube::new(),
            name: "net-2".into(),
            intruder: Mutex::new(Some(intruder("net-2"))),
            applied: Mutex::new(Vec::new()),
        });
        let env = group_env(kube.clone(), &["net-0", "net-2"], BTreeMap::new());
        let r = f.sandbox.run(&m, input("apply-object", &json!({"object": own("net-2")}).to_string()), &env).await;
        assert!(r.outcome.is_err(), "the write must fail: {:?}", r.outcome);
        assert!(kube.applied.lock().unwrap().is_empty(), "no apply was sent over the absent object");
        let s = stored(&kube, "net-2").await;
        assert_eq!(s["metadata"]["ownerReferences"][0]["uid"], "other-uid", "{s}");
        assert_eq!(s["spec"]["image"], "intruder:1", "{s}");
        assert!(s.pointer("/metadata/annotations/sei.io~1module-digest").is_none(), "not stamped by the module: {s}");
    }

    /// Present and owned at the check, replaced before the write: the apply carries the uid
    /// checked (not one the guest forged), so it lands on nothing else.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_object_replaced_between_check_and_write_is_not_taken_over() {
        let f = fixture().await;
        let m = module(None).await;
        let inner = InMemoryKube::new();
        inner.insert(seinode("net-0", "SeiNodeDeployment", GROUP_UID)).unwrap();
        let kube = Arc::new(RacingKube {
            inner,
            name: "net-0".into(),
            intruder: Mutex::new(Some(intruder("net-0"))),
            applied: Mutex::new(Vec::new()),
        });
        let env = group_env(kube.clone(), &["net-0"], BTreeMap::new());
        let mut object = own("net-0");
        object["metadata"]["uid"] = json!("intruder-uid");
        let r = f.sandbox.run(&m, input("apply-object", &json!({"object": object}).to_string()), &env).await;
        assert!(r.outcome.is_err(), "the write must fail: {:?}", r.outcome);
        let applied = kube.applied.lock().unwrap().clone();
        assert_eq!(applied.len(), 1);
        assert_eq!(applied[0]["metadata"]["uid"], "net-0-uid", "the uid checked, not the guest's");
        let s = stored(&kube, "net-0").await;
        assert_eq!(s["spec"]["image"], "intruder:1", "{s}");
    }

    /// A kube adapter that records the label selectors it is asked for.
    struct SelectorSpy {
        inner: InMemoryKube,
        selectors: Mutex<Vec<Option<String>>>,
    }

    #[async_trait]
    impl KubeAdapter for SelectorSpy {
        async fn get(&self, ty: &TypeRef, ns: &str, name: &str) -> Result<Option<String>, KubeAdapterError> {
            self.inner.get(ty, ns, name).await
        }
        async fn list(&self, ty: &TypeRef, ns: &str, sel: Option<&str>, limits: ListLimits) -> Listed {
            self.selectors.lock().unwrap().push(sel.map(str::to_string));
            self.inner.list(ty, ns, sel, limits).await
        }
        async fn create(&self, ty: &TypeRef, ns: &str, o: Value, m: &str) -> Result<String, KubeAdapterError> {
            self.inner.create(ty, ns, o, m).await
        }
        async fn apply(&self, ty: &TypeRef, ns: &str, name: &str, o: Value, m: &str) -> Result<String, KubeAdapterError> {
            self.inner.apply(ty, ns, name, o, m).await
        }
        async fn delete(&self, ty: &TypeRef, ns: &str, name: &str, uid: Option<&str>) -> Result<bool, KubeAdapterError> {
            self.inner.delete(ty, ns, name, uid).await
        }
    }

    /// Whatever selector a group task lists with, the API server is asked for the group's label
    /// too, and only what the group owns alone comes back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_group_list_cannot_be_widened_by_its_selector() {
        let f = fixture().await;
        let m = module(None).await;
        let inner = InMemoryKube::new();
        inner.insert(seinode("net-0", "SeiNodeDeployment", GROUP_UID)).unwrap();
        inner.insert(seinode("net-1", "SeiNodeDeployment", "other-uid")).unwrap();
        let mut unlabelled = seinode("stray-0", "SeiNodeDeployment", GROUP_UID);
        unlabelled["metadata"]["labels"] = json!({"sei.io/nodedeployment": "other"});
        inner.insert(unlabelled).unwrap();
        let mut shared = seinode("shared-0", "SeiNodeDeployment", GROUP_UID);
        shared["metadata"]["ownerReferences"]
            .as_array_mut()
            .unwrap()
            .push(json!({"apiVersion": "v1", "kind": "ConfigMap", "name": "x", "uid": "x"}));
        inner.insert(shared).unwrap();
        let kube = Arc::new(SelectorSpy { inner, selectors: Mutex::new(Vec::new()) });
        let env = group_env(kube.clone(), &["net-0", "net-1"], BTreeMap::new());
        for selector in [
            None,
            Some(""),
            Some("   "),
            Some("sei.io/nodedeployment=other"),
            Some("sei.io/nodedeployment"),
            Some("env in (a"),
            Some("a=b,"),
            Some(",sei.io/nodedeployment=other,"),
        ] {
            let params = json!({"api_version": "sei.io/v1alpha1", "kind": "SeiNode", "selector": selector});
            let r = f.sandbox.run(&m, input("list-with-selector", &params.to_string()), &env).await;
            if let Ok(StepOutcome::Complete { output }) = &r.outcome {
                let names: Vec<&str> = output.as_array().unwrap().iter().filter_map(Value::as_str).collect();
                assert!(names.iter().all(|n| *n == "net-0"), "{selector:?}: {names:?}");
            }
            let seen = kube.selectors.lock().unwrap().last().cloned().flatten().expect("a selector is always sent");
            assert!(seen.ends_with("sei.io/nodedeployment=net"), "{selector:?}: {seen}");
            no_control_in_report(&r);
        }
    }
}
