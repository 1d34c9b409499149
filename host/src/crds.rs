//! The CustomResourceDefinitions this controller serves, generated from the Rust types:
//! `SeiNode` (`node/crd.rs`) and `TaskModule` (`taskmodule/resource.rs`), one YAML stream
//! (`sei-operator crds`). `deploy/crds/crds.yaml` must equal it
//! (`checked_in_crd_matches_the_types`).

use crate::node::crd::SeiNode;
use crate::taskmodule::resource::TaskModule;
use kube::CustomResourceExt;

/// Every CRD, as one YAML stream.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    Ok(format!("{}---\n{}", serde_yaml::to_string(&SeiNode::crd())?, serde_yaml::to_string(&TaskModule::crd())?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_crd_matches_the_types() {
        let checked_in = include_str!("../../deploy/crds/crds.yaml");
        assert!(
            checked_in == crds_yaml().unwrap(),
            "deploy/crds/crds.yaml is stale: regenerate it with `cargo run -p sei-operator -- crds > deploy/crds/crds.yaml`"
        );
    }
}
