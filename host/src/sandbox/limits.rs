//! Limits of one task step, and the policy that picks them per task type.
//!
//! Precedence for the deadline of a step: the module's registration (`TaskModule`
//! `spec.limits`), else a per-task-type override in the controller's configuration, else the
//! module's declared `default-timeout-ms`, else the global default of 30 s; what a module or
//! its registration asks for is capped at `max_deadline` (`deadline_precedence` test). Memory: the
//! registration, else the per-task-type override, else the default (`memory_override_and_pool_slot`).

use super::module::ModuleLimits;
use std::collections::HashMap;
use std::time::Duration;

/// The caps applied to one run of one step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLimits {
    /// Wall-clock deadline of the step (epoch interruption, 10 ms resolution).
    pub deadline: Duration,
    /// Cap on the module's linear memory.
    pub memory_bytes: usize,
    /// Fuel budget of one step; fuel consumed is always measured and reported.
    pub fuel: u64,
    /// Cap on the `complete` output (JSON bytes).
    pub max_output_bytes: usize,
    /// Cap on the `pending` checkpoint (bytes); it is persisted in the SeiNode status.
    pub max_checkpoint_bytes: usize,
    /// A longer log line is truncated.
    pub max_log_line_bytes: usize,
    /// Log bytes kept per step; the excess is dropped and counted.
    pub max_log_bytes_per_step: usize,
    /// Host calls recorded in the run report (all calls are still checked and executed).
    pub max_recorded_host_calls: usize,
}

pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;

impl Default for RunLimits {
    fn default() -> Self {
        Self {
            deadline: DEFAULT_DEADLINE,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            fuel: 50_000_000_000,
            max_output_bytes: 256 << 10,
            max_checkpoint_bytes: 64 << 10,
            max_log_line_bytes: 4 << 10,
            max_log_bytes_per_step: 64 << 10,
            max_recorded_host_calls: 256,
        }
    }
}

/// Per-task-type limits configured by the operator of the controller.
#[derive(Debug, Clone, Default)]
pub struct LimitsPolicy {
    pub defaults: RunLimits,
    /// The longest deadline a module may declare for itself.
    pub max_deadline: Option<Duration>,
    pub deadline_by_task_type: HashMap<String, Duration>,
    pub memory_by_task_type: HashMap<String, usize>,
}

impl LimitsPolicy {
    /// The limits of one step of `task_type` run by a module that declared
    /// `module_timeout_ms` (0: no preference).
    pub fn limits_for(&self, task_type: &str, module_timeout_ms: u32, registered: &ModuleLimits) -> RunLimits {
        let mut limits = self.defaults.clone();
        let max = self.max_deadline.unwrap_or(Duration::from_secs(300));
        limits.deadline = match (registered.deadline, self.deadline_by_task_type.get(task_type)) {
            (Some(d), _) => d.min(max),
            (None, Some(d)) => *d,
            (None, None) if module_timeout_ms > 0 => Duration::from_millis(module_timeout_ms.into()).min(max),
            (None, None) => self.defaults.deadline,
        };
        if let Some(m) = registered.memory_bytes.or_else(|| self.memory_by_task_type.get(task_type).copied()) {
            limits.memory_bytes = m;
        }
        limits
    }

    /// The largest memory cap any task type may get: the pooling allocator's slot size.
    pub fn max_memory_bytes(&self) -> usize {
        self.memory_by_task_type.values().copied().chain([self.defaults.memory_bytes]).max().unwrap_or(DEFAULT_MEMORY_BYTES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_precedence() {
        let mut p = LimitsPolicy::default();
        assert_eq!(p.limits_for("x", 0, &none()).deadline, DEFAULT_DEADLINE);
        assert_eq!(p.limits_for("x", 5_000, &none()).deadline, Duration::from_secs(5));
        assert_eq!(p.limits_for("x", 10_000_000, &none()).deadline, Duration::from_secs(300), "module default is capped");
        p.deadline_by_task_type.insert("x".into(), Duration::from_secs(2));
        assert_eq!(p.limits_for("x", 5_000, &none()).deadline, Duration::from_secs(2), "configuration wins");
        assert_eq!(p.limits_for("y", 0, &none()).deadline, DEFAULT_DEADLINE);
        let registered = ModuleLimits { deadline: Some(Duration::from_secs(7)), memory_bytes: None };
        assert_eq!(p.limits_for("x", 5_000, &registered).deadline, Duration::from_secs(7), "the registration wins");
        let long = ModuleLimits { deadline: Some(Duration::from_secs(10_000)), memory_bytes: None };
        assert_eq!(p.limits_for("x", 0, &long).deadline, Duration::from_secs(300), "and is capped");
    }

    fn none() -> ModuleLimits {
        ModuleLimits::default()
    }

    #[test]
    fn memory_override_and_pool_slot() {
        let mut p = LimitsPolicy::default();
        p.memory_by_task_type.insert("big".into(), 128 << 20);
        assert_eq!(p.limits_for("big", 0, &none()).memory_bytes, 128 << 20);
        assert_eq!(p.limits_for("small", 0, &none()).memory_bytes, DEFAULT_MEMORY_BYTES);
        assert_eq!(p.max_memory_bytes(), 128 << 20);
        let registered = ModuleLimits { deadline: None, memory_bytes: Some(16 << 20) };
        assert_eq!(p.limits_for("big", 0, &registered).memory_bytes, 16 << 20);
    }
}
