//! How a finished plan changes the node's status, pure: stamp target/failed phases, drop a
//! completed convergence plan, and derive `planProgress`, `currentTask` and the conditions
//! `Progressing`, `Ready` and `PlanFailed` (here and nowhere else). How a step changes the plan is
//! `crate::plan_step`, shared with the group controller.
//!
//! - a completed plan stamps `targetPhase`; a completed convergence plan (target = the phase the
//!   node already has) is removed from status; a failed plan stamps `failedPhase` if it has one.
//!
//! Tests: `stepper::tests` (one per rule above).

use crate::api::seinode::{SeiNodePhase, SeiNodeStatus, TaskPlanPhase, TaskStatus};
use crate::conditions::condition;
pub use crate::plan_step::{
    CONVERGENCE_RETRY_AFTER, Next, TASK_POLL_INTERVAL, TaskOutcome, after, current_task, not_before, record_step, retry_backoff,
    wait_remaining,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// Bring the node status in line with its plan: stamp target/failed phases when the plan ended,
/// drop a completed convergence plan, and derive the progress fields and conditions.
pub fn conclude(status: &mut SeiNodeStatus, generation: Option<i64>, now: &Time) {
    let phase_before = status.phase.unwrap_or_default();
    if let Some(plan) = &status.plan {
        match plan.phase {
            TaskPlanPhase::Complete => {
                if let Some(target) = plan.target_phase {
                    status.phase = Some(target);
                    if target == phase_before {
                        status.plan = None;
                    }
                }
            }
            TaskPlanPhase::Failed => {
                if let Some(failed) = plan.failed_phase {
                    status.phase = Some(failed);
                }
            }
            TaskPlanPhase::Active => {}
        }
    }
    let phase = status.phase.unwrap_or_default();
    let (progress, current) = match &status.plan {
        Some(p) => {
            let done = p.tasks.iter().filter(|t| t.status == TaskStatus::Complete).count();
            (
                Some(format!("{done}/{}", p.tasks.len())),
                current_task(p).filter(|_| p.phase == TaskPlanPhase::Active).map(|i| p.tasks[i].task_type.clone()),
            )
        }
        None => (None, None),
    };
    status.plan_progress = progress;
    status.current_task = current.clone();

    let old = std::mem::take(&mut status.conditions);
    let active = status.plan.as_ref().is_some_and(|p| p.phase == TaskPlanPhase::Active);
    let failed = status.plan.as_ref().filter(|p| p.phase == TaskPlanPhase::Failed);
    let progressing = match (&current, active) {
        (Some(t), true) => condition("Progressing", true, "PlanActive", format!("running task {t}"), generation, now, &old),
        _ => condition("Progressing", false, "NoActivePlan", "no plan is running".into(), generation, now, &old),
    };
    let ready = condition(
        "Ready",
        phase == SeiNodePhase::Running && !active,
        if phase == SeiNodePhase::Running { "Running" } else { "NotRunning" },
        format!("node phase is {phase:?}"),
        generation,
        now,
        &old,
    );
    let plan_failed = match failed.and_then(|p| p.failed_task_detail.as_ref().map(|d| (p, d))) {
        Some((p, d)) => condition(
            "PlanFailed",
            true,
            "TaskFailed",
            format!("plan {} failed at task {}: {}", p.id, d.task_type, d.error),
            generation,
            now,
            &old,
        ),
        None => condition("PlanFailed", false, "NoFailure", "the last plan did not fail".into(), generation, now, &old),
    };
    status.conditions = vec![progressing, ready, plan_failed];
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan_step::tests::{now, plan};

    #[test]
    fn completed_init_plan_sets_running_and_stays() {
        let mut p = plan(&["a"]);
        record_step(&mut p, 0, TaskOutcome::Complete, "d", &now());
        let mut s = SeiNodeStatus { phase: Some(SeiNodePhase::Initializing), plan: Some(p), ..Default::default() };
        conclude(&mut s, Some(1), &now());
        assert_eq!(s.phase, Some(SeiNodePhase::Running));
        assert!(s.plan.is_some(), "an init plan stays for observability");
        assert_eq!(s.plan_progress.as_deref(), Some("1/1"));
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    fn completed_convergence_plan_is_removed() {
        let mut p = plan(&["apply-statefulset"]);
        p.failed_phase = None;
        record_step(&mut p, 0, TaskOutcome::Complete, "d", &now());
        let mut s = SeiNodeStatus { phase: Some(SeiNodePhase::Running), plan: Some(p), ..Default::default() };
        conclude(&mut s, Some(2), &now());
        assert_eq!(s.phase, Some(SeiNodePhase::Running));
        assert!(s.plan.is_none());
        assert_eq!(s.plan_progress, None);
    }

    #[test]
    fn failed_plan_stamps_failed_phase_and_condition() {
        let mut p = plan(&["snapshot-restore"]);
        record_step(&mut p, 0, TaskOutcome::Failed { reason: "bucket missing".into(), retryable: true }, "d", &now());
        let mut s = SeiNodeStatus { phase: Some(SeiNodePhase::Initializing), plan: Some(p), ..Default::default() };
        conclude(&mut s, Some(1), &now());
        assert_eq!(s.phase, Some(SeiNodePhase::Failed));
        let c = s.conditions.iter().find(|c| c.type_ == "PlanFailed").unwrap();
        assert_eq!((c.status.as_str(), c.reason.as_str()), ("True", "TaskFailed"));
        assert_eq!(c.message, "plan p failed at task snapshot-restore: bucket missing");
        assert_eq!(s.current_task, None);
    }

    #[test]
    fn failed_convergence_plan_leaves_the_node_running() {
        let mut p = plan(&["apply-statefulset"]);
        p.failed_phase = None;
        record_step(&mut p, 0, TaskOutcome::Failed { reason: "x".into(), retryable: false }, "d", &now());
        let mut s = SeiNodeStatus { phase: Some(SeiNodePhase::Running), plan: Some(p), ..Default::default() };
        conclude(&mut s, None, &now());
        assert_eq!(s.phase, Some(SeiNodePhase::Running));
    }

    #[test]
    fn active_plan_shows_progress_and_current_task() {
        let mut p = plan(&["a", "b", "c"]);
        record_step(&mut p, 0, TaskOutcome::Complete, "d", &now());
        let mut s = SeiNodeStatus { phase: Some(SeiNodePhase::Initializing), plan: Some(p), ..Default::default() };
        conclude(&mut s, Some(1), &now());
        assert_eq!(s.plan_progress.as_deref(), Some("1/3"));
        assert_eq!(s.current_task.as_deref(), Some("b"));
        let c = s.conditions.iter().find(|c| c.type_ == "Progressing").unwrap();
        assert_eq!((c.status.as_str(), c.message.as_str()), ("True", "running task b"));
    }
}
