//! Platform settings: what the cluster gives the nodes (storage classes and sizes, node pools,
//! the toleration key, the service account, resource requests, buckets, the sidecar image).
//!
//! Read from the environment (the reference controller's variable names) with documented defaults;
//! the buckets have no sensible default and are required: a missing one stops start-up with an
//! error naming the variable (`missing_required_setting_is_named`).

use std::collections::BTreeMap;

/// The settings, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformConfig {
    /// `SEI_NODEPOOL_NAME` (default: none, no node affinity).
    pub node_pool: Option<String>,
    /// `SEI_NODEPOOL_ARCHIVE` (default: the default pool).
    pub node_pool_archive: Option<String>,
    /// `SEI_TOLERATION_KEY` (default: none, no toleration).
    pub toleration_key: Option<String>,
    /// `SEI_SERVICE_ACCOUNT` (default: the namespace's default account).
    pub service_account: Option<String>,
    /// `SEI_STORAGE_CLASS_PERF`, `SEI_STORAGE_CLASS_DEFAULT`, `SEI_STORAGE_CLASS_ARCHIVE`
    /// (default: the cluster's default class).
    pub storage_class_perf: Option<String>,
    pub storage_class_default: Option<String>,
    pub storage_class_archive: Option<String>,
    /// `SEI_STORAGE_SIZE_DEFAULT` (default `2000Gi`), `SEI_STORAGE_SIZE_ARCHIVE` (default `20Ti`).
    pub storage_size_default: String,
    pub storage_size_archive: String,
    /// `SEI_RESOURCE_CPU_DEFAULT` / `SEI_RESOURCE_MEM_DEFAULT` / `..._ARCHIVE` (default: no requests).
    pub cpu_default: Option<String>,
    pub memory_default: Option<String>,
    pub cpu_archive: Option<String>,
    pub memory_archive: Option<String>,
    /// `SEI_SNAPSHOT_BUCKET`, `SEI_SNAPSHOT_REGION`, `SEI_GENESIS_BUCKET`, `SEI_GENESIS_REGION`:
    /// the buckets are required; regions default to `us-east-1`.
    pub snapshot_bucket: String,
    pub snapshot_region: String,
    pub genesis_bucket: String,
    pub genesis_region: String,
    /// `SEI_SIDECAR_IMAGE` (default: the seictl image pinned by this release).
    pub sidecar_image: String,
    /// `SEI_GATEWAY_NAME`, `SEI_GATEWAY_NAMESPACE`, `SEI_GATEWAY_DOMAIN` (all three or none) and
    /// `SEI_GATEWAY_PUBLIC_DOMAIN`: the Gateway a SeiNodeDeployment's HTTPRoutes attach to. None:
    /// groups get their `<name>-external` Service and no routes (`RouteReady` says why).
    pub gateway: Option<GatewayConfig>,
}

/// The Gateway (Gateway API) that groups' HTTPRoutes attach to, and the domains of their hostnames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    pub name: String,
    pub namespace: String,
    /// Routes are `<group>-<protocol>.<domain>`.
    pub domain: String,
    /// With it, routes also answer `<group>-<protocol>.<namespace>.<public domain>`.
    pub public_domain: Option<String>,
}

/// The seictl image used when neither the node nor the platform names one.
pub const DEFAULT_SIDECAR_IMAGE: &str = "ghcr.io/sei-protocol/seictl:v0.0.31";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("platform setting {variable} is required ({what}); set it in the controller's environment")]
pub struct PlatformError {
    pub variable: &'static str,
    pub what: &'static str,
}

/// The gateway settings: all of name, namespace and domain, or none of them.
fn gateway(opt: &dyn Fn(&str) -> Option<String>) -> Result<Option<GatewayConfig>, PlatformError> {
    const PARTS: [(&str, &str); 3] = [
        ("SEI_GATEWAY_NAME", "the Gateway that SeiNodeDeployment routes attach to, set with the other SEI_GATEWAY_* settings"),
        ("SEI_GATEWAY_NAMESPACE", "the namespace of that Gateway, set with the other SEI_GATEWAY_* settings"),
        ("SEI_GATEWAY_DOMAIN", "the domain of route hostnames, set with the other SEI_GATEWAY_* settings"),
    ];
    let values: Vec<Option<String>> = PARTS.iter().map(|(k, _)| opt(k)).collect();
    if values.iter().all(Option::is_none) {
        return Ok(None);
    }
    if let Some(i) = values.iter().position(Option::is_none) {
        return Err(PlatformError { variable: PARTS[i].0, what: PARTS[i].1 });
    }
    let [name, namespace, domain] = [0, 1, 2].map(|i| values[i].clone().unwrap_or_default());
    let public_domain = opt("SEI_GATEWAY_PUBLIC_DOMAIN");
    let checks = [("SEI_GATEWAY_DOMAIN", Some(&domain)), ("SEI_GATEWAY_PUBLIC_DOMAIN", public_domain.as_ref())];
    for (variable, value) in checks {
        if value.is_some_and(|d| !is_dns_subdomain(d)) {
            return Err(PlatformError {
                variable,
                what: "a lowercase DNS name (RFC 1123 subdomain, e.g. sei.example.com): route hostnames end in it",
            });
        }
    }
    Ok(Some(GatewayConfig { name, namespace, domain, public_domain }))
}

/// An RFC 1123 subdomain: lowercase labels of letters, digits and inner dashes, each at most 63,
/// at most 253 in all.
fn is_dns_subdomain(s: &str) -> bool {
    let label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    s.len() <= 253 && s.split('.').all(label)
}

impl PlatformConfig {
    /// From a map of variables (the process environment in production, a literal in tests).
    pub fn from_vars(vars: &BTreeMap<String, String>) -> Result<Self, PlatformError> {
        let opt = |k: &str| vars.get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let or = |k: &str, d: &str| opt(k).unwrap_or_else(|| d.to_string());
        let required = |variable: &'static str, what: &'static str| opt(variable).ok_or(PlatformError { variable, what });
        Ok(Self {
            node_pool: opt("SEI_NODEPOOL_NAME"),
            node_pool_archive: opt("SEI_NODEPOOL_ARCHIVE"),
            toleration_key: opt("SEI_TOLERATION_KEY"),
            service_account: opt("SEI_SERVICE_ACCOUNT"),
            storage_class_perf: opt("SEI_STORAGE_CLASS_PERF"),
            storage_class_default: opt("SEI_STORAGE_CLASS_DEFAULT"),
            storage_class_archive: opt("SEI_STORAGE_CLASS_ARCHIVE"),
            storage_size_default: or("SEI_STORAGE_SIZE_DEFAULT", "2000Gi"),
            storage_size_archive: or("SEI_STORAGE_SIZE_ARCHIVE", "20Ti"),
            cpu_default: opt("SEI_RESOURCE_CPU_DEFAULT"),
            memory_default: opt("SEI_RESOURCE_MEM_DEFAULT"),
            cpu_archive: opt("SEI_RESOURCE_CPU_ARCHIVE"),
            memory_archive: opt("SEI_RESOURCE_MEM_ARCHIVE"),
            snapshot_bucket: required("SEI_SNAPSHOT_BUCKET", "the S3 bucket of chain snapshots, passed to the sidecar")?,
            snapshot_region: or("SEI_SNAPSHOT_REGION", "us-east-1"),
            genesis_bucket: required("SEI_GENESIS_BUCKET", "the S3 bucket of genesis files, passed to the sidecar")?,
            genesis_region: or("SEI_GENESIS_REGION", "us-east-1"),
            sidecar_image: or("SEI_SIDECAR_IMAGE", DEFAULT_SIDECAR_IMAGE),
            gateway: gateway(&opt)?,
        })
    }

    pub fn from_env() -> Result<Self, PlatformError> {
        Self::from_vars(&std::env::vars().collect())
    }

    /// Settings for tests, the `plan` command and the demo: every required value filled in.
    pub fn for_local() -> Self {
        let vars = BTreeMap::from([
            ("SEI_SNAPSHOT_BUCKET".to_string(), "local-snapshots".to_string()),
            ("SEI_GENESIS_BUCKET".to_string(), "local-genesis".to_string()),
        ]);
        Self::from_vars(&vars).unwrap_or_else(|e| unreachable!("local platform settings are complete: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_fill_what_is_unset() {
        let p = PlatformConfig::from_vars(&vars(&[("SEI_SNAPSHOT_BUCKET", "s"), ("SEI_GENESIS_BUCKET", "g")])).unwrap();
        assert_eq!(p.storage_size_default, "2000Gi");
        assert_eq!(p.storage_size_archive, "20Ti");
        assert_eq!(p.snapshot_region, "us-east-1");
        assert_eq!(p.sidecar_image, DEFAULT_SIDECAR_IMAGE);
        assert_eq!(p.node_pool, None);
    }

    #[test]
    fn missing_required_setting_is_named() {
        let err = PlatformConfig::from_vars(&vars(&[("SEI_SNAPSHOT_BUCKET", "s"), ("SEI_GENESIS_BUCKET", "  ")])).unwrap_err();
        assert_eq!(err.variable, "SEI_GENESIS_BUCKET");
        assert!(err.to_string().starts_with("platform setting SEI_GENESIS_BUCKET is required"), "{err}");
    }

    #[test]
    fn values_are_read() {
        let p = PlatformConfig::from_vars(&vars(&[
            ("SEI_SNAPSHOT_BUCKET", "s"),
            ("SEI_GENESIS_BUCKET", "g"),
            ("SEI_NODEPOOL_NAME", "rpc"),
            ("SEI_STORAGE_CLASS_ARCHIVE", "cold"),
        ]))
        .unwrap();
        assert_eq!(p.node_pool.as_deref(), Some("rpc"));
        assert_eq!(p.storage_class_archive.as_deref(), Some("cold"));
        assert_eq!(p.gateway, None);
    }

    #[test]
    fn gateway_settings_come_together_or_not_at_all() {
        let base = [("SEI_SNAPSHOT_BUCKET", "s"), ("SEI_GENESIS_BUCKET", "g")];
        let with = |extra: &[(&str, &str)]| PlatformConfig::from_vars(&vars(&[&base[..], extra].concat()));
        let full = with(&[("SEI_GATEWAY_NAME", "gw"), ("SEI_GATEWAY_NAMESPACE", "infra"), ("SEI_GATEWAY_DOMAIN", "sei.example")]).unwrap();
        assert_eq!(
            full.gateway,
            Some(GatewayConfig { name: "gw".into(), namespace: "infra".into(), domain: "sei.example".into(), public_domain: None })
        );
        let public = with(&[
            ("SEI_GATEWAY_NAME", "gw"),
            ("SEI_GATEWAY_NAMESPACE", "infra"),
            ("SEI_GATEWAY_DOMAIN", "sei.example"),
            ("SEI_GATEWAY_PUBLIC_DOMAIN", "public.example"),
        ])
        .unwrap();
        assert_eq!(public.gateway.and_then(|g| g.public_domain).as_deref(), Some("public.example"));
        let err = with(&[("SEI_GATEWAY_NAME", "gw"), ("SEI_GATEWAY_DOMAIN", "sei.example")]).unwrap_err();
        assert_eq!(err.variable, "SEI_GATEWAY_NAMESPACE");
        let gw = [("SEI_GATEWAY_NAME", "gw"), ("SEI_GATEWAY_NAMESPACE", "infra")];
        for bad in ["Sei.Example", "sei..example", "-sei.example", "sei_example", "sei.example."] {
            let err = with(&[&gw[..], &[("SEI_GATEWAY_DOMAIN", bad)]].concat()).unwrap_err();
            assert_eq!(err.variable, "SEI_GATEWAY_DOMAIN", "{bad}");
        }
        let err = with(&[&gw[..], &[("SEI_GATEWAY_DOMAIN", "ok.example"), ("SEI_GATEWAY_PUBLIC_DOMAIN", "UPPER")]].concat()).unwrap_err();
        assert_eq!(err.variable, "SEI_GATEWAY_PUBLIC_DOMAIN");
        // A public domain alone asks for nothing.
        assert_eq!(with(&[("SEI_GATEWAY_PUBLIC_DOMAIN", "p")]).unwrap().gateway, None);
    }
}
