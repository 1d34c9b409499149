//! The SeiNode reconcile (the imperative shell around the pure planner and plan stepper).
//!
//! One reconcile: finalizer (added here and reconciled in the same pass: `with_finalizer`) →
//! (deletion: phase `Terminating`, data PVC deleted, what the process keeps about the node
//! dropped, finalizer removed) → a node whose next step is not due yet returns at once
//! (`step_clock`) → a Running node without an active plan that the watch caches show idle returns
//! with no request at all (`idle_in_caches`) → the node, read fresh unless the cached copy is the
//! version this controller last wrote (`written`) → a `Failed` node is terminal → label peers
//! resolved into `status.resolvedPeers` (from the caches when they hold them) → `resolve_plan`: a
//! new plan is persisted (optimistic lock) before anything runs, and its first steps run in the
//! same reconcile on the object that write returned; an invalid node gets a Warning event and
//! waits for a change; an active plan advances through every task that completes synchronously
//! (`advance`; a teardown only from a persisted plan: after other steps it waits for the write
//! and the next reconcile, `PERSIST_BEFORE`; a bootstrap sidecar task whose sidecar is
//! unreachable is settled by the bootstrap Job's outcome, `WITNESSES`), each step run in the
//! sandbox by the module registered for its type (scoped by `node_scope`), each outcome counted
//! against a new module's rollout (`TaskRegistry::record_outcome`) → one status write (a PUT of the status subresource, carrying
//! the resourceVersion it read) with everything that changed, none when only the time of the next
//! poll moved (`only_waits_changed`) → events and the requeue the outcome asks for (at least
//! `MIN_REQUEUE` for a pending step).
//!
//! A concurrent change makes the status write fail with a conflict; `error_policy` retries it at
//! once on fresh data, other errors after a back-off, and counts each by cause. A node that leaves
//! the watch (deleted, or relabelled out of this controller's shard) is forgotten (`forget_node`).
//! Tests: `tests/controller.rs`, `tests/hostile_controller.rs`, `tests/task_modules.rs`,
//! `tests/chaos.rs` and `tests/shards.rs` on the real control plane; the pure parts in
//! `planner.rs` and `stepper.rs`.

use super::caches::{WatchCaches, strip_service, strip_statefulset};
use super::context::Context;
use super::error::ReconcileError;
use super::events::{publish, publish_phase_change, publish_plan_created};
use super::observe::{observe, resolve_label_peers};
use super::planner::{Observed, PlanDecision, current_image, drift, resolve_plan};
use super::scope::node_scope;
use super::stepper::{Next, conclude, current_task};
use crate::adapters::kube::api_in;
use crate::api::seinode::{SeiNode, SeiNodePhase, SeiNodeStatus, TaskPlan, TaskPlanPhase};
use crate::executor::{Executor, busy_retry};
use crate::plan_step::Witness;
use crate::policy::scope::NODE_LABEL;
use crate::registry::ModuleSource;
use crate::sandbox::RunEnv;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const FINALIZER: &str = "sei.io/seinode-finalizer";
/// Steps one reconcile may run (synchronous tasks chain within a reconcile).
pub const MAX_STEPS_PER_RECONCILE: usize = 32;
/// Tasks that start only from a persisted plan (see `Executor::persist_before`): the bootstrap
/// teardown deletes the Job `await-bootstrap-complete` looked at.
pub const PERSIST_BEFORE: &[&str] = &["teardown-bootstrap"];
/// The bootstrap Job's success proves the bootstrap pod's sidecar tasks done (its seid starts
/// only after `mark-ready`): it settles one whose sidecar is gone with the finished pod.
pub const WITNESSES: &[Witness] = &[Witness { task_type: "await-bootstrap-complete", covers_after: "deploy-bootstrap-job" }];
pub use crate::executor::{MAX_REQUEUE, MIN_REQUEUE, MODULE_BUSY_RETRY};
/// Back-off after a reconcile error other than a conflict.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(5);

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

/// Write the whole `status` (PUT on the status subresource) with an optimistic lock: the
/// object carries the resourceVersion it was read at, so a concurrent change is a 409 and the
/// reconcile is retried on fresh data. A full replacement, unlike a merge patch, also clears
/// fields that became empty (a removed convergence plan, the current task of a finished plan).
/// The version written is remembered (`written`): a cached copy at that version needs no read.
async fn write_status(ctx: &Context, api: &Api<SeiNode>, node: &SeiNode, status: &SeiNodeStatus) -> Result<SeiNode, kube::Error> {
    let mut object = node.clone();
    object.metadata.managed_fields = None;
    object.status = Some(status.clone());
    let uid = node.uid().unwrap_or_default();
    match api.replace_status(&node.name_any(), &kube::api::PostParams::default(), &object).await {
        Ok(written) => {
            ctx.written().record(&uid, written.metadata.resource_version.as_deref());
            Ok(written)
        }
        Err(e) => {
            ctx.written().forget(&uid);
            Err(e)
        }
    }
}

fn record_node(ctx: &Context, ns: &str, name: &str, status: &SeiNodeStatus) {
    let active = status.plan.as_ref().is_some_and(|p| p.phase == TaskPlanPhase::Active);
    ctx.telemetry().record_node(ns, name, status.phase.unwrap_or_default().as_str(), active);
}

/// The reconcile of one SeiNode.
pub async fn reconcile(node: Arc<SeiNode>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let ns = node.namespace().unwrap_or_default();
    if ctx.telemetry().count_reconcile() {
        // With leader election, the moment a new leader starts work (measured by failover.sh).
        tracing::info!(node = %format!("{ns}/{}", node.name_any()), "first reconcile of this replica");
    }
    let api: Api<SeiNode> = Api::namespaced(ctx.client().clone(), &ns);
    let node = with_finalizer(&ctx, &api, node).await?;
    finalizer(&api, FINALIZER, node, |event| async {
        match event {
            FinalizerEvent::Apply(node) => apply(node, &ctx).await,
            FinalizerEvent::Cleanup(node) => cleanup(node, &ctx).await,
        }
    })
    .await
    .map_err(|e| ReconcileError::Finalizer(Box::new(e)))
}

/// A new node gets the finalizer and is reconciled on the object the patch returned, in the same
/// reconcile (kube's `finalizer` helper adds it and waits for the next one: a second trip through
/// the queue, behind every other node of a burst). The patch is kube's: a JSON patch that tests
/// the list first, so a concurrent change to it fails instead of duplicating the entry.
async fn with_finalizer(ctx: &Context, api: &Api<SeiNode>, node: Arc<SeiNode>) -> Result<Arc<SeiNode>, ReconcileError> {
    if node.metadata.deletion_timestamp.is_some() || node.finalizers().iter().any(|f| f == FINALIZER) {
        return Ok(node);
    }
    let ops = if node.finalizers().is_empty() {
        serde_json::json!([{"op": "test", "path": "/metadata/finalizers", "value": null},
                           {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}])
    } else {
        serde_json::json!([{"op": "test", "path": "/metadata/finalizers", "value": node.finalizers()},
                           {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}])
    };
    let patch = Patch::<SeiNode>::Json(serde_json::from_value(ops)?);
    let patched = api
        .patch(&node.name_any(), &PatchParams::default(), &patch)
        .await
        .map_err(|e| ReconcileError::Finalizer(Box::new(kube::runtime::finalizer::Error::AddFinalizer(e))))?;
    // The object as the API server has it now: the reconcile needs no read of its own.
    ctx.written().record(&patched.uid().unwrap_or_default(), patched.metadata.resource_version.as_deref());
    Ok(Arc::new(patched))
}

async fn cleanup(node: Arc<SeiNode>, ctx: &Context) -> Result<Action, ReconcileError> {
    let ns = node.namespace().unwrap_or_default();
    let api: Api<SeiNode> = Api::namespaced(ctx.client().clone(), &ns);
    let mut status = node.status.clone().unwrap_or_default();
    if status.phase != Some(SeiNodePhase::Terminating) {
        status.phase = Some(SeiNodePhase::Terminating);
        write_status(ctx, &api, &node, &status).await?;
        publish(ctx, &node, EventType::Normal, "Terminating", "deleting the node's data volume".into()).await;
    }
    let pvcs: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client().clone(), &ns);
    match pvcs.delete(&format!("data-{}", node.name_any()), &DeleteParams::background()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => return Err(e.into()),
    }
    // Last: the status write above records the version it wrote.
    forget_node(ctx, &node);
    Ok(Action::await_change())
}

/// Drop everything this process keeps about a node that is gone (deleted, or moved to another
/// shard), so that the maps stay bounded by the nodes it reconciles.
pub fn forget_node(ctx: &Context, node: &SeiNode) {
    let uid = node.uid().unwrap_or_default();
    let ns = node.namespace().unwrap_or_default();
    ctx.step_clock().forget(&uid);
    ctx.sidecars().forget(&ns, &node.name_any());
    ctx.convergences().forget(&uid);
    ctx.written().forget(&uid);
    ctx.telemetry().forget_node(&ns, &node.name_any());
}

async fn apply(cached: Arc<SeiNode>, ctx: &Context) -> Result<Action, ReconcileError> {
    let uid = cached.uid().unwrap_or_default();
    // Woken before the node's next step is due (by our own status write, an owned object's
    // event, ...): nothing to do, not even a read.
    if let Some(wait) = ctx.step_clock().wait(&uid, Instant::now()) {
        return Ok(Action::requeue(wait));
    }
    // The next step's module already runs its share: wait, without reading anything.
    if module_busy(ctx, &cached) {
        ctx.telemetry().count_deferred_step();
        return Ok(Action::requeue(busy_retry()));
    }
    // A Running node with nothing to do, as the watch caches see it (the periodic drift check,
    // a wake by an unchanged owned object): no request at all. A change behind the controller's
    // back arrives as a watch event and wakes the node again.
    if idle_in_caches(ctx, &cached) {
        ctx.telemetry().count_idle_check();
        return Ok(Action::requeue(ctx.drift_check_interval()));
    }
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<SeiNode> = Api::namespaced(ctx.client().clone(), &ns);
    // Work on the node as the API server has it now, not as a lagging watch cache had it: right
    // after our own status write the cache lags, and steps run on a stale copy would be
    // repeated (harmlessly, they are idempotent) and then thrown away by the optimistic lock. A
    // cached copy at exactly the version we last wrote is what the API server has: no read.
    let mut node = if ctx.written().is_ours(&uid, cached.metadata.resource_version.as_deref()) {
        (*cached).clone()
    } else {
        let Some(node) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
        node
    };
    let mut before = node.status.clone().unwrap_or_default();
    if before.phase == Some(SeiNodePhase::Failed) {
        return Ok(Action::await_change());
    }
    let mut status = before.clone();
    let caches = ctx.caches();
    status.resolved_peers = match caches.as_ref().and_then(|c| c.label_peers(&node)) {
        Some(peers) => peers,
        None => resolve_label_peers(ctx.client(), &node).await?,
    };
    status.observed_generation = node.metadata.generation;
    let mut view = node.clone();
    view.status = Some(status.clone());
    // A Running node's StatefulSet and Service: the caches' copies when they show no drift (they
    // only update status.currentImage); a drift is confirmed by a fresh read before it makes a plan.
    let observed = if status.phase != Some(SeiNodePhase::Running) {
        Observed::default()
    } else {
        match caches.as_ref().map(|c| c.observe(&node)) {
            Some(cached) if drift(&node, &cached).is_none() => cached,
            _ => observe(ctx.client(), &node).await?,
        }
    };
    if status.phase == Some(SeiNodePhase::Running) {
        status.current_image = current_image(&node, &observed);
    }
    let now = now();

    let decision = match resolve_plan(&view, &observed, ctx.platform(), &uuid::Uuid::new_v4().to_string(), &now) {
        Ok(d) => d,
        Err(invalid) => {
            // Nothing to retry until the spec changes.
            ctx.telemetry().count_reconcile_error("invalid-spec");
            tracing::warn!(node = %format!("{ns}/{name}"), error = %invalid, "the node cannot be planned; waiting for a change");
            publish(ctx, &node, EventType::Warning, "InvalidSpec", invalid.to_string()).await;
            return Ok(Action::await_change());
        }
    };
    match decision {
        PlanDecision::New { plan, phase, reason } => {
            if phase == SeiNodePhase::Running
                && let Some(wait) = ctx.convergences().start(&uid, node.metadata.generation, Instant::now())
            {
                // Converged plans that did not remove the drift: do not rebuild one every second.
                tracing::warn!(node = %format!("{ns}/{name}"), %reason, ?wait, "drift persists after repeated convergence plans; waiting");
                let note = format!(
                    "{reason}; {} convergence plans in 5 minutes did not remove it, the next one waits {}s",
                    super::convergence::MAX_CONVERGENCES,
                    wait.as_secs()
                );
                publish(ctx, &node, EventType::Warning, "ConvergenceStuck", note).await;
                return Ok(Action::requeue(wait));
            }
            let (id, count) = (plan.id.clone(), plan.tasks.len());
            crate::failpoint::hit("plan-built");
            status.plan = Some(plan);
            status.phase = Some(phase);
            conclude(&mut status, node.metadata.generation, &now);
            let written = write_status(ctx, &api, &node, &status).await?;
            record_node(ctx, &ns, &name, &status);
            tracing::info!(node = %format!("{ns}/{name}"), plan = %id, tasks = count, %reason, "new plan persisted");
            publish_plan_created(ctx, &node, before.phase, phase, format!("plan {id} with {count} tasks: {reason}")).await;
            // Persisted before anything runs; its first steps run now, on the object just written
            // (its resourceVersion guards the next write), not after another trip through the
            // queue behind every other node's.
            node = written;
            before = status.clone();
            view = node.clone();
        }
        PlanDecision::Idle => {
            if status != before {
                write_status(ctx, &api, &node, &status).await?;
            }
            return Ok(Action::requeue(ctx.drift_check_interval()));
        }
        PlanDecision::Resume => {}
    }

    let Some(plan) = status.plan.as_mut() else { return Ok(Action::await_change()) };
    let (next, steps) = advance(ctx, &node, &view, plan, &now).await?;
    if steps > 0 {
        crate::failpoint::hit("step-done");
    }
    conclude(&mut status, node.metadata.generation, &now);
    // The node waits only once what it waits after is written: a lost write (a conflict) is
    // retried at once, not after the wait.
    let hold = || match &next {
        Next::RequeueAfter(d) => ctx.step_clock().hold(&uid, Instant::now() + *d),
        _ => ctx.step_clock().forget(&uid),
    };
    // Nothing ran (woken before a task's not-before), or only the time of the next poll moved (a
    // task still pending as before): nothing worth a write. The wait is kept in memory; after a
    // restart the next poll comes early, which a poll may.
    if let Next::RequeueAfter(d) = next
        && status.resolved_peers == before.resolved_peers
        && only_waits_changed(&before, &status)
    {
        hold();
        return Ok(Action::requeue(d));
    }
    if steps == 0 && status.plan == before.plan && status.resolved_peers == before.resolved_peers {
        hold();
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    write_status(ctx, &api, &node, &status).await?;
    hold();
    record_node(ctx, &ns, &name, &status);
    publish_phase_change(ctx, &node, before.phase, status.phase).await;
    Ok(match next {
        Next::RequeueAfter(d) => Action::requeue(d),
        Next::RunNextTask => Action::requeue(Duration::from_millis(10)),
        Next::PlanComplete => Action::requeue(Duration::from_secs(1)),
        Next::PlanFailed => Action::await_change(),
    })
}

/// Whether `after` differs from `before` in nothing but when its tasks may step next.
fn only_waits_changed(before: &SeiNodeStatus, after: &SeiNodeStatus) -> bool {
    let without_waits = |s: &SeiNodeStatus| {
        let mut s = s.clone();
        for task in s.plan.iter_mut().flat_map(|p| p.tasks.iter_mut()) {
            task.not_before = None;
        }
        s
    };
    without_waits(before) == without_waits(after)
}

/// A Running node without an active plan whose spec, owned objects and label peers (as the watch
/// caches have them) give no new plan and no status change.
fn idle_in_caches(ctx: &Context, cached: &SeiNode) -> bool {
    let Some(caches) = ctx.caches() else { return false };
    let Some(before) = cached.status.as_ref() else { return false };
    if before.phase != Some(SeiNodePhase::Running) || before.plan.as_ref().is_some_and(|p| p.phase == TaskPlanPhase::Active) {
        return false;
    }
    let Some(peers) = caches.label_peers(cached) else { return false };
    let observed = caches.observe(cached);
    if peers != before.resolved_peers
        || before.observed_generation != cached.metadata.generation
        || current_image(cached, &observed) != before.current_image
    {
        return false;
    }
    matches!(resolve_plan(cached, &observed, ctx.platform(), "", &now()), Ok(PlanDecision::Idle))
}

/// Whether the current task of the node (as the watch cache has it) runs on a module that is not
/// built in and already runs its share of the steps.
fn module_busy(ctx: &Context, cached: &SeiNode) -> bool {
    let Some(plan) = cached.status.as_ref().and_then(|s| s.plan.as_ref()).filter(|p| p.phase == TaskPlanPhase::Active) else {
        return false;
    };
    let Some(task) = current_task(plan).map(|i| &plan.tasks[i]) else { return false };
    ctx.registry().resolve(&task.task_type).is_some_and(|entry| {
        !matches!(entry.source, ModuleSource::BuiltIn { .. }) && ctx.module_slots().is_full(&entry.module.digest, ctx.module_step_cap())
    })
}

/// Run the plan's due steps (the shared executor, in the node's scope) and publish what failed.
async fn advance(ctx: &Context, node: &SeiNode, view: &SeiNode, plan: &mut TaskPlan, now: &Time) -> Result<(Next, usize), ReconcileError> {
    let node_json = serde_json::to_string(view)?;
    let env = RunEnv {
        scope: node_scope(node, ctx.platform()),
        kube: ctx.kube().clone(),
        sidecar: ctx.sidecars().client_for(node),
        members: None,
    };
    let exec = Executor {
        registry: ctx.registry(),
        sandbox: ctx.sandbox(),
        slots: ctx.module_slots(),
        step_cap: ctx.module_step_cap(),
        telemetry: ctx.telemetry(),
        yield_after: &[],
        persist_before: PERSIST_BEFORE,
        witnesses: WITNESSES,
    };
    let who = format!("{}/{}", node.namespace().unwrap_or_default(), node.name_any());
    let done = exec.advance(&who, &node_json, &env, plan, now, MAX_STEPS_PER_RECONCILE).await;
    for n in done.notices {
        publish(ctx, node, EventType::Warning, n.reason, n.message).await;
    }
    Ok((done.next, done.steps))
}

/// Retry a conflict at once (the next reconcile reads fresh data), anything else after a
/// back-off; count each by cause.
pub fn error_policy(node: Arc<SeiNode>, error: &ReconcileError, ctx: Arc<Context>) -> Action {
    ctx.telemetry().count_reconcile_error(error.metric_label());
    let who = format!("{}/{}", node.namespace().unwrap_or_default(), node.name_any());
    if error.is_conflict() {
        tracing::debug!(node = %who, %error, "status write lost to a concurrent change; retrying on fresh data");
        return Action::requeue(Duration::from_millis(100));
    }
    tracing::warn!(node = %who, %error, cause = error.metric_label(), "reconcile failed; retrying");
    Action::requeue(ERROR_BACKOFF)
}

/// Reconcile SeiNodes (and watch their owned objects) until SIGTERM or SIGINT, waiting for the
/// reconciles in flight. `namespace`: only that namespace (a namespace-scoped operator); `None`:
/// every namespace.
pub async fn run(ctx: Arc<Context>, concurrency: u16, namespace: Option<String>) {
    let client = ctx.client().clone();
    controller(&ctx, &client, namespace.as_deref(), concurrency)
        .shutdown_on_signal()
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

/// Reconcile SeiNodes until `shutdown` resolves, then stop starting reconciles and return once
/// those in flight have finished (drop the future to abandon them: each reconcile runs in a task
/// that is aborted with it).
pub async fn run_until(
    ctx: Arc<Context>,
    concurrency: u16,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client().clone();
    controller(&ctx, &client, namespace.as_deref(), concurrency)
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}

fn controller(ctx: &Arc<Context>, client: &Client, ns: Option<&str>, concurrency: u16) -> Controller<SeiNode> {
    // SeiNodes are cached without their managedFields (the largest part of a node with a plan,
    // and never read); StatefulSets and Services wake their owners and stay in stripped stores,
    // the caches idle nodes are checked against (`caches`).
    let (nodes, node_writer) = reflector::store();
    let mut selected = watcher::Config::default();
    if let Some(shard) = ctx.shard() {
        selected = selected.labels(shard.as_str());
    }
    let gone = Arc::downgrade(ctx);
    let node_events = watcher(api_in::<SeiNode>(client, ns), selected)
        .modify(|n| n.metadata.managed_fields = None)
        .reflect(node_writer)
        .inspect_ok(move |event| {
            // A node that left the watch (deleted, or relabelled out of this shard) is forgotten.
            if let (watcher::Event::Delete(node), Some(ctx)) = (event, gone.upgrade()) {
                forget_node(&ctx, node);
            }
        })
        .applied_objects();
    // Only objects labelled with a node (every object the built-in modules write): not the rest
    // of the cluster's StatefulSets and Services.
    let labelled = || watcher::Config::default().labels(NODE_LABEL);
    let (statefulsets, sts_writer) = reflector::store();
    let sts_events = watcher(api_in::<StatefulSet>(client, ns), labelled()).modify(strip_statefulset).reflect(sts_writer).touched_objects();
    let (services, svc_writer) = reflector::store();
    let svc_events = watcher(api_in::<Service>(client, ns), labelled()).modify(strip_service).reflect(svc_writer).touched_objects();
    let caches =
        WatchCaches { nodes: nodes.clone(), statefulsets, services, namespace: ns.map(str::to_string), sharded: ctx.shard().is_some() };
    ctx.set_caches(caches);
    Controller::for_stream(node_events, nodes)
        .owns_stream(sts_events)
        .owns_stream(svc_events)
        .owns(api_in::<PersistentVolumeClaim>(client, ns), watcher::Config::default())
        .owns(api_in::<Job>(client, ns), watcher::Config::default())
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
}
