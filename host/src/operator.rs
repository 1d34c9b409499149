//! Starts the controllers of one replica in the order the product needs: the TaskModule loader
//! first, so that no SeiNode step runs on a built-in module that a loadable TaskModule overrides
//! (for at most `sync_timeout`), then the SeiNode controller; `/readyz` turns ready once both run.

use crate::node::{self, Context};
use crate::taskmodule::loader::{TaskModuleLoader, TaskModuleWatch};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

/// How long the existing TaskModules may take to load before nodes are reconciled anyway.
pub const TASK_MODULE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// The controllers of one replica.
pub struct Operator {
    ctx: Arc<Context>,
    replica: String,
    task_modules: Option<TaskModuleWatch>,
    sync_timeout: Duration,
}

impl Operator {
    /// The SeiNode controller alone (built-in and directory modules); add TaskModules with
    /// [`Operator::with_task_modules`].
    pub fn new(ctx: Arc<Context>) -> Self {
        Self { ctx, replica: crate::taskmodule::loader::default_replica_id(), task_modules: None, sync_timeout: TASK_MODULE_SYNC_TIMEOUT }
    }

    /// Load `TaskModule`s (those `watch` selects), reporting as `replica` in their status.
    pub fn with_task_modules(mut self, watch: TaskModuleWatch, replica: impl Into<String>) -> Self {
        self.task_modules = Some(watch);
        self.replica = replica.into();
        self
    }

    /// How long the existing TaskModules may take to load before nodes are reconciled.
    pub fn with_sync_timeout(mut self, timeout: Duration) -> Self {
        self.sync_timeout = timeout;
        self
    }

    /// Run until the SeiNode controller stops (a shutdown signal). `namespace`: only that
    /// namespace's SeiNodes.
    pub async fn run(self, concurrency: u16, namespace: Option<String>) {
        let ctx = self.ctx;
        let _loader = match self.task_modules {
            Some(watch) => {
                let loader = TaskModuleLoader::new(
                    ctx.client().clone(),
                    ctx.sandbox().clone(),
                    ctx.registry().clone(),
                    self.replica,
                    ctx.telemetry().clone(),
                    watch,
                );
                let (synced_tx, synced) = oneshot::channel();
                let handle = AbortOnDrop(tokio::spawn(loader.run(synced_tx)));
                // Nodes are reconciled with the modules the cluster asks for, not the built-ins
                // they would briefly fall back to.
                if tokio::time::timeout(self.sync_timeout, synced).await.is_err() {
                    tracing::warn!(timeout = ?self.sync_timeout, "TaskModules not listed in time (is the TaskModule CRD installed?); reconciling with the modules loaded so far");
                }
                Some(handle)
            }
            None => None,
        };
        ctx.telemetry().set_ready(true);
        node::run(ctx, concurrency, namespace).await;
    }
}

/// Aborts the task when dropped (the TaskModule loader ends with the controller).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
