//! The CustomResourceDefinitions this controller serves, generated from the Rust types:
//! `SeiNode` (`api/seinode.rs`), `SeiNodeDeployment` (`api/seinodedeployment.rs`) and `TaskModule` (`taskmodule/resource.rs`), one YAML stream
//! (`sei-operator crds`). `deploy/crds/crds.yaml` and the Helm chart's
//! `deploy/helm/sei-operator/files/crds.yaml` must equal it (`checked_in_crds_match_the_types`).
//!
//! What the generated schemas get on the way out:
//! - integer formats the API server does not know (`uint32`, `uint64`, …, which schemars emits
//!   for unsigned fields) become `int64` with `minimum: 0`, so applying the CRDs draws no
//!   `unrecognized format` warning (`only_formats_the_api_server_knows`);
//! - the annotation `helm.sh/resource-policy: keep`, so that uninstalling the Helm chart keeps
//!   the CRDs, and with them every SeiNode (`crds_are_kept_on_uninstall`).

use crate::api::seinode::SeiNode;
use crate::api::seinodedeployment::SeiNodeDeployment;
use crate::taskmodule::resource::TaskModule;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

/// Formats the API server's OpenAPI validation knows (k8s.io/kube-openapi `strfmt` and the
/// OpenAPI numeric formats); any other draws a warning when the CRD is applied.
pub const KNOWN_FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "password",
    "date",
    "date-time",
    "datetime",
    "duration",
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
];

/// The SeiNode CRD as served.
pub fn seinode() -> CustomResourceDefinition {
    finish(SeiNode::crd())
}

/// The SeiNodeDeployment CRD as served.
pub fn seinodedeployment() -> CustomResourceDefinition {
    finish(SeiNodeDeployment::crd())
}

/// The TaskModule CRD as served.
pub fn taskmodule() -> CustomResourceDefinition {
    finish(TaskModule::crd())
}

/// Every CRD, as served.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![seinode(), seinodedeployment(), taskmodule()]
}

/// Every CRD, as one YAML stream.
pub fn crds_yaml() -> Result<String, serde_yaml::Error> {
    let docs = all().iter().map(serde_yaml::to_string).collect::<Result<Vec<_>, _>>()?;
    Ok(docs.join("---\n"))
}

fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    crd.metadata.annotations.get_or_insert_with(Default::default).insert("helm.sh/resource-policy".into(), "keep".into());
    for version in &mut crd.spec.versions {
        if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
            // Through JSON: the schema type is a deep tree of optional boxes.
            if let Ok(mut json) = serde_json::to_value(&*schema) {
                known_formats_only(&mut json);
                if let Ok(fixed) = serde_json::from_value(json) {
                    *schema = fixed;
                }
            }
        }
    }
    crd
}

/// Unsigned integer formats become `int64` with a minimum of 0; any other unknown format goes.
fn known_formats_only(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get("format").cloned()
                && !KNOWN_FORMATS.contains(&format.as_str())
            {
                if format.starts_with("uint") {
                    map.insert("format".into(), Value::String("int64".into()));
                    map.entry("minimum").or_insert(serde_json::json!(0.0));
                } else {
                    map.remove("format");
                }
            }
            map.values_mut().for_each(known_formats_only);
        }
        Value::Array(items) => items.iter_mut().for_each(known_formats_only),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checked_in_crds_match_the_types() {
        let generated = crds_yaml().unwrap();
        for (path, checked_in) in [
            ("deploy/crds/crds.yaml", include_str!("../../deploy/crds/crds.yaml")),
            ("deploy/helm/sei-operator/files/crds.yaml", include_str!("../../deploy/helm/sei-operator/files/crds.yaml")),
        ] {
            assert!(checked_in == generated, "{path} is stale: regenerate it with `cargo run -p sei-operator -- crds > {path}`");
        }
    }

    fn formats(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(f)) = map.get("format") {
                    out.push(f.clone());
                }
                map.values().for_each(|v| formats(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| formats(v, out)),
            _ => {}
        }
    }

    #[test]
    fn only_formats_the_api_server_knows() {
        let raw: Vec<String> = [SeiNode::crd(), TaskModule::crd()]
            .iter()
            .flat_map(|c| {
                let mut out = Vec::new();
                formats(&serde_json::to_value(c).unwrap(), &mut out);
                out
            })
            .collect();
        assert!(raw.iter().any(|f| f == "uint32"), "the types still have unsigned fields, so the rewrite is exercised: {raw:?}");
        for crd in all() {
            let json = serde_json::to_value(&crd).unwrap();
            let mut found = Vec::new();
            formats(&json, &mut found);
            for f in &found {
                assert!(
                    KNOWN_FORMATS.contains(&f.as_str()),
                    "{}: format {f} would draw an API server warning",
                    crd.metadata.name.as_deref().unwrap_or("")
                );
            }
        }
        // An unsigned field keeps its bounds.
        let tm = serde_json::to_value(taskmodule()).unwrap();
        let hc =
            &tm.pointer("/spec/versions/0/schema/openAPIV3Schema/properties/spec/properties/limits/properties/hostCallsPerStep").unwrap();
        assert_eq!((hc["format"].as_str(), hc["minimum"].as_f64(), hc["maximum"].as_f64()), (Some("int64"), Some(1.0), Some(1000.0)));
    }

    #[test]
    fn crds_are_kept_on_uninstall() {
        for crd in all() {
            assert_eq!(crd.metadata.annotations.unwrap().get("helm.sh/resource-policy").map(String::as_str), Some("keep"));
        }
    }
}
