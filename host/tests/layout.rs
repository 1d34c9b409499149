//! The import graph of `host/src`, checked: no cycle between files, and every import between
//! top-level modules points down the layers of `lib.rs`:
//!
//! shared (`api`, `wit`, `text`, `failpoint`, `conditions`, `platform`, `embedded`, `release_tag`, `labels`) < `adapters`,
//! `plan_step`, `shard` <
//! `policy` < `sandbox` < `registry` < `telemetry` < `executor` < controllers (`node`, `group`, `taskmodule`, `leader`,
//! which do not import each other) < `operator`, `crds`, `authoring`. The binary (`main.rs`, `cli/`) sits on top.
//!
//! How: every `crate::…` and `super::…` path in a file (comments stripped; `use` groups in braces
//! expanded) is resolved to the deepest module file it names; `mod` declarations are containment,
//! not imports. A `pub use` in a `mod.rs` is an import of its child, so a child that names its
//! parent's re-export closes a cycle and is reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERS: &[(&str, u32)] = &[
    ("api", 0),
    ("wit", 0),
    ("text", 0),
    ("failpoint", 0),
    ("conditions", 0),
    ("platform", 0),
    ("embedded", 0),
    ("release_tag", 0),
    ("labels", 0),
    ("adapters", 1),
    ("plan_step", 1),
    ("shard", 1),
    ("policy", 2),
    ("sandbox", 3),
    ("registry", 4),
    ("telemetry", 5),
    ("executor", 6),
    ("node", 7),
    ("group", 7),
    ("taskmodule", 7),
    ("leader", 7),
    ("operator", 8),
    ("crds", 8),
    ("authoring", 8),
];

/// Module path (`["node", "reconcile"]`) → file, for every library file but `lib.rs`.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "cli") {
                    stack.push(path);
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).unwrap();
            let mut segs: Vec<String> = rel.iter().map(|s| s.to_string_lossy().trim_end_matches(".rs").to_string()).collect();
            if segs.last().is_some_and(|s| s == "mod") {
                segs.pop();
            }
            if segs == ["lib"] || segs == ["main"] {
                continue;
            }
            out.insert(segs, path);
        }
    }
    out
}

fn strip_comments(text: &str) -> String {
    text.lines().map(|l| l.find("//").map_or(l, |i| &l[..i])).collect::<Vec<_>>().join("\n")
}

fn ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths at the start of `s`: `a::b::c`, or a group `a::{b, c::{d, e}}` expanded.
fn paths_from(s: &str) -> Vec<Vec<String>> {
    let mut segs = Vec::new();
    let mut rest = s;
    loop {
        let n = rest.find(|c: char| !ident_char(c)).unwrap_or(rest.len());
        if n > 0 {
            segs.push(rest[..n].to_string());
        }
        rest = &rest[n..];
        let Some(after) = rest.strip_prefix("::") else { return vec![segs] };
        rest = after;
        let Some(group) = rest.strip_prefix('{') else { continue };
        let mut out = Vec::new();
        let (mut depth, mut item_start) = (0, 0);
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth > 0 => depth -= 1,
                ',' | '}' if depth == 0 => {
                    for sub in paths_from(group[item_start..i].trim()) {
                        let mut full = segs.clone();
                        full.extend(sub);
                        out.push(full);
                    }
                    if c == '}' {
                        return out;
                    }
                    item_start = i + 1;
                }
                _ => {}
            }
        }
        return out;
    }
}

/// The deepest module of `path` (a module path, maybe followed by items).
fn resolve(path: &[String], known: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (1..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| known.contains_key(p))
}

fn imports(module: &[String], file: &Path, known: &BTreeMap<Vec<String>, PathBuf>) -> BTreeSet<Vec<String>> {
    let text = strip_comments(&std::fs::read_to_string(file).unwrap());
    // `super` of the module `a::b` (file `a/b.rs` or `a/b/mod.rs`) is the module `a`.
    let parent: Vec<String> = module[..module.len().saturating_sub(1)].to_vec();
    let mut out = BTreeSet::new();
    for (prefix, base) in [("crate::", Vec::new()), ("super::", parent)] {
        let mut from = 0;
        while let Some(pos) = text[from..].find(prefix) {
            let at = from + pos;
            from = at + prefix.len();
            if at > 0 && text[..at].chars().next_back().is_some_and(|c| ident_char(c) || c == ':') {
                continue;
            }
            for tail in paths_from(&text[from..]) {
                if tail.first().is_some_and(|s| s == "self") && tail.len() == 1 {
                    continue;
                }
                let mut full = base.clone();
                full.extend(tail.into_iter().filter(|s| s != "self"));
                // Unresolved: an item of the crate root (`lib.rs`), which only declares modules.
                if let Some(target) = resolve(&full, known)
                    && target != module
                {
                    out.insert(target);
                }
            }
        }
    }
    out
}

fn rank(module: &[String]) -> u32 {
    LAYERS.iter().find(|(m, _)| *m == module[0]).map(|(_, r)| *r).unwrap_or_else(|| panic!("{} has no layer in tests/layout.rs", module[0]))
}

#[test]
fn import_graph_has_no_cycle_and_points_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let known = modules(&src);
    let graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = known.iter().map(|(m, f)| (m.clone(), imports(m, f, &known))).collect();

    let mut upward = Vec::new();
    for (from, tos) in &graph {
        for to in tos {
            if from[0] != to[0] && rank(from) <= rank(to) {
                upward.push(format!("{} -> {}", from.join("::"), to.join("::")));
            }
        }
    }
    assert!(upward.is_empty(), "imports that do not point down a layer:\n{}", upward.join("\n"));

    // Cycles: depth-first search with colours.
    fn visit(
        m: &Vec<String>,
        graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
        cycles: &mut Vec<String>,
    ) {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for n in graph.get(m).into_iter().flatten() {
            match state.get(n).copied().unwrap_or(0) {
                0 => visit(n, graph, state, stack, cycles),
                1 => {
                    let at = stack.iter().position(|s| s == n).unwrap_or(0);
                    let cycle: Vec<String> = stack[at..].iter().chain([n]).map(|p| p.join("::")).collect();
                    cycles.push(cycle.join(" -> "));
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
    }
    let mut state = BTreeMap::new();
    let mut cycles = Vec::new();
    for m in graph.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            visit(m, &graph, &mut state, &mut Vec::new(), &mut cycles);
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
    assert!(graph.len() > 40, "the checker found the modules ({})", graph.len());
}

#[test]
fn the_checker_sees_paths_in_groups() {
    let known: BTreeMap<Vec<String>, PathBuf> = [vec!["a"], vec!["a", "b"], vec!["a", "c"], vec!["d"]]
        .into_iter()
        .map(|p| (p.into_iter().map(String::from).collect(), PathBuf::new()))
        .collect();
    let text = "use crate::a::{b::X, c::{Y, Z}, W};\nlet v = crate::d::f();";
    let found: BTreeSet<Vec<String>> = paths_from(&text[text.find("crate::").unwrap() + 7..])
        .into_iter()
        .chain(paths_from(&text[text.rfind("crate::").unwrap() + 7..]))
        .filter_map(|p| resolve(&p, &known))
        .collect();
    let want: BTreeSet<Vec<String>> =
        [vec!["a", "b"], vec!["a", "c"], vec!["a"], vec!["d"]].into_iter().map(|p| p.into_iter().map(String::from).collect()).collect();
    assert_eq!(found, want);
}
