//! What the TaskModule loader does, decided apart from doing it (as linkerd2's policy controller
//! keeps its index apart from its writer): pure functions from what this replica knows of a
//! TaskModule, the TaskModule as the watch delivered it, and what triggered the look, to the
//! action to take (`decide`), and from a load's result to the next state, the status entry and
//! the effects to carry out (`settle`). The loop in `loader.rs` only performs them.
//!
//! Invariants (table tests below):
//! - the loader acts once per spec generation: its own status write, a metadata change or a late
//!   retry timer loads nothing (`decide_table`);
//! - a generation that any replica rolled back is withdrawn here too and never loaded until the
//!   spec changes (`decide_table`: `rolled back elsewhere`);
//! - a failure that may heal schedules a retry with a back-off doubling from 2 s to 5 min; any
//!   other failure waits for a new spec (`settle_table`);
//! - the status entry is written back when someone removed or changed it (`decide_table`).

use super::resource::{ReplicaModuleStatus, TaskModule};
use super::status::{Active, Attempt, REJECTED, Reason, replica_status};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use std::time::Duration;

/// What this replica made of one TaskModule so far.
#[derive(Debug, Clone)]
pub struct Known<E = ()> {
    pub generation: Option<i64>,
    /// Loaded, or refused for a reason that only a new spec can fix.
    pub settled: bool,
    /// Consecutive retries of a failure that may heal.
    pub retries: u32,
    /// The one retry timer that counts: a timer firing with another token is stale.
    pub pending_retry: Option<u64>,
    pub previous_digest: Option<String>,
    /// The status entry last written.
    pub status: Option<ReplicaModuleStatus>,
    /// The registry entry the current generation loaded (a handle the loader compares).
    pub entry: Option<E>,
}

impl<E> Default for Known<E> {
    fn default() -> Self {
        Self { generation: None, settled: false, retries: 0, pending_retry: None, previous_digest: None, status: None, entry: None }
    }
}

/// Why the loader looks at a TaskModule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// The watch delivered it (created, changed, listed again, or our own status write).
    Watch,
    /// A retry timer fired with this token.
    Retry(u64),
}

/// What to do about a TaskModule.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing (a stale retry timer).
    Ignore,
    /// The spec was acted on already; write our status entry back if it is gone or differs.
    Keep { rewrite: Option<ReplicaModuleStatus> },
    /// A replica rolled this generation back: withdraw it here too, report it, load nothing.
    AdoptRollback { by: String },
    /// Run the load pipeline for this generation.
    Load,
}

/// Why a load failed, and whether a retry may help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub message: String,
    pub retry: bool,
}

/// An effect of settling a load, carried out by the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// `sei_module_loads_total{source="TaskModule", result}`.
    Count(&'static str),
    /// An Event on the TaskModule.
    Event { warning: bool, reason: EventReason, note: String },
    /// Look again after this long (a retry timer).
    RetryAfter(Duration),
}

/// The reasons of the Events the loader publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventReason {
    ModuleActivated,
    ModuleRejected,
    ModuleRolledBack,
}

impl EventReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::ModuleActivated => "ModuleActivated",
            EventReason::ModuleRejected => "ModuleRejected",
            EventReason::ModuleRolledBack => "ModuleRolledBack",
        }
    }
}

/// Backoff of retried loads: 2 s doubling to 5 min.
pub fn retry_delay(retries: u32) -> Duration {
    Duration::from_secs(2u64.saturating_mul(1 << retries.min(8)).min(300))
}

/// Whether the entry's `Rejected` condition is True for `reason`.
pub fn rejected_for(status: &ReplicaModuleStatus, reason: Reason) -> bool {
    status.conditions.iter().any(|c| c.type_ == REJECTED && c.status == "True" && c.reason == reason.as_str())
}

/// The replica whose status reports this generation of the spec as automatically rolled back.
pub fn rolled_back_by(tm: &TaskModule) -> Option<String> {
    tm.status
        .as_ref()?
        .replicas
        .iter()
        .find(|r| r.observed_generation == tm.metadata.generation && rejected_for(r, Reason::AutoRolledBack))
        .map(|r| r.replica.clone())
}

/// Whether two status entries say the same (timestamps aside: they do not round-trip exactly).
pub fn same_report(a: &ReplicaModuleStatus, b: &ReplicaModuleStatus) -> bool {
    let conditions = |s: &ReplicaModuleStatus| {
        s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone())).collect::<Vec<_>>()
    };
    a.observed_generation == b.observed_generation
        && a.active_digest == b.active_digest
        && a.previous_digest == b.previous_digest
        && conditions(a) == conditions(b)
}

/// What to do about `tm` on replica `replica`, given what this replica knows of it (`None`:
/// nothing yet) and what triggered the look.
pub fn decide<E>(known: Option<&Known<E>>, tm: &TaskModule, trigger: Trigger, replica: &str) -> Decision {
    if let Trigger::Retry(token) = trigger
        && known.and_then(|k| k.pending_retry) != Some(token)
    {
        return Decision::Ignore;
    }
    let same_spec = known.is_some_and(|k| k.generation == tm.metadata.generation);
    let settled_rolled_back = same_spec && known.and_then(|k| k.status.as_ref()).is_some_and(|s| rejected_for(s, Reason::AutoRolledBack));
    if let Some(by) = rolled_back_by(tm)
        && !settled_rolled_back
    {
        return Decision::AdoptRollback { by };
    }
    let settled = known.is_some_and(|k| k.settled);
    if same_spec && (settled || trigger == Trigger::Watch) {
        // Our own status write, or a metadata change: nothing to load. Put our entry back if
        // someone removed or changed it.
        let ours = tm.status.as_ref().and_then(|s| s.replicas.iter().find(|r| r.replica == replica));
        let rewrite = known.and_then(|k| k.status.clone()).filter(|mine| ours.is_none_or(|o| !same_report(o, mine)));
        return Decision::Keep { rewrite };
    }
    Decision::Load
}

/// The outcome of the load pipeline, as `settle` needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    pub result: Result<(), Rejection>,
    /// The digest that served the first task type before the load.
    pub serving_before: Option<String>,
    /// What this TaskModule serves now (after a failure: what kept serving).
    pub active: Option<Active>,
}

/// After a load of `tm`: the next state (its registry handle is set by the loop), the status
/// entry to write, and the effects to carry out.
pub fn settle<E: Clone>(
    known: Option<&Known<E>>,
    tm: &TaskModule,
    loaded: &Loaded,
    replica: &str,
    now: &Time,
) -> (Known<E>, ReplicaModuleStatus, Vec<Effect>) {
    let mut next: Known<E> = known.cloned().unwrap_or_default();
    next.generation = tm.metadata.generation;
    next.pending_retry = None;
    next.entry = None;
    let mut effects = Vec::new();
    let attempt = match &loaded.result {
        Ok(()) => {
            next.settled = true;
            next.retries = 0;
            if loaded.serving_before.as_deref() != loaded.active.as_ref().map(|a| a.digest.as_str()) {
                next.previous_digest = loaded.serving_before.clone();
            }
            effects.push(Effect::Count(Reason::Active.as_str()));
            let note = format!(
                "serving {} with digest {} (was {})",
                tm.spec.task_types.join(", "),
                tm.spec.sha256,
                next.previous_digest.as_deref().unwrap_or("none")
            );
            effects.push(Effect::Event { warning: false, reason: EventReason::ModuleActivated, note });
            Attempt::Activated
        }
        Err(rejection) => {
            next.settled = !rejection.retry;
            effects.push(Effect::Count(rejection.reason.as_str()));
            let note = format!("{}: {}", rejection.reason.as_str(), rejection.message);
            effects.push(Effect::Event { warning: true, reason: EventReason::ModuleRejected, note });
            if rejection.retry {
                effects.push(Effect::RetryAfter(retry_delay(next.retries)));
                next.retries += 1;
            }
            Attempt::Rejected { reason: rejection.reason, message: rejection.message.clone() }
        }
    };
    let status = replica_status(
        known.and_then(|k| k.status.as_ref()),
        replica,
        tm.metadata.generation,
        loaded.active.as_ref(),
        next.previous_digest.as_deref(),
        &attempt,
        now,
    );
    next.status = Some(status.clone());
    (next, status, effects)
}

/// This generation of `tm` is rolled back (here or by `by`): the next state, settled until the
/// spec changes, and its status entry.
pub fn settle_rolled_back<E: Clone>(
    known: Option<&Known<E>>,
    tm: &TaskModule,
    active: Option<&Active>,
    message: String,
    replica: &str,
    now: &Time,
) -> (Known<E>, ReplicaModuleStatus) {
    let mut next: Known<E> = known.cloned().unwrap_or_default();
    next.generation = tm.metadata.generation;
    next.settled = true;
    next.pending_retry = None;
    next.entry = None;
    let attempt = Attempt::Rejected { reason: Reason::AutoRolledBack, message };
    let status = replica_status(
        known.and_then(|k| k.status.as_ref()),
        replica,
        tm.metadata.generation,
        active,
        Some(&tm.spec.sha256),
        &attempt,
        now,
    );
    next.status = Some(status.clone());
    (next, status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::LoadFailure;
    use crate::taskmodule::resource::TaskModuleStatus;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    fn tm(generation: i64) -> TaskModule {
        let mut tm = TaskModule::new("m", Default::default());
        tm.metadata.generation = Some(generation);
        tm.spec.task_types = vec!["apply-statefulset".into()];
        tm.spec.sha256 = "a".repeat(64);
        tm
    }

    fn entry(replica: &str, reason: Reason, generation: i64) -> ReplicaModuleStatus {
        let attempt = match reason {
            Reason::Active => Attempt::Activated,
            r => Attempt::Rejected { reason: r, message: "m".into() },
        };
        replica_status(None, replica, Some(generation), None, None, &attempt, &now())
    }

    fn known(generation: i64, settled: bool, pending_retry: Option<u64>, status: Option<ReplicaModuleStatus>) -> Known {
        Known { generation: Some(generation), settled, pending_retry, status, ..Default::default() }
    }

    fn with_status(mut t: TaskModule, replicas: Vec<ReplicaModuleStatus>) -> TaskModule {
        t.status = Some(TaskModuleStatus { replicas });
        t
    }

    #[test]
    fn decide_table() {
        let mine = entry("r0", Reason::Active, 1);
        let rolled = entry("r1", Reason::AutoRolledBack, 1);
        let cases: Vec<(&str, Option<Known>, TaskModule, Trigger, Decision)> = vec![
            ("new TaskModule", None, tm(1), Trigger::Watch, Decision::Load),
            ("new generation", Some(known(1, true, None, Some(mine.clone()))), tm(2), Trigger::Watch, Decision::Load),
            (
                "our own status write",
                Some(known(1, true, None, Some(mine.clone()))),
                with_status(tm(1), vec![mine.clone()]),
                Trigger::Watch,
                Decision::Keep { rewrite: None },
            ),
            (
                "our entry was removed",
                Some(known(1, true, None, Some(mine.clone()))),
                tm(1),
                Trigger::Watch,
                Decision::Keep { rewrite: Some(mine.clone()) },
            ),
            ("unsettled, watch event", Some(known(1, false, Some(7), None)), tm(1), Trigger::Watch, Decision::Keep { rewrite: None }),
            ("unsettled, its retry", Some(known(1, false, Some(7), None)), tm(1), Trigger::Retry(7), Decision::Load),
            ("stale retry token", Some(known(1, false, Some(7), None)), tm(1), Trigger::Retry(6), Decision::Ignore),
            ("retry after a new spec loaded", Some(known(2, true, None, None)), tm(2), Trigger::Retry(7), Decision::Ignore),
            (
                "rolled back elsewhere",
                Some(known(1, true, None, Some(mine.clone()))),
                with_status(tm(1), vec![mine.clone(), rolled.clone()]),
                Trigger::Watch,
                Decision::AdoptRollback { by: "r1".into() },
            ),
            (
                "rolled back, already settled here",
                Some(known(1, true, None, Some(entry("r0", Reason::AutoRolledBack, 1)))),
                with_status(tm(1), vec![entry("r0", Reason::AutoRolledBack, 1), rolled.clone()]),
                Trigger::Watch,
                Decision::Keep { rewrite: None },
            ),
            (
                "a rollback of an older generation does not hold the new spec back",
                Some(known(1, true, None, Some(rolled.clone()))),
                with_status(tm(2), vec![rolled.clone()]),
                Trigger::Watch,
                Decision::Load,
            ),
            (
                "restarted replica, rolled back elsewhere",
                None,
                with_status(tm(1), vec![rolled]),
                Trigger::Watch,
                Decision::AdoptRollback { by: "r1".into() },
            ),
        ];
        for (what, known, tm, trigger, want) in cases {
            assert_eq!(decide(known.as_ref(), &tm, trigger, "r0"), want, "{what}");
        }
    }

    fn active(d: &str) -> Active {
        Active { digest: d.into(), module: "m@1".into(), load_time_ms: 3, compiled: "Loaded".into() }
    }

    #[test]
    fn settle_table() {
        let ok = Loaded { result: Ok(()), serving_before: Some("builtin".into()), active: Some(active(&"a".repeat(64))) };
        let (next, status, effects) = settle::<()>(None, &tm(1), &ok, "r0", &now());
        assert!(next.settled && next.retries == 0 && next.pending_retry.is_none());
        assert_eq!(next.previous_digest.as_deref(), Some("builtin"));
        assert_eq!(status.active_digest.as_deref(), Some("a".repeat(64).as_str()));
        assert_eq!(effects[0], Effect::Count("Active"));
        assert!(
            matches!(&effects[1], Effect::Event { warning: false, reason: EventReason::ModuleActivated, note } if note.contains("(was builtin)"))
        );
        assert_eq!(effects.len(), 2, "no retry");

        let heal = |retries| {
            let k = Known { retries, ..known(1, false, None, None) };
            let loaded = Loaded {
                result: Err(Rejection { reason: Reason::FetchFailed, message: "503".into(), retry: true }),
                serving_before: None,
                active: None,
            };
            settle(Some(&k), &tm(1), &loaded, "r0", &now())
        };
        let (next, status, effects) = heal(0);
        assert!(!next.settled, "a failure that may heal is not settled");
        assert_eq!(next.retries, 1);
        assert!(rejected_for(&status, Reason::FetchFailed));
        assert_eq!(effects.last(), Some(&Effect::RetryAfter(Duration::from_secs(2))));
        assert_eq!(heal(3).2.last(), Some(&Effect::RetryAfter(Duration::from_secs(16))), "the back-off doubles");
        assert_eq!(heal(20).2.last(), Some(&Effect::RetryAfter(Duration::from_secs(300))), "up to five minutes");

        let final_failure = Loaded {
            result: Err(Rejection { reason: Reason::Load(LoadFailure::CompileFailed), message: "bad".into(), retry: false }),
            serving_before: Some("x".into()),
            active: Some(active("x")),
        };
        let (next, status, effects) = settle::<()>(None, &tm(1), &final_failure, "r0", &now());
        assert!(next.settled, "waits for a new spec");
        assert!(!effects.iter().any(|e| matches!(e, Effect::RetryAfter(_))));
        assert_eq!(effects[0], Effect::Count("CompileFailed"));
        assert_eq!(status.active_digest.as_deref(), Some("x"), "what kept serving");
    }

    #[test]
    fn rolled_back_generation_is_settled_until_the_spec_changes() {
        let (next, status) = settle_rolled_back::<()>(None, &tm(3), None, "rolled back by r1".into(), "r0", &now());
        assert!(next.settled);
        assert!(rejected_for(&status, Reason::AutoRolledBack));
        assert_eq!(status.previous_digest.as_deref(), Some("a".repeat(64).as_str()));
        assert_eq!(decide(Some(&next), &with_status(tm(3), vec![status]), Trigger::Watch, "r0"), Decision::Keep { rewrite: None });
    }

    #[test]
    fn rollback_is_read_from_any_replica_for_the_current_generation() {
        let mut tm = TaskModule::new("m", Default::default());
        tm.metadata.generation = Some(3);
        assert_eq!(rolled_back_by(&tm), None);
        tm.status = Some(TaskModuleStatus {
            replicas: vec![entry("a", Reason::Load(LoadFailure::CompileFailed), 3), entry("b", Reason::AutoRolledBack, 2)],
        });
        assert_eq!(rolled_back_by(&tm), None, "a rollback of an older generation does not hold the new spec back");
        tm.status.as_mut().unwrap().replicas.push(entry("c", Reason::AutoRolledBack, 3));
        assert_eq!(rolled_back_by(&tm).as_deref(), Some("c"));
    }

    #[test]
    fn reports_compare_without_timestamps() {
        let a = entry("a", Reason::FetchFailed, 1);
        let mut b = a.clone();
        b.updated_at = None;
        b.conditions[0].last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        assert!(same_report(&a, &b));
        b.conditions[1].reason = "Y".into();
        assert!(!same_report(&a, &b));
    }

    #[test]
    fn retry_backoff_doubles_to_five_minutes() {
        assert_eq!(retry_delay(0), Duration::from_secs(2));
        assert_eq!(retry_delay(1), Duration::from_secs(4));
        assert_eq!(retry_delay(7), Duration::from_secs(256));
        assert_eq!(retry_delay(8), Duration::from_secs(300));
        assert_eq!(retry_delay(100), Duration::from_secs(300));
    }
}
