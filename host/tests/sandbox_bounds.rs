//! What a hostile module costs the host, measured: this test binary counts every heap byte the
//! host allocates (a counting global allocator), so a value lifted out of a guest, a report that
//! grows with a guest's calls or a compile in the controller's process would show. The tests run
//! one at a time (`MEASURE`) so that one test's allocations are not another's.
//!
//! - `log_storm_keeps_host_memory_bounded`: two million `log` calls (the crash-looping attack of
//!   issue #9) cost the host almost nothing: the step stops at the log budget and the report keeps
//!   at most its caps;
//! - `huge_log_line_is_not_copied`: an 8 MiB log line is refused from its length alone;
//! - `describe_bomb_is_refused_before_lifting`: two million task types from `describe` are refused
//!   without lifting one;
//! - `compile_bomb_is_stopped_in_the_child`: a component that takes Cranelift 14 s and growing to
//!   compile is stopped at the child's CPU limit (and at a memory limit), and the host does not
//!   grow; `child_compiled_module_runs`: a module compiled by the child runs;
//! - `a_list_costs_the_host_its_bytes_not_a_parsed_tree`: a `list` of fat objects on the real API
//!   server is refused at its 8 MiB cap having grown the host by a few times that, not by the
//!   hundreds of MiB parsed trees cost.

use sei_operator::adapters::kube::InMemoryKube;
use sei_operator::adapters::sidecar::InMemorySidecar;
use sei_operator::embedded::test_guest_path;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::policy::scope::Scope;
use sei_operator::sandbox::{
    CompileLimits, Compiler, LoadError, ModuleGrant, RunEnv, RunError, RunInput, Sandbox, SandboxConfig, StepOutcome,
};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Counts live heap bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's layout.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded to the system allocator with the pointer and layout it gave out.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded to the system allocator with the caller's arguments.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let live = LIVE.fetch_add(new_size - layout.size(), Ordering::Relaxed) + new_size - layout.size();
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                LIVE.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

static MEASURE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The heap growth (peak over the start) while `f` runs.
async fn peak_growth<T>(f: impl std::future::Future<Output = T>) -> (T, usize) {
    let start = LIVE.load(Ordering::Relaxed);
    PEAK.store(start, Ordering::Relaxed);
    let out = f.await;
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(start))
}

const MIB: usize = 1 << 20;

fn read_guest(name: &str) -> Vec<u8> {
    std::fs::read(test_guest_path(name)).unwrap_or_else(|e| panic!("reading {name}: {e}"))
}

fn input(task_type: &str) -> RunInput {
    RunInput {
        task_type: task_type.into(),
        task_id: "7f0c2a4e-0000-5000-8000-000000000001".into(),
        plan_id: "p".into(),
        node: r#"{"apiVersion":"sei.io/v1alpha1","kind":"SeiNode","metadata":{"name":"rpc","namespace":"sei"},"spec":{}}"#.into(),
        params: "{}".into(),
        checkpoint: None,
        attempt: 1,
    }
}

fn env() -> RunEnv {
    RunEnv {
        scope: Scope::for_node("sei", "rpc"),
        kube: Arc::new(InMemoryKube::new()),
        sidecar: Some(Arc::new(InMemorySidecar::new())),
        members: None,
    }
}

fn read_only() -> ModuleGrant {
    ModuleGrant::new(Grants::new([CapabilityName::KubeRead]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_storm_keeps_host_memory_bounded() {
    let _one = MEASURE.lock().await;
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let module = sandbox.load_module(&read_guest("test-misbehaving"), read_only()).await.unwrap();
    let env = env();
    let (report, grew) = peak_growth(sandbox.run(&module, input("log-storm"), &env)).await;
    assert!(matches!(report.outcome, Err(RunError::BudgetExceeded(_))), "{:?}", report.outcome);
    assert!(grew < 2 * MIB, "the host grew by {grew} bytes for a log storm");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_log_line_is_not_copied() {
    let _one = MEASURE.lock().await;
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let module = sandbox.load_module(&read_guest("test-misbehaving"), read_only()).await.unwrap();
    let env = env();
    let (report, grew) = peak_growth(sandbox.run(&module, input("log-huge-line"), &env)).await;
    assert!(matches!(report.outcome, Ok(StepOutcome::Complete { .. })), "{:?}", report.outcome);
    assert!(grew < MIB, "the host grew by {grew} bytes for an 8 MiB line it refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_bomb_is_refused_before_lifting() {
    let _one = MEASURE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig { cache_dir: Some(dir.path().to_path_buf()), ..Default::default() }).unwrap();
    let wasm = read_guest("test-describe-bomb");
    // The first load compiles (and stores the artifact); the second measures describe alone.
    let first = sandbox.load_module(&wasm, ModuleGrant::new(Grants::new([]))).await.unwrap_err();
    let (err, grew) = peak_growth(sandbox.load_module(&wasm, ModuleGrant::new(Grants::new([])))).await;
    let err = err.unwrap_err();
    assert_eq!(err, first);
    match &err {
        LoadError::BadDescription { what, .. } => assert_eq!(what, "2000000 task types, over the limit of 64"),
        other => panic!("{other:?}"),
    }
    assert_eq!(err.reason(), "DescribeFailed");
    assert!(grew < 4 * MIB, "the host grew by {grew} bytes refusing two million task types");
}

/// A component whose one function Cranelift takes seconds, and growing fast, to compile: every one
/// of `locals` locals is live across each of `blocks` nested blocks that a `br_table` can leave
/// (400 × 400: 1.5 MB, about 14 s on this machine's kind).
fn compile_bomb(locals: u32, blocks: u32) -> Vec<u8> {
    use wasm_encoder::*;
    let mut types = TypeSection::new();
    types.ty().function([ValType::I64], [ValType::I64]);
    let mut funcs = FunctionSection::new();
    funcs.function(0);
    let mut f = Function::new([(locals, ValType::I64)]);
    for l in 1..=locals {
        f.instruction(&Instruction::LocalGet(0)).instruction(&Instruction::I64Const(l.into())).instruction(&Instruction::I64Mul);
        f.instruction(&Instruction::LocalSet(l));
    }
    for _ in 0..blocks {
        f.instruction(&Instruction::Block(BlockType::Empty));
    }
    f.instruction(&Instruction::LocalGet(0)).instruction(&Instruction::I32WrapI64);
    f.instruction(&Instruction::BrTable((0..blocks).collect::<Vec<_>>().into(), 0));
    for b in 0..blocks {
        f.instruction(&Instruction::End);
        for l in 1..=locals {
            f.instruction(&Instruction::LocalGet(l)).instruction(&Instruction::I64Const((b + l).into())).instruction(&Instruction::I64Xor);
            f.instruction(&Instruction::LocalSet(l));
        }
    }
    f.instruction(&Instruction::LocalGet(1));
    for l in 2..=locals {
        f.instruction(&Instruction::LocalGet(l)).instruction(&Instruction::I64Add);
    }
    f.instruction(&Instruction::End);
    let mut code = CodeSection::new();
    code.function(&f);
    let mut module = Module::new();
    module.section(&types).section(&funcs).section(&code);
    let mut component = Component::new();
    component.section(&ModuleSection(&module));
    component.finish()
}

fn child_compiler(memory_bytes: u64, cpu_seconds: u64) -> Compiler {
    let limits = CompileLimits { memory_bytes, cpu_seconds, timeout: Duration::from_secs(cpu_seconds * 4 + 10) };
    Compiler::Subprocess { exe: env!("CARGO_BIN_EXE_sei-operator").into(), limits }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compile_bomb_is_stopped_in_the_child() {
    let _one = MEASURE.lock().await;
    let bomb = compile_bomb(400, 400);
    let sandbox = Sandbox::new(SandboxConfig { compiler: child_compiler(2 << 30, 2), ..Default::default() }).unwrap();
    let started = Instant::now();
    let (err, grew) = peak_growth(sandbox.load_module(&bomb, ModuleGrant::new(Grants::new([])))).await;
    let err = err.unwrap_err();
    assert_eq!(err.reason(), "CompileFailed");
    assert!(err.to_string().contains("compiling exceeded the CPU limit of 2 s (the compiler was stopped)"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "stopped at the limit: {:?}", started.elapsed());
    assert!(grew < 8 * MIB, "the controller grew by {grew} bytes while the child compiled");
    // The same bytes are not compiled again.
    let again = Instant::now();
    let err = sandbox.load_module(&bomb, ModuleGrant::new(Grants::new([]))).await.unwrap_err();
    assert!(err.to_string().contains("remembered from an earlier attempt"), "{err}");
    assert!(again.elapsed() < Duration::from_secs(1), "{:?}", again.elapsed());

    let tight = Sandbox::new(SandboxConfig { compiler: child_compiler(96 << 20, 60), ..Default::default() }).unwrap();
    let err = tight.load_module(&bomb, ModuleGrant::new(Grants::new([]))).await.unwrap_err();
    assert!(err.to_string().contains("compiling exceeded the memory limit of 96 MiB"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_compiled_module_runs() {
    let _one = MEASURE.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::new(SandboxConfig {
        compiler: child_compiler(2 << 30, 60),
        cache_dir: Some(dir.path().to_path_buf()),
        ..Default::default()
    })
    .unwrap();
    let module = sandbox.load_module(&read_guest("test-well-behaved"), read_only()).await.unwrap();
    assert_eq!(module.cache_outcome, sei_operator::sandbox::cache::CacheOutcome::CompiledAndStored);
    let r = sandbox.run(&module, input("noop"), &env()).await;
    assert!(matches!(r.outcome, Ok(StepOutcome::Complete { .. })), "{:?}", r.outcome);
    let again = sandbox.load_module(&read_guest("test-well-behaved"), read_only()).await.unwrap();
    assert_eq!(again.cache_outcome, sei_operator::sandbox::cache::CacheOutcome::Loaded, "the child's artifact is cached");
}

/// A ConfigMap with `keys` tiny entries: many small values in one map, costly for a parser that
/// builds trees. (ConfigMaps, not StatefulSets: the testkit's StatefulSet faker would parse those
/// in this very process while the test measures.)
fn fat_configmap(name: &str, keys: usize) -> serde_json::Value {
    let data: serde_json::Map<String, serde_json::Value> =
        (0..keys).map(|i| (format!("k{i:05}"), serde_json::Value::String(String::new()))).collect();
    serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
}

/// The hostile review measured one `list` of such objects (each written by a module through the
/// guard) growing the host by 460–700 MiB: every page was parsed into trees before the 8 MiB
/// cap was checked. Answers are now read as bytes, up to what is left of the cap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_costs_the_host_its_bytes_not_a_parsed_tree() {
    use sei_operator::adapters::kube::{KubeAdapter, KubeClientAdapter, TypeRef};
    // Held from the start: creating the objects allocates too, and must not land in another
    // test's measurement.
    let _one = MEASURE.lock().await;
    let cluster = sei_testkit::TestCluster::shared();
    let ns = cluster.namespace("bounds-list").await;
    let adapter = KubeClientAdapter::new(cluster.client().await);
    let ty = TypeRef { api_version: "v1".into(), kind: "ConfigMap".into() };
    let mut json_bytes = 0;
    for i in 0..24 {
        let object = fat_configmap(&format!("n{i:02}"), 45_000);
        json_bytes += object.to_string().len();
        adapter.create(&ty, ns.name(), object, "bounds").await.unwrap();
    }
    assert!(json_bytes > 12 * MIB, "the objects are over the 8 MiB cap together: {json_bytes} bytes");

    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let module = sandbox.load_module(&read_guest("test-misbehaving"), read_only()).await.unwrap();
    let env = RunEnv { scope: Scope::for_node(ns.name(), "rpc"), kube: Arc::new(adapter.clone()), sidecar: None, members: None };
    let mut list = input("list-kind");
    list.params = r#"{"api_version": "v1", "kind": "ConfigMap"}"#.into();
    let (report, grew) = peak_growth(sandbox.run(&module, list, &env)).await;
    assert!(report.host_calls.iter().any(|c| c.outcome.contains("or 8388608 bytes")), "refused at the cap: {:?}", report.host_calls);
    assert!(grew < 40 * MIB, "one list grew the host by {} MiB (the cap is 8 MiB of JSON)", grew / MIB);

    let (one, grew) = peak_growth(adapter.get(&ty, ns.name(), "n00")).await;
    let one = one.unwrap().unwrap();
    assert!(grew < 3 * one.len(), "one object of {} KiB grew the host by {} KiB", one.len() >> 10, grew >> 10);
}

/// A component of `n` core instances of an empty module, and nothing else.
fn many_instances(n: u32) -> Vec<u8> {
    use wasm_encoder::*;
    let mut component = Component::new();
    component.section(&ModuleSection(&Module::new()));
    let mut instances = InstanceSection::new();
    for _ in 0..n {
        instances.instantiate(0, Vec::<(&str, ModuleArg)>::new());
    }
    component.section(&instances);
    component.finish()
}

/// The pool bounds each core instance's size (1 MiB), so a component may have up to 48 of them
/// (componentize-py's runtime has 38). The on-demand fallback bounds no instance's size, so it
/// keeps 16: the hostile review found 48 instances of a million globals each taking 780 MB there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_instances_per_component_depend_on_the_allocator() {
    let load = |pooling: bool, n: u32| async move {
        let sandbox = Sandbox::new(SandboxConfig { pooling, ..Default::default() }).unwrap();
        sandbox.load_module(&many_instances(n), ModuleGrant::new(Grants::new([]))).await.unwrap_err().to_string()
    };
    let over = |e: &str| e.contains("instance") && (e.contains("limit") || e.contains("maximum") || e.contains("exceed"));
    let pooled = load(true, 40).await;
    assert!(!over(&pooled), "40 core instances instantiate on the pool (then describe is missing): {pooled}");
    let pooled = load(true, 49).await;
    assert!(over(&pooled), "49 are over the pool's per-component maximum: {pooled}");
    let on_demand = load(false, 16).await;
    assert!(!over(&on_demand), "16 instantiate on demand: {on_demand}");
    let on_demand = load(false, 17).await;
    assert!(over(&on_demand), "17 are over the on-demand limit: {on_demand}");
}
