//! Loading a module: verify → compile (or load from the precompiled cache) → pre-instantiate
//! (every import must link) → check memory needs → `describe` → check the task types and
//! capabilities it claims against its grant. A module that fails any step is never returned.
//!
//! Invariants (tests in `tests/sandbox_guests.rs` and below):
//! - the digest is the sha256 of the component bytes; a pinned digest that differs is refused
//!   before compiling (`pinned_digest_mismatch_is_refused`);
//! - `describe` must claim at least one task type, every declared one when declared (the module
//!   then serves only the declared ones; `describe_must_claim_the_declared_task_types`), and no
//!   capability beyond the grant (`ungranted_capability_claim_is_refused`);
//! - a module built against another version of the `sei:task` WIT package is refused as such,
//!   naming both versions, before linking (`wit_version_is_read_from_import_names`);
//! - limits a registration asks for must fit the sandbox: memory up to the pool slot
//!   (`LoadError::LimitTooLarge`), and the module's initial memory must fit its memory limit.

use super::abi::{BoundedList, BoundedStr, GuestStep, GuestTaskError, GuestTaskInfo};
use super::cache::{ArtifactCache, CacheOutcome, Lookup, sha256_hex};
use super::compile::{CompileFailure, Compiler, compile_in_child, deserialize_own};
use super::engine::Sandbox;
use super::host::TaskCtx;
use super::limits::{ModuleLimits, RequestBucket, RunLimits};
use crate::adapters::kube::InMemoryKube;
use crate::policy::guard::{CapabilityGuard, CapabilityName, Grants};
use crate::policy::scope::Scope;
use crate::wit::{TaskInput, WIT_OLDEST, WIT_PACKAGE, WIT_VERSION};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::component::{Component, InstancePre};

/// What a module says about itself, checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ModuleInfo {
    pub name: String,
    pub version: String,
    pub task_types: Vec<String>,
    pub capabilities: Vec<String>,
    pub default_timeout_ms: u32,
    pub max_retries: u32,
}

/// What the registry grants a module and expects of it.
#[derive(Debug, Clone)]
pub struct ModuleGrant {
    pub grants: Grants,
    /// The task types the registration declares; `describe` must claim exactly these.
    /// `None`: take what `describe` claims.
    pub task_types: Option<Vec<String>>,
    /// The sha256 the bytes must have (`TaskModule` sources pin it).
    pub pinned_sha256: Option<String>,
    /// Limits of this module's steps that override the controller's policy.
    pub limits: ModuleLimits,
    /// Code shipped in this binary (the built-in modules): compiled in the controller's process.
    /// Everything else is compiled by the sandbox's `Compiler` (a bounded child process in the
    /// controller).
    pub trusted_code: bool,
}

impl ModuleGrant {
    pub fn new(grants: Grants) -> Self {
        Self { grants, task_types: None, pinned_sha256: None, limits: ModuleLimits::default(), trusted_code: false }
    }
}

/// A module ready to run.
pub struct LoadedModule {
    /// sha256 of the component bytes (hex).
    pub digest: Arc<str>,
    pub info: ModuleInfo,
    pub grants: Arc<Grants>,
    pub limits: ModuleLimits,
    pub(crate) pre: InstancePre<TaskCtx>,
    /// The module's request bucket, shared by all its steps (`None`: a built-in module).
    pub requests: Option<Arc<RequestBucket>>,
    /// How the compiled code was obtained, and how long loading took.
    pub cache_outcome: CacheOutcome,
    pub load_time: Duration,
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule").field("digest", &self.digest).field("info", &self.info).finish_non_exhaustive()
    }
}

impl LoadedModule {
    /// The first 12 hex digits of the digest, for messages.
    pub fn short_digest(&self) -> &str {
        &self.digest[..12.min(self.digest.len())]
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("module bytes have sha256 {actual}, but {expected} was pinned")]
    DigestMismatch { expected: String, actual: String },
    #[error("module {digest} is not a valid component: {message}")]
    Compile { digest: String, message: String },
    #[error(
        "module {digest} imports something the host does not provide: {message}. \
         Task modules may import only sei:task/log, sei:task/kube, sei:task/sidecar and sei:task/member-sidecars (no WASI)"
    )]
    Link { digest: String, message: String },
    #[error(
        "module {digest} was built against WIT {found} (import {import}), but this controller links {WIT_PACKAGE}@{WIT_OLDEST} to @{WIT_VERSION}; \
         rebuild it against wit/task.wit of this controller"
    )]
    WitVersionMismatch { digest: String, import: String, found: String },
    #[error("module {digest} needs {needed} bytes of initial memory, over the limit of {limit} bytes")]
    MemoryTooLarge { digest: String, needed: u64, limit: u64 },
    #[error("the requested memory limit of {asked} bytes is over the sandbox's largest slot of {max} bytes")]
    LimitTooLarge { asked: u64, max: u64 },
    #[error("module {digest}: calling describe failed: {message}")]
    Describe { digest: String, message: String },
    #[error("module {digest}: describe returned {what}")]
    BadDescription { digest: String, what: String },
    #[error("module {name} ({digest}) claims no task types")]
    NoTaskTypes { name: String, digest: String },
    #[error("module {name} ({digest}) claims task types [{claimed}], but it is registered for [{declared}]: {missing} not claimed")]
    TaskTypeMismatch { name: String, digest: String, claimed: String, declared: String, missing: String },
    #[error("module {name} ({digest}) asks for capabilities it was not granted: {missing} (granted: {granted})")]
    UngrantedCapabilities { name: String, digest: String, missing: String, granted: String },
}

/// Which step of the load pipeline refused a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadFailure {
    DigestMismatch,
    CompileFailed,
    LinkFailed,
    WitVersionMismatch,
    MemoryTooLarge,
    DescribeFailed,
    TaskTypeMismatch,
    CapabilityNotGranted,
}

impl LoadFailure {
    /// CamelCase, for conditions, events and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            LoadFailure::DigestMismatch => "DigestMismatch",
            LoadFailure::CompileFailed => "CompileFailed",
            LoadFailure::LinkFailed => "LinkFailed",
            LoadFailure::WitVersionMismatch => "WitVersionMismatch",
            LoadFailure::MemoryTooLarge => "MemoryTooLarge",
            LoadFailure::DescribeFailed => "DescribeFailed",
            LoadFailure::TaskTypeMismatch => "TaskTypeMismatch",
            LoadFailure::CapabilityNotGranted => "CapabilityNotGranted",
        }
    }
}

impl LoadError {
    pub fn failure(&self) -> LoadFailure {
        match self {
            LoadError::DigestMismatch { .. } => LoadFailure::DigestMismatch,
            LoadError::Compile { .. } => LoadFailure::CompileFailed,
            LoadError::Link { .. } => LoadFailure::LinkFailed,
            LoadError::WitVersionMismatch { .. } => LoadFailure::WitVersionMismatch,
            LoadError::MemoryTooLarge { .. } | LoadError::LimitTooLarge { .. } => LoadFailure::MemoryTooLarge,
            LoadError::Describe { .. } | LoadError::BadDescription { .. } => LoadFailure::DescribeFailed,
            LoadError::NoTaskTypes { .. } | LoadError::TaskTypeMismatch { .. } => LoadFailure::TaskTypeMismatch,
            LoadError::UngrantedCapabilities { .. } => LoadFailure::CapabilityNotGranted,
        }
    }

    /// A CamelCase reason for conditions and events.
    pub fn reason(&self) -> &'static str {
        self.failure().as_str()
    }
}

/// The `sei:task` version in an import name such as `sei:task/log@0.1.0`, when this host does
/// not link it: anything but 0.1.z with z from [`WIT_OLDEST`] up to [`WIT_VERSION`].
fn foreign_wit_version(import: &str) -> Option<String> {
    let (package, rest) = import.split_once('/')?;
    if package != WIT_PACKAGE {
        return None;
    }
    let version = rest.split_once('@').map(|(_, v)| v).unwrap_or("(unversioned)");
    let patch = |v: &str| v.strip_prefix("0.1.").and_then(|z| z.parse::<u32>().ok());
    let linked = match (patch(version), patch(WIT_OLDEST), patch(WIT_VERSION)) {
        (Some(z), Some(lo), Some(hi)) => (lo..=hi).contains(&z),
        _ => false,
    };
    (!linked).then(|| format!("{WIT_PACKAGE}@{version}"))
}

fn short(d: &str) -> String {
    d[..12.min(d.len())].to_string()
}

impl Sandbox {
    /// Load a module from its component bytes.
    pub async fn load_module(&self, wasm: &[u8], grant: ModuleGrant) -> Result<LoadedModule, LoadError> {
        let started = Instant::now();
        let digest = sha256_hex(wasm);
        if let Some(expected) = &grant.pinned_sha256
            && !expected.eq_ignore_ascii_case(&digest)
        {
            return Err(LoadError::DigestMismatch { expected: expected.clone(), actual: digest });
        }
        let (component, cache_outcome) = self
            .compile_component(&digest, wasm, grant.trusted_code)
            .await
            .map_err(|message| LoadError::Compile { digest: short(&digest), message })?;
        for (import, _) in component.component_type().imports(self.engine()) {
            if let Some(found) = foreign_wit_version(import) {
                return Err(LoadError::WitVersionMismatch { digest: short(&digest), import: import.to_string(), found });
            }
        }
        let pre: InstancePre<TaskCtx> =
            self.linker().instantiate_pre(&component).map_err(|e| LoadError::Link { digest: short(&digest), message: format!("{e:#}") })?;

        let slot = self.config().limits.max_memory_bytes() as u64;
        if let Some(asked) = grant.limits.memory_bytes
            && asked as u64 > slot
        {
            return Err(LoadError::LimitTooLarge { asked: asked as u64, max: slot });
        }
        let limit = grant.limits.memory_bytes.map_or(slot, |m| m as u64);
        let needed: u64 = component.resources_required().map(|r| r.max_initial_memory_size.unwrap_or(0)).unwrap_or(0);
        if needed > limit {
            return Err(LoadError::MemoryTooLarge { digest: short(&digest), needed, limit });
        }

        let digest: Arc<str> = Arc::from(digest);
        let raw = self.describe(&pre, &digest).await.map_err(|message| LoadError::Describe { digest: short(&digest), message })?;
        let info = module_info(raw).map_err(|what| LoadError::BadDescription { digest: short(&digest), what })?;
        check_claims(&info, &digest, &grant)?;
        let mut info = info;
        if let Some(declared) = &grant.task_types {
            info.task_types.retain(|t| declared.contains(t));
        }
        Ok(LoadedModule {
            digest,
            info,
            grants: Arc::new(grant.grants),
            limits: grant.limits,
            pre,
            requests: (!grant.trusted_code)
                .then_some(self.config().module_request_rate)
                .flatten()
                .map(|rate| Arc::new(RequestBucket::new(rate, Instant::now()))),
            cache_outcome,
            load_time: started.elapsed(),
        })
    }

    /// The component for `wasm` (sha256 `digest`): from the precompiled cache, else compiled by
    /// the configured compiler (in process when `trusted`) and stored.
    async fn compile_component(&self, digest: &str, wasm: &[u8], trusted: bool) -> Result<(Component, CacheOutcome), String> {
        let (cache, engine, key) = (self.cache().clone(), self.engine().clone(), digest.to_string());
        let lookup =
            tokio::task::spawn_blocking(move || cache.lookup(&engine, &key)).await.map_err(|e| format!("the cache task failed: {e}"))?;
        let remembered = |reason: &str| format!("{} (remembered from an earlier attempt: the same bytes fail the same way)", reason.trim());
        let problem = match lookup {
            Lookup::Hit(c) => return Ok((c, CacheOutcome::Loaded)),
            Lookup::Miss => None,
            Lookup::Unusable(reason) => Some(reason),
            Lookup::Failed(reason) => return Err(remembered(&reason)),
        };
        let (component, artifact) = match (&self.config().compiler, trusted) {
            (Compiler::Subprocess { exe, limits }, false) => {
                if let Some(reason) = self.remembered_failure(digest) {
                    return Err(remembered(&reason));
                }
                let _one_at_a_time = self.compile_slot().lock().await;
                let bytes = match compile_in_child(exe, limits, wasm).await {
                    Ok(bytes) => bytes,
                    Err(CompileFailure::Limit(reason)) => {
                        self.remember_failure(digest, &reason);
                        let (cache, engine, key, why) = (self.cache().clone(), self.engine().clone(), digest.to_string(), reason.clone());
                        let _ = tokio::task::spawn_blocking(move || cache.remember_failure(&engine, &key, &why)).await;
                        return Err(reason);
                    }
                    Err(CompileFailure::Other(reason)) => return Err(reason),
                };
                let component = deserialize_own(self.engine(), &bytes)?;
                (component, Some(bytes))
            }
            _ => {
                let (engine, bytes, store) = (self.engine().clone(), wasm.to_vec(), self.cache().dir().is_some());
                // Compiling takes up to a second of CPU: off the async workers, so reconciles go on.
                tokio::task::spawn_blocking(move || {
                    let component = Component::new(&engine, &bytes).map_err(|e| format!("{e:#}"))?;
                    let artifact = if store { component.serialize().ok() } else { None };
                    Ok::<_, String>((component, artifact))
                })
                .await
                .map_err(|e| format!("the compile task failed: {e}"))??
            }
        };
        let stored = match artifact {
            Some(bytes) if self.cache().dir().is_some() => {
                let (cache, engine, key) = (self.cache().clone(), self.engine().clone(), digest.to_string());
                tokio::task::spawn_blocking(move || cache.store(&engine, &key, &bytes)).await.is_ok_and(|r| r.is_ok())
            }
            _ => false,
        };
        Ok((component, ArtifactCache::outcome(problem, stored)))
    }

    /// Call `describe` in a throwaway store whose guard grants nothing (its result lifted through
    /// the bounded `GuestTaskInfo`), after checking that `execute` has the contract's type.
    async fn describe(&self, pre: &InstancePre<TaskCtx>, digest: &Arc<str>) -> Result<GuestTaskInfo, String> {
        let limits = RunLimits { deadline: Duration::from_secs(5), ..self.config().limits.defaults.clone() };
        let ctx = TaskCtx::new(
            limits,
            CapabilityGuard::new(Arc::new(Grants::new([])), Scope::for_node("", "")),
            (Arc::new(InMemoryKube::new()), None),
            self.metrics().clone(),
            "describe".into(),
            (digest.clone(), Arc::from("?")),
        );
        let mut store = self.new_store(ctx);
        let deadline = store.data().limits.deadline;
        let fut = async {
            let instance = pre.instantiate_async(&mut store).await?;
            instance.get_typed_func::<(TaskInput,), (Result<GuestStep, GuestTaskError>,)>(&mut store, "execute")?;
            let describe = instance.get_typed_func::<(), (GuestTaskInfo,)>(&mut store, "describe")?;
            describe.call_async(&mut store, ()).await.map(|(info,)| info)
        };
        match tokio::time::timeout(deadline + Duration::from_secs(1), fut).await {
            Ok(Ok(info)) => Ok(info),
            Ok(Err(e)) => Err(crate::text::safe(&format!("{e:#}"), 2048)),
            Err(_) => Err(format!("describe did not return within {deadline:?}")),
        }
    }
}

/// Bounds on what `describe` may return: it ends up in statuses, events and metric labels.
pub const MAX_NAME_BYTES: usize = 128;
pub const MAX_VERSION_BYTES: usize = 64;
pub const MAX_TASK_TYPES: usize = super::abi::MAX_DESCRIBE_TASK_TYPES;

/// `describe`'s answer as `ModuleInfo`, or what was over its bound (nothing over a bound was
/// lifted: see `sandbox::abi`).
fn module_info(raw: GuestTaskInfo) -> Result<ModuleInfo, String> {
    let string = |s: BoundedStr<{ super::abi::MAX_DESCRIBE_STRING_LIFT }>, what: &str| match s {
        BoundedStr::Ok(s) => Ok(s),
        BoundedStr::Over(len) => Err(format!("a {what} of {len} bytes")),
    };
    let task_types = match raw.task_types {
        BoundedList::Ok(types) => types.into_iter().map(|t| string(t, "task type")).collect::<Result<Vec<_>, _>>()?,
        BoundedList::Over(n) => return Err(format!("{n} task types, over the limit of {MAX_TASK_TYPES}")),
    };
    let capabilities = match raw.capabilities {
        BoundedList::Ok(caps) => caps.into_iter().map(|c| CapabilityName::from(c).as_str().to_string()).collect(),
        BoundedList::Over(n) => return Err(format!("{n} capabilities")),
    };
    Ok(ModuleInfo {
        name: string(raw.name, "name")?,
        version: string(raw.version, "version")?,
        task_types,
        capabilities,
        default_timeout_ms: raw.default_timeout_ms,
        max_retries: raw.max_retries,
    })
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn check_claims(info: &ModuleInfo, digest: &str, grant: &ModuleGrant) -> Result<(), LoadError> {
    let d = short(digest);
    let bad = |what: String| Err(LoadError::BadDescription { digest: d.clone(), what });
    // Printed everywhere (logs, statuses, events, the CLI): visible ASCII only.
    let visible = |s: &str| s.bytes().all(|b| b.is_ascii_graphic());
    if info.name.is_empty() || info.name.len() > MAX_NAME_BYTES || !visible(&info.name) {
        return bad(format!("a name that is empty, over {MAX_NAME_BYTES} bytes or not visible ASCII"));
    }
    if info.version.len() > MAX_VERSION_BYTES || !visible(&info.version) {
        return bad(format!("a version over {MAX_VERSION_BYTES} bytes or not visible ASCII"));
    }
    if info.task_types.len() > MAX_TASK_TYPES {
        return bad(format!("{} task types, over the limit of {MAX_TASK_TYPES}", info.task_types.len()));
    }
    if let Some(t) = info.task_types.iter().find(|t| !is_dns_label(t)) {
        return bad(format!("the task type {:?}, which is not a DNS-1123 label", crate::text::safe(t, 80)));
    }
    if info.task_types.is_empty() {
        return Err(LoadError::NoTaskTypes { name: info.name.clone(), digest: d });
    }
    if let Some(declared) = &grant.task_types {
        let claimed: BTreeSet<&String> = info.task_types.iter().collect();
        let missing: Vec<&str> = declared.iter().filter(|t| !claimed.contains(t)).map(String::as_str).collect();
        if !missing.is_empty() || declared.is_empty() {
            return Err(LoadError::TaskTypeMismatch {
                name: info.name.clone(),
                digest: d,
                claimed: info.task_types.join(", "),
                declared: declared.join(", "),
                missing: if missing.is_empty() { "nothing".into() } else { missing.join(", ") },
            });
        }
    }
    let missing: Vec<&str> =
        info.capabilities.iter().filter(|c| CapabilityName::parse(c).is_none_or(|c| !grant.grants.allows(c))).map(String::as_str).collect();
    if !missing.is_empty() {
        return Err(LoadError::UngrantedCapabilities {
            name: info.name.clone(),
            digest: d,
            missing: missing.join(", "),
            granted: grant.grants.capabilities.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", "),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(types: &[&str], caps: &[&str]) -> ModuleInfo {
        ModuleInfo {
            name: "m".into(),
            version: "1".into(),
            task_types: types.iter().map(|s| s.to_string()).collect(),
            capabilities: caps.iter().map(|s| s.to_string()).collect(),
            default_timeout_ms: 0,
            max_retries: 0,
        }
    }

    #[test]
    fn describe_must_claim_the_declared_task_types() {
        let mut grant = ModuleGrant::new(Grants::new([CapabilityName::KubeRead]));
        grant.task_types = Some(vec!["apply-statefulset".into()]);
        let err = check_claims(&info(&["apply-service"], &[]), "abc", &grant).unwrap_err();
        assert!(matches!(err, LoadError::TaskTypeMismatch { .. }));
        assert_eq!(err.reason(), "TaskTypeMismatch");
        assert_eq!(
            err.to_string(),
            "module m (abc) claims task types [apply-service], but it is registered for [apply-statefulset]: apply-statefulset not claimed"
        );
        assert!(check_claims(&info(&["apply-statefulset"], &[]), "abc", &grant).is_ok());
        assert!(check_claims(&info(&["apply-statefulset", "apply-service"], &[]), "abc", &grant).is_ok(), "a superset is fine");
        assert!(matches!(check_claims(&info(&[], &[]), "abc", &ModuleGrant::new(Grants::new([]))), Err(LoadError::NoTaskTypes { .. })));
    }

    #[test]
    fn describe_output_is_bounded() {
        let grant = ModuleGrant::new(Grants::new([]));
        let mut long_name = info(&["t"], &[]);
        long_name.name = "n".repeat(MAX_NAME_BYTES + 1);
        assert_eq!(check_claims(&long_name, "abc", &grant).unwrap_err().reason(), "DescribeFailed");
        let err = check_claims(&info(&["Not_A_Label"], &[]), "abc", &grant).unwrap_err();
        assert!(err.to_string().contains("\"Not_A_Label\", which is not a DNS-1123 label"), "{err}");
        let many: Vec<String> = (0..=MAX_TASK_TYPES).map(|i| format!("t{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(matches!(check_claims(&info(&many, &[]), "abc", &grant), Err(LoadError::BadDescription { .. })));
        assert!(check_claims(&info(&["ok-type"], &[]), "abc", &grant).is_ok());
        for name in ["sei\u{202e}infra", "two words", "sei\u{2028}x", "é"] {
            let mut i = info(&["t"], &[]);
            i.name = name.into();
            assert_eq!(check_claims(&i, "abc", &grant).unwrap_err().reason(), "DescribeFailed", "{name:?}");
        }
    }

    #[test]
    fn wit_version_is_read_from_import_names() {
        assert_eq!(foreign_wit_version("sei:task/log@0.1.0"), None, "an older guest of the same minor links");
        assert_eq!(foreign_wit_version("sei:task/log@0.1.1"), None);
        assert_eq!(foreign_wit_version("sei:task/log@0.1.2").as_deref(), Some("sei:task@0.1.2"), "newer than this host");
        assert_eq!(foreign_wit_version("sei:task/log@0.1.x").as_deref(), Some("sei:task@0.1.x"));
        assert_eq!(foreign_wit_version("sei:task/kube@0.2.0").as_deref(), Some("sei:task@0.2.0"));
        assert_eq!(foreign_wit_version("sei:task/kube").as_deref(), Some("sei:task@(unversioned)"));
        assert_eq!(foreign_wit_version("wasi:io/streams@0.2.0"), None, "other packages fail at link, named there");
    }

    #[test]
    fn ungranted_capability_claim_is_refused() {
        let grant = ModuleGrant::new(Grants::new([CapabilityName::KubeRead]));
        let err = check_claims(&info(&["t"], &["kube-read", "sidecar"]), "abc", &grant).unwrap_err();
        assert_eq!(err.to_string(), "module m (abc) asks for capabilities it was not granted: sidecar (granted: kube-read)");
        assert!(check_claims(&info(&["t"], &["kube-read"]), "abc", &grant).is_ok());
    }
}
