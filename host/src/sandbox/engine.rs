//! The `Sandbox`: one wasmtime `Engine` for the controller (pooling allocator when the address
//! space allows it, on-demand otherwise: `engine_falls_back_to_on_demand`), the linker with the
//! host interfaces, the precompiled cache, the epoch ticker, and a fresh `Store` per step with its
//! memory, fuel and deadline armed (`new_store`).

use super::cache::ArtifactCache;
use super::compile::{Compiler, engine_config};
use super::counters::SandboxMetrics;
use super::host::{TaskCtx, add_to_linker};
use super::limits::{DEFAULT_MODULE_REQUEST_RATE, LimitsPolicy, RequestRate};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wasmtime::component::Linker;
use wasmtime::{Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

/// Epoch tick: the resolution of step deadlines.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How the sandbox is set up.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub limits: LimitsPolicy,
    /// Where precompiled components are cached; `None` compiles every load.
    pub cache_dir: Option<std::path::PathBuf>,
    /// Pooling allocator slots: component instances alive at once (steps in flight and `describe`
    /// calls of modules being loaded). Each slot holds the most a component may use
    /// ([`MAX_CORE_INSTANCES_PER_COMPONENT`] core instances, 4 tables, 1 memory), so a hostile
    /// component's shape cannot exhaust the pool for others;
    /// past the slots, instantiation fails. The controller sizes it from `--concurrency`.
    pub max_concurrent_instances: u32,
    /// Use the pooling allocator when the address space allows it.
    pub pooling: bool,
    /// How modules that are not built in are compiled (the controller: a bounded child process).
    pub compiler: Compiler,
    /// The sustained Kubernetes request rate of each module that is not built in (`None`: none).
    pub module_request_rate: Option<RequestRate>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            limits: LimitsPolicy::default(),
            cache_dir: None,
            max_concurrent_instances: 64,
            pooling: true,
            compiler: Compiler::InProcess,
            module_request_rate: Some(DEFAULT_MODULE_REQUEST_RATE),
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
    /// Digests whose compile hit a compiler limit in this process.
    failed_compiles: std::sync::Mutex<std::collections::HashMap<String, String>>,
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

/// Core module instances one component may contain. A Rust guest has 3; componentize-py's
/// runtime (libc, libpython, the bindings, and one stub per WASI function it stubs out) has 38.
/// A count, not memory: the memory cap (one linear memory per component) is unchanged.
pub const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = 48;

fn pooling_config(slots: u32, memory_bytes: usize) -> PoolingAllocationConfig {
    let mut p = PoolingAllocationConfig::new();
    p.total_component_instances(slots)
        .total_core_instances(slots * MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(slots)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
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
        let mut c = engine_config();
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
    let engine = Engine::new(&engine_config()).map_err(|e| SandboxError::Engine(format!("{e:#}")))?;
    Ok((engine, Allocator::OnDemand(reason)))
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Self, SandboxError> {
        let (engine, allocator) = build_engine(&config)?;
        let mut linker = Linker::<TaskCtx>::new(&engine);
        add_to_linker(&mut linker).map_err(|e| SandboxError::Linker(format!("{e:#}")))?;
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
            failed_compiles: Default::default(),
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

    pub(super) fn linker(&self) -> &Linker<TaskCtx> {
        &self.linker
    }

    /// Held while a child process compiles (one at a time).
    pub(super) fn compile_slot(&self) -> &tokio::sync::Mutex<()> {
        &self.compile_slot
    }

    /// Why compiling `digest` failed earlier in this process, if it hit a compiler limit.
    pub(super) fn remembered_failure(&self, digest: &str) -> Option<String> {
        self.failed_compiles.lock().unwrap_or_else(|p| p.into_inner()).get(digest).cloned()
    }

    pub(super) fn remember_failure(&self, digest: &str, reason: &str) {
        self.failed_compiles.lock().unwrap_or_else(|p| p.into_inner()).insert(digest.to_string(), reason.to_string());
    }

    /// A fresh store for one run, with memory, fuel and deadline armed.
    pub(super) fn new_store(&self, mut ctx: TaskCtx) -> Store<TaskCtx> {
        ctx.limiter.max_instances = match self.allocator {
            Allocator::Pooling { .. } => MAX_CORE_INSTANCES_PER_COMPONENT as usize,
            Allocator::OnDemand(_) => super::host::ON_DEMAND_MAX_CORE_INSTANCES,
        };
        let fuel = ctx.limits.fuel;
        let mut store = Store::new(self.engine(), ctx);
        store.limiter(|c| &mut c.limiter);
        // Fuel is on in the engine config, so this cannot fail.
        let _ = store.set_fuel(fuel);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Err(wasmtime::Error::new(DeadlineExceeded))
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        store
    }
}

/// The step was stopped by its deadline (raised from the epoch callback).
#[derive(Debug, thiserror::Error)]
#[error("deadline exceeded")]
pub struct DeadlineExceeded;

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
