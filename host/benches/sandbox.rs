//! Sandbox benchmarks (results and the command that produced them: BENCHMARKS.md).
//!
//! - `dispatch`: fresh Store + instantiate + `execute` + drop, through `Sandbox::run` (the
//!   real dispatch path, report included), for a no-op step and for the `count` step;
//! - `native`: the same `count` logic as a native Rust function (the very same source file);
//! - `host_call`: one `log` round trip, and one `kube get` through the capability guard with the
//!   in-memory adapter (1000 calls per step; criterion reports per call);
//! - `compile`: Cranelift compile of each built-in component;
//! - `load`: a verified precompiled artifact (read, integrity check, deserialize), and the full
//!   load pipeline from the cache (digest, artifact, instantiate-pre, `describe`, checks).
//!
//! After criterion, the binary prints the median and p99 of 20,000 single dispatches.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};
use sei_operator::adapters::kube::InMemoryKube;
use sei_operator::embedded::{BUILTIN_MODULES, test_guest_path};
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::policy::scope::Scope;
use sei_operator::sandbox::cache::CacheOutcome;
use sei_operator::sandbox::{LoadedModule, ModuleGrant, RunEnv, RunInput, Sandbox, SandboxConfig, StepOutcome};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../../tasks-wasm/test-guests/well-behaved/src/count.rs"]
mod count;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// The well-behaved guest with the per-step host-call budget at its ceiling (1000) and no request
/// rate, so that 1000 calls fit one step: what is measured is the cost of a call, not the limits.
fn setup(rt: &tokio::runtime::Runtime) -> (Sandbox, LoadedModule, RunEnv) {
    let sandbox = Sandbox::new(SandboxConfig { module_request_rate: None, ..Default::default() }).expect("sandbox");
    let bytes = std::fs::read(test_guest_path("test-well-behaved")).expect("test guest (built by host/build.rs)");
    let mut grant = ModuleGrant::new(Grants::new([CapabilityName::KubeRead]));
    grant.limits.host_calls = Some(1000);
    let module = rt.block_on(sandbox.load_module(&bytes, grant)).expect("load");
    let kube = Arc::new(InMemoryKube::new());
    kube.insert(serde_json::json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"peers","namespace":"sei"}})).expect("fixture");
    let env = RunEnv { scope: Scope::for_node("sei", "rpc"), kube, sidecar: None, members: None };
    (sandbox, module, env)
}

fn input(task_type: &str, params: &str) -> RunInput {
    RunInput {
        task_type: task_type.into(),
        task_id: "7f0c2a4e-0000-5000-8000-000000000001".into(),
        plan_id: "bench".into(),
        node: r#"{"metadata":{"name":"rpc","namespace":"sei"}}"#.into(),
        params: params.into(),
        checkpoint: None,
        attempt: 1,
    }
}

async fn run_ok(sandbox: &Sandbox, module: &LoadedModule, env: &RunEnv, i: RunInput) {
    let r = sandbox.run(module, i, env).await;
    assert!(matches!(r.outcome, Ok(StepOutcome::Complete { .. }) | Ok(StepOutcome::Pending { .. })), "{:?}", r.outcome);
}

fn dispatch(c: &mut Criterion) {
    let rt = runtime();
    let (sandbox, module, env) = setup(&rt);
    let mut g = c.benchmark_group("dispatch");
    g.bench_function("wasm_noop", |b| b.to_async(&rt).iter(|| run_ok(&sandbox, &module, &env, input("noop", "{}"))));
    g.bench_function("wasm_count", |b| b.to_async(&rt).iter(|| run_ok(&sandbox, &module, &env, input("count", r#"{"steps":3}"#))));
    g.finish();

    let mut g = c.benchmark_group("native");
    g.bench_function("count", |b| {
        b.iter(|| count::count_step(std::hint::black_box(r#"{"steps":3}"#), std::hint::black_box(None)).expect("count"))
    });
    g.finish();
}

fn host_calls(c: &mut Criterion) {
    let rt = runtime();
    let (sandbox, module, env) = setup(&rt);
    const N: u64 = 1000;
    let mut g = c.benchmark_group("host_call");
    g.throughput(Throughput::Elements(N));
    g.bench_function(BenchmarkId::new("log", N), |b| {
        b.to_async(&rt).iter(|| run_ok(&sandbox, &module, &env, input("log-loop", &format!(r#"{{"n":{N}}}"#))))
    });
    g.bench_function(BenchmarkId::new("kube_get_guarded_in_memory", N), |b| {
        b.to_async(&rt).iter(|| run_ok(&sandbox, &module, &env, input("kube-get-loop", &format!(r#"{{"n":{N},"name":"peers"}}"#))))
    });
    g.finish();
}

fn compile_and_load(c: &mut Criterion) {
    let rt = runtime();
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("sandbox");
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for m in BUILTIN_MODULES {
        g.bench_function(BenchmarkId::new("cranelift", format!("{} ({} KB)", m.name, m.bytes.len() / 1024)), |b| {
            b.iter(|| wasmtime::component::Component::new(sandbox.engine(), m.bytes).expect("compile"))
        });
    }
    g.finish();

    let dir = tempfile::tempdir().expect("tempdir");
    let cached = Sandbox::new(SandboxConfig { cache_dir: Some(dir.path().to_path_buf()), ..Default::default() }).expect("sandbox");
    let mut g = c.benchmark_group("load");
    for m in BUILTIN_MODULES {
        let grant = || sei_operator::registry::builtin_grant(m.name);
        rt.block_on(cached.load_module(m.bytes, grant())).expect("warm the cache");
        let digest = sei_operator::sandbox::cache::sha256_hex(m.bytes);
        // Read the artifact, check its integrity record, deserialize.
        g.bench_function(BenchmarkId::new("precompiled_artifact", m.name), |b| {
            b.iter(|| {
                let (_, outcome) = cached.cache().load_or_compile(cached.engine(), &digest, m.bytes).expect("load");
                assert_eq!(outcome, CacheOutcome::Loaded);
            })
        });
        // The whole pipeline: digest, artifact, instantiate-pre, describe, claim checks.
        g.bench_function(BenchmarkId::new("full_pipeline_from_cache", m.name), |b| {
            b.to_async(&rt).iter(|| async {
                let m = cached.load_module(m.bytes, grant()).await.expect("load");
                assert_eq!(m.cache_outcome, CacheOutcome::Loaded);
            })
        });
    }
    g.finish();
}

/// Median and p99 of single dispatches (criterion reports means and medians only).
fn dispatch_percentiles() {
    let rt = runtime();
    let (sandbox, module, env) = setup(&rt);
    let mut samples: Vec<Duration> = Vec::with_capacity(20_000);
    rt.block_on(async {
        for _ in 0..2_000 {
            run_ok(&sandbox, &module, &env, input("noop", "{}")).await;
        }
        for _ in 0..20_000 {
            let t = Instant::now();
            run_ok(&sandbox, &module, &env, input("noop", "{}")).await;
            samples.push(t.elapsed());
        }
    });
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    println!(
        "dispatch percentiles (20000 noop steps, {:?}): median {:.1} µs, p99 {:.1} µs, max {:.1} µs",
        sandbox.allocator(),
        pct(0.5).as_secs_f64() * 1e6,
        pct(0.99).as_secs_f64() * 1e6,
        samples[samples.len() - 1].as_secs_f64() * 1e6
    );
}

criterion_group!(benches, dispatch, host_calls, compile_and_load);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if std::env::args().any(|a| a == "--bench") {
        dispatch_percentiles();
    }
}
