//! What one replica writes into a `TaskModule`'s status after acting on it (pure).
//!
//! Invariants (unit tests below):
//! - `Ready` is True exactly when the spec's digest is active on this replica; `Rejected` is True
//!   with the load's reason and full message when the last attempt failed, while
//!   `activeDigest` still names what keeps serving (`rejection_keeps_the_active_digest`);
//! - a condition's `lastTransitionTime` moves only when its status flips
//!   (`transition_time_moves_only_on_flips`);
//! - messages are escaped and clipped to 4 KiB (`long_messages_are_clipped`);
//! - condition types and reasons are the constants and the `Reason` enum here, nowhere a literal.

use super::resource::ReplicaModuleStatus;
use crate::conditions::condition;
use crate::sandbox::LoadFailure;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The condition types of a replica's entry.
pub const READY: &str = "Ready";
pub const REJECTED: &str = "Rejected";

/// The reason of a replica's conditions: what happened to the spec on this replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `Ready`: the spec's digest serves.
    Active,
    /// `Rejected` False: the last attempt loaded.
    Loaded,
    /// A step of the load pipeline refused the module.
    Load(LoadFailure),
    FetchFailed,
    /// Another TaskModule serves one of the task types.
    Conflict,
    /// Withdrawn after too many of its first runs failed.
    AutoRolledBack,
}

impl Reason {
    /// CamelCase, for conditions, events and the `sei_module_loads_total` result label.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Active => "Active",
            Reason::Loaded => "Loaded",
            Reason::Load(f) => f.as_str(),
            Reason::FetchFailed => "FetchFailed",
            Reason::Conflict => "Conflict",
            Reason::AutoRolledBack => "AutoRolledBack",
        }
    }
}

/// The longest condition message written.
pub const MAX_MESSAGE_BYTES: usize = 4096;

/// The module this TaskModule serves on the replica now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Active {
    pub digest: String,
    pub module: String,
    pub load_time_ms: u64,
    pub compiled: String,
}

/// What the replica did with the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The spec's digest is active.
    Activated,
    /// The spec's module was refused (or withdrawn after it was active).
    Rejected { reason: Reason, message: String },
}

/// The replica's status entry after an attempt.
pub fn replica_status(
    old: Option<&ReplicaModuleStatus>,
    replica: &str,
    generation: Option<i64>,
    active: Option<&Active>,
    previous_digest: Option<&str>,
    attempt: &Attempt,
    now: &Time,
) -> ReplicaModuleStatus {
    let old_conditions = old.map(|o| o.conditions.as_slice()).unwrap_or_default();
    let (ready, rejected) = match attempt {
        Attempt::Activated => (
            condition(
                READY,
                true,
                Reason::Active.as_str(),
                format!("serving digest {}", active.map_or("?", |a| a.digest.as_str())),
                generation,
                now,
                old_conditions,
            ),
            condition(REJECTED, false, Reason::Loaded.as_str(), String::new(), generation, now, old_conditions),
        ),
        Attempt::Rejected { reason, message } => {
            let message = crate::text::safe(message, MAX_MESSAGE_BYTES);
            let serving = match active {
                Some(a) => format!("the previous module {} keeps serving", a.digest),
                None => "its task types stay with the built-in or directory module".into(),
            };
            (
                condition(READY, false, reason.as_str(), format!("not active ({serving})"), generation, now, old_conditions),
                condition(REJECTED, true, reason.as_str(), message, generation, now, old_conditions),
            )
        }
    };
    ReplicaModuleStatus {
        replica: replica.to_string(),
        observed_generation: generation,
        active_digest: active.map(|a| a.digest.clone()),
        previous_digest: previous_digest.map(str::to_string),
        module: active.map(|a| a.module.clone()),
        load_time_ms: active.map(|a| a.load_time_ms),
        compiled: active.map(|a| a.compiled.clone()),
        conditions: vec![ready, rejected],
        updated_at: Some(now.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + s).unwrap())
    }
    fn active(d: &str) -> Active {
        Active { digest: d.into(), module: "m@1".into(), load_time_ms: 3, compiled: "cache".into() }
    }
    fn cond<'a>(s: &'a ReplicaModuleStatus, type_: &str) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        s.conditions.iter().find(|c| c.type_ == type_).unwrap()
    }

    #[test]
    fn rejection_keeps_the_active_digest() {
        let ok = replica_status(None, "r0", Some(1), Some(&active("aaa")), None, &Attempt::Activated, &t(0));
        assert_eq!(cond(&ok, "Ready").status, "True");
        assert_eq!(cond(&ok, "Rejected").status, "False");
        assert_eq!(ok.active_digest.as_deref(), Some("aaa"));
        let attempt = Attempt::Rejected {
            reason: Reason::Load(LoadFailure::DigestMismatch),
            message: "module bytes have sha256 bbb, but ccc was pinned".into(),
        };
        let bad = replica_status(Some(&ok), "r0", Some(2), Some(&active("aaa")), None, &attempt, &t(5));
        assert_eq!(cond(&bad, "Ready").status, "False");
        assert_eq!(cond(&bad, "Ready").reason, "DigestMismatch");
        assert!(cond(&bad, "Ready").message.contains("the previous module aaa keeps serving"));
        assert_eq!(cond(&bad, "Rejected").status, "True");
        assert_eq!(cond(&bad, "Rejected").message, "module bytes have sha256 bbb, but ccc was pinned");
        assert_eq!(bad.active_digest.as_deref(), Some("aaa"));
        assert_eq!(bad.observed_generation, Some(2));
    }

    #[test]
    fn transition_time_moves_only_on_flips() {
        let a = replica_status(None, "r0", Some(1), Some(&active("aaa")), None, &Attempt::Activated, &t(0));
        let b = replica_status(Some(&a), "r0", Some(2), Some(&active("bbb")), Some("aaa"), &Attempt::Activated, &t(10));
        assert_eq!(cond(&b, "Ready").last_transition_time, t(0));
        assert_eq!(b.previous_digest.as_deref(), Some("aaa"));
        let c = replica_status(
            Some(&b),
            "r0",
            Some(3),
            None,
            None,
            &Attempt::Rejected { reason: Reason::FetchFailed, message: "y".into() },
            &t(20),
        );
        assert_eq!(cond(&c, "Ready").last_transition_time, t(20));
        assert_eq!(cond(&c, "Rejected").last_transition_time, t(20));
        assert!(cond(&c, "Ready").message.contains("built-in or directory module"));
    }

    #[test]
    fn long_messages_are_clipped() {
        let attempt = Attempt::Rejected { reason: Reason::Load(LoadFailure::CompileFailed), message: "x".repeat(10_000) };
        let s = replica_status(None, "r0", None, None, None, &attempt, &t(0));
        assert!(cond(&s, "Rejected").message.len() <= MAX_MESSAGE_BYTES + 64);
    }
}
