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
