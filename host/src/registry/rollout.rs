//! Automatic rollback: the first runs of a new module are watched, and when its failures over
//! that window cross the threshold its entry is withdrawn (the previous module serves again).
//!
//! Invariants (unit tests below):
//! - the verdict is `RollBack` as soon as the failures exceed the allowed share of the window,
//!   without waiting for the window to fill (`rolls_back_once_the_threshold_is_certain`);
//! - after a full window under the threshold the verdict is `Passed` and later failures do not
//!   count (`passes_after_a_clean_window`);
//! - the tracker reports `RollBack` exactly once, even under concurrent runs
//!   (`tracker_reports_rollback_once`).

use super::{ModuleEntry, ModuleSource};
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};

/// An automatic rollback the registry carried out (its entry is already withdrawn), for the
/// TaskModule loader to report on the TaskModule.
#[derive(Debug)]
pub struct AutoRollbackNotice<M> {
    pub source: ModuleSource,
    /// The entry that was withdrawn: a notice about an entry the loader has since replaced is stale.
    pub entry: std::sync::Weak<ModuleEntry<M>>,
    pub runs: u32,
    pub failures: u32,
    pub policy: AutoRollbackPolicy,
}

/// `rollout.autoRollback` of a `TaskModule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoRollbackPolicy {
    /// How many first runs (task steps) are watched.
    pub window: u32,
    /// The largest share of failed runs in the window, in percent, that is still acceptable.
    pub max_failure_percent: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Watching,
    Passed,
    RollBack { runs: u32, failures: u32 },
}

/// The verdict after `runs` watched runs of which `failures` failed.
pub fn judge(policy: AutoRollbackPolicy, runs: u32, failures: u32) -> Verdict {
    let allowed = u64::from(policy.window) * u64::from(policy.max_failure_percent.min(100)) / 100;
    if u64::from(failures) > allowed {
        Verdict::RollBack { runs, failures }
    } else if runs >= policy.window {
        Verdict::Passed
    } else {
        Verdict::Watching
    }
}

const WATCHING: u8 = 0;
const PASSED: u8 = 1;
const ROLLED_BACK: u8 = 2;

/// Counts the runs of one module entry.
#[derive(Debug)]
pub struct RolloutTracker {
    pub policy: AutoRollbackPolicy,
    runs: AtomicU32,
    failures: AtomicU32,
    state: AtomicU8,
}

impl RolloutTracker {
    pub fn new(policy: AutoRollbackPolicy) -> Self {
        Self { policy, runs: AtomicU32::new(0), failures: AtomicU32::new(0), state: AtomicU8::new(WATCHING) }
    }

    /// Record one run. Returns `Some(RollBack)` once: to the caller whose run crossed the
    /// threshold.
    pub fn record(&self, failed: bool) -> Option<Verdict> {
        if self.state.load(Ordering::Acquire) != WATCHING {
            return None;
        }
        let runs = self.runs.fetch_add(1, Ordering::AcqRel) + 1;
        let failures = if failed { self.failures.fetch_add(1, Ordering::AcqRel) + 1 } else { self.failures.load(Ordering::Acquire) };
        match judge(self.policy, runs, failures) {
            Verdict::Watching => None,
            Verdict::Passed => {
                let _ = self.state.compare_exchange(WATCHING, PASSED, Ordering::AcqRel, Ordering::Acquire);
                None
            }
            v @ Verdict::RollBack { .. } => {
                self.state.compare_exchange(WATCHING, ROLLED_BACK, Ordering::AcqRel, Ordering::Acquire).is_ok().then_some(v)
            }
        }
    }

    /// (runs, failures) counted so far.
    pub fn counts(&self) -> (u32, u32) {
        (self.runs.load(Ordering::Acquire), self.failures.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: AutoRollbackPolicy = AutoRollbackPolicy { window: 10, max_failure_percent: 30 };

    #[test]
    fn rolls_back_once_the_threshold_is_certain() {
        assert_eq!(judge(P, 3, 3), Verdict::Watching, "3 of 10 is exactly the allowed share");
        assert_eq!(judge(P, 4, 4), Verdict::RollBack { runs: 4, failures: 4 });
        assert_eq!(judge(AutoRollbackPolicy { window: 5, max_failure_percent: 0 }, 1, 1), Verdict::RollBack { runs: 1, failures: 1 });
    }

    #[test]
    fn passes_after_a_clean_window() {
        let t = RolloutTracker::new(P);
        for i in 0..10 {
            assert_eq!(t.record(i < 3), None);
        }
        for _ in 0..10 {
            assert_eq!(t.record(true), None, "failures after the window do not count");
        }
        assert_eq!(t.counts(), (10, 3));
    }

    #[test]
    fn tracker_reports_rollback_once() {
        let t = std::sync::Arc::new(RolloutTracker::new(AutoRollbackPolicy { window: 100, max_failure_percent: 10 }));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let t = t.clone();
                std::thread::spawn(move || (0..50).filter(|_| t.record(true).is_some()).count())
            })
            .collect();
        let reported: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(reported, 1);
    }
}
