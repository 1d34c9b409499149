//! Events of a SeiNode: a note is escaped and clipped under the API server's 1 KiB limit, and a
//! phase transition gets the new phase as its reason (events with one reason form a series, so a
//! fixed reason would hide every transition after the first). A new plan that also changes the
//! phase is one `PlanCreated` event naming both (two requests per new node, not three: the API
//! server is the bottleneck at scale).

use super::context::Context;
use crate::api::seinode::{SeiNode, SeiNodePhase};
use kube::runtime::events::{Event, EventType};
use kube::{Resource, ResourceExt};

pub async fn publish(ctx: &Context, node: &SeiNode, type_: EventType, reason: &str, note: String) {
    let note = crate::text::safe(&note, 900);
    let event = Event { type_, reason: reason.into(), note: Some(note), action: "Reconcile".into(), secondary: None };
    match ctx.recorder().publish(&event, &node.object_ref(&())).await {
        Ok(true) => {}
        Ok(false) => ctx.telemetry().count_event_dropped(),
        Err(e) => tracing::warn!(node = %node.name_any(), error = %e, "could not publish event"),
    }
}

/// An event for a phase transition (none when the phase did not change).
pub async fn publish_phase_change(ctx: &Context, node: &SeiNode, from: Option<SeiNodePhase>, to: Option<SeiNodePhase>) {
    if from == to {
        return;
    }
    let to = to.unwrap_or_default();
    let type_ = if to == SeiNodePhase::Failed { EventType::Warning } else { EventType::Normal };
    publish(ctx, node, type_, to.as_str(), format!("phase {} -> {to}", from.unwrap_or_default())).await;
}

/// The event of a new plan persisted in `phase`, naming the phase change when there is one.
pub async fn publish_plan_created(ctx: &Context, node: &SeiNode, from: Option<SeiNodePhase>, to: SeiNodePhase, note: String) {
    let note = if from == Some(to) { note } else { format!("phase {} -> {to}; {note}", from.unwrap_or_default()) };
    publish(ctx, node, EventType::Normal, "PlanCreated", note).await;
}
