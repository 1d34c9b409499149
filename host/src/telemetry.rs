//! Prometheus metrics of the controller and the `/metrics`, `/healthz`, `/readyz` endpoints. Every
//! counter of the controller lives here, recorded through methods (`count_*`, `record_*`,
//! `observe_*`); the families are private.
//!
//! Metrics (all prefixed `sei_`): `plans_active` (gauge), `task_step_duration_seconds`
//! (histogram by task type and module digest), `task_retries_total` and `task_failures_total`
//! (by task type), `node_phase` (gauge, 1 for the node's current phase), `reconciles_total`,
//! `reconcile_errors_total` (by cause: `conflict`, `not-found`, `forbidden`, `api`, `transport`,
//! `serialize`, `finalizer`, `invalid-spec`),
//! `sandbox_denied_calls_total` (by module digest and reason, read from the sandbox's counters at
//! scrape time), `module_loads_total` (by source kind and result: `Active` or the rejection
//! reason), `active_module` (1 per task type with the digest and source serving it, read from
//! the registry at scrape time), `sandbox_host_calls_total` and `sandbox_log_calls_total` (by
//! module digest), `sandbox_budget_exceeded_total` (steps stopped by a per-step budget, by module
//! digest and budget), `sandbox_api_refused_calls_total` (host calls the guard allowed and the API
//! server refused, 401/403, by module digest), `sandbox_dropped_log_lines_total`, `module_steps_deferred_total` (steps put
//! off because their module ran its share already), `idle_checks_total` (reconciles of idle Running
//! nodes answered from the watch caches, no API request), `events_dropped_total` (Events the
//! per-object spam filter dropped), `leader` (1 while this replica holds the
//! leader Lease; every replica serves metrics, standbys included). Test:
//! `telemetry::tests::exposition_names_every_metric`.

use crate::sandbox::counters::SandboxMetrics;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    task_type: String,
    module_digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskTypeLabel {
    task_type: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodePhaseLabels {
    namespace: String,
    name: String,
    phase: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    namespace: String,
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleLoadLabels {
    source: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabel {
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActiveModuleLabels {
    task_type: String,
    module_digest: String,
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModuleDigestLabel {
    module_digest: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BudgetLabels {
    module_digest: String,
    budget: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeniedLabels {
    module_digest: String,
    reason: String,
}

/// The controller's metrics.
pub struct Telemetry {
    plans_active: Family<NodeLabels, Gauge>,
    step_duration: Family<TaskLabels, Histogram>,
    retries: Family<TaskTypeLabel, Counter>,
    failures: Family<TaskTypeLabel, Counter>,
    node_phase: Family<NodePhaseLabels, Gauge>,
    reconciles: Counter,
    reconcile_errors: Family<CauseLabel, Counter>,
    module_loads: Family<ModuleLoadLabels, Counter>,
    steps_deferred: Counter,
    idle_checks: Counter,
    events_dropped: Counter,
    active_module: Family<ActiveModuleLabels, Gauge>,
    denied: Family<DeniedLabels, Gauge>,
    host_calls: Family<ModuleDigestLabel, Counter>,
    log_calls: Family<ModuleDigestLabel, Counter>,
    budget_exceeded: Family<BudgetLabels, Counter>,
    api_refused: Family<ModuleDigestLabel, Counter>,
    dropped_log_lines: Counter,
    leader: Gauge,
    /// One scrape at a time: counters are caught up with the sandbox's totals while encoding.
    encoding: std::sync::Mutex<()>,
    sandbox: Option<Arc<SandboxMetrics>>,
    modules: std::sync::OnceLock<Arc<crate::registry::TaskRegistry>>,
    registry: Registry,
    ready: AtomicBool,
}

const PHASES: [&str; 5] = ["Pending", "Initializing", "Running", "Failed", "Terminating"];

impl Telemetry {
    pub fn new(sandbox: Option<Arc<SandboxMetrics>>) -> Self {
        let mut registry = Registry::with_prefix("sei");
        let plans_active = Family::<NodeLabels, Gauge>::default();
        let step_duration = Family::<TaskLabels, Histogram>::new_with_constructor(|| Histogram::new(exponential_buckets(0.0001, 4.0, 10)));
        let retries = Family::<TaskTypeLabel, Counter>::default();
        let failures = Family::<TaskTypeLabel, Counter>::default();
        let node_phase = Family::<NodePhaseLabels, Gauge>::default();
        let reconciles = Counter::default();
        let reconcile_errors = Family::<CauseLabel, Counter>::default();
        let denied = Family::<DeniedLabels, Gauge>::default();
        let module_loads = Family::<ModuleLoadLabels, Counter>::default();
        let active_module = Family::<ActiveModuleLabels, Gauge>::default();
        let steps_deferred = Counter::default();
        let idle_checks = Counter::default();
        let events_dropped = Counter::default();
        let host_calls = Family::<ModuleDigestLabel, Counter>::default();
        let log_calls = Family::<ModuleDigestLabel, Counter>::default();
        let budget_exceeded = Family::<BudgetLabels, Counter>::default();
        let api_refused = Family::<ModuleDigestLabel, Counter>::default();
        let dropped_log_lines = Counter::default();
        let leader = Gauge::default();
        registry.register("leader", "1 while this replica holds the leader Lease and reconciles SeiNodes", leader.clone());
        registry.register(
            "module_steps_deferred",
            "Steps put off because their module already ran its share of steps",
            steps_deferred.clone(),
        );
        registry.register(
            "idle_checks",
            "Reconciles of Running nodes answered from the watch caches, without an API request",
            idle_checks.clone(),
        );
        registry.register("events_dropped", "Events not published: their object published too many (spam filter)", events_dropped.clone());
        registry.register("sandbox_host_calls", "Kubernetes and sidecar requests made by module steps", host_calls.clone());
        registry.register("sandbox_log_calls", "log calls made by module steps", log_calls.clone());
        registry.register("sandbox_budget_exceeded", "Steps stopped because they exceeded a per-step call budget", budget_exceeded.clone());
        registry.register(
            "sandbox_api_refused_calls",
            "Host calls the capability guard allowed and the API server refused (401/403: the controller's RBAC, or RBAC caches not yet synced); the step waits",
            api_refused.clone(),
        );
        registry.register("sandbox_dropped_log_lines", "Module log lines dropped past the per-step caps", dropped_log_lines.clone());
        registry.register("module_loads", "Module loads by source kind and result (Active or the rejection reason)", module_loads.clone());
        registry.register("active_module", "1 for the module digest and source serving each task type", active_module.clone());
        registry.register("plans_active", "1 while the node has an active plan", plans_active.clone());
        registry.register("task_step_duration_seconds", "Duration of one task step in the sandbox", step_duration.clone());
        registry.register("task_retries", "Task retries after retryable failures", retries.clone());
        registry.register("task_failures", "Tasks that failed their plan", failures.clone());
        registry.register("node_phase", "1 for the phase each SeiNode is in", node_phase.clone());
        registry.register("reconciles", "Reconciles started (all nodes)", reconciles.clone());
        registry.register("reconcile_errors", "Reconciles that ended in an error, by cause", reconcile_errors.clone());
        registry.register("sandbox_denied_calls", "Host calls refused by the capability guard (total)", denied.clone());
        Self {
            plans_active,
            step_duration,
            retries,
            failures,
            node_phase,
            reconciles,
            reconcile_errors,
            module_loads,
            steps_deferred,
            idle_checks,
            events_dropped,
            active_module,
            denied,
            host_calls,
            log_calls,
            budget_exceeded,
            api_refused,
            dropped_log_lines,
            leader,
            encoding: std::sync::Mutex::new(()),
            sandbox,
            modules: std::sync::OnceLock::new(),
            registry,
            ready: AtomicBool::new(false),
        }
    }

    /// Record the node's phase (1 for it, 0 for the others) and whether it has an active plan.
    pub fn record_node(&self, namespace: &str, name: &str, phase: &str, plan_active: bool) {
        for p in PHASES {
            let labels = NodePhaseLabels { namespace: namespace.into(), name: name.into(), phase: p.into() };
            self.node_phase.get_or_create(&labels).set(i64::from(p == phase));
        }
        self.plans_active.get_or_create(&NodeLabels { namespace: namespace.into(), name: name.into() }).set(i64::from(plan_active));
    }

    /// Count a reconcile; `true` for the first one of this replica.
    pub fn count_reconcile(&self) -> bool {
        self.reconciles.inc() == 0
    }

    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Reconciles started so far.
    pub fn reconciles(&self) -> u64 {
        self.reconciles.get()
    }

    pub fn count_reconcile_error(&self, cause: &str) {
        self.reconcile_errors.get_or_create(&CauseLabel { cause: cause.into() }).inc();
    }

    /// One step of `task_type` by `module_digest`, which took `micros`.
    pub fn observe_step(&self, task_type: &str, module_digest: &str, micros: u64) {
        let labels = TaskLabels { task_type: task_type.into(), module_digest: module_digest.into() };
        self.step_duration.get_or_create(&labels).observe(micros as f64 / 1e6);
    }

    /// A failed step: retried within its budget (`retry`) or failing its plan.
    pub fn count_task_failure(&self, task_type: &str, retry: bool) {
        let family = if retry { &self.retries } else { &self.failures };
        family.get_or_create(&TaskTypeLabel { task_type: task_type.into() }).inc();
    }

    pub fn count_deferred_step(&self) {
        self.steps_deferred.inc();
    }

    /// A reconcile of an idle Running node answered from the watch caches.
    pub fn count_idle_check(&self) {
        self.idle_checks.inc();
    }

    /// An Event the spam filter dropped.
    pub fn count_event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Idle checks answered from the caches so far.
    pub fn idle_checks(&self) -> u64 {
        self.idle_checks.get()
    }

    /// Drop a deleted node's series (the families would otherwise grow with every node ever seen).
    pub fn forget_node(&self, namespace: &str, name: &str) {
        for p in PHASES {
            self.node_phase.remove(&NodePhaseLabels { namespace: namespace.into(), name: name.into(), phase: p.into() });
        }
        self.plans_active.remove(&NodeLabels { namespace: namespace.into(), name: name.into() });
    }

    /// A module load from `source` (`TaskModule`, `Directory`) that ended with `result`
    /// (`Active`, `deleted`, or a rejection reason).
    pub fn count_module_load(&self, source: &str, result: &str) {
        self.module_loads.get_or_create(&ModuleLoadLabels { source: source.into(), result: result.into() }).inc();
    }

    /// Report the registry's active modules at scrape time.
    pub fn watch_registry(&self, registry: Arc<crate::registry::TaskRegistry>) {
        let _ = self.modules.set(registry);
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let _one_at_a_time = self.encoding.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(sandbox) = &self.sandbox {
            for ((digest, reason), count) in sandbox.denied_counts() {
                self.denied.get_or_create(&DeniedLabels { module_digest: digest, reason: reason.into() }).set(count as i64);
            }
            // Counters mirror the sandbox's totals: add what they have not seen yet.
            let catch_up = |c: &Counter, total: u64| {
                let seen = c.get();
                if total > seen {
                    c.inc_by(total - seen);
                }
            };
            for (digest, (host, log)) in sandbox.call_counts() {
                catch_up(&self.host_calls.get_or_create(&ModuleDigestLabel { module_digest: digest.clone() }), host);
                catch_up(&self.log_calls.get_or_create(&ModuleDigestLabel { module_digest: digest }), log);
            }
            for ((digest, budget), n) in sandbox.budget_counts() {
                catch_up(&self.budget_exceeded.get_or_create(&BudgetLabels { module_digest: digest, budget: budget.into() }), n);
            }
            for (digest, n) in sandbox.api_refused_counts() {
                catch_up(&self.api_refused.get_or_create(&ModuleDigestLabel { module_digest: digest }), n);
            }
            catch_up(&self.dropped_log_lines, sandbox.dropped_log_lines.load(Ordering::Relaxed));
        }
        if let Some(registry) = self.modules.get() {
            self.active_module.clear();
            for (task_type, entry) in registry.active() {
                let labels =
                    ActiveModuleLabels { task_type, module_digest: entry.module.digest.to_string(), source: entry.source.to_string() };
                self.active_module.get_or_create(&labels).set(1);
            }
        }
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serve `/metrics`, `/healthz` (the process is up) and `/readyz` (the modules are loaded and the
/// controller runs) on `addr` until the process ends.
pub async fn serve(addr: std::net::SocketAddr, telemetry: Arc<Telemetry>) -> std::io::Result<()> {
    use axum::http::StatusCode;
    use axum::routing::get;
    let metrics = telemetry.clone();
    let app =
        axum::Router::new()
            .route(
                "/metrics",
                get(move || {
                    let m = metrics.clone();
                    async move {
                        ([(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], m.encode())
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let t = telemetry.clone();
                    async move { if t.is_ready() { (StatusCode::OK, "ok") } else { (StatusCode::SERVICE_UNAVAILABLE, "starting") } }
                }),
            );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_names_every_metric() {
        let sandbox = Arc::new(SandboxMetrics::default());
        sandbox.denied("abc", "namespace");
        sandbox.record_calls("abc", 64, 3);
        sandbox.budget_exceeded("abc", crate::sandbox::limits::Budget::HostCalls);
        sandbox.api_refused("abc", std::time::Instant::now());
        sandbox.dropped_log_lines.fetch_add(7, Ordering::Relaxed);
        let t = Telemetry::new(Some(sandbox));
        t.record_node("sei", "rpc", "Running", true);
        t.observe_step("mark-ready", "abc", 2_000);
        t.count_task_failure("configure-genesis", true);
        t.count_task_failure("config-apply", false);
        assert!(t.count_reconcile(), "the first reconcile is told apart");
        assert!(!t.count_reconcile());
        t.set_leader(true);
        t.count_reconcile_error("conflict");
        t.count_module_load("TaskModule", "DigestMismatch");
        let text = t.encode();
        for want in [
            r#"sei_plans_active{namespace="sei",name="rpc"} 1"#,
            r#"sei_task_step_duration_seconds_count{task_type="mark-ready",module_digest="abc"} 1"#,
            r#"sei_task_retries_total{task_type="configure-genesis"} 1"#,
            r#"sei_task_failures_total{task_type="config-apply"} 1"#,
            r#"sei_node_phase{namespace="sei",name="rpc",phase="Running"} 1"#,
            r#"sei_node_phase{namespace="sei",name="rpc",phase="Failed"} 0"#,
            "sei_reconciles_total 2",
            r#"sei_reconcile_errors_total{cause="conflict"} 1"#,
            r#"sei_sandbox_denied_calls{module_digest="abc",reason="namespace"} 1"#,
            r#"sei_module_loads_total{source="TaskModule",result="DigestMismatch"} 1"#,
            r#"sei_sandbox_host_calls_total{module_digest="abc"} 64"#,
            r#"sei_sandbox_log_calls_total{module_digest="abc"} 3"#,
            r#"sei_sandbox_budget_exceeded_total{module_digest="abc",budget="host-calls"} 1"#,
            r#"sei_sandbox_api_refused_calls_total{module_digest="abc"} 1"#,
            r#"sei_sandbox_dropped_log_lines_total 7"#,
            "sei_module_steps_deferred_total 0",
            "sei_idle_checks_total 0",
            "sei_events_dropped_total 0",
            "sei_leader 1",
        ] {
            assert!(text.contains(want), "missing {want} in\n{text}");
        }
    }

    #[test]
    fn readiness_follows_the_flag() {
        let t = Telemetry::new(None);
        assert!(!t.is_ready());
        t.set_ready(true);
        assert!(t.is_ready());
    }
}
