//! The StatefulSet status faker: with no kubelet and no StatefulSet controller, it marks every
//! StatefulSet "rolled out at its generation" (observedGeneration, replicas, ready/updated/
//! available/current replicas, current = update revision). A test can pause it for its
//! namespace to hold a rollout mid-flight, then resume it. Nothing else is faked.
//!
//! Driven by a watch (one request for all StatefulSets, then only their changes): an idle
//! StatefulSet costs it nothing, so it can serve a scale run of thousands.

use futures::StreamExt;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// (namespace, name).
type Key = (String, String);

#[derive(Debug, Default, Clone)]
pub struct StatefulSetFaker {
    paused: Arc<Mutex<HashSet<String>>>,
    /// The generation of each StatefulSet the faker has handled (acted on or left alone).
    seen: Arc<Mutex<HashMap<Key, i64>>>,
    /// Namespaces resumed since the faker last looked: their StatefulSets are settled again.
    resumed: Arc<Mutex<Vec<String>>>,
    wake: Arc<tokio::sync::Notify>,
}

impl StatefulSetFaker {
    /// Hold rollouts in `namespace`: its StatefulSets keep their current status.
    pub fn pause(&self, namespace: &str) {
        self.paused.lock().unwrap_or_else(|p| p.into_inner()).insert(namespace.to_string());
    }

    /// Let rollouts in `namespace` complete again (the ones held meanwhile too).
    pub fn resume(&self, namespace: &str) {
        self.paused.lock().unwrap_or_else(|p| p.into_inner()).remove(namespace);
        self.resumed.lock().unwrap_or_else(|p| p.into_inner()).push(namespace.to_string());
        self.wake.notify_one();
    }

    /// The last generation of `namespace/name` the faker has handled: a test that paused a
    /// namespace waits for it to know the faker has seen its change and left it alone.
    pub fn seen_generation(&self, namespace: &str, name: &str) -> Option<i64> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).get(&(namespace.to_string(), name.to_string())).copied()
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

    /// Roll `sts` out unless its namespace is paused; remember that it was handled.
    async fn settle(&self, client: &kube::Client, sts: &StatefulSet) {
        let (Some(ns), Some(name)) = (sts.metadata.namespace.clone(), sts.metadata.name.clone()) else { return };
        if !self.is_paused(&ns)
            && let Some(status) = Self::rolled_out_status(sts)
        {
            let api: Api<StatefulSet> = Api::namespaced(client.clone(), &ns);
            let _ = api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&serde_json::json!({ "status": status }))).await;
        }
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).insert((ns, name), sts.metadata.generation.unwrap_or(0));
    }

    /// Run forever on the current runtime.
    pub async fn run(self, client: kube::Client) {
        let (store, writer) = reflector::store::<StatefulSet>();
        let events = reflector(writer, watcher(Api::<StatefulSet>::all(client.clone()), watcher::Config::default())).default_backoff();
        let mut events = std::pin::pin!(events);
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Apply(sts) | watcher::Event::InitApply(sts))) => self.settle(&client, &sts).await,
                    Some(Ok(watcher::Event::Delete(sts))) => {
                        let key = (sts.metadata.namespace.unwrap_or_default(), sts.metadata.name.unwrap_or_default());
                        self.seen.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = self.wake.notified() => {
                    let namespaces: Vec<String> = std::mem::take(&mut *self.resumed.lock().unwrap_or_else(|p| p.into_inner()));
                    for sts in store.state() {
                        if namespaces.iter().any(|ns| sts.metadata.namespace.as_deref() == Some(ns.as_str())) {
                            self.settle(&client, &sts).await;
                        }
                    }
                }
            }
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
