//! The composition root of `sei-operator`: parses the command line, builds the controller's parts
//! (platform settings, kube client, sandbox, registry, node context, TaskModule loader, task
//! directory, metrics endpoint) once and starts them (`run`); the developer commands live in
//! `cli/` (`plan`, `task run|describe|export`).
//!
//! - `sei-operator run [flags]` runs the controller against the cluster of the current kubeconfig;
//! - `sei-operator crds` prints the CRDs; `sei-operator plan -f node.yaml` prints a plan;
//! - `sei-operator task …` works with task modules (`cli/task.rs`);
//! - `sei-operator __compile` (hidden) is the bounded compiler child of `sandbox::compile`.

mod cli;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use sei_operator::group::GroupContext;
use sei_operator::node::{Context as NodeContext, SidecarResolver};
use sei_operator::operator::{Operator, Shutdown, Stopped};
use sei_operator::registry::TaskRegistry;
use sei_operator::sandbox::{ModuleGrant, Sandbox, SandboxConfig};
use sei_operator::taskmodule::directory::TaskDirectory;
use sei_operator::taskmodule::loader::{TaskModuleWatch, default_replica_id};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "sei-operator", version, about = "Kubernetes controller for Sei nodes; every plan task runs as a wasm component")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Work with task modules.
    Task {
        #[command(subcommand)]
        command: cli::task::TaskCommand,
    },
    /// Run the SeiNode controller against the cluster of the current kubeconfig.
    Run(Box<ControllerArgs>),
    /// Print the CustomResourceDefinitions as YAML (what `deploy/crds/` holds).
    Crds,
    /// Print the plan a SeiNode manifest would get, without a cluster.
    Plan(cli::plan::PlanArgs),
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Reach sidecars through this URL template (`{name}`, `{namespace}`) instead of pod DNS.
    #[arg(long, env = "SEI_SIDECAR_URL_TEMPLATE")]
    sidecar_url_template: Option<String>,
    /// Watch only this namespace.
    #[arg(long, env = "SEI_WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Reconcile only the SeiNodes and SeiNodeDeployments whose labels match this label selector
    /// (`shard=a`, `shard in (a,b)`): several controllers with disjoint selectors split the nodes
    /// between them. With leader election each shard gets a Lease of its own.
    #[arg(long, env = "SEI_SHARD_SELECTOR")]
    shard_selector: Option<String>,
    /// Reconciles run at once.
    #[arg(long, default_value_t = 8)]
    concurrency: u16,
    /// Where precompiled modules are cached.
    #[arg(long, env = "SEI_MODULE_CACHE")]
    module_cache: Option<PathBuf>,
    /// Serve /metrics, /healthz and /readyz here.
    #[arg(long, env = "SEI_METRICS_ADDR", default_value = "127.0.0.1:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Load every `*.wasm` in this directory over the built-in modules, and reload a file within a
    /// second of it changing (local development). The directory and its files must be writable
    /// only by this user.
    #[arg(long, env = "SEI_TASK_DIR", requires = "task_dir_grant")]
    task_dir: Option<PathBuf>,
    /// Capabilities granted to the modules of `--task-dir`, comma separated (kube-read,
    /// kube-write, kube-delete, sidecar); required with `--task-dir`, so that what local modules
    /// may do is a decision, not a default.
    #[arg(long, value_delimiter = ',')]
    task_dir_grant: Vec<String>,
    /// Load `TaskModule` resources (`--task-modules=false`: built-in and directory modules only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    task_modules: bool,
    /// Reconcile `SeiNodeDeployment` groups too (`--groups=false`: SeiNodes only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    groups: bool,
    /// Load only the TaskModules matching this label selector.
    #[arg(long, env = "SEI_TASK_MODULE_SELECTOR")]
    task_module_selector: Option<String>,
    /// This replica's id in TaskModule statuses (default: POD_NAME, else the host name).
    #[arg(long, env = "SEI_REPLICA_ID")]
    replica_id: Option<String>,
    /// Kubernetes and sidecar calls one task step may make (each API request counts), unless a
    /// TaskModule or `--task-limits` says otherwise; at most 1000.
    #[arg(long, default_value_t = sei_operator::sandbox::limits::DEFAULT_MAX_HOST_CALLS)]
    max_host_calls_per_step: u32,
    /// `log` calls one task step may make; at most 100000.
    #[arg(long, default_value_t = sei_operator::sandbox::limits::DEFAULT_MAX_LOG_CALLS)]
    max_log_calls_per_step: u32,
    /// Per-task-type limits: a YAML map from task type to `{timeoutSeconds, memoryMiB,
    /// hostCallsPerStep, logCallsPerStep}` (the fields of a TaskModule's `spec.limits`).
    #[arg(long, env = "SEI_TASK_LIMITS")]
    task_limits: Option<PathBuf>,
    /// Address space of the child process that compiles a module (MiB).
    #[arg(long, default_value_t = 2048)]
    compile_memory_mib: u64,
    /// CPU time of the child process that compiles a module (seconds); it is also stopped after
    /// twice this long in wall-clock time.
    #[arg(long, default_value_t = 60)]
    compile_cpu_seconds: u64,
    /// Steps one module that is not built in may run at once (a share of `--concurrency`).
    #[arg(long)]
    module_step_cap: Option<usize>,
    /// Kubernetes requests a second that one module that is not built in may make across all its
    /// steps (bursts of twice as many); 0: no limit.
    #[arg(long, default_value_t = sei_operator::sandbox::limits::DEFAULT_MODULE_REQUEST_RATE.per_second)]
    module_requests_per_second: u32,
    /// TaskModules may take module bytes only from ConfigMaps in this namespace (the controller
    /// needs ConfigMap reads only there); unset: any namespace.
    #[arg(long, env = "SEI_MODULE_CONFIGMAP_NAMESPACE")]
    module_configmap_namespace: Option<String>,
    /// Reconcile SeiNodes only while holding a coordination.k8s.io Lease, so that several
    /// replicas can run (the others stand by, their TaskModules loaded).
    #[arg(long, env = "SEI_LEADER_ELECTION")]
    leader_election: bool,
    /// The Lease's namespace (the controller's own).
    #[arg(long, env = "POD_NAMESPACE")]
    leader_election_namespace: Option<String>,
    /// The Lease's name (with `--shard-selector`: this name, `-`, and the first 8 hex digits of
    /// the selector's sha256).
    #[arg(long, default_value = "sei-operator-leader")]
    leader_election_lease_name: String,
    /// How long a Lease not renewed stays with its holder.
    #[arg(long, default_value_t = 15)]
    leader_election_lease_duration_seconds: u64,
    /// How long the leader keeps trying to renew before it stops reconciling and exits (shorter
    /// than the lease duration).
    #[arg(long, default_value_t = 10)]
    leader_election_renew_deadline_seconds: u64,
    /// How often the leader renews, and a standby looks at the Lease when it does not change.
    #[arg(long, default_value_t = 2)]
    leader_election_retry_period_seconds: u64,
    /// On SIGTERM, how long reconciles in flight may take to finish before they are abandoned
    /// (then the Lease is released).
    #[arg(long, default_value_t = 10)]
    shutdown_grace_seconds: u64,
}

/// The Lease settings of `--leader-election`, checked.
fn lease_settings(
    args: &ControllerArgs,
    identity: &str,
    shard: Option<&sei_operator::shard::ShardSelector>,
) -> Result<Option<sei_operator::leader::LeaseSettings>> {
    if !args.leader_election {
        return Ok(None);
    }
    let secs = std::time::Duration::from_secs;
    let settings = sei_operator::leader::LeaseSettings {
        namespace: args.leader_election_namespace.clone().unwrap_or_default(),
        name: sei_operator::shard::lease_name(&args.leader_election_lease_name, shard),
        identity: identity.to_string(),
        lease_duration: secs(args.leader_election_lease_duration_seconds),
        renew_deadline: secs(args.leader_election_renew_deadline_seconds),
        retry_period: secs(args.leader_election_retry_period_seconds),
    };
    settings.validate()?;
    Ok(Some(settings))
}

/// The controller's limits policy from its flags and `--task-limits`.
fn limits_policy(args: &ControllerArgs) -> Result<sei_operator::sandbox::limits::LimitsPolicy> {
    use sei_operator::taskmodule::resource::TaskModuleLimits;
    let mut policy = sei_operator::sandbox::limits::LimitsPolicy::default();
    policy.defaults.max_host_calls = args.max_host_calls_per_step.clamp(1, sei_operator::sandbox::limits::MAX_HOST_CALLS_CEILING);
    policy.defaults.max_log_calls = args.max_log_calls_per_step.clamp(1, sei_operator::sandbox::limits::MAX_LOG_CALLS_CEILING);
    if let Some(path) = &args.task_limits {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading --task-limits {}", path.display()))?;
        let by_type: std::collections::BTreeMap<String, TaskModuleLimits> =
            serde_yaml::from_str(&text).with_context(|| format!("{} is not a map of task type to limits", path.display()))?;
        for (task_type, l) in by_type {
            if let Some(s) = l.timeout_seconds {
                policy.deadline_by_task_type.insert(task_type.clone(), std::time::Duration::from_secs(s.into()));
            }
            if let Some(m) = l.memory_mib {
                policy.memory_by_task_type.insert(task_type.clone(), (m as usize) << 20);
            }
            if let Some(n) = l.host_calls_per_step {
                policy.host_calls_by_task_type.insert(task_type.clone(), n);
            }
            if let Some(n) = l.log_calls_per_step {
                policy.log_calls_by_task_type.insert(task_type.clone(), n);
            }
        }
    }
    Ok(policy)
}

fn init_tracing() {
    let default = if std::env::args().nth(1).as_deref() == Some("run") { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEI_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr).init();
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(sei_operator::sandbox::compile::CHILD_SUBCOMMAND) {
        return sei_operator::sandbox::compile::child_main(&args[2..]);
    }
    init_tracing();
    if let Some((point, n)) = sei_operator::failpoint::armed() {
        tracing::warn!(%point, hit = n, "{} is set: this process kills itself at that point (a fault-test hook)", sei_operator::failpoint::VARIABLE);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", sei_operator::text::escape(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    };
    // Whatever is still running (an abandoned step, a watch) ends with the process.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    code
}

async fn dispatch(cli: Cli) -> Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Task { command } => cli::task::dispatch(command).await,
        Command::Run(args) => run_controller(*args).await.map(|()| ok),
        Command::Crds => {
            print!("{}", sei_operator::crds::crds_yaml()?);
            Ok(ok)
        }
        Command::Plan(args) => cli::plan::run(args).map(|()| ok),
    }
}

async fn run_controller(args: ControllerArgs) -> Result<()> {
    let replica = args.replica_id.clone().unwrap_or_else(default_replica_id);
    // Unique per process: a restarted replica, or a second process under the same name, never
    // takes the other's Lease for its own.
    let identity = format!("{replica}_{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let shard = args.shard_selector.as_deref().map(sei_operator::shard::ShardSelector::parse).transpose()?;
    if let Some(s) = &shard {
        tracing::info!(selector = %s.as_str(), "reconciling only the SeiNodes and SeiNodeDeployments this shard selector matches");
    }
    let election = lease_settings(&args, &identity, shard.as_ref())?;
    let platform = sei_operator::platform::PlatformConfig::from_env()?;
    let mut config = kube::Config::infer().await.context("reading the kubeconfig (or the in-cluster service account)")?;
    // Every request names the controller in the API server's audit log.
    let agent = format!("sei-operator/{} ({identity})", env!("CARGO_PKG_VERSION"));
    config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_str(&agent).context("the user agent is a valid header")?));
    let client = kube::Client::try_from(config).context("connecting to the cluster of the current kubeconfig")?;
    let compile = sei_operator::sandbox::CompileLimits {
        memory_bytes: args.compile_memory_mib << 20,
        cpu_seconds: args.compile_cpu_seconds,
        timeout: std::time::Duration::from_secs(args.compile_cpu_seconds.saturating_mul(2).max(1)),
    };
    let compiler =
        sei_operator::sandbox::Compiler::subprocess_of_current_exe(compile).context("locating this executable for the module compiler")?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig {
        cache_dir: args.module_cache.clone(),
        limits: limits_policy(&args)?,
        compiler,
        // Every reconcile in flight runs at most one step; room for as many `describe` calls.
        max_concurrent_instances: (u32::from(args.concurrency) * 2).max(64),
        module_request_rate: (args.module_requests_per_second > 0).then(|| sei_operator::sandbox::limits::RequestRate {
            per_second: args.module_requests_per_second,
            burst: args.module_requests_per_second.saturating_mul(2),
        }),
        ..Default::default()
    })?);
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox).await?;
    let sidecars = match args.sidecar_url_template {
        Some(t) => SidecarResolver::Template(t),
        None => SidecarResolver::PodDns,
    };
    tracing::info!(task_types = ?registry.task_types(), allocator = ?sandbox.allocator(), "sei-operator controller starting");
    let groups = args.groups.then(|| (client.clone(), platform.clone(), sidecars.clone()));
    let ctx = NodeContext::builder(client, sandbox.clone(), registry.clone(), platform, sidecars)
        .instance(replica.clone())
        .module_step_cap(args.module_step_cap.unwrap_or((usize::from(args.concurrency) / 2).max(1)))
        .shard_selector(shard.clone())
        .build();
    let groups = groups.map(|(client, platform, sidecars)| {
        let steps = (ctx.shared_module_slots(), ctx.module_step_cap());
        GroupContext::new(client, sandbox.clone(), registry.clone(), platform, sidecars, ctx.telemetry().clone(), steps)
            .with_shard_selector(shard.clone())
    });
    let _task_dir = match args.task_dir {
        None => None,
        Some(dir) => {
            let grant = ModuleGrant::new(cli::task::parse_grants(&args.task_dir_grant)?);
            let watched = Arc::new(TaskDirectory::new(dir.clone(), sandbox, registry, grant, Some(ctx.telemetry().clone())));
            for (path, outcome) in watched.load_all().await? {
                tracing::info!(file = %path.display(), ?outcome, "task directory");
            }
            tracing::info!(dir = %dir.display(), "watching the task directory");
            Some(watched.watch(None)?)
        }
    };
    let telemetry = ctx.telemetry().clone();
    let addr = args.metrics_addr;
    tokio::spawn(async move {
        if let Err(e) = sei_operator::telemetry::serve(addr, telemetry).await {
            tracing::error!(%addr, error = %e, "the metrics endpoint could not start");
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    let mut operator =
        Operator::new(ctx).with_shutdown(Shutdown::on_signals(), std::time::Duration::from_secs(args.shutdown_grace_seconds));
    if args.task_modules {
        let watch = TaskModuleWatch { label_selector: args.task_module_selector, configmap_namespace: args.module_configmap_namespace };
        operator = operator.with_task_modules(watch, replica);
    }
    if let Some(settings) = election {
        operator = operator.with_leader_election(settings);
    }
    if let Some(groups) = groups {
        operator = operator.with_groups(groups);
    }
    match operator.run(args.concurrency, args.namespace).await {
        Stopped::LostLeadership => anyhow::bail!("lost the leader Lease; exiting so that a fresh replica stands by"),
        stopped => {
            tracing::info!(?stopped, "sei-operator controller stopped");
            Ok(())
        }
    }
}
