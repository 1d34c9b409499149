//! The precompiled artifact cache: stored after the first compile, loaded after that, and never
//! trusted when its bytes do not match the integrity record or are not a precompiled component.

use sei_operator::embedded::test_guest_path;
use sei_operator::policy::guard::{CapabilityName, Grants};
use sei_operator::sandbox::cache::{CacheOutcome, sha256_hex};
use sei_operator::sandbox::{ModuleGrant, Sandbox, SandboxConfig};
use std::path::{Path, PathBuf};

fn sandbox(dir: &Path) -> Sandbox {
    Sandbox::new(SandboxConfig { cache_dir: Some(dir.to_path_buf()), ..Default::default() }).expect("sandbox")
}

fn grant() -> ModuleGrant {
    ModuleGrant::new(Grants::new([CapabilityName::KubeRead]))
}

fn artifact(dir: &Path, ext: &str) -> PathBuf {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == ext))
        .unwrap_or_else(|| panic!("no .{ext} file in {}", dir.display()))
}

#[tokio::test]
async fn first_load_stores_then_loads() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(test_guest_path("test-well-behaved")).unwrap();
    let first = sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap();
    assert_eq!(first.cache_outcome, CacheOutcome::CompiledAndStored);
    let name = artifact(dir.path(), "cwasm").file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with(&sha256_hex(&wasm)), "keyed by the wasm digest: {name}");
    let second = sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap();
    assert_eq!(second.cache_outcome, CacheOutcome::Loaded);
    assert_eq!(second.digest, first.digest);
}

#[tokio::test]
async fn corrupt_entry_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(test_guest_path("test-well-behaved")).unwrap();
    sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap();
    let cwasm = artifact(dir.path(), "cwasm");
    let mut bytes = std::fs::read(&cwasm).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&cwasm, &bytes).unwrap();

    let reloaded = sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap();
    match &reloaded.cache_outcome {
        CacheOutcome::Recompiled(reason) => assert!(reason.contains("does not match the integrity record"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The entry was rewritten and is trusted again.
    assert_eq!(sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap().cache_outcome, CacheOutcome::Loaded);
}

#[tokio::test]
async fn foreign_entry_with_matching_record_is_not_deserialized() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(test_guest_path("test-well-behaved")).unwrap();
    sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap();
    // Someone replaces the artifact and its record consistently with bytes that are not a
    // precompiled component of this engine.
    let foreign = b"not a wasmtime artifact".to_vec();
    std::fs::write(artifact(dir.path(), "cwasm"), &foreign).unwrap();
    std::fs::write(artifact(dir.path(), "sha256"), sha256_hex(&foreign)).unwrap();
    let reloaded = sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap();
    match &reloaded.cache_outcome {
        CacheOutcome::Recompiled(reason) => assert!(reason.contains("not a precompiled component"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn missing_integrity_record_is_recompiled() {
    let dir = tempfile::tempdir().unwrap();
    let wasm = std::fs::read(test_guest_path("test-well-behaved")).unwrap();
    sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap();
    std::fs::remove_file(artifact(dir.path(), "sha256")).unwrap();
    let reloaded = sandbox(dir.path()).load_module(&wasm, grant()).await.unwrap();
    assert!(
        matches!(reloaded.cache_outcome, CacheOutcome::Recompiled(ref r) if r.contains("integrity record")),
        "{:?}",
        reloaded.cache_outcome
    );
}

#[tokio::test]
async fn cache_dir_of_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign");
    std::fs::create_dir(&foreign).unwrap();
    // CI and the developer machines run as root, which may hand the directory to `nobody`.
    std::os::unix::fs::chown(&foreign, Some(65534), Some(65534)).expect("chown needs root: run the suite as root");
    let err = sei_operator::sandbox::cache::ArtifactCache::at(&foreign).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::PermissionDenied);
    assert!(err.to_string().contains("owned by uid 65534"), "{err}");
}

/// What the Helm chart does: kubelet makes an emptyDir owned by root with a group the pod may
/// write; the controller (another uid) keeps its cache in a subdirectory it creates itself.
#[tokio::test]
async fn cache_in_a_subdirectory_of_a_shared_volume_is_our_own() {
    let dir = tempfile::tempdir().unwrap();
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::os::unix::fs::chown(&volume, Some(65534), Some(65534)).expect("chown needs root: run the suite as root");
    std::fs::set_permissions(&volume, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    assert!(sei_operator::sandbox::cache::ArtifactCache::at(&volume).is_err(), "the mount point itself is someone else's");
    let cache = sei_operator::sandbox::cache::ArtifactCache::at(volume.join("modules")).unwrap();
    let wasm = std::fs::read(test_guest_path("test-well-behaved")).unwrap();
    let s = sandbox(cache.dir().unwrap());
    assert_eq!(s.load_module(&wasm, grant()).await.unwrap().cache_outcome, CacheOutcome::CompiledAndStored);
}
