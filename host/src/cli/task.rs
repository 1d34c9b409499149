//! `sei-operator task run|describe|export`.
//!
//! - `task run <task-type> -f node.yaml [--params JSON] [--module FILE] [--steps N]` runs steps of
//!   a task module against a SeiNode manifest with an in-memory Kubernetes and sidecar, under
//!   exactly the controller's scope (`node::scope::node_scope`) and limits, and prints each step's
//!   report (outcome, host calls against the budget, logs, fuel, peak memory), escaped;
//! - `task describe [--module FILE]` prints what the built-in modules (or a module file) say
//!   about themselves;
//! - `task export NAME -o FILE [--tag T]` writes a built-in's component (re-tagged: a new sha256)
//!   and prints its sha256.

use anyhow::{Context, Result};
use clap::Subcommand;
use sei_operator::adapters::kube::InMemoryKube;
use sei_operator::adapters::sidecar::InMemorySidecar;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::registry::{ModuleEntry, ModuleSource, TaskRegistry};
use sei_operator::sandbox::{ModuleGrant, RunEnv, RunInput, Sandbox, SandboxConfig, StepOutcome};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Subcommand)]
pub enum TaskCommand {
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
pub struct RunArgs {
    /// The task type, e.g. `ensure-data-pvc`.
    pub task_type: String,
    /// The SeiNode manifest (YAML or JSON).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The task's params as JSON. Default: what the planner would give the task for this node.
    #[arg(long)]
    pub params: Option<String>,
    /// Run this module file (a wasm component) instead of the built-in one.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// Capabilities granted to `--module` (comma separated: kube-read,kube-write,kube-delete,sidecar).
    #[arg(long, value_delimiter = ',', default_value = "kube-read,kube-write,kube-delete,sidecar")]
    pub grant: Vec<String>,
    /// The checkpoint to resume from.
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Run up to this many steps, feeding each pending checkpoint to the next.
    #[arg(long, default_value_t = 1)]
    pub steps: u32,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The params the planner would give this task for this node (local platform settings); `{}`
/// for a task type the planner does not know (a custom module's).
fn default_params(typed: &sei_operator::api::seinode::SeiNode, task_type: &str) -> Result<String> {
    use sei_operator::node::planner::{Mode, params_for, snapshot_source};
    let Some(task) = sei_task_params::TaskType::parse(task_type) else { return Ok("{}".into()) };
    let mode = Mode::of(typed).context("the SeiNode sets no mode (fullNode, archive, replayer or validator)")?;
    let platform = sei_operator::platform::PlatformConfig::for_local();
    let params = params_for(typed, mode, task, snapshot_source(typed), &platform);
    Ok(params.map_or_else(|| "{}".to_string(), |p| p.to_json().to_string()))
}

pub fn parse_grants(names: &[String]) -> Result<Grants> {
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

async fn run(args: RunArgs) -> Result<std::process::ExitCode> {
    let sandbox = Sandbox::new(SandboxConfig { compiler: super::compiler()?, ..Default::default() })?;
    let registry = registry_for(&sandbox, args.module.as_ref(), &args.grant).await?;
    let entry = registry
        .resolve(&args.task_type)
        .with_context(|| format!("no module implements task type `{}` (known: {})", args.task_type, registry.task_types().join(", ")))?;
    let node = super::read_node(&args.file)?;
    let typed = super::typed_node(&node, &args.file)?;
    // Exactly the controller's scope: the node's uid as the owner of every write, its pod labels,
    // the platform's service account and placement (local platform settings).
    let scope = sei_operator::node::scope::node_scope(&typed, &sei_operator::platform::PlatformConfig::for_local());
    let params = match args.params {
        Some(p) => {
            serde_json::from_str::<serde_json::Value>(&p).context("--params is not JSON")?;
            p
        }
        None => default_params(&typed, &args.task_type)?,
    };
    let kube = Arc::new(InMemoryKube::new());
    let sidecar = Arc::new(InMemorySidecar::new());
    let env = RunEnv { scope, kube: kube.clone(), sidecar: Some(sidecar), members: None };
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
        let json = serde_json::to_string_pretty(&serde_json::json!({ "steps": reports, "objects": kube.objects() }))?;
        println!("{}", sei_operator::text::json_safe(&json));
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

fn export(name: &str, output: &Path, tag: Option<&str>) -> Result<()> {
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

async fn describe(module: Option<PathBuf>) -> Result<()> {
    let sandbox = Sandbox::new(SandboxConfig { compiler: super::compiler()?, ..Default::default() })?;
    let grant = vec!["kube-read".into(), "kube-write".into(), "kube-delete".into(), "sidecar".into()];
    let registry = registry_for(&sandbox, module.as_ref(), &grant).await?;
    let mut seen = std::collections::BTreeSet::new();
    for t in registry.task_types() {
        if let Some(e) = registry.resolve(&t)
            && seen.insert(e.module.digest.to_string())
        {
            println!(
                "{} {} ({})\n  digest: {}\n  task types: {}\n  capabilities: {}\n  loaded in {} ms ({})",
                e.module.info.name,
                e.module.info.version,
                e.source,
                e.module.digest,
                e.module.info.task_types.join(", "),
                e.module.info.capabilities.join(", "),
                e.module.load_time.as_millis(),
                e.module.cache_outcome.as_str()
            );
        }
    }
    Ok(())
}

/// Carry out a `task` command; the exit code of `task run` says whether its last step failed.
pub async fn dispatch(command: TaskCommand) -> Result<std::process::ExitCode> {
    match command {
        TaskCommand::Run(args) => run(args).await,
        TaskCommand::Describe { module } => describe(module).await.map(|()| std::process::ExitCode::SUCCESS),
        TaskCommand::Export { name, output, tag } => export(&name, &output, tag.as_deref()).map(|()| std::process::ExitCode::SUCCESS),
    }
}
