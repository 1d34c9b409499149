//! Steps in flight per module digest, for modules that are not built in: one such module may run
//! at most `cap` steps at once, so a module whose steps spin until their deadline cannot take
//! every reconcile slot from the nodes that do not use it. A step's place is released when its
//! `ModuleSlot` drops, on every path (`module_slots_cap_one_module`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct ModuleSlots {
    in_flight: Mutex<HashMap<Arc<str>, usize>>,
}

/// A step's place in its module's share; released on drop.
pub struct ModuleSlot<'a> {
    slots: &'a ModuleSlots,
    digest: Arc<str>,
}

impl ModuleSlots {
    /// Whether `digest` already runs `cap` steps (a look, nothing taken).
    pub fn is_full(&self, digest: &str, cap: usize) -> bool {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner()).get(digest).is_some_and(|n| *n >= cap.max(1))
    }

    /// A place for one more step of `digest`, unless it already runs `cap`.
    pub fn try_acquire(&self, digest: &Arc<str>, cap: usize) -> Option<ModuleSlot<'_>> {
        let mut m = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let n = m.entry(digest.clone()).or_default();
        if *n >= cap.max(1) {
            return None;
        }
        *n += 1;
        Some(ModuleSlot { slots: self, digest: digest.clone() })
    }
}

impl Drop for ModuleSlot<'_> {
    fn drop(&mut self) {
        let mut m = self.slots.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = m.get_mut(&self.digest) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.digest);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_slots_cap_one_module() {
        let slots = ModuleSlots::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let first = slots.try_acquire(&a, 2).unwrap();
        let _second = slots.try_acquire(&a, 2).unwrap();
        assert!(slots.try_acquire(&a, 2).is_none(), "module a is at its cap");
        assert!(slots.is_full("a", 2) && !slots.is_full("b", 2));
        assert!(slots.try_acquire(&b, 2).is_some(), "other modules are not affected");
        drop(first);
        assert!(slots.try_acquire(&a, 2).is_some(), "a finished step frees its place");
    }
}
