//! `task new`: the files of a new task module project, in Rust, Python or JavaScript.
//!
//! A Rust project carries its own copy of the SDK (`sdk/`) and of the WIT (`wit/task.wit`),
//! taken from this binary, so it builds with nothing but crates.io (no clone of this
//! repository); its `Cargo.lock` pins the SDK's dependencies to the versions this repository
//! builds with. A Python or JavaScript project carries the WIT and its build recipe.
//! Every project has `node.yaml` and `cases.yaml`, the cases `task test` runs.
//!
//! [`files`] is pure (`every_scaffold_names_its_module_and_task_type`).

use std::path::PathBuf;

/// A guest language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
}

/// The WIT this binary links (the same file the host's bindings are generated from).
pub const TASK_WIT: &str = include_str!("../../../wit/task.wit");

const SDK_FILES: &[(&str, &str)] = &[
    ("sdk/src/lib.rs", include_str!("../../../tasks-wasm/sdk/src/lib.rs")),
    ("sdk/src/host.rs", include_str!("../../../tasks-wasm/sdk/src/host.rs")),
    ("sdk/src/mock.rs", include_str!("../../../tasks-wasm/sdk/src/mock.rs")),
    ("sdk/src/kube.rs", include_str!("../../../tasks-wasm/sdk/src/kube.rs")),
    ("sdk/src/log.rs", include_str!("../../../tasks-wasm/sdk/src/log.rs")),
    ("sdk/src/sidecar.rs", include_str!("../../../tasks-wasm/sdk/src/sidecar.rs")),
    ("sdk/src/member_sidecars.rs", include_str!("../../../tasks-wasm/sdk/src/member_sidecars.rs")),
];

/// The lock file of this repository's guests: the new project resolves to the same versions
/// (cargo drops the entries it does not use).
const GUEST_LOCK: &str = include_str!("../../../tasks-wasm/Cargo.lock");

const SDK_MANIFEST: &str = r#"[package]
name = "sei-task-sdk"
description = "Write sei-operator task modules as small Rust functions (copied by `sei-operator task new`)"
edition = "2024"
license = "Apache-2.0"
version = "0.1.0"

[dependencies]
wit-bindgen = { version = "0.63.0", default-features = false, features = ["macros", "realloc", "std"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
k8s-openapi = { version = "0.29", features = ["latest"], optional = true }

[features]
default = []
# Typed Kubernetes helpers (get/apply/create/delete of k8s-openapi types); a cold build of
# k8s-openapi takes about a minute.
k8s = ["dep:k8s-openapi"]
"#;

const GITIGNORE: &str = "/target\n/build\n/node_modules\n/__pycache__\n";

/// The files of a new project, as (relative path, contents).
pub fn files(lang: Lang, name: &str, task_type: &str) -> Vec<(PathBuf, String)> {
    let fill = |t: &str| t.replace("__NAME__", name).replace("__TASK_TYPE__", task_type);
    let mut out: Vec<(PathBuf, String)> = vec![
        ("wit/task.wit".into(), TASK_WIT.to_string()),
        ("node.yaml".into(), include_str!("templates/common/node.yaml").to_string()),
        ("cases.yaml".into(), fill(include_str!("templates/common/cases.yaml"))),
        (".gitignore".into(), GITIGNORE.to_string()),
    ];
    match lang {
        Lang::Rust => {
            out.push(("Cargo.toml".into(), fill(include_str!("templates/rust/Cargo.toml"))));
            out.push(("Cargo.lock".into(), GUEST_LOCK.to_string()));
            out.push(("src/lib.rs".into(), fill(include_str!("templates/rust/lib.rs"))));
            out.push(("sdk/Cargo.toml".into(), SDK_MANIFEST.to_string()));
            for (path, text) in SDK_FILES {
                // The SDK finds the WIT at `../wit` in the project (`../../wit` in this repository).
                out.push(((*path).into(), text.replace("path: \"../../wit\"", "path: \"../wit\"")));
            }
        }
        Lang::Python => {
            out.push(("app/app.py".into(), fill(include_str!("templates/python/app.py"))));
        }
        Lang::Js => {
            out.push(("task.js".into(), fill(include_str!("templates/js/task.js"))));
        }
    }
    out.push(("README.md".into(), fill(&readme(lang))));
    out
}

fn readme(lang: Lang) -> String {
    let test = match lang {
        Lang::Rust => "cargo test                    # native tests against the SDK's mock host\n",
        _ => "",
    };
    format!(
        "# __NAME__\n\nA sei-operator task module implementing `__TASK_TYPE__` ({lang:?}).\n\n```sh\n\
         sei-operator task build .       # build the component, check it as the controller will\n\
         sei-operator task test          # run cases.yaml in the real sandbox\n{test}\
         sei-operator task run __TASK_TYPE__ -f node.yaml --module build/__NAME__.wasm --steps 4\n```\n\n\
         Hot-swap it into a cluster with a TaskModule: see the authoring guide (docs/authoring.md \
         in the sei-operator repository).\n"
    )
}

/// Is `name` usable as a module, crate and directory name (lowercase letters, digits, `-`)?
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scaffold_names_its_module_and_task_type() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let files = files(lang, "my-ready", "mark-ready");
            let all: String = files.iter().map(|(_, t)| t.as_str()).collect();
            assert!(!all.contains("__NAME__") && !all.contains("__TASK_TYPE__"), "{lang:?}: a placeholder is left");
            assert!(files.iter().any(|(p, t)| p.ends_with("cases.yaml") && t.contains("taskType: mark-ready")));
            assert!(files.iter().any(|(p, t)| p.ends_with("wit/task.wit") && t.contains("package sei:task@")));
        }
        let rust = files(Lang::Rust, "my-ready", "mark-ready");
        let sdk = &rust.iter().find(|(p, _)| p.ends_with("sdk/src/lib.rs")).unwrap().1;
        assert!(sdk.contains("path: \"../wit\"") && !sdk.contains("../../wit"));
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_name("my-ready"));
        for bad in ["", "My", "-a", "a-", "a_b", "a/b", "..", &"a".repeat(64)] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
