//! The author kit as a new author uses it, with no cluster: `task new` outside the repository,
//! `task build`, native `cargo test` against the SDK's mock host, `task test`; `task run`'s exit
//! codes, grants and hints; record and replay with a diff; the figures a report shows.

mod author;

use author::{expect_code, new_and_build, node_file, project_dir, sei_operator, stdout};
use sei_operator::embedded::{test_guest_core_path, test_guest_path};
use std::path::Path;

fn well_behaved() -> String {
    test_guest_path("test-well-behaved").display().to_string()
}

/// The write the edited scaffold makes before it completes.
const CONFIGMAP_WRITE: &str = r#"
                let cm = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": name, "ownerReferences": [input.owner_reference()?]},
                    "data": {"ready": "VALUE"}});
                kube::apply_raw(&cm.to_string())?;
                let status = sidecar::status()?;"#;

fn edit_scaffold(dir: &Path, value: &str) {
    let lib = dir.join("src/lib.rs");
    let text = std::fs::read_to_string(&lib).unwrap();
    let text = text
        .replace("\n                let status = sidecar::status()?;", &CONFIGMAP_WRITE.replace("VALUE", value))
        .replace(".capability(Capability::KubeRead)", ".capability(Capability::KubeRead).capability(Capability::KubeWrite)");
    assert!(text.contains(value));
    std::fs::write(lib, text).unwrap();
}

#[test]
fn a_rust_scaffold_builds_tests_and_replays_with_a_diff_of_its_writes() {
    let (dir, component) = new_and_build("my-ready", "rust");
    // Native tests of the guest reach the SDK's mock host.
    let native = expect_code(
        std::process::Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", author::guest_target())
            .args(["test", "--quiet"]),
        0,
    );
    assert!(stdout(&native).contains("2 passed"), "{}", stdout(&native));
    author::cases_pass(&dir);

    // The same source in another directory gives the same sha256.
    let copy = project_dir("my-ready-copy");
    for rel in ["Cargo.toml", "Cargo.lock", "src/lib.rs", "wit/task.wit", "sdk/Cargo.toml"] {
        std::fs::create_dir_all(copy.join(rel).parent().unwrap()).unwrap();
        std::fs::copy(dir.join(rel), copy.join(rel)).unwrap();
    }
    std::fs::create_dir_all(copy.join("sdk/src")).unwrap();
    for f in std::fs::read_dir(dir.join("sdk/src")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, copy.join("sdk/src").join(f.file_name().unwrap())).unwrap();
    }
    expect_code(sei_operator().args(["task", "build"]).arg(&copy).arg("-o").arg(copy.join("copy.wasm")), 0);
    assert_eq!(std::fs::read(copy.join("copy.wasm")).unwrap(), component, "the same source builds to the same bytes elsewhere");

    // Version 1 writes a ConfigMap; record a run of it.
    edit_scaffold(&dir, "yes");
    expect_code(sei_operator().args(["task", "build"]).arg(&dir), 0);
    let objects = dir.join("objects.yaml");
    std::fs::write(&objects, "- {apiVersion: apps/v1, kind: StatefulSet, metadata: {name: node-0}}\n").unwrap();
    let recording = dir.join("recording.json");
    let module = dir.join("build/my-ready.wasm");
    let run = expect_code(
        sei_operator()
            .current_dir(&dir)
            .args(["task", "run", "mark-ready", "-f", "node.yaml", "--steps", "3", "--objects"])
            .arg(&objects)
            .arg("--module")
            .arg(&module)
            .arg("--record")
            .arg(&recording),
        0,
    );
    assert!(stdout(&run).contains("kind: ConfigMap"), "{}", stdout(&run));
    let same = expect_code(sei_operator().args(["task", "replay"]).arg(&recording).arg("--module").arg(&module), 0);
    assert!(stdout(&same).contains("no difference"), "{}", stdout(&same));

    // Version 2 writes another value: the replay names the changed field of that write.
    let lib = dir.join("src/lib.rs");
    std::fs::write(&lib, std::fs::read_to_string(&lib).unwrap().replace(r#""ready": "yes""#, r#""ready": "true""#)).unwrap();
    expect_code(sei_operator().args(["task", "build"]).arg(&dir), 0);
    let changed = expect_code(sei_operator().args(["task", "replay"]).arg(&recording).arg("--module").arg(&module), 1);
    let text = stdout(&changed);
    assert!(text.contains("~ kube create v1/ConfigMap default/node-0 (changed: /data/ready)"), "{text}");
    assert!(text.contains("differ from the recording"), "{text}");
}

#[test]
fn a_builtin_tasks_recording_replays_with_no_difference() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let recording = dir.path().join("rec.json");
    let run = expect_code(sei_operator().args(["task", "run", "ensure-data-pvc", "-f"]).arg(&node).arg("--record").arg(&recording), 0);
    assert!(stdout(&run).contains("PersistentVolumeClaim"), "{}", stdout(&run));
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&recording).unwrap()).unwrap();
    let calls: Vec<&str> = rec["exchanges"].as_array().unwrap().iter().map(|e| e["call"]["call"].as_str().unwrap()).collect();
    assert!(calls.contains(&"create"), "the PVC's create is recorded: {calls:?}");
    let replay = expect_code(sei_operator().args(["task", "replay"]).arg(&recording), 0);
    assert!(stdout(&replay).contains("no difference"), "{}", stdout(&replay));

    // A recording is a file from someone else: its fields are checked before use (hostile review).
    let forged = |field: &str, value: serde_json::Value, refusal: &str| {
        let mut bad = rec.clone();
        bad[field] = value;
        let path = dir.path().join(format!("bad-{field}.json"));
        std::fs::write(&path, bad.to_string()).unwrap();
        let out = expect_code(sei_operator().args(["task", "replay"]).arg(&path), 1);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(err.contains(refusal) && !err.contains('\u{1b}') && out.stdout.is_empty(), "{field}: {err}");
    };
    forged("moduleDigest", serde_json::json!("\u{1b}[2Jabcdefghijkl"), "moduleDigest is not a sha256");
    forged("steps", serde_json::json!(u32::MAX), "at most 1000 steps");
    let too_many = vec!["complete"; rec["steps"].as_u64().unwrap() as usize + 1];
    forged("outcomes", serde_json::json!(too_many), "at most one outcome per step");
}

#[test]
fn run_exit_codes_say_complete_pending_or_failed() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let run = |args: &[&str]| {
        let mut cmd = sei_operator();
        cmd.args(["task", "run"]).args(args).arg("-f").arg(&node).args(["--module", &well_behaved(), "--grant", "kube-read"]);
        cmd
    };
    // A custom task type needs no params flag: `{}` is what it gets.
    expect_code(&mut run(&["noop"]), 0);
    let pending = expect_code(&mut run(&["count", "--params", r#"{"steps": 3}"#, "--steps", "2"]), 3);
    assert!(stdout(&pending).contains("still pending after 2 steps"), "{}", stdout(&pending));
    expect_code(&mut run(&["count", "--params", r#"{"steps": 3}"#, "--steps", "3"]), 0);
    expect_code(&mut run(&["count", "--params", r#"{"steps": "x"}"#]), 2);
}

#[test]
fn an_empty_grant_can_be_said_and_is_enforced() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let out = expect_code(
        sei_operator().args(["task", "run", "noop", "-f"]).arg(&node).args(["--module", &well_behaved(), "--grant", "none"]),
        1,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("asks for capabilities it was not granted: kube-read"),
        "`none` is understood, and grants nothing the module asks for: {err}"
    );
}

#[test]
fn a_core_module_gets_a_hint_instead_of_a_parser_error() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let core = test_guest_core_path("test_guest_well_behaved");
    let out = expect_code(sei_operator().args(["task", "run", "noop", "-f"]).arg(&node).arg("--module").arg(&core), 1);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("is a core wasm module, not a component") && err.contains("task build"), "{err}");
    assert!(!err.contains("backtrace") && !err.contains("component parser"), "{err}");
}

fn figures_of(node: &Path, pad: usize) -> (u64, u64) {
    let params = serde_json::json!({"steps": 1, "pad": "x".repeat(pad)}).to_string();
    let out = expect_code(
        sei_operator().args(["task", "run", "count", "-f"]).arg(node).args(["--module", &well_behaved(), "--json", "--params", &params]),
        0,
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let f = &json["steps"][0]["figures"];
    (f["fuel"].as_u64().unwrap(), f["peakMemoryBytes"].as_u64().unwrap())
}

#[test]
fn the_report_shows_more_fuel_and_memory_for_more_work() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let (small_fuel, small_memory) = figures_of(&node, 10);
    // Params of 100 KB: the module copies them in and parses them.
    let (big_fuel, big_memory) = figures_of(&node, 100_000);
    assert!(big_fuel > small_fuel * 5, "fuel {small_fuel} → {big_fuel}");
    assert!(big_memory >= small_memory + 100_000, "peak memory {small_memory} → {big_memory}");
}
