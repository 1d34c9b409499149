//! `sei-operator task …`: the author kit's commands (the logic is in `authoring/`).
//!
//! - `task new NAME [--lang rust|python|js]`: a project that builds at once;
//! - `task build [DIR]`: build the guest, make it a component, check it exactly as the
//!   controller's load pipeline does, print digest, size and what `describe` says;
//! - `task test [CASES]`: run a case file in the sandbox, print a table, exit 1 on a failure;
//! - `task run TYPE -f node.yaml`: run steps under the controller's scope and limits against an
//!   in-memory cluster (seeded with `--objects`) and a scripted sidecar, or a real cluster
//!   (`--kubeconfig`) and sidecar (`--sidecar-url`); `--record FILE` keeps every host call;
//! - `task replay FILE --module NEW.wasm`: replay a recording offline, diff the host calls;
//! - `task bench TYPE -f node.yaml`: median and p99 of wall time, fuel and memory over N runs;
//! - `task describe`, `task export`: what modules say about themselves; a built-in's bytes.
//!
//! Exit codes of `run`: 0 the last step completed, 2 it failed, 3 it is still pending.

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use sei_operator::adapters::kube::{InMemoryKube, KubeAdapter};
use sei_operator::adapters::sidecar::{InMemorySidecar, SidecarClient};
use sei_operator::authoring::cases::{self, CaseFile, SidecarScript};
use sei_operator::authoring::component::{WasmKind, componentize, wasm_kind};
use sei_operator::authoring::harness::{Ending, StepsRun, StepsSpec, run_steps};
use sei_operator::authoring::recording::{self, Exchange, Replay, ReplayKube, ReplaySidecar};
use sei_operator::authoring::report::{figures, outcome_kind, spread, text};
use sei_operator::authoring::scaffold::{self, Lang};
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::registry::{ModuleEntry, ModuleSource, TaskRegistry};
use sei_operator::sandbox::{LoadedModule, ModuleGrant, Sandbox, SandboxConfig, StepOutcome};
use sei_operator::text::escape;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

/// Every capability, by its WIT name.
const ALL_CAPABILITIES: [&str; 4] = ["kube-read", "kube-write", "kube-delete", "sidecar"];

/// Steps a recording or a case may ask for (files can come from someone else; `--steps` is the
/// user's own choice and is not capped).
const MAX_STEPS: u32 = 1_000;
/// The largest case file or recording read.
const MAX_INPUT_FILE_BYTES: u64 = 64 << 20;

/// Read a case file or recording, refusing one over [`MAX_INPUT_FILE_BYTES`].
fn read_capped(path: &Path) -> Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    file.take(MAX_INPUT_FILE_BYTES + 1).read_to_string(&mut text).with_context(|| format!("reading {}", path.display()))?;
    if text.len() as u64 > MAX_INPUT_FILE_BYTES {
        bail!("{} is over {MAX_INPUT_FILE_BYTES} bytes", path.display());
    }
    Ok(text)
}

/// `run`: the last step is still pending.
const EXIT_PENDING: u8 = 3;
/// `run`: the last step failed.
const EXIT_FAILED: u8 = 2;

#[derive(Subcommand)]
pub enum TaskCommand {
    /// Make a new task module project (outside this repository) that builds at once.
    New(NewArgs),
    /// Build a project's guest, make it a component, and check it as the controller will.
    Build(BuildArgs),
    /// Run a case file's cases in the sandbox; exit 1 when one fails.
    Test(TestArgs),
    /// Run steps of a task against a SeiNode manifest.
    Run(Box<RunArgs>),
    /// Replay a recorded run against a module, offline, and show how its host calls differ.
    Replay(ReplayArgs),
    /// Median and p99 of a task's step: wall time, fuel, peak memory.
    Bench(Box<BenchArgs>),
    /// Print what the built-in modules (or one module file) say about themselves.
    Describe {
        /// A module file (a wasm component) instead of the built-ins.
        #[arg(long)]
        module: Option<PathBuf>,
    },
    /// Write a built-in module's component to a file and print its sha256.
    Export {
        /// `sei-builtin-infra`, `sei-builtin-sidecar` or `sei-builtin-group`.
        name: String,
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// Append a `sei-release` custom section with this text: the same code under a new sha256.
        #[arg(long)]
        tag: Option<String>,
    },
}

#[derive(clap::Args)]
pub struct NewArgs {
    /// The module's name (lowercase letters, digits and `-`); also the directory's.
    pub name: String,
    #[arg(long, value_enum, default_value = "rust")]
    pub lang: Lang,
    /// The task type the module implements (a planner task type it replaces through a TaskModule).
    #[arg(long, default_value = "mark-ready")]
    pub task_type: String,
    /// Where to make the project (default: ./NAME).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct BuildArgs {
    /// The project directory.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Where to write the component (default: DIR/build/<directory name>.wasm).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct TestArgs {
    /// The case file.
    #[arg(default_value = "cases.yaml")]
    pub cases: PathBuf,
    /// The component to test (default: the case file's `module`, else the project's build output).
    #[arg(long)]
    pub module: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ModuleArgs {
    /// A module file (a wasm component) instead of the built-in one.
    #[arg(long)]
    pub module: Option<PathBuf>,
    /// Capabilities granted to `--module`: a comma-separated list of kube-read, kube-write,
    /// kube-delete, sidecar, or `none`.
    #[arg(long, value_delimiter = ',', default_value = "kube-read,kube-write,kube-delete,sidecar")]
    pub grant: Vec<String>,
}

/// What `run` and `bench` run: a task of a module against a node, an in-memory cluster and a
/// scripted sidecar.
#[derive(clap::Args)]
pub struct StepArgs {
    /// The task type, e.g. `ensure-data-pvc`.
    pub task_type: String,
    /// The SeiNode manifest (YAML or JSON).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// The task's params as JSON. Default: the planner's params for its own task types, `{}`
    /// for any other.
    #[arg(long)]
    pub params: Option<String>,
    #[command(flatten)]
    pub module: ModuleArgs,
    /// Objects in the in-memory cluster before the first step (YAML: a list, or documents).
    #[arg(long)]
    pub objects: Option<PathBuf>,
    /// What the in-memory sidecar answers (YAML, the `sidecar` field of a case).
    #[arg(long)]
    pub sidecar_script: Option<PathBuf>,
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub step: StepArgs,
    /// The checkpoint to resume from.
    #[arg(long)]
    pub checkpoint: Option<String>,
    /// Run up to this many steps, feeding each pending checkpoint to the next.
    #[arg(long, default_value_t = 1)]
    pub steps: u32,
    /// Run against this cluster instead of an in-memory one (its writes are real).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Run against this sidecar (`http://host:7777`) instead of an in-memory one.
    #[arg(long)]
    pub sidecar_url: Option<String>,
    /// Record every host call and its answer to this file (for `task replay`).
    #[arg(long)]
    pub record: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct ReplayArgs {
    /// A recording made by `task run --record`.
    pub recording: PathBuf,
    /// The module to replay (default: the built-in one).
    #[arg(long)]
    pub module: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub step: StepArgs,
    /// Runs of the first step, each in a fresh in-memory cluster and sidecar.
    #[arg(long, default_value_t = 100)]
    pub iterations: u32,
    #[arg(long)]
    pub json: bool,
}

/// The params the planner would give this task for this node (local platform settings); `{}`
/// for a task type the planner does not know (a custom module's), whatever the node's mode.
fn default_params(typed: &sei_operator::api::seinode::SeiNode, task_type: &str) -> Result<String> {
    use sei_operator::node::planner::{Mode, params_for, snapshot_source};
    let Some(task) = sei_task_params::TaskType::parse(task_type) else { return Ok("{}".into()) };
    let Some(mode) = Mode::of(typed) else { return Ok("{}".into()) };
    let platform = sei_operator::platform::PlatformConfig::for_local();
    let params = params_for(typed, mode, task, snapshot_source(typed), &platform);
    Ok(params.map_or_else(|| "{}".to_string(), |p| p.to_json().to_string()))
}

/// The grant a `--grant` list says; `none` (or an empty list) grants nothing.
pub fn parse_grants(names: &[String]) -> Result<Grants> {
    let caps = names
        .iter()
        .map(|n| n.trim())
        .filter(|n| !n.is_empty() && *n != "none")
        .map(|n| {
            CapabilityName::parse(n)
                .with_context(|| format!("unknown capability `{n}` (kube-read, kube-write, kube-delete, sidecar, none)"))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Grants::new(caps))
}

/// The sandbox of every command: the controller's limits and bounded child compiles, with
/// compiled modules cached per user (`$XDG_CACHE_HOME` or `~/.cache`, `sei-operator/compiled-modules`,
/// mode 0700, each artifact checked against its digest before use) so that a second
/// `task run` or `task test` of a large module does not compile it again.
fn sandbox() -> Result<Sandbox> {
    let cache_dir = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|d| d.join("sei-operator").join("compiled-modules"));
    let config = SandboxConfig { compiler: super::compiler()?, cache_dir, ..Default::default() };
    match Sandbox::new(config.clone()) {
        // An unusable cache directory (a read-only home): compile every load instead.
        Err(sei_operator::sandbox::SandboxError::Cache { .. }) => Ok(Sandbox::new(SandboxConfig { cache_dir: None, ..config })?),
        other => Ok(other?),
    }
}

/// Read a component file; a core module or a non-wasm file gets an error that says what to do.
fn read_component(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading module {}", path.display()))?;
    match wasm_kind(&bytes) {
        WasmKind::Component => Ok(bytes),
        WasmKind::CoreModule => bail!(
            "{} is a core wasm module, not a component: run `sei-operator task build` on its project \
             (it makes the component with wit-component)",
            path.display()
        ),
        WasmKind::NotWasm => bail!("{} is not a wasm file", path.display()),
    }
}

/// Load a module file through the controller's pipeline (compiled in a bounded child process,
/// imports and WIT version checked, `describe` checked against the grant).
async fn load_file(sandbox: &Sandbox, path: &Path, grants: Grants) -> Result<LoadedModule> {
    let bytes = read_component(path)?;
    sandbox.load_module(&bytes, ModuleGrant::new(grants)).await.with_context(|| format!("loading module {}", path.display()))
}

async fn registry_for(sandbox: &Sandbox, args: &ModuleArgs) -> Result<TaskRegistry> {
    let registry = TaskRegistry::new();
    match &args.module {
        None => registry.load_builtins(sandbox).await?,
        Some(path) => {
            let loaded = load_file(sandbox, path, parse_grants(&args.grant)?).await?;
            let types = loaded.info.task_types.clone();
            registry.install(&types, ModuleEntry::new(ModuleSource::Directory { path: path.display().to_string() }, loaded));
        }
    }
    Ok(registry)
}

async fn resolve(sandbox: &Sandbox, args: &ModuleArgs, task_type: &str) -> Result<Arc<ModuleEntry>> {
    let registry = registry_for(sandbox, args).await?;
    let entry = registry
        .resolve(task_type)
        .with_context(|| format!("no module implements task type `{task_type}` (known: {})", registry.task_types().join(", ")))?;
    Ok(entry)
}

fn read_yaml_values(path: &Path) -> Result<Vec<serde_json::Value>> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = serde_json::Value::deserialize(doc).with_context(|| format!("parsing {} as YAML", path.display()))?;
        match v {
            serde_json::Value::Array(items) => out.extend(items),
            serde_json::Value::Null => {}
            other => out.push(other),
        }
    }
    Ok(out)
}

/// An in-memory cluster holding `objects`.
fn seeded_kube(objects: &[serde_json::Value], namespace: &str) -> Result<Arc<InMemoryKube>> {
    let kube = Arc::new(InMemoryKube::new());
    for o in objects {
        let mut o = o.clone();
        if let Some(meta) = o.get_mut("metadata").and_then(|m| m.as_object_mut()) {
            meta.entry("namespace").or_insert_with(|| namespace.into());
        }
        kube.insert(o.clone()).map_err(|e| anyhow::anyhow!("seeding object {}: {e}", escape(&o.to_string())))?;
    }
    Ok(kube)
}

/// An in-memory sidecar answering as `script` says.
fn scripted_sidecar(script: &SidecarScript) -> Arc<InMemorySidecar> {
    let sidecar = InMemorySidecar::new();
    for (task_type, s) in &script.tasks {
        sidecar.script(task_type, s.to_script());
    }
    if let Some(s) = &script.status {
        sidecar.set_status(s);
    }
    if let Some(h) = script.healthz {
        sidecar.set_healthz(h);
    }
    if let Some(d) = &script.down {
        sidecar.set_down(d);
    }
    Arc::new(sidecar)
}

fn read_sidecar_script(path: Option<&PathBuf>) -> Result<SidecarScript> {
    match path {
        None => Ok(SidecarScript::default()),
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_yaml::from_str(&text).with_context(|| format!("{} is not a sidecar script", p.display()))
        }
    }
}

struct NodeInput {
    node: serde_json::Value,
    spec: StepsSpec,
}

fn node_input(file: &Path, task_type: &str, params: Option<&str>, checkpoint: Option<String>, steps: u32) -> Result<NodeInput> {
    let node = super::read_node(file)?;
    let typed = super::typed_node(&node, file)?;
    // Exactly the controller's scope: the node's uid as the owner of every write, its pod
    // labels, the platform's service account and placement (local platform settings).
    let scope = super::local_scope(&typed);
    let params = match params {
        Some(p) => {
            serde_json::from_str::<serde_json::Value>(p).context("--params is not JSON")?;
            p.to_string()
        }
        None => default_params(&typed, task_type)?,
    };
    let spec = StepsSpec { task_type: task_type.into(), node: node.clone(), params, checkpoint, max_steps: steps, scope };
    Ok(NodeInput { node, spec })
}

/// A recording file: what ran, and every host call with its answer.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Recording {
    format: u32,
    task_type: String,
    module: String,
    module_digest: String,
    node: serde_json::Value,
    params: String,
    checkpoint: Option<String>,
    steps: u32,
    /// What each step ended with (`complete`, `pending`, an error kind).
    outcomes: Vec<String>,
    exchanges: Vec<Exchange>,
    /// Exchanges past the tape's cap, not recorded.
    #[serde(default)]
    dropped_exchanges: usize,
}

async fn run(args: RunArgs) -> Result<ExitCode> {
    let sandbox = sandbox()?;
    let step = &args.step;
    let entry = resolve(&sandbox, &step.module, &step.task_type).await?;
    let module = &entry.module;
    let input = node_input(&step.file, &step.task_type, step.params.as_deref(), args.checkpoint.clone(), args.steps)?;
    let namespace = input.spec.scope.namespace.clone();
    let objects = step.objects.as_deref().map(read_yaml_values).transpose()?.unwrap_or_default();
    let memory_kube = seeded_kube(&objects, &namespace)?;
    let kube: Arc<dyn KubeAdapter> = match &args.kubeconfig {
        None => memory_kube.clone(),
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path).with_context(|| format!("reading kubeconfig {}", path.display()))?;
            let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await.context("using the kubeconfig")?;
            let client = kube::Client::try_from(config).context("a client for the kubeconfig's cluster")?;
            Arc::new(sei_operator::adapters::kube::KubeClientAdapter::new(client))
        }
    };
    let sidecar: Arc<dyn SidecarClient> = match &args.sidecar_url {
        None => scripted_sidecar(&read_sidecar_script(step.sidecar_script.as_ref())?),
        Some(url) => Arc::new(
            sei_operator::adapters::sidecar::HttpSidecarClient::new(url.clone(), std::time::Duration::from_secs(10))
                .map_err(|e| anyhow::anyhow!("sidecar {url}: {e}"))?,
        ),
    };
    let out = run_steps(&sandbox, module, &input.spec, kube, sidecar).await;
    if let Some(path) = &args.record {
        let recording = Recording {
            format: 1,
            task_type: step.task_type.clone(),
            module: module.info.name.clone(),
            module_digest: module.digest.to_string(),
            node: input.node.clone(),
            params: input.spec.params.clone(),
            checkpoint: args.checkpoint.clone(),
            steps: args.steps,
            outcomes: out.reports.iter().map(outcome_kind).collect(),
            exchanges: out.tape.exchanges(),
            dropped_exchanges: out.tape.dropped(),
        };
        std::fs::write(path, serde_json::to_vec_pretty(&recording)?).with_context(|| format!("writing {}", path.display()))?;
    }
    if args.json {
        let steps: Vec<_> = out.reports.iter().map(|r| serde_json::json!({"report": r, "figures": figures(r)})).collect();
        let calls: Vec<String> = out.tape.exchanges().iter().map(|e| e.call.line()).collect();
        let json = serde_json::json!({ "steps": steps, "calls": calls, "objects": memory_kube.objects() });
        println!("{}", sei_operator::text::json_safe(&serde_json::to_string_pretty(&json)?));
    } else {
        print_run(&out, args.kubeconfig.is_none().then_some(&*memory_kube))?;
        if let Some(path) = &args.record {
            println!("\nrecorded {} host calls to {}", out.tape.len(), path.display());
        }
    }
    Ok(match out.ending() {
        Ending::Complete => ExitCode::SUCCESS,
        Ending::Pending => ExitCode::from(EXIT_PENDING),
        Ending::Failed => ExitCode::from(EXIT_FAILED),
    })
}

fn print_run(out: &StepsRun, memory: Option<&InMemoryKube>) -> Result<()> {
    for (i, r) in out.reports.iter().enumerate() {
        println!("step {}: {}", i + 1, escape(&r.summary()));
        match &r.outcome {
            Ok(StepOutcome::Complete { output }) => println!("  output: {}", escape(&output.to_string())),
            Ok(StepOutcome::Pending { checkpoint, .. }) => println!("  checkpoint: {}", escape(checkpoint)),
            Err(_) => {}
        }
        for c in &r.host_calls {
            println!("    {:<8} {:<60} {} ({} µs)", c.interface, c.call, c.outcome, c.micros);
        }
        for l in &r.logs {
            println!("  log {:<5} {}", l.level, l.message);
        }
        println!("{}", text(&figures(r)));
    }
    if out.ending() == Ending::Pending {
        println!("\nstill pending after {} steps (exit code {EXIT_PENDING}); run more with --steps", out.reports.len());
    }
    if let Some(kube) = memory {
        let objects = kube.objects();
        println!("\nobjects in the in-memory cluster: {}", objects.len());
        for o in objects {
            let s = |p: &str| o.pointer(p).and_then(|v| v.as_str()).unwrap_or("?").to_string();
            println!("--- {} {}/{}", escape(&s("/kind")), escape(&s("/metadata/namespace")), escape(&s("/metadata/name")));
            for line in serde_yaml::to_string(&o)?.lines() {
                println!("{}", escape(line));
            }
        }
    }
    Ok(())
}

async fn replay(args: ReplayArgs) -> Result<ExitCode> {
    let text_in = read_capped(&args.recording)?;
    let recording: Recording =
        serde_json::from_str(&text_in).with_context(|| format!("{} is not a recording", args.recording.display()))?;
    let hex_digest = recording.module_digest.len() == 64 && recording.module_digest.bytes().all(|b| b.is_ascii_hexdigit());
    if !hex_digest {
        bail!("{}: moduleDigest is not a sha256 (64 hex digits)", args.recording.display());
    }
    // A run stops at the step that completes or fails, so a recording holds at most `steps` outcomes.
    if recording.steps > MAX_STEPS || recording.outcomes.len() > recording.steps as usize {
        bail!(
            "{}: {} steps with {} recorded outcomes; a recording holds at most one outcome per step and at most {MAX_STEPS} steps",
            args.recording.display(),
            recording.steps,
            recording.outcomes.len()
        );
    }
    if recording.exchanges.len() > recording::MAX_EXCHANGES || recording.dropped_exchanges > 0 {
        bail!(
            "{} holds more than {} host calls (the recorder keeps at most that many): record fewer steps",
            args.recording.display(),
            recording::MAX_EXCHANGES
        );
    }
    let sandbox = sandbox()?;
    let module_args = ModuleArgs { module: args.module.clone(), grant: ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect() };
    let entry = resolve(&sandbox, &module_args, &recording.task_type).await?;
    let module = &entry.module;
    let typed: sei_operator::api::seinode::SeiNode =
        serde_json::from_value(recording.node.clone()).context("the recording's node is not a valid SeiNode")?;
    let scope = super::local_scope(&typed);
    let spec = StepsSpec {
        task_type: recording.task_type.clone(),
        node: recording.node.clone(),
        params: recording.params.clone(),
        checkpoint: recording.checkpoint.clone(),
        max_steps: recording.steps,
        scope,
    };
    let recorded_calls: Vec<_> = recording.exchanges.iter().map(|e| e.call.clone()).collect();
    let replay = Replay::new(recording.exchanges);
    let out = run_steps(&sandbox, module, &spec, Arc::new(ReplayKube(replay.clone())), Arc::new(ReplaySidecar(replay.clone()))).await;
    let replayed: Vec<_> = replay.made.exchanges().into_iter().map(|e| e.call).collect();
    let diff = recording::diff_calls(&recorded_calls, &replayed);
    let outcomes: Vec<String> = out.reports.iter().map(outcome_kind).collect();
    let differs = recording::has_difference(&diff) || outcomes != recording.outcomes;
    if args.json {
        let json = serde_json::json!({
            "recordedModule": recording.module_digest, "module": module.digest.to_string(),
            "recordedOutcomes": recording.outcomes, "outcomes": outcomes, "diff": diff, "differs": differs,
        });
        println!("{}", sei_operator::text::json_safe(&serde_json::to_string_pretty(&json)?));
    } else {
        println!(
            "replayed {} (recorded with {} {}) with {} {}",
            recording.task_type,
            escape(&recording.module),
            &recording.module_digest[..12.min(recording.module_digest.len())],
            module.info.name,
            &module.digest[..12]
        );
        println!("outcomes: recorded {:?}, replayed {:?}", recording.outcomes, outcomes);
        for d in &diff {
            match d {
                recording::DiffLine::Same { call } => println!("  {}", escape(call)),
                recording::DiffLine::Removed { call } => println!("- {}", escape(call)),
                recording::DiffLine::Added { call } => println!("+ {}", escape(call)),
                recording::DiffLine::Changed { call, fields } => println!("~ {} (changed: {})", escape(call), escape(&fields.join(", "))),
            }
        }
        println!("{}", if differs { "the module's host calls differ from the recording" } else { "no difference" });
    }
    Ok(if differs { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

async fn bench(args: BenchArgs) -> Result<ExitCode> {
    let sandbox = sandbox()?;
    let step = &args.step;
    let entry = resolve(&sandbox, &step.module, &step.task_type).await?;
    let module = &entry.module;
    let input = node_input(&step.file, &step.task_type, step.params.as_deref(), None, 1)?;
    let objects = step.objects.as_deref().map(read_yaml_values).transpose()?.unwrap_or_default();
    let script = read_sidecar_script(step.sidecar_script.as_ref())?;
    let (mut wall, mut fuel, mut memory) = (Vec::new(), Vec::new(), Vec::new());
    let mut outcome = String::new();
    for _ in 0..args.iterations.max(1) {
        let kube = seeded_kube(&objects, &input.spec.scope.namespace)?;
        let out = run_steps(&sandbox, module, &input.spec, kube, scripted_sidecar(&script)).await;
        if let Some(r) = out.reports.first() {
            wall.push(r.duration_micros);
            fuel.push(r.fuel_consumed);
            memory.push(r.peak_memory_bytes as u64);
            outcome = outcome_kind(r);
        }
    }
    let (w, f, m) = (spread(&wall), spread(&fuel), spread(&memory));
    if args.json {
        let json = serde_json::json!({"module": module.digest.to_string(), "taskType": step.task_type, "iterations": wall.len(),
            "outcome": outcome, "wallMicros": w, "fuel": f, "peakMemoryBytes": m});
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        println!(
            "{} ({} {}), {} runs of the first step, outcome {outcome}",
            step.task_type,
            module.info.name,
            &module.digest[..12],
            wall.len()
        );
        println!("  wall µs:      median {:>10}  p99 {:>10}  min {:>10}  max {:>10}", w.median, w.p99, w.min, w.max);
        println!("  fuel:         median {:>10}  p99 {:>10}  min {:>10}  max {:>10}", f.median, f.p99, f.min, f.max);
        println!("  peak memory:  median {:>10}  p99 {:>10}  min {:>10}  max {:>10}", m.median, m.p99, m.min, m.max);
    }
    Ok(ExitCode::SUCCESS)
}

fn new_project(args: NewArgs) -> Result<ExitCode> {
    if !scaffold::valid_name(&args.name) {
        bail!("`{}` is not a module name: lowercase letters, digits and `-`, starting with a letter, at most 63", escape(&args.name));
    }
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && std::fs::read_dir(&dir).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("{} exists and is not empty", dir.display());
    }
    for (path, contents) in scaffold::files(args.lang, &args.name, &args.task_type) {
        let path = dir.join(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("made {} ({:?}, task type {}) in {}", args.name, args.lang, args.task_type, dir.display());
    println!("next: cd {} && sei-operator task build && sei-operator task test", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Which language a project is in, from its files.
fn project_lang(dir: &Path) -> Result<Lang> {
    if dir.join("Cargo.toml").is_file() {
        Ok(Lang::Rust)
    } else if dir.join("app").join("app.py").is_file() {
        Ok(Lang::Python)
    } else if dir.join("task.js").is_file() {
        Ok(Lang::Js)
    } else {
        bail!("{} has no Cargo.toml, app/app.py or task.js: not a task module project (make one with `task new`)", dir.display())
    }
}

fn run_tool(cmd: &mut std::process::Command, what: &str) -> Result<()> {
    let status = cmd.status().with_context(|| format!("starting {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// A tool from an environment variable, else from PATH.
fn tool(var: &str, default: &str) -> PathBuf {
    std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(default))
}

/// Build the guest: the core module (Rust) or the component (Python, JavaScript).
fn build_guest(dir: &Path, lang: Lang, out: &Path) -> Result<Vec<u8>> {
    let wit = dir.join("wit");
    match lang {
        Lang::Rust => {
            let cargo = std::env::var_os("CARGO").map(PathBuf::from).unwrap_or_else(|| "cargo".into());
            let meta = std::process::Command::new(&cargo)
                .args(["metadata", "--format-version", "1", "--no-deps", "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                .output()
                .context("running cargo metadata")?;
            if !meta.status.success() {
                bail!("cargo metadata failed: {}", escape(&String::from_utf8_lossy(&meta.stderr)));
            }
            let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).context("reading cargo metadata")?;
            let target = meta["target_directory"].as_str().context("cargo metadata names no target directory")?;
            let root = meta["workspace_root"].as_str().context("cargo metadata names no workspace root")?;
            let package = meta["packages"]
                .as_array()
                .and_then(|p| {
                    p.iter().find(|p| p["manifest_path"].as_str().is_some_and(|m| Path::new(m).parent() == Some(Path::new(root))))
                })
                .and_then(|p| p["name"].as_str())
                .context("the project's Cargo.toml names no package")?;
            // Paths in the module (panic locations) are made machine-independent: the same
            // source and Cargo.lock give the same bytes in any directory, on any machine.
            let cargo_home = std::env::var("CARGO_HOME").ok().or_else(|| std::env::var("HOME").ok().map(|h| format!("{h}/.cargo")));
            let mut flags = vec![format!("--remap-path-prefix={root}=/src")];
            if let Some(h) = cargo_home {
                flags.push(format!("--remap-path-prefix={h}=/cargo"));
            }
            let mut cmd = std::process::Command::new(&cargo);
            cmd.args(["build", "--release", "--target", "wasm32-unknown-unknown", "--manifest-path"])
                .arg(dir.join("Cargo.toml"))
                .env("CARGO_ENCODED_RUSTFLAGS", flags.join("\u{1f}"))
                .env_remove("RUSTFLAGS");
            run_tool(
                &mut cmd,
                "cargo build --target wasm32-unknown-unknown (is the target installed? `rustup target add wasm32-unknown-unknown`)",
            )?;
            let core = Path::new(target).join("wasm32-unknown-unknown").join("release").join(format!("{}.wasm", package.replace('-', "_")));
            std::fs::read(&core).with_context(|| format!("reading the built module {}", core.display()))
        }
        Lang::Python => {
            let py = tool("SEI_COMPONENTIZE_PY", "componentize-py");
            let mut cmd = std::process::Command::new(&py);
            cmd.current_dir(dir)
                .arg("-d")
                .arg(&wit)
                .args(["-w", "task-module", "componentize", "--stub-wasi", "-p", "app", "app", "-o"])
                .arg(out);
            run_tool(&mut cmd, &format!("{} (install it: `pip install componentize-py`, or set SEI_COMPONENTIZE_PY)", py.display()))?;
            std::fs::read(out).with_context(|| format!("reading {}", out.display()))
        }
        Lang::Js => {
            let js = tool("SEI_COMPONENTIZE_JS", "componentize-js");
            let mut cmd = std::process::Command::new(&js);
            cmd.current_dir(dir)
                .arg("task.js")
                .arg("--wit")
                .arg(&wit)
                .args(["--world-name", "task-module", "-d", "stdio", "random", "clocks", "http", "fetch-event", "-o"])
                .arg(out);
            run_tool(
                &mut cmd,
                &format!("{} (install it: `npm install @bytecodealliance/componentize-js`, or set SEI_COMPONENTIZE_JS)", js.display()),
            )?;
            std::fs::read(out).with_context(|| format!("reading {}", out.display()))
        }
    }
}

async fn build(args: BuildArgs) -> Result<ExitCode> {
    let dir = args.dir.canonicalize().with_context(|| format!("no project directory {}", args.dir.display()))?;
    let lang = project_lang(&dir)?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "module".into());
    let out = args.output.unwrap_or_else(|| dir.join("build").join(format!("{name}.wasm")));
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let started = std::time::Instant::now();
    let built = build_guest(&dir, lang, &out)?;
    let component = componentize(&built).with_context(|| format!("making a component of {name}"))?;
    std::fs::write(&out, &component).with_context(|| format!("writing {}", out.display()))?;
    let build_time = started.elapsed();
    // Exactly the controller's load pipeline: compiled in a bounded child process, imports
    // linked against this host's WIT (no WASI), `describe` read and checked.
    let sandbox = sandbox()?;
    let all = parse_grants(&ALL_CAPABILITIES.map(String::from))?;
    let loaded = sandbox.load_module(&component, ModuleGrant::new(all)).await.with_context(|| format!("checking {}", out.display()))?;
    let wit_versions = component_wit_versions(&sandbox, &component);
    println!("built {} in {:.1} s", out.display(), build_time.as_secs_f64());
    println!("  sha256:       {}", loaded.digest);
    println!("  size:         {} bytes", component.len());
    println!("  module:       {} {}", escape(&loaded.info.name), escape(&loaded.info.version));
    println!("  task types:   {}", escape(&loaded.info.task_types.join(", ")));
    println!("  capabilities: {}", loaded.info.capabilities.join(", "));
    println!("  imports:      {}", wit_versions.join(", "));
    println!("  checked:      loads in the controller's pipeline ({} ms, {})", loaded.load_time.as_millis(), loaded.cache_outcome.as_str());
    Ok(ExitCode::SUCCESS)
}

/// The `sei:task` interfaces a component imports, with their versions.
fn component_wit_versions(sandbox: &Sandbox, bytes: &[u8]) -> Vec<String> {
    match wasmtime::component::Component::new(sandbox.engine(), bytes) {
        Ok(c) => c.component_type().imports(sandbox.engine()).map(|(name, _)| name.to_string()).collect(),
        Err(_) => vec!["(unreadable)".into()],
    }
}

fn value_or_file(v: &serde_json::Value, base: &Path) -> Result<serde_json::Value> {
    match v {
        serde_json::Value::String(path) => {
            let path = base.join(path);
            let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
            serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
        }
        other => Ok(other.clone()),
    }
}

/// A node for a case: namespace and uid filled in as the API server would.
fn case_node(v: serde_json::Value) -> Result<(serde_json::Value, sei_operator::api::seinode::SeiNode)> {
    let mut v = v;
    super::fill_server_fields(&mut v).context("the case's node has no metadata")?;
    let typed = serde_json::from_value(v.clone()).context("the case's node is not a valid SeiNode")?;
    Ok((v, typed))
}

async fn test(args: TestArgs) -> Result<ExitCode> {
    let text_in = read_capped(&args.cases)?;
    let file: CaseFile = serde_yaml::from_str(&text_in).with_context(|| format!("{} is not a case file", args.cases.display()))?;
    let base = args.cases.parent().map(Path::to_path_buf).filter(|p| !p.as_os_str().is_empty()).unwrap_or_else(|| ".".into());
    let module_path = match (&args.module, &file.module) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => base.join(m),
        (None, None) => {
            let dir = base.canonicalize().unwrap_or(base.clone());
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            dir.join("build").join(format!("{name}.wasm"))
        }
    };
    let sandbox = sandbox()?;
    let mut loaded: std::collections::BTreeMap<Vec<String>, Arc<LoadedModule>> = Default::default();
    let mut rows = Vec::new();
    let mut failed = 0;
    if let Some(case) = file.cases.iter().find(|c| c.steps > MAX_STEPS) {
        bail!("case `{}` asks for {} steps; at most {MAX_STEPS}", escape(&case.name), case.steps);
    }
    for case in &file.cases {
        let grant = case.grant.clone().or_else(|| file.grant.clone());
        let key = grant.clone().unwrap_or_else(|| vec!["(describe)".into()]);
        let module = match loaded.get(&key) {
            Some(m) => m.clone(),
            None => {
                let grants = match &grant {
                    Some(g) => parse_grants(g)?,
                    None => {
                        // What the module asks for: load once with everything to read it.
                        let all = parse_grants(&ALL_CAPABILITIES.map(String::from))?;
                        let probe = load_file(&sandbox, &module_path, all).await?;
                        parse_grants(&probe.info.capabilities)?
                    }
                };
                let m = Arc::new(load_file(&sandbox, &module_path, grants).await?);
                loaded.insert(key, m.clone());
                m
            }
        };
        let node_value =
            case.node.as_ref().or(file.node.as_ref()).context(format!("case `{}` has no node (and the file names none)", case.name))?;
        let (node, typed) = case_node(value_or_file(node_value, &base)?)?;
        let scope = super::local_scope(&typed);
        let params = match &case.params {
            Some(p) => p.to_string(),
            None => default_params(&typed, &case.task_type)?,
        };
        let spec = StepsSpec {
            task_type: case.task_type.clone(),
            node,
            params,
            checkpoint: case.checkpoint.clone(),
            max_steps: case.steps,
            scope,
        };
        let kube = seeded_kube(&case.objects, &spec.scope.namespace)?;
        let out = run_steps(&sandbox, &module, &spec, kube.clone(), scripted_sidecar(&case.sidecar)).await;
        let last = out.reports.last();
        let observed = cases::Observed {
            outcome: last.map(outcome_kind).unwrap_or_default(),
            output: last.and_then(|r| match &r.outcome {
                Ok(StepOutcome::Complete { output }) => Some(output.clone()),
                _ => None,
            }),
            error: last.and_then(|r| r.outcome.as_ref().err().map(|e| e.to_string())),
            calls: out.tape.exchanges().into_iter().map(|e| e.call).collect(),
            objects: kube.objects(),
            denied_calls: out.reports.iter().map(|r| figures(r).denied_calls as usize).sum(),
        };
        let failures = cases::check(&case.expect, &observed);
        if !failures.is_empty() {
            failed += 1;
        }
        let fuel: u64 = out.reports.iter().map(|r| r.fuel_consumed).sum();
        let memory = out.reports.iter().map(|r| r.peak_memory_bytes).max().unwrap_or(0);
        rows.push((case.name.clone(), observed.outcome.clone(), out.reports.len(), fuel, memory, failures));
    }
    if args.json {
        let json: Vec<_> = rows
            .iter()
            .map(|(name, outcome, steps, fuel, memory, failures)| {
                serde_json::json!({"case": name, "outcome": outcome, "steps": steps, "fuel": fuel, "peakMemoryBytes": memory,
                    "passed": failures.is_empty(), "failures": failures})
            })
            .collect();
        println!("{}", sei_operator::text::json_safe(&serde_json::to_string_pretty(&json)?));
    } else {
        println!("{:<6} {:<60} {:<14} {:>5} {:>14} {:>10}", "", "case", "outcome", "steps", "fuel", "memory KiB");
        for (name, outcome, steps, fuel, memory, failures) in &rows {
            let mark = if failures.is_empty() { "ok" } else { "FAIL" };
            println!("{mark:<6} {:<60} {:<14} {steps:>5} {fuel:>14} {:>10}", escape(name), outcome, memory / 1024);
            for f in failures {
                println!("         - {}", escape(f));
            }
        }
        println!("\n{} cases, {} passed, {failed} failed ({})", rows.len(), rows.len() - failed, module_path.display());
    }
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
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
    let sandbox = sandbox()?;
    let args = ModuleArgs { module, grant: ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect() };
    let registry = registry_for(&sandbox, &args).await?;
    let mut seen = std::collections::BTreeSet::new();
    for t in registry.task_types() {
        if let Some(e) = registry.resolve(&t)
            && seen.insert(e.module.digest.to_string())
        {
            println!(
                "{} {} ({})\n  digest: {}\n  task types: {}\n  capabilities: {}\n  loaded in {} ms ({})",
                escape(&e.module.info.name),
                escape(&e.module.info.version),
                e.source,
                e.module.digest,
                escape(&e.module.info.task_types.join(", ")),
                e.module.info.capabilities.join(", "),
                e.module.load_time.as_millis(),
                e.module.cache_outcome.as_str()
            );
        }
    }
    Ok(())
}

/// Carry out a `task` command.
pub async fn dispatch(command: TaskCommand) -> Result<ExitCode> {
    let ok = ExitCode::SUCCESS;
    match command {
        TaskCommand::New(args) => new_project(args),
        TaskCommand::Build(args) => build(args).await,
        TaskCommand::Test(args) => test(args).await,
        TaskCommand::Run(args) => run(*args).await,
        TaskCommand::Replay(args) => replay(args).await,
        TaskCommand::Bench(args) => bench(*args).await,
        TaskCommand::Describe { module } => describe(module).await.map(|()| ok),
        TaskCommand::Export { name, output, tag } => export(&name, &output, tag.as_deref()).map(|()| ok),
    }
}
