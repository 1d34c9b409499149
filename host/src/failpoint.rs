//! Crash points for fault tests: with `SEI_FAILPOINT=<point>:<n>` in its environment the
//! controller kills itself (SIGKILL: no cleanup, no core dump) the `n`-th time it reaches
//! `point`; armed, it says so at start-up (`main.rs`). Unset, a
//! point costs one relaxed load. Points, where a crash is the hardest to recover from:
//! - `plan-built`: a new plan is built and not yet persisted;
//! - `step-done`: a plan step ran and its outcome is not yet written;
//! - `kube-write-sent`: a module's create/apply reached the API server, the module has no answer;
//! - `kube-delete-sent`: a module's delete reached the API server, the module has no answer;
//! - `sidecar-submit-sent`: a task reached the sidecar, the module has no answer.
//!
//! Only ever aborts the process that was started with the variable (a test hook; nothing else
//! reads it). Tests: `failpoint::tests` (parsing); `tests/chaos.rs` crashes a real controller at
//! each point and at random moments (`kube-delete-sent` in its own test, a bootstrap node's
//! teardown: the kill-anywhere test's modes delete nothing).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// The environment variable.
pub const VARIABLE: &str = "SEI_FAILPOINT";

/// The points, as `hit` names them.
pub const POINTS: [&str; 5] = ["plan-built", "step-done", "kube-write-sent", "kube-delete-sent", "sidecar-submit-sent"];

static ARMED: OnceLock<Option<(String, u64)>> = OnceLock::new();
static HITS: AtomicU64 = AtomicU64::new(0);

/// `<point>:<n>` (n ≥ 1), or nothing.
pub fn parse(spec: &str) -> Option<(String, u64)> {
    let (point, n) = spec.trim().split_once(':')?;
    let n: u64 = n.parse().ok().filter(|n| *n >= 1)?;
    POINTS.contains(&point).then(|| (point.to_string(), n))
}

/// The armed point and count, if any.
pub fn armed() -> Option<&'static (String, u64)> {
    ARMED.get_or_init(|| std::env::var(VARIABLE).ok().and_then(|s| parse(&s))).as_ref()
}

/// Reached `point`: the process dies if this is the armed point's `n`-th hit.
pub fn hit(point: &str) {
    if let Some((at, n)) = armed()
        && at == point
        && HITS.fetch_add(1, Ordering::Relaxed) + 1 == *n
    {
        eprintln!("failpoint {point} #{n}: killing the process");
        // SAFETY: a plain syscall on this process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        std::process::abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_points_with_a_positive_count_arm() {
        assert_eq!(parse("step-done:3"), Some(("step-done".into(), 3)));
        assert_eq!(parse(" plan-built:1 "), Some(("plan-built".into(), 1)));
        for bad in ["step-done", "step-done:0", "step-done:x", "nowhere:1", ""] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        // Unarmed (the variable is not set in unit tests): reaching a point does nothing.
        hit("step-done");
    }
}
