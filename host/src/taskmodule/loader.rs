//! The `TaskModule` loader: every controller replica watches `TaskModule`s and, for each one,
//! carries out what `decide.rs` decided: runs the load pipeline (refuse a task type another
//! TaskModule serves → fetch → the sandbox's load: verify sha256, compile or load from the
//! precompiled cache, pre-instantiate, memory check, `describe` against the declared task types
//! and the grant → atomic swap in the `TaskRegistry`), writes its own entry of `status.replicas`
//! (server-side apply, field manager `sei-operator/<replica>`), publishes Events, counts loads,
//! starts retry timers, and reports the automatic rollbacks the registry carried out.
//!
//! Invariants (integration tests in `tests/task_modules.rs` on the real control plane; the
//! decisions are table-tested in `decide.rs`):
//! - a module that fails any step never becomes active; what served before keeps serving and the
//!   reason is in `Rejected` and in a Warning event (`rejected_modules_leave_the_old_one_serving`);
//! - a swap is one registry store: runs in flight finish on the entry they hold, the next step of
//!   every plan uses the new module (`swap_under_load_fails_no_task`; the in-flight half is
//!   `tests/registry_swap.rs`);
//! - a deleted TaskModule hands its task types back to the module below it, on every replica
//!   (`deleting_the_task_module_brings_back_the_builtin`); one that vanished while the watch was
//!   down is dropped when the relist ends (`InitDone`; not covered by a test);
//! - a task type is served by one TaskModule at a time: a second one is refused with `Conflict`
//!   before anything is fetched, and loads once the first is deleted
//!   (`a_second_task_module_for_a_task_type_waits_for_the_first`);
//! - the initial list is applied oldest first (creation time, then name), so every replica, and
//!   a restarted one, picks the same winner of a conflict (`initial_list_is_applied_oldest_first`);
//! - an automatic rollback is reported as `Rejected` with reason `AutoRolledBack`; every replica,
//!   and any replica that starts later, withdraws that generation too and does not load it until
//!   the spec changes (`auto_rollback_withdraws_a_failing_module`).

use super::decide::{Decision, Effect, Known, Loaded, Rejection, Trigger, decide, rejected_for, settle, settle_rolled_back};
use super::fetch::{BytesMemo, FetchError, KubeModuleFetcher, ModuleFetcher};
use super::resource::{ReplicaModuleStatus, TaskModule};
use super::status::{Active, Reason};
use crate::adapters::events::EventRecorder;
use crate::registry::rollout::{AutoRollbackNotice, RolloutTracker};
use crate::registry::{ModuleEntry, ModuleSource, RegistryConflict, TaskRegistry, may_restore};
use crate::sandbox::{LoadError, LoadedModule, ModuleGrant, Sandbox};
use crate::telemetry::Telemetry;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Which TaskModules this replica serves.
#[derive(Debug, Clone, Default)]
pub struct TaskModuleWatch {
    /// Only TaskModules matching this label selector (shards, canary controllers, tests).
    pub label_selector: Option<String>,
    /// The only namespace whose ConfigMaps may hold module bytes (`None`: any).
    pub configmap_namespace: Option<String>,
}

/// A retry timer fired: (TaskModule name, its token).
type RetryTx = mpsc::UnboundedSender<(String, u64)>;
type Notices = mpsc::UnboundedReceiver<AutoRollbackNotice<LoadedModule>>;

pub struct TaskModuleLoader {
    client: Client,
    sandbox: Arc<Sandbox>,
    registry: Arc<TaskRegistry>,
    fetcher: Arc<dyn ModuleFetcher>,
    memo: BytesMemo,
    replica: String,
    recorder: EventRecorder,
    telemetry: Arc<Telemetry>,
    watch: TaskModuleWatch,
    known: HashMap<String, Known<Weak<ModuleEntry>>>,
    objects: HashMap<String, TaskModule>,
    next_token: u64,
}

fn now() -> Time {
    Time(k8s_openapi::jiff::Timestamp::now())
}

impl TaskModuleLoader {
    pub fn new(
        client: Client,
        sandbox: Arc<Sandbox>,
        registry: Arc<TaskRegistry>,
        replica: String,
        telemetry: Arc<Telemetry>,
        watch: TaskModuleWatch,
    ) -> Self {
        let instance = Some(replica.clone());
        Self {
            fetcher: Arc::new(KubeModuleFetcher::new(client.clone(), watch.configmap_namespace.clone())),
            recorder: EventRecorder::new(client.clone(), "sei-operator", instance),
            client,
            sandbox,
            registry,
            memo: BytesMemo::default(),
            replica,
            telemetry,
            watch,
            known: HashMap::new(),
            objects: HashMap::new(),
            next_token: 0,
        }
    }

    /// Watch TaskModules until the watch ends. `synced` fires once the initial list has been
    /// acted on (every existing TaskModule loaded or refused).
    pub async fn run(mut self, synced: oneshot::Sender<()>) {
        let mut notices: Notices = match self.registry.take_rollback_notices() {
            Some(n) => n,
            None => {
                tracing::error!("another TaskModule loader already reports this registry's rollbacks; not starting a second one");
                let _ = synced.send(());
                return;
            }
        };
        let api: Api<TaskModule> = Api::all(self.client.clone());
        let config = watcher::Config { label_selector: self.watch.label_selector.clone(), ..Default::default() };
        let mut events = watcher::watcher(api, config).default_backoff().boxed();
        let (retry_tx, mut retries) = mpsc::unbounded_channel::<(String, u64)>();
        let mut synced = Some(synced);
        let mut listed: Vec<TaskModule> = Vec::new();
        loop {
            tokio::select! {
                event = events.next() => match event {
                    Some(Ok(watcher::Event::Init)) => listed.clear(),
                    Some(Ok(watcher::Event::InitApply(tm))) => listed.push(tm),
                    Some(Ok(watcher::Event::InitDone)) => {
                        let names: HashSet<String> = listed.iter().map(|t| t.name_any()).collect();
                        let gone: Vec<String> = self.objects.keys().filter(|n| !names.contains(*n)).cloned().collect();
                        for name in gone {
                            self.forget(&name);
                        }
                        // Oldest first, as every replica does: the same TaskModule wins a conflict
                        // on every replica, whatever order the list came in.
                        for tm in in_creation_order(std::mem::take(&mut listed)) {
                            self.look(tm, Trigger::Watch, &retry_tx).await;
                        }
                        self.retry_conflicts(&retry_tx);
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                    }
                    Some(Ok(watcher::Event::Apply(tm))) => self.look(tm, Trigger::Watch, &retry_tx).await,
                    Some(Ok(watcher::Event::Delete(tm))) => {
                        self.forget(&tm.name_any());
                        self.retry_conflicts(&retry_tx);
                    }
                    Some(Err(e)) => {
                        let missing_crd = matches!(&e, watcher::Error::InitialListFailed(kube::Error::Api(s)) if s.code == 404);
                        if missing_crd && synced.is_some() {
                            tracing::error!("the TaskModule CRD is not installed (kubectl apply -f deploy/crds/); serving built-in and directory modules until it is");
                            if let Some(tx) = synced.take() {
                                let _ = tx.send(());
                            }
                        } else {
                            tracing::warn!(error = %e, "watching TaskModules failed; retrying with backoff");
                        }
                    }
                    None => break,
                },
                Some((name, token)) = retries.recv() => {
                    if let Some(tm) = self.objects.get(&name).cloned() {
                        self.look(tm, Trigger::Retry(token), &retry_tx).await;
                    }
                }
                Some(notice) = notices.recv() => self.report_rollback(notice).await,
            }
        }
    }

    /// A TaskModule is gone: its task types fall back to the module below it.
    fn forget(&mut self, name: &str) {
        self.objects.remove(name);
        self.known.remove(name);
        let source = ModuleSource::TaskModule { name: name.to_string() };
        if let Some(entry) = self.registry.entry_of(&source) {
            tracing::info!(task_module = name, digest = %entry.module.digest, "TaskModule deleted; its task types fall back to the module below it");
        }
        self.registry.remove_source(&source);
        self.telemetry.count_module_load("TaskModule", "deleted");
    }

    /// After a deletion a TaskModule refused for a conflict may now load: retry it at once
    /// (its pending backoff timer becomes stale).
    fn retry_conflicts(&mut self, retry_tx: &RetryTx) {
        let conflicted: Vec<String> = self
            .known
            .iter()
            .filter(|(_, k)| k.status.as_ref().is_some_and(|s| rejected_for(s, Reason::Conflict)))
            .map(|(n, _)| n.clone())
            .collect();
        for name in conflicted {
            let token = self.schedule(&name, Duration::ZERO, retry_tx);
            if let Some(k) = self.known.get_mut(&name) {
                k.pending_retry = Some(token);
            }
        }
    }

    /// Start a retry timer for `name`; returns its token.
    fn schedule(&mut self, name: &str, delay: Duration, retry_tx: &RetryTx) -> u64 {
        self.next_token += 1;
        let token = self.next_token;
        let (tx, name) = (retry_tx.clone(), name.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send((name, token));
        });
        token
    }

    /// Decide about `tm`, then do it.
    async fn look(&mut self, tm: TaskModule, trigger: Trigger, retry_tx: &RetryTx) {
        let name = tm.name_any();
        self.objects.insert(name.clone(), tm.clone());
        match decide(self.known.get(&name), &tm, trigger, &self.replica) {
            Decision::Ignore | Decision::Keep { rewrite: None } => {}
            Decision::Keep { rewrite: Some(status) } => self.write_status(&name, &status).await,
            Decision::AdoptRollback { by } => self.adopt_rollback(&tm, &by).await,
            Decision::Load => self.load_and_settle(&tm, retry_tx).await,
        }
    }

    async fn load_and_settle(&mut self, tm: &TaskModule, retry_tx: &RetryTx) {
        let name = tm.name_any();
        let source = ModuleSource::TaskModule { name: name.clone() };
        let serving_before = tm.spec.task_types.first().and_then(|t| self.registry.resolve(t)).map(|e| e.module.digest.to_string());
        let result = self.load(tm, &source).await;
        let current = self.registry.entry_of(&source);
        let loaded = Loaded { result, serving_before, active: current.as_deref().map(active_of) };
        let (mut next, status, effects) = settle(self.known.get(&name), tm, &loaded, &self.replica, &now());
        if loaded.result.is_ok() {
            next.entry = current.as_ref().map(Arc::downgrade);
        }
        match &loaded.result {
            Ok(()) => {
                let a = loaded.active.as_ref();
                tracing::info!(task_module = %name, digest = a.map_or("", |a| a.digest.as_str()), previous = next.previous_digest.as_deref().unwrap_or(""), load_ms = a.map_or(0, |a| a.load_time_ms), task_types = ?tm.spec.task_types, "TaskModule active");
            }
            Err(r) => {
                tracing::warn!(task_module = %name, reason = r.reason.as_str(), message = %crate::text::safe(&r.message, 2048), retry = r.retry, "TaskModule rejected; the previous module keeps serving");
            }
        }
        for effect in effects {
            match effect {
                Effect::Count(result) => self.telemetry.count_module_load("TaskModule", result),
                Effect::Event { warning, reason, note } => {
                    let type_ = if warning { EventType::Warning } else { EventType::Normal };
                    self.publish(tm, type_, reason.as_str(), note).await;
                }
                Effect::RetryAfter(delay) => next.pending_retry = Some(self.schedule(&name, delay, retry_tx)),
            }
        }
        self.known.insert(name.clone(), next);
        self.write_status(&name, &status).await;
    }

    /// The load pipeline for one spec; on success the registry serves the new module.
    async fn load(&self, tm: &TaskModule, source: &ModuleSource) -> Result<(), Rejection> {
        let spec = &tm.spec;
        let conflict = |e: RegistryConflict| Rejection { reason: Reason::Conflict, message: e.to_string(), retry: true };
        // Before any fetch or compile: a task type another TaskModule serves is refused.
        self.registry.check_exclusive(&spec.task_types, source).map_err(conflict)?;
        let bytes = match self.memo.get(&spec.sha256) {
            Some(b) => b,
            None => {
                let fetched = self.fetcher.fetch(&spec.source).await.map_err(|e: FetchError| Rejection {
                    reason: Reason::FetchFailed,
                    message: e.to_string(),
                    retry: e.may_heal(),
                })?;
                Arc::from(fetched)
            }
        };
        let grant = ModuleGrant {
            grants: spec.grants(),
            task_types: Some(spec.task_types.clone()),
            pinned_sha256: Some(spec.sha256.clone()),
            limits: spec.module_limits(),
            trusted_code: false,
        };
        let loaded = self.sandbox.load_module(&bytes, grant).await.map_err(|e| Rejection {
            reason: Reason::Load(e.failure()),
            message: e.to_string(),
            // Other bytes may appear at the source; the same bytes always fail the same way.
            retry: matches!(e, LoadError::DigestMismatch { .. }),
        })?;
        self.memo.remember(bytes);
        let mut entry = ModuleEntry::new(source.clone(), loaded);
        entry.rollout = spec.auto_rollback().map(RolloutTracker::new);
        self.registry.install_exclusive(&spec.task_types, entry).map_err(conflict)
    }

    /// Another replica (or this one before a restart) rolled this spec back automatically: do
    /// not serve it here either, until the spec changes.
    async fn adopt_rollback(&mut self, tm: &TaskModule, by: &str) {
        let name = tm.name_any();
        let source = ModuleSource::TaskModule { name: name.clone() };
        if let Some(entry) = self.registry.entry_of(&source)
            && *entry.module.digest == *tm.spec.sha256
        {
            self.registry.withdraw(&entry, may_restore);
            tracing::warn!(task_module = %name, replica = by, "TaskModule was rolled back automatically by a replica; withdrawn here too");
        }
        let message = format!(
            "digest {} was rolled back automatically by replica {by}; fix the module and change the spec to load it again",
            tm.spec.sha256
        );
        self.settle_rolled_back(tm, &source, message).await;
    }

    /// Record and report that this generation of `tm` is rolled back.
    async fn settle_rolled_back(&mut self, tm: &TaskModule, source: &ModuleSource, message: String) {
        let name = tm.name_any();
        let active = self.registry.entry_of(source).as_deref().map(active_of);
        let (next, status) = settle_rolled_back(self.known.get(&name), tm, active.as_ref(), message, &self.replica, &now());
        self.known.insert(name.clone(), next);
        self.write_status(&name, &status).await;
    }

    async fn report_rollback(&mut self, notice: AutoRollbackNotice<LoadedModule>) {
        let ModuleSource::TaskModule { name } = &notice.source else { return };
        let Some(tm) = self.objects.get(name).cloned() else { return };
        let loaded_now = self.known.get(name).and_then(|k| k.entry.as_ref()).is_some_and(|e| e.ptr_eq(&notice.entry));
        if !loaded_now {
            // The spec moved on while the notice was queued (a new generation loaded, maybe the
            // same digest with other limits); the status is about that one.
            return;
        }
        let message = format!(
            "digest {} was rolled back automatically: {} of its first {} runs failed, over the {}% allowed in a window of {}",
            tm.spec.sha256, notice.failures, notice.runs, notice.policy.max_failure_percent, notice.policy.window
        );
        tracing::warn!(task_module = %name, %message, "automatic rollback");
        self.telemetry.count_module_load("TaskModule", Reason::AutoRolledBack.as_str());
        self.publish(&tm, EventType::Warning, super::decide::EventReason::ModuleRolledBack.as_str(), message.clone()).await;
        self.settle_rolled_back(&tm, &notice.source, message).await;
    }

    async fn publish(&self, tm: &TaskModule, type_: EventType, reason: &str, note: String) {
        let note = crate::text::safe(&format!("replica {}: {note}", self.replica), 900);
        let event = Event { type_, reason: reason.into(), note: Some(note), action: "LoadModule".into(), secondary: None };
        match self.recorder.publish(&event, &tm.object_ref(&())).await {
            Ok(true) => {}
            Ok(false) => self.telemetry.count_event_dropped(),
            Err(e) => tracing::warn!(task_module = %tm.name_any(), error = %e, "could not publish event"),
        }
    }

    /// Server-side apply of this replica's entry only: the list is a map keyed by replica, so
    /// each replica owns its own entry.
    async fn write_status(&self, name: &str, status: &ReplicaModuleStatus) {
        let api: Api<TaskModule> = Api::all(self.client.clone());
        let body = serde_json::json!({
            "apiVersion": "sei.io/v1alpha1",
            "kind": "TaskModule",
            "metadata": {"name": name},
            "status": {"replicas": [status]},
        });
        let params = PatchParams::apply(&format!("sei-operator/{}", self.replica)).force();
        match api.patch_status(name, &params, &Patch::Apply(&body)).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!(task_module = name, error = %e, "could not write the TaskModule status"),
        }
    }
}

/// TaskModules sorted by creation time, then name.
fn in_creation_order(mut list: Vec<TaskModule>) -> Vec<TaskModule> {
    list.sort_by_key(|t| (t.metadata.creation_timestamp.as_ref().map(|c| c.0), t.name_any()));
    list
}

/// What the status says about an active entry.
fn active_of(entry: &ModuleEntry) -> Active {
    Active {
        digest: entry.module.digest.to_string(),
        module: format!("{}@{}", entry.module.info.name, entry.module.info.version),
        load_time_ms: entry.module.load_time.as_millis() as u64,
        compiled: entry.module.cache_outcome.as_str().to_string(),
    }
}

/// The replica id: `POD_NAME`, else the host name, else `local`.
pub fn default_replica_id() -> String {
    std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok().map(|h| h.trim().to_string()))
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "local".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_list_is_applied_oldest_first() {
        let at = |name: &str, second: i64| {
            let mut tm = TaskModule::new(name, Default::default());
            tm.metadata.creation_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000 + second).unwrap()));
            tm
        };
        let order: Vec<String> =
            in_creation_order(vec![at("a-newer", 5), at("z-oldest", 1), at("b-same", 5)]).iter().map(|t| t.name_any()).collect();
        assert_eq!(order, ["z-oldest", "a-newer", "b-same"]);
    }
}
