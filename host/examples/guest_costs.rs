//! What a task module costs by guest language: component size, the first load (compiled), a
//! load from the precompiled cache, and dispatch (instantiate + one step, the scaffold's first
//! step: one `kube get`, then `pending`), median and p99 of 200 steps.
//!
//! `make bench-guests` makes the Rust, Python and JavaScript scaffolds with `task new`, builds
//! them with `task build`, and runs this on the three components
//! (`cargo run --release -p sei-operator --example guest_costs -- FILE...`).

use sei_operator::adapters::kube::InMemoryKube;
use sei_operator::adapters::sidecar::InMemorySidecar;
use sei_operator::authoring::harness::{StepsSpec, run_steps};
use sei_operator::authoring::report::spread;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::policy::scope::Scope;
use sei_operator::sandbox::{ModuleGrant, Sandbox, SandboxConfig};
use std::sync::Arc;
use std::time::Instant;

const STEPS: usize = 200;

fn grants() -> ModuleGrant {
    ModuleGrant::new(Grants::new([CapabilityName::KubeRead, CapabilityName::Sidecar]))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let files: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(!files.is_empty(), "usage: guest_costs COMPONENT.wasm...");
    println!("| component | size | first load (compile) | cached load | dispatch median | dispatch p99 | fuel | peak memory |");
    println!("|---|---|---|---|---|---|---|---|");
    for file in files {
        let bytes = std::fs::read(&file)?;
        let cache = tempfile::tempdir()?;
        // No per-module request rate: the figure is the step's own cost, 200 steps in a row.
        let config = || SandboxConfig { cache_dir: Some(cache.path().to_path_buf()), module_request_rate: None, ..Default::default() };
        let cold = Sandbox::new(config())?;
        let started = Instant::now();
        cold.load_module(&bytes, grants()).await?;
        let compile = started.elapsed();
        drop(cold);
        let warm = Sandbox::new(config())?;
        let started = Instant::now();
        let module = warm.load_module(&bytes, grants()).await?;
        let cached = started.elapsed();
        let node = serde_json::json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "node-0", "namespace": "default", "uid": "u-0"}, "spec": {}});
        let spec = StepsSpec {
            task_type: "mark-ready".into(),
            node,
            params: "{}".into(),
            checkpoint: None,
            max_steps: 1,
            scope: Scope::for_node("default", "node-0").with_owner_uid(Some("u-0".into())),
        };
        let (mut wall, mut fuel, mut memory) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..STEPS {
            let out = run_steps(&warm, &module, &spec, Arc::new(InMemoryKube::new()), Arc::new(InMemorySidecar::new())).await;
            let r = &out.reports[0];
            anyhow::ensure!(r.outcome.is_ok(), "{file}: {}", r.summary());
            wall.push(r.duration_micros);
            fuel.push(r.fuel_consumed);
            memory.push(r.peak_memory_bytes as u64);
        }
        let (w, f, m) = (spread(&wall), spread(&fuel), spread(&memory));
        println!(
            "| {} {} | {:.1} MB | {:.2} s | {:.1} ms | {} µs | {} µs | {} | {:.1} MiB |",
            module.info.name,
            module.info.version,
            bytes.len() as f64 / 1e6,
            compile.as_secs_f64(),
            cached.as_secs_f64() * 1e3,
            w.median,
            w.p99,
            f.median,
            m.max as f64 / (1 << 20) as f64
        );
    }
    Ok(())
}
