//! `--task-dir DIR`: every `*.wasm` in a directory is a module (local development). A file that
//! changes is reloaded once it has been quiet for `DEBOUNCE`, with the same load pipeline as a
//! `TaskModule` (the grant is the directory's, the task types are the ones `describe` claims);
//! a file that disappears hands its task types back to the built-in modules.
//!
//! Invariants (tests in `tests/task_dir.rs`):
//! - replacing a file changes the active digest (`replacing_a_file_swaps_the_module`);
//! - a file that fails to load leaves the previous module serving, and the failure is logged and
//!   counted (`a_broken_file_keeps_the_previous_module`);
//! - removing a file brings back the module below it (`removing_a_file_restores_the_builtin`);
//! - bursts of events for one file (write, then rename) cause one load (debounce, pure:
//!   `debounce::tests`);
//! - code is loaded only from places nobody else can change: the directory and each file must be
//!   owned by this user or root and not writable by group or others, and a file is at most
//!   `MAX_MODULE_BYTES` (`untrusted_directory_is_refused`, unit test below);
//! - when a file is removed, files refused for claiming the same task types are tried again
//!   (`a_conflicting_file_loads_once_the_other_is_removed`).
//!
//! A ConfigMap mounted as a volume updates by swapping a `..data` symlink, which this watcher does
//! not follow: use `TaskModule` resources for in-cluster modules.

use super::fetch::MAX_MODULE_BYTES;
use crate::registry::{ModuleEntry, ModuleSource, TaskRegistry};
use crate::sandbox::{LoadedModule, ModuleGrant, Sandbox};
use crate::telemetry::Telemetry;
use notify::{RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long a file must be quiet before it is (re)loaded.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

#[derive(Debug, thiserror::Error)]
pub enum TaskDirError {
    #[error("task directory {dir}: {message}")]
    Unusable { dir: String, message: String },
}

/// Refuse a path others could write code into: it must be owned by this process's user or root,
/// and not writable by group or others.
pub fn check_trusted(path: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let me = crate::sandbox::cache::current_euid();
        if meta.uid() != me && meta.uid() != 0 {
            return Err(format!("{} is owned by uid {}, not by this process (uid {me}) or root", path.display(), meta.uid()));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(format!("{} is writable by group or others (mode {:o}); chmod go-w it", path.display(), meta.mode() & 0o777));
        }
    }
    Ok(())
}

/// Read a module file, refusing untrusted or oversized ones.
fn read_module(path: &Path) -> Result<Vec<u8>, (String, String)> {
    check_trusted(path).map_err(|m| ("Untrusted".to_string(), m))?;
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    if len > MAX_MODULE_BYTES as u64 {
        return Err(("TooLarge".into(), format!("{} is {len} bytes, over the {MAX_MODULE_BYTES}-byte module limit", path.display())));
    }
    std::fs::read(path).map_err(|e| ("ReadFailed".into(), format!("reading {}: {e}", path.display())))
}

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOutcome {
    Loaded { digest: String, task_types: Vec<String> },
    Unchanged,
    Removed,
    Rejected { reason: String, message: String },
}

/// A watched directory of modules.
pub struct TaskDirectory {
    dir: PathBuf,
    sandbox: Arc<Sandbox>,
    registry: Arc<TaskRegistry>,
    grant: ModuleGrant,
    telemetry: Option<Arc<Telemetry>>,
    /// Files refused because another file serves their task types.
    conflicted: std::sync::Mutex<std::collections::BTreeSet<PathBuf>>,
}

fn is_module(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
}

impl TaskDirectory {
    /// `grant`: what every module in the directory may do (its task types are taken from `describe`).
    pub fn new(
        dir: PathBuf,
        sandbox: Arc<Sandbox>,
        registry: Arc<TaskRegistry>,
        grant: ModuleGrant,
        telemetry: Option<Arc<Telemetry>>,
    ) -> Self {
        Self { dir, sandbox, registry, grant, telemetry, conflicted: Default::default() }
    }

    fn source(path: &Path) -> ModuleSource {
        ModuleSource::Directory { path: path.display().to_string() }
    }

    /// Load or unload one file according to what is on disk now.
    pub async fn sync_file(&self, path: &Path) -> FileOutcome {
        let source = Self::source(path);
        let outcome = match read_module(path) {
            Err(_) if !path.exists() => {
                self.registry.remove_source(&source);
                FileOutcome::Removed
            }
            Err((reason, message)) => FileOutcome::Rejected { reason, message },
            Ok(bytes) => {
                let digest = crate::sandbox::cache::sha256_hex(&bytes);
                if self.registry.entry_of(&source).is_some_and(|e| *e.module.digest == *digest) {
                    FileOutcome::Unchanged
                } else {
                    match self.sandbox.load_module(&bytes, self.grant.clone()).await {
                        Err(e) => FileOutcome::Rejected { reason: e.reason().into(), message: e.to_string() },
                        Ok(loaded) => self.install(path, loaded),
                    }
                }
            }
        };
        {
            let mut conflicted = self.conflicted.lock().unwrap_or_else(|p| p.into_inner());
            match &outcome {
                FileOutcome::Rejected { reason, .. } if reason == "Conflict" => conflicted.insert(path.to_path_buf()),
                _ => conflicted.remove(path),
            };
        }
        match &outcome {
            FileOutcome::Loaded { digest, task_types } => {
                tracing::info!(file = %path.display(), %digest, ?task_types, "module file loaded")
            }
            FileOutcome::Removed => tracing::info!(file = %path.display(), "module file removed; its task types fall back"),
            FileOutcome::Rejected { reason, message } => {
                tracing::warn!(file = %path.display(), %reason, message = %crate::text::safe(message, 2048), "module file rejected; the previous module keeps serving")
            }
            FileOutcome::Unchanged => {}
        }
        if let Some(t) = &self.telemetry {
            let result = match &outcome {
                FileOutcome::Loaded { .. } => "Active",
                FileOutcome::Unchanged => "Unchanged",
                FileOutcome::Removed => "deleted",
                FileOutcome::Rejected { reason, .. } => reason.as_str(),
            };
            t.count_module_load("Directory", result);
        }
        outcome
    }

    fn install(&self, path: &Path, loaded: LoadedModule) -> FileOutcome {
        let digest = loaded.digest.to_string();
        let task_types = loaded.info.task_types.clone();
        match self.registry.install_exclusive(&task_types, ModuleEntry::new(Self::source(path), loaded)) {
            Ok(()) => FileOutcome::Loaded { digest, task_types },
            Err(e) => FileOutcome::Rejected { reason: "Conflict".into(), message: e.to_string() },
        }
    }

    /// Load every `*.wasm` in the directory now.
    pub async fn load_all(&self) -> Result<Vec<(PathBuf, FileOutcome)>, TaskDirError> {
        let unusable = |message: String| TaskDirError::Unusable { dir: self.dir.display().to_string(), message };
        check_trusted(&self.dir).map_err(unusable)?;
        let entries = std::fs::read_dir(&self.dir).map_err(|e| unusable(e.to_string()))?;
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| is_module(p)).collect();
        paths.sort();
        let mut out = Vec::new();
        for p in paths {
            let outcome = self.sync_file(&p).await;
            out.push((p, outcome));
        }
        Ok(out)
    }

    /// Watch the directory and keep the registry in step with it until the returned task is
    /// aborted. Each (re)load result is also sent to `outcomes` when given (tests, benchmarks).
    pub fn watch(
        self: Arc<Self>,
        outcomes: Option<mpsc::UnboundedSender<(PathBuf, FileOutcome)>>,
    ) -> Result<tokio::task::JoinHandle<()>, TaskDirError> {
        let (tx, mut rx) = mpsc::unbounded_channel::<PathBuf>();
        let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| match res {
            Ok(event) => {
                for p in event.paths {
                    let _ = tx.send(p);
                }
            }
            Err(e) => tracing::warn!(error = %e, "watching the task directory failed"),
        })
        .map_err(|e| TaskDirError::Unusable { dir: self.dir.display().to_string(), message: e.to_string() })?;
        watcher
            .watch(&self.dir, RecursiveMode::NonRecursive)
            .map_err(|e| TaskDirError::Unusable { dir: self.dir.display().to_string(), message: e.to_string() })?;
        Ok(tokio::spawn(async move {
            let _watcher = watcher;
            let mut pending = debounce::Pending::default();
            loop {
                let event = match pending.next_deadline() {
                    Some(at) => tokio::select! {
                        p = rx.recv() => p.map(Some),
                        _ = tokio::time::sleep_until(at.into()) => Some(None),
                    },
                    None => rx.recv().await.map(Some),
                };
                match event {
                    None => break,
                    Some(Some(path)) => {
                        if is_module(&path) {
                            pending.touch(path, std::time::Instant::now() + DEBOUNCE);
                        }
                    }
                    Some(None) => {
                        for path in pending.due(std::time::Instant::now()) {
                            let outcome = self.sync_file(&path).await;
                            let removed = outcome == FileOutcome::Removed;
                            if let Some(o) = &outcomes {
                                let _ = o.send((path, outcome));
                            }
                            if removed {
                                // A file refused for a task type the removed one served may load now.
                                let retry = std::mem::take(&mut *self.conflicted.lock().unwrap_or_else(|p| p.into_inner()));
                                for other in retry {
                                    pending.touch(other, std::time::Instant::now());
                                }
                            }
                        }
                    }
                }
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn untrusted_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_trusted(dir.path()), Ok(()));
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_trusted(dir.path()).unwrap_err();
        assert!(err.contains("writable by group or others (mode 777)"), "{err}");
        let file = dir.path().join("m.wasm");
        std::fs::write(&file, b"x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert_eq!(read_module(&file).unwrap_err().0, "Untrusted");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_module(&file).unwrap(), b"x");
    }
}

/// Per-file quiet deadlines (pure).
pub mod debounce {
    use std::collections::BTreeMap;
    use std::path::PathBuf;
    use std::time::Instant;

    #[derive(Default)]
    pub struct Pending {
        due: BTreeMap<PathBuf, Instant>,
    }

    impl Pending {
        /// An event for `path`: it is due at `at` unless another event comes first.
        pub fn touch(&mut self, path: PathBuf, at: Instant) {
            self.due.insert(path, at);
        }

        pub fn next_deadline(&self) -> Option<Instant> {
            self.due.values().min().copied()
        }

        /// The paths quiet since their deadline, removed from the set.
        pub fn due(&mut self, now: Instant) -> Vec<PathBuf> {
            let ready: Vec<PathBuf> = self.due.iter().filter(|(_, at)| **at <= now).map(|(p, _)| p.clone()).collect();
            for p in &ready {
                self.due.remove(p);
            }
            ready
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Duration;

        #[test]
        fn a_burst_for_one_file_is_one_load() {
            let t0 = Instant::now();
            let ms = Duration::from_millis;
            let mut p = Pending::default();
            p.touch("a.wasm".into(), t0 + ms(50));
            p.touch("a.wasm".into(), t0 + ms(60));
            p.touch("b.wasm".into(), t0 + ms(55));
            assert_eq!(p.next_deadline(), Some(t0 + ms(55)));
            assert!(p.due(t0 + ms(54)).is_empty());
            assert_eq!(p.due(t0 + ms(58)), vec![PathBuf::from("b.wasm")]);
            assert_eq!(p.due(t0 + ms(59)), Vec::<PathBuf>::new(), "a was touched again: not due yet");
            assert_eq!(p.due(t0 + ms(60)), vec![PathBuf::from("a.wasm")]);
            assert_eq!(p.next_deadline(), None);
        }
    }
}
