//! Counters of the sandbox: steps by task type, denied host calls by module and reason, host
//! calls the API server refused by module, dropped log bytes and lines, host and log calls by
//! module, exhausted per-step budgets by module. One short lock per step (the per-type step map);
//! denied and refused calls take another lock only on that (rare) path. Exported to Prometheus by
//! the controller.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

/// At most one log line per module for the API server's refusals in this interval.
pub const API_REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, Default)]
pub struct SandboxMetrics {
    pub dropped_log_bytes: AtomicU64,
    pub dropped_log_lines: AtomicU64,
    denied: Mutex<BTreeMap<(String, &'static str), u64>>,
    steps: Mutex<BTreeMap<String, u64>>,
    /// (module digest) → (host calls, log calls).
    calls: Mutex<BTreeMap<String, (u64, u64)>>,
    budgets: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// (module digest) → host calls the API server refused (401/403), and when one was last logged.
    api_refused: Mutex<BTreeMap<String, (u64, Option<Instant>)>>,
}

impl SandboxMetrics {
    /// Count the host and log calls one step of `module_digest` made.
    pub fn record_calls(&self, module_digest: &str, host_calls: u32, log_calls: u32) {
        let mut map = self.calls.lock().unwrap_or_else(|p| p.into_inner());
        let e = map.entry(module_digest.to_string()).or_default();
        e.0 += u64::from(host_calls);
        e.1 += u64::from(log_calls);
    }

    /// Host and log calls so far, by module digest.
    pub fn call_counts(&self) -> BTreeMap<String, (u64, u64)> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Count a step of `module_digest` stopped by a per-step budget.
    pub fn budget_exceeded(&self, module_digest: &str, budget: super::limits::Budget) {
        *self.budgets.lock().unwrap_or_else(|p| p.into_inner()).entry((module_digest.to_string(), budget.as_str())).or_default() += 1;
    }

    /// Steps stopped by a budget so far, by (module digest, budget).
    pub fn budget_counts(&self) -> BTreeMap<(String, &'static str), u64> {
        self.budgets.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Count one host call of `module_digest` that the guard allowed and the API server refused;
    /// `Some(total)` when it is to be logged: the first, then at most one per module and
    /// `API_REFUSAL_LOG_INTERVAL` (a lasting RBAC gap refuses every waiting node's step every poll;
    /// `api_refusals_are_logged_once_a_minute`).
    pub fn api_refused(&self, module_digest: &str, now: Instant) -> Option<u64> {
        let mut map = self.api_refused.lock().unwrap_or_else(|p| p.into_inner());
        let (count, logged) = map.entry(module_digest.to_string()).or_default();
        *count += 1;
        let due = logged.is_none_or(|at| now.saturating_duration_since(at) >= API_REFUSAL_LOG_INTERVAL);
        due.then(|| {
            *logged = Some(now);
            *count
        })
    }

    /// Host calls the API server refused so far, by module digest.
    pub fn api_refused_counts(&self) -> BTreeMap<String, u64> {
        self.api_refused.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(d, (n, _))| (d.clone(), *n)).collect()
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_refusals_are_logged_once_a_minute() {
        let m = SandboxMetrics::default();
        let t0 = Instant::now();
        assert_eq!(m.api_refused("a", t0), Some(1), "the first is logged");
        assert_eq!(m.api_refused("a", t0 + Duration::from_secs(5)), None);
        assert_eq!(m.api_refused("b", t0 + Duration::from_secs(5)), Some(1), "per module");
        assert_eq!(m.api_refused("a", t0 + Duration::from_secs(59)), None);
        assert_eq!(m.api_refused("a", t0 + Duration::from_secs(60)), Some(4), "a minute later, with the total");
        assert_eq!(m.api_refused_counts(), BTreeMap::from([("a".to_string(), 4), ("b".to_string(), 1)]), "every one counted");
    }
}
