//! Kubernetes label syntax (pure): what may reach a label selector. Used for label peer sources
//! (`node::observe`) and `--shard-selector` (`shard`). Test: `selectors_are_label_syntax_only`.

/// A label value: at most 63 characters, alphanumerics with `-`, `_`, `.` inside.
pub fn is_label_value(v: &str) -> bool {
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    v.is_empty()
        || (v.len() <= 63
            && v.chars().all(ok)
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

/// A label key: an optional DNS prefix and `/`, then a name like a value (not empty).
pub fn is_label_key(k: &str) -> bool {
    let (prefix, name) = k.rsplit_once('/').map_or((None, k), |(p, n)| (Some(p), n));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty() && p.len() <= 253 && p.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
    });
    prefix_ok && !name.is_empty() && is_label_value(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selectors_are_label_syntax_only() {
        for ok in ["app", "sei.io/node", "a-b_c.d"] {
            assert!(is_label_key(ok), "{ok}");
        }
        for bad in ["zzz!", "a,b", "", "a b", "/x", "a/"] {
            assert!(!is_label_key(bad), "{bad}");
        }
        assert!(is_label_value("") && is_label_value("v1.2") && !is_label_value("x,y=z") && !is_label_value("-a"));
    }
}
