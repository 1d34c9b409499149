//! The `TaskModule` loader: every controller replica watches `TaskModule`s and runs the load
//! pipeline for each new spec: fetch → verify sha256 → compile or load from the precompiled
//! cache → pre-instantiate → memory check → `describe` against the declared task types and the
//! grant → atomic swap in the `TaskRegistry`. It then writes its own entry of
//! `status.replicas` (server-side apply, field manager `sei-operator/<replica>`) and an Event.
//!
//! Invariants (integration tests in `tests/task_modules.rs` on the real control plane):
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
//! - the loader acts once per spec generation: its own status writes do not trigger loads;
//!   failures that may heal (fetch errors other than an oversized module or an HTTP status that
//!   will not change, such as 403; digest mismatch; conflicts) are retried with backoff, one
//!   timer per TaskModule (a newer spec or an earlier retry makes older timers stale); the others
//!   wait for a new spec;
//! - the initial list is applied oldest first (creation time, then name), so every replica, and
//!   a restarted one, picks the same winner of a conflict (`initial_list_is_applied_oldest_first`);
//! - an automatic rollback (decided in the reconcile, see `rollout`) is reported as `Rejected`
//!   with reason `AutoRolledBack`; every replica, and any replica that starts later, withdraws that
//!   generation too and does not load it until the spec changes
//!   (`auto_rollback_withdraws_a_failing_module`).

use crate::modules::fetch::{BytesMemo, FetchError, KubeModuleFetcher, ModuleFetcher};
use crate::modules::resource::{ReplicaModuleStatus, TaskModule};
use crate::modules::rollout::{AutoRollbackPolicy, RolloutTracker};
use crate::modules::status::{Active, Attempt, replica_status};
use crate::registry::{ModuleEntry, ModuleSource, TaskRegistry};
use crate::sandbox::{ModuleGrant, Sandbox};
use crate::telemetry::Telemetry;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Sent by the reconcile when a module's rollout tracker decided to roll it back (the registry
/// entry is already withdrawn); the loader reports it on the TaskModule.
#[derive(Debug, Clone)]
pub struct AutoRollbackNotice {
    pub source: ModuleSource,
    /// The entry that was withdrawn: a notice about an entry the loader has since replaced is stale.
    pub entry: std::sync::Weak<ModuleEntry>,
    pub digest: String,
    pub runs: u32,
    pub failures: u32,
    pub policy: AutoRollbackPolicy,
}

/// Which TaskModules this replica serves.
#[derive(Debug, Clone, Default)]
pub struct TaskModuleWatch {
    /// Only TaskModules matching this label selector (shards, canary controllers, tests).
    pub label_selector: Option<String>,
}

/// What this replica made of one TaskModule.
#[derive(Debug, Clone, Default)]
struct Known {
    generation: Option<i64>,
    /// Loaded, or refused for a reason that only a new spec can fix.
    settled: bool,
    /// Consecutive retries of a failure that may heal.
    retries: u32,
    /// The one retry timer that counts: a timer firing with another token is stale.
    pending_retry: Option<u64>,
    previous_digest: Option<String>,
    /// The status entry last written.
    status: Option<ReplicaModuleStatus>,
    /// The registry entry the current generation loaded.
    entry: Option<std::sync::Weak<ModuleEntry>>,
}

struct Rejection {
    reason: String,
    message: String,
    retry: bool,
}

pub struct TaskModuleLoader {
    client: Client,
    sandbox: Arc<Sandbox>,
    registry: Arc<TaskRegistry>,
    fetcher: Arc<dyn ModuleFetcher>,
    memo: BytesMemo,
    replica: String,
    recorder: Recorder,
    telemetry: Arc<Telemetry>,
    watch: TaskModuleWatch,
    known: HashMap<String, Known>,
    objects: HashMap<String, TaskModule>,
    next_token: u64,
}

/// A retry timer fired: (TaskModule name, its token).
type RetryTx = mpsc::UnboundedSender<(String, u64)>;

/// Backoff of retried loads: 2 s doubling to 5 min.
fn retry_delay(retries: u32) -> Duration {
    Duration::from_secs(2u64.saturating_mul(1 << retries.min(8)).min(300))
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
        let reporter = Reporter { controller: "sei-operator".into(), instance: Some(replica.clone()) };
        Self {
            fetcher: Arc::new(KubeModuleFetcher::new(client.clone())),
            recorder: Recorder::new(client.clone(), reporter),
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
    pub async fn run(mut self, mut notices: mpsc::UnboundedReceiver<AutoRollbackNotice>, synced: oneshot::Sender<()>) {
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
                            self.apply(tm, false, &retry_tx).await;
                        }
                        self.retry_conflicts(&retry_tx);
                        if let Some(tx) = synced.take() {
                            let _ = tx.send(());
                        }
                    }
                    Some(Ok(watcher::Event::Apply(tm))) => self.apply(tm, false, &retry_tx).await,
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
                    let current = self.known.get(&name).is_some_and(|k| k.pending_retry == Some(token));
                    if let (true, Some(tm)) = (current, self.objects.get(&name).cloned()) {
                        self.apply(tm, true, &retry_tx).await;
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
        self.count("deleted");
    }

    /// After a deletion a TaskModule refused for a conflict may now load: retry it at once
    /// (its pending backoff timer becomes stale).
    fn retry_conflicts(&mut self, retry_tx: &RetryTx) {
        let conflicted: Vec<String> = self
            .known
            .iter()
            .filter(|(_, k)| k.status.as_ref().is_some_and(|s| rejected_for(s, "Conflict")))
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

    fn count(&self, result: &str) {
        self.telemetry
            .module_loads
            .get_or_create(&crate::telemetry::ModuleLoadLabels { source: "TaskModule".into(), result: result.into() })
            .inc();
    }

    async fn apply(&mut self, tm: TaskModule, retry: bool, retry_tx: &RetryTx) {
        let name = tm.name_any();
        let generation = tm.metadata.generation;
        self.objects.insert(name.clone(), tm.clone());
        let known = self.known.get(&name).cloned().unwrap_or_default();
        let same_spec = self.known.contains_key(&name) && known.generation == generation;
        if let Some(by) = rolled_back_by(&tm)
            && !(same_spec && known.status.as_ref().is_some_and(|s| rejected_for(s, "AutoRolledBack")))
        {
            self.adopt_rollback(&tm, &by).await;
            return;
        }
        if same_spec && (known.settled || !retry) {
            // Our own status write, or a metadata change: nothing to load. Put our entry back if
            // someone removed it.
            let ours = tm.status.as_ref().and_then(|s| s.replicas.iter().find(|r| r.replica == self.replica));
            if let Some(status) = &known.status
                && ours.is_none_or(|o| !same_report(o, status))
            {
                self.write_status(&name, status).await;
            }
            return;
        }
        let source = ModuleSource::TaskModule { name: name.clone() };
        let serving_before = tm.spec.task_types.first().and_then(|t| self.registry.resolve(t)).map(|e| e.module.digest.to_string());
        let result = self.load(&tm, &source).await;
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let mut next = Known { generation, pending_retry: None, ..known.clone() };
        let current = self.registry.entry_of(&source);
        let active = current.as_deref().map(active_of);
        next.entry = match &result {
            Ok(()) => current.as_ref().map(Arc::downgrade),
            Err(_) => None,
        };
        let attempt = match result {
            Ok(()) => {
                next.settled = true;
                next.retries = 0;
                if serving_before.as_deref() != active.as_ref().map(|a| a.digest.as_str()) {
                    next.previous_digest = serving_before;
                }
                let a = active.as_ref();
                tracing::info!(task_module = %name, digest = a.map_or("", |a| a.digest.as_str()), previous = next.previous_digest.as_deref().unwrap_or(""), load_ms = a.map_or(0, |a| a.load_time_ms), task_types = ?tm.spec.task_types, "TaskModule active");
                self.count("Active");
                let note = format!(
                    "serving {} with digest {} (was {})",
                    tm.spec.task_types.join(", "),
                    tm.spec.sha256,
                    next.previous_digest.as_deref().unwrap_or("none")
                );
                self.publish(&tm, EventType::Normal, "ModuleActivated", note).await;
                Attempt::Activated
            }
            Err(rejection) => {
                next.settled = !rejection.retry;
                tracing::warn!(task_module = %name, reason = %rejection.reason, message = %rejection.message, retry = rejection.retry, "TaskModule rejected; the previous module keeps serving");
                self.count(&rejection.reason);
                let note = format!("{}: {}", rejection.reason, rejection.message);
                self.publish(&tm, EventType::Warning, "ModuleRejected", note).await;
                if rejection.retry {
                    next.pending_retry = Some(self.schedule(&name, retry_delay(next.retries), retry_tx));
                    next.retries += 1;
                }
                Attempt::Rejected { reason: rejection.reason, message: rejection.message }
            }
        };
        let status = replica_status(
            known.status.as_ref(),
            &self.replica,
            generation,
            active.as_ref(),
            next.previous_digest.as_deref(),
            &attempt,
            &now,
        );
        next.status = Some(status.clone());
        self.known.insert(name.clone(), next);
        self.write_status(&name, &status).await;
    }

    /// The load pipeline for one spec; on success the registry serves the new module.
    async fn load(&self, tm: &TaskModule, source: &ModuleSource) -> Result<(), Rejection> {
        let spec = &tm.spec;
        let conflict = |e: crate::registry::RegistryConflict| Rejection { reason: "Conflict".into(), message: e.to_string(), retry: true };
        // Before any fetch or compile: a task type another TaskModule serves is refused.
        self.registry.check_exclusive(&spec.task_types, source).map_err(conflict)?;
        let bytes = match self.memo.get(&spec.sha256) {
            Some(b) => b,
            None => {
                let fetched = self.fetcher.fetch(&spec.source).await.map_err(|e: FetchError| Rejection {
                    reason: "FetchFailed".into(),
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
            reason: e.reason().into(),
            message: e.to_string(),
            // Other bytes may appear at the source; the same bytes always fail the same way.
            retry: matches!(e, crate::sandbox::LoadError::DigestMismatch { .. }),
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
        self.settle_rolled_back(tm, &source, &tm.spec.sha256, message).await;
    }

    /// Record and report that this generation of `tm` is rolled back: it stays unloaded here
    /// until the spec changes.
    async fn settle_rolled_back(&mut self, tm: &TaskModule, source: &ModuleSource, digest: &str, message: String) {
        let name = tm.name_any();
        let active = self.registry.entry_of(source).as_deref().map(active_of);
        let known = self.known.entry(name.clone()).or_default();
        known.generation = tm.metadata.generation;
        known.settled = true;
        known.pending_retry = None;
        known.entry = None;
        let attempt = Attempt::Rejected { reason: "AutoRolledBack".into(), message };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let status =
            replica_status(known.status.as_ref(), &self.replica, tm.metadata.generation, active.as_ref(), Some(digest), &attempt, &now);
        known.status = Some(status.clone());
        self.write_status(&name, &status).await;
    }

    async fn report_rollback(&mut self, notice: AutoRollbackNotice) {
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
            notice.digest, notice.failures, notice.runs, notice.policy.max_failure_percent, notice.policy.window
        );
        tracing::warn!(task_module = %name, %message, "automatic rollback");
        self.count("AutoRolledBack");
        self.publish(&tm, EventType::Warning, "ModuleRolledBack", message.clone()).await;
        self.settle_rolled_back(&tm, &notice.source, &notice.digest, message).await;
    }

    async fn publish(&self, tm: &TaskModule, type_: EventType, reason: &str, note: String) {
        let note = crate::text::safe(&format!("replica {}: {note}", self.replica), 900);
        let event = Event { type_, reason: reason.into(), note: Some(note), action: "LoadModule".into(), secondary: None };
        if let Err(e) = self.recorder.publish(&event, &tm.object_ref(&())).await {
            tracing::warn!(task_module = %tm.name_any(), error = %e, "could not publish event");
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

/// Whether a previous entry may come back when a failing module is withdrawn: only if it was
/// granted no more than the module it replaces (a rollback never restores a revoked capability).
pub fn may_restore(previous: &crate::sandbox::LoadedModule, withdrawn: &crate::sandbox::LoadedModule) -> bool {
    previous.digest != withdrawn.digest && previous.grants.within(&withdrawn.grants)
}

/// The replica whose status reports this generation of the spec as automatically rolled back.
fn rolled_back_by(tm: &TaskModule) -> Option<String> {
    tm.status
        .as_ref()?
        .replicas
        .iter()
        .find(|r| r.observed_generation == tm.metadata.generation && rejected_for(r, "AutoRolledBack"))
        .map(|r| r.replica.clone())
}

/// TaskModules sorted by creation time, then name.
fn in_creation_order(mut list: Vec<TaskModule>) -> Vec<TaskModule> {
    list.sort_by_key(|t| (t.metadata.creation_timestamp.as_ref().map(|c| c.0), t.name_any()));
    list
}

/// Whether two status entries say the same (timestamps aside: they do not round-trip exactly).
fn same_report(a: &ReplicaModuleStatus, b: &ReplicaModuleStatus) -> bool {
    let conditions = |s: &ReplicaModuleStatus| {
        s.conditions.iter().map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone(), c.message.clone())).collect::<Vec<_>>()
    };
    a.observed_generation == b.observed_generation
        && a.active_digest == b.active_digest
        && a.previous_digest == b.previous_digest
        && conditions(a) == conditions(b)
}

/// Whether the entry's `Rejected` condition is True for `reason`.
fn rejected_for(status: &ReplicaModuleStatus, reason: &str) -> bool {
    status.conditions.iter().any(|c| c.type_ == "Rejected" && c.status == "True" && c.reason == reason)
}

/// What the status says about an active entry.
fn active_of(entry: &ModuleEntry) -> Active {
    Active {
        digest: entry.module.digest.to_string(),
        module: format!("{}@{}", entry.module.info.name, entry.module.info.version),
        load_time_ms: entry.module.load_time.as_millis() as u64,
        compiled: format!("{:?}", entry.module.cache_outcome),
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

    fn entry(replica: &str, reason: &str, generation: i64) -> ReplicaModuleStatus {
        let attempt = Attempt::Rejected { reason: reason.into(), message: "m".into() };
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        replica_status(None, replica, Some(generation), None, None, &attempt, &now)
    }

    #[test]
    fn rollback_is_read_from_any_replica_for_the_current_generation() {
        let mut tm = TaskModule::new("m", Default::default());
        tm.metadata.generation = Some(3);
        assert_eq!(rolled_back_by(&tm), None);
        tm.status = Some(crate::modules::resource::TaskModuleStatus {
            replicas: vec![entry("a", "CompileFailed", 3), entry("b", "AutoRolledBack", 2)],
        });
        assert_eq!(rolled_back_by(&tm), None, "a rollback of an older generation does not hold the new spec back");
        tm.status.as_mut().unwrap().replicas.push(entry("c", "AutoRolledBack", 3));
        assert_eq!(rolled_back_by(&tm).as_deref(), Some("c"));
    }

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

    #[test]
    fn reports_compare_without_timestamps() {
        let a = entry("a", "X", 1);
        let mut b = a.clone();
        b.updated_at = None;
        b.conditions[0].last_transition_time = Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
        assert!(same_report(&a, &b));
        b.conditions[1].reason = "Y".into();
        assert!(!same_report(&a, &b));
    }

    #[test]
    fn retry_backoff_doubles_to_five_minutes() {
        assert_eq!(retry_delay(0), Duration::from_secs(2));
        assert_eq!(retry_delay(1), Duration::from_secs(4));
        assert_eq!(retry_delay(7), Duration::from_secs(256));
        assert_eq!(retry_delay(8), Duration::from_secs(300));
        assert_eq!(retry_delay(100), Duration::from_secs(300));
    }
}
