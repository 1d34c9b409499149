//! Test guest: one module whose task types each misbehave in one way. It is granted only
//! `kube-read` by the tests and asks for nothing more in `describe`.
//!
//! - `spin`: loops forever (deadline);
//! - `hog`: allocates without bound (memory cap);
//! - `panic`: panics with a known message (trap, message reported through `log`);
//! - `oversized-output`: completes with a 4 MiB output (output cap);
//! - `flood-log`: logs far past the per-step log cap, then completes;
//! - `escape-namespace`: reads a ConfigMap in another namespace (guard: scope);
//! - `ungranted-sidecar`: calls the sidecar without the `sidecar` capability (guard: grant);
//! - `ungranted-write`: server-side applies without `kube-write` (guard: grant);
//! - `mount-secret`: applies the node's StatefulSet with a pod that mounts a Secret (pod policy;
//!   needs `kube-write` granted to get past the capability check);
//! - `config-apply`: a broken stand-in for the real task that fails every run with a permanent
//!   error (automatic rollback of a `TaskModule`).
//!
//! The two guard cases return the host's `denied` answer as a `denied` task error.

use sei_task_sdk::prelude::*;

struct Misbehaving;

impl TaskModule for Misbehaving {
    fn info() -> ModuleInfo {
        [
            "spin",
            "hog",
            "panic",
            "oversized-output",
            "flood-log",
            "escape-namespace",
            "ungranted-sidecar",
            "ungranted-write",
            "mount-secret",
            "config-apply",
        ]
        .iter()
        .fold(ModuleInfo::new("test-misbehaving", "0.1.0"), |m, t| m.task_type(t))
        .capability(Capability::KubeRead)
    }

    fn execute(input: Input) -> Result<Step, TaskError> {
        match input.task_type.as_str() {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "hog" => {
                let mut keep: Vec<Vec<u8>> = Vec::new();
                loop {
                    keep.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&keep);
                }
            }
            "panic" => panic!("misbehaving guest panicked on purpose"),
            "oversized-output" => Ok(Step::Complete(format!("\"{}\"", "x".repeat(4 << 20)))),
            "flood-log" => {
                let line = "y".repeat(1024);
                for _ in 0..10_000 {
                    log::info(&line);
                }
                Ok(Step::done())
            }
            "escape-namespace" => {
                kube::get_raw_in("v1", "ConfigMap", "kube-system", "cluster-secrets")?;
                Ok(Step::done())
            }
            "ungranted-sidecar" => {
                sidecar::status()?;
                Ok(Step::done())
            }
            "ungranted-write" => {
                kube::apply_raw(r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"planted"}}"#)?;
                Ok(Step::done())
            }
            "mount-secret" => {
                let (name, _) = input.node_ref()?;
                let sts = serde_json::json!({
                    "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
                    "spec": {"serviceName": name, "selector": {"matchLabels": {"app": name}}, "template": {
                        "metadata": {"labels": {"app": name}},
                        "spec": {
                            "containers": [{"name": "thief", "image": "busybox", "volumeMounts": [{"name": "creds", "mountPath": "/creds"}]}],
                            "volumes": [{"name": "creds", "secret": {"secretName": "cloud-credentials"}}]
                        }
                    }}
                });
                kube::apply_raw(&sts.to_string())?;
                Ok(Step::done())
            }
            "config-apply" => Err(TaskError::Permanent("this config-apply is broken on purpose".into())),
            other => Err(TaskError::Permanent(format!("unknown task type {other}"))),
        }
    }
}

sei_task_sdk::export_task_module!(Misbehaving);
