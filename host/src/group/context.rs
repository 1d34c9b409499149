//! Everything a SeiNodeDeployment reconcile needs, built once: private fields, read through
//! accessors. It shares the sandbox, the registry, the metrics and the per-module step slots (one
//! `--module-step-cap` for both controllers) with the SeiNode controller.

use crate::adapters::kube::{KubeAdapter, KubeClientAdapter};
use crate::adapters::node_sidecars::{SidecarResolver, Sidecars};
use crate::platform::PlatformConfig;
use crate::registry::TaskRegistry;
use crate::registry::slots::ModuleSlots;
use crate::sandbox::Sandbox;
use crate::telemetry::Telemetry;
use kube::Client;
use kube::runtime::events::{Recorder, Reporter};
use std::sync::Arc;

pub struct GroupContext {
    client: Client,
    kube: Arc<dyn KubeAdapter>,
    sandbox: Arc<Sandbox>,
    registry: Arc<TaskRegistry>,
    platform: PlatformConfig,
    sidecars: Sidecars,
    recorder: Recorder,
    telemetry: Arc<Telemetry>,
    module_slots: Arc<ModuleSlots>,
    module_step_cap: usize,
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
        let reporter = Reporter { controller: "sei-operator".into(), instance: std::env::var("POD_NAME").ok() };
        Arc::new(Self {
            kube: Arc::new(KubeClientAdapter::new(client.clone())),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            sandbox,
            registry,
            platform,
            sidecars: Sidecars::new(sidecars),
            telemetry,
            module_slots: module_steps.0,
            module_step_cap: module_steps.1.max(1),
        })
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
    pub fn recorder(&self) -> &Recorder {
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
