//! The SeiNode reconcile loop (the imperative shell around the pure planner and executor).
//!
//! One reconcile: finalizer → (deletion: phase `Terminating`, data PVC deleted, finalizer
//! removed) → a `Failed` node is terminal → label peers resolved into `status.resolvedPeers` →
//! `resolve_plan`: a new plan is persisted (optimistic lock) before anything runs; an active plan
//! advances through every task that completes synchronously, each step run in the sandbox by the
//! module registered for its type (scoped by `node_scope`) → one status write (a PUT of the status
//! subresource) with everything that changed → events and the requeue the outcome asks for. A
//! step's outcome also counts against a new module's automatic-rollback window (`watch_rollout`).
//!
//! Status writes carry `metadata.resourceVersion`, so a concurrent change makes the write fail
//! with a conflict and the reconcile is retried on fresh data (`error_policy`).
//! `run` starts the TaskModule loader first and reconciles nodes once the existing TaskModules
//! are loaded (`modules::task_modules`).
//! Tests: `tests/controller.rs` and `tests/task_modules.rs` on the real control plane.

use crate::adapters::kube::{KubeAdapter, KubeClientAdapter};
use crate::adapters::sidecar::{DEFAULT_SIDECAR_TIMEOUT, HttpSidecarClient, SidecarClient};
use crate::crd::{SeiNode, SeiNodePhase, SeiNodeStatus, TaskPlanPhase};
use crate::executor::{Next, TaskOutcome, conclude, current_task, record_step};
use crate::guard::Scope;
use crate::modules::rollout::Verdict;
use crate::modules::task_modules::{AutoRollbackNotice, TaskModuleLoader, TaskModuleWatch, default_replica_id};
use crate::planner::{Observed, PlanDecision, PlanError, resolve_plan};
use crate::platform::PlatformConfig;
use crate::registry::TaskRegistry;
use crate::sandbox::{RunEnv, RunError, RunInput, Sandbox, StepOutcome};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

pub const FINALIZER: &str = "sei.io/seinode-finalizer";
/// Steps one reconcile may run (synchronous tasks chain within a reconcile).
pub const MAX_STEPS_PER_RECONCILE: usize = 32;
/// How often a Running node without a plan is looked at for drift.
pub const DRIFT_CHECK_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_SIDECAR_PORT: i32 = 7777;
/// The shortest wait a `pending` step gets, whatever its module asks for: at most four steps (and
/// status writes) per node per second.
pub const MIN_REQUEUE: Duration = Duration::from_millis(250);
/// How long a step waits when its (non-built-in) module already runs its share of the steps.
pub const MODULE_BUSY_RETRY: Duration = Duration::from_millis(500);

/// When each waiting node may run its next step, in this process (by node uid). A reconcile woken
/// before that time (by the controller's own status write, or any watch event) returns at once,
/// without reading the API server or running a step. `status.plan.tasks[].notBefore` keeps the
/// same bound across restarts (`step_clock_holds_back_early_wakes`).
#[derive(Debug, Default)]
pub struct StepClock {
    next: Mutex<HashMap<String, std::time::Instant>>,
}

impl StepClock {
    /// How long `node` must still wait; `None` (and the entry dropped) once it may step.
    pub fn wait(&self, node: &str, now: std::time::Instant) -> Option<Duration> {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        match next.get(node) {
            Some(at) if *at > now => Some(*at - now),
            Some(_) => {
                next.remove(node);
                None
            }
            None => None,
        }
    }

    /// `node` steps again no sooner than `at`.
    pub fn hold(&self, node: &str, at: std::time::Instant) {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), at);
    }

    /// Forget `node` (its plan ended, or it was deleted).
    pub fn forget(&self, node: &str) {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).remove(node);
    }

    /// Nodes currently held back.
    pub fn len(&self) -> usize {
        self.next.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Steps in flight per module digest, for modules that are not built in: one such module may run
/// at most `cap` steps at once, so a module whose steps spin until their deadline cannot take every
/// reconcile slot from the nodes that do not use it (`module_slots_cap_one_module`).
#[derive(Debug, Default)]
pub struct ModuleSlots {
    in_flight: Mutex<HashMap<Arc<str>, usize>>,
}

/// A step's place in its module's share; released on drop.
pub struct ModuleSlot<'a> {
    slots: &'a ModuleSlots,
    digest: Arc<str>,
}

impl ModuleSlots {
    pub fn try_acquire(&self, digest: &Arc<str>, cap: usize) -> Option<ModuleSlot<'_>> {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(digest.clone()).or_default();
        if *n >= cap.max(1) {
            return None;
        }
        *n += 1;
        Some(ModuleSlot { slots: self, digest: digest.clone() })
    }
}

impl Drop for ModuleSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.slots.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.digest) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.digest);
            }
        }
    }
}

/// How the controller finds a node's sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SidecarResolver {
    /// `http://<node>-0.<node>.<ns>.svc.cluster.local:<spec.sidecar.port or 7777>` (reference).
    PodDns,
    /// A template with `{name}` and `{namespace}` (tests, the demo).
    Template(String),
}

impl SidecarResolver {
    pub fn url(&self, node: &SeiNode) -> String {
        let name = node.name_any();
        let ns = node.namespace().unwrap_or_default();
        match self {
            SidecarResolver::PodDns => {
                let port = node.spec.sidecar.as_ref().and_then(|s| s.port).unwrap_or(DEFAULT_SIDECAR_PORT);
                HttpSidecarClient::pod_dns_url(&name, &ns, port as u16)
            }
            SidecarResolver::Template(t) => t.replace("{name}", &name).replace("{namespace}", &ns),
        }
    }
}

/// Everything a reconcile needs (kube-rs's Context bundle).
pub struct Context {
    pub client: Client,
    pub sandbox: Arc<Sandbox>,
    pub registry: Arc<TaskRegistry>,
    pub platform: PlatformConfig,
    pub sidecars: SidecarResolver,
    pub recorder: Recorder,
    /// How often a Running node without a plan is looked at for drift.
    pub drift_check_interval: Duration,
    /// Reconciles started (all nodes).
    pub reconciles: std::sync::atomic::AtomicU64,
    pub telemetry: Arc<crate::telemetry::Telemetry>,
    /// This replica's id in `TaskModule` statuses and events.
    pub replica: String,
    /// Load `TaskModule`s (the product default; `None` serves only built-in and directory modules).
    pub task_modules: Option<TaskModuleWatch>,
    /// How long `run` waits for the existing TaskModules to be loaded before reconciling nodes.
    pub task_module_sync_timeout: Duration,
    /// Steps one module that is not built in may run at once.
    pub module_step_cap: usize,
    step_clock: StepClock,
    module_slots: ModuleSlots,
    rollbacks: mpsc::UnboundedSender<AutoRollbackNotice>,
    rollback_notices: Mutex<Option<mpsc::UnboundedReceiver<AutoRollbackNotice>>>,
    kube: Arc<dyn KubeAdapter>,
    sidecar_clients: Mutex<HashMap<String, Arc<HttpSidecarClient>>>,
}

impl Context {
    pub fn new(
        client: Client,
        sandbox: Arc<Sandbox>,
        registry: Arc<TaskRegistry>,
        platform: PlatformConfig,
        sidecars: SidecarResolver,
    ) -> Self {
        let reporter = Reporter { controller: "sei-operator".into(), instance: std::env::var("POD_NAME").ok() };
        let telemetry = Arc::new(crate::telemetry::Telemetry::new(Some(sandbox.metrics().clone())));
        telemetry.watch_registry(registry.clone());
        let (rollbacks, notices) = mpsc::unbounded_channel();
        Self {
            replica: default_replica_id(),
            task_modules: None,
            task_module_sync_timeout: Duration::from_secs(60),
            module_step_cap: 4,
            step_clock: StepClock::default(),
            module_slots: ModuleSlots::default(),
            rollbacks,
            rollback_notices: Mutex::new(Some(notices)),
            kube: Arc::new(KubeClientAdapter::new(client.clone())),
            recorder: Recorder::new(client.clone(), reporter),
            client,
            sandbox,
            registry,
            platform,
            sidecars,
            drift_check_interval: DRIFT_CHECK_INTERVAL,
            telemetry,
            reconciles: std::sync::atomic::AtomicU64::new(0),
            sidecar_clients: Mutex::new(HashMap::new()),
        }
    }

    fn sidecar_for(&self, node: &SeiNode) -> Option<Arc<dyn SidecarClient>> {
        let url = self.sidecars.url(node);
        let mut clients = self.sidecar_clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&url) {
            return Some(c.clone());
        }
        let client = Arc::new(HttpSidecarClient::new(url.clone(), DEFAULT_SIDECAR_TIMEOUT).ok()?);
        clients.insert(url, client.clone());
        Some(client)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("serializing the node: {0}")]
    Serialize(#[from] serde_json::Error),
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn publish(ctx: &Context, node: &SeiNode, type_: EventType, reason: &str, note: String) {
    // The API server refuses event notes over 1 KiB.
    let note = crate::text::safe(&note, 900);
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    if let Err(e) = ctx.recorder.publish(&event, &node.object_ref(&())).await {
        tracing::warn!(node = %node.name_any(), error = %e, "could not publish event");
    }
}

/// An event for a phase transition (none when the phase did not change). The reason is the new
/// phase: events with one reason form a series, so a fixed reason would hide every transition
/// after the first.
async fn publish_phase_change(ctx: &Context, node: &SeiNode, from: Option<SeiNodePhase>, to: Option<SeiNodePhase>) {
    if from == to {
        return;
    }
    let to = to.unwrap_or_default();
    let type_ = if to == SeiNodePhase::Failed { EventType::Warning } else { EventType::Normal };
    publish(ctx, node, type_, &format!("{to:?}"), format!("phase {:?} -> {to:?}", from.unwrap_or_default())).await;
}

/// Write the whole `status` (PUT on the status subresource) with an optimistic lock: the
/// object carries the resourceVersion it was read at, so a concurrent change is a 409 and the
/// reconcile is retried on fresh data. A full replacement, unlike a merge patch, also clears
/// fields that became empty (a removed convergence plan, the current task of a finished plan).
async fn write_status(api: &Api<SeiNode>, node: &SeiNode, status: &SeiNodeStatus) -> Result<SeiNode, kube::Error> {
    let mut object = node.clone();
    object.metadata.managed_fields = None;
    object.status = Some(status.clone());
    api.replace_status(&node.name_any(), &kube::api::PostParams::default(), &object).await
}

/// `<name>-0.<name>.<ns>.svc.cluster.local` of every SeiNode matched by a label peer source.
async fn resolve_label_peers(node: &SeiNode, ctx: &Context) -> Result<Vec<String>, kube::Error> {
    let mut out = BTreeSet::new();
    for source in node.spec.peers.iter().flatten().filter_map(|p| p.label.as_ref()) {
        let ns = source.namespace.clone().or_else(|| node.namespace()).unwrap_or_default();
        let selector = source.selector.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",");
        let api: Api<SeiNode> = Api::namespaced(ctx.client.clone(), &ns);
        for peer in api.list(&ListParams::default().labels(&selector)).await?.items {
            let name = peer.name_any();
            if name != node.name_any() || ns != node.namespace().unwrap_or_default() {
                out.insert(format!("{name}-0.{name}.{ns}.svc.cluster.local"));
            }
        }
    }
    Ok(out.into_iter().collect())
}

async fn observe(node: &SeiNode, ctx: &Context) -> Result<Observed, kube::Error> {
    let ns = node.namespace().unwrap_or_default();
    let name = node.name_any();
    let sts = Api::<StatefulSet>::namespaced(ctx.client.clone(), &ns).get_opt(&name).await?;
    let svc = Api::<Service>::namespaced(ctx.client.clone(), &ns).get_opt(&name).await?;
    let template = sts.as_ref().map(|s| &s.spec.template);
    Ok(Observed {
        statefulset_image: template
            .and_then(|t| t.spec.as_ref())
            .and_then(|p| p.containers.iter().find(|c| c.name == "seid"))
            .and_then(|c| c.image.clone()),
        statefulset_labels: template.and_then(|t| t.metadata.as_ref()).and_then(|m| m.labels.clone()).unwrap_or_default(),
        service_exists: svc.is_some(),
    })
}

fn outcome_of(report: &crate::sandbox::RunReport) -> TaskOutcome {
    match &report.outcome {
        Ok(StepOutcome::Complete { .. }) => TaskOutcome::Complete,
        Ok(StepOutcome::Pending { requeue_after_ms, checkpoint, message }) => TaskOutcome::Pending {
            requeue_after: Duration::from_millis(u64::from(*requeue_after_ms)).max(MIN_REQUEUE),
            checkpoint: checkpoint.clone(),
            message: message.clone(),
        },
        Err(RunError::Unavailable(m)) => TaskOutcome::Unavailable { reason: m.clone() },
        Err(e) => TaskOutcome::Failed {
            reason: format!("{e} (module {} {})", report.module, &report.module_digest[..12.min(report.module_digest.len())]),
            retryable: e.is_retryable(),
        },
    }
}

fn record_node(ctx: &Context, ns: &str, name: &str, status: &SeiNodeStatus) {
    let active = status.plan.as_ref().is_some_and(|p| p.phase == TaskPlanPhase::Active);
    ctx.telemetry
        .plans_active
        .get_or_create(&crate::telemetry::NodeLabels { namespace: ns.into(), name: name.into() })
        .set(i64::from(active));
    ctx.telemetry.set_phase(ns, name, &format!("{:?}", status.phase.unwrap_or_default()));
}

/// Count the step against a new module's rollout; past its failure threshold the module is
/// withdrawn at once (its next step runs on the module it replaced) and the TaskModule loader
/// reports it.
fn watch_rollout(ctx: &Context, entry: &Arc<crate::registry::ModuleEntry>, outcome: &TaskOutcome) {
    let Some(tracker) = &entry.rollout else { return };
    // Only outcomes count: a pending poll says nothing about the module yet.
    let failed = match outcome {
        TaskOutcome::Failed { .. } => true,
        TaskOutcome::Complete => false,
        TaskOutcome::Pending { .. } | TaskOutcome::Unavailable { .. } => return,
    };
    if let Some(Verdict::RollBack { runs, failures }) = tracker.record(failed) {
        let digest = entry.module.digest.clone();
        if ctx.registry.withdraw(entry, crate::modules::task_modules::may_restore) {
            tracing::warn!(source = %entry.source, %digest, runs, failures, "module rolled back automatically");
            let _ = ctx.rollbacks.send(AutoRollbackNotice {
                source: entry.source.clone(),
                entry: Arc::downgrade(entry),
                digest: digest.to_string(),
                runs,
                failures,
                policy: tracker.policy,
            });
        }
    }
}

/// What the node's task steps may touch: its namespace, its own object names, the platform's
/// service account, node pools and toleration in pod templates, the node's own pod labels, and
/// objects owned by this node (its uid) alone.
pub fn node_scope(node: &SeiNode, platform: &PlatformConfig) -> Scope {
    Scope::for_node(&node.namespace().unwrap_or_default(), &node.name_any())
        .with_service_account(platform.service_account.clone())
        .with_owner_uid(node.uid())
        .with_pod_labels(node.spec.pod_labels.clone().unwrap_or_default())
        .with_placement(crate::pod_policy::Placement::for_platform(platform))
}

/// The reconcile of one SeiNode.
pub async fn reconcile(node: Arc<SeiNode>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    ctx.reconciles.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let ns = node.namespace().unwrap_or_default();
    let api: Api<SeiNode> = Api::namespaced(ctx.client.clone(), &ns);
    finalizer(&api, FINALIZER, node, |event| async {
        match event {
            FinalizerEvent::Apply(node) => apply(node, &ctx).await,
            FinalizerEvent::Cleanup(node) => cleanup(node, &ctx).await,
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(format!("{e}")))
}

async fn cleanup(node: Arc<SeiNode>, ctx: &Context) -> Result<Action, ReconcileError> {
    ctx.step_clock.forget(&node.uid().unwrap_or_default());
    let ns = node.namespace().unwrap_or_default();
    let api: Api<SeiNode> = Api::namespaced(ctx.client.clone(), &ns);
    let mut status = node.status.clone().unwrap_or_default();
    if status.phase != Some(SeiNodePhase::Terminating) {
        status.phase = Some(SeiNodePhase::Terminating);
        write_status(&api, &node, &status).await?;
        publish(ctx, &node, EventType::Normal, "Terminating", "deleting the node's data volume".into()).await;
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    match pvcs.delete(&format!("data-{}", node.name_any()), &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    Ok(Action::await_change())
}

async fn apply(cached: Arc<SeiNode>, ctx: &Context) -> Result<Action, ReconcileError> {
    let uid = cached.uid().unwrap_or_default();
    // Woken before the node's next step is due (by our own status write, an owned object's
    // event, ...): nothing to do, not even a read.
    if let Some(wait) = ctx.step_clock.wait(&uid, std::time::Instant::now()) {
        return Ok(Action::requeue(wait));
    }
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<SeiNode> = Api::namespaced(ctx.client.clone(), &ns);
    // Work on the node as the API server has it now, not as the watch cache had it: right
    // after our own status write the cache lags, and steps run on a stale copy would be
    // repeated (harmlessly, they are idempotent) and then thrown away by the optimistic lock.
    let Some(node) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
    let node = Arc::new(node);
    let before = node.status.clone().unwrap_or_default();
    if before.phase == Some(SeiNodePhase::Failed) {
        return Ok(Action::await_change());
    }
    let mut status = before.clone();
    status.resolved_peers = resolve_label_peers(&node, ctx).await?;
    status.observed_generation = node.metadata.generation;
    let mut view = (*node).clone();
    view.status = Some(status.clone());
    let observed = if status.phase == Some(SeiNodePhase::Running) { observe(&node, ctx).await? } else { Observed::default() };
    let now = now();

    match resolve_plan(&view, &observed, &ctx.platform, &uuid::Uuid::new_v4().to_string(), &now)? {
        PlanDecision::New { plan, phase, reason } => {
            let (id, count) = (plan.id.clone(), plan.tasks.len());
            status.plan = Some(plan);
            status.phase = Some(phase);
            conclude(&mut status, node.metadata.generation, &now);
            write_status(&api, &node, &status).await?;
            record_node(ctx, &ns, &name, &status);
            tracing::info!(node = %format!("{ns}/{name}"), plan = %id, tasks = count, %reason, "new plan persisted");
            publish(ctx, &node, EventType::Normal, "PlanCreated", format!("plan {id} with {count} tasks: {reason}")).await;
            publish_phase_change(ctx, &node, before.phase, Some(phase)).await;
            // Persisted first; the tasks run on the next reconcile.
            return Ok(Action::requeue(Duration::from_millis(10)));
        }
        PlanDecision::Idle => {
            if status != before {
                write_status(&api, &node, &status).await?;
            }
            return Ok(Action::requeue(ctx.drift_check_interval));
        }
        PlanDecision::Resume => {}
    }

    let node_json = serde_json::to_string(&view)?;
    let env = RunEnv { scope: node_scope(&node, &ctx.platform), kube: ctx.kube.clone(), sidecar: ctx.sidecar_for(&node) };
    let Some(plan) = status.plan.as_mut() else { return Ok(Action::await_change()) };
    let mut next = Next::RunNextTask;
    let mut steps = 0;
    while let Some(index) = current_task(plan) {
        if steps == MAX_STEPS_PER_RECONCILE || plan.phase != TaskPlanPhase::Active {
            break;
        }
        let task = plan.tasks[index].clone();
        // A poll interval or retry back-off still running: a watch event woke us early.
        if let Some(wait) = crate::executor::wait_remaining(&task, &now) {
            next = Next::RequeueAfter(wait);
            break;
        }
        steps += 1;
        let Some(entry) = ctx.registry.resolve(&task.task_type) else {
            let reason = format!("no module implements task type {} (known: {})", task.task_type, ctx.registry.task_types().join(", "));
            next = record_step(plan, index, TaskOutcome::Failed { reason, retryable: false }, "", &now);
            break;
        };
        // A module that is not built in runs at most its share of the steps at once.
        let _slot = match &entry.source {
            crate::registry::ModuleSource::BuiltIn { .. } => None,
            _ => match ctx.module_slots.try_acquire(&entry.module.digest, ctx.module_step_cap) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(node = %format!("{ns}/{name}"), module = %entry.module.short_digest(), "module busy; step deferred");
                    ctx.telemetry.steps_deferred.inc();
                    steps -= 1;
                    next = Next::RequeueAfter(MODULE_BUSY_RETRY);
                    break;
                }
            },
        };
        let input = RunInput {
            task_type: task.task_type.clone(),
            task_id: task.id.clone(),
            plan_id: plan.id.clone(),
            node: node_json.clone(),
            params: task.params.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "{}".into()),
            checkpoint: task.checkpoint.clone(),
            attempt: u32::try_from(task.retry_count).unwrap_or(0) + 1,
        };
        let report = ctx.sandbox.run(&entry.module, input, &env).await;
        tracing::info!(node = %format!("{ns}/{name}"), task = %task.task_type, index, step = %report.summary(), micros = report.duration_micros, "task step");
        let outcome = outcome_of(&report);
        watch_rollout(ctx, &entry, &outcome);
        ctx.telemetry
            .step_duration
            .get_or_create(&crate::telemetry::TaskLabels { task_type: task.task_type.clone(), module_digest: report.module_digest.clone() })
            .observe(report.duration_micros as f64 / 1e6);
        if let TaskOutcome::Failed { reason, retryable } = &outcome {
            let retry = *retryable && task.retry_count < task.max_retries;
            let (kind, what) = if retry { ("TaskRetry", "will retry") } else { ("TaskFailed", "failed") };
            let family = if retry { &ctx.telemetry.retries } else { &ctx.telemetry.failures };
            family.get_or_create(&crate::telemetry::TaskTypeLabel { task_type: task.task_type.clone() }).inc();
            publish(ctx, &node, EventType::Warning, kind, format!("task {} ({}) {what}: {reason}", task.task_type, task.id)).await;
        }
        next = record_step(plan, index, outcome, &report.module_digest, &now);
        if next != Next::RunNextTask {
            break;
        }
    }
    conclude(&mut status, node.metadata.generation, &now);
    match &next {
        Next::RequeueAfter(d) => ctx.step_clock.hold(&uid, std::time::Instant::now() + *d),
        _ => ctx.step_clock.forget(&uid),
    }
    if steps == 0 && status.plan == before.plan && status.resolved_peers == before.resolved_peers {
        // Woken early (before a task's not-before): nothing ran, nothing to write.
        return Ok(match next {
            Next::RequeueAfter(d) => Action::requeue(d),
            _ => Action::requeue(Duration::from_secs(1)),
        });
    }
    write_status(&api, &node, &status).await?;
    record_node(ctx, &ns, &name, &status);
    publish_phase_change(ctx, &node, before.phase, status.phase).await;
    Ok(match next {
        Next::RequeueAfter(d) => Action::requeue(d),
        Next::RunNextTask => Action::requeue(Duration::from_millis(10)),
        Next::PlanComplete => Action::requeue(Duration::from_secs(1)),
        Next::PlanFailed => Action::await_change(),
    })
}

/// Requeue with a short delay after an error (conflicts included: the next reconcile reads
/// fresh data).
pub fn error_policy(node: Arc<SeiNode>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.telemetry.reconcile_errors.inc();
    tracing::warn!(node = %format!("{}/{}", node.namespace().unwrap_or_default(), node.name_any()), %error, "reconcile failed; retrying");
    Action::requeue(Duration::from_secs(1))
}

fn api_in<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Run the controller until the stream ends (shutdown signal). `namespace`: watch only that
/// namespace (a namespace-scoped operator); `None`: every namespace.
pub async fn run(ctx: Arc<Context>, concurrency: u16, namespace: Option<String>) {
    let client = ctx.client.clone();
    let ns = namespace.as_deref();
    let notices = ctx.rollback_notices.lock().unwrap_or_else(|p| p.into_inner()).take();
    let _loader = match (&ctx.task_modules, notices) {
        (Some(watch), Some(notices)) => {
            let loader = TaskModuleLoader::new(
                client.clone(),
                ctx.sandbox.clone(),
                ctx.registry.clone(),
                ctx.replica.clone(),
                ctx.telemetry.clone(),
                watch.clone(),
            );
            let (synced_tx, synced) = oneshot::channel();
            let handle = AbortOnDrop(tokio::spawn(loader.run(notices, synced_tx)));
            // Nodes are reconciled with the modules the cluster asks for, not the built-ins
            // they would briefly fall back to.
            if tokio::time::timeout(ctx.task_module_sync_timeout, synced).await.is_err() {
                tracing::warn!(timeout = ?ctx.task_module_sync_timeout, "TaskModules not listed in time (is the TaskModule CRD installed?); reconciling with the modules loaded so far");
            }
            Some(handle)
        }
        _ => None,
    };
    ctx.telemetry.set_ready(true);
    Controller::new(api_in::<SeiNode>(&client, ns), watcher::Config::default())
        .owns(api_in::<StatefulSet>(&client, ns), watcher::Config::default())
        .owns(api_in::<Service>(&client, ns), watcher::Config::default())
        .owns(api_in::<PersistentVolumeClaim>(&client, ns), watcher::Config::default())
        .owns(api_in::<Job>(&client, ns), watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// Aborts the task when dropped (the TaskModule loader ends with the controller).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_scoped_to_the_node_and_its_uid() {
        let node: SeiNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "rpc", "namespace": "sei", "uid": "u-123"},
            "spec": {"chainId": "c", "image": "i", "fullNode": {}}
        }))
        .unwrap();
        let mut platform = PlatformConfig::for_local();
        platform.service_account = Some("sei-node".into());
        let scope = node_scope(&node, &platform);
        assert_eq!((scope.namespace.as_str(), scope.node_name.as_str()), ("sei", "rpc"));
        assert_eq!(scope.owner_uid.as_deref(), Some("u-123"), "writes must be owned by this node");
        assert!(scope.pod_service_accounts.contains("sei-node") && scope.pod_service_accounts.contains("default"));
    }

    #[test]
    fn step_clock_holds_back_early_wakes() {
        let clock = StepClock::default();
        let t0 = std::time::Instant::now();
        assert_eq!(clock.wait("u1", t0), None, "an unknown node may step");
        clock.hold("u1", t0 + Duration::from_millis(500));
        assert_eq!(clock.wait("u1", t0 + Duration::from_millis(100)), Some(Duration::from_millis(400)));
        assert_eq!(clock.wait("u2", t0), None, "per node");
        assert_eq!(clock.wait("u1", t0 + Duration::from_millis(500)), None, "due");
        assert!(clock.is_empty(), "a due entry is dropped (the map holds only waiting nodes)");
        clock.hold("u1", t0 + Duration::from_secs(5));
        clock.forget("u1");
        assert_eq!(clock.wait("u1", t0), None);
    }

    #[test]
    fn module_slots_cap_one_module() {
        let slots = ModuleSlots::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let first = slots.try_acquire(&a, 2).unwrap();
        let _second = slots.try_acquire(&a, 2).unwrap();
        assert!(slots.try_acquire(&a, 2).is_none(), "module a is at its cap");
        assert!(slots.try_acquire(&b, 2).is_some(), "other modules are not affected");
        drop(first);
        assert!(slots.try_acquire(&a, 2).is_some(), "a finished step frees its place");
    }

    #[test]
    fn pending_waits_are_floored() {
        let report = |ms: u32| crate::sandbox::RunReport {
            task_type: "t".into(),
            module: "m".into(),
            module_digest: "d".into(),
            outcome: Ok(StepOutcome::Pending { requeue_after_ms: ms, checkpoint: "c".into(), message: String::new() }),
            host_calls: vec![],
            unrecorded_host_calls: 0,
            host_call_count: 0,
            log_calls: 0,
            logs: vec![],
            dropped_log_bytes: 0,
            dropped_log_lines: 0,
            fuel_consumed: 0,
            peak_memory_bytes: 0,
            duration_micros: 0,
            limits: Default::default(),
        };
        let wait = |ms| match outcome_of(&report(ms)) {
            TaskOutcome::Pending { requeue_after, .. } => requeue_after,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(0), MIN_REQUEUE);
        assert_eq!(wait(1), MIN_REQUEUE);
        assert_eq!(wait(500), Duration::from_millis(500), "a sub-second wait above the floor is honoured");
    }

    #[test]
    fn sidecar_urls() {
        let node: SeiNode = serde_json::from_value(serde_json::json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": "rpc", "namespace": "sei"},
            "spec": {"chainId": "c", "image": "i", "fullNode": {}, "sidecar": {"port": 7000}}
        }))
        .unwrap();
        assert_eq!(SidecarResolver::PodDns.url(&node), "http://rpc-0.rpc.sei.svc.cluster.local:7000");
        assert_eq!(
            SidecarResolver::Template("http://127.0.0.1:9/nodes/{namespace}/{name}".into()).url(&node),
            "http://127.0.0.1:9/nodes/sei/rpc"
        );
    }
}
