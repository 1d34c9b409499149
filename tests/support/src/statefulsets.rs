//! The StatefulSet status faker: with no kubelet and no StatefulSet controller, it marks every
//! StatefulSet "rolled out at its generation" (observedGeneration, replicas, ready/updated/
//! available/current replicas, current = update revision). A test can pause it for its
//! namespace to hold a rollout mid-flight, then resume it. Nothing else is faked.

use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, ListParams, Patch, PatchParams};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the faker looks at StatefulSets.
pub const FAKER_PERIOD: Duration = Duration::from_millis(50);

#[derive(Debug, Default, Clone)]
pub struct StatefulSetFaker {
    paused: Arc<Mutex<HashSet<String>>>,
    passes: Arc<AtomicU64>,
}

impl StatefulSetFaker {
    /// Hold rollouts in `namespace`: its StatefulSets keep their current status.
    pub fn pause(&self, namespace: &str) {
        self.paused.lock().unwrap_or_else(|p| p.into_inner()).insert(namespace.to_string());
    }

    /// Let rollouts in `namespace` complete again.
    pub fn resume(&self, namespace: &str) {
        self.paused.lock().unwrap_or_else(|p| p.into_inner()).remove(namespace);
    }

    /// Completed passes over all StatefulSets; a test that paused a namespace waits for two
    /// more passes to know the faker has seen its change and left it alone.
    pub fn passes(&self) -> u64 {
        self.passes.load(Ordering::SeqCst)
    }

    fn is_paused(&self, namespace: &str) -> bool {
        self.paused.lock().unwrap_or_else(|p| p.into_inner()).contains(namespace)
    }

    /// The status a StatefulSet has once rolled out at its generation; `None` if it already has it.
    pub fn rolled_out_status(sts: &StatefulSet) -> Option<serde_json::Value> {
        let generation = sts.metadata.generation.unwrap_or(0);
        let replicas = sts.spec.replicas.unwrap_or(1);
        let revision = format!("{}-rev{generation}", sts.metadata.name.as_deref().unwrap_or("sts"));
        let want = serde_json::json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "readyReplicas": replicas,
            "updatedReplicas": replicas,
            "availableReplicas": replicas,
            "currentReplicas": replicas,
            "currentRevision": revision,
            "updateRevision": revision,
        });
        let have = sts.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or_default()).unwrap_or_default();
        let done = want.as_object().is_some_and(|w| w.iter().all(|(k, v)| have.get(k) == Some(v)));
        (!done).then_some(want)
    }

    /// Run forever on the current runtime.
    pub async fn run(self, client: kube::Client) {
        let all: Api<StatefulSet> = Api::all(client.clone());
        loop {
            if let Ok(list) = all.list(&ListParams::default()).await {
                for sts in list.items {
                    let (Some(ns), Some(name)) = (sts.metadata.namespace.clone(), sts.metadata.name.clone()) else { continue };
                    if self.is_paused(&ns) {
                        continue;
                    }
                    if let Some(status) = Self::rolled_out_status(&sts) {
                        let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
                        let patch = serde_json::json!({ "status": status });
                        let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch)).await;
                    }
                }
            }
            self.passes.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(FAKER_PERIOD).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_generation_and_replicas() {
        let mut sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "rpc", "generation": 3},
            "spec": {"replicas": 1, "selector": {}, "serviceName": "rpc", "template": {}}
        }))
        .unwrap();
        let want = StatefulSetFaker::rolled_out_status(&sts).expect("not rolled out yet");
        assert_eq!(want["observedGeneration"], 3);
        assert_eq!(want["readyReplicas"], 1);
        assert_eq!(want["updateRevision"], "rpc-rev3");
        sts.status = Some(serde_json::from_value(want).unwrap());
        assert_eq!(StatefulSetFaker::rolled_out_status(&sts), None, "already rolled out: no patch");
        sts.metadata.generation = Some(4);
        assert!(StatefulSetFaker::rolled_out_status(&sts).is_some(), "a new generation rolls out again");
    }

    #[test]
    fn pause_is_per_namespace() {
        let f = StatefulSetFaker::default();
        f.pause("a");
        assert!(f.is_paused("a") && !f.is_paused("b"));
        f.resume("a");
        assert!(!f.is_paused("a"));
    }
}
