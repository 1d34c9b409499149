//! How often a Running node may be given a convergence plan. A convergence plan that completes
//! while the drift stays (a module that reports success without converging, another writer
//! undoing it) would otherwise be rebuilt about once a second, forever, each time with a status
//! write and an Event. At most `MAX_CONVERGENCES` plans start in `WINDOW`; past that the node waits
//! until the oldest leaves the window (`convergences_are_rate_limited`). A new spec generation
//! starts the count afresh: a person changing the image four times in five minutes is not a loop
//! (`a_spec_change_is_never_held_back`). Kept in memory per node uid, entries dropped when they
//! leave the window or the node is deleted.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const MAX_CONVERGENCES: usize = 3;
pub const WINDOW: Duration = Duration::from_secs(300);

/// How long until another convergence plan may start, given when the recent ones started; `None`:
/// now.
pub fn wait(started: &VecDeque<Instant>, now: Instant) -> Option<Duration> {
    let recent: Vec<&Instant> = started.iter().filter(|t| now.saturating_duration_since(**t) < WINDOW).collect();
    if recent.len() < MAX_CONVERGENCES {
        return None;
    }
    let oldest = recent.iter().min()?;
    Some((**oldest + WINDOW).saturating_duration_since(now).max(Duration::from_millis(1)))
}

/// The spec generation the starts belong to, and the starts.
type Starts = (Option<i64>, VecDeque<Instant>);

#[derive(Debug, Default)]
pub struct ConvergenceLog {
    /// Per node uid.
    started: Mutex<HashMap<String, Starts>>,
}

impl ConvergenceLog {
    /// `None` if `node` (at spec `generation`) may start a convergence plan now (and it is
    /// recorded as started), else how long it must wait.
    pub fn start(&self, node: &str, generation: Option<i64>, now: Instant) -> Option<Duration> {
        let mut map = self.started.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, log) = map.entry(node.to_string()).or_default();
        if *seen != generation {
            *seen = generation;
            log.clear();
        }
        log.retain(|t| now.saturating_duration_since(*t) < WINDOW);
        if let Some(w) = wait(log, now) {
            return Some(w);
        }
        log.push_back(now);
        None
    }

    pub fn forget(&self, node: &str) {
        self.started.lock().unwrap_or_else(|p| p.into_inner()).remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn convergences_are_rate_limited() {
        let log = ConvergenceLog::default();
        let t0 = Instant::now();
        for i in 0..MAX_CONVERGENCES {
            assert_eq!(log.start("u", Some(1), t0 + Duration::from_secs(i as u64)), None, "plan {i}");
        }
        let w = log.start("u", Some(1), t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(w, WINDOW - Duration::from_secs(10), "until the oldest leaves the window");
        assert_eq!(log.start("other", Some(1), t0), None, "per node");
        assert_eq!(log.start("u", Some(1), t0 + WINDOW), None, "the oldest left the window");
        log.forget("u");
        assert_eq!(log.start("u", Some(1), t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn a_spec_change_is_never_held_back() {
        let log = ConvergenceLog::default();
        let t0 = Instant::now();
        for generation in 1..=MAX_CONVERGENCES as i64 + 2 {
            assert_eq!(log.start("u", Some(generation), t0), None, "generation {generation}");
        }
        for _ in 0..MAX_CONVERGENCES {
            assert_eq!(log.start("u", Some(9), t0), None);
        }
        assert!(log.start("u", Some(9), t0).is_some(), "repeats within one generation are counted");
    }
}
