//! The Helm chart's RBAC, proven on the real API server's RBAC authorizer.
//!
//! A *tour* drives every feature that needs a permission, with two controller replicas running
//! as one ServiceAccount under leader election: a TaskModule loaded from a ConfigMap in the
//! module namespace (both replicas report in its status), a full node and a bootstrap node to
//! Running (PVC, StatefulSet, Services, the bootstrap Job and its teardown), an image change on
//! a Running node (its convergence plan applies over the StatefulSet and Service), a group of two full
//! nodes with networking and monitoring (children created, its Service, HTTPRoutes and
//! ServiceMonitor created by server-side apply, then deleted when the spec drops them, one child
//! deleted by a scale-down, the group's finalizer), a genesis validator
//! whose `configure-genesis` is retried (its repeated Warning event is patched as a series), the
//! deletion of a node (its PVC), and a
//! graceful stop (the Lease released, the standby watching it).
//!
//! - `the_chart_grants_exactly_what_the_controller_uses`: the tour as the chart's ServiceAccount
//!   completes, the API server refused none of its requests, and every verb of every rule the
//!   chart grants was used (read from the audit log);
//! - `removing_any_rule_breaks_the_feature_that_needs_it`: for each verb of each rule, the chart
//!   rendered under a name of its own with that verb removed; the tour as that ServiceAccount
//!   meets a 403 for exactly that verb and resource;
//! - `a_host_call_the_api_server_refuses_waits_until_the_rbac_allows_it`: without `create` on
//!   PersistentVolumeClaims a node's `ensure-data-pvc` waits (named in its message), spends no
//!   retry and fails no plan; with the rule back the node reaches Running (a kube-apiserver that
//!   has just restarted refuses every request so until its RBAC caches have synced);
//! - `the_service_account_reaches_nothing_else`: Secrets, Pods, ConfigMaps outside the module
//!   namespace, Deployments, RBAC objects, Namespaces and deleting a SeiNodeDeployment are refused.

mod common;

use futures::future::join_all;
use k8s_openapi::ByteString;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use sei_operator::adapters::sidecar::Script;
use sei_operator::api::seinode::{SeiNode, SeiNodePhase, TaskPlanPhase, TaskStatus};
use sei_operator::api::seinodedeployment::{GroupPhase, SeiNodeDeployment};
use sei_operator::embedded::BUILTIN_MODULES;
use sei_operator::group::GroupContext;
use sei_operator::leader::LeaseSettings;
use sei_operator::node::{Context, SidecarResolver};
use sei_operator::operator::{Operator, Shutdown, Stopped};
use sei_operator::platform::{GatewayConfig, PlatformConfig};
use sei_operator::registry::TaskRegistry;
use sei_operator::release_tag::with_custom_section;
use sei_operator::sandbox::cache::sha256_hex;
use sei_operator::sandbox::{Sandbox, SandboxConfig};
use sei_operator::taskmodule::loader::TaskModuleWatch;
use sei_operator::taskmodule::resource::TaskModule;
use sei_test_sidecar::TestSidecar;
use sei_testkit::identity::{CONTROLLER_ACCOUNT, CONTROLLER_NAMESPACE, LEASE_NAME, MODULE_NAMESPACE};
use sei_testkit::{AuditEvent, HTTPROUTES_CRD, SERVICEMONITORS_CRD, TestCluster, eventually};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const STEP_DEADLINE: Duration = Duration::from_secs(120);

/// One permission: (apiGroup, resource with subresource, verb).
type Permission = (String, String, String);

/// One rule of the rendered chart, with the name its `# rule:` comment gives it.
#[derive(Debug, Clone)]
struct Rule {
    name: String,
    group: String,
    resource: String,
    verbs: Vec<String>,
}

/// The names the `# rule: NAME` comments of a rendered Role or ClusterRole give its rules, in order.
fn rule_names(doc: &str) -> Vec<String> {
    doc.lines().filter_map(|l| l.trim().strip_prefix("# rule: ")).map(|n| n.split_whitespace().next().unwrap_or("").to_string()).collect()
}

/// The rules of the chart's ClusterRole and Roles, in rendering order.
fn chart_rules(rendered: &str) -> Vec<Rule> {
    let mut rules = Vec::new();
    for doc in rendered.split("\n---") {
        let Ok(v) = serde_yaml::from_str::<serde_json::Value>(doc) else { continue };
        if !matches!(v["kind"].as_str(), Some("ClusterRole" | "Role")) {
            continue;
        }
        let names = rule_names(doc);
        for (i, r) in v["rules"].as_array().into_iter().flatten().enumerate() {
            let strings =
                |k: &str| r[k].as_array().into_iter().flatten().filter_map(|s| s.as_str().map(str::to_string)).collect::<Vec<_>>();
            let (groups, resources) = (strings("apiGroups"), strings("resources"));
            assert_eq!((groups.len(), resources.len()), (1, 1), "one group and one resource per rule, so each can be removed alone: {r}");
            rules.push(Rule {
                name: names.get(i).cloned().unwrap_or_else(|| format!("rule-{i}")),
                group: groups[0].clone(),
                resource: resources[0].clone(),
                verbs: strings("verbs"),
            });
        }
    }
    rules
}

fn permission_of(e: &AuditEvent) -> Permission {
    let resource = if e.subresource.is_empty() { e.resource.clone() } else { format!("{}/{}", e.resource, e.subresource) };
    (e.api_group.clone(), resource, e.verb.clone())
}

fn user(account: &str) -> String {
    format!("system:serviceaccount:{CONTROLLER_NAMESPACE}:{account}")
}

/// One Sandbox (with a precompiled cache) for every replica of every tour.
fn sandbox() -> Arc<Sandbox> {
    static SANDBOX: OnceLock<(tempfile::TempDir, Arc<Sandbox>)> = OnceLock::new();
    SANDBOX
        .get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let sandbox =
                Arc::new(Sandbox::new(SandboxConfig { cache_dir: Some(dir.path().to_path_buf()), ..Default::default() }).unwrap());
            (dir, sandbox)
        })
        .1
        .clone()
}

/// The tour's replicas; stopped gracefully by `stop`, aborted when dropped.
struct Replicas {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    runs: Vec<tokio::task::JoinHandle<Stopped>>,
}

impl Replicas {
    async fn stop(mut self) -> Vec<Stopped> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let mut out = Vec::new();
        for run in std::mem::take(&mut self.runs) {
            out.push(tokio::time::timeout(Duration::from_secs(30), run).await.expect("replicas stop within 30 s").unwrap());
        }
        out
    }
}

impl Drop for Replicas {
    fn drop(&mut self) {
        self.runs.iter().for_each(|r| r.abort());
    }
}

/// Two replicas in `ns`, as `client`, electing a leader on `lease`.
async fn start_replicas(client: &kube::Client, ns: &str, lease: &str, sidecar: &TestSidecar) -> Replicas {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = Shutdown::when(async move {
        let _ = stopped.await;
    });
    let mut runs = Vec::new();
    for id in ["replica-a", "replica-b"] {
        let registry = Arc::new(TaskRegistry::new());
        registry.load_builtins(&sandbox()).await.unwrap();
        let ctx = Context::builder(
            client.clone(),
            sandbox(),
            registry,
            PlatformConfig::for_local(),
            SidecarResolver::Template(sidecar.url_template()),
        )
        .instance(id)
        .build();
        let watch =
            TaskModuleWatch { label_selector: Some(format!("sei.io/test={ns}")), configmap_namespace: Some(MODULE_NAMESPACE.into()) };
        let settings = LeaseSettings {
            namespace: CONTROLLER_NAMESPACE.into(),
            name: lease.into(),
            identity: format!("{ns}-{id}"),
            lease_duration: Duration::from_secs(4),
            renew_deadline: Duration::from_secs(3),
            retry_period: Duration::from_secs(1),
        };
        let groups = GroupContext::new(
            client.clone(),
            sandbox(),
            ctx.registry().clone(),
            tour_platform(),
            SidecarResolver::Template(sidecar.url_template()),
            ctx.telemetry().clone(),
            (ctx.shared_module_slots(), ctx.module_step_cap()),
        );
        let operator = Operator::new(ctx)
            .with_groups(groups)
            .with_task_modules(watch, id)
            .with_leader_election(settings)
            .with_shutdown(shutdown.clone(), Duration::from_secs(5));
        runs.push(tokio::spawn(operator.run(2, Some(ns.to_string()))));
    }
    Replicas { stop: Some(stop), runs }
}

/// The local platform with a Gateway for groups' routes.
fn tour_platform() -> PlatformConfig {
    PlatformConfig {
        gateway: Some(GatewayConfig { name: "gw".into(), namespace: "infra".into(), domain: "sei.example".into(), public_domain: None }),
        ..PlatformConfig::for_local()
    }
}

fn node(name: &str, spec: serde_json::Value) -> SeiNode {
    let mut s = json!({"chainId": "pacific-1", "image": "seid:v1"});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name}, "spec": s})).unwrap()
}

async fn wait<T, F, Fut>(what: &str, check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually(what, STEP_DEADLINE, check).await.map_err(|e| e.to_string())
}

async fn wait_phase(nodes: &Api<SeiNode>, name: &str, phase: SeiNodePhase) -> Result<(), String> {
    wait(&format!("SeiNode {name} {phase:?}"), || async { (nodes.get(name).await.ok()?.status?.phase == Some(phase)).then_some(()) }).await
}

/// The task types the built-in sidecar module serves (what a TaskModule of it must declare).
async fn sidecar_task_types() -> Vec<String> {
    let registry = TaskRegistry::new();
    registry.load_builtins(&sandbox()).await.unwrap();
    let digest = registry.resolve("mark-ready").unwrap().module.digest.clone();
    registry.active().into_iter().filter(|(_, e)| e.module.digest == digest).map(|(t, _)| t).collect()
}

/// Every feature that needs a permission, as `client` (module docs). Returns at the first step
/// that does not complete in time.
async fn tour(cluster: &'static TestCluster, client: kube::Client, ns: &str, lease: &str) -> Result<(), String> {
    let admin = cluster.client().await;
    let sidecar = TestSidecar::start(0).await.map_err(|e| e.to_string())?;
    let replicas = start_replicas(&client, ns, lease, &sidecar).await;

    // A TaskModule from a ConfigMap in the module namespace: both replicas load it and say so.
    let bytes = with_custom_section(
        BUILTIN_MODULES.iter().find(|m| m.name == "sei-builtin-sidecar").unwrap().bytes,
        "sei-test-release",
        ns.as_bytes(),
    );
    let module = format!("{ns}-sidecar");
    let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": module}})).unwrap();
    let cm = ConfigMap { binary_data: Some(BTreeMap::from([("module.wasm".to_string(), ByteString(bytes.clone()))])), ..cm };
    Api::<ConfigMap>::namespaced(admin.clone(), MODULE_NAMESPACE).create(&PostParams::default(), &cm).await.map_err(|e| e.to_string())?;
    let tm: TaskModule = serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "TaskModule",
        "metadata": {"name": module, "labels": {"sei.io/test": ns}},
        "spec": {
            "taskTypes": sidecar_task_types().await,
            "source": {"configMap": {"namespace": MODULE_NAMESPACE, "name": module, "key": "module.wasm"}},
            "sha256": sha256_hex(&bytes),
            "capabilities": ["sidecar"],
        },
    }))
    .unwrap();
    let modules: Api<TaskModule> = Api::all(admin.clone());
    modules.create(&PostParams::default(), &tm).await.map_err(|e| e.to_string())?;
    wait(&format!("TaskModule {module} Ready on both replicas"), || async {
        let status = modules.get(&module).await.ok()?.status?;
        let ready = |r: &str| {
            status.replicas.iter().any(|e| e.replica == r && e.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        };
        (ready("replica-a") && ready("replica-b")).then_some(())
    })
    .await?;

    // A full node and a bootstrap node to Running.
    let nodes: Api<SeiNode> = Api::namespaced(admin.clone(), ns);
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    nodes.create(&PostParams::default(), &node("full", json!({"fullNode": {}, "peers": peers}))).await.map_err(|e| e.to_string())?;
    let boot = json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}, "bootstrapImage": "seid:boot"}}, "peers": peers});
    nodes.create(&PostParams::default(), &node("boot", boot)).await.map_err(|e| e.to_string())?;
    let jobs: Api<Job> = Api::namespaced(admin.clone(), ns);
    wait("the bootstrap Job", || async { jobs.get_opt("boot-bootstrap").await.ok()? }).await?;
    jobs.patch_status("boot-bootstrap", &PatchParams::default(), &Patch::Merge(&common::completed_job_status()))
        .await
        .map_err(|e| e.to_string())?;
    wait_phase(&nodes, "full", SeiNodePhase::Running).await?;
    wait_phase(&nodes, "boot", SeiNodePhase::Running).await?;

    // An image change on a Running node: its convergence plan applies over the StatefulSet and
    // Service that exist (server-side apply: patch).
    nodes.patch("full", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"image": "seid:v2"}}))).await.map_err(|e| e.to_string())?;
    let sts: Api<k8s_openapi::api::apps::v1::StatefulSet> = Api::namespaced(admin.clone(), ns);
    wait("the StatefulSet of full on the new image", || async {
        let s = sts.get("full").await.ok()?;
        let image = s.spec.template.spec.as_ref()?.containers.iter().find(|c| c.name == "seid")?.image.clone()?;
        (image == "seid:v2").then_some(())
    })
    .await?;

    // A group of two full nodes with networking and monitoring: its children are created and
    // reach Running, its Service, HTTPRoutes and ServiceMonitor are applied (created), a
    // scale-down deletes one child, and deleting the group removes its finalizer.
    let groups: Api<SeiNodeDeployment> = Api::namespaced(admin.clone(), ns);
    let group: SeiNodeDeployment = serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "metadata": {"name": "rpc"},
        "spec": {"replicas": 2, "template": {"spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}, "peers": peers}},
                 "updateStrategy": {"type": "InPlace"}, "networking": {}, "monitoring": {"serviceMonitor": {}}}
    }))
    .unwrap();
    groups.create(&PostParams::default(), &group).await.map_err(|e| e.to_string())?;
    let ready = wait("group rpc Ready with 2 children, its routes and monitor applied", || async {
        let s = groups.get("rpc").await.ok()?.status?;
        let reason = |t: &str| s.conditions.iter().find(|c| c.type_ == t).map(|c| c.reason.clone());
        let networked =
            reason("RouteReady").as_deref() == Some("RoutesPending") && reason("ServiceMonitorReady").as_deref() == Some("Applied");
        (s.ready_replicas == 2 && s.phase == Some(GroupPhase::Ready) && networked).then_some(())
    })
    .await;
    if let Err(e) = ready {
        let status = groups.get("rpc").await.ok().and_then(|g| g.status);
        return Err(format!("{e}; group status: {}", serde_json::to_string(&status).unwrap_or_default()));
    }
    // Networking and monitoring removed: the Service, routes and monitor are deleted.
    let unnetworked = json!({"spec": {"networking": null, "monitoring": null}});
    groups.patch("rpc", &PatchParams::default(), &Patch::Merge(&unnetworked)).await.map_err(|e| e.to_string())?;
    let services: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(admin.clone(), ns);
    wait("Service rpc-external deleted", || async { services.get_opt("rpc-external").await.ok()?.is_none().then_some(()) }).await?;
    groups.patch("rpc", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 1}}))).await.map_err(|e| e.to_string())?;
    wait("child rpc-1 deleted by the scale-down", || async { nodes.get_opt("rpc-1").await.ok()?.is_none().then_some(()) }).await?;
    groups.delete("rpc", &DeleteParams::default()).await.map_err(|e| e.to_string())?;
    wait("group rpc gone", || async { groups.get_opt("rpc").await.ok()?.is_none().then_some(()) }).await?;

    // A genesis validator whose genesis is not published yet: `configure-genesis` is retried,
    // and the repeated TaskRetry Warning is a patch of the first Event (a series).
    sidecar.script("configure-genesis", Script::FailAfter(0, "genesis not published yet".into()));
    let ceremony = json!({"validator": {"genesisCeremony": {"chainId": "c", "stakingAmount": "1", "accountBalance": "2", "index": 0}}});
    nodes.create(&PostParams::default(), &node("genesis", ceremony)).await.map_err(|e| e.to_string())?;
    let events: Api<Event> = Api::namespaced(admin.clone(), ns);
    wait("the TaskRetry event as a series of 2", || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("TaskRetry") && e.series.as_ref().is_some_and(|s| s.count >= 2))
            .map(|_| ())
    })
    .await?;

    // Deleting a node deletes its data volume.
    nodes.delete("full", &DeleteParams::default()).await.map_err(|e| e.to_string())?;
    wait("SeiNode full gone", || async { nodes.get_opt("full").await.ok()?.is_none().then_some(()) }).await?;

    // A graceful stop: the leader releases the Lease.
    let stopped = replicas.stop().await;
    if !stopped.contains(&Stopped::Graceful) {
        return Err(format!("no replica stopped gracefully as the leader: {stopped:?}"));
    }
    Ok(())
}

async fn prepare(cluster: &'static TestCluster) {
    cluster.install_crds(&sei_operator::crds::all()).await.unwrap();
    // The real Gateway API and Prometheus Operator CRDs: a group's routes and monitor need them.
    let third_party = [HTTPROUTES_CRD, SERVICEMONITORS_CRD].map(|f| cluster.third_party_crd(f).unwrap());
    cluster.install_crds(&third_party).await.unwrap();
    cluster.install_controller_identity().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_grants_exactly_what_the_controller_uses() {
    let cluster = TestCluster::shared();
    prepare(cluster).await;
    let ns = cluster.namespace("rbac-tour").await;
    // The chart's own Lease: no other test of this binary uses it (the rule-removal cases render
    // the chart under names of their own).
    let rendered = cluster.render_chart(&[]).unwrap();
    let me = user(CONTROLLER_ACCOUNT);
    tour(cluster, cluster.controller_client().await, ns.name(), LEASE_NAME).await.unwrap();

    let granted: BTreeSet<Permission> = chart_rules(&rendered)
        .into_iter()
        .flat_map(|r| r.verbs.iter().map(move |v| (r.group.clone(), r.resource.clone(), v.clone())).collect::<Vec<_>>())
        .collect();
    // A watch is audited when it ends (the replicas' watches end as they stop): wait, with a
    // deadline, until the log holds every granted verb, then judge what it holds.
    let read = || {
        // Discovery (is an optional API served?) is every authenticated user's, not the chart's.
        let requests = cluster.audit_events(|e| e.user == me && e.user_agent != "rbac-deny-probe" && !e.is_discovery());
        // A server-side apply that creates its object (201) is authorized as a patch and a create.
        let used: BTreeSet<Permission> = requests
            .iter()
            .flat_map(|e| {
                let p = permission_of(e);
                let created = (e.verb == "patch" && e.code == 201).then(|| (p.0.clone(), p.1.clone(), "create".to_string()));
                std::iter::once(p).chain(created)
            })
            .collect();
        (requests, used)
    };
    let _ = eventually("every granted verb in the audit log", std::time::Duration::from_secs(30), || async {
        read().1.is_superset(&granted).then_some(())
    })
    .await;
    let (requests, used) = read();
    let refused: Vec<String> =
        requests.iter().filter(|e| e.code == 403).map(|e| format!("{:?} {}/{}", permission_of(e), e.namespace, e.name)).collect();
    assert!(refused.is_empty(), "the chart's RBAC refused requests the controller needs:\n{}", refused.join("\n"));
    let unused: Vec<&Permission> = granted.difference(&used).collect();
    assert!(
        unused.is_empty(),
        "granted but never used by the tour (least privilege: drop them, or tour the feature): {unused:?}\nused: {used:?}"
    );
    let ungranted: Vec<&Permission> = used.difference(&granted).collect();
    assert!(ungranted.is_empty(), "used without a rule (allowed by something else?): {ungranted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_any_rule_breaks_the_feature_that_needs_it() {
    let cluster = TestCluster::shared();
    prepare(cluster).await;
    let base = cluster.render_chart(&[]).unwrap();
    let rules = chart_rules(&base);
    assert!(rules.len() >= 12, "the chart's rules were found: {rules:?}");
    let cases: Vec<(Rule, String)> = rules.iter().flat_map(|r| r.verbs.iter().map(move |v| (r.clone(), v.clone()))).collect();
    // A few tours at a time: each runs two replicas.
    let slots = Arc::new(tokio::sync::Semaphore::new(6));
    let rules = &rules;
    let results = join_all(cases.iter().enumerate().map(|(i, (rule, verb))| {
        let slots = slots.clone();
        async move {
            let _slot = slots.acquire().await.unwrap();
            let name = format!("rm-{i}-{}-{verb}", rule.name);
            let ns = cluster.namespace(&name).await;
            let lease = format!("{name}-lease");
            // The chart under a name of its own, with exactly this verb of this rule removed.
            let rendered =
                cluster.render_chart(&[&format!("fullnameOverride={name}"), &format!("leaderElection.leaseName={lease}")]).unwrap();
            let reduced = without_verb(&rendered, &rule.name, verb);
            cluster
                .apply_manifests(&reduced, |k| {
                    matches!(k, "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding")
                })
                .await
                .unwrap();
            // Wait until the authorizer knows the reduced roles: one permission they keep.
            let kept =
                rules.iter().flat_map(|r| r.verbs.iter().map(move |v| (r, v))).find(|(r, v)| !(r.name == rule.name && *v == verb)).unwrap();
            let (kept_ns, kept_name) = match kept.0.group.as_str() {
                "coordination.k8s.io" => (Some(CONTROLLER_NAMESPACE), None),
                "" if kept.0.resource == "configmaps" => (Some(MODULE_NAMESPACE), None),
                _ => (None, None),
            };
            cluster.wait_authorized(&user(&name), kept.1, &kept.0.group, &kept.0.resource, kept_ns, kept_name).await.unwrap();
            let client = cluster.service_account_client(CONTROLLER_NAMESPACE, &name).await.unwrap();
            let wanted = (rule.group.clone(), rule.resource.clone(), verb.clone());
            let me = user(&name);
            let touring = tokio::spawn(tour(cluster, client, ns.name().to_string().leak(), lease.leak()));
            let refused = eventually(&format!("a 403 for {wanted:?} without rule {} {verb}", rule.name), STEP_DEADLINE * 2, || async {
                // A server-side apply that would create its object needs `create` too, and is
                // audited as the patch it is.
                let matches = |p: Permission| p == wanted || (wanted.2 == "create" && p.2 == "patch" && p.0 == wanted.0 && p.1 == wanted.1);
                cluster.audit_events(|e| e.user == me && e.code == 403).iter().any(|e| matches(permission_of(e))).then_some(())
            })
            .await;
            touring.abort();
            refused.map_err(|e| format!("rule {} without {verb}: {e}", rule.name))
        }
    }))
    .await;
    let failures: Vec<String> = results.into_iter().filter_map(Result::err).collect();
    assert!(failures.is_empty(), "rules whose removal broke nothing (unused permissions):\n{}", failures.join("\n"));
}

/// `rendered` with `verb` removed from the rule named `rule`.
fn without_verb(rendered: &str, rule: &str, verb: &str) -> String {
    let mut out = Vec::new();
    for doc in rendered.split("\n---") {
        let Ok(mut v) = serde_yaml::from_str::<serde_json::Value>(doc) else {
            out.push(doc.to_string());
            continue;
        };
        if matches!(v["kind"].as_str(), Some("ClusterRole" | "Role")) {
            let names = rule_names(doc);
            if let Some(rules) = v["rules"].as_array_mut() {
                for (i, r) in rules.iter_mut().enumerate() {
                    if names.get(i).is_some_and(|n| n == rule)
                        && let Some(verbs) = r["verbs"].as_array_mut()
                    {
                        verbs.retain(|x| x.as_str() != Some(verb));
                    }
                }
                rules.retain(|r| r["verbs"].as_array().is_some_and(|v| !v.is_empty()));
            }
            out.push(serde_yaml::to_string(&v).unwrap());
        } else {
            out.push(doc.to_string());
        }
    }
    out.join("\n---\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_call_the_api_server_refuses_waits_until_the_rbac_allows_it() {
    let cluster = TestCluster::shared();
    prepare(cluster).await;
    let name = "refused-pvc-create";
    let ns = cluster.namespace(name).await;
    let rbac = |k: &str| matches!(k, "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role" | "RoleBinding");
    let rendered = cluster.render_chart(&[&format!("fullnameOverride={name}"), &format!("leaderElection.leaseName={name}")]).unwrap();
    cluster.apply_manifests(&without_verb(&rendered, "persistentvolumeclaims", "create"), rbac).await.unwrap();
    let me = user(name);
    cluster.wait_authorized(&me, "list", "", "persistentvolumeclaims", None, None).await.unwrap();

    let client = cluster.service_account_client(CONTROLLER_NAMESPACE, name).await.unwrap();
    let sidecar = TestSidecar::start(0).await.unwrap();
    let registry = Arc::new(TaskRegistry::new());
    registry.load_builtins(&sandbox()).await.unwrap();
    let ctx = Context::builder(client, sandbox(), registry, PlatformConfig::for_local(), SidecarResolver::Template(sidecar.url_template()))
        .build();
    let controller = tokio::spawn(sei_operator::node::run(ctx, 2, Some(ns.name().to_string())));
    let nodes: Api<SeiNode> = Api::namespaced(cluster.client().await, ns.name());
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    nodes.create(&PostParams::default(), &node("full", json!({"fullNode": {}, "peers": peers}))).await.unwrap();

    let pvc_task = |n: &SeiNode| n.status.as_ref()?.plan.as_ref()?.tasks.iter().find(|t| t.task_type == "ensure-data-pvc").cloned();
    let waiting = wait("ensure-data-pvc waiting on the API server's refusal", || async {
        let n = nodes.get("full").await.ok()?;
        let task = pvc_task(&n)?;
        // A failed task ends the wait too (the assertions below say how).
        let refused = task.message.as_deref().is_some_and(|m| m.contains("refused the controller's request"));
        (refused || task.status == TaskStatus::Failed).then_some(n)
    })
    .await
    .unwrap();
    let (task, plan) = (pvc_task(&waiting).unwrap(), waiting.status.as_ref().and_then(|s| s.plan.as_ref()).unwrap());
    assert_eq!((task.status, task.retry_count, task.error.as_deref()), (TaskStatus::Pending, 0, None), "{task:?}");
    assert_eq!(plan.phase, TaskPlanPhase::Active, "{plan:?}");
    let message = task.message.unwrap_or_default();
    assert!(message.starts_with("waiting: ") && message.contains("persistentvolumeclaims"), "{message}");
    assert!(
        cluster.audit_events(|e| e.user == me && e.code == 403).iter().any(|e| e.resource == "persistentvolumeclaims"),
        "the refusal is the API server's"
    );

    // The rule back: the same plan goes on, the task completes on its first try.
    cluster.apply_manifests(&rendered, rbac).await.unwrap();
    wait_phase(&nodes, "full", SeiNodePhase::Running).await.unwrap();
    let running = nodes.get("full").await.unwrap();
    let task = pvc_task(&running).unwrap();
    assert_eq!((task.status, task.retry_count), (TaskStatus::Complete, 0), "{task:?}");
    assert_eq!(running.status.and_then(|s| s.plan).map(|p| p.id), Some(plan.id.clone()), "the plan was not built again");
    controller.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_account_reaches_nothing_else() {
    let cluster = TestCluster::shared();
    prepare(cluster).await;
    let ns = cluster.namespace("rbac-deny").await;
    cluster.install_controller_identity().await.unwrap();
    // Named apart in the audit log: these refusals are not the controller's.
    let client = cluster.service_account_client_as(CONTROLLER_NAMESPACE, CONTROLLER_ACCOUNT, "rbac-deny-probe").await.unwrap();
    let forbidden = |r: &Result<(), kube::Error>| matches!(r, Err(kube::Error::Api(s)) if s.code == 403);
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    let cases: Vec<(&str, Result<(), kube::Error>)> = vec![
        ("get a Secret", Api::<Secret>::namespaced(client.clone(), ns.name()).get_opt("any").await.map(|_| ())),
        ("list Secrets everywhere", Api::<Secret>::all(client.clone()).list(&ListParams::default()).await.map(|_| ())),
        (
            "list Secrets of its own namespace",
            Api::<Secret>::namespaced(client.clone(), CONTROLLER_NAMESPACE).list(&ListParams::default()).await.map(|_| ()),
        ),
        (
            "create a Pod",
            Api::<Pod>::namespaced(client.clone(), ns.name())
                .create(
                    &PostParams::default(),
                    &serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}))
                        .unwrap(),
                )
                .await
                .map(|_| ()),
        ),
        (
            "read a ConfigMap outside the module namespace",
            Api::<ConfigMap>::namespaced(client.clone(), ns.name()).get_opt("any").await.map(|_| ()),
        ),
        (
            "create a ConfigMap in the module namespace",
            Api::<ConfigMap>::namespaced(client.clone(), MODULE_NAMESPACE)
                .create(&PostParams::default(), &serde_json::from_value(json!({"metadata": {"name": "c"}})).unwrap())
                .await
                .map(|_| ()),
        ),
        ("list Deployments", Api::<Deployment>::namespaced(client.clone(), ns.name()).list(&ListParams::default()).await.map(|_| ())),
        ("list ClusterRoleBindings", Api::<ClusterRoleBinding>::all(client.clone()).list(&ListParams::default()).await.map(|_| ())),
        ("delete a Namespace", Api::<Namespace>::all(client.clone()).delete(ns.name(), &DeleteParams::default()).await.map(|_| ())),
        (
            "delete a SeiNodeDeployment",
            Api::<SeiNodeDeployment>::namespaced(client.clone(), ns.name()).delete("any", &DeleteParams::default()).await.map(|_| ()),
        ),
        ("create a TaskModule", {
            let tm: TaskModule =
                serde_json::from_value(json!({"apiVersion": "sei.io/v1alpha1", "kind": "TaskModule", "metadata": {"name": "x"},
                "spec": {"taskTypes": ["t"], "source": {"url": "https://a/b.wasm"}, "sha256": "0".repeat(64), "capabilities": []}}))
                .unwrap();
            Api::<TaskModule>::all(client.clone()).create(&PostParams::default(), &tm).await.map(|_| ())
        }),
        (
            "use another Lease",
            Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(client.clone(), CONTROLLER_NAMESPACE)
                .get_opt("kube-scheduler")
                .await
                .map(|_| ()),
        ),
    ];
    let allowed: Vec<String> = cases.iter().filter(|(_, r)| !forbidden(r)).map(|(w, r)| format!("{w}: {r:?}")).collect();
    assert!(allowed.is_empty(), "not refused for the chart's ServiceAccount:\n{}", allowed.join("\n"));
}
