//! The resourceVersion of each node as this controller last wrote it (by node uid). A reconcile
//! whose cached copy has exactly that version works on the cached copy: it is the object the API
//! server holds after our write, so reading it again would return the same bytes. Any other
//! version (a lagging cache, someone else's change, a restart that emptied the map) means a fresh
//! read. A change that races with the step is caught as before by the optimistic lock of the
//! status write. Entries are dropped when the node is deleted
//! (`only_the_version_we_wrote_is_trusted`).

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct WrittenVersions {
    by_uid: Mutex<HashMap<String, String>>,
}

impl WrittenVersions {
    pub fn record(&self, uid: &str, resource_version: Option<&str>) {
        let mut map = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        match resource_version {
            Some(v) => {
                map.insert(uid.to_string(), v.to_string());
            }
            None => {
                map.remove(uid);
            }
        }
    }

    /// Whether `resource_version` is the version this controller last wrote for `uid`.
    pub fn is_ours(&self, uid: &str, resource_version: Option<&str>) -> bool {
        let map = self.by_uid.lock().unwrap_or_else(|p| p.into_inner());
        resource_version.is_some_and(|v| map.get(uid).is_some_and(|w| w == v))
    }

    pub fn forget(&self, uid: &str) {
        self.by_uid.lock().unwrap_or_else(|p| p.into_inner()).remove(uid);
    }

    pub fn len(&self) -> usize {
        self.by_uid.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_version_we_wrote_is_trusted() {
        let w = WrittenVersions::default();
        assert!(!w.is_ours("u", Some("5")), "nothing written yet (a restart): read");
        w.record("u", Some("7"));
        assert!(w.is_ours("u", Some("7")));
        assert!(!w.is_ours("u", Some("6")), "a cache that lags behind our write");
        assert!(!w.is_ours("u", Some("8")), "someone else's change after ours");
        assert!(!w.is_ours("u", None) && !w.is_ours("other", Some("7")));
        w.forget("u");
        assert!(!w.is_ours("u", Some("7")) && w.is_empty());
    }
}
