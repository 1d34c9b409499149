//! A SeiNodeDeployment's networking and monitoring on the real control plane, with the real
//! Gateway API and Prometheus Operator CRDs (from their Go modules, `tests/control-plane/crds`)
//! installed part-way: first absent (the group reports why and stays Ready), then served (the
//! routes and the monitor are made), then accepted by a Gateway (the test writes the route status
//! a Gateway controller would); another app's Service of the same name is never taken over; a
//! scale-up's node takes traffic; monitoring removed deletes the ServiceMonitor; `Retain` orphans
//! the rest. Its own test binary: it installs CRDs that the other group tests must not see. The
//! controller runs as the Helm chart's ServiceAccount.

mod common;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use sei_operator::api::seinodedeployment::{GroupPhase, SeiNodeDeployment};
use sei_operator::group::GroupContext;
use sei_operator::node::{Context, SidecarResolver};
use sei_operator::platform::{GatewayConfig, PlatformConfig};
use sei_test_sidecar::TestSidecar;
use sei_testkit::{HTTPROUTES_CRD, SERVICEMONITORS_CRD, TestCluster, eventually};
use serde_json::json;
use std::time::Duration;

const DEADLINE: Duration = Duration::from_secs(180);

fn reason(g: &SeiNodeDeployment, type_: &str) -> Option<(String, String)> {
    g.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_).map(|c| (c.status.clone(), c.reason.clone()))
}

fn dynamic(admin: &kube::Client, ns: &str, (group, version, kind, plural): (&str, &str, &str, &str)) -> Api<DynamicObject> {
    Api::namespaced_with(admin.clone(), ns, &ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_and_monitor_follow_what_the_cluster_serves() {
    let cluster = TestCluster::shared();
    cluster.install_crds(&[sei_operator::crds::seinode(), sei_operator::crds::seinodedeployment()]).await.unwrap();
    let ns = cluster.namespace("grp-net").await;
    let admin = cluster.client().await;
    let sidecar = TestSidecar::start(0).await.unwrap();
    let client = cluster.controller_client().await;
    let (sandbox, registry) = common::builtins().await;
    let gateway = GatewayConfig {
        name: "public".into(),
        namespace: "gateways".into(),
        domain: "sei.example".into(),
        public_domain: Some("public.example".into()),
    };
    let platform = PlatformConfig { gateway: Some(gateway.clone()), ..PlatformConfig::for_local() };
    let resolver = SidecarResolver::Template(sidecar.url_template());
    let nodes = Context::builder(client.clone(), sandbox.clone(), registry.clone(), platform.clone(), resolver.clone()).build();
    let steps = (nodes.shared_module_slots(), nodes.module_step_cap());
    let groups = GroupContext::new(client, sandbox, registry, platform, resolver, nodes.telemetry().clone(), steps)
        .with_networking_refresh(Duration::from_millis(500));
    let namespace = Some(ns.name().to_string());
    let _controllers = [
        tokio::spawn(sei_operator::node::run(nodes, 4, namespace.clone())),
        tokio::spawn(sei_operator::group::run_until(groups, 2, namespace, std::future::pending())),
    ];

    let api: Api<SeiNodeDeployment> = Api::namespaced(admin.clone(), ns.name());
    let group: SeiNodeDeployment = serde_json::from_value(json!({
        "apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "metadata": {"name": "rpc"},
        "spec": {"replicas": 2, "template": {"spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}}},
                 "updateStrategy": {"type": "InPlace"}, "deletionPolicy": "Retain",
                 "networking": {}, "monitoring": {"serviceMonitor": {"interval": "15s", "labels": {"release": "prom"}}}}
    }))
    .unwrap();
    api.create(&PostParams::default(), &group).await.unwrap();
    // Another app's Service already has the name a second group's would take.
    let services: Api<Service> = Api::namespaced(admin.clone(), ns.name());
    let theirs: Service = serde_json::from_value(json!({"metadata": {"name": "taken-external"},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"port": 80}]}}))
    .unwrap();
    services.create(&PostParams::default(), &theirs).await.unwrap();
    let mut taken = group.clone();
    taken.metadata.name = Some("taken".into());
    taken.spec.replicas = 1;
    taken.spec.monitoring = None;
    api.create(&PostParams::default(), &taken).await.unwrap();
    let nodes_api: Api<sei_operator::api::seinode::SeiNode> = Api::namespaced(admin.clone(), ns.name());
    let wait = |what: &'static str, ok: fn(&SeiNodeDeployment) -> bool| {
        let api = api.clone();
        async move {
            let last = std::sync::Mutex::new(None);
            let waited = eventually(what, DEADLINE, || async {
                let g = api.get("rpc").await.ok()?;
                *last.lock().unwrap() = g.status.clone();
                ok(&g).then_some(g)
            })
            .await;
            waited.unwrap_or_else(|e| panic!("{e}; status: {:?}", last.lock().unwrap()))
        }
    };

    // 1. Neither optional API is served: the Service is made, the group is Ready, and the
    //    conditions say what is missing.
    let g = wait("Ready, with routes and monitor reported absent", |g| {
        g.status.as_ref().is_some_and(|s| s.phase == Some(GroupPhase::Ready))
            && reason(g, "RouteReady").is_some_and(|r| r.1 == "GatewayAPINotServed")
            && reason(g, "ServiceMonitorReady").is_some_and(|r| r.1 == "CRDNotServed")
    })
    .await;
    assert_eq!(reason(&g, "RouteReady").unwrap().0, "False");
    assert!(g.status.as_ref().unwrap().networking_status.is_none(), "no routes listed while none exist");
    // The second group does not take the other app's Service over: it says so and runs on.
    let conflict = eventually("group taken reports the conflict", DEADLINE, || async {
        let g = api.get("taken").await.ok()?;
        reason(&g, "RouteReady").filter(|r| r.1 == "Conflict").map(|_| g)
    })
    .await
    .unwrap();
    let message = &conflict.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "RouteReady").unwrap().message;
    assert!(message.contains("Service taken-external exists and is not controlled by this group"), "{message}");
    let still = services.get("taken-external").await.unwrap();
    assert_eq!(still.spec.unwrap().selector.unwrap(), [("app".to_string(), "theirs".to_string())].into(), "left alone");
    assert!(still.metadata.owner_references.unwrap_or_default().is_empty());
    let svc = services.get("rpc-external").await.unwrap();
    let spec = svc.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(
        spec.selector.unwrap(),
        [("sei.io/nodedeployment".to_string(), "rpc".to_string()), ("sei.io/revision".to_string(), "1".to_string())].into()
    );
    assert_eq!(svc.metadata.owner_references.unwrap()[0].kind, "SeiNodeDeployment");

    // 2. The real CRDs are installed: the routes and the monitor appear without a restart; the
    //    routes wait for their Gateway.
    let third_party = [HTTPROUTES_CRD, SERVICEMONITORS_CRD].map(|f| cluster.third_party_crd(f).unwrap());
    cluster.install_crds(&third_party).await.unwrap();
    let g = wait("routes pending and the monitor applied", |g| {
        reason(g, "RouteReady").is_some_and(|r| r.1 == "RoutesPending")
            && reason(g, "ServiceMonitorReady").is_some_and(|r| r == ("True".into(), "Applied".into()))
    })
    .await;
    let listed = &g.status.as_ref().unwrap().networking_status.as_ref().unwrap().routes;
    assert_eq!(listed.len(), 8, "4 protocols x (domain, public domain): {listed:?}");
    assert!(listed.iter().any(|r| r.hostname == format!("rpc-evm.{}.public.example", ns.name()) && r.protocol == "evm"));
    let routes = dynamic(&admin, ns.name(), ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"));
    let rpc = routes.get("rpc-rpc").await.unwrap();
    assert_eq!(rpc.data["spec"]["hostnames"][0], "rpc-rpc.sei.example");
    assert_eq!(rpc.data["spec"]["parentRefs"][0]["name"], "public");
    assert_eq!(
        rpc.data["spec"]["rules"][0]["backendRefs"][0],
        json!({"group": "", "kind": "Service", "name": "rpc-external", "port": 26657, "weight": 1})
    );
    let monitors = dynamic(&admin, ns.name(), ("monitoring.coreos.com", "v1", "ServiceMonitor", "servicemonitors"));
    let monitor = monitors.get("rpc").await.unwrap();
    assert_eq!(monitor.data["spec"]["endpoints"][0]["interval"], "15s");
    assert_eq!(monitor.metadata.labels.as_ref().unwrap()["release"], "prom");

    // 3. A Gateway controller accepts every route (the test plays it): RouteReady turns True.
    let now = k8s_openapi::jiff::Timestamp::now().to_string();
    for protocol in ["rpc", "evm", "evm-ws", "rest"] {
        let accepted = json!({"status": {"parents": [{
            "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "public", "namespace": "gateways"},
            "controllerName": "example.com/gateway",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok",
                            "lastTransitionTime": now, "observedGeneration": 1}]
        }]}});
        routes.patch_status(&format!("rpc-{protocol}"), &PatchParams::default(), &Patch::Merge(&accepted)).await.unwrap();
    }
    wait("RouteReady True", |g| reason(g, "RouteReady").is_some_and(|r| r == ("True".into(), "RoutesAccepted".into()))).await;

    // 4. A scale-up (a new generation) adds a node the Service selects: new children get the
    //    serving revision, not the generation.
    api.patch("rpc", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"replicas": 3}}))).await.unwrap();
    let added = eventually("child rpc-2", DEADLINE, || async { nodes_api.get_opt("rpc-2").await.ok()? }).await.unwrap();
    let selector = services.get("rpc-external").await.unwrap().spec.unwrap().selector.unwrap();
    assert_eq!(
        added.metadata.labels.as_ref().unwrap().get("sei.io/revision"),
        selector.get("sei.io/revision"),
        "the new node takes traffic"
    );
    assert_eq!(added.spec.pod_labels.as_ref().unwrap().get("sei.io/revision"), selector.get("sei.io/revision"));

    // 5. Monitoring removed from the spec: the ServiceMonitor goes, and its condition.
    api.patch("rpc", &PatchParams::default(), &Patch::Merge(&json!({"spec": {"monitoring": null}}))).await.unwrap();
    wait("no ServiceMonitorReady", |g| reason(g, "ServiceMonitorReady").is_none()).await;
    eventually("the ServiceMonitor deleted", DEADLINE, || async { monitors.get_opt("rpc").await.ok()?.is_none().then_some(()) })
        .await
        .unwrap();

    // 6. Retain: the group goes; its Service and routes stay, owned by nobody.
    api.delete("rpc", &DeleteParams::default()).await.unwrap();
    eventually("the group gone", DEADLINE, || async { api.get_opt("rpc").await.ok()?.is_none().then_some(()) }).await.unwrap();
    let kept = services.get("rpc-external").await.unwrap();
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty(), "the Service is orphaned");
    for protocol in ["rpc", "evm", "evm-ws", "rest"] {
        let r = routes.get(&format!("rpc-{protocol}")).await.unwrap();
        assert!(r.metadata.owner_references.unwrap_or_default().is_empty(), "route rpc-{protocol} is orphaned");
    }
}
