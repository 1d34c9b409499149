//! Sharding SeiNodes across controllers by a label selector (as Argo CD shards its application
//! controller): a controller started with `--shard-selector` watches and reconciles only the
//! SeiNodes and SeiNodeDeployments whose labels match it, so several controllers (each with its
//! own selector, disjoint from the others) split one cluster's nodes between them. Pure: the
//! selector's syntax, the label selector each watch uses, and the Lease name per shard.
//!
//! Invariants (unit tests below): only Kubernetes label-selector syntax is accepted, so a typo is
//! an error at start-up, not a watch that fails forever (`selectors_are_checked`); a shard with
//! leader election gets a Lease of its own, named as the Helm chart names it in its Role
//! (`each_shard_has_its_own_lease`; the chart and the binary agree: `tests/shards.rs`).
//! On the real control plane: `tests/shards.rs`.

use crate::labels::{is_label_key, is_label_value};

/// A checked `--shard-selector`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSelector(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("--shard-selector `{selector}`: {why} (label-selector syntax: `shard=a`, `shard in (a,b)`, `!legacy`, comma separated)")]
pub struct InvalidShardSelector {
    pub selector: String,
    pub why: String,
}

/// Split at commas outside parentheses.
fn requirements(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0i32, 0);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn check_requirement(r: &str) -> Result<(), String> {
    let r = r.trim();
    if let Some(key) = r.strip_prefix('!') {
        return if is_label_key(key.trim()) { Ok(()) } else { Err(format!("`{key}` is not a label key")) };
    }
    for op in [" notin ", " in "] {
        if let Some((key, set)) = r.split_once(op) {
            let set = set.trim();
            let inner =
                set.strip_prefix('(').and_then(|s| s.strip_suffix(')')).ok_or_else(|| format!("`{set}` is not a (value, ...) set"))?;
            if !is_label_key(key.trim()) {
                return Err(format!("`{}` is not a label key", key.trim()));
            }
            return match inner.split(',').map(str::trim).find(|v| v.is_empty() || !is_label_value(v)) {
                Some(v) => Err(format!("`{v}` is not a label value")),
                None => Ok(()),
            };
        }
    }
    for op in ["!=", "==", "="] {
        if let Some((key, value)) = r.split_once(op) {
            return match (is_label_key(key.trim()), is_label_value(value.trim())) {
                (false, _) => Err(format!("`{}` is not a label key", key.trim())),
                (_, false) => Err(format!("`{}` is not a label value", value.trim())),
                _ => Ok(()),
            };
        }
    }
    if is_label_key(r) { Ok(()) } else { Err(format!("`{r}` is not a label requirement")) }
}

impl ShardSelector {
    pub fn parse(selector: &str) -> Result<Self, InvalidShardSelector> {
        let fail = |why: String| InvalidShardSelector { selector: crate::text::safe(selector, 200), why };
        if selector.trim().is_empty() {
            return Err(fail("empty: leave the flag out to reconcile every node".into()));
        }
        for r in requirements(selector) {
            check_requirement(r).map_err(fail)?;
        }
        Ok(Self(selector.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The label selector of a watch that must also select `base` (e.g. the group label): both,
/// comma separated.
pub fn combined(base: Option<&str>, shard: Option<&ShardSelector>) -> Option<String> {
    match (base, shard) {
        (None, None) => None,
        (Some(b), None) => Some(b.to_string()),
        (None, Some(s)) => Some(s.0.clone()),
        (Some(b), Some(s)) => Some(format!("{b},{}", s.0)),
    }
}

/// The Lease of a shard: `name` and the first 8 hex digits of the selector's sha256 (as written,
/// the way the Helm chart's `sei-operator.leaseName` derives it for its Role), so that
/// controllers of different shards never wait on one Lease; `name` itself without a shard.
pub fn lease_name(name: &str, shard: Option<&ShardSelector>) -> String {
    use sha2::Digest;
    match shard {
        Some(s) => format!("{name}-{}", &hex::encode(sha2::Sha256::digest(s.0.as_bytes()))[..8]),
        None => name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_checked() {
        for ok in [
            "shard=a",
            "shard==a",
            "shard!=a",
            "sei.io/shard=b",
            "shard in (a, b)",
            "shard notin (c)",
            "!legacy",
            "tier",
            "a=1,b in (x,y),!c",
        ] {
            assert!(ShardSelector::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", " ", "shard=a b", "shard in a", "shard in ()", "=a", "sha rd=a", "shard=(a)", "Shard.IO/x=y", "a,,b"] {
            let e = ShardSelector::parse(bad).unwrap_err();
            assert!(e.to_string().contains("--shard-selector"), "{bad}: {e}");
        }
        assert_eq!(ShardSelector::parse("a=1, b=2").unwrap().as_str(), "a=1, b=2", "kept as written (the Lease name hashes it)");
    }

    #[test]
    fn watches_combine_their_selector_with_the_shard() {
        let s = ShardSelector::parse("shard=a").unwrap();
        assert_eq!(combined(Some("sei.io/nodedeployment"), Some(&s)).as_deref(), Some("sei.io/nodedeployment,shard=a"));
        assert_eq!(combined(None, Some(&s)).as_deref(), Some("shard=a"));
        assert_eq!(combined(Some("x"), None).as_deref(), Some("x"));
        assert_eq!(combined(None, None), None);
    }

    #[test]
    fn each_shard_has_its_own_lease() {
        let (a, b) = (ShardSelector::parse("shard=a").unwrap(), ShardSelector::parse("shard=b").unwrap());
        let d = "sei-operator-leader";
        let (la, lb) = (lease_name(d, Some(&a)), lease_name(d, Some(&b)));
        // sha256("shard=a") starts with these digits (`printf shard=a | sha256sum`), as Helm's sha256sum.
        assert_eq!(la, format!("{d}-{}", &hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"shard=a"))[..8]));
        assert!(la.len() == d.len() + 9 && la != lb, "{la} {lb}");
        assert_eq!(lease_name(d, None), d);
    }
}
