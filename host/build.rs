//! Builds the task modules in `tasks-wasm/` for `wasm32-unknown-unknown`, turns each into a
//! component with `wit-component`, and generates `$OUT_DIR/modules.rs`:
//! - `BUILTIN_MODULES`: the built-in task modules, embedded in the binary;
//! - `TEST_GUESTS_DIR`: where the test guests' components are (used by tests and benches only,
//!   never embedded).
//!
//! The guests have their own cargo workspace and target dir (`target/wasm-guests`), so the
//! nested cargo never contends for the outer build's lock.

use std::path::{Path, PathBuf};
use std::process::Command;

/// (crate file stem, module name, built-in?)
const GUESTS: &[(&str, &str, bool)] = &[
    ("sei_builtin_infra", "sei-builtin-infra", true),
    ("sei_builtin_sidecar", "sei-builtin-sidecar", true),
    ("sei_builtin_group", "sei-builtin-group", true),
    ("test_guest_well_behaved", "test-well-behaved", false),
    ("test_guest_misbehaving", "test-misbehaving", false),
    ("test_guest_wasi_importer", "test-wasi-importer", false),
    ("test_guest_future_wit", "test-future-wit", false),
    ("test_guest_describe_bomb", "test-describe-bomb", false),
    ("test_guest_old_wit", "test-old-wit", false),
];

fn main() {
    if let Err(e) = run() {
        eprintln!("error: building the wasm task modules failed: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let root = manifest_dir.parent().ok_or("host/ has no parent")?.to_path_buf();
    let tasks = root.join("tasks-wasm");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").map_err(|e| e.to_string())?);
    for p in ["sdk", "params", "builtin", "test-guests", "Cargo.toml", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", tasks.join(p).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    println!("cargo:rerun-if-env-changed=SEI_WASM_TARGET_DIR");
    println!("cargo:rerun-if-env-changed=CARGO_TARGET_DIR");

    let target_dir = std::env::var_os("SEI_WASM_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_TARGET_DIR").map(|d| PathBuf::from(d).join("wasm-guests")))
        .unwrap_or_else(|| root.join("target").join("wasm-guests"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&tasks)
        .args(["build", "--release", "--locked", "--target", "wasm32-unknown-unknown", "--workspace"])
        .env("CARGO_TARGET_DIR", &target_dir);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        let inherited_build_setting = key.starts_with("CARGO_ENCODED_RUSTFLAGS")
            || key == "RUSTFLAGS"
            || key == "RUSTC_WORKSPACE_WRAPPER"
            || key.starts_with("CARGO_BUILD_")
            || key.starts_with("CARGO_PROFILE_")
            || key == "CARGO_MAKEFLAGS"
            || key.starts_with("CARGO_CFG_")
            || key.starts_with("CARGO_FEATURE_")
            || key == "TARGET"
            || key == "HOST"
            || key == "PROFILE"
            || key == "OPT_LEVEL"
            || key == "DEBUG";
        if inherited_build_setting {
            cmd.env_remove(&key);
        }
    }
    let status = cmd.status().map_err(|e| format!("running cargo for tasks-wasm: {e}"))?;
    if !status.success() {
        return Err(format!(
            "`cargo build --target wasm32-unknown-unknown` in {} failed ({status}); \
             is the target installed? run `rustup target add wasm32-unknown-unknown` (the Makefile's `setup` does)",
            tasks.display()
        ));
    }

    let built = target_dir.join("wasm32-unknown-unknown").join("release");
    let components = target_dir.join("components");
    std::fs::create_dir_all(&components).map_err(|e| e.to_string())?;
    let mut builtins = String::new();
    for (stem, name, builtin) in GUESTS {
        let core = built.join(format!("{stem}.wasm"));
        let component = componentize(&core).map_err(|e| format!("componentizing {}: {e}", core.display()))?;
        let dest = components.join(format!("{name}.wasm"));
        write_if_changed(&dest, &component)?;
        if *builtin {
            let embedded = out_dir.join(format!("{name}.wasm"));
            write_if_changed(&embedded, &component)?;
            builtins.push_str(&format!(
                "    EmbeddedModule {{ name: {name:?}, bytes: include_bytes!({:?}) }},\n",
                embedded.display().to_string()
            ));
        }
    }
    let generated = format!(
        "/// The built-in task modules, embedded at build time by `host/build.rs`.\n\
         pub static BUILTIN_MODULES: &[EmbeddedModule] = &[\n{builtins}];\n\n\
         /// Where `host/build.rs` put the test guests' components (tests and benches only).\n\
         pub const TEST_GUESTS_DIR: &str = {:?};\n",
        components.display().to_string()
    );
    write_if_changed(&out_dir.join("modules.rs"), generated.as_bytes())?;
    Ok(())
}

fn componentize(core: &Path) -> Result<Vec<u8>, String> {
    let bytes = std::fs::read(core).map_err(|e| e.to_string())?;
    wit_component::ComponentEncoder::default()
        .module(&bytes)
        .map_err(|e| format!("{e:#}"))?
        .validate(true)
        .encode()
        .map_err(|e| format!("{e:#}"))
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if std::fs::read(path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    std::fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}
