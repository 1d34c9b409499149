//! `TaskRegistry`: task type → the module that runs it, swappable atomically.
//!
//! Sources, lowest to highest precedence (DESIGN.md §4): built-in modules embedded in the
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
//!   (`rollback_returns_the_previous_entry`).

use crate::embedded::BUILTIN_MODULES;
use crate::guard::{CapabilityName, Grants};
use crate::sandbox::{LoadError, LoadedModule, ModuleGrant, Sandbox};
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

/// Where a module came from. The order is the precedence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ModuleSource {
    BuiltIn { name: String },
    Directory { path: String },
    TaskModule { namespace: String, name: String },
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
            ModuleSource::TaskModule { namespace, name } => write!(f, "TaskModule {namespace}/{name}"),
        }
    }
}

/// An active module for some task types.
pub struct ModuleEntry<M = LoadedModule> {
    pub source: ModuleSource,
    pub module: M,
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
}

impl<M> Default for TaskRegistry<M> {
    fn default() -> Self {
        Self {
            active: ArcSwap::from_pointee(HashMap::new()),
            layers: Mutex::new(Layers { by_type: BTreeMap::new(), history: BTreeMap::new() }),
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
        let entry = Arc::new(entry);
        let rank = entry.source.rank();
        let mut layers = self.lock();
        for t in task_types {
            let previous = layers.by_type.entry(t.clone()).or_default().insert(rank, entry.clone());
            if let Some(prev) = previous {
                let h = layers.history.entry((t.clone(), entry.source.clone())).or_default();
                h.insert(0, prev);
                h.truncate(HISTORY_DEPTH);
            }
        }
        self.publish(&layers);
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

    /// Put back the previous entry of `source` for `task_type`. Returns false if there is none.
    pub fn rollback(&self, task_type: &str, source: &ModuleSource) -> bool {
        let mut layers = self.lock();
        let key = (task_type.to_string(), source.clone());
        let Some(prev) = layers.history.get_mut(&key).and_then(|h| if h.is_empty() { None } else { Some(h.remove(0)) }) else {
            return false;
        };
        layers.by_type.entry(task_type.to_string()).or_default().insert(source.rank(), prev);
        self.publish(&layers);
        true
    }
}

/// The grant of a built-in module: what its own `describe` needs, nothing more.
pub fn builtin_grant(name: &str) -> ModuleGrant {
    let caps: &[CapabilityName] = match name {
        "sei-builtin-infra" => &[CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete],
        "sei-builtin-sidecar" => &[CapabilityName::Sidecar],
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
            let loaded = sandbox
                .load_module(m.bytes, builtin_grant(m.name))
                .await
                .map_err(|source| BuiltinLoadError { name: m.name.to_string(), source })?;
            tracing::info!(module = m.name, digest = %loaded.digest, task_types = ?loaded.info.task_types, load_ms = loaded.load_time.as_millis() as u64, "loaded built-in module");
            let types = loaded.info.task_types.clone();
            self.install(&types, ModuleEntry { source: ModuleSource::BuiltIn { name: m.name.to_string() }, module: loaded });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(source: ModuleSource, v: &'static str) -> ModuleEntry<&'static str> {
        ModuleEntry { source, module: v }
    }
    fn builtin() -> ModuleSource {
        ModuleSource::BuiltIn { name: "infra".into() }
    }
    fn cr() -> ModuleSource {
        ModuleSource::TaskModule { namespace: "ops".into(), name: "fixed-sts".into() }
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
    fn rollback_returns_the_previous_entry() {
        let r = TaskRegistry::new();
        r.install(&types(&["a"]), entry(cr(), "v1"));
        r.install(&types(&["a"]), entry(cr(), "v2"));
        assert!(r.rollback("a", &cr()));
        assert_eq!(r.resolve("a").unwrap().module, "v1");
        assert!(!r.rollback("a", &cr()));
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
    }
}
