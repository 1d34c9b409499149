//! The developer commands of the `sei-operator` binary (the controller itself is started by
//! `main.rs`, the composition root):
//!
//! - `plan`: the plan a SeiNode manifest would get, without a cluster;
//! - `task`: run, describe and export task modules, with an in-memory cluster and sidecar.
//!
//! Shared here: reading a node manifest and the compiler the commands use.

pub mod plan;
pub mod task;

use anyhow::{Context, Result, bail};
use std::path::Path;

/// Read a SeiNode manifest; give it a namespace and a uid if it has none (as the API server
/// would), so that the controller's ownership rule applies to what its tasks write.
pub fn read_node(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut node: serde_json::Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {} as YAML", path.display()))?;
    if node.get("kind").and_then(|k| k.as_str()) != Some("SeiNode") {
        bail!("{} is not a SeiNode manifest (kind: SeiNode)", path.display());
    }
    if node.pointer("/metadata/name").is_none() {
        bail!("{} has no metadata.name", path.display());
    }
    fill_server_fields(&mut node).with_context(|| format!("{} has no metadata", path.display()))?;
    Ok(node)
}

/// Give a manifest the namespace (`default`) and uid the API server would, when it has none;
/// `None` when it has no `metadata` object.
pub fn fill_server_fields(node: &mut serde_json::Value) -> Option<()> {
    let meta = node.get_mut("metadata")?.as_object_mut()?;
    meta.entry("namespace").or_insert_with(|| "default".into());
    meta.entry("uid").or_insert_with(|| "00000000-0000-0000-0000-000000000000".into());
    Some(())
}

/// The controller's scope for a node's tasks, with the local platform's settings.
pub fn local_scope(node: &sei_operator::api::seinode::SeiNode) -> sei_operator::policy::scope::Scope {
    sei_operator::node::scope::node_scope(node, &sei_operator::platform::PlatformConfig::for_local())
}

/// The `kind` of a manifest (YAML or JSON), if it names one.
pub fn manifest_kind(path: &Path) -> Result<Option<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value = serde_yaml::from_str(&text).with_context(|| format!("parsing {} as YAML", path.display()))?;
    Ok(value.get("kind").and_then(|k| k.as_str()).map(str::to_string))
}

/// A SeiNodeDeployment manifest, typed (namespace `default` when it names none).
pub fn read_group(path: &Path) -> Result<sei_operator::api::seinodedeployment::SeiNodeDeployment> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut group: sei_operator::api::seinodedeployment::SeiNodeDeployment =
        serde_yaml::from_str(&text).with_context(|| format!("{} is not a valid SeiNodeDeployment", path.display()))?;
    if group.metadata.name.is_none() {
        bail!("{} has no metadata.name", path.display());
    }
    group.metadata.namespace.get_or_insert_with(|| "default".into());
    Ok(group)
}

/// The manifest as a typed SeiNode.
pub fn typed_node(node: &serde_json::Value, path: &Path) -> Result<sei_operator::api::seinode::SeiNode> {
    serde_json::from_value(node.clone()).with_context(|| format!("{} is not a valid SeiNode", path.display()))
}

/// The commands compile modules like the controller does: in a bounded child of this executable.
pub fn compiler() -> Result<sei_operator::sandbox::Compiler> {
    sei_operator::sandbox::Compiler::subprocess_of_current_exe(Default::default())
        .context("locating this executable for the module compiler")
}
