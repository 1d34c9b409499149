//! Counters of the sandbox: steps by task type, denied host calls by module and reason, dropped
//! log bytes. One short lock per step (the per-type step map); denied calls take another lock
//! only on that (rare) path. Exported to Prometheus by the controller.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

#[derive(Debug, Default)]
pub struct SandboxMetrics {
    pub dropped_log_bytes: AtomicU64,
    denied: Mutex<BTreeMap<(String, &'static str), u64>>,
    steps: Mutex<BTreeMap<String, u64>>,
}

impl SandboxMetrics {
    /// Count one denied host call of `module_digest` for `reason` (`capability`, `namespace`,
    /// `kind`, `name`).
    pub fn denied(&self, module_digest: &str, reason: &'static str) {
        let mut map = self.denied.lock().unwrap_or_else(|p| p.into_inner());
        *map.entry((module_digest.to_string(), reason)).or_default() += 1;
    }

    /// Denied calls so far, by (module digest, reason).
    pub fn denied_counts(&self) -> BTreeMap<(String, &'static str), u64> {
        self.denied.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Total denied calls.
    pub fn denied_total(&self) -> u64 {
        self.denied_counts().values().sum()
    }

    /// Count one step of a task type.
    pub fn record_step(&self, task_type: &str) {
        *self.steps.lock().unwrap_or_else(|p| p.into_inner()).entry(task_type.to_string()).or_default() += 1;
    }

    /// Steps run so far for a task type.
    pub fn steps_of(&self, task_type: &str) -> u64 {
        self.steps.lock().unwrap_or_else(|p| p.into_inner()).get(task_type).copied().unwrap_or(0)
    }
}
