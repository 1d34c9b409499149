//! The `sei-operator` command line.
//!
//! - `sei-operator task run <task-type> -f node.yaml [--params JSON] [--module FILE] [--steps N]`
//!   runs steps of a task module against a SeiNode manifest with an in-memory Kubernetes and
//!   sidecar, and prints each step's outcome, the host calls it made, fuel and peak memory.
//! - `sei-operator task describe [--module FILE]` prints what the built-in modules (or a module
//!   file) say about themselves; `task export NAME -o FILE [--tag T]` writes a built-in's
//!   component (re-tagged: a new sha256) and prints its sha256.
//! - `sei-operator run [--task-dir DIR] [--task-modules=false] [--task-module-selector SEL]` runs
//!   the controller: SeiNodes, TaskModules, and the watched task directory.
//! - `sei-operator crds` prints the CRDs; `sei-operator plan -f node.yaml` prints a plan.
//! - `sei-operator __compile` (hidden) is the bounded compiler child of `sandbox::compile`.

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use sei_operator::adapters::kube::InMemoryKube;
use sei_operator::adapters::sidecar::InMemorySidecar;
use sei_operator::guard::{CapabilityName, Grants};
use sei_operator::modules::directory::TaskDirectory;
use sei_operator::modules::task_modules::TaskModuleWatch;
use sei_operator::registry::{ModuleEntry, ModuleSource, TaskRegistry};
use sei_operator::sandbox::{ModuleGrant, RunEnv, RunInput, Sandbox, SandboxConfig, StepOutcome};
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
        command: TaskCommand,
    },
    /// Run the SeiNode controller against the cluster of the current kubeconfig.
    Run(ControllerArgs),
    /// Print the CustomResourceDefinitions as YAML (what `deploy/crds/` holds).
    Crds,
    /// Print the plan a SeiNode manifest would get, without a cluster.
    Plan {
        /// The SeiNode manifest (YAML or JSON). A `status` in it is taken into account
        /// (phase, active plan, resolved peers).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Print the plan as JSON (as it is stored in `status.plan`).
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum TaskCommand {
    /// Run steps of a task against a SeiNode manifest, with in-memory Kubernetes and sidecar.
    Run(RunArgs),
    /// Print what the built-in modules (or one module file) say about themselves.
    Describe {
        /// A module file (a wasm component) instead of the built-ins.
        #[arg(long)]
        module: Option<PathBuf>,
    },
    /// Write a built-in module's component to a file (a starting point for a TaskModule) and
    /// print its sha256.
    Export {
        /// `sei-builtin-infra` or `sei-builtin-sidecar`.
        name: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Append a `sei-release` custom section with this text: the same code under a new
        /// sha256 (to try a hot swap).
        #[arg(long)]
        tag: Option<String>,
    },
}

#[derive(clap::Args)]
struct ControllerArgs {
    /// Reach sidecars through this URL template (`{name}`, `{namespace}`) instead of pod DNS.
    #[arg(long, env = "SEI_SIDECAR_URL_TEMPLATE")]
    sidecar_url_template: Option<String>,
    /// Watch only this namespace.
    #[arg(long, env = "SEI_WATCH_NAMESPACE")]
    namespace: Option<String>,
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
}

#[derive(clap::Args)]
struct RunArgs {
    /// The task type, e.g. `ensure-data-pvc`.
    task_type: String,
    /// The SeiNode manifest (YAML or JSON).
    #[arg(short = 'f', long = "file")]
    file: PathBuf,
    /// The task's params as JSON. Default: what the planner would give the task for this node.
    #[arg(long)]
    params: Option<String>,
    /// Run this module file (a wasm component) instead of the built-in one.
    #[arg(long)]
    module: Option<PathBuf>,
    /// Capabilities granted to `--module` (comma separated: kube-read,kube-write,kube-delete,sidecar).
    #[arg(long, value_delimiter = ',', default_value = "kube-read,kube-write,kube-delete,sidecar")]
    grant: Vec<String>,
    /// The checkpoint to resume from.
    #[arg(long)]
    checkpoint: Option<String>,
    /// Run up to this many steps, feeding each pending checkpoint to the next.
    #[arg(long, default_value_t = 1)]
    steps: u32,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// The controller's limits policy from its flags and `--task-limits`.
fn limits_policy(args: &ControllerArgs) -> Result<sei_operator::sandbox::limits::LimitsPolicy> {
    use sei_operator::modules::resource::TaskModuleLimits;
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
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", sei_operator::text::escape(&format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}

async fn dispatch(cli: Cli) -> Result<std::process::ExitCode> {
    let ok = std::process::ExitCode::SUCCESS;
    match cli.command {
        Command::Task { command: TaskCommand::Run(args) } => task_run(args).await,
        Command::Task { command: TaskCommand::Describe { module } } => task_describe(module).await.map(|()| ok),
        Command::Task { command: TaskCommand::Export { name, output, tag } } => task_export(&name, &output, tag.as_deref()).map(|()| ok),
        Command::Run(args) => run_controller(args).await.map(|()| ok),
        Command::Crds => {
            print!("{}", sei_operator::crd::crds_yaml()?);
            Ok(ok)
        }
        Command::Plan { file, json } => plan(&file, json).map(|()| ok),
    }
}

async fn run_controller(args: ControllerArgs) -> Result<()> {
    use sei_operator::controller::{Context as ControllerContext, SidecarResolver, run};
    let platform = sei_operator::platform::PlatformConfig::from_env()?;
    let mut config = kube::Config::infer().await.context("reading the kubeconfig (or the in-cluster service account)")?;
    // Every request names the controller in the API server's audit log.
    let agent = format!("sei-operator/{}", env!("CARGO_PKG_VERSION"));
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
        ..Default::default()
    })?);
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox).await?;
    let sidecars = match args.sidecar_url_template {
        Some(t) => SidecarResolver::Template(t),
        None => SidecarResolver::PodDns,
    };
    tracing::info!(task_types = ?registry.task_types(), allocator = ?sandbox.allocator(), "sei-operator controller starting");
    let mut ctx = ControllerContext::new(client, sandbox.clone(), registry.clone(), platform, sidecars);
    if args.task_modules {
        ctx.task_modules = Some(TaskModuleWatch { label_selector: args.task_module_selector });
    }
    if let Some(id) = args.replica_id {
        ctx.replica = id;
    }
    ctx.module_step_cap = args.module_step_cap.unwrap_or((usize::from(args.concurrency) / 2).max(1));
    let ctx = Arc::new(ctx);
    let _task_dir = match args.task_dir {
        None => None,
        Some(dir) => {
            let grant = ModuleGrant::new(parse_grants(&args.task_dir_grant)?);
            let watched = Arc::new(TaskDirectory::new(dir.clone(), sandbox, registry, grant, Some(ctx.telemetry.clone())));
            for (path, outcome) in watched.load_all().await? {
                tracing::info!(file = %path.display(), ?outcome, "task directory");
            }
            tracing::info!(dir = %dir.display(), "watching the task directory");
            Some(watched.watch(None)?)
        }
    };
    let telemetry = ctx.telemetry.clone();
    let addr = args.metrics_addr;
    tokio::spawn(async move {
        if let Err(e) = sei_operator::telemetry::serve(addr, telemetry).await {
            tracing::error!(%addr, error = %e, "the metrics endpoint could not start");
        }
    });
    tracing::info!(%addr, "serving /metrics, /healthz, /readyz");
    run(ctx, args.concurrency, args.namespace).await;
    Ok(())
}

/// The params the planner would give this task for this node (local platform settings).
fn default_params(node: &serde_json::Value, task_type: &str) -> Result<String> {
    use sei_operator::planner::{Mode, params_for, snapshot_source};
    let typed: sei_operator::crd::SeiNode = serde_json::from_value(node.clone()).context("the manifest is not a valid SeiNode")?;
    let mode = Mode::of(&typed).context("the SeiNode sets no mode (fullNode, archive, replayer or validator)")?;
    let platform = sei_operator::platform::PlatformConfig::for_local();
    let params = params_for(&typed, mode, task_type, snapshot_source(&typed), &platform);
    Ok(if params.is_null() { "{}".to_string() } else { params.to_string() })
}

fn plan(file: &PathBuf, json: bool) -> Result<()> {
    use sei_operator::planner::{Observed, PlanDecision, resolve_plan};
    use sei_operator::platform::PlatformConfig;
    let value = read_node(file)?;
    let node: sei_operator::crd::SeiNode =
        serde_json::from_value(value).with_context(|| format!("{} is not a valid SeiNode", file.display()))?;
    let plan_id = uuid::Uuid::new_v4().to_string();
    let decision = resolve_plan(
        &node,
        &Observed::default(),
        &PlatformConfig::for_local(),
        &plan_id,
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    )?;
    match decision {
        PlanDecision::Resume => println!("the node's active plan resumes; no new plan"),
        PlanDecision::Idle => println!("nothing to do: no new plan"),
        PlanDecision::New { plan, .. } if json => {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        }
        PlanDecision::New { plan, phase, reason } => {
            println!(
                "plan {} ({reason}; node phase {phase:?}, on success {:?}, on failure {:?})",
                plan.id, plan.target_phase, plan.failed_phase
            );
            for (i, t) in plan.tasks.iter().enumerate() {
                let params = t.params.as_ref().map(|p| p.to_string()).unwrap_or_else(|| "null".into());
                let retries = if t.max_retries > 0 { format!("  maxRetries {}", t.max_retries) } else { String::new() };
                println!("{:>3}. {:<26} {}  {params}{retries}", i + 1, t.task_type, t.id);
            }
        }
    }
    Ok(())
}

fn parse_grants(names: &[String]) -> Result<Grants> {
    let caps = names
        .iter()
        .map(|n| CapabilityName::parse(n.trim()).with_context(|| format!("unknown capability `{n}`")))
        .collect::<Result<Vec<_>>>()?;
    Ok(Grants::new(caps))
}

async fn registry_for(sandbox: &Sandbox, module: Option<&PathBuf>, grant: &[String]) -> Result<TaskRegistry> {
    let registry = TaskRegistry::new();
    match module {
        None => registry.load_builtins(sandbox).await?,
        Some(path) => {
            let bytes = std::fs::read(path).with_context(|| format!("reading module {}", path.display()))?;
            let loaded = sandbox
                .load_module(&bytes, ModuleGrant::new(parse_grants(grant)?))
                .await
                .with_context(|| format!("loading module {}", path.display()))?;
            let types = loaded.info.task_types.clone();
            registry.install(&types, ModuleEntry::new(ModuleSource::Directory { path: path.display().to_string() }, loaded));
        }
    }
    Ok(registry)
}

/// Read a manifest; give it a namespace and a uid if it has none (as the API server would).
fn read_node(path: &PathBuf) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut node: serde_json::Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {} as YAML", path.display()))?;
    if node.get("kind").and_then(|k| k.as_str()) != Some("SeiNode") {
        bail!("{} is not a SeiNode manifest (kind: SeiNode)", path.display());
    }
    let meta = node.get_mut("metadata").and_then(|m| m.as_object_mut()).with_context(|| format!("{} has no metadata", path.display()))?;
    if !meta.contains_key("name") {
        bail!("{} has no metadata.name", path.display());
    }
    meta.entry("namespace").or_insert_with(|| "default".into());
    meta.entry("uid").or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    Ok(node)
}

async fn task_run(args: RunArgs) -> Result<std::process::ExitCode> {
    let sandbox = Sandbox::new(SandboxConfig { compiler: cli_compiler()?, ..Default::default() })?;
    let registry = registry_for(&sandbox, args.module.as_ref(), &args.grant).await?;
    let entry = registry
        .resolve(&args.task_type)
        .with_context(|| format!("no module implements task type `{}` (known: {})", args.task_type, registry.task_types().join(", ")))?;
    let node = read_node(&args.file)?;
    let typed: sei_operator::crd::SeiNode =
        serde_json::from_value(node.clone()).with_context(|| format!("{} is not a valid SeiNode", args.file.display()))?;
    // Exactly the controller's scope: the node's uid as the owner of every write, its pod labels,
    // the platform's service account and placement (local platform settings).
    let scope = sei_operator::controller::node_scope(&typed, &sei_operator::platform::PlatformConfig::for_local());
    let params = match args.params {
        Some(p) => {
            serde_json::from_str::<serde_json::Value>(&p).context("--params is not JSON")?;
            p
        }
        None => default_params(&node, &args.task_type)?,
    };
    let kube = Arc::new(InMemoryKube::new());
    let sidecar = Arc::new(InMemorySidecar::new());
    let env = RunEnv { scope, kube: kube.clone(), sidecar: Some(sidecar) };
    let mut checkpoint = args.checkpoint;
    let mut reports = Vec::new();
    for attempt_step in 1..=args.steps.max(1) {
        let input = RunInput {
            task_type: args.task_type.clone(),
            task_id: "00000000-0000-5000-8000-000000000001".into(),
            plan_id: "cli".into(),
            node: node.to_string(),
            params: params.clone(),
            checkpoint: checkpoint.clone(),
            attempt: 1,
        };
        let report = sandbox.run(&entry.module, input, &env).await;
        let next = match &report.outcome {
            Ok(StepOutcome::Pending { checkpoint, .. }) => Some(checkpoint.clone()),
            _ => None,
        };
        if !args.json {
            print_report(attempt_step, &report);
        }
        reports.push(report);
        match next {
            Some(c) => checkpoint = Some(c),
            None => break,
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "steps": reports, "objects": kube.objects() }))?);
    } else {
        let objects = kube.objects();
        println!("\nobjects in the in-memory cluster: {}", objects.len());
        for o in objects {
            println!(
                "--- {} {}/{}",
                o["kind"].as_str().unwrap_or("?"),
                o["metadata"]["namespace"].as_str().unwrap_or("?"),
                o["metadata"]["name"].as_str().unwrap_or("?")
            );
            for line in serde_yaml::to_string(&o)?.lines() {
                println!("{}", sei_operator::text::escape(line));
            }
        }
    }
    Ok(if reports.last().is_some_and(|r| r.outcome.is_err()) { std::process::ExitCode::from(2) } else { std::process::ExitCode::SUCCESS })
}

/// The CLI compiles modules like the controller does: in a bounded child of this executable.
fn cli_compiler() -> Result<sei_operator::sandbox::Compiler> {
    sei_operator::sandbox::Compiler::subprocess_of_current_exe(Default::default())
        .context("locating this executable for the module compiler")
}

/// Print one step's report. Everything from the module was escaped when the sandbox captured it;
/// the output and checkpoint are escaped here.
fn print_report(step: u32, r: &sei_operator::sandbox::RunReport) {
    use sei_operator::text::escape;
    println!("step {step}: {}", escape(&r.summary()));
    match &r.outcome {
        Ok(StepOutcome::Complete { output }) => println!("  output: {}", escape(&output.to_string())),
        Ok(StepOutcome::Pending { checkpoint, .. }) => println!("  checkpoint: {}", escape(checkpoint)),
        Err(_) => {}
    }
    println!(
        "  host calls: {} of {} allowed, log calls: {} of {}",
        r.host_call_count, r.limits.max_host_calls, r.log_calls, r.limits.max_log_calls
    );
    for c in &r.host_calls {
        println!("    {:<8} {:<60} {} ({} µs)", c.interface, c.call, c.outcome, c.micros);
    }
    for l in &r.logs {
        println!("  log {:<5} {}", l.level, l.message);
    }
    println!(
        "  fuel: {}  peak memory: {} KiB  time: {} µs{}",
        r.fuel_consumed,
        r.peak_memory_bytes / 1024,
        r.duration_micros,
        if r.dropped_log_bytes > 0 {
            format!("  dropped log: {} lines, {} bytes", r.dropped_log_lines, r.dropped_log_bytes)
        } else {
            String::new()
        }
    );
}

fn task_export(name: &str, output: &PathBuf, tag: Option<&str>) -> Result<()> {
    use sei_operator::embedded::BUILTIN_MODULES;
    let module = BUILTIN_MODULES.iter().find(|m| m.name == name).with_context(|| {
        format!("no built-in module {name} (built-in: {})", BUILTIN_MODULES.iter().map(|m| m.name).collect::<Vec<_>>().join(", "))
    })?;
    let bytes = match tag {
        Some(t) => sei_operator::release_tag::with_custom_section(module.bytes, sei_operator::release_tag::RELEASE_SECTION, t.as_bytes()),
        None => module.bytes.to_vec(),
    };
    std::fs::write(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    println!("{}", sei_operator::sandbox::cache::sha256_hex(&bytes));
    Ok(())
}

async fn task_describe(module: Option<PathBuf>) -> Result<()> {
    let sandbox = Sandbox::new(SandboxConfig { compiler: cli_compiler()?, ..Default::default() })?;
    let grant = vec!["kube-read".into(), "kube-write".into(), "kube-delete".into(), "sidecar".into()];
    let registry = registry_for(&sandbox, module.as_ref(), &grant).await?;
    let mut seen = std::collections::BTreeSet::new();
    for t in registry.task_types() {
        if let Some(e) = registry.resolve(&t)
            && seen.insert(e.module.digest.to_string())
        {
            println!(
                "{} {} ({})\n  digest: {}\n  task types: {}\n  capabilities: {}\n  loaded in {} ms ({:?})",
                e.module.info.name,
                e.module.info.version,
                e.source,
                e.module.digest,
                e.module.info.task_types.join(", "),
                e.module.info.capabilities.join(", "),
                e.module.load_time.as_millis(),
                e.module.cache_outcome
            );
        }
    }
    Ok(())
}
