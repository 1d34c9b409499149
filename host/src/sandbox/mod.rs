//! The wasm sandbox: one wasmtime `Engine` for the controller, modules loaded once per content
//! digest, and a fresh `Store` per task step.
//!
//! Invariants, each guarded by a test in `tests/sandbox_guests.rs` unless noted:
//! - a module that imports anything but `sei:task/{log,kube,sidecar}` fails at load, naming the
//!   import (`wasi_import_fails_at_load`);
//! - a step past its deadline is stopped with `RunError::Timeout` (`spinning_guest_times_out`),
//!   a growth past the memory cap with `RunError::MemoryLimit` (`memory_hog_hits_the_cap`), a
//!   trap with `RunError::Trap` carrying the guest's panic message (`trap_reports_panic_message`),
//!   an output or checkpoint past its cap with `RunError::OutputTooLarge` /
//!   `CheckpointTooLarge` (`oversized_output_is_refused`);
//! - a misbehaving run never disturbs another: each case runs next to a well-behaved run that
//!   must succeed;
//! - a trapped instance is never reused: every step gets a new `Store` (by construction: `run`
//!   creates and drops it);
//! - the engine falls back from the pooling allocator to on-demand allocation when the pool
//!   cannot be reserved (`engine_falls_back_to_on_demand`, unit test below);
//! - nothing a guest hands the host is copied before its size is checked (`abi`), every step's
//!   host and log calls are budgeted (`host`), and untrusted components compile in a bounded
//!   child process (`compile`).

pub mod abi;
pub mod cache;
pub mod compile;
pub mod host;
pub mod limits;
pub mod module;
pub mod run;

use crate::metrics::SandboxMetrics;
use cache::ArtifactCache;
use host::TaskCtx;
use limits::LimitsPolicy;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::Linker;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

pub use compile::{CompileLimits, Compiler};
pub use module::{LoadError, LoadedModule, ModuleGrant, ModuleInfo, ModuleLimits};
pub use run::{RunEnv, RunError, RunInput, RunReport, StepOutcome};

/// Epoch tick: the resolution of step deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub limits: LimitsPolicy,
    /// Where precompiled components are cached; `None` compiles every load.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Pooling allocator slots: how many steps may run at once before falling back to waiting
    /// for a slot (wasmtime returns an error past it; the executor bounds concurrency below it).
    pub max_concurrent_instances: u32,
    /// Use the pooling allocator when the address space allows it.
    pub pooling: bool,
    /// How modules that are not built in are compiled (the controller: a bounded child process).
    pub compiler: Compiler,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            limits: LimitsPolicy::default(),
            cache_dir: None,
            max_concurrent_instances: 64,
            pooling: true,
            compiler: Compiler::InProcess,
        }
    }
}

/// Which instance allocator the engine ended up with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allocator {
    Pooling {
        slots: u32,
        pagemap_scan: bool,
    },
    /// On demand, with the reason pooling was not used.
    OnDemand(String),
}

/// The controller's wasm sandbox. Cheap to share (`Arc`), safe to use from many tasks at once.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<TaskCtx>,
    config: SandboxConfig,
    cache: ArtifactCache,
    metrics: Arc<SandboxMetrics>,
    allocator: Allocator,
    ticker_stop: Arc<AtomicBool>,
    /// One child compile at a time.
    compile_slot: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error("creating the wasmtime engine: {0}")]
    Engine(String),
    #[error("linking the host interfaces: {0}")]
    Linker(String),
    #[error("preparing the precompiled cache at {path}: {source}")]
    Cache { path: String, source: std::io::Error },
}

/// The engine settings every artifact is compiled for (the compile child uses the same).
pub(crate) fn base_config() -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(true)
        .concurrency_support(false)
        .memory_init_cow(true)
        .native_unwind_info(false)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    c
}

fn pooling_config(slots: u32, memory_bytes: usize) -> PoolingAllocationConfig {
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(slots)
        .total_core_instances(slots * 4)
        .total_memories(slots)
        .total_tables(slots * 2)
        .total_stacks(slots)
        .max_core_instances_per_component(8)
        .max_memories_per_component(1)
        .max_tables_per_component(4)
        .max_memory_size(memory_bytes)
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    p
}

/// Build the engine: pooling when it can be reserved, on demand otherwise.
fn build_engine(config: &SandboxConfig) -> Result<(Engine, Allocator), SandboxError> {
    let mut reason = "pooling disabled by configuration".to_string();
    if config.pooling {
        let slots = config.max_concurrent_instances.max(1);
        let mut c = base_config();
        c.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(slots, config.limits.max_memory_bytes())));
        match Engine::new(&c) {
            Ok(engine) => {
                let pagemap = PoolingAllocationConfig::is_pagemap_scan_available();
                return Ok((engine, Allocator::Pooling { slots, pagemap_scan: pagemap }));
            }
            Err(e) => {
                reason = format!("pooling allocator unavailable: {e:#}");
                tracing::warn!(%reason, "falling back to on-demand instance allocation");
            }
        }
    }
    let engine = Engine::new(&base_config()).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
    Ok((engine, Allocator::OnDemand(reason)))
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let (engine, allocator) = build_engine(&config)?;
        let mut linker = Linker::<TaskCtx>::new(&engine);
        host::add_to_linker(&mut linker).map_err(|e| SandboxError::Linker(format!("{e:#}")))?;
        let cache = match &config.cache_dir {
            Some(dir) => ArtifactCache::at(dir).map_err(|source| SandboxError::Cache { path: dir.display().to_string(), source })?,
            None => ArtifactCache::disabled(),
        };
        let ticker_stop = Arc::new(AtomicBool::new(false));
        {
            let engine = engine.clone();
            let stop = ticker_stop.clone();
            std::thread::Builder::new()
                .name("sei-epoch-ticker".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| SandboxError::Engine(format!("starting the epoch ticker: {e}")))?;
        }
        Ok(Self {
            engine,
            linker,
            config,
            cache,
            metrics: Arc::new(SandboxMetrics::default()),
            allocator,
            ticker_stop,
            compile_slot: tokio::sync::Mutex::new(()),
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }
    pub fn allocator(&self) -> &Allocator {
        &self.allocator
    }
    pub fn metrics(&self) -> &Arc<SandboxMetrics> {
        &self.metrics
    }
    pub fn config(&self) -> &SandboxConfig {
        &self.config
    }
    pub fn cache(&self) -> &ArtifactCache {
        &self.cache
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_falls_back_to_on_demand() {
        // A pool of this many 4 GiB slots cannot be reserved in a 47-bit address space.
        let mut config = SandboxConfig { max_concurrent_instances: 2_000_000, ..Default::default() };
        config.limits.defaults.memory_bytes = 4 << 30;
        let (_, allocator) = build_engine(&config).unwrap();
        assert!(matches!(allocator, Allocator::OnDemand(ref r) if r.contains("pooling")), "{allocator:?}");
    }

    #[test]
    fn default_engine_uses_the_pool() {
        let (_, allocator) = build_engine(&SandboxConfig::default()).unwrap();
        assert!(matches!(allocator, Allocator::Pooling { slots: 64, .. }), "{allocator:?}");
    }
}
