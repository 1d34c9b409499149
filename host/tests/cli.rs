//! The `sei-operator` binary as a user runs it: `task run` applies exactly the controller's
//! rules (the node's uid as the owner of every write, its pod labels, the platform's placement)
//! and prints guest text escaped; `plan` previews a group.

mod author;

use author::node_file;
use std::process::Command;

fn sei_operator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sei-operator"))
}

fn misbehaving() -> String {
    sei_operator::embedded::test_guest_path("test-misbehaving").display().to_string()
}

#[test]
fn task_run_applies_the_controllers_ownership_rule() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let object = |owners: serde_json::Value| {
        serde_json::json!({"object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rpc", "ownerReferences": owners}}})
            .to_string()
    };
    let run = |params: String| {
        sei_operator()
            .args(["task", "run", "apply-object", "-f"])
            .arg(&node)
            .args(["--module", &misbehaving(), "--grant", "kube-read,kube-write", "--params", &params])
            .output()
            .unwrap()
    };
    let refused = run(object(serde_json::json!([])));
    let stdout = String::from_utf8_lossy(&refused.stdout);
    assert_eq!(refused.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("must be owned by SeiNode rpc (uid 7f0c2a4e-0000-4000-8000-0000000000aa)"), "{stdout}");
    assert!(stdout.contains("objects in the in-memory cluster: 0"), "{stdout}");
    let owner = serde_json::json!([{"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "name": "rpc", "uid": "7f0c2a4e-0000-4000-8000-0000000000aa"}]);
    let written = run(object(owner));
    let stdout = String::from_utf8_lossy(&written.stdout);
    assert_eq!(written.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("objects in the in-memory cluster: 1"), "{stdout}");
    assert!(
        stdout.contains("budgets: 2 of 64 host calls, 0 of 10000 log calls; deadline 30000 ms"),
        "the limits in force are printed: {stdout}"
    );
    assert!(stdout.contains("kube apply ×1"), "host calls are counted by kind: {stdout}");
    assert!(stdout.contains("get v1/ConfigMap sei/rpc (owner check)"), "the owner check is traced: {stdout}");
}

#[test]
fn task_run_escapes_guest_text() {
    let dir = tempfile::tempdir().unwrap();
    let node = node_file(dir.path());
    let out = sei_operator()
        .args(["task", "run", "forge", "-f"])
        .arg(&node)
        .args(["--module", &misbehaving(), "--grant", "kube-read", "--params", "{}"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.contains('\u{1b}'), "a terminal escape reached the terminal: {text:?}");
        assert!(!text.lines().any(|l| l.starts_with("2026-11-30T00:00:00")), "a forged line reached the terminal: {text}");
    }
    assert!(stdout.contains("forged line\\u{1b}[2J"), "{stdout}");
}

#[test]
fn plan_previews_a_group_as_json_with_its_genesis_and_rollout_plans() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/samples/genesis-group.yaml");
    let out = sei_operator().args(["plan", "--json", "-f", sample]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plans: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let types =
        |p: &serde_json::Value| p["tasks"].as_array().unwrap().iter().map(|t| t["type"].as_str().unwrap().to_string()).collect::<Vec<_>>();
    assert_eq!(types(&plans[0]), ["assemble-and-upload-genesis", "await-nodes-running", "collect-and-set-peers"]);
    assert_eq!(plans[0]["tasks"][0]["params"]["nodes"].as_array().unwrap().len(), 4, "one validator per replica");
    let rollout = types(&plans[1]);
    assert_eq!(rollout.iter().filter(|t| *t == "update-node-specs").count(), 4, "maxUnavailable 1: one node a batch: {rollout:?}");
    let text = sei_operator().args(["plan", "-f", sample]).output().unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(stdout.contains("SeiNodeDeployment sei-demo: children sei-demo-0, sei-demo-1, sei-demo-2, sei-demo-3"), "{stdout}");
    assert!(stdout.contains("genesis plan of SeiNodeDeployment sei-demo"), "{stdout}");
}
