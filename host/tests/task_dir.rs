//! `--task-dir`: a watched directory of modules over the built-ins, with the real sandbox, the
//! real file watcher and the built-in sidecar module re-tagged into new versions (same
//! behaviour, new sha256).

use sei_operator::embedded::BUILTIN_MODULES;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::registry::{ModuleSource, TaskRegistry};
use sei_operator::release_tag::with_custom_section;
use sei_operator::sandbox::cache::sha256_hex;
use sei_operator::sandbox::{ModuleGrant, Sandbox, SandboxConfig};
use sei_operator::taskmodule::directory::{FileOutcome, TaskDirectory};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

const TASK: &str = "mark-ready";

fn sidecar_module() -> &'static [u8] {
    BUILTIN_MODULES.iter().find(|m| m.name == "sei-builtin-sidecar").expect("built-in sidecar module").bytes
}

fn version(tag: &str) -> Vec<u8> {
    with_custom_section(sidecar_module(), "sei-test-version", tag.as_bytes())
}

/// Write atomically, as an editor or `cp` + `mv` would.
fn replace(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Dir {
    _dir: tempfile::TempDir,
    path: PathBuf,
    registry: Arc<TaskRegistry>,
    outcomes: mpsc::UnboundedReceiver<(PathBuf, FileOutcome)>,
    builtin_digest: String,
    _watch: tokio::task::JoinHandle<()>,
}

async fn watched(grant: ModuleGrant, initial: Option<&[u8]>) -> Dir {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sidecar.wasm");
    if let Some(bytes) = initial {
        replace(&path, bytes);
    }
    let sandbox = Arc::new(Sandbox::new(SandboxConfig::default()).unwrap());
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox).await.unwrap();
    let builtin_digest = registry.resolve(TASK).unwrap().module.digest.to_string();
    let task_dir = Arc::new(TaskDirectory::new(dir.path().to_path_buf(), sandbox, registry.clone(), grant, None));
    task_dir.load_all().await.unwrap();
    let (tx, outcomes) = mpsc::unbounded_channel();
    let watch = task_dir.watch(Some(tx)).unwrap();
    Dir { _dir: dir, path, registry, outcomes, builtin_digest, _watch: watch }
}

fn full_grant() -> ModuleGrant {
    ModuleGrant::new(Grants::new([CapabilityName::Sidecar, CapabilityName::KubeRead]))
}

impl Dir {
    fn digest(&self) -> String {
        self.registry.resolve(TASK).unwrap().module.digest.to_string()
    }

    /// The next load outcome for the module file (deadline 10 s).
    async fn next_outcome(&mut self) -> FileOutcome {
        loop {
            let (path, outcome) = tokio::time::timeout(Duration::from_secs(10), self.outcomes.recv())
                .await
                .expect("a load outcome within 10 s")
                .expect("the watcher is running");
            if path == self.path {
                return outcome;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replacing_a_file_swaps_the_module() {
    let a = version("a");
    let mut d = watched(full_grant(), Some(&a)).await;
    assert_eq!(d.digest(), sha256_hex(&a), "the initial load serves the file");
    assert!(matches!(d.registry.resolve(TASK).unwrap().source, ModuleSource::Directory { .. }));

    let b = version("b");
    replace(&d.path, &b);
    match d.next_outcome().await {
        FileOutcome::Loaded { digest, task_types } => {
            assert_eq!(digest, sha256_hex(&b));
            assert!(task_types.contains(&TASK.to_string()));
        }
        other => panic!("expected a load, got {other:?}"),
    }
    assert_eq!(d.digest(), sha256_hex(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_file_loads_once_the_other_is_removed() {
    let a = version("a");
    let mut d = watched(full_grant(), Some(&a)).await;
    let second = d.path.with_file_name("sidecar-2.wasm");
    let b = version("b");
    replace(&second, &b);
    let outcome = loop {
        let (path, outcome) = tokio::time::timeout(Duration::from_secs(10), d.outcomes.recv()).await.unwrap().unwrap();
        if path == second {
            break outcome;
        }
    };
    match outcome {
        FileOutcome::Rejected { reason, message } => {
            assert_eq!(reason, "Conflict");
            assert!(message.contains("sidecar.wasm"), "names the file that serves it: {message}");
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(d.digest(), sha256_hex(&a), "the first file keeps serving");
    std::fs::remove_file(&d.path).unwrap();
    // Outcomes in order: (duplicate events for the second file may still be refused), the
    // removal, then the retried second file.
    loop {
        let (path, outcome) = tokio::time::timeout(Duration::from_secs(10), d.outcomes.recv()).await.unwrap().unwrap();
        if path == d.path {
            assert_eq!(outcome, FileOutcome::Removed);
            break;
        }
    }
    let loaded = loop {
        let (path, outcome) = tokio::time::timeout(Duration::from_secs(10), d.outcomes.recv()).await.unwrap().unwrap();
        if path == second {
            break outcome;
        }
    };
    assert!(matches!(loaded, FileOutcome::Loaded { .. }), "{loaded:?}");
    assert_eq!(d.digest(), sha256_hex(&b));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_file_keeps_the_previous_module() {
    let a = version("a");
    let mut d = watched(full_grant(), Some(&a)).await;
    std::fs::write(&d.path, b"\0asm not really").unwrap();
    match d.next_outcome().await {
        FileOutcome::Rejected { reason, message } => {
            assert_eq!(reason, "CompileFailed", "{message}");
            assert!(message.contains("is not a valid component"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(d.digest(), sha256_hex(&a), "the previous module keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_asking_for_more_than_the_directory_grant_is_refused() {
    let mut d = watched(ModuleGrant::new(Grants::new([CapabilityName::KubeRead])), None).await;
    replace(&d.path, &version("greedy"));
    match d.next_outcome().await {
        FileOutcome::Rejected { reason, message } => {
            assert_eq!(reason, "CapabilityNotGranted");
            assert!(message.contains("sidecar"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(d.digest(), d.builtin_digest, "the built-in keeps serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_file_restores_the_builtin() {
    let a = version("a");
    let mut d = watched(full_grant(), Some(&a)).await;
    assert_ne!(d.digest(), d.builtin_digest);
    std::fs::remove_file(&d.path).unwrap();
    assert_eq!(d.next_outcome().await, FileOutcome::Removed);
    assert_eq!(d.digest(), d.builtin_digest);
    assert!(matches!(d.registry.resolve(TASK).unwrap().source, ModuleSource::BuiltIn { .. }));
}
