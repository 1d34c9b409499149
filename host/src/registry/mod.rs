//! `TaskRegistry`: task type → the module that runs it, swappable atomically.
//!
//! Sources, lowest to highest precedence: built-in modules embedded in the
//! binary, a directory of `.wasm` files, `TaskModule` resources. Each task type resolves to the
//! active entry of the highest-precedence source that serves it.
//!
//! Invariants (unit tests below, using a stand-in for loaded modules):
//! - `resolve` is lock-free (`ArcSwap`); a run holds its `Arc` entry, so a swap never disturbs a
//!   run in flight (`swap_does_not_disturb_a_held_entry`);
//! - installing an entry swaps all its task types at once (`install_swaps_every_task_type`);
//! - a higher-precedence source shadows a lower one, and removing it restores the lower one
//!   (`remove_restores_the_lower_source`);
//! - the previous entries of a (source, task type) are kept for rollback, newest first, bounded
//!   (`history_keeps_previous_entries_bounded`);
//! - a task type is served by at most one source of each rank: a second directory file or
//!   `TaskModule` claiming it is refused, naming the one that serves it, and nothing changes
//!   (`exclusive_install_refuses_a_second_source_of_a_rank`);
//! - a step outcome is counted against its entry's rollout (`record_outcome`); past the threshold
//!   the entry is withdrawn at once and a notice is queued for the TaskModule loader
//!   (`rollback_withdraws_and_notifies_once`; end to end `auto_rollback_withdraws_a_failing_module`);
//! - re-installing a source for fewer task types hands the dropped ones back to the lower
//!   sources (`replace_drops_task_types_no_longer_served`);
//! - withdrawing a failing entry is by identity (a stale withdrawal changes nothing) and brings
//!   back a previous entry only when allowed, e.g. not one with broader grants
//!   (`withdraw_restores_the_previous_entry_or_the_lower_source`,
//!   `withdraw_restores_only_what_may_come_back`).

pub mod rollout;
pub mod slots;

use crate::embedded::BUILTIN_MODULES;
use crate::policy::guard::{CapabilityName, Grants};
use crate::sandbox::{LoadError, LoadedModule, ModuleGrant, Sandbox};
use arc_swap::ArcSwap;
use rollout::{AutoRollbackNotice, RolloutTracker, Verdict};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// Where a module came from. The order is the precedence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModuleSource {
    BuiltIn { name: String },
    Directory { path: String },
    TaskModule { name: String },
}

impl ModuleSource {
    fn rank(&self) -> u8 {
        match self {
            ModuleSource::BuiltIn { .. } => 0,
            ModuleSource::Directory { .. } => 1,
            ModuleSource::TaskModule { .. } => 2,
        }
    }
}

impl std::fmt::Display for ModuleSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModuleSource::BuiltIn { name } => write!(f, "built-in {name}"),
            ModuleSource::Directory { path } => write!(f, "file {path}"),
            ModuleSource::TaskModule { name } => write!(f, "TaskModule {name}"),
        }
    }
}

/// An active module for some task types.
pub struct ModuleEntry<M = LoadedModule> {
    pub source: ModuleSource,
    pub module: M,
    /// Watches the first runs of a new module when its rollout asks for automatic rollback.
    pub rollout: Option<RolloutTracker>,
}

impl<M> ModuleEntry<M> {
    pub fn new(source: ModuleSource, module: M) -> Self {
        Self { source, module, rollout: None }
    }
}

/// A second source of the same rank claimed a task type that is already served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("task type {task_type} is already served by {served_by}; a task type can have only one {rank_name}")]
pub struct RegistryConflict {
    pub task_type: String,
    pub served_by: ModuleSource,
    pub rank_name: &'static str,
}

/// The entries kept per (source, task type) for rollback.
pub const HISTORY_DEPTH: usize = 5;

type Table<M> = HashMap<String, Arc<ModuleEntry<M>>>;

/// Per task type, the entry of each source (by rank), plus history.
struct Layers<M> {
    by_type: BTreeMap<String, BTreeMap<u8, Arc<ModuleEntry<M>>>>,
    history: BTreeMap<(String, ModuleSource), Vec<Arc<ModuleEntry<M>>>>,
}

/// Task type → module. Generic over the module type so its logic is unit-tested without wasm.
pub struct TaskRegistry<M = LoadedModule> {
    active: ArcSwap<Table<M>>,
    layers: Mutex<Layers<M>>,
    /// Automatic rollbacks decided by `record_outcome`, for the TaskModule loader to report.
    rollbacks: mpsc::UnboundedSender<AutoRollbackNotice<M>>,
    rollback_notices: Mutex<Option<mpsc::UnboundedReceiver<AutoRollbackNotice<M>>>>,
}

impl<M> Default for TaskRegistry<M> {
    fn default() -> Self {
        let (rollbacks, notices) = mpsc::unbounded_channel();
        Self {
            active: ArcSwap::from_pointee(HashMap::new()),
            layers: Mutex::new(Layers { by_type: BTreeMap::new(), history: BTreeMap::new() }),
            rollbacks,
            rollback_notices: Mutex::new(Some(notices)),
        }
    }
}

impl<M> TaskRegistry<M> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The entry that runs `task_type` now.
    pub fn resolve(&self, task_type: &str) -> Option<Arc<ModuleEntry<M>>> {
        self.active.load().get(task_type).cloned()
    }

    /// Every task type with an active module.
    pub fn task_types(&self) -> Vec<String> {
        let mut v: Vec<String> = self.active.load().keys().cloned().collect();
        v.sort();
        v
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Layers<M>> {
        self.layers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(&self, layers: &Layers<M>) {
        let table: Table<M> =
            layers.by_type.iter().filter_map(|(t, by_rank)| by_rank.values().next_back().map(|e| (t.clone(), e.clone()))).collect();
        self.active.store(Arc::new(table));
    }

    /// Make `entry` the module of `task_types` for its source, all at once.
    pub fn install(&self, task_types: &[String], entry: ModuleEntry<M>) {
        let mut layers = self.lock();
        Self::put(&mut layers, task_types, Arc::new(entry));
        self.publish(&layers);
    }

    /// Set `entry` for each task type at its source's rank, keeping what it replaces in history.
    fn put(layers: &mut Layers<M>, task_types: &[String], entry: Arc<ModuleEntry<M>>) {
        let rank = entry.source.rank();
        for t in task_types {
            let previous = layers.by_type.entry(t.clone()).or_default().insert(rank, entry.clone());
            if let Some(prev) = previous {
                let h = layers.history.entry((t.clone(), entry.source.clone())).or_default();
                h.insert(0, prev);
                h.truncate(HISTORY_DEPTH);
            }
        }
    }

    /// Make `entry` the module of exactly `task_types` for its source: refused if another source
    /// of the same rank serves one of them; task types the source served before but not now
    /// fall back to lower sources.
    pub fn install_exclusive(&self, task_types: &[String], entry: ModuleEntry<M>) -> Result<(), RegistryConflict> {
        let rank = entry.source.rank();
        let mut layers = self.lock();
        Self::conflict(&layers, task_types, &entry.source)?;
        let entry = Arc::new(entry);
        for (t, by_rank) in layers.by_type.iter_mut() {
            if !task_types.contains(t) && by_rank.get(&rank).is_some_and(|e| e.source == entry.source) {
                by_rank.remove(&rank);
            }
        }
        layers.by_type.retain(|_, by_rank| !by_rank.is_empty());
        Self::put(&mut layers, task_types, entry);
        self.publish(&layers);
        Ok(())
    }

    /// Whether `install_exclusive` of `task_types` for `source` would be refused now.
    pub fn check_exclusive(&self, task_types: &[String], source: &ModuleSource) -> Result<(), RegistryConflict> {
        Self::conflict(&self.lock(), task_types, source)
    }

    fn conflict(layers: &Layers<M>, task_types: &[String], source: &ModuleSource) -> Result<(), RegistryConflict> {
        let rank = source.rank();
        for t in task_types {
            if let Some(other) = layers.by_type.get(t).and_then(|r| r.get(&rank))
                && &other.source != source
            {
                return Err(RegistryConflict {
                    task_type: t.clone(),
                    served_by: other.source.clone(),
                    rank_name: match rank {
                        1 => "module file in the task directory",
                        2 => "TaskModule",
                        _ => "built-in module",
                    },
                });
            }
        }
        Ok(())
    }

    /// The entry `source` has installed now (for any of its task types), if any.
    pub fn entry_of(&self, source: &ModuleSource) -> Option<Arc<ModuleEntry<M>>> {
        let rank = source.rank();
        self.lock().by_type.values().filter_map(|r| r.get(&rank)).find(|e| &e.source == source).cloned()
    }

    /// Every (task type, active entry), sorted by task type.
    pub fn active(&self) -> Vec<(String, Arc<ModuleEntry<M>>)> {
        let mut v: Vec<_> = self.active.load().iter().map(|(t, e)| (t.clone(), e.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Remove what `source` serves; task types fall back to lower sources.
    pub fn remove_source(&self, source: &ModuleSource) {
        let rank = source.rank();
        let mut layers = self.lock();
        for by_rank in layers.by_type.values_mut() {
            if by_rank.get(&rank).is_some_and(|e| &e.source == source) {
                by_rank.remove(&rank);
            }
        }
        layers.by_type.retain(|_, by_rank| !by_rank.is_empty());
        layers.history.retain(|(_, s), _| s != source);
        self.publish(&layers);
    }

    /// Withdraw `target` wherever it is active (automatic rollback): for each task type it
    /// serves, the previous entry of its source comes back when `may_restore(previous, target)`
    /// allows it, else the lower sources serve. Returns false when `target` is not active (a
    /// newer entry replaced it meanwhile: that one stays).
    pub fn withdraw(&self, target: &Arc<ModuleEntry<M>>, may_restore: impl Fn(&M, &M) -> bool) -> bool {
        let rank = target.source.rank();
        let mut layers = self.lock();
        let types: Vec<String> =
            layers.by_type.iter().filter(|(_, r)| r.get(&rank).is_some_and(|e| Arc::ptr_eq(e, target))).map(|(t, _)| t.clone()).collect();
        if types.is_empty() {
            return false;
        }
        for t in &types {
            let key = (t.clone(), target.source.clone());
            let prev = layers.history.get_mut(&key).and_then(|h| if h.is_empty() { None } else { Some(h.remove(0)) });
            let by_rank = layers.by_type.entry(t.clone()).or_default();
            match prev {
                Some(p) if may_restore(&p.module, &target.module) => {
                    by_rank.insert(rank, p);
                }
                _ => {
                    by_rank.remove(&rank);
                }
            }
        }
        layers.by_type.retain(|_, by_rank| !by_rank.is_empty());
        self.publish(&layers);
        true
    }
}

impl<M> TaskRegistry<M> {
    /// Count one step outcome (`failed` or not) against `entry`'s rollout. When it crosses the
    /// threshold, `entry` is withdrawn at once (the previous entry of its source comes back only
    /// if `may_restore` allows it) and a notice is queued for whoever reports rollbacks; returns
    /// whether this outcome rolled the entry back.
    pub fn record_outcome_with(&self, entry: &Arc<ModuleEntry<M>>, failed: bool, may_restore: impl Fn(&M, &M) -> bool) -> bool {
        let Some(tracker) = &entry.rollout else { return false };
        let Some(Verdict::RollBack { runs, failures }) = tracker.record(failed) else { return false };
        if !self.withdraw(entry, may_restore) {
            return false;
        }
        tracing::warn!(source = %entry.source, runs, failures, "module rolled back automatically");
        let _ = self.rollbacks.send(AutoRollbackNotice {
            source: entry.source.clone(),
            entry: Arc::downgrade(entry),
            runs,
            failures,
            policy: tracker.policy,
        });
        true
    }

    /// The automatic-rollback notices (once: the TaskModule loader takes them).
    pub fn take_rollback_notices(&self) -> Option<mpsc::UnboundedReceiver<AutoRollbackNotice<M>>> {
        self.rollback_notices.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

impl TaskRegistry<LoadedModule> {
    /// `record_outcome_with` the registry's own restore rule (`may_restore`).
    pub fn record_outcome(&self, entry: &Arc<ModuleEntry>, failed: bool) -> bool {
        self.record_outcome_with(entry, failed, may_restore)
    }
}

/// Whether a previous entry may come back when a failing module is withdrawn: only if it was
/// granted no more than the module it replaces (a rollback never restores a revoked capability).
pub fn may_restore(previous: &LoadedModule, withdrawn: &LoadedModule) -> bool {
    previous.digest != withdrawn.digest && previous.grants.within(&withdrawn.grants)
}

/// The grant of a built-in module: what its own `describe` needs, nothing more.
pub fn builtin_grant(name: &str) -> ModuleGrant {
    let caps: &[CapabilityName] = match name {
        "sei-builtin-infra" => &[CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete],
        "sei-builtin-sidecar" => &[CapabilityName::Sidecar],
        // Group tasks run in a group's scope: its own SeiNodes and their sidecars, nothing else.
        "sei-builtin-group" => {
            let caps = [CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete, CapabilityName::Sidecar];
            return ModuleGrant::new(Grants::new(caps).with_kinds(&[("sei.io/v1alpha1", "SeiNode")]));
        }
        _ => &[],
    };
    ModuleGrant::new(Grants::new(caps.iter().copied()))
}

#[derive(Debug, thiserror::Error)]
#[error("built-in module {name} failed to load: {source}")]
pub struct BuiltinLoadError {
    pub name: String,
    #[source]
    pub source: LoadError,
}

impl TaskRegistry<LoadedModule> {
    /// Load every built-in module into the registry.
    pub async fn load_builtins(&self, sandbox: &Sandbox) -> Result<(), BuiltinLoadError> {
        for m in BUILTIN_MODULES {
            // Shipped in this binary: compiled in process, like the rest of the binary's code.
            let grant = ModuleGrant { trusted_code: true, ..builtin_grant(m.name) };
            let loaded =
                sandbox.load_module(m.bytes, grant).await.map_err(|source| BuiltinLoadError { name: m.name.to_string(), source })?;
            tracing::info!(module = m.name, digest = %loaded.digest, task_types = ?loaded.info.task_types, load_ms = loaded.load_time.as_millis() as u64, "loaded built-in module");
            let types = loaded.info.task_types.clone();
            self.install(&types, ModuleEntry::new(ModuleSource::BuiltIn { name: m.name.to_string() }, loaded));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: ModuleSource, v: &'static str) -> ModuleEntry<&'static str> {
        ModuleEntry::new(source, v)
    }
    fn cr2() -> ModuleSource {
        ModuleSource::TaskModule { name: "other".into() }
    }

    #[test]
    fn exclusive_install_refuses_a_second_source_of_a_rank() {
        let r = TaskRegistry::new();
        r.install(&types(&["a", "b"]), entry(builtin(), "builtin"));
        r.install_exclusive(&types(&["a"]), entry(cr(), "first")).unwrap();
        let err = r.install_exclusive(&types(&["b", "a"]), entry(cr2(), "second")).unwrap_err();
        assert_eq!(err.task_type, "a");
        assert_eq!(err.served_by, cr());
        assert_eq!(err.to_string(), "task type a is already served by TaskModule fixed-sts; a task type can have only one TaskModule");
        assert_eq!(r.resolve("a").unwrap().module, "first");
        assert_eq!(r.resolve("b").unwrap().module, "builtin", "a refused install changes nothing");
        r.install_exclusive(&types(&["a"]), entry(cr(), "first-v2")).expect("the same source may replace itself");
        assert_eq!(r.resolve("a").unwrap().module, "first-v2");
    }

    #[test]
    fn replace_drops_task_types_no_longer_served() {
        let r = TaskRegistry::new();
        r.install(&types(&["a", "b"]), entry(builtin(), "builtin"));
        r.install_exclusive(&types(&["a", "b"]), entry(cr(), "v1")).unwrap();
        r.install_exclusive(&types(&["a"]), entry(cr(), "v2")).unwrap();
        assert_eq!(r.resolve("a").unwrap().module, "v2");
        assert_eq!(r.resolve("b").unwrap().module, "builtin");
        assert_eq!(r.entry_of(&cr()).unwrap().module, "v2");
        assert!(r.entry_of(&cr2()).is_none());
        assert_eq!(r.active().iter().map(|(t, e)| (t.as_str(), e.module)).collect::<Vec<_>>(), vec![("a", "v2"), ("b", "builtin")]);
    }

    #[test]
    fn withdraw_restores_the_previous_entry_or_the_lower_source() {
        let r = TaskRegistry::new();
        let always = |_: &&str, _: &&str| true;
        r.install(&types(&["a"]), entry(builtin(), "builtin"));
        r.install_exclusive(&types(&["a"]), entry(cr(), "v1")).unwrap();
        let v1 = r.resolve("a").unwrap();
        r.install_exclusive(&types(&["a"]), entry(cr(), "v2")).unwrap();
        assert!(!r.withdraw(&v1, always), "v1 is not active: a stale withdrawal changes nothing");
        assert_eq!(r.resolve("a").unwrap().module, "v2");
        let v2 = r.resolve("a").unwrap();
        assert!(r.withdraw(&v2, always));
        assert_eq!(r.resolve("a").unwrap().module, "v1");
        assert!(r.withdraw(&r.resolve("a").unwrap(), always));
        assert_eq!(r.resolve("a").unwrap().module, "builtin");
    }

    #[test]
    fn withdraw_restores_only_what_may_come_back() {
        let r = TaskRegistry::new();
        r.install(&types(&["a"]), entry(builtin(), "builtin"));
        r.install_exclusive(&types(&["a"]), entry(cr(), "broad-grant")).unwrap();
        r.install_exclusive(&types(&["a"]), entry(cr(), "narrow-grant")).unwrap();
        let failing = r.resolve("a").unwrap();
        assert!(r.withdraw(&failing, |prev, _| *prev != "broad-grant"));
        assert_eq!(r.resolve("a").unwrap().module, "builtin", "a previous entry with more rights does not come back");
        assert_eq!(r.check_exclusive(&types(&["a"]), &cr2()), Ok(()));
    }
    #[test]
    fn rollback_withdraws_and_notifies_once() {
        let r = TaskRegistry::new();
        let always = |_: &&str, _: &&str| true;
        r.install(&types(&["a"]), entry(builtin(), "builtin"));
        let mut watched = entry(cr(), "new");
        watched.rollout = Some(RolloutTracker::new(rollout::AutoRollbackPolicy { window: 4, max_failure_percent: 25 }));
        r.install_exclusive(&types(&["a"]), watched).unwrap();
        let new = r.resolve("a").unwrap();
        let mut notices = r.take_rollback_notices().unwrap();
        assert!(r.take_rollback_notices().is_none(), "one reporter");
        assert!(!r.record_outcome_with(&new, false, always));
        assert!(!r.record_outcome_with(&new, true, always), "1 of 4 failed: within 25%");
        assert!(r.record_outcome_with(&new, true, always), "the second failure crosses the threshold");
        assert_eq!(r.resolve("a").unwrap().module, "builtin", "withdrawn at once");
        assert!(!r.record_outcome_with(&new, true, always), "reported once");
        let notice = notices.try_recv().unwrap();
        assert_eq!((notice.source, notice.runs, notice.failures), (cr(), 3, 2));
        assert!(notice.entry.upgrade().is_some_and(|e| Arc::ptr_eq(&e, &new)));
        assert!(notices.try_recv().is_err());
        let untracked = r.resolve("a").unwrap();
        assert!(!r.record_outcome_with(&untracked, true, always), "an entry without a rollout policy is never withdrawn");
    }

    fn builtin() -> ModuleSource {
        ModuleSource::BuiltIn { name: "infra".into() }
    }
    fn cr() -> ModuleSource {
        ModuleSource::TaskModule { name: "fixed-sts".into() }
    }
    fn types(t: &[&str]) -> Vec<String> {
        t.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn install_swaps_every_task_type() {
        let r = TaskRegistry::new();
        r.install(&types(&["a", "b"]), entry(builtin(), "v1"));
        assert_eq!(r.resolve("a").unwrap().module, "v1");
        assert_eq!(r.resolve("b").unwrap().module, "v1");
        assert!(r.resolve("c").is_none());
        assert_eq!(r.task_types(), vec!["a", "b"]);
    }

    #[test]
    fn swap_does_not_disturb_a_held_entry() {
        let r = TaskRegistry::new();
        r.install(&types(&["a"]), entry(builtin(), "v1"));
        let held = r.resolve("a").unwrap();
        r.install(&types(&["a"]), entry(builtin(), "v2"));
        assert_eq!(held.module, "v1");
        assert_eq!(r.resolve("a").unwrap().module, "v2");
    }

    #[test]
    fn remove_restores_the_lower_source() {
        let r = TaskRegistry::new();
        r.install(&types(&["a"]), entry(builtin(), "builtin"));
        r.install(&types(&["a"]), entry(cr(), "custom"));
        assert_eq!(r.resolve("a").unwrap().module, "custom");
        r.install(&types(&["a"]), entry(builtin(), "builtin-2"));
        assert_eq!(r.resolve("a").unwrap().module, "custom", "a lower source does not shadow a higher one");
        r.remove_source(&cr());
        assert_eq!(r.resolve("a").unwrap().module, "builtin-2");
    }

    #[test]
    fn history_keeps_previous_entries_bounded() {
        let r = TaskRegistry::new();
        let always = |_: &&str, _: &&str| true;
        r.install(&types(&["a"]), entry(cr(), "v1"));
        r.install(&types(&["a"]), entry(cr(), "v2"));
        assert!(r.withdraw(&r.resolve("a").unwrap(), always));
        assert_eq!(r.resolve("a").unwrap().module, "v1");
        assert!(r.withdraw(&r.resolve("a").unwrap(), always));
        assert!(r.resolve("a").is_none(), "no history and no lower source left");
        for i in 0..10 {
            r.install(&types(&["a"]), entry(cr(), if i % 2 == 0 { "x" } else { "y" }));
        }
        assert_eq!(r.lock().history[&("a".to_string(), cr())].len(), HISTORY_DEPTH);
    }

    #[test]
    fn builtin_grants_match_their_needs() {
        assert!(builtin_grant("sei-builtin-infra").grants.allows(CapabilityName::KubeWrite));
        assert!(!builtin_grant("sei-builtin-infra").grants.allows(CapabilityName::Sidecar));
        assert!(builtin_grant("sei-builtin-sidecar").grants.allows(CapabilityName::Sidecar));
        assert!(builtin_grant("unknown").grants.capabilities.is_empty());
        let group = builtin_grant("sei-builtin-group").grants;
        assert_eq!(group.kinds, [("sei.io/v1alpha1".to_string(), "SeiNode".to_string())].into(), "SeiNodes only");
    }
}
