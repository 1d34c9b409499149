//! A swap while a step is in flight: the step is held inside a host call (a `kube get` that
//! waits for the test), the registry swaps the module, and the held step finishes on the module
//! it started with while the next step runs the new one.

use async_trait::async_trait;
use sei_operator::adapters::kube::{KubeAdapter, KubeAdapterError, ListLimits, Listed, TypeRef};
use sei_operator::embedded::test_guest_path;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::policy::scope::Scope;
use sei_operator::registry::{ModuleEntry, ModuleSource, TaskRegistry};
use sei_operator::release_tag::with_custom_section;
use sei_operator::sandbox::cache::sha256_hex;
use sei_operator::sandbox::{ModuleGrant, RunEnv, RunInput, Sandbox, SandboxConfig};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// A Kubernetes whose first `get` waits until released.
#[derive(Default)]
struct HeldKube {
    entered: Notify,
    release: Notify,
    held: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl KubeAdapter for HeldKube {
    async fn get(&self, _: &TypeRef, _: &str, _: &str) -> Result<Option<String>, KubeAdapterError> {
        if !self.held.swap(true, std::sync::atomic::Ordering::SeqCst) {
            self.entered.notify_one();
            self.release.notified().await;
        }
        Ok(None)
    }
    async fn list(&self, _: &TypeRef, _: &str, _: Option<&str>, _: ListLimits) -> Listed {
        Listed { result: Ok(vec![]), requests: 1 }
    }
    async fn create(&self, _: &TypeRef, _: &str, o: Value, _: &str) -> Result<String, KubeAdapterError> {
        Ok(o.to_string())
    }
    async fn apply(&self, _: &TypeRef, _: &str, _: &str, o: Value, _: &str) -> Result<String, KubeAdapterError> {
        Ok(o.to_string())
    }
    async fn delete(&self, _: &TypeRef, _: &str, _: &str, _: Option<&str>) -> Result<bool, KubeAdapterError> {
        Ok(true)
    }
}

fn input() -> RunInput {
    RunInput {
        task_type: "kube-get-loop".into(),
        task_id: "7f0c2a4e-0000-5000-8000-000000000002".into(),
        plan_id: "plan-1".into(),
        node: serde_json::json!({"apiVersion":"sei.io/v1alpha1","kind":"SeiNode","metadata":{"name":"rpc","namespace":"sei","uid":"u1"},"spec":{}})
            .to_string(),
        params: r#"{"n":1,"name":"rpc"}"#.into(),
        checkpoint: None,
        attempt: 1,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_in_flight_finishes_on_its_module_and_the_next_runs_the_new_one() {
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    let registry = Arc::new(TaskRegistry::new());
    let base = std::fs::read(test_guest_path("test-well-behaved")).unwrap();
    let (v1, v2) = (with_custom_section(&base, "v", b"1"), with_custom_section(&base, "v", b"2"));
    let grant = || ModuleGrant::new(Grants::new([CapabilityName::KubeRead]));
    let source = ModuleSource::TaskModule { name: "get-loop".into() };
    let types = vec!["kube-get-loop".to_string()];
    registry.install_exclusive(&types, ModuleEntry::new(source.clone(), sandbox.load_module(&v1, grant()).await.unwrap())).unwrap();

    let kube = Arc::new(HeldKube::default());
    let env = RunEnv { scope: Scope::for_node("sei", "rpc"), kube: kube.clone(), sidecar: None, members: None };
    let entry = registry.resolve("kube-get-loop").unwrap();
    let in_flight = {
        let (sandbox, env) = (sandbox.clone(), env.clone());
        tokio::spawn(async move { sandbox.run(&entry.module, input(), &env).await })
    };
    tokio::time::timeout(Duration::from_secs(10), kube.entered.notified()).await.expect("the step reaches its kube get");

    registry.install_exclusive(&types, ModuleEntry::new(source, sandbox.load_module(&v2, grant()).await.unwrap())).unwrap();
    assert_eq!(*registry.resolve("kube-get-loop").unwrap().module.digest, *sha256_hex(&v2), "the swap is visible at once");
    assert!(!in_flight.is_finished(), "the first step is still held in its host call");

    kube.release.notify_one();
    let held = in_flight.await.unwrap();
    assert!(held.outcome.is_ok(), "{:?}", held.outcome);
    assert_eq!(held.module_digest, sha256_hex(&v1), "the step in flight finished on the module it started with");

    let next = registry.resolve("kube-get-loop").unwrap();
    let report = sandbox.run(&next.module, input(), &env).await;
    assert!(report.outcome.is_ok(), "{:?}", report.outcome);
    assert_eq!(report.module_digest, sha256_hex(&v2), "the next step runs the new module");
}
