//! The SeiNodeDeployment reconcile (the imperative shell around `planner` and `children`).
//!
//! One reconcile: finalizer (deletion: `Retain` orphans the children by removing the group from
//! their owner references; `Delete` leaves them to the garbage collector) → the group as the API
//! server has it → its SeiNodes (labelled `sei.io/nodedeployment=<group>` and owned by its uid) →
//! a ceremony's start is persisted before its first child is made (`ceremonyStartedAt`, which
//! fixes `replicas`) → unless a plan runs: missing ordinals created, labels, annotations and pod
//! labels synced, ordinals past `replicas` deleted (not during a ceremony) → a ceremony past
//! `maxCeremonyDuration` fails the group (`CeremonyTimedOut`) → a template change becomes a
//! rollout → the `<group>-external` Service, HTTPRoutes and ServiceMonitor (`networking`; optional
//! APIs checked in discovery, their absence a condition) → `resolve_group_plan`: a new plan is
//! persisted before anything runs; an active plan advances through the shared executor in the
//! group's scope (its own SeiNodes and their sidecars), pausing after `switch-traffic` so that the
//! Service selects the entrants (`incumbentRevision` moved, status written, Service applied on
//! the next reconcile) before `teardown-nodes` runs, and pausing before `teardown-exporter` so
//! that `submit-export-state`'s completion is written before the exporter goes
//! (`PERSIST_BEFORE`) → one status write (a PUT of the status
//! subresource with the resourceVersion it read).
//!
//! Tests: `tests/groups.rs` on the real control plane; the pure parts in `planner.rs` and
//! `children.rs`.

use super::children::{
    FINALIZER, GROUP_LABEL, ceremony_overran, desired_child, detect_rollout, incumbents, initial_serving_revision, is_child,
    missing_ordinals, ordinal_of, owned_alone, phase, plan_active, revision, scale_down, sync_patch,
};
use super::context::AppliedNetworking;
use super::context::GroupContext;
use super::error::GroupError;
use super::networking::{
    GATEWAY_API, MONITORING_API, ROUTED, RouteState, controlled_by, external_service, external_service_name, held_by, http_routes,
    route_name, route_state, route_status, service_monitor,
};
use super::planner::{GroupPlanDecision, ceremony_due, resolve_group_plan, template_hash};
use crate::adapters::kube::api_in;
use crate::adapters::sidecar::{MemberSidecars, SidecarClient};
use crate::api::seinode::{FailedTaskInfo, SeiNode, TaskPlanPhase, TaskStatus};
use crate::api::seinodedeployment::{
    DeletionPolicy, GroupNodeStatus, GroupPhase, NetworkingStatus, SeiNodeDeployment, SeiNodeDeploymentStatus, UpdateStrategyType,
    condition as cond,
};
use crate::conditions::condition;
use crate::executor::Executor;
use crate::plan_step::Next;
use crate::platform::GatewayConfig;
use crate::policy::scope::Scope;
use crate::sandbox::RunEnv;
use crate::shard::ShardSelector;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// The task after which traffic belongs to the entrants.
const SWITCH_TRAFFIC: &str = "switch-traffic";

/// Steps one reconcile may run.
pub const MAX_STEPS_PER_RECONCILE: usize = 32;
/// Tasks that start only from a persisted plan (see `Executor::persist_before`): they delete
/// what the tasks before them looked at (`teardown-exporter` the exporter `submit-export-state`
/// polled). `teardown-nodes` already follows the `switch-traffic` pause; listed as a safeguard.
/// Test: `tests/groups.rs`, `a_fork_genesis_exports_the_source_chain_through_an_exporter_first`
/// (a status with the export complete and the teardown not started is written).
const PERSIST_BEFORE: &[&str] = &["teardown-exporter", "teardown-nodes"];
/// How often a group with nothing to do is looked at (the reference's).
pub const RESYNC: Duration = Duration::from_secs(30);
/// Back-off after a reconcile error other than a conflict.
pub const ERROR_BACKOFF: Duration = Duration::from_secs(5);
/// The field manager of the controller's own writes to children.
pub const FIELD_MANAGER: &str = "sei-operator/group";

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

async fn publish(ctx: &GroupContext, g: &SeiNodeDeployment, type_: EventType, reason: &str, note: String) {
    let note = crate::text::safe(&note, 900);
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    match ctx.recorder().publish(&event, &g.object_ref(&())).await {
        Ok(true) => {}
        Ok(false) => ctx.telemetry().count_event_dropped(),
        Err(e) => tracing::warn!(group = %g.name_any(), error = %e, "could not publish event"),
    }
}

async fn write_status(api: &Api<SeiNodeDeployment>, g: &SeiNodeDeployment, status: &SeiNodeDeploymentStatus) -> Result<(), kube::Error> {
    let mut object = g.clone();
    object.metadata.managed_fields = None;
    object.status = Some(status.clone());
    api.replace_status(&g.name_any(), &PostParams::default(), &object).await.map(|_| ())
}

/// The reconcile of one SeiNodeDeployment.
pub async fn reconcile(group: Arc<SeiNodeDeployment>, ctx: Arc<GroupContext>) -> Result<Action, GroupError> {
    let ns = group.namespace().unwrap_or_default();
    let api: Api<SeiNodeDeployment> = Api::namespaced(ctx.client().clone(), &ns);
    finalizer(&api, FINALIZER, group, |event| async {
        match event {
            FinalizerEvent::Apply(g) => apply(g, &ctx).await,
            FinalizerEvent::Cleanup(g) => cleanup(g, &ctx).await,
        }
    })
    .await
    .map_err(|e| GroupError::Finalizer(Box::new(e)))
}

/// Every SeiNode the group owns alone (children, entrants, exporter), by label and owner uid.
async fn owned_nodes(ctx: &GroupContext, g: &SeiNodeDeployment) -> Result<Vec<SeiNode>, kube::Error> {
    let nodes: Api<SeiNode> = Api::namespaced(ctx.client().clone(), &g.namespace().unwrap_or_default());
    let listed = nodes.list(&ListParams::default().labels(&format!("{GROUP_LABEL}={}", g.name_any()))).await?;
    Ok(listed.items.into_iter().filter(|n| owned_alone(g, n)).collect())
}

async fn cleanup(g: Arc<SeiNodeDeployment>, ctx: &GroupContext) -> Result<Action, GroupError> {
    if g.spec.deletion_policy == DeletionPolicy::Retain {
        let nodes: Api<SeiNode> = Api::namespaced(ctx.client().clone(), &g.namespace().unwrap_or_default());
        let uid = g.uid().unwrap_or_default();
        for n in owned_nodes(ctx, &g).await? {
            let others: Vec<_> = n.owner_references().iter().filter(|o| o.uid != uid).cloned().collect();
            // With the resourceVersion read: a concurrent change retries rather than loses an owner.
            let patch = serde_json::json!({"metadata": {"ownerReferences": others, "resourceVersion": n.resource_version()}});
            nodes.patch(&n.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
        }
        orphan_networking(ctx, &g).await?;
        publish(
            ctx,
            &g,
            EventType::Normal,
            "ChildrenRetained",
            "deletionPolicy Retain: the SeiNodes (and the group's Service, routes and ServiceMonitor) keep running without their group"
                .into(),
        )
        .await;
    }
    ctx.remember_networking(&g.uid().unwrap_or_default(), None);
    Ok(Action::await_change())
}

/// The member sidecars a group task may call: the group's own SeiNodes, by name.
fn member_sidecars(ctx: &GroupContext, owned: &[SeiNode]) -> Arc<dyn MemberSidecars> {
    let map: BTreeMap<String, Arc<dyn SidecarClient>> =
        owned.iter().filter_map(|n| ctx.sidecars().client_for(n).map(|c| (n.name_any(), c))).collect();
    Arc::new(map)
}

/// What a group task may touch: its children, its rollout's entrants and incumbents, its
/// exporter; the labels its SeiNodes may carry are the template's.
fn group_scope(g: &SeiNodeDeployment, owned: &[SeiNode]) -> Scope {
    let mut members: BTreeSet<String> = owned.iter().map(|n| n.name_any()).collect();
    members.extend(super::planner::child_names(g));
    members.insert(super::planner::exporter_name(g));
    if let Some(r) = g.status.as_ref().and_then(|s| s.rollout.as_ref()) {
        members.extend(r.entrant_nodes.iter().cloned());
        members.extend(r.incumbent_nodes.iter().cloned());
    }
    let object_labels = g.spec.template.metadata.as_ref().map(|m| m.labels.clone()).unwrap_or_default();
    let pod_labels = g.spec.template.spec.pod_labels.clone().unwrap_or_default();
    Scope::for_group(&g.namespace().unwrap_or_default(), &g.name_any(), &g.uid().unwrap_or_default(), members, object_labels, pod_labels)
}

async fn apply(cached: Arc<SeiNodeDeployment>, ctx: &GroupContext) -> Result<Action, GroupError> {
    let ns = cached.namespace().unwrap_or_default();
    let name = cached.name_any();
    let api: Api<SeiNodeDeployment> = Api::namespaced(ctx.client().clone(), &ns);
    let nodes: Api<SeiNode> = Api::namespaced(ctx.client().clone(), &ns);
    let Some(g) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
    let before = g.status.clone().unwrap_or_default();
    let mut status = before.clone();
    let now = now();
    let ceremony = ceremony_due(&g);

    // A ceremony's start is recorded before its first child exists: from then on `replicas` is
    // fixed (CEL) and `maxCeremonyDuration` counts.
    if ceremony.is_some() && status.ceremony_started_at.is_none() && status.phase != Some(GroupPhase::Failed) {
        status.ceremony_started_at = Some(now.clone());
        status.template_hash.get_or_insert_with(|| template_hash(&g));
        write_status(&api, &g, &status).await?;
        return Ok(Action::requeue(Duration::from_millis(10)));
    }

    let mut owned = owned_nodes(ctx, &g).await?;
    if status.serving_revision.is_none() {
        let children: Vec<SeiNode> = owned.iter().filter(|n| is_child(&g, n)).cloned().collect();
        status.serving_revision = Some(initial_serving_revision(&g, &children));
    }
    let active = plan_active(&g);
    if !active && status.phase != Some(GroupPhase::Failed) {
        let children: Vec<SeiNode> = owned.iter().filter(|n| is_child(&g, n) && n.metadata.deletion_timestamp.is_none()).cloned().collect();
        // New children get the serving revision (the Service selects them).
        let mut current = g.clone();
        current.status = Some(status.clone());
        for ordinal in missing_ordinals(&g, &children) {
            let child = desired_child(&current, &format!("{name}-{ordinal}"), ordinal);
            match nodes.create(&PostParams { field_manager: Some(FIELD_MANAGER.into()), ..Default::default() }, &child).await {
                Ok(created) => {
                    tracing::info!(group = %format!("{ns}/{name}"), node = %created.name_any(), ordinal, "child created");
                    owned.push(created);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
        for child in &children {
            if let Some(patch) = sync_patch(&g, child) {
                nodes.patch(&child.name_any(), &PatchParams::default(), &Patch::Merge(&patch)).await?;
            }
        }
        if ceremony.is_none() {
            for victim in scale_down(&g, &children) {
                tracing::info!(group = %format!("{ns}/{name}"), node = %victim, "scale-down: deleting child");
                match nodes.delete(&victim, &DeleteParams::background()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e.into()),
                }
                owned.retain(|n| n.name_any() != victim);
                ctx.sidecars().forget(&ns, &victim);
            }
        }
    }
    let children: Vec<SeiNode> = owned.iter().filter(|n| is_child(&g, n) && n.metadata.deletion_timestamp.is_none()).cloned().collect();
    status.incumbent_nodes = incumbents(&children);
    status.template_hash.get_or_insert_with(|| template_hash(&g));

    // A ceremony that overran fails the group, with whatever plan it had.
    if ceremony.is_some()
        && status.phase != Some(GroupPhase::Failed)
        && let Some(started) = status.ceremony_started_at.clone()
        && ceremony_overran(&g, &started, &now)
    {
        let limit = g.spec.genesis.as_ref().map(|gc| gc.max_ceremony_duration.clone()).unwrap_or_default();
        let message = format!("the genesis ceremony did not complete within maxCeremonyDuration {limit}");
        if let Some(plan) = status.plan.as_mut().filter(|p| p.phase == TaskPlanPhase::Active) {
            plan.phase = TaskPlanPhase::Failed;
            if let Some(i) = plan.tasks.iter().position(|t| t.status != TaskStatus::Complete) {
                let t = &mut plan.tasks[i];
                t.status = TaskStatus::Failed;
                t.error = Some(message.clone());
                plan.failed_task_index = Some(i as i32);
                plan.failed_task_detail = Some(FailedTaskInfo {
                    task_type: t.task_type.clone(),
                    id: t.id.clone(),
                    error: message.clone(),
                    retry_count: t.retry_count,
                    max_retries: t.max_retries,
                });
            }
        }
        status.phase = Some(GroupPhase::Failed);
        finish_status(&g, &mut status, &owned, &now, Some(("CeremonyTimedOut", message.clone())), false);
        write_status(&api, &g, &status).await?;
        publish(ctx, &g, EventType::Warning, "CeremonyTimedOut", message).await;
        return Ok(Action::await_change());
    }

    let mut view = g.clone();
    view.status = Some(status.clone());
    if let Some(rollout) = detect_rollout(&view, &children, &now) {
        let note = format!(
            "{} rollout to template {} over {}",
            rollout.strategy.as_str(),
            rollout.target_hash,
            rollout.incumbent_nodes.join(", ")
        );
        status.rollout = Some(rollout);
        publish(ctx, &g, EventType::Normal, "RolloutStarted", note).await;
        view.status = Some(status.clone());
    }
    // Before any task runs: a `teardown-nodes` after `switch-traffic` runs only once the Service
    // selects the entrants.
    apply_networking(ctx, &g, &before, &mut status, &now).await?;
    view.status = Some(status.clone());

    let decision = match resolve_group_plan(&view, &uuid::Uuid::new_v4().to_string()) {
        Ok(d) => d,
        Err(invalid) => {
            ctx.telemetry().count_reconcile_error("invalid-spec");
            publish(ctx, &g, EventType::Warning, "InvalidSpec", invalid.to_string()).await;
            finish_status(&g, &mut status, &owned, &now, None, false);
            if status != before {
                write_status(&api, &g, &status).await?;
            }
            return Ok(Action::await_change());
        }
    };
    match decision {
        GroupPlanDecision::New { plan, kind } => {
            let note = format!("{} plan {} with {} tasks", kind.as_str(), plan.id, plan.tasks.len());
            status.plan = Some(plan);
            finish_status(&g, &mut status, &owned, &now, None, false);
            write_status(&api, &g, &status).await?;
            tracing::info!(group = %format!("{ns}/{name}"), %note, "new group plan persisted");
            publish(ctx, &g, EventType::Normal, "PlanCreated", note).await;
            Ok(Action::requeue(Duration::from_millis(10)))
        }
        GroupPlanDecision::Idle => {
            finish_status(&g, &mut status, &owned, &now, None, false);
            if status != before {
                write_status(&api, &g, &status).await?;
            }
            // A route or monitor not ready yet is looked at again sooner.
            let waiting = status
                .conditions
                .iter()
                .any(|c| (c.type_ == cond::ROUTE_READY || c.type_ == cond::SERVICE_MONITOR_READY) && c.status != "True");
            Ok(Action::requeue(if waiting { ctx.networking_refresh().min(RESYNC) } else { RESYNC }))
        }
        GroupPlanDecision::Resume => {
            let Some(mut plan) = status.plan.take() else { return Ok(Action::await_change()) };
            view.status = Some(status.clone());
            let env = RunEnv {
                scope: group_scope(&view, &owned),
                kube: ctx.kube().clone(),
                sidecar: None,
                members: Some(member_sidecars(ctx, &owned)),
            };
            let exec = Executor {
                registry: ctx.registry(),
                sandbox: ctx.sandbox(),
                slots: ctx.module_slots(),
                step_cap: ctx.module_step_cap(),
                telemetry: ctx.telemetry(),
                yield_after: &[SWITCH_TRAFFIC],
                persist_before: PERSIST_BEFORE,
                witnesses: &[],
            };
            let who = format!("{ns}/{name}");
            let done = exec.advance(&who, &serde_json::to_string(&view)?, &env, &mut plan, &now, MAX_STEPS_PER_RECONCILE).await;
            for (task_type, output) in &done.outputs {
                if task_type.starts_with("assemble-") {
                    record_genesis(ctx, &g, &mut status, output);
                }
                // Traffic moves to the entrants: the next reconcile points the Service at them
                // before `teardown-nodes` runs.
                if task_type == SWITCH_TRAFFIC
                    && let Some(r) = status.rollout.as_mut()
                    && r.entrant_revision.is_some()
                {
                    r.incumbent_revision = r.entrant_revision.clone();
                    let to = r.entrant_revision.clone().unwrap_or_default();
                    publish(ctx, &g, EventType::Normal, "TrafficSwitched", format!("traffic moves to revision {to}")).await;
                }
            }
            for n in done.notices {
                publish(ctx, &g, EventType::Warning, n.reason, n.message).await;
            }
            let phase = plan.phase;
            let genesis = plan.tasks.iter().any(|t| t.task_type.starts_with("assemble-"));
            let mut ceremony_completed = false;
            status.plan = Some(plan);
            match phase {
                TaskPlanPhase::Complete => {
                    if genesis {
                        tracing::info!(group = %who, "genesis ceremony complete");
                        ceremony_completed = true;
                    } else if let Some(rollout) = status.rollout.take() {
                        status.template_hash = Some(rollout.target_hash.clone());
                        // The entrants' after `switch-traffic`, the incumbents' otherwise.
                        status.serving_revision = rollout.incumbent_revision.clone().or(status.serving_revision.take());
                        status.observed_generation = g.metadata.generation;
                        if !rollout.entrant_nodes.is_empty() {
                            // Torn down: their sidecar clients go too.
                            rollout.incumbent_nodes.iter().for_each(|n| ctx.sidecars().forget(&ns, n));
                        }
                    }
                    status.plan = None;
                    publish(
                        ctx,
                        &g,
                        EventType::Normal,
                        "PlanComplete",
                        if genesis { "genesis ceremony complete".into() } else { "rollout complete".into() },
                    )
                    .await;
                }
                TaskPlanPhase::Failed => {
                    let detail = status.plan.as_ref().and_then(|p| p.failed_task_detail.clone());
                    let why = detail.map(|d| format!("task {} failed: {}", d.task_type, d.error)).unwrap_or_default();
                    if !genesis && let Some(rollout) = status.rollout.take() {
                        // Consumed: the next template change starts a new rollout. Traffic stays
                        // where `switch-traffic` left it.
                        status.template_hash = Some(rollout.target_hash);
                        status.serving_revision = rollout.incumbent_revision.or(status.serving_revision.take());
                    }
                    publish(ctx, &g, EventType::Warning, "PlanFailed", why).await;
                }
                TaskPlanPhase::Active => {}
            }
            finish_status(&g, &mut status, &owned, &now, None, ceremony_completed);
            // Woken before the next step was due (e.g. by its own status write): nothing ran,
            // nothing to write.
            if status != before {
                write_status(&api, &g, &status).await?;
            }
            Ok(match done.next {
                Next::RequeueAfter(d) => Action::requeue(d),
                Next::RunNextTask => Action::requeue(Duration::from_millis(10)),
                Next::PlanComplete => Action::requeue(Duration::from_secs(1)),
                Next::PlanFailed => Action::requeue(RESYNC),
            })
        }
    }
}

/// The dynamic API of a resource (group, version, plural) of `kind`.
fn dynamic_api(ctx: &GroupContext, ns: &str, (group, version, plural): (&str, &str, &str), kind: &str) -> Api<DynamicObject> {
    let resource = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    Api::namespaced_with(ctx.client().clone(), ns, &resource)
}

/// The core Service API, dynamically typed like the optional ones.
fn service_api(ctx: &GroupContext, ns: &str) -> Api<DynamicObject> {
    Api::namespaced_with(ctx.client().clone(), ns, &ApiResource::erase::<Service>(&()))
}

/// Replace (or add) the condition of its type.
fn set_condition(status: &mut SeiNodeDeploymentStatus, c: Condition) {
    status.conditions.retain(|o| o.type_ != c.type_);
    status.conditions.push(c);
}

fn forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// A write the group would not or could not make: the condition reason and message.
struct Refused(&'static str, String);

/// Server-side apply `desired` (named `name`), but only over an object the group controls: an
/// absent one is created, another owner's (or nobody's) is left alone (`Conflict`), a 403 is
/// `Forbidden`. Other API errors are returned.
async fn write_owned(
    api: &Api<DynamicObject>,
    g: &SeiNodeDeployment,
    what: &str,
    name: &str,
    desired: &serde_json::Value,
) -> Result<Result<serde_json::Value, Refused>, kube::Error> {
    let refused_403 = |e: &kube::Error| Refused("Forbidden", format!("the controller may not write {what} {name}: {e}"));
    match api.get_opt(name).await {
        Ok(Some(existing)) if !controlled_by(g, &existing.metadata) => {
            let held = held_by(&existing.metadata);
            return Ok(Err(Refused("Conflict", format!("{what} {name} exists and is {held}; rename or delete it"))));
        }
        Ok(_) => {}
        Err(e) if forbidden(&e) => return Ok(Err(refused_403(&e))),
        Err(e) => return Err(e),
    }
    match api.patch(name, &PatchParams::apply(FIELD_MANAGER).force(), &Patch::Apply(desired)).await {
        Ok(applied) => Ok(Ok(serde_json::to_value(&applied).unwrap_or_default())),
        Err(e) if forbidden(&e) => Ok(Err(refused_403(&e))),
        Err(e) => Err(e),
    }
}

/// Whether an optional API is served; a failed lookup is a refusal (a condition), not an error.
async fn served(ctx: &GroupContext, api: (&str, &str, &str)) -> Result<bool, Refused> {
    ctx.discovery()
        .served(api)
        .await
        .map_err(|e| Refused("DiscoveryFailed", format!("could not ask discovery whether {}/{} {} is served: {e}", api.0, api.1, api.2)))
}

/// The group's `<name>-external` Service, its HTTPRoutes (when a Gateway is configured and the
/// Gateway API is served) and its ServiceMonitor (when the Prometheus Operator's CRD is served),
/// written by server-side apply over objects the group controls, and the `RouteReady` /
/// `ServiceMonitorReady` conditions they earn. Only a failed write of the Service fails the
/// reconcile; anything about an optional API (absent, forbidden, refused, another owner's object)
/// is a condition. What the spec no longer asks for is deleted (once: the condition that marks it
/// goes with it). Nothing is written when the same objects were applied within the refresh.
async fn apply_networking(
    ctx: &GroupContext,
    g: &SeiNodeDeployment,
    before: &SeiNodeDeploymentStatus,
    status: &mut SeiNodeDeploymentStatus,
    now: &Time,
) -> Result<(), GroupError> {
    let uid = g.uid().unwrap_or_default();
    let ns = g.namespace().unwrap_or_default();
    let monitor_config = g.spec.monitoring.as_ref().and_then(|m| m.service_monitor.as_ref());
    let had = |t: &str| before.conditions.iter().any(|c| c.type_ == t);
    if g.spec.networking.is_none() {
        status.networking_status = None;
        if had(cond::ROUTE_READY) {
            remove_networking(ctx, g, true, false).await?;
        }
    }
    if monitor_config.is_none() && had(cond::SERVICE_MONITOR_READY) {
        remove_networking(ctx, g, false, true).await?;
    }
    if g.spec.networking.is_none() && monitor_config.is_none() {
        ctx.remember_networking(&uid, None);
        return Ok(());
    }
    let mut view = g.clone();
    view.status = Some(status.clone());
    let gateway = ctx.platform().gateway.as_ref().filter(|_| g.spec.networking.is_some());
    let routes_served = match gateway {
        Some(_) => served(ctx, GATEWAY_API).await,
        None => Ok(false),
    };
    let monitors_served = match monitor_config {
        Some(_) => served(ctx, MONITORING_API).await,
        None => Ok(false),
    };
    let service = g.spec.networking.as_ref().map(|_| serde_json::to_value(external_service(&view, &revision(&view))));
    let service = service.transpose()?;
    let routes = match gateway {
        Some(gw) if routes_served.as_ref().is_ok_and(|s| *s) => http_routes(&view, gw),
        _ => Vec::new(),
    };
    let monitor = monitor_config.filter(|_| monitors_served.as_ref().is_ok_and(|s| *s)).map(|c| service_monitor(&view, c));
    let digest = {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        serde_json::to_string(&(&service, &routes, &monitor))?.hash(&mut h);
        (gateway.is_some(), routes_served.as_ref().ok(), monitors_served.as_ref().ok(), g.metadata.generation).hash(&mut h);
        h.finish()
    };
    if let Some(applied) = ctx.networking_fresh(&uid, digest) {
        // Applied already: what it earned stands (the last status write may have been lost).
        applied.conditions.into_iter().for_each(|c| set_condition(status, c));
        if g.spec.networking.is_some() {
            status.networking_status = applied.routes;
        }
        return Ok(());
    }
    let generation = g.metadata.generation;
    let mut earned = Vec::new();
    if let Some(svc) = &service {
        let name = external_service_name(g);
        let (ready, reason, message) = match write_owned(&service_api(ctx, &ns), g, "Service", &name, svc).await? {
            Err(Refused(reason, message)) => (false, reason, message),
            Ok(_) => match (gateway, &routes_served) {
                (None, _) => (
                    true,
                    "NoGateway",
                    format!(
                        "Service {name} serves the group inside the cluster; no Gateway is configured (SEI_GATEWAY_NAME, \
                         SEI_GATEWAY_NAMESPACE, SEI_GATEWAY_DOMAIN), so no HTTPRoutes are made"
                    ),
                ),
                (Some(_), Err(Refused(reason, message))) => (false, *reason, message.clone()),
                (Some(_), Ok(false)) => (
                    false,
                    "GatewayAPINotServed",
                    format!(
                        "this cluster does not serve {}/{} {}: install the Gateway API CRDs to get routes (Service {name} is in place)",
                        GATEWAY_API.0, GATEWAY_API.1, GATEWAY_API.2
                    ),
                ),
                (Some(gw), Ok(true)) => apply_routes(ctx, g, gw, &routes).await,
            },
        };
        status.networking_status = match gateway {
            Some(gw) if reason == "RoutesAccepted" || reason == "RoutesPending" || reason == "RouteRejected" => {
                Some(NetworkingStatus { routes: route_status(&view, gw) })
            }
            _ => None,
        };
        let message = crate::text::safe(&message, 900);
        earned.push(condition(cond::ROUTE_READY, ready, reason, message, generation, now, &status.conditions));
    }
    if let Some(config) = monitor_config {
        let (ready, reason, message) = match (&monitors_served, &monitor) {
            (Err(Refused(reason, message)), _) => (false, *reason, message.clone()),
            (Ok(true), Some(m)) => {
                let api = dynamic_api(ctx, &ns, MONITORING_API, "ServiceMonitor");
                match write_owned(&api, g, "ServiceMonitor", &g.name_any(), m).await {
                    Ok(Ok(_)) => {
                        (true, "Applied", format!("ServiceMonitor {} scrapes the group's nodes every {}", g.name_any(), config.interval))
                    }
                    Ok(Err(Refused(reason, message))) => (false, reason, message),
                    Err(e) => (false, "ApplyFailed", format!("writing ServiceMonitor {}: {e}", g.name_any())),
                }
            }
            _ => (
                false,
                "CRDNotServed",
                format!(
                    "this cluster does not serve {}/{} {}: install the Prometheus Operator CRDs to get a ServiceMonitor",
                    MONITORING_API.0, MONITORING_API.1, MONITORING_API.2
                ),
            ),
        };
        let message = crate::text::safe(&message, 900);
        earned.push(condition(cond::SERVICE_MONITOR_READY, ready, reason, message, generation, now, &status.conditions));
    }
    for c in &earned {
        if c.status != "True" {
            tracing::debug!(group = %format!("{ns}/{}", g.name_any()), condition = %c.type_, reason = %c.reason, "networking not ready");
        }
        set_condition(status, c.clone());
    }
    let routes = status.networking_status.clone();
    ctx.remember_networking(&uid, Some(AppliedNetworking { digest, at: std::time::Instant::now(), conditions: earned, routes }));
    Ok(())
}

/// Apply the group's routes; the `RouteReady` verdict: every route accepted by the Gateway, one
/// rejected (with the Gateway's reason), some still pending, or a write refused or failed.
async fn apply_routes(
    ctx: &GroupContext,
    g: &SeiNodeDeployment,
    gw: &GatewayConfig,
    routes: &[serde_json::Value],
) -> (bool, &'static str, String) {
    let api = dynamic_api(ctx, &g.namespace().unwrap_or_default(), GATEWAY_API, "HTTPRoute");
    let (mut pending, mut rejected) = (Vec::new(), Vec::new());
    for route in routes {
        let name = route["metadata"]["name"].as_str().unwrap_or_default();
        match write_owned(&api, g, "HTTPRoute", name, route).await {
            Ok(Ok(applied)) => match route_state(&applied, gw) {
                RouteState::Accepted => {}
                RouteState::Pending => pending.push(name.to_string()),
                RouteState::Rejected(reason, message) => rejected.push(format!("{name}: {reason}: {message}")),
            },
            Ok(Err(Refused(reason, message))) => return (false, reason, message),
            Err(e) => return (false, "ApplyFailed", format!("writing HTTPRoute {name}: {e}")),
        }
    }
    let at = format!("Gateway {}/{}", gw.namespace, gw.name);
    if !rejected.is_empty() {
        (false, "RouteRejected", format!("{at} rejected {}", rejected.join("; ")))
    } else if !pending.is_empty() {
        (false, "RoutesPending", format!("waiting for {at} to accept {}", pending.join(", ")))
    } else {
        (true, "RoutesAccepted", format!("{at} accepted the routes"))
    }
}

/// The group's networking objects (the Service and routes, the ServiceMonitor, or both) as
/// (api, kind, name), the optional ones only when their API is served.
async fn networking_objects(
    ctx: &GroupContext,
    g: &SeiNodeDeployment,
    service: bool,
    monitor: bool,
) -> Vec<(Api<DynamicObject>, &'static str, String)> {
    let ns = g.namespace().unwrap_or_default();
    let mut out = Vec::new();
    if service {
        out.push((service_api(ctx, &ns), "Service", external_service_name(g)));
        if ctx.platform().gateway.is_some() && served(ctx, GATEWAY_API).await.unwrap_or(false) {
            for (protocol, _) in ROUTED {
                out.push((dynamic_api(ctx, &ns, GATEWAY_API, "HTTPRoute"), "HTTPRoute", route_name(g, protocol)));
            }
        }
    }
    if monitor && served(ctx, MONITORING_API).await.unwrap_or(false) {
        out.push((dynamic_api(ctx, &ns, MONITORING_API, "ServiceMonitor"), "ServiceMonitor", g.name_any()));
    }
    out
}

/// Delete what the spec no longer asks for (only objects the group controls). A failure on the
/// Service fails the reconcile (retried); one on an optional object is a Warning event.
async fn remove_networking(ctx: &GroupContext, g: &SeiNodeDeployment, service: bool, monitor: bool) -> Result<(), GroupError> {
    for (api, kind, name) in networking_objects(ctx, g, service, monitor).await {
        let result = match api.get_opt(&name).await {
            Ok(Some(o)) if controlled_by(g, &o.metadata) => api.delete(&name, &DeleteParams::background()).await.map(|_| ()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) if kind == "Service" => return Err(e.into()),
            Err(e) => publish(ctx, g, EventType::Warning, "NetworkingLeft", format!("could not delete {kind} {name}: {e}")).await,
        }
    }
    ctx.remember_networking(&g.uid().unwrap_or_default(), None);
    Ok(())
}

/// `Retain`: the Service, routes and ServiceMonitor the group controls lose the group's owner
/// reference (other owners kept), so the garbage collector keeps them. A refusal on an optional
/// object is a Warning event, never a stuck deletion.
async fn orphan_networking(ctx: &GroupContext, g: &SeiNodeDeployment) -> Result<(), GroupError> {
    let monitor = g.spec.monitoring.as_ref().is_some_and(|m| m.service_monitor.is_some());
    let uid = g.uid().unwrap_or_default();
    for (api, kind, name) in networking_objects(ctx, g, g.spec.networking.is_some(), monitor).await {
        let result = match api.get_opt(&name).await {
            Ok(Some(o)) if controlled_by(g, &o.metadata) => {
                let others: Vec<_> = o.metadata.owner_references.iter().flatten().filter(|r| r.uid != uid).cloned().collect();
                let patch = serde_json::json!({"metadata": {"ownerReferences": others, "resourceVersion": o.metadata.resource_version}});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ())
            }
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) if kind == "Service" || matches!(&e, kube::Error::Api(s) if s.code == 409) => return Err(e.into()),
            Err(e) => publish(ctx, g, EventType::Warning, "NetworkingNotRetained", format!("could not orphan {kind} {name}: {e}")).await,
        }
    }
    Ok(())
}

/// The genesis hash the assembly reported, and where the genesis is (the reference's
/// `{SEI_GENESIS_BUCKET}/{chainId}/genesis.json`).
fn record_genesis(ctx: &GroupContext, g: &SeiNodeDeployment, status: &mut SeiNodeDeploymentStatus, output: &serde_json::Value) {
    let hash = output
        .get("genesisHash")
        .and_then(serde_json::Value::as_str)
        .filter(|h| h.len() <= 128 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if let Some(h) = hash {
        status.genesis_hash = Some(h.to_string());
    }
    if let Some(gc) = &g.spec.genesis {
        status.genesis_s3_uri = Some(format!("s3://{}/{}/genesis.json", ctx.platform().genesis_bucket, gc.chain_id));
    }
}

/// Replicas, nodes, phase and conditions, from the children and the plan. `ceremony_completed`:
/// the genesis plan completed in this reconcile (the ceremony is done, whatever the sidecar
/// reported of its hash).
fn finish_status(
    g: &SeiNodeDeployment,
    status: &mut SeiNodeDeploymentStatus,
    owned: &[SeiNode],
    now: &Time,
    timed_out: Option<(&str, String)>,
    ceremony_completed: bool,
) {
    let generation = g.metadata.generation;
    let mut children: Vec<&SeiNode> = owned.iter().filter(|n| is_child(g, n) && n.metadata.deletion_timestamp.is_none()).collect();
    children.sort_by_key(|n| (ordinal_of(n), n.name_any()));
    status.nodes =
        children.iter().map(|n| GroupNodeStatus { name: n.name_any(), phase: n.status.as_ref().and_then(|s| s.phase) }).collect();
    status.replicas = g.spec.replicas;
    status.ready_replicas = status.nodes.iter().filter(|n| n.phase == Some(crate::api::seinode::SeiNodePhase::Running)).count() as i32;
    let plan_failed = status.plan.as_ref().is_some_and(|p| p.phase == TaskPlanPhase::Failed);
    let mut view = g.clone();
    view.status = Some(status.clone());
    if ceremony_completed && let Some(s) = view.status.as_mut() {
        // Completed in this reconcile: phase and conditions already count it as done (not
        // `GenesisCeremonyComplete` True beside `…CeremonyNeeded` True in one write).
        let done = condition(cond::GENESIS_CEREMONY_COMPLETE, true, "CeremonyComplete", String::new(), generation, now, &[]);
        set_condition(s, done);
    }
    let ceremony = ceremony_due(&view);
    status.phase = Some(if timed_out.is_some() { GroupPhase::Failed } else { phase(&view, &status.nodes, plan_failed) });

    let old = std::mem::take(&mut status.conditions);
    let mut conditions = vec![condition(
        cond::NODES_READY,
        status.ready_replicas >= g.spec.replicas,
        if status.ready_replicas >= g.spec.replicas { "AllRunning" } else { "NotAllRunning" },
        format!("{}/{} SeiNodes Running", status.ready_replicas, g.spec.replicas),
        generation,
        now,
        &old,
    )];
    let active = status.plan.as_ref().is_some_and(|p| p.phase == TaskPlanPhase::Active);
    let (reason, message) = match &status.plan {
        Some(p) if p.phase == TaskPlanPhase::Active => ("PlanStarted", format!("plan {} is running", p.id)),
        Some(p) if p.phase == TaskPlanPhase::Failed => ("PlanFailed", format!("plan {} failed", p.id)),
        _ => ("PlanComplete", "no plan is running".to_string()),
    };
    conditions.push(condition(cond::PLAN_IN_PROGRESS, active, reason, message, generation, now, &old));
    if g.spec.genesis.is_some() {
        let fork = g.spec.genesis.as_ref().is_some_and(|gc| gc.fork.is_some());
        let needed = ceremony.is_some() && status.phase != Some(GroupPhase::Failed);
        let kind = if fork { cond::FORK_GENESIS_CEREMONY_NEEDED } else { cond::GENESIS_CEREMONY_NEEDED };
        conditions.push(condition(
            kind,
            needed,
            if needed { "CeremonyPending" } else { "NoCeremony" },
            String::new(),
            generation,
            now,
            &old,
        ));
        let complete = old.iter().any(|c| c.type_ == cond::GENESIS_CEREMONY_COMPLETE && c.status == "True") || ceremony_completed;
        // A deadline that failed the ceremony stays its reason on every later write.
        let timed_out = timed_out.clone().or_else(|| {
            old.iter()
                .find(|c| c.type_ == cond::GENESIS_CEREMONY_COMPLETE && c.reason == "CeremonyTimedOut")
                .filter(|_| plan_failed)
                .map(|c| ("CeremonyTimedOut", c.message.clone()))
        });
        let (reason, message) = match (&timed_out, complete, plan_failed) {
            (Some((r, m)), _, _) => (*r, m.clone()),
            (None, true, _) => ("CeremonyComplete", format!("genesis {} assembled", status.genesis_hash.clone().unwrap_or_default())),
            (None, false, true) => ("CeremonyFailed", "the genesis plan failed".to_string()),
            (None, false, false) => ("CeremonyPending", "the genesis ceremony has not completed".to_string()),
        };
        conditions.push(condition(cond::GENESIS_CEREMONY_COMPLETE, complete, reason, message, generation, now, &old));
    }
    let rolling = status.rollout.is_some();
    let strategy = status.rollout.as_ref().map(|r| r.strategy).unwrap_or(UpdateStrategyType::InPlace);
    conditions.push(condition(
        cond::ROLLOUT_IN_PROGRESS,
        rolling,
        if rolling { "RolloutStarted" } else { "NoRollout" },
        if rolling { format!("{} rollout", strategy.as_str()) } else { String::new() },
        generation,
        now,
        &old,
    ));
    // Written by `apply_networking`; kept while the spec still asks for them.
    let monitoring = g.spec.monitoring.as_ref().is_some_and(|m| m.service_monitor.is_some());
    conditions.extend(old.into_iter().filter(|c| {
        (c.type_ == cond::ROUTE_READY && g.spec.networking.is_some()) || (c.type_ == cond::SERVICE_MONITOR_READY && monitoring)
    }));
    status.conditions = conditions;
}

/// Retry a conflict at once, anything else after a back-off; count each by cause.
pub fn error_policy(g: Arc<SeiNodeDeployment>, error: &GroupError, ctx: Arc<GroupContext>) -> Action {
    ctx.telemetry().count_reconcile_error(error.metric_label());
    let who = format!("{}/{}", g.namespace().unwrap_or_default(), g.name_any());
    if error.is_conflict() {
        tracing::debug!(group = %who, %error, "status write lost to a concurrent change; retrying on fresh data");
        return Action::requeue(Duration::from_millis(100));
    }
    tracing::warn!(group = %who, %error, cause = error.metric_label(), "group reconcile failed; retrying");
    Action::requeue(ERROR_BACKOFF)
}

/// The SeiNodes that wake a group: only those labelled with a group, and only when what the
/// group reacts to changed (`children::child_fingerprint`) or they are gone. A child's plan-step
/// status writes (several per step) do not reconcile its group.
fn child_triggers(
    api: Api<SeiNode>,
    shard: Option<&ShardSelector>,
) -> impl futures::Stream<Item = Result<SeiNode, watcher::Error>> + Send + 'static {
    use kube::runtime::WatchStreamExt;
    let seen: std::sync::Mutex<std::collections::HashMap<String, u64>> = Default::default();
    let selector = crate::shard::combined(Some(GROUP_LABEL), shard).unwrap_or_default();
    watcher(api, watcher::Config::default().labels(&selector)).default_backoff().filter_map(move |event| {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let out = match event {
            Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                let key = n.uid().unwrap_or_default();
                let fingerprint = super::children::child_fingerprint(&n);
                (seen.insert(key, fingerprint) != Some(fingerprint)).then_some(Ok(n))
            }
            Ok(watcher::Event::Delete(n)) => {
                seen.remove(&n.uid().unwrap_or_default());
                Some(Ok(n))
            }
            // A relist: every child is new again (and the map drops the ones that are gone).
            Ok(watcher::Event::Init) => {
                seen.clear();
                None
            }
            Ok(watcher::Event::InitDone) => None,
            Err(e) => Some(Err(e)),
        };
        std::future::ready(out)
    })
}

/// Reconcile SeiNodeDeployments (and watch their SeiNodes) until `shutdown` resolves, then
/// return once the reconciles in flight have finished.
pub async fn run_until(
    ctx: Arc<GroupContext>,
    concurrency: u16,
    namespace: Option<String>,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client().clone();
    let mut groups = watcher::Config::default();
    if let Some(shard) = ctx.shard() {
        groups = groups.labels(shard.as_str());
    }
    Controller::new(api_in::<SeiNodeDeployment>(&client, namespace.as_deref()), groups)
        .owns_stream(child_triggers(api_in::<SeiNode>(&client, namespace.as_deref()), ctx.shard()))
        .with_config(kube::runtime::controller::Config::default().concurrency(concurrency))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
