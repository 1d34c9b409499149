//! Everything a SeiNode reconcile needs, built once (kube-rs's `Context`): private fields, read
//! through accessors, set through `ContextBuilder`. Counters live in `Telemetry`, not here.

use super::caches::WatchCaches;
use super::convergence::ConvergenceLog;
use super::step_clock::StepClock;
use super::written::WrittenVersions;
use crate::adapters::events::EventRecorder;
use crate::adapters::kube::{KubeAdapter, KubeClientAdapter};
use crate::adapters::node_sidecars::{SidecarResolver, Sidecars};
use crate::platform::PlatformConfig;
use crate::registry::TaskRegistry;
use crate::registry::slots::ModuleSlots;
use crate::sandbox::Sandbox;
use crate::shard::ShardSelector;
use crate::telemetry::Telemetry;
use kube::Client;
use std::sync::Arc;
use std::time::Duration;

/// How often a Running node without a plan is looked at for drift.
pub const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(60);
/// Steps one module that is not built in may run at once, by default.
pub const DEFAULT_MODULE_STEP_CAP: usize = 4;

pub struct Context {
    client: Client,
    kube: Arc<dyn KubeAdapter>,
    sandbox: Arc<Sandbox>,
    registry: Arc<TaskRegistry>,
    platform: PlatformConfig,
    sidecars: Sidecars,
    recorder: EventRecorder,
    telemetry: Arc<Telemetry>,
    drift_check_interval: Duration,
    module_step_cap: usize,
    step_clock: StepClock,
    module_slots: Arc<ModuleSlots>,
    convergences: ConvergenceLog,
    written: WrittenVersions,
    shard: Option<ShardSelector>,
    /// The running controller's watch caches (`None` until it starts).
    caches: std::sync::RwLock<Option<Arc<WatchCaches>>>,
}

/// Builds a [`Context`]; what is not set keeps its default.
pub struct ContextBuilder {
    client: Client,
    sandbox: Arc<Sandbox>,
    registry: Arc<TaskRegistry>,
    platform: PlatformConfig,
    sidecars: SidecarResolver,
    instance: Option<String>,
    telemetry: Option<Arc<Telemetry>>,
    drift_check_interval: Duration,
    module_step_cap: usize,
    shard: Option<ShardSelector>,
}

impl Context {
    pub fn builder(
        client: Client,
        sandbox: Arc<Sandbox>,
        registry: Arc<TaskRegistry>,
        platform: PlatformConfig,
        sidecars: SidecarResolver,
    ) -> ContextBuilder {
        ContextBuilder {
            client,
            sandbox,
            registry,
            platform,
            sidecars,
            instance: std::env::var("POD_NAME").ok(),
            telemetry: None,
            drift_check_interval: DRIFT_CHECK_INTERVAL,
            module_step_cap: DEFAULT_MODULE_STEP_CAP,
            shard: None,
        }
    }

    pub fn client(&self) -> &Client {
        &self.client
    }
    pub fn kube(&self) -> &Arc<dyn KubeAdapter> {
        &self.kube
    }
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }
    pub fn registry(&self) -> &Arc<TaskRegistry> {
        &self.registry
    }
    pub fn platform(&self) -> &PlatformConfig {
        &self.platform
    }
    pub fn sidecars(&self) -> &Sidecars {
        &self.sidecars
    }
    pub fn recorder(&self) -> &EventRecorder {
        &self.recorder
    }
    pub fn telemetry(&self) -> &Arc<Telemetry> {
        &self.telemetry
    }
    pub fn drift_check_interval(&self) -> Duration {
        self.drift_check_interval
    }
    pub fn module_step_cap(&self) -> usize {
        self.module_step_cap
    }
    pub fn step_clock(&self) -> &StepClock {
        &self.step_clock
    }
    pub fn module_slots(&self) -> &ModuleSlots {
        &self.module_slots
    }
    /// The steps in flight per module, to share with the group controller (one cap for both).
    pub fn shared_module_slots(&self) -> Arc<ModuleSlots> {
        self.module_slots.clone()
    }
    pub fn convergences(&self) -> &ConvergenceLog {
        &self.convergences
    }
    pub fn written(&self) -> &WrittenVersions {
        &self.written
    }
    /// The SeiNodes this controller reconciles (`--shard-selector`; `None`: all).
    pub fn shard(&self) -> Option<&ShardSelector> {
        self.shard.as_ref()
    }
    /// The watch caches, once every store has had its first list.
    pub fn caches(&self) -> Option<Arc<WatchCaches>> {
        self.caches.read().unwrap_or_else(|p| p.into_inner()).clone().filter(|c| c.ready())
    }
    /// The caches of the controller that starts now (replacing an earlier run's).
    pub fn set_caches(&self, caches: WatchCaches) {
        *self.caches.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(caches));
    }
}

impl ContextBuilder {
    /// How often a Running node without a plan is checked for drift (default 60 s).
    pub fn drift_check_interval(mut self, interval: Duration) -> Self {
        self.drift_check_interval = interval;
        self
    }

    /// Steps one module that is not built in may run at once (default 4).
    pub fn module_step_cap(mut self, cap: usize) -> Self {
        self.module_step_cap = cap.max(1);
        self
    }

    /// Reconcile only the SeiNodes whose labels `shard` selects (default: all).
    pub fn shard_selector(mut self, shard: Option<ShardSelector>) -> Self {
        self.shard = shard;
        self
    }

    /// The instance named in the Events this controller publishes (default: `POD_NAME`).
    pub fn instance(mut self, instance: impl Into<String>) -> Self {
        self.instance = Some(instance.into());
        self
    }

    /// Share these metrics (default: new ones over the sandbox's counters and the registry).
    pub fn telemetry(mut self, telemetry: Arc<Telemetry>) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    pub fn build(self) -> Arc<Context> {
        let telemetry = self.telemetry.unwrap_or_else(|| {
            let t = Arc::new(Telemetry::new(Some(self.sandbox.metrics().clone())));
            t.watch_registry(self.registry.clone());
            t
        });
        let instance = self.instance;
        Arc::new(Context {
            kube: Arc::new(KubeClientAdapter::new(self.client.clone())),
            recorder: EventRecorder::new(self.client.clone(), "sei-operator", instance),
            client: self.client,
            sandbox: self.sandbox,
            registry: self.registry,
            platform: self.platform,
            sidecars: Sidecars::new(self.sidecars),
            telemetry,
            drift_check_interval: self.drift_check_interval,
            module_step_cap: self.module_step_cap,
            step_clock: StepClock::default(),
            module_slots: Arc::new(ModuleSlots::default()),
            convergences: ConvergenceLog::default(),
            written: WrittenVersions::default(),
            shard: self.shard,
            caches: Default::default(),
        })
    }
}
