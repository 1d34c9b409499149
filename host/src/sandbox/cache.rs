//! On-disk cache of precompiled components, keyed by (sha256 of the wasm, the engine's
//! precompile compatibility hash).
//!
//! Trust: wasmtime deserializes precompiled artifacts without validating them, so only
//! artifacts this controller wrote are loaded. Each artifact `<key>.cwasm` is written
//! atomically (temp file + rename) next to `<key>.sha256`, the digest of the artifact bytes.
//! On load the digest is checked before deserializing; a missing, corrupt or foreign entry is
//! recompiled and rewritten, never trusted (`corrupt_entry_is_recompiled` in
//! `tests/sandbox_cache.rs`). The directory is created with mode 0700.

use sha2::{Digest, Sha256};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use wasmtime::component::Component;
use wasmtime::{Engine, Precompiled};

/// How a component was obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Compiled; no cache configured.
    Compiled,
    /// Compiled and written to the cache.
    CompiledAndStored,
    /// Deserialized from a verified cache entry.
    Loaded,
    /// The cache entry was unusable (the reason); compiled and rewritten.
    Recompiled(String),
}

impl CacheOutcome {
    /// For statuses and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            CacheOutcome::Compiled => "Compiled",
            CacheOutcome::CompiledAndStored => "CompiledAndStored",
            CacheOutcome::Loaded => "Loaded",
            CacheOutcome::Recompiled(_) => "Recompiled",
        }
    }
}

/// What the cache holds for a digest.
pub enum Lookup {
    Hit(Component),
    Miss,
    /// An entry that must not be trusted (the reason); it is recompiled and rewritten.
    Unusable(String),
    /// An earlier compile of these bytes hit a compiler limit (the reason): not tried again.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct ArtifactCache {
    dir: Option<PathBuf>,
}

/// The hex sha256 of some bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ArtifactCache {
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    /// Use `dir` (created with mode 0700). A directory owned by another user is refused: its
    /// owner could plant artifacts with matching integrity records.
    pub fn at(dir: impl Into<PathBuf>) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::{MetadataExt, PermissionsExt};
            let meta = std::fs::metadata(&dir)?;
            let me = current_euid();
            if meta.uid() != me {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!("precompiled cache {} is owned by uid {}, not by this process (uid {me})", dir.display(), meta.uid()),
                ));
            }
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        Ok(Self { dir: Some(dir) })
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The engine part of the key.
    pub fn engine_key(engine: &Engine) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        format!("{:016x}", h.finish())
    }

    fn paths(&self, engine: &Engine, digest: &str) -> Option<(PathBuf, PathBuf)> {
        let dir = self.dir.as_ref()?;
        let key = format!("{digest}-{}", Self::engine_key(engine));
        Some((dir.join(format!("{key}.cwasm")), dir.join(format!("{key}.sha256"))))
    }

    fn failure_path(&self, engine: &Engine, digest: &str) -> Option<PathBuf> {
        let dir = self.dir.as_ref()?;
        Some(dir.join(format!("{digest}-{}.failed", Self::engine_key(engine))))
    }

    /// Remember that compiling `digest` hit a compiler limit, so that a restart does not spend
    /// the limit again on the same bytes (a no-op without a cache directory).
    pub fn remember_failure(&self, engine: &Engine, digest: &str, reason: &str) {
        if let Some(path) = self.failure_path(engine, digest)
            && let Err(e) = std::fs::write(&path, crate::text::safe(reason, 1024))
        {
            tracing::warn!(file = %path.display(), error = %e, "could not record the failed compile");
        }
    }

    /// Load the component for `wasm` (whose sha256 is `digest`) from the cache, or compile it
    /// in this process.
    pub fn load_or_compile(&self, engine: &Engine, digest: &str, wasm: &[u8]) -> Result<(Component, CacheOutcome), wasmtime::Error> {
        let problem = match self.lookup(engine, digest) {
            Lookup::Hit(c) => return Ok((c, CacheOutcome::Loaded)),
            Lookup::Miss | Lookup::Failed(_) => None,
            Lookup::Unusable(reason) => Some(reason),
        };
        let component = Component::new(engine, wasm)?;
        let stored = match self.dir {
            None => Err(String::new()),
            Some(_) => component.serialize().map_err(|e| e.to_string()).and_then(|bytes| self.store(engine, digest, &bytes)),
        };
        Ok((component, Self::outcome(problem, stored.is_ok())))
    }

    /// How a compile that followed `problem` (an unusable entry, if any) and stored its artifact
    /// (or not) is reported.
    pub fn outcome(problem: Option<String>, stored: bool) -> CacheOutcome {
        match problem {
            Some(reason) => CacheOutcome::Recompiled(reason),
            None if stored => CacheOutcome::CompiledAndStored,
            None => CacheOutcome::Compiled,
        }
    }

    /// The verified entry for `digest`, if any.
    pub fn lookup(&self, engine: &Engine, digest: &str) -> Lookup {
        if let Some(reason) = self.failure_path(engine, digest).and_then(|p| std::fs::read_to_string(p).ok()) {
            return Lookup::Failed(reason);
        }
        let Some((artifact, integrity)) = self.paths(engine, digest) else { return Lookup::Miss };
        match Self::try_load(engine, &artifact, &integrity) {
            Ok(Some(c)) => Lookup::Hit(c),
            Ok(None) => Lookup::Miss,
            Err(reason) => {
                tracing::warn!(artifact = %artifact.display(), %reason, "precompiled cache entry is unusable; recompiling");
                Lookup::Unusable(reason)
            }
        }
    }

    /// Write the serialized artifact of `digest` (a no-op without a cache directory).
    pub fn store(&self, engine: &Engine, digest: &str, artifact_bytes: &[u8]) -> Result<(), String> {
        let Some((artifact, integrity)) = self.paths(engine, digest) else { return Err("no cache directory".into()) };
        let stored = Self::write_entry(&artifact, &integrity, artifact_bytes);
        if let Err(e) = &stored {
            tracing::warn!(artifact = %artifact.display(), error = %e, "could not write the precompiled cache entry");
        }
        stored
    }

    /// `Ok(None)`: no entry. `Err(reason)`: an entry that must not be trusted.
    fn try_load(engine: &Engine, artifact: &Path, integrity: &Path) -> Result<Option<Component>, String> {
        let bytes = match std::fs::read(artifact) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading the artifact: {e}")),
        };
        let recorded = std::fs::read_to_string(integrity).map_err(|e| format!("reading the integrity record: {e}"))?;
        let actual = sha256_hex(&bytes);
        if recorded.trim() != actual {
            return Err(format!("artifact digest {actual} does not match the integrity record {}", recorded.trim()));
        }
        if Engine::detect_precompiled(&bytes) != Some(Precompiled::Component) {
            return Err("not a precompiled component for this engine".into());
        }
        // SAFETY: the bytes are a component this controller serialized itself (the integrity
        // record written next to it matches) for an engine with the same compatibility hash.
        unsafe { Component::deserialize(engine, &bytes) }.map(Some).map_err(|e| format!("deserializing: {e}"))
    }

    fn write_entry(artifact: &Path, integrity: &Path, bytes: &[u8]) -> Result<(), String> {
        let write = |path: &Path, data: &[u8]| -> std::io::Result<()> {
            // Unpredictable temp name: in a container every controller is pid 1.
            let nonce = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
            let tmp = path.with_extension(format!("tmp{}-{nonce:09}", std::process::id()));
            std::fs::write(&tmp, data)?;
            std::fs::rename(&tmp, path)
        };
        // Artifact first, then the record: a crash in between leaves an entry without a valid
        // record, which is recompiled.
        write(artifact, bytes).map_err(|e| e.to_string())?;
        write(integrity, sha256_hex(bytes).as_bytes()).map_err(|e| e.to_string())
    }
}

#[cfg(unix)]
unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}

/// The effective uid of this process.
#[cfg(unix)]
pub(crate) fn current_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc_geteuid() }
}
