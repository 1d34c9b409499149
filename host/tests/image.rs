//! The container image `make image` writes (`deploy/image/build.sh`): an OCI archive whose
//! config runs `/sei-operator run` as user 65532, whose root filesystem holds the binary, exactly
//! its shared libraries and no shell, and whose binary runs from that filesystem alone
//! (`--version`, and `crds` equal to `deploy/crds/crds.yaml`).
//!
//! Needs the archive: run through `make test` (which builds it with `make image` and sets
//! `SEI_IMAGE_ARCHIVE`), or `make image` then
//! `SEI_IMAGE_ARCHIVE=… cargo test -p sei-operator --test image -- --ignored`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn archive() -> PathBuf {
    let path = std::env::var_os("SEI_IMAGE_ARCHIVE").map(PathBuf::from).expect("SEI_IMAGE_ARCHIVE names the archive `make image` wrote");
    assert!(path.exists(), "{} does not exist: run `make image`", path.display());
    path
}

fn untar(archive: &Path, into: &Path) {
    std::fs::create_dir_all(into).unwrap();
    let out = Command::new("tar").arg("-xf").arg(archive).arg("-C").arg(into).output().unwrap();
    assert!(out.status.success(), "tar -xf {}: {}", archive.display(), String::from_utf8_lossy(&out.stderr));
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap_or_else(|| panic!("a sha256 digest: {digest}"));
    layout.join("blobs/sha256").join(hex)
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// Run `/sei-operator args` from `rootfs` and nothing else: in a chroot as root, else through the
/// image's own dynamic loader and library directory.
fn run_in(rootfs: &Path, args: &[&str]) -> std::process::Output {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let chroot = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
            .map(|d| d.join("chroot"))
            .find(|p| p.exists())
            .expect("chroot (coreutils) on PATH");
        let mut c = Command::new(chroot);
        c.arg(rootfs).arg("/sei-operator");
        c
    } else {
        let mut c = Command::new(rootfs.join("lib64/ld-linux-x86-64.so.2"));
        c.arg("--inhibit-cache").arg("--library-path").arg(rootfs.join("lib/x86_64-linux-gnu")).arg(rootfs.join("sei-operator"));
        c
    };
    cmd.args(args).env_clear().output().unwrap()
}

#[test]
#[ignore = "needs the archive of `make image` (make test runs it)"]
fn image_runs_the_controller_as_non_root_with_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    untar(&archive(), &layout);
    assert_eq!(json(&layout.join("oci-layout"))["imageLayoutVersion"], "1.0.0");
    let index = json(&layout.join("index.json"));
    let manifests = index["manifests"].as_array().unwrap();
    assert_eq!(manifests.len(), 1, "one image: {index}");
    assert_eq!(manifests[0]["annotations"]["org.opencontainers.image.ref.name"], env!("CARGO_PKG_VERSION"), "tagged with the version");
    let manifest = json(&blob(&layout, manifests[0]["digest"].as_str().unwrap()));
    let config = json(&blob(&layout, manifest["config"]["digest"].as_str().unwrap()));
    let c = &config["config"];
    assert_eq!(c["User"], "65532:65532");
    assert_eq!(c["Entrypoint"], serde_json::json!(["/sei-operator"]));
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    assert_eq!((config["os"].as_str(), config["architecture"].as_str()), (Some("linux"), Some("amd64")));
    assert!(c["Env"].as_array().unwrap().iter().any(|e| e == "SEI_MODULE_CACHE=/var/cache/sei-operator/modules"), "{c}");
    assert_eq!(c["Labels"]["org.opencontainers.image.version"], env!("CARGO_PKG_VERSION"));

    let rootfs = dir.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        assert_eq!(layer["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
        let out =
            Command::new("tar").arg("-xzf").arg(blob(&layout, layer["digest"].as_str().unwrap())).arg("-C").arg(&rootfs).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    for absent in ["bin/sh", "bin/bash", "usr/bin/env", "bin/busybox"] {
        assert!(!rootfs.join(absent).exists(), "the image has /{absent}");
    }
    let mut files = Vec::new();
    let mut stack = vec![rootfs.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                files.push(e.path().strip_prefix(&rootfs).unwrap().display().to_string());
            }
        }
    }
    files.sort();
    assert_eq!(
        files,
        [
            "etc/group",
            "etc/nsswitch.conf",
            "etc/passwd",
            "lib/x86_64-linux-gnu/libc.so.6",
            "lib/x86_64-linux-gnu/libgcc_s.so.1",
            "lib/x86_64-linux-gnu/libm.so.6",
            "lib64/ld-linux-x86-64.so.2",
            "sei-operator"
        ],
        "the binary, its shared libraries and the user database, nothing else"
    );
    assert!(std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap().contains(":65532:65532:"));

    let version = run_in(&rootfs, &["--version"]);
    assert!(version.status.success(), "{}", String::from_utf8_lossy(&version.stderr));
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("sei-operator {}", env!("CARGO_PKG_VERSION")));
    let crds = run_in(&rootfs, &["crds"]);
    assert!(crds.status.success(), "{}", String::from_utf8_lossy(&crds.stderr));
    assert!(
        String::from_utf8_lossy(&crds.stdout) == include_str!("../../deploy/crds/crds.yaml"),
        "the image's binary prints deploy/crds/crds.yaml (is the image stale? run `make image`)"
    );
}
