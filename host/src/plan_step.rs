//! Plan stepping, pure: how one task step's outcome changes a persisted plan (a SeiNode's or a
//! SeiNodeDeployment's). The controllers run the modules and write the result in one status
//! write; everything here is data in, data out.
//!
//! Semantics (the reference controller's executor, with its later fixes):
//! - the current task is the first one not `Complete`;
//! - `complete` marks the task `Complete` and lets the next task run in the same reconcile;
//! - `pending` marks it `Running` with its checkpoint: the next step polls, it never re-submits;
//! - a retryable failure within the budget goes back to `Pending` with `retryCount + 1`, its
//!   checkpoint cleared (the retry starts over, re-submitting the same task id) and the reference
//!   backoff `5 s × 2^min(n, 5)` capped at 30 s; past the budget, or a non-retryable failure, fails
//!   the task and the plan with `failedTaskIndex` and `failedTaskDetail`;
//! - a witness (a later task whose success proves the tasks before it done: the bootstrap Job's
//!   success proves every sidecar task of the bootstrap pod ran, its seid waits on `mark-ready`)
//!   settles a task whose dependency is unreachable: its success completes that task and every
//!   task up to and including the witness, its permanent failure fails that task with the
//!   witness's reason, anything else (pending, unreachable itself, a failure that may pass)
//!   leaves the task waiting (`record_witness`, `witness_for`).
//!
//! Tests: `plan_step::tests` (one per rule above).

use crate::api::seinode::{FailedTaskInfo, TaskPlan, TaskPlanPhase, TaskStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use std::time::Duration;

/// How often a waiting task is polled when its module does not say.
pub const TASK_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// After a convergence plan failed, a new one is not built before this long (no hot loop when
/// the cluster keeps refusing the change).
pub const CONVERGENCE_RETRY_AFTER: Duration = Duration::from_secs(60);

/// `now + d` (saturating at the far future).
pub fn after(now: &Time, d: Duration) -> Time {
    let d = k8s_openapi::jiff::SignedDuration::from_millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    Time(now.0.checked_add(d).unwrap_or(k8s_openapi::jiff::Timestamp::MAX))
}

/// `now + d` as a step's `notBefore` (microsecond precision).
pub fn not_before(now: &Time, d: Duration) -> MicroTime {
    MicroTime(after(now, d).0)
}

/// How long until the task may run its next step; `None`: now.
pub fn wait_remaining(task: &crate::api::seinode::PlannedTask, now: &Time) -> Option<Duration> {
    let nb = task.not_before.as_ref()?;
    let ms = nb.0.as_millisecond() - now.0.as_millisecond();
    (ms > 0).then(|| Duration::from_millis(ms as u64))
}

/// The reference's back-off: 10 s, 20 s, 30 s, 30 s, … for retry 1, 2, 3, …
pub fn retry_backoff(retry_count: i32) -> Duration {
    let exp = retry_count.clamp(0, 5) as u32;
    (Duration::from_secs(5) * 2u32.pow(exp)).min(Duration::from_secs(30))
}

/// The outcome of one step, as the executor sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    Complete,
    Pending {
        requeue_after: Duration,
        checkpoint: String,
        message: String,
    },
    Failed {
        reason: String,
        retryable: bool,
    },
    /// A dependency could not be reached: try the same step again later, without consuming the
    /// retry budget.
    Unavailable {
        reason: String,
    },
}

impl TaskOutcome {
    /// What the outcome says about the module that produced it: `Some(true)` a failure,
    /// `Some(false)` a success, `None` nothing yet (a pending poll, an unreachable dependency).
    pub fn verdict(&self) -> Option<bool> {
        match self {
            TaskOutcome::Complete => Some(false),
            TaskOutcome::Failed { .. } => Some(true),
            TaskOutcome::Pending { .. } | TaskOutcome::Unavailable { .. } => None,
        }
    }
}

/// What the reconcile does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// The task completed and another follows: run it now.
    RunNextTask,
    /// Come back after this long (a pending task, or a retry's backoff).
    RequeueAfter(Duration),
    /// The last task completed.
    PlanComplete,
    /// The plan failed.
    PlanFailed,
}

/// The first task that is not `Complete`.
pub fn current_task(plan: &TaskPlan) -> Option<usize> {
    plan.tasks.iter().position(|t| t.status != TaskStatus::Complete)
}

/// Record the outcome of a step of task `index`, run by the module `digest`, at `now`.
pub fn record_step(plan: &mut TaskPlan, index: usize, outcome: TaskOutcome, digest: &str, now: &Time) -> Next {
    let total = plan.tasks.len();
    let Some(task) = plan.tasks.get_mut(index) else { return Next::PlanFailed };
    if task.submitted_at.is_none() {
        task.submitted_at = Some(now.clone());
    }
    task.module_digest = Some(digest.to_string());
    match outcome {
        TaskOutcome::Complete => {
            task.status = TaskStatus::Complete;
            task.checkpoint = None;
            task.message = None;
            task.error = None;
            task.not_before = None;
            if index + 1 < total {
                Next::RunNextTask
            } else {
                plan.phase = TaskPlanPhase::Complete;
                Next::PlanComplete
            }
        }
        TaskOutcome::Pending { requeue_after, checkpoint, message } => {
            task.status = TaskStatus::Running;
            task.checkpoint = Some(checkpoint);
            task.message = Some(message);
            task.not_before = Some(not_before(now, requeue_after));
            Next::RequeueAfter(requeue_after)
        }
        TaskOutcome::Unavailable { reason } => {
            task.message = Some(format!("waiting: {reason}"));
            task.not_before = Some(not_before(now, TASK_POLL_INTERVAL));
            Next::RequeueAfter(TASK_POLL_INTERVAL)
        }
        TaskOutcome::Failed { reason, retryable } if retryable && task.retry_count < task.max_retries => {
            task.retry_count += 1;
            task.status = TaskStatus::Pending;
            task.checkpoint = None;
            task.submitted_at = None;
            task.message = Some(format!("retry {}/{} after: {reason}", task.retry_count, task.max_retries));
            task.error = Some(reason);
            task.not_before = Some(not_before(now, retry_backoff(task.retry_count)));
            Next::RequeueAfter(retry_backoff(task.retry_count))
        }
        TaskOutcome::Failed { reason, .. } => {
            task.status = TaskStatus::Failed;
            task.error = Some(reason.clone());
            task.message = None;
            task.not_before = Some(not_before(now, CONVERGENCE_RETRY_AFTER));
            plan.phase = TaskPlanPhase::Failed;
            plan.failed_task_index = Some(index as i32);
            plan.failed_task_detail = Some(FailedTaskInfo {
                task_type: task.task_type.clone(),
                id: task.id.clone(),
                error: reason,
                retry_count: task.retry_count,
                max_retries: task.max_retries,
            });
            Next::PlanFailed
        }
    }
}

/// A task type whose success proves done every task of the plan between the last
/// `covers_after` task before it and itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Witness {
    pub task_type: &'static str,
    pub covers_after: &'static str,
}

/// The index of the task whose step may settle task `index` (its dependency unreachable): the
/// first `witness.task_type` after it, when a `covers_after` task before it is complete and
/// neither another `covers_after` nor a witness (a phase already closed) lies between them.
pub fn witness_for(plan: &TaskPlan, index: usize, witnesses: &[Witness]) -> Option<usize> {
    witnesses.iter().find_map(|w| {
        let after = plan.tasks.get(..index)?.iter().rposition(|t| t.task_type == w.covers_after)?;
        let at = index + 1 + plan.tasks.get(index + 1..)?.iter().position(|t| t.task_type == w.task_type)?;
        let opened = plan.tasks[after].status == TaskStatus::Complete;
        let closed = plan.tasks[after + 1..index].iter().any(|t| t.task_type == w.task_type);
        let reopened = plan.tasks[index + 1..at].iter().any(|t| t.task_type == w.covers_after);
        (opened && !closed && !reopened).then_some(at)
    })
}

/// Settle task `index`, whose last step found its dependency unreachable, by the step of its
/// witness `witness` (run by `digest`): `Some(next)` when the witness decided it, `None` when the
/// task keeps waiting. Only a verdict counts: the witness succeeded (the covered tasks and the
/// witness complete) or failed for good (the task fails, keeping the digest of its own module); a
/// witness still pending, unable to look, or failing in a way that may pass (a timeout, an
/// unreadable answer) leaves the task waiting as it was.
pub fn record_witness(plan: &mut TaskPlan, index: usize, witness: usize, outcome: TaskOutcome, digest: &str, now: &Time) -> Option<Next> {
    let witness_type = plan.tasks.get(witness)?.task_type.clone();
    match outcome {
        TaskOutcome::Complete => {
            for task in plan.tasks.get_mut(index..witness)? {
                task.status = TaskStatus::Complete;
                task.checkpoint = None;
                task.error = None;
                task.not_before = None;
                task.message = Some(format!("done: {witness_type} succeeded, which proves it ran"));
            }
            Some(record_step(plan, witness, TaskOutcome::Complete, digest, now))
        }
        TaskOutcome::Failed { reason, retryable: false } => {
            let own = plan.tasks.get(index)?.module_digest.clone().unwrap_or_default();
            let reason = format!("unreachable, and {witness_type} failed: {reason}");
            Some(record_step(plan, index, TaskOutcome::Failed { reason, retryable: false }, &own, now))
        }
        TaskOutcome::Failed { retryable: true, .. } | TaskOutcome::Pending { .. } | TaskOutcome::Unavailable { .. } => None,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::api::seinode::{PlannedTask, SeiNodePhase};

    pub(crate) fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    /// An active plan of `types` that ends in Running (or Failed).
    pub(crate) fn plan(types: &[&str]) -> TaskPlan {
        TaskPlan {
            id: "p".into(),
            phase: TaskPlanPhase::Active,
            tasks: types
                .iter()
                .enumerate()
                .map(|(i, t)| PlannedTask { task_type: t.to_string(), id: format!("id-{i}"), ..Default::default() })
                .collect(),
            target_phase: Some(SeiNodePhase::Running),
            failed_phase: Some(SeiNodePhase::Failed),
            ..Default::default()
        }
    }

    #[test]
    fn backoff_matches_the_reference() {
        let secs: Vec<u64> = (1..=6).map(|n| retry_backoff(n).as_secs()).collect();
        assert_eq!(secs, [10, 20, 30, 30, 30, 30]);
    }

    #[test]
    fn complete_runs_the_next_task_and_completes_the_plan() {
        let mut p = plan(&["a", "b"]);
        assert_eq!(current_task(&p), Some(0));
        assert_eq!(record_step(&mut p, 0, TaskOutcome::Complete, "d1", &now()), Next::RunNextTask);
        assert_eq!(current_task(&p), Some(1));
        assert_eq!(p.tasks[0].module_digest.as_deref(), Some("d1"));
        assert!(p.tasks[0].submitted_at.is_some());
        assert_eq!(record_step(&mut p, 1, TaskOutcome::Complete, "d2", &now()), Next::PlanComplete);
        assert_eq!(p.phase, TaskPlanPhase::Complete);
        assert_eq!(current_task(&p), None);
    }

    #[test]
    fn pending_keeps_the_checkpoint_and_is_running() {
        let mut p = plan(&["a"]);
        let next = record_step(
            &mut p,
            0,
            TaskOutcome::Pending { requeue_after: Duration::from_secs(5), checkpoint: "\"submitted\"".into(), message: "waiting".into() },
            "d",
            &now(),
        );
        assert_eq!(next, Next::RequeueAfter(Duration::from_secs(5)));
        assert_eq!(p.tasks[0].status, TaskStatus::Running);
        assert_eq!(p.tasks[0].checkpoint.as_deref(), Some("\"submitted\""));
        assert_eq!(current_task(&p), Some(0), "a running task stays current");
    }

    #[test]
    fn retry_within_budget_resets_the_task() {
        let mut p = plan(&["configure-genesis"]);
        p.tasks[0].max_retries = 2;
        p.tasks[0].checkpoint = Some("\"submitted\"".into());
        let fail = || TaskOutcome::Failed { reason: "genesis not uploaded yet".into(), retryable: true };
        assert_eq!(record_step(&mut p, 0, fail(), "d", &now()), Next::RequeueAfter(Duration::from_secs(10)));
        let t = &p.tasks[0];
        assert_eq!((t.status, t.retry_count, t.checkpoint.clone(), t.submitted_at.clone()), (TaskStatus::Pending, 1, None, None));
        assert_eq!(record_step(&mut p, 0, fail(), "d", &now()), Next::RequeueAfter(Duration::from_secs(20)));
        assert_eq!(record_step(&mut p, 0, fail(), "d", &now()), Next::PlanFailed, "budget spent");
        let detail = p.failed_task_detail.as_ref().unwrap();
        assert_eq!((detail.retry_count, detail.max_retries, detail.error.as_str()), (2, 2, "genesis not uploaded yet"));
        assert_eq!(p.failed_task_index, Some(0));
    }

    #[test]
    fn waits_are_recorded_as_not_before() {
        let mut p = plan(&["configure-genesis"]);
        p.tasks[0].max_retries = 3;
        record_step(&mut p, 0, TaskOutcome::Failed { reason: "x".into(), retryable: true }, "d", &now());
        assert_eq!(wait_remaining(&p.tasks[0], &now()), Some(Duration::from_secs(10)));
        assert_eq!(wait_remaining(&p.tasks[0], &after(&now(), Duration::from_secs(11))), None);
        record_step(
            &mut p,
            0,
            TaskOutcome::Pending { requeue_after: Duration::from_secs(5), checkpoint: "1".into(), message: "m".into() },
            "d",
            &now(),
        );
        assert_eq!(wait_remaining(&p.tasks[0], &now()), Some(Duration::from_secs(5)));
        record_step(&mut p, 0, TaskOutcome::Complete, "d", &now());
        assert_eq!(wait_remaining(&p.tasks[0], &now()), None);
    }

    #[test]
    fn sub_second_waits_survive_the_round_trip() {
        let mut p = plan(&["count"]);
        let pending = TaskOutcome::Pending { requeue_after: Duration::from_millis(500), checkpoint: "1".into(), message: "m".into() };
        record_step(&mut p, 0, pending, "d", &now());
        // What the API server stores and hands back.
        let stored: TaskPlan = serde_json::from_value(serde_json::to_value(&p).unwrap()).unwrap();
        assert_eq!(wait_remaining(&stored.tasks[0], &now()), Some(Duration::from_millis(500)));
        let nb = serde_json::to_value(&stored.tasks[0]).unwrap()["notBefore"].as_str().unwrap().to_string();
        assert!(nb.ends_with(".500000Z"), "{nb}");
    }

    #[test]
    fn unavailable_waits_without_spending_the_budget() {
        let mut p = plan(&["snapshot-restore"]);
        for _ in 0..10 {
            let next = record_step(&mut p, 0, TaskOutcome::Unavailable { reason: "sidecar unreachable".into() }, "d", &now());
            assert_eq!(next, Next::RequeueAfter(TASK_POLL_INTERVAL));
        }
        assert_eq!((p.tasks[0].status, p.tasks[0].retry_count), (TaskStatus::Pending, 0));
        assert_eq!(p.phase, TaskPlanPhase::Active);
        assert_eq!(p.tasks[0].message.as_deref(), Some("waiting: sidecar unreachable"));
    }

    #[test]
    fn non_retryable_failure_fails_at_once() {
        let mut p = plan(&["a", "b"]);
        p.tasks[1].max_retries = 5;
        record_step(&mut p, 0, TaskOutcome::Complete, "d", &now());
        assert_eq!(
            record_step(&mut p, 1, TaskOutcome::Failed { reason: "denied: kube-write".into(), retryable: false }, "d", &now()),
            Next::PlanFailed
        );
        assert_eq!(p.tasks[1].status, TaskStatus::Failed);
        assert_eq!(p.phase, TaskPlanPhase::Failed);
        assert_eq!(p.failed_task_index, Some(1));
    }

    const BOOT: Witness = Witness { task_type: "await-bootstrap-complete", covers_after: "deploy-bootstrap-job" };

    /// A bootstrap-shaped plan with its first `done` tasks complete.
    fn bootstrap(done: usize) -> TaskPlan {
        let mut p = plan(&[
            "deploy-bootstrap-job",
            "snapshot-restore",
            "mark-ready",
            "await-bootstrap-complete",
            "teardown-bootstrap",
            "config-apply",
            "mark-ready",
        ]);
        for t in &mut p.tasks[..done] {
            t.status = TaskStatus::Complete;
        }
        p
    }

    #[test]
    fn a_witness_covers_only_the_tasks_between_its_opener_and_itself() {
        for (done, index, want) in [
            (1, 1, Some(3)),
            (2, 2, Some(3)),
            (0, 1, None), // the Job was never deployed: nothing proves anything
            (0, 0, None), // the opener itself
            (3, 3, None), // the witness itself
            (5, 5, None), // after the witness: the production pod's tasks
            (6, 6, None), // the second mark-ready
        ] {
            assert_eq!(witness_for(&bootstrap(done), index, &[BOOT]), want, "{done} done, task {index}");
        }
        assert_eq!(witness_for(&bootstrap(2), 2, &[]), None, "no witness listed");
        let mut twice = bootstrap(2);
        twice.tasks[1].task_type = "deploy-bootstrap-job".into();
        twice.tasks[0].status = TaskStatus::Pending;
        assert_eq!(witness_for(&twice, 2, &[BOOT]), Some(3), "the last opener before the task counts (the first is not complete)");
        let mut reopened = bootstrap(1);
        reopened.tasks[2].task_type = "deploy-bootstrap-job".into();
        assert_eq!(witness_for(&reopened, 1, &[BOOT]), None, "an opener between the task and the witness");
        let mut second_phase = bootstrap(5);
        second_phase.tasks[6].task_type = "await-bootstrap-complete".into();
        assert_eq!(witness_for(&second_phase, 5, &[BOOT]), None, "the phase closed by the first witness stays closed");
    }

    #[test]
    fn a_witness_that_succeeded_completes_the_waiting_tasks_and_itself() {
        let mut p = bootstrap(2);
        record_step(&mut p, 2, TaskOutcome::Unavailable { reason: "sidecar down".into() }, "side", &now());
        assert_eq!(record_witness(&mut p, 2, 3, TaskOutcome::Complete, "infra", &now()), Some(Next::RunNextTask));
        let status: Vec<TaskStatus> = p.tasks.iter().map(|t| t.status).collect();
        use TaskStatus::{Complete as C, Pending as P};
        assert_eq!(status, [C, C, C, C, P, P, P]);
        assert_eq!(p.tasks[2].message.as_deref(), Some("done: await-bootstrap-complete succeeded, which proves it ran"));
        assert_eq!((p.tasks[2].module_digest.as_deref(), p.tasks[3].module_digest.as_deref()), (Some("side"), Some("infra")));
        assert_eq!((p.tasks[2].not_before.as_ref(), p.tasks[3].message.as_ref()), (None, None));
        assert_eq!(current_task(&p), Some(4));
    }

    #[test]
    fn a_witness_that_failed_for_good_fails_the_waiting_task_with_its_reason() {
        let mut p = bootstrap(1);
        record_step(&mut p, 1, TaskOutcome::Unavailable { reason: "sidecar down".into() }, "side", &now());
        let failed = TaskOutcome::Failed { reason: "bootstrap job b failed: OOMKilled".into(), retryable: false };
        assert_eq!(record_witness(&mut p, 1, 3, failed, "infra", &now()), Some(Next::PlanFailed));
        assert_eq!(p.failed_task_index, Some(1));
        let detail = p.failed_task_detail.clone().unwrap();
        assert_eq!(detail.task_type, "snapshot-restore");
        assert_eq!(detail.error, "unreachable, and await-bootstrap-complete failed: bootstrap job b failed: OOMKilled");
        assert_eq!(p.tasks[1].module_digest.as_deref(), Some("side"), "the task keeps its own module's digest");
        assert_eq!(p.tasks[3].status, TaskStatus::Pending, "the witness itself is not marked");
    }

    #[test]
    fn a_witness_without_a_verdict_leaves_the_task_waiting() {
        for outcome in [
            TaskOutcome::Pending { requeue_after: Duration::from_secs(2), checkpoint: "running".into(), message: "m".into() },
            TaskOutcome::Unavailable { reason: "api".into() },
            TaskOutcome::Failed { reason: "timeout".into(), retryable: true },
        ] {
            let mut p = bootstrap(2);
            record_step(&mut p, 2, TaskOutcome::Unavailable { reason: "sidecar down".into() }, "side", &now());
            let before = p.clone();
            assert_eq!(record_witness(&mut p, 2, 3, outcome.clone(), "infra", &now()), None, "{outcome:?}");
            assert_eq!(p, before, "{outcome:?}: nothing recorded");
        }
    }
}
