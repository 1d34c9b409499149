//! Compiling components, bounded.
//!
//! Cranelift's time and memory grow with what a component contains, not with its size: a
//! 28.8 MB component under the 32 MiB fetch cap took 68 s and 2.57 GB to compile. So a module
//! that is not part of this binary is compiled by a child process (`sei-operator __compile`,
//! [`child_main`]) that limits itself before it reads a byte: an address-space limit
//! (`RLIMIT_AS`), a CPU-time limit (`RLIMIT_CPU`), the lowest scheduling priority and the highest
//! OOM score (if the container runs out of memory, the compiler dies first); the parent also kills
//! it at a wall-clock deadline. The child reads the component on stdin and writes the serialized
//! artifact on stdout; the parent deserializes only that (its own binary's output, for an engine
//! with the same compatibility hash). Only one compile runs at a time, so two bombs cannot add up.
//!
//! Built-in modules (`ModuleGrant::trusted_code`) and a sandbox configured with
//! [`Compiler::InProcess`] (tests, benches) compile in this process, on a blocking thread.
//!
//! Invariants (tests in `tests/sandbox_bounds.rs`): a compile bomb fails the load with
//! `CompileFailed` naming the exceeded limit, and the controller's own memory does not grow
//! (`compile_bomb_is_stopped_in_the_child`); a module compiled by the child runs like one compiled
//! in process (`child_compiled_module_runs`).

use std::path::PathBuf;
use std::time::Duration;
use wasmtime::component::Component;
use wasmtime::{Config, Engine, Precompiled};

/// The engine settings every artifact is compiled for: the controller's engine and the compiler
/// child build theirs from this, so the child's output loads in the parent.
pub fn engine_config() -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(true)
        .concurrency_support(false)
        .memory_init_cow(true)
        .native_unwind_info(false)
        .cranelift_opt_level(wasmtime::OptLevel::Speed);
    c
}

/// The hidden subcommand that runs [`child_main`].
pub const CHILD_SUBCOMMAND: &str = "__compile";
/// Largest component the child reads (the fetch cap).
pub const MAX_COMPONENT_BYTES: usize = 32 << 20;
/// Largest artifact the parent reads back.
pub const MAX_ARTIFACT_BYTES: usize = 512 << 20;

/// Limits of one compile in the child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileLimits {
    /// Address space of the child (`RLIMIT_AS`).
    pub memory_bytes: u64,
    /// CPU time of the child (`RLIMIT_CPU`; Cranelift compiles on every core).
    pub cpu_seconds: u64,
    /// Wall-clock deadline; the parent kills the child past it.
    pub timeout: Duration,
}

impl Default for CompileLimits {
    fn default() -> Self {
        Self { memory_bytes: 2 << 30, cpu_seconds: 60, timeout: Duration::from_secs(120) }
    }
}

/// How components that are not built into the binary are compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compiler {
    /// In this process, on a blocking thread (tests, benches, a trusted development setup).
    InProcess,
    /// In a child process of `exe` (`exe __compile`), under `limits`.
    Subprocess { exe: PathBuf, limits: CompileLimits },
}

impl Compiler {
    /// A child of this very executable.
    pub fn subprocess_of_current_exe(limits: CompileLimits) -> std::io::Result<Compiler> {
        Ok(Compiler::Subprocess { exe: std::env::current_exe()?, limits })
    }
}

/// Why a compile in the child failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompileFailure {
    /// The child hit its CPU or memory limit, or produced an artifact over its cap: the same
    /// bytes will do the same again, so the failure is remembered (`ArtifactCache`).
    Limit(String),
    /// Anything else (an invalid component, a wall-clock timeout, a failure to start).
    Other(String),
}

impl CompileFailure {
    pub fn message(&self) -> &str {
        match self {
            CompileFailure::Limit(m) | CompileFailure::Other(m) => m,
        }
    }
}

/// Why the child failed, from its exit status and the end of its stderr.
fn child_failure(status: std::process::ExitStatus, stderr: &str, limits: &CompileLimits) -> CompileFailure {
    use std::os::unix::process::ExitStatusExt;
    let tail = crate::text::safe(stderr.trim(), 1024);
    let out_of_memory =
        stderr.contains("memory allocation of") || stderr.contains("out of memory") || stderr.contains("Cannot allocate memory");
    match status.signal() {
        Some(libc::SIGXCPU) if !out_of_memory => {
            CompileFailure::Limit(format!("compiling exceeded the CPU limit of {} s (the compiler was stopped)", limits.cpu_seconds))
        }
        // Not our limit: most likely the out-of-memory killer of the container, which says
        // nothing about these bytes; not remembered, so a later attempt may succeed.
        Some(libc::SIGKILL) if !out_of_memory => CompileFailure::Other(
            "the compiler was killed (SIGKILL) from outside, most likely by the out-of-memory killer: is the container's memory limit above --compile-memory-mib?".into(),
        ),
        _ if out_of_memory => CompileFailure::Limit(format!(
            "compiling exceeded the memory limit of {} MiB (the compiler was stopped)",
            limits.memory_bytes >> 20
        )),
        Some(sig) => CompileFailure::Other(format!(
            "the compiler was killed by signal {sig}{}",
            if tail.is_empty() { String::new() } else { format!(": {tail}") }
        )),
        None => CompileFailure::Other(format!("the compiler failed ({status}): {tail}")),
    }
}

/// The largest artifact accepted for a component of `wasm_len` bytes: a few times the input (the
/// Python runtime's 18 MB component compiles to 35 MB), never more than `MAX_ARTIFACT_BYTES`.
pub fn artifact_cap(wasm_len: usize) -> usize {
    wasm_len.saturating_mul(8).saturating_add(16 << 20).min(MAX_ARTIFACT_BYTES)
}

/// Deserialize an artifact the child (this binary) produced.
pub(super) fn deserialize_own(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
    if Engine::detect_precompiled(bytes) != Some(Precompiled::Component) {
        return Err("the compiler's output is not a precompiled component".into());
    }
    // SAFETY: the bytes were produced by `child_main` of this same executable for an engine built
    // by `engine_config()`, whose compatibility hash wasmtime checks again here.
    unsafe { Component::deserialize(engine, bytes) }.map_err(|e| format!("loading the compiled module: {e:#}"))
}

/// Run `exe __compile` on `wasm` under `limits`; the serialized artifact on success. An artifact
/// over its cap stops the child at once.
pub(super) async fn compile_in_child(exe: &std::path::Path, limits: &CompileLimits, wasm: &[u8]) -> Result<Vec<u8>, CompileFailure> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut child = tokio::process::Command::new(exe)
        .arg(CHILD_SUBCOMMAND)
        .arg(format!("--memory-bytes={}", limits.memory_bytes))
        .arg(format!("--cpu-seconds={}", limits.cpu_seconds))
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| CompileFailure::Other(format!("starting the compiler {}: {e}", exe.display())))?;
    let (Some(mut stdin), Some(stdout), Some(mut stderr)) = (child.stdin.take(), child.stdout.take(), child.stderr.take()) else {
        return Err(CompileFailure::Other("the compiler's pipes could not be opened".into()));
    };
    let input = wasm.to_vec();
    // The child may exit early (a limit); a broken pipe is then not the error to report.
    let feed = tokio::spawn(async move {
        let _ = stdin.write_all(&input).await;
    });
    // Keep the start of stderr, drain the rest so the child never blocks on it.
    let read_err = tokio::spawn(async move {
        let mut err = Vec::new();
        let _ = (&mut stderr).take(64 << 10).read_to_end(&mut err).await;
        let _ = tokio::io::copy(&mut stderr, &mut tokio::io::sink()).await;
        String::from_utf8_lossy(&err).into_owned()
    });
    let cap = artifact_cap(wasm.len());
    let run = async {
        let mut out = Vec::new();
        let read = stdout.take(cap as u64 + 1).read_to_end(&mut out).await;
        if read.as_ref().is_ok_and(|n| *n > cap) {
            let _ = child.start_kill();
            let _ = child.wait().await;
            return Err(CompileFailure::Limit(format!(
                "the compiled module is over {cap} bytes, {} times its {} bytes (the compiler was stopped)",
                cap / wasm.len().max(1),
                wasm.len()
            )));
        }
        let status = child.wait().await.map_err(|e| CompileFailure::Other(format!("waiting for the compiler: {e}")))?;
        let _ = feed.await;
        let err = read_err.await.unwrap_or_default();
        if !status.success() {
            return Err(child_failure(status, &err, limits));
        }
        read.map(|_| out).map_err(|e| CompileFailure::Other(format!("reading the compiled module: {e}")))
    };
    match tokio::time::timeout(limits.timeout, run).await {
        Ok(r) => r,
        Err(_) => Err(CompileFailure::Other(format!("compiling did not finish within {:?} (the compiler was stopped)", limits.timeout))),
    }
}

/// Arguments of the child.
fn parse_child_args(args: &[String]) -> Result<(u64, u64), String> {
    let mut memory = None;
    let mut cpu = None;
    for a in args {
        if let Some(v) = a.strip_prefix("--memory-bytes=") {
            memory = Some(v.parse::<u64>().map_err(|e| format!("{a}: {e}"))?);
        } else if let Some(v) = a.strip_prefix("--cpu-seconds=") {
            cpu = Some(v.parse::<u64>().map_err(|e| format!("{a}: {e}"))?);
        } else {
            return Err(format!("unknown argument {a}"));
        }
    }
    Ok((memory.ok_or("--memory-bytes is required")?, cpu.ok_or("--cpu-seconds is required")?))
}

fn limit_self(memory_bytes: u64, cpu_seconds: u64) -> Result<(), String> {
    let set = |resource, value: u64, hard: u64, what: &str| {
        let lim = libc::rlimit { rlim_cur: value as libc::rlim_t, rlim_max: hard as libc::rlim_t };
        // SAFETY: setrlimit reads the struct passed by reference and has no other preconditions.
        if unsafe { libc::setrlimit(resource, &lim) } != 0 {
            return Err(format!("setting the {what} limit: {}", std::io::Error::last_os_error()));
        }
        Ok(())
    };
    set(libc::RLIMIT_AS, memory_bytes, memory_bytes, "address-space")?;
    // The soft limit stops the child with SIGXCPU, which tells the CPU limit apart from a SIGKILL
    // from outside (the out-of-memory killer); the hard limit a second later is a backstop.
    set(libc::RLIMIT_CPU, cpu_seconds.max(1), cpu_seconds.max(1) + 1, "CPU-time")?;
    // SIGXCPU dumps core by default: no core files of a compiler that hit its limit.
    set(libc::RLIMIT_CORE, 0, 0, "core-file")?;
    // Best effort: the lowest priority, and the first to go when the container runs out of memory.
    // SAFETY: setpriority on this process has no preconditions.
    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    let _ = std::fs::write("/proc/self/oom_score_adj", "1000");
    Ok(())
}

/// The child: limit itself, read a component on stdin, compile it, write the artifact on stdout.
pub fn child_main(args: &[String]) -> std::process::ExitCode {
    use std::io::{Read, Write};
    let run = || -> Result<Vec<u8>, String> {
        let (memory, cpu) = parse_child_args(args)?;
        limit_self(memory, cpu)?;
        let mut wasm = Vec::new();
        std::io::stdin().take(MAX_COMPONENT_BYTES as u64 + 1).read_to_end(&mut wasm).map_err(|e| e.to_string())?;
        if wasm.len() > MAX_COMPONENT_BYTES {
            return Err(format!("the component is over {MAX_COMPONENT_BYTES} bytes"));
        }
        let engine = Engine::new(&engine_config()).map_err(|e| format!("creating the engine: {e:#}"))?;
        let component = Component::new(&engine, &wasm).map_err(|e| format!("{e:#}"))?;
        component.serialize().map_err(|e| format!("serializing: {e:#}"))
    };
    match run() {
        Ok(bytes) => match std::io::stdout().lock().write_all(&bytes) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("writing the compiled module: {e}");
                std::process::ExitCode::from(3)
            }
        },
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn child_arguments() {
        assert_eq!(parse_child_args(&["--memory-bytes=10".into(), "--cpu-seconds=2".into()]), Ok((10, 2)));
        assert!(parse_child_args(&["--memory-bytes=10".into()]).is_err());
        assert!(parse_child_args(&["--what=1".into()]).is_err());
    }

    #[test]
    fn failures_name_the_limit() {
        let limits = CompileLimits { memory_bytes: 256 << 20, cpu_seconds: 3, timeout: Duration::from_secs(9) };
        let xcpu = std::process::ExitStatus::from_raw(24);
        assert_eq!(
            child_failure(xcpu, "", &limits),
            CompileFailure::Limit("compiling exceeded the CPU limit of 3 s (the compiler was stopped)".into())
        );
        let abort = std::process::ExitStatus::from_raw(6);
        assert_eq!(
            child_failure(abort, "memory allocation of 1048576 bytes failed\n", &limits),
            CompileFailure::Limit("compiling exceeded the memory limit of 256 MiB (the compiler was stopped)".into())
        );
        // A SIGKILL is not the CPU limit (that is SIGXCPU): not remembered against the bytes.
        let killed = std::process::ExitStatus::from_raw(9);
        assert!(matches!(child_failure(killed, "", &limits), CompileFailure::Other(m) if m.contains("out-of-memory killer")));
        let exit2 = std::process::ExitStatus::from_raw(2 << 8);
        let other = child_failure(exit2, "failed to parse WebAssembly module\x1b[2J", &limits);
        assert!(matches!(&other, CompileFailure::Other(m) if m.ends_with("failed to parse WebAssembly module\\u{1b}[2J")), "{other:?}");
    }

    #[test]
    fn artifacts_are_capped_by_their_input() {
        assert_eq!(artifact_cap(1 << 20), (8 << 20) + (16 << 20));
        assert_eq!(artifact_cap(4 << 20), (32 << 20) + (16 << 20));
        assert_eq!(artifact_cap(usize::MAX), MAX_ARTIFACT_BYTES);
    }
}
