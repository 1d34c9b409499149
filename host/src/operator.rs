//! Starts the controllers of one replica in the order the product needs, and stops them:
//!
//! 1. the TaskModule loader, on every replica (a standby is warm: its modules are fetched,
//!    compiled and ready), waited for up to `TASK_MODULE_SYNC_TIMEOUT` so that no SeiNode step runs on a
//!    built-in module a TaskModule overrides; `/readyz` turns ready then, leader or not;
//! 2. with leader election, the wait for the Lease (`leader`); without, at once;
//! 3. the SeiNode controller, until a shutdown signal or the loss of the Lease.
//!
//! Stopping: on a shutdown signal `/readyz` turns unready and no new reconcile starts; those in
//! flight get `shutdown_grace` to finish (writing their status). If all finished, the Lease is
//! released so that a standby takes over at once; if some had to be abandoned (their tasks are
//! aborted; a step is idempotent, so the next leader runs it again), the Lease is left to expire,
//! so that requests they already sent land before anyone else leads. A standby that stops gives
//! back a Lease it may have just taken. On the loss of the Lease the controller stops at once and `run` returns
//! [`Stopped::LostLeadership`]: the binary exits non-zero, before another replica may act
//! (`leader` module docs).

use crate::group::{self, GroupContext};
use crate::leader::{Elector, Leadership, LeaseSettings};
use crate::node::{self, Context};
use crate::taskmodule::loader::{TaskModuleLoader, TaskModuleWatch};
use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};

/// How long the existing TaskModules may take to load before nodes are reconciled anyway.
pub const TASK_MODULE_SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// How long reconciles in flight may take to finish after a shutdown signal.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long releasing the Lease may take on the way out.
const RELEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// A shutdown request that any number of waiters can await.
#[derive(Clone)]
pub struct Shutdown(Shared<BoxFuture<'static, ()>>);

impl Shutdown {
    /// Requested by SIGTERM or SIGINT.
    pub fn on_signals() -> Self {
        Self::when(async {
            #[cfg(unix)]
            {
                use tokio::signal::unix::{SignalKind, signal};
                match signal(SignalKind::terminate()) {
                    Ok(mut term) => {
                        tokio::select! {
                            _ = term.recv() => {}
                            _ = tokio::signal::ctrl_c() => {}
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops the controller gracefully");
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
        })
    }

    /// Requested when `signal` resolves.
    pub fn when(signal: impl std::future::Future<Output = ()> + Send + 'static) -> Self {
        Shutdown(signal.boxed().shared())
    }

    pub async fn requested(&self) {
        self.0.clone().await
    }

    /// Whether the request has been made already.
    pub fn is_requested(&self) -> bool {
        self.0.peek().is_some()
    }
}

/// How a replica's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A shutdown signal; every reconcile in flight finished.
    Graceful,
    /// A shutdown signal; reconciles still running after the grace period were abandoned (the
    /// Lease is left to expire).
    Abandoned,
    /// A shutdown signal while this replica was a standby.
    Standby,
    /// The Lease was lost: the SeiNode controller was stopped at once.
    LostLeadership,
}

/// The controllers of one replica.
pub struct Operator {
    ctx: Arc<Context>,
    groups: Option<Arc<GroupContext>>,
    replica: String,
    task_modules: Option<TaskModuleWatch>,
    election: Option<LeaseSettings>,
    shutdown: Shutdown,
    shutdown_grace: Duration,
}

impl Operator {
    /// The SeiNode controller alone (built-in and directory modules), stopped by SIGTERM or
    /// SIGINT; add TaskModules with [`Operator::with_task_modules`].
    pub fn new(ctx: Arc<Context>) -> Self {
        Self {
            ctx,
            groups: None,
            replica: crate::taskmodule::loader::default_replica_id(),
            task_modules: None,
            election: None,
            shutdown: Shutdown::on_signals(),
            shutdown_grace: SHUTDOWN_GRACE,
        }
    }

    /// Load `TaskModule`s (those `watch` selects), reporting as `replica` in their status.
    pub fn with_task_modules(mut self, watch: TaskModuleWatch, replica: impl Into<String>) -> Self {
        self.task_modules = Some(watch);
        self.replica = replica.into();
        self
    }

    /// Reconcile SeiNodes only while holding the Lease `settings` names.
    /// Also reconcile SeiNodeDeployments (under the same leadership and shutdown).
    pub fn with_groups(mut self, groups: Arc<GroupContext>) -> Self {
        self.groups = Some(groups);
        self
    }

    pub fn with_leader_election(mut self, settings: LeaseSettings) -> Self {
        self.election = Some(settings);
        self
    }

    /// Stop when `shutdown` is requested (default: SIGTERM or SIGINT), giving reconciles in
    /// flight `grace` to finish.
    pub fn with_shutdown(mut self, shutdown: Shutdown, grace: Duration) -> Self {
        self.shutdown = shutdown;
        self.shutdown_grace = grace;
        self
    }

    /// Run until a shutdown request or the loss of the Lease. `namespace`: only that namespace's
    /// SeiNodes.
    pub async fn run(self, concurrency: u16, namespace: Option<String>) -> Stopped {
        let Operator { ctx, groups, replica, task_modules, election, shutdown, shutdown_grace } = self;
        let _loader = match task_modules {
            Some(watch) => {
                let loader = TaskModuleLoader::new(
                    ctx.client().clone(),
                    ctx.sandbox().clone(),
                    ctx.registry().clone(),
                    replica,
                    ctx.telemetry().clone(),
                    watch,
                );
                let (synced_tx, synced) = oneshot::channel();
                let handle = AbortOnDrop(tokio::spawn(loader.run(synced_tx)));
                // Nodes are reconciled with the modules the cluster asks for, not the built-ins
                // they would briefly fall back to.
                tokio::select! {
                    waited = tokio::time::timeout(TASK_MODULE_SYNC_TIMEOUT, synced) => if waited.is_err() {
                        tracing::warn!(timeout = ?TASK_MODULE_SYNC_TIMEOUT, "TaskModules not listed in time (is the TaskModule CRD installed?); reconciling with the modules loaded so far");
                    },
                    () = shutdown.requested() => return Stopped::Standby,
                }
                Some(handle)
            }
            None => None,
        };
        ctx.telemetry().set_ready(true);

        // Leadership: a channel that says Leading, then maybe Lost.
        // Without an election, this replica leads for as long as it runs (the sender is kept).
        let (tx, mut leadership) = watch::channel(if election.is_some() { Leadership::Following } else { Leadership::Leading });
        let (elector, _always_leading) = match &election {
            None => (None, Some(tx)),
            Some(settings) => {
                tracing::info!(lease = %format!("{}/{}", settings.namespace, settings.name), identity = %settings.identity, "standing by for the leader Lease");
                (Some(AbortOnDrop(tokio::spawn(Elector::new(ctx.client().clone(), settings.clone()).run(tx)))), None)
            }
        };
        let led = tokio::select! {
            led = leadership.wait_for(|l| *l != Leadership::Following) => led.map(|l| *l == Leadership::Leading).unwrap_or(false),
            () = shutdown.requested() => false,
        };
        if !led {
            // A standby stopping (or an elector that failed): it may have just taken the Lease in
            // a request still in flight; give it back if so, so that nobody waits for it.
            ctx.telemetry().set_ready(false);
            drop(elector);
            if let Some(settings) = election {
                let mut elector = Elector::new(ctx.client().clone(), settings);
                let _ = tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await;
            }
            return if shutdown.is_requested() { Stopped::Standby } else { Stopped::LostLeadership };
        }
        ctx.telemetry().set_leader(true);

        let stopped = {
            let signal = shutdown.clone();
            let group_signal = shutdown.clone();
            let nodes = node::run_until(ctx.clone(), concurrency, namespace.clone(), async move { signal.requested().await });
            let groups = async move {
                if let Some(groups) = groups {
                    group::run_until(groups, concurrency, namespace, async move { group_signal.requested().await }).await;
                }
            };
            let controller = async move {
                futures::join!(nodes, groups);
            };
            let mut controller = std::pin::pin!(controller);
            // Lost, or the elector ended without saying so (it failed): stop either way.
            let lost = leadership.wait_for(|l| *l == Leadership::Lost).map(|_| ());
            let mut lost = std::pin::pin!(lost);
            let stopped = tokio::select! {
                () = &mut controller => Stopped::Graceful,
                () = &mut lost => Stopped::LostLeadership,
                () = shutdown.requested() => {
                    ctx.telemetry().set_ready(false);
                    tracing::info!(grace = ?shutdown_grace, "shutting down: no new reconciles; waiting for those in flight");
                    tokio::select! {
                        done = tokio::time::timeout(shutdown_grace, &mut controller) => match done {
                            Ok(()) => Stopped::Graceful,
                            Err(_) => Stopped::Abandoned,
                        },
                        () = &mut lost => Stopped::LostLeadership,
                    }
                }
            };
            // Leaving this block drops the controller: reconciles still running are aborted.
            stopped
        };
        ctx.telemetry().set_leader(false);
        if stopped == Stopped::LostLeadership {
            tracing::error!("lost the leader Lease: stopped reconciling");
            return stopped;
        }
        if stopped == Stopped::Abandoned {
            // Their aborts take effect at their next await, and a request already sent may still
            // arrive: the Lease is not released but left to expire, so that the next leader
            // starts only after the margin the election keeps.
            tracing::warn!(grace = ?shutdown_grace, "reconciles still in flight after the grace period were abandoned; the Lease is left to expire; the next leader repeats their steps");
            return stopped;
        }
        // Every reconcile has ended.
        if let Some(mut task) = elector {
            // Closing the channel ends the elector's loop; it hands itself back to release.
            drop(leadership);
            match (&mut task.0).await {
                Ok(mut elector) => match tokio::time::timeout(RELEASE_TIMEOUT, elector.release()).await {
                    Ok(Ok(())) => tracing::info!("released the leader Lease"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader Lease; it expires on its own"),
                    Err(_) => tracing::warn!(timeout = ?RELEASE_TIMEOUT, "releasing the leader Lease timed out; it expires on its own"),
                },
                Err(e) => tracing::warn!(error = %e, "the leader election task failed; the Lease expires on its own"),
            }
        }
        stopped
    }
}

/// Aborts the task when dropped (the TaskModule loader and the elector end with the controller).
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
