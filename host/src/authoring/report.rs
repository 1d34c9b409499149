//! The figures the author kit prints for every step and for `task bench`: wall time, fuel
//! (instructions), peak memory, host calls by kind with their time, log lines, denied calls,
//! output and checkpoint sizes against their caps, and the limits in force.
//!
//! Pure (`host_calls_are_grouped_by_kind`, `percentiles_of_a_sample`).

use crate::sandbox::{RunLimits, RunReport, StepOutcome};
use serde::Serialize;
use std::collections::BTreeMap;

/// Calls of one kind (`kube get`, `sidecar status`) in a step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindStat {
    pub count: u32,
    pub micros: u64,
}

/// One step, for people and for `--json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepFigures {
    /// `complete`, `pending` or the error kind.
    pub outcome: String,
    pub wall_micros: u64,
    pub fuel: u64,
    pub peak_memory_bytes: usize,
    pub host_calls: BTreeMap<String, KindStat>,
    /// Requests charged against `limits.maxHostCalls` (`apply` and `delete` cost two).
    pub charged_host_calls: u32,
    /// `log` calls, against `limits.maxLogCalls`.
    pub log_calls: u32,
    pub denied_calls: u32,
    pub log_lines: usize,
    pub dropped_log_lines: u64,
    /// Bytes of the `complete` output (JSON), against `limits.maxOutputBytes`.
    pub output_bytes: Option<usize>,
    /// Bytes of the `pending` checkpoint, against `limits.maxCheckpointBytes`.
    pub checkpoint_bytes: Option<usize>,
    pub limits: RunLimits,
}

/// `complete`, `pending`, or the error kind of a failed step.
pub fn outcome_kind(r: &RunReport) -> String {
    match &r.outcome {
        Ok(StepOutcome::Complete { .. }) => "complete".into(),
        Ok(StepOutcome::Pending { .. }) => "pending".into(),
        Err(e) => e.kind().into(),
    }
}

/// The figures of one step.
pub fn figures(r: &RunReport) -> StepFigures {
    let mut host_calls: BTreeMap<String, KindStat> = BTreeMap::new();
    let mut denied_calls = 0;
    for c in &r.host_calls {
        let verb = c.call.split_whitespace().next().unwrap_or("?");
        let stat = host_calls.entry(format!("{} {verb}", c.interface)).or_default();
        stat.count += 1;
        stat.micros += c.micros;
        if c.outcome.starts_with("denied") {
            denied_calls += 1;
        }
    }
    let (output_bytes, checkpoint_bytes) = match &r.outcome {
        Ok(StepOutcome::Complete { output }) => (Some(output.to_string().len()), None),
        Ok(StepOutcome::Pending { checkpoint, .. }) => (None, Some(checkpoint.len())),
        Err(_) => (None, None),
    };
    StepFigures {
        outcome: outcome_kind(r),
        wall_micros: r.duration_micros,
        fuel: r.fuel_consumed,
        peak_memory_bytes: r.peak_memory_bytes,
        host_calls,
        charged_host_calls: r.host_call_count,
        log_calls: r.log_calls,
        denied_calls,
        log_lines: r.logs.len(),
        dropped_log_lines: r.dropped_log_lines,
        output_bytes,
        checkpoint_bytes,
        limits: r.limits.clone(),
    }
}

/// Median, p99, min and max of a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Spread {
    pub median: u64,
    pub p99: u64,
    pub min: u64,
    pub max: u64,
}

/// The spread of `values` (nearest-rank percentiles); all zero for an empty sample.
pub fn spread(values: &[u64]) -> Spread {
    let mut v = values.to_vec();
    v.sort_unstable();
    let at = |p: f64| -> u64 {
        if v.is_empty() {
            return 0;
        }
        let rank = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len());
        v[rank - 1]
    };
    Spread { median: at(0.5), p99: at(0.99), min: v.first().copied().unwrap_or(0), max: v.last().copied().unwrap_or(0) }
}

/// Human text for one step's figures (every module-made string was escaped by the sandbox).
pub fn text(f: &StepFigures) -> String {
    let calls = if f.host_calls.is_empty() {
        "none".to_string()
    } else {
        f.host_calls.iter().map(|(k, s)| format!("{k} ×{} ({} µs)", s.count, s.micros)).collect::<Vec<_>>().join(", ")
    };
    let sizes = match (f.output_bytes, f.checkpoint_bytes) {
        (Some(o), _) => format!("output {o} of {} bytes", f.limits.max_output_bytes),
        (_, Some(c)) => format!("checkpoint {c} of {} bytes", f.limits.max_checkpoint_bytes),
        _ => "no output".into(),
    };
    format!(
        "  wall {} µs, fuel {} of {}, peak memory {} KiB of {} KiB, {sizes}\n  host calls: {calls}; denied: {}; log lines: {} (dropped {})\n  \
         budgets: {} of {} host calls, {} of {} log calls; deadline {} ms",
        f.wall_micros,
        f.fuel,
        f.limits.fuel,
        f.peak_memory_bytes / 1024,
        f.limits.memory_bytes / 1024,
        f.denied_calls,
        f.log_lines,
        f.dropped_log_lines,
        f.charged_host_calls,
        f.limits.max_host_calls,
        f.log_calls,
        f.limits.max_log_calls,
        f.limits.deadline.as_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::HostCall;

    fn report(calls: Vec<HostCall>) -> RunReport {
        RunReport {
            task_type: "t".into(),
            module: "m".into(),
            module_digest: "d".into(),
            outcome: Ok(StepOutcome::Pending { requeue_after_ms: 1, checkpoint: "abc".into(), message: "m".into() }),
            host_calls: calls,
            unrecorded_host_calls: 0,
            host_call_count: 0,
            log_calls: 0,
            logs: vec![],
            dropped_log_bytes: 0,
            dropped_log_lines: 0,
            limits: RunLimits::default(),
            fuel_consumed: 7,
            peak_memory_bytes: 2048,
            duration_micros: 3,
        }
    }

    #[test]
    fn host_calls_are_grouped_by_kind() {
        let call = |i: &'static str, c: &str, o: &str, us| HostCall { interface: i, call: c.into(), outcome: o.into(), micros: us };
        let f = figures(&report(vec![
            call("kube", "get v1/ConfigMap sei/a", "ok", 5),
            call("kube", "get v1/ConfigMap sei/b", "ok", 7),
            call("kube", "apply v1/Secret sei/c", "denied: kind", 1),
            call("sidecar", "status", "ok", 2),
        ]));
        assert_eq!(f.host_calls["kube get"], KindStat { count: 2, micros: 12 });
        assert_eq!(f.host_calls["sidecar status"], KindStat { count: 1, micros: 2 });
        assert_eq!(f.denied_calls, 1);
        assert_eq!((f.outcome.as_str(), f.checkpoint_bytes, f.output_bytes), ("pending", Some(3), None));
        assert!(text(&f).contains("checkpoint 3 of"));
    }

    #[test]
    fn percentiles_of_a_sample() {
        let s = spread(&(1..=100).collect::<Vec<u64>>());
        assert_eq!(s, Spread { median: 50, p99: 99, min: 1, max: 100 });
        assert_eq!(spread(&[]), Spread { median: 0, p99: 0, min: 0, max: 0 });
        assert_eq!(spread(&[9]).p99, 9);
    }
}
