//! When each waiting node may run its next step, in this process (by node uid). A reconcile woken
//! before that time (by the controller's own status write, or any watch event) returns at once,
//! without reading the API server or running a step. `status.plan.tasks[].notBefore` is written
//! with a step that changes something else; a poll that changes nothing but the time of the next
//! one is not written (`reconcile::only_waits_changed`), so after a restart such a task is polled
//! at once (a poll may come early). The map holds only nodes that are waiting: an entry is dropped
//! when it comes due or its node is gone (`step_clock_holds_back_early_wakes`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct StepClock {
    next: Mutex<HashMap<String, Instant>>,
}

impl StepClock {
    /// How long `node` must still wait; `None` (and the entry dropped) once it may step.
    pub fn wait(&self, node: &str, now: Instant) -> Option<Duration> {
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
    pub fn hold(&self, node: &str, at: Instant) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_clock_holds_back_early_wakes() {
        let clock = StepClock::default();
        let t0 = Instant::now();
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
}
