//! Playing a new task author: projects made by `sei-operator task new` in a directory outside
//! this repository, built and tested by the CLI as an author would run it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn sei_operator() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sei-operator"));
    // The authors' guests get a target directory of their own next to this repository's guests
    // (cached between runs, never the outer build's).
    cmd.env("CARGO_TARGET_DIR", guest_target());
    for (k, v) in componentizers() {
        cmd.env(k, v);
    }
    cmd
}

/// The pinned Python and JavaScript componentizers (`tests/author-tools/install.sh` installs
/// them into the cache once): `SEI_COMPONENTIZE_PY` and `SEI_COMPONENTIZE_JS`.
pub fn componentizers() -> &'static [(String, String)] {
    static TOOLS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();
    TOOLS.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/author-tools/install.sh");
        let out = Command::new("bash").arg(&script).output().unwrap();
        assert!(out.status.success(), "{} failed:\n{}", script.display(), String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// Where the authors' cargo builds go.
pub fn guest_target() -> PathBuf {
    Path::new(sei_operator::embedded::TEST_GUESTS_DIR).join("..").join("..").join("author-kit")
}

/// A fresh project directory outside this repository (the same path every run, so cargo's
/// cache is reused).
pub fn project_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join("sei-author-kit").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    assert!(!dir.starts_with(env!("CARGO_MANIFEST_DIR")), "the project is outside the repository");
    dir
}

/// A SeiNode manifest (`rpc` in namespace `sei`, with a uid) written to `dir/node.yaml`.
pub fn node_file(dir: &Path) -> PathBuf {
    let path = dir.join("node.yaml");
    std::fs::write(
        &path,
        "apiVersion: sei.io/v1alpha1\nkind: SeiNode\nmetadata: {name: rpc, namespace: sei, uid: 7f0c2a4e-0000-4000-8000-0000000000aa}\n\
         spec: {chainId: pacific-1, image: 'seid:v1', fullNode: {}}\n",
    )
    .unwrap();
    path
}

/// Run a command; panic with its output unless it exits with `code`.
pub fn expect_code(cmd: &mut Command, code: i32) -> Output {
    let out = cmd.output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(code),
        "{cmd:?}\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `task new NAME --lang LANG` then `task build`: the project directory and the component.
pub fn new_and_build(name: &str, lang: &str) -> (PathBuf, Vec<u8>) {
    let dir = project_dir(name);
    expect_code(sei_operator().args(["task", "new", name, "--lang", lang, "--dir"]).arg(&dir), 0);
    let built = expect_code(sei_operator().args(["task", "build"]).arg(&dir), 0);
    let text = stdout(&built);
    assert!(text.contains("loads in the controller's pipeline"), "{text}");
    let component = std::fs::read(dir.join("build").join(format!("{name}.wasm"))).unwrap();
    let sha = sei_operator::sandbox::cache::sha256_hex(&component);
    assert!(text.contains(&sha), "build prints the digest: {text}");
    (dir, component)
}

/// `task test` in the project: every scaffold case passes.
pub fn cases_pass(dir: &Path) -> String {
    let out = expect_code(sei_operator().current_dir(dir).args(["task", "test"]), 0);
    let text = stdout(&out);
    assert!(text.contains("4 cases, 4 passed, 0 failed"), "{text}");
    text
}
