//! Hot-swap latency of `--task-dir`: the time from a module file being replaced (atomic rename)
//! to the registry serving its digest, through the real file watcher, the 50 ms debounce and the
//! load pipeline. Ten swaps per case; prints median, p90 and max, and the load pipeline's share.
//!
//! Cases, for the built-in sidecar module (small) and the infra module (large):
//! - `fresh`: every swap brings bytes never seen before (a new custom section, so a new sha256):
//!   the component is compiled;
//! - `cached`: swaps alternate between two versions already in the precompiled cache.
//!
//! `make bench-swap` (`cargo run --release -p sei-operator --example swap_latency`).

use sei_operator::embedded::BUILTIN_MODULES;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::registry::TaskRegistry;
use sei_operator::release_tag::with_custom_section;
use sei_operator::sandbox::cache::sha256_hex;
use sei_operator::sandbox::{ModuleGrant, Sandbox, SandboxConfig};
use sei_operator::taskmodule::directory::{FileOutcome, TaskDirectory};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const SWAPS: usize = 10;

fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).expect("write");
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
    std::fs::rename(&tmp, path).expect("rename");
}

struct Sample {
    total: Duration,
    load: Duration,
}

async fn swap(
    path: &Path,
    bytes: &[u8],
    task: &str,
    registry: &TaskRegistry,
    outcomes: &mut mpsc::UnboundedReceiver<(PathBuf, FileOutcome)>,
) -> anyhow::Result<Sample> {
    let want = sha256_hex(bytes);
    let started = Instant::now();
    replace(path, bytes);
    loop {
        let (_, outcome) =
            tokio::time::timeout(Duration::from_secs(30), outcomes.recv()).await?.ok_or_else(|| anyhow::anyhow!("watcher ended"))?;
        match outcome {
            FileOutcome::Loaded { digest, .. } if digest == want => break,
            FileOutcome::Rejected { reason, message } => anyhow::bail!("{reason}: {message}"),
            _ => {}
        }
    }
    let total = started.elapsed();
    let entry = registry.resolve(task).ok_or_else(|| anyhow::anyhow!("{task} not served"))?;
    anyhow::ensure!(*entry.module.digest == *want, "the registry serves {} not {want}", entry.module.digest);
    Ok(Sample { total, load: entry.module.load_time })
}

fn report(name: &str, samples: &mut [Sample]) {
    samples.sort_by_key(|s| s.total);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let median = &samples[samples.len() / 2];
    let p90 = &samples[(samples.len() * 9 / 10).min(samples.len() - 1)];
    let mut loads: Vec<Duration> = samples.iter().map(|s| s.load).collect();
    loads.sort();
    println!(
        "{name:<24} swaps {:>2}  median {:>7.1} ms  p90 {:>7.1} ms  max {:>7.1} ms  (load pipeline median {:>6.1} ms)",
        samples.len(),
        ms(median.total),
        ms(p90.total),
        ms(samples[samples.len() - 1].total),
        ms(loads[loads.len() / 2])
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let modules = dir.path().join("modules");
    std::fs::create_dir(&modules)?;
    let sandbox = Arc::new(Sandbox::new(SandboxConfig { cache_dir: Some(dir.path().join("cache")), ..Default::default() })?);
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox).await?;
    let grant = ModuleGrant::new(Grants::new([
        CapabilityName::KubeRead,
        CapabilityName::KubeWrite,
        CapabilityName::KubeDelete,
        CapabilityName::Sidecar,
    ]));
    let task_dir = Arc::new(TaskDirectory::new(modules.clone(), sandbox, registry.clone(), grant, None));
    let (tx, mut outcomes) = mpsc::unbounded_channel();
    let _watch = task_dir.watch(Some(tx))?;
    println!("hot swap through --task-dir ({SWAPS} swaps per case; debounce {:?} included)", sei_operator::taskmodule::directory::DEBOUNCE);
    for (module, task) in [("sei-builtin-sidecar", "mark-ready"), ("sei-builtin-infra", "apply-statefulset")] {
        let base = BUILTIN_MODULES.iter().find(|m| m.name == module).map(|m| m.bytes).ok_or_else(|| anyhow::anyhow!("{module}"))?;
        let path = modules.join(format!("{module}.wasm"));
        let mut fresh = Vec::new();
        for i in 0..SWAPS {
            let bytes = with_custom_section(base, "bench-release", format!("fresh-{i}").as_bytes());
            fresh.push(swap(&path, &bytes, task, &registry, &mut outcomes).await?);
        }
        let versions = [with_custom_section(base, "bench-release", b"cached-a"), with_custom_section(base, "bench-release", b"cached-b")];
        // Warm the precompiled cache with both versions.
        for v in &versions {
            swap(&path, v, task, &registry, &mut outcomes).await?;
        }
        let mut cached = Vec::new();
        for i in 0..SWAPS {
            cached.push(swap(&path, &versions[i % 2], task, &registry, &mut outcomes).await?);
        }
        println!("{module} ({} KiB)", base.len() / 1024);
        report("  fresh wasm (compile)", &mut fresh);
        report("  precompiled cache", &mut cached);
        std::fs::remove_file(&path)?;
    }
    Ok(())
}
