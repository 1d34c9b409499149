//! Limits of one task step, and the policy that picks them per task type.
//!
//! Precedence for the deadline of a step: the module's registration (`TaskModule`
//! `spec.limits`), else a per-task-type override in the controller's configuration, else the
//! module's declared `default-timeout-ms`, else the global default of 30 s; what a module or
//! its registration asks for is capped at `max_deadline` (`deadline_precedence` test). Memory: the
//! registration, else the per-task-type override, else the default (`memory_override_and_pool_slot`).
//! Host-call and log-call budgets: the registration, else the per-task-type override, else the
//! default, always capped by the hard ceilings below (`call_budgets_precedence_and_ceiling`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The caps applied to one run of one step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunLimits {
    /// Wall-clock deadline of the step (epoch interruption, 10 ms resolution).
    #[serde(serialize_with = "millis", rename = "deadlineMs")]
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
    /// Kubernetes and sidecar calls one step may make (every API request counts: a `list` of
    /// several pages counts each page). The call past it traps the step with a budget error.
    pub max_host_calls: u32,
    /// `log` calls one step may make; the call past it traps the step with a budget error.
    pub max_log_calls: u32,
    /// Log lines kept (and written to the controller's log) per step; the rest are counted.
    pub max_log_lines: usize,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(30);
pub const DEFAULT_MEMORY_BYTES: usize = 64 << 20;
/// The built-in tasks make at most a handful of calls a step; 64 leaves room for custom ones.
pub const DEFAULT_MAX_HOST_CALLS: u32 = 64;
pub const DEFAULT_MAX_LOG_CALLS: u32 = 10_000;
/// No configuration or registration can raise the budgets past these.
pub const MAX_HOST_CALLS_CEILING: u32 = 1_000;
pub const MAX_LOG_CALLS_CEILING: u32 = 100_000;

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
            max_host_calls: DEFAULT_MAX_HOST_CALLS,
            max_log_calls: DEFAULT_MAX_LOG_CALLS,
            max_log_lines: 256,
        }
    }
}

/// Per-module limits (a `TaskModule`'s `spec.limits`); `None` keeps the controller's policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModuleLimits {
    pub deadline: Option<Duration>,
    pub memory_bytes: Option<usize>,
    /// Kubernetes and sidecar calls per step.
    pub host_calls: Option<u32>,
    /// `log` calls per step.
    pub log_calls: Option<u32>,
}

/// A module's sustained rate of Kubernetes requests, across all its steps on all nodes: a token
/// bucket, `burst` at once and `per_second` after that. Applied to modules that are not built in,
/// so that one module cannot keep the API server busy however its steps are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRate {
    pub per_second: u32,
    pub burst: u32,
}

pub const DEFAULT_MODULE_REQUEST_RATE: RequestRate = RequestRate { per_second: 50, burst: 100 };

/// The token bucket of one module (`RequestRate`): every API request takes a token first (each
/// page of a `list` too), and a request without one is not made.
#[derive(Debug)]
pub struct RequestBucket {
    rate: RequestRate,
    state: Mutex<(f64, Instant)>,
}

impl RequestBucket {
    pub fn new(rate: RequestRate, now: Instant) -> Self {
        Self { rate, state: Mutex::new((f64::from(rate.burst), now)) }
    }

    pub fn rate(&self) -> RequestRate {
        self.rate
    }

    fn refill(&self, now: Instant) -> std::sync::MutexGuard<'_, (f64, Instant)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(s.1).as_secs_f64();
        s.0 = (s.0 + elapsed * f64::from(self.rate.per_second)).min(f64::from(self.rate.burst));
        s.1 = now;
        s
    }

    /// Take one token for a request; `false` (nothing taken) when none is left.
    pub fn try_take(&self, now: Instant) -> bool {
        self.take_up_to(1, now) == 1
    }

    /// Take as many tokens as are left, at most `n`; how many were taken.
    pub fn take_up_to(&self, n: u32, now: Instant) -> u32 {
        let mut s = self.refill(now);
        let taken = (s.0.max(0.0).floor() as u32).min(n);
        s.0 -= f64::from(taken);
        taken
    }

    /// Give back `n` tokens taken and not used.
    pub fn refund(&self, n: u32) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 = (s.0 + f64::from(n)).min(f64::from(self.rate.burst));
    }
}

/// Which per-step budget a module exhausted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Budget {
    HostCalls,
    LogCalls,
}

impl Budget {
    pub fn as_str(self) -> &'static str {
        match self {
            Budget::HostCalls => "host-calls",
            Budget::LogCalls => "log-calls",
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
    pub host_calls_by_task_type: HashMap<String, u32>,
    pub log_calls_by_task_type: HashMap<String, u32>,
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
        limits.max_host_calls = registered
            .host_calls
            .or_else(|| self.host_calls_by_task_type.get(task_type).copied())
            .unwrap_or(self.defaults.max_host_calls)
            .min(MAX_HOST_CALLS_CEILING);
        limits.max_log_calls = registered
            .log_calls
            .or_else(|| self.log_calls_by_task_type.get(task_type).copied())
            .unwrap_or(self.defaults.max_log_calls)
            .min(MAX_LOG_CALLS_CEILING);
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
        let registered = ModuleLimits { deadline: Some(Duration::from_secs(7)), ..none() };
        assert_eq!(p.limits_for("x", 5_000, &registered).deadline, Duration::from_secs(7), "the registration wins");
        let long = ModuleLimits { deadline: Some(Duration::from_secs(10_000)), ..none() };
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
        let registered = ModuleLimits { memory_bytes: Some(16 << 20), ..none() };
        assert_eq!(p.limits_for("big", 0, &registered).memory_bytes, 16 << 20);
    }

    #[test]
    fn request_bucket_limits_the_sustained_rate() {
        let t0 = Instant::now();
        let b = RequestBucket::new(RequestRate { per_second: 10, burst: 3 }, t0);
        assert!((0..3).all(|_| b.try_take(t0)), "the burst");
        assert!(!b.try_take(t0), "then nothing");
        assert!(b.try_take(t0 + Duration::from_millis(100)), "one token every 100 ms");
        assert!(!b.try_take(t0 + Duration::from_millis(150)));
        // The pages of a list take what is left, at most what they may use, and give back the rest.
        let t1 = t0 + Duration::from_secs(60);
        assert_eq!(b.take_up_to(10, t1), 3, "refilled up to the burst, no more");
        assert_eq!(b.take_up_to(10, t1), 0, "nothing left: no page is made without a token");
        b.refund(2);
        assert_eq!(b.take_up_to(1, t1), 1);
        b.refund(100);
        assert_eq!(b.take_up_to(10, t1), 3, "a refund never passes the burst");
    }

    #[test]
    fn call_budgets_precedence_and_ceiling() {
        let mut p = LimitsPolicy::default();
        let l = p.limits_for("x", 0, &none());
        assert_eq!((l.max_host_calls, l.max_log_calls), (DEFAULT_MAX_HOST_CALLS, DEFAULT_MAX_LOG_CALLS));
        p.host_calls_by_task_type.insert("x".into(), 5);
        p.log_calls_by_task_type.insert("x".into(), 50);
        let l = p.limits_for("x", 0, &none());
        assert_eq!((l.max_host_calls, l.max_log_calls), (5, 50), "configuration per task type");
        assert_eq!(p.limits_for("y", 0, &none()).max_host_calls, DEFAULT_MAX_HOST_CALLS);
        let registered = ModuleLimits { host_calls: Some(9), log_calls: Some(90), ..none() };
        let l = p.limits_for("x", 0, &registered);
        assert_eq!((l.max_host_calls, l.max_log_calls), (9, 90), "the registration wins");
        let greedy = ModuleLimits { host_calls: Some(u32::MAX), log_calls: Some(u32::MAX), ..none() };
        let l = p.limits_for("x", 0, &greedy);
        assert_eq!((l.max_host_calls, l.max_log_calls), (MAX_HOST_CALLS_CEILING, MAX_LOG_CALLS_CEILING), "and is capped");
    }
}
