//! The plan executor both controllers share: run a persisted plan's due steps, one after the
//! other while they complete, each in the sandbox by the module registered for its task type, and
//! record each outcome in the plan (`plan_step`). A SeiNode's plan runs in the node's scope, a
//! SeiNodeDeployment's in the group's; the caller builds the `RunEnv` and publishes the notices.
//!
//! Rules (tests: `executor::tests`; through the controllers in `tests/controller.rs` and
//! `tests/groups.rs`):
//! - a `pending` step waits at least `MIN_REQUEUE` and at most `MAX_REQUEUE`, whatever its module
//!   asks (`pending_waits_are_floored`);
//! - a failure names the module and its digest (`failures_name_the_module_and_digest`);
//! - a module that is not built in runs at most `step_cap` steps at once; past it the step is
//!   deferred (`MODULE_BUSY_RETRY` plus jitter), not run;
//! - a task type no module implements fails the task, naming the known types;
//! - every outcome counts toward the module's rollout (`TaskRegistry::record_outcome`);
//! - a completed task of a `yield_after` type ends the advance: the caller acts on it before the
//!   next task runs (through the group controller in `tests/groups.rs`,
//!   `blue_green_brings_up_the_entrants_before_the_incumbents_go`);
//! - a task of a `persist_before` type (one that destroys what earlier tasks looked at: the
//!   teardowns) never runs after other steps of the same advance: the advance ends before it, the
//!   caller writes what ran, and the next reconcile runs it. A crash in the middle of a teardown
//!   then never loses the completion of the task before it (`persisted_first`; through a real
//!   crash in `tests/chaos.rs`, `a_crash_after_a_delete_is_sent_still_finishes_the_teardown`).
//! - a step whose dependency is unreachable (`unavailable`) and that has a `witnesses` task after
//!   it (`plan_step::witness_for`) is settled by that task's step, run at once in the same scope:
//!   the bootstrap Job's success completes the bootstrap pod's sidecar tasks whose sidecar is
//!   gone with the pod (a completion lost to a crash would otherwise wait on it forever), its
//!   permanent failure fails the task (`plan_step::record_witness`; through the controller in
//!   `tests/controller.rs`, `a_bootstrap_job_settles_the_tasks_its_gone_sidecar_cannot`). Only
//!   a built-in module's verdict counts: a task module registered for the witness's type never
//!   decides the tasks of other modules (the task then keeps waiting, as without a witness;
//!   `may_witness`, `only_a_built_in_module_is_asked_as_a_witness`).

use crate::api::seinode::TaskPlan;
use crate::plan_step::{Next, TaskOutcome, Witness, current_task, record_step, record_witness, wait_remaining, witness_for};
use crate::registry::slots::ModuleSlots;
use crate::registry::{ModuleEntry, ModuleSource, TaskRegistry};
use crate::sandbox::{RunEnv, RunError, RunInput, RunReport, Sandbox, StepOutcome};
use crate::telemetry::Telemetry;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::sync::Arc;
use std::time::Duration;

/// The shortest wait a `pending` step gets, whatever its module asks for: at most four steps (and
/// status writes) per plan per second.
pub const MIN_REQUEUE: Duration = Duration::from_millis(250);
/// The longest wait a `pending` step gets (a module asking for days waits an hour).
pub const MAX_REQUEUE: Duration = Duration::from_secs(3600);
/// How long a step waits when its (non-built-in) module already runs its share of the steps (plus
/// up to as much again, at random, so that deferred plans do not come back together).
pub const MODULE_BUSY_RETRY: Duration = Duration::from_millis(500);

/// `MODULE_BUSY_RETRY` plus up to as much again.
pub fn busy_retry() -> Duration {
    let jitter = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
    MODULE_BUSY_RETRY + MODULE_BUSY_RETRY.mul_f64(jitter as f64 / 1000.0)
}

/// What the plan stepper makes of a step's report.
pub fn task_outcome(report: &RunReport) -> TaskOutcome {
    match &report.outcome {
        Ok(StepOutcome::Complete { .. }) => TaskOutcome::Complete,
        Ok(StepOutcome::Pending { requeue_after_ms, checkpoint, message }) => TaskOutcome::Pending {
            requeue_after: Duration::from_millis(u64::from(*requeue_after_ms)).clamp(MIN_REQUEUE, MAX_REQUEUE),
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

/// A Warning the caller publishes on its object (`TaskRetry`, `TaskFailed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    pub reason: &'static str,
    pub message: String,
}

/// What one `advance` did.
#[derive(Debug)]
pub struct Advanced {
    pub next: Next,
    pub steps: usize,
    pub notices: Vec<Notice>,
    /// The outputs of the tasks that completed in this advance: (task type, output).
    pub outputs: Vec<(String, serde_json::Value)>,
}

/// Everything a step needs from the controller.
pub struct Executor<'a> {
    pub registry: &'a Arc<TaskRegistry>,
    pub sandbox: &'a Sandbox,
    pub slots: &'a ModuleSlots,
    pub step_cap: usize,
    pub telemetry: &'a Telemetry,
    /// Task types whose completion ends the advance, so that the caller acts on it before the
    /// next task runs (the group's `switch-traffic`: the Service moves before `teardown-nodes`).
    pub yield_after: &'a [&'a str],
    /// Task types that start only from a persisted plan: after other steps of this advance the
    /// advance ends before them (the bootstrap teardown deletes the Job `await-bootstrap-complete`
    /// looked at; re-run after a crash, that task would find no Job).
    pub persist_before: &'a [&'a str],
    /// Tasks whose success proves the tasks before them done: one settles a task whose
    /// dependency is unreachable (`plan_step::witness_for`).
    pub witnesses: &'a [Witness],
}

/// Whether the task `task_type` must wait for the next advance: `steps` steps of this advance
/// already ran and are not yet written, and it is one of `persist_before`.
pub fn persisted_first(steps: usize, task_type: &str, persist_before: &[&str]) -> bool {
    steps > 0 && persist_before.contains(&task_type)
}

/// Whether a module from `source` may settle other tasks as a witness: only a built-in one.
pub fn may_witness(source: &ModuleSource) -> bool {
    matches!(source, ModuleSource::BuiltIn { .. })
}

impl Executor<'_> {
    /// Run the plan's due steps (at most `max_steps`) for `who` (`namespace/name`, for logs),
    /// whose JSON the modules get as input.
    pub async fn advance(
        &self,
        who: &str,
        subject_json: &str,
        env: &RunEnv,
        plan: &mut TaskPlan,
        now: &Time,
        max_steps: usize,
    ) -> Advanced {
        let subject = Subject { who, json: subject_json, env };
        let mut out = Advanced { next: Next::RunNextTask, steps: 0, notices: Vec::new(), outputs: Vec::new() };
        while let Some(index) = current_task(plan) {
            if out.steps >= max_steps || plan.phase != crate::api::seinode::TaskPlanPhase::Active {
                break;
            }
            // A poll interval or retry back-off still running: a watch event woke us early.
            if let Some(wait) = wait_remaining(&plan.tasks[index], now) {
                out.next = Next::RequeueAfter(wait);
                break;
            }
            let task_type = plan.tasks[index].task_type.clone();
            if persisted_first(out.steps, &task_type, self.persist_before) {
                // `out.next` is the previous step's `RunNextTask`: written, then run at once.
                break;
            }
            let Some(entry) = self.registry.resolve(&task_type) else {
                let reason = format!("no module implements task type {task_type} (known: {})", self.registry.task_types().join(", "));
                out.steps += 1;
                out.next = record_step(plan, index, TaskOutcome::Failed { reason, retryable: false }, "", now);
                break;
            };
            let Some((outcome, digest, output)) = self.step(&subject, plan, index, &entry, &mut out).await else {
                out.next = Next::RequeueAfter(busy_retry());
                break;
            };
            if let (TaskOutcome::Complete, Some(output)) = (&outcome, output) {
                out.outputs.push((task_type.clone(), output));
            }
            let completed = matches!(outcome, TaskOutcome::Complete);
            let unreachable = matches!(outcome, TaskOutcome::Unavailable { .. });
            out.next = record_step(plan, index, outcome, &digest, now);
            if unreachable && let Some(next) = self.ask_witness(&subject, plan, index, now, &mut out).await {
                out.next = next;
            }
            if out.next != Next::RunNextTask || (completed && self.yield_after.contains(&task_type.as_str())) {
                break;
            }
        }
        out
    }

    /// Task `index`'s dependency was unreachable: run the step of its witness, if it has one and
    /// the module registered for it is built in (a task module's verdict never decides other
    /// modules' tasks), and let it settle the task (`plan_step::record_witness`). `None`: the
    /// task keeps waiting.
    async fn ask_witness(&self, subject: &Subject<'_>, plan: &mut TaskPlan, index: usize, now: &Time, out: &mut Advanced) -> Option<Next> {
        let witness = witness_for(plan, index, self.witnesses)?;
        let entry = self.registry.resolve(&plan.tasks[witness].task_type)?;
        if !may_witness(&entry.source) {
            return None;
        }
        // The witness's own notice would name it; the notice is the settled task's.
        let notices = out.notices.len();
        let (outcome, digest, output) = self.step(subject, plan, witness, &entry, out).await?;
        out.notices.truncate(notices);
        let completed = matches!(outcome, TaskOutcome::Complete);
        let next = record_witness(plan, index, witness, outcome, &digest, now)?;
        let (task, witness_type) = (&plan.tasks[index], &plan.tasks[witness].task_type);
        tracing::info!(subject = %subject.who, task = %task.task_type, witness = %witness_type, "unreachable task settled by its witness");
        let message = match (completed, &task.error) {
            (true, _) => format!("task {} ({}): unreachable; {witness_type} succeeded, which proves it ran", task.task_type, task.id),
            (false, error) => format!("task {} ({}) failed: {}", task.task_type, task.id, error.as_deref().unwrap_or_default()),
        };
        out.notices.push(Notice { reason: if completed { "TaskSettled" } else { "TaskFailed" }, message });
        if let (true, Some(output)) = (completed, output) {
            out.outputs.push((witness_type.clone(), output));
        }
        Some(next)
    }

    /// One step of task `index` by `entry`'s module, counted in `out`: run, logged, measured,
    /// counted against the module's rollout, failures noted. Returns the outcome, the digest that
    /// ran it and the output of a completed step; `None`: the module (not built in) already runs
    /// its share of the steps at once, and the step is deferred.
    async fn step(
        &self,
        subject: &Subject<'_>,
        plan: &TaskPlan,
        index: usize,
        entry: &Arc<ModuleEntry>,
        out: &mut Advanced,
    ) -> Option<(TaskOutcome, String, Option<serde_json::Value>)> {
        let _slot = match entry.source {
            ModuleSource::BuiltIn { .. } => None,
            _ => match self.slots.try_acquire(&entry.module.digest, self.step_cap) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(subject = %subject.who, module = %entry.module.short_digest(), "module busy; step deferred");
                    self.telemetry.count_deferred_step();
                    return None;
                }
            },
        };
        out.steps += 1;
        let task = &plan.tasks[index];
        let input = RunInput {
            task_type: task.task_type.clone(),
            task_id: task.id.clone(),
            plan_id: plan.id.clone(),
            node: subject.json.to_string(),
            params: task.params.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "{}".into()),
            checkpoint: task.checkpoint.clone(),
            attempt: u32::try_from(task.retry_count).unwrap_or(0) + 1,
        };
        let report = self.sandbox.run(&entry.module, input, subject.env).await;
        tracing::info!(subject = %subject.who, task = %task.task_type, index, step = %report.summary(), micros = report.duration_micros, "task step");
        let outcome = task_outcome(&report);
        if let Some(failed) = outcome.verdict() {
            self.registry.record_outcome(entry, failed);
        }
        self.telemetry.observe_step(&task.task_type, &report.module_digest, report.duration_micros);
        if let TaskOutcome::Failed { reason, retryable } = &outcome {
            let retry = *retryable && task.retry_count < task.max_retries;
            let (kind, what) = if retry { ("TaskRetry", "will retry") } else { ("TaskFailed", "failed") };
            self.telemetry.count_task_failure(&task.task_type, retry);
            out.notices.push(Notice { reason: kind, message: format!("task {} ({}) {what}: {reason}", task.task_type, task.id) });
        }
        let output = match &report.outcome {
            Ok(StepOutcome::Complete { output }) => Some(output.clone()),
            _ => None,
        };
        Some((outcome, report.module_digest, output))
    }
}

/// Whose plan runs: `who` (`namespace/name`, for logs), its JSON (the modules' input) and the
/// scope its steps run in.
struct Subject<'s> {
    who: &'s str,
    json: &'s str,
    env: &'s RunEnv,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(ms: u32) -> RunReport {
        RunReport {
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
        }
    }

    #[test]
    fn persisted_first_holds_a_teardown_back_only_after_unwritten_steps() {
        let teardowns = ["teardown-bootstrap"];
        for (steps, task_type, waits) in [
            (0, "teardown-bootstrap", false),
            (1, "teardown-bootstrap", true),
            (5, "teardown-bootstrap", true),
            (1, "await-bootstrap-complete", false),
            (0, "config-apply", false),
        ] {
            assert_eq!(persisted_first(steps, task_type, &teardowns), waits, "{steps} steps, then {task_type}");
        }
        assert!(!persisted_first(3, "teardown-bootstrap", &[]), "nothing listed, nothing held back");
    }

    #[test]
    fn only_a_built_in_module_is_asked_as_a_witness() {
        assert!(may_witness(&ModuleSource::BuiltIn { name: "sei-builtin-infra".into() }));
        assert!(!may_witness(&ModuleSource::Directory { path: "/tasks/await.wasm".into() }));
        assert!(!may_witness(&ModuleSource::TaskModule { name: "my-await".into() }));
    }

    #[test]
    fn pending_waits_are_floored() {
        let wait = |ms| match task_outcome(&report(ms)) {
            TaskOutcome::Pending { requeue_after, .. } => requeue_after,
            other => panic!("{other:?}"),
        };
        assert_eq!(wait(0), MIN_REQUEUE);
        assert_eq!(wait(1), MIN_REQUEUE);
        assert_eq!(wait(500), Duration::from_millis(500), "a sub-second wait above the floor is honoured");
        assert_eq!(wait(u32::MAX), MAX_REQUEUE, "and a module asking for weeks waits an hour");
    }

    #[test]
    fn failures_name_the_module_and_digest() {
        let mut r = report(0);
        r.module_digest = "0123456789abcdef".into();
        r.outcome = Err(RunError::Permanent("bad".into()));
        match task_outcome(&r) {
            TaskOutcome::Failed { reason, retryable } => {
                assert_eq!(reason, "permanent error: bad (module m 0123456789ab)");
                assert!(!retryable);
            }
            other => panic!("{other:?}"),
        }
    }
}
