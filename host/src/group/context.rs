//! Everything a SeiNodeDeployment reconcile needs, built once: private fields, read through
//! accessors. It shares the sandbox, the registry, the metrics and the per-module step slots (one
//! `--module-step-cap` for both controllers) with the SeiNode controller.

use crate::adapters::discovery::ApiDiscovery;
use crate::adapters::events::EventRecorder;
use crate::adapters::kube::{KubeAdapter, KubeClientAdapter};
use crate::adapters::node_sidecars::{SidecarResolver, Sidecars};
use crate::api::seinodedeployment::NetworkingStatus;
use crate::platform::PlatformConfig;
use crate::registry::TaskRegistry;
use crate::registry::slots::ModuleSlots;
use crate::sandbox::Sandbox;
use crate::shard::ShardSelector;
use crate::telemetry::Telemetry;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Client;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an answer of discovery, and a group's applied networking, is trusted before it is
/// asked or applied again (and how soon a group whose route or monitor is not ready looks again).
pub const DEFAULT_NETWORKING_REFRESH: Duration = Duration::from_secs(30);

pub struct GroupContext {
    client: Client,
    kube: Arc<dyn KubeAdapter>,
    sandbox: Arc<Sandbox>,
    registry: Arc<TaskRegistry>,
    platform: PlatformConfig,
    sidecars: Sidecars,
    recorder: EventRecorder,
    telemetry: Arc<Telemetry>,
    module_slots: Arc<ModuleSlots>,
    module_step_cap: usize,
    discovery: ApiDiscovery,
    networking_refresh: Duration,
    /// Per group uid: a digest of the networking last applied, when, and what it earned.
    applied_networking: Mutex<HashMap<String, AppliedNetworking>>,
    /// Reconcile only the groups (and watch only the children) this selects (`--shard-selector`).
    shard: std::sync::OnceLock<ShardSelector>,
}

/// What a group's networking write left: skip the next one while nothing changed, and restore
/// what it earned (its status may not have been written).
#[derive(Debug, Clone)]
pub struct AppliedNetworking {
    pub digest: u64,
    pub at: Instant,
    /// The `RouteReady` / `ServiceMonitorReady` conditions it earned.
    pub conditions: Vec<Condition>,
    pub routes: Option<NetworkingStatus>,
}

impl GroupContext {
    pub fn new(
        client: Client,
        sandbox: Arc<Sandbox>,
        registry: Arc<TaskRegistry>,
        platform: PlatformConfig,
        sidecars: SidecarResolver,
        telemetry: Arc<Telemetry>,
        module_steps: (Arc<ModuleSlots>, usize),
    ) -> Arc<Self> {
        let client_for_discovery = client.clone();
        let instance = std::env::var("POD_NAME").ok();
        Arc::new(Self {
            kube: Arc::new(KubeClientAdapter::new(client.clone())),
            recorder: EventRecorder::new(client.clone(), "sei-operator", instance),
            client,
            sandbox,
            registry,
            platform,
            sidecars: Sidecars::new(sidecars),
            telemetry,
            module_slots: module_steps.0,
            module_step_cap: module_steps.1.max(1),
            discovery: ApiDiscovery::new(Box::new(client_for_discovery), DEFAULT_NETWORKING_REFRESH),
            networking_refresh: DEFAULT_NETWORKING_REFRESH,
            applied_networking: Mutex::new(HashMap::new()),
            shard: std::sync::OnceLock::new(),
        })
    }

    /// The same context with another networking refresh (tests use a short one, to see a CRD
    /// installed later without waiting half a minute). Call it before the context is shared:
    /// a shared context is returned unchanged.
    pub fn with_networking_refresh(self: Arc<Self>, refresh: Duration) -> Arc<Self> {
        match Arc::try_unwrap(self) {
            Ok(mut ctx) => {
                ctx.discovery = ApiDiscovery::new(Box::new(ctx.client.clone()), refresh);
                ctx.networking_refresh = refresh;
                Arc::new(ctx)
            }
            Err(shared) => shared,
        }
    }

    /// Reconcile only the groups whose labels `shard` selects (set once, before the controller
    /// starts; shared or not, the context takes it).
    pub fn with_shard_selector(self: Arc<Self>, shard: Option<ShardSelector>) -> Arc<Self> {
        if let Some(shard) = shard
            && let Err(refused) = self.shard.set(shard)
        {
            tracing::error!(selector = %refused.as_str(), "the group context already has a shard selector; keeping the first");
        }
        self
    }

    pub fn shard(&self) -> Option<&ShardSelector> {
        self.shard.get()
    }

    pub fn discovery(&self) -> &ApiDiscovery {
        &self.discovery
    }
    pub fn networking_refresh(&self) -> Duration {
        self.networking_refresh
    }
    /// What the networking of group `uid` with `digest` earned, when it was applied within the
    /// refresh.
    pub fn networking_fresh(&self, uid: &str, digest: u64) -> Option<AppliedNetworking> {
        let memo = self.applied_networking.lock().unwrap_or_else(|p| p.into_inner());
        memo.get(uid).filter(|a| a.digest == digest && a.at.elapsed() < self.networking_refresh).cloned()
    }
    /// Remember (Some) or forget (None) the networking applied for group `uid`.
    pub fn remember_networking(&self, uid: &str, applied: Option<AppliedNetworking>) {
        let mut memo = self.applied_networking.lock().unwrap_or_else(|p| p.into_inner());
        match applied {
            Some(a) => memo.insert(uid.to_string(), a),
            None => memo.remove(uid),
        };
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
    pub fn module_slots(&self) -> &ModuleSlots {
        &self.module_slots
    }
    pub fn module_step_cap(&self) -> usize {
        self.module_step_cap
    }
}
