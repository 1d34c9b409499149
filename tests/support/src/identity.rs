//! The controller's identity in the tests: the Helm chart's ServiceAccount with the chart's RBAC,
//! exactly as `helm template deploy/helm/sei-operator` renders it, and clients (or kubeconfigs)
//! authenticated with a token from the real API server's TokenRequest API. The API server runs
//! the RBAC authorizer, so a test controller can do exactly what an installed one may.
//!
//! - [`TestCluster::render_chart`] runs the cached `helm template` with the test values;
//! - [`TestCluster::apply_manifests`] server-side applies rendered documents (RBAC kinds,
//!   ServiceAccounts, Namespaces);
//! - [`TestCluster::controller_client`] installs the chart's RBAC once per cluster and returns a
//!   client authenticated as `system:serviceaccount:sei-system:sei-operator`;
//! - [`TestCluster::service_account_client`] / [`TestCluster::service_account_kubeconfig`] do the
//!   same for any ServiceAccount (the rule-removal test binds reduced roles to accounts of its own).

use crate::{TestCluster, TestClusterError};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, NamedAuthInfo};
use std::path::PathBuf;
use std::time::Duration;

/// The namespace the chart is rendered for (the controller's own: its Lease lives here).
pub const CONTROLLER_NAMESPACE: &str = "sei-system";
/// The namespace whose ConfigMaps may hold TaskModule bytes (`taskModules.configMapNamespace`).
pub const MODULE_NAMESPACE: &str = "sei-modules";
/// The Helm release name; the chart's ServiceAccount and roles are named after it.
pub const RELEASE: &str = "sei-operator";
/// The chart's ServiceAccount.
pub const CONTROLLER_ACCOUNT: &str = "sei-operator";
/// The Lease the chart's Role lets the controller use.
pub const LEASE_NAME: &str = "sei-operator-leader";

/// The chart in this repository.
pub fn chart_dir() -> PathBuf {
    crate::repo_root().join("deploy/helm/sei-operator")
}

/// The `--set` values every test rendering uses.
pub fn test_values() -> Vec<String> {
    vec![
        "platform.snapshotBucket=local-snapshots".into(),
        "platform.genesisBucket=local-genesis".into(),
        format!("taskModules.configMapNamespace={MODULE_NAMESPACE}"),
        format!("leaderElection.leaseName={LEASE_NAME}"),
    ]
}

fn kind_resource(api_version: &str, kind: &str) -> Option<ApiResource> {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "Namespace" => "namespaces",
        "ServiceAccount" => "serviceaccounts",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        _ => return None,
    };
    Some(ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural))
}

impl TestCluster {
    /// The cached Helm binary (built by `tests/control-plane/build.sh`).
    pub fn helm(&self) -> PathBuf {
        self.bin_dir().join("helm")
    }

    /// `helm <args>` (stdout on success; the command and its stderr on failure).
    pub fn run_helm(&self, args: &[String]) -> Result<std::process::Output, TestClusterError> {
        let out = std::process::Command::new(self.helm())
            .args(args)
            .env("KUBECONFIG", self.kubeconfig_path())
            .env("HELM_CACHE_HOME", self.dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.dir.join("helm/config"))
            .env("HELM_DATA_HOME", self.dir.join("helm/data"))
            .output()?;
        Ok(out)
    }

    /// `helm template` of the chart for release [`RELEASE`] in [`CONTROLLER_NAMESPACE`], with
    /// [`test_values`] and `sets`.
    pub fn render_chart(&self, sets: &[&str]) -> Result<String, TestClusterError> {
        let mut args: Vec<String> =
            vec!["template".into(), RELEASE.into(), chart_dir().display().to_string(), "--namespace".into(), CONTROLLER_NAMESPACE.into()];
        for set in test_values().iter().map(String::as_str).chain(sets.iter().copied()) {
            args.push("--set".into());
            args.push(set.into());
        }
        let out = self.run_helm(&args)?;
        if !out.status.success() {
            return Err(TestClusterError::Helm { args: args.join(" "), stderr: String::from_utf8_lossy(&out.stderr).into_owned() });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Server-side apply every document of `yaml` whose kind `keep` accepts (RBAC kinds,
    /// ServiceAccounts and Namespaces only).
    pub async fn apply_manifests(&self, yaml: &str, keep: impl Fn(&str) -> bool) -> Result<usize, TestClusterError> {
        let client = self.client().await;
        let mut applied = 0;
        for doc in yaml.split("\n---") {
            let Ok(value) = serde_yaml::from_str::<serde_json::Value>(doc) else { continue };
            let (Some(api_version), Some(kind)) = (value["apiVersion"].as_str(), value["kind"].as_str()) else { continue };
            if !keep(kind) {
                continue;
            }
            let ar = kind_resource(api_version, kind).ok_or_else(|| TestClusterError::Manifest(format!("cannot apply kind {kind}")))?;
            let obj: DynamicObject = serde_json::from_value(value.clone()).map_err(|e| TestClusterError::Manifest(e.to_string()))?;
            let name = obj.metadata.name.clone().unwrap_or_default();
            let api: Api<DynamicObject> = match obj.metadata.namespace.as_deref() {
                Some(ns) if kind != "Namespace" && !kind.starts_with("Cluster") => Api::namespaced_with(client.clone(), ns, &ar),
                _ if matches!(kind, "ServiceAccount" | "Role" | "RoleBinding") => {
                    Api::namespaced_with(client.clone(), CONTROLLER_NAMESPACE, &ar)
                }
                _ => Api::all_with(client.clone(), &ar),
            };
            api.patch(&name, &PatchParams::apply("sei-testkit").force(), &Patch::Apply(&obj)).await?;
            applied += 1;
        }
        Ok(applied)
    }

    /// Create `name` if it does not exist.
    pub async fn ensure_namespace(&self, name: &str) -> Result<(), TestClusterError> {
        let api: Api<Namespace> = Api::all(self.client().await);
        let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}))
            .map_err(|e| TestClusterError::Manifest(e.to_string()))?;
        match api.create(&PostParams::default(), &ns).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The chart's ServiceAccount and RBAC, installed once per cluster.
    pub async fn install_controller_identity(&self) -> Result<(), TestClusterError> {
        self.controller_identity
            .get_or_try_init(|| async {
                self.ensure_namespace(CONTROLLER_NAMESPACE).await?;
                self.ensure_namespace(MODULE_NAMESPACE).await?;
                let rendered = self.render_chart(&[])?;
                let applied = self
                    .apply_manifests(&rendered, |k| {
                        matches!(k, "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
                    })
                    .await?;
                if applied < 7 {
                    return Err(TestClusterError::Manifest(format!("the chart rendered only {applied} RBAC documents")));
                }
                let user = format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{CONTROLLER_ACCOUNT}");
                self.wait_authorized(&user, "list", "sei.io", "seinodes", None, None).await?;
                self.wait_authorized(&user, "update", "coordination.k8s.io", "leases", Some(CONTROLLER_NAMESPACE), Some(LEASE_NAME))
                    .await?;
                self.wait_authorized(&user, "get", "", "configmaps", Some(MODULE_NAMESPACE), None).await?;
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Wait until the API server's authorizer lets `user` do `verb` on `group/resource`
    /// (`namespace`, `name` when given): RBAC objects just applied take a moment to reach it.
    pub async fn wait_authorized(
        &self,
        user: &str,
        verb: &str,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<(), TestClusterError> {
        use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
        let api: Api<SubjectAccessReview> = Api::all(self.client().await);
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: Some(user.to_string()),
                groups: Some(vec!["system:serviceaccounts".into(), "system:authenticated".into()]),
                resource_attributes: Some(ResourceAttributes {
                    verb: Some(verb.into()),
                    group: Some(group.into()),
                    resource: Some(resource.into()),
                    namespace: namespace.map(str::to_string),
                    name: name.map(str::to_string),
                    ..Default::default()
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        crate::eventually(&format!("{user} may {verb} {group}/{resource}"), Duration::from_secs(30), || async {
            let answer = api.create(&PostParams::default(), &review).await.ok()?;
            answer.status.is_some_and(|s| s.allowed).then_some(())
        })
        .await
    }

    /// A token for `namespace/account` from the TokenRequest API (valid for a day).
    pub async fn service_account_token(&self, namespace: &str, account: &str) -> Result<String, TestClusterError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client().await, namespace);
        let request =
            TokenRequest { spec: Some(TokenRequestSpec { expiration_seconds: Some(86_400), ..Default::default() }), ..Default::default() };
        let issued = api.create_token_request(account, &PostParams::default(), &request).await?;
        issued.status.and_then(|s| s.token).ok_or_else(|| TestClusterError::Manifest(format!("no token issued for {namespace}/{account}")))
    }

    /// The admin kubeconfig with its user replaced by `token`.
    fn kubeconfig_with_token(&self, token: &str) -> kube::config::Kubeconfig {
        let mut kubeconfig = self.kubeconfig.clone();
        let user =
            kubeconfig.contexts.first().and_then(|c| c.context.as_ref()).and_then(|c| c.user.clone()).unwrap_or_else(|| "admin".into());
        kubeconfig.auth_infos = vec![NamedAuthInfo {
            name: user,
            auth_info: Some(AuthInfo { token: Some(token.to_string().into()), ..Default::default() }),
            other: Default::default(),
        }];
        kubeconfig
    }

    /// A client authenticated as `namespace/account`.
    pub async fn service_account_client(&self, namespace: &str, account: &str) -> Result<kube::Client, TestClusterError> {
        self.service_account_client_as(namespace, account, "sei-testkit-controller").await
    }

    /// A client authenticated as `namespace/account`, naming itself `user_agent` in the audit log.
    pub async fn service_account_client_as(
        &self,
        namespace: &str,
        account: &str,
        user_agent: &'static str,
    ) -> Result<kube::Client, TestClusterError> {
        let token = self.service_account_token(namespace, account).await?;
        let mut config = kube::Config::from_custom_kubeconfig(self.kubeconfig_with_token(&token), &KubeConfigOptions::default())
            .await
            .map_err(|e| TestClusterError::Kubeconfig(e.to_string()))?;
        config.read_timeout = Some(Duration::from_secs(30));
        config.headers.push((http::header::USER_AGENT, http::HeaderValue::from_static(user_agent)));
        Ok(kube::Client::try_from(config)?)
    }

    /// A kubeconfig file authenticated as `namespace/account` (for controller processes).
    pub async fn service_account_kubeconfig(&self, namespace: &str, account: &str) -> Result<PathBuf, TestClusterError> {
        let token = self.service_account_token(namespace, account).await?;
        let yaml = serde_yaml::to_string(&self.kubeconfig_with_token(&token)).map_err(|e| TestClusterError::Kubeconfig(e.to_string()))?;
        let path = self.dir.join(format!("kubeconfig-{namespace}-{account}"));
        std::fs::write(&path, yaml)?;
        Ok(path)
    }

    /// A client authenticated as the chart's ServiceAccount, with the chart's RBAC installed:
    /// what the controller may do in a cluster.
    pub async fn controller_client(&self) -> kube::Client {
        self.install_controller_identity().await.unwrap_or_else(|e| panic!("installing the chart's RBAC: {e}"));
        self.service_account_client(CONTROLLER_NAMESPACE, CONTROLLER_ACCOUNT)
            .await
            .unwrap_or_else(|e| panic!("a client for the chart's ServiceAccount: {e}"))
    }

    /// A kubeconfig file for the chart's ServiceAccount (for controller processes).
    pub async fn controller_kubeconfig(&self) -> PathBuf {
        self.install_controller_identity().await.unwrap_or_else(|e| panic!("installing the chart's RBAC: {e}"));
        self.service_account_kubeconfig(CONTROLLER_NAMESPACE, CONTROLLER_ACCOUNT)
            .await
            .unwrap_or_else(|e| panic!("a kubeconfig for the chart's ServiceAccount: {e}"))
    }
}
