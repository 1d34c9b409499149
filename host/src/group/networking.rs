//! A group's networking and monitoring objects, pure: the `<group>-external` Service, the
//! Gateway API HTTPRoutes that expose it, the ServiceMonitor that scrapes the group's nodes, and
//! what their state means for the `RouteReady` and `ServiceMonitorReady` conditions. The
//! controller writes them itself (server-side apply, field manager `sei-operator/group`), not
//! through a task module: they belong to the group, not to any one plan.
//!
//! Invariants (tests below):
//! - the external Service selects the group's pods of the *serving* revision only: during a
//!   rollout the incumbents' until `switch-traffic` completes, then the entrants'
//!   (`the_service_follows_the_serving_revision`);
//! - every object is owned by the group (controller reference), labelled with it, and named from
//!   it (`objects_are_owned_and_named_by_the_group`);
//! - routes are `<group>-<protocol>.<domain>` and, with a public domain,
//!   `<group>-<protocol>.<namespace>.<public domain>`, one HTTPRoute per protocol attached to the
//!   platform's Gateway (`routes_carry_the_references_hostnames`);
//! - a route is ready only when the Gateway named in its parent reference accepted it
//!   (`a_route_is_ready_when_its_gateway_accepted_it`);
//! - the ServiceMonitor selects the per-node Services of the group (they carry `sei.io/node`),
//!   not the external one, at the spec's interval (`the_monitor_scrapes_every_node_service`).

use super::children::{GROUP_LABEL, REVISION_LABEL, ROLE_LABEL, owner_of, revision};
use crate::api::seinode::SeiNode;
use crate::api::seinodedeployment::{RouteStatus, SeiNodeDeployment, ServiceMonitorConfig};
use crate::platform::GatewayConfig;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The ports of the external Service: (name, port, appProtocol).
pub const EXTERNAL_PORTS: [(&str, i32, Option<&str>); 5] = [
    ("rpc", 26657, None),
    ("evm-rpc", 8545, None),
    ("evm-ws", 8546, None),
    ("rest", 1317, None),
    ("grpc", 9090, Some("kubernetes.io/h2c")),
];

/// The HTTP protocols routed through the Gateway: (protocol, port of the external Service).
pub const ROUTED: [(&str, i32); 4] = [("rpc", 26657), ("evm", 8545), ("evm-ws", 8546), ("rest", 1317)];

/// The label of the per-node Services (set by the infra module on every node resource).
pub const NODE_LABEL: &str = "sei.io/node";

/// The Gateway API's group, version and the HTTPRoute resource.
pub const GATEWAY_API: (&str, &str, &str) = ("gateway.networking.k8s.io", "v1", "httproutes");
/// The Prometheus Operator's group, version and the ServiceMonitor resource.
pub const MONITORING_API: (&str, &str, &str) = ("monitoring.coreos.com", "v1", "servicemonitors");

/// `<group>-external`.
pub fn external_service_name(g: &SeiNodeDeployment) -> String {
    format!("{}-external", g.name_any())
}

/// `<group>-<protocol>`.
pub fn route_name(g: &SeiNodeDeployment, protocol: &str) -> String {
    format!("{}-{protocol}", g.name_any())
}

/// The revision that takes traffic: during a rollout its `incumbentRevision` (which
/// `switch-traffic` moves to the entrants'), else the lowest ordinal child's, else the group's.
pub fn serving_revision(g: &SeiNodeDeployment, children: &[SeiNode]) -> String {
    if let Some(r) = g.status.as_ref().and_then(|s| s.rollout.as_ref()).and_then(|r| r.incumbent_revision.clone()) {
        return r;
    }
    let mut by_ordinal: Vec<(i32, &SeiNode)> = children.iter().filter_map(|c| super::children::ordinal_of(c).map(|o| (o, c))).collect();
    by_ordinal.sort_by_key(|(o, c)| (*o, c.name_any()));
    by_ordinal.first().and_then(|(_, c)| c.labels().get(REVISION_LABEL).cloned()).unwrap_or_else(|| revision(g))
}

fn meta(g: &SeiNodeDeployment, name: String, extra: &BTreeMap<String, String>) -> ObjectMeta {
    let mut labels = extra.clone();
    labels.insert(GROUP_LABEL.into(), g.name_any());
    ObjectMeta {
        name: Some(name),
        namespace: g.namespace(),
        labels: Some(labels),
        owner_references: Some(vec![owner_of(g)]),
        ..Default::default()
    }
}

/// The ClusterIP Service in front of the group's pods of `revision`.
pub fn external_service(g: &SeiNodeDeployment, revision: &str) -> Service {
    let role = BTreeMap::from([(ROLE_LABEL.to_string(), "external".to_string())]);
    Service {
        metadata: meta(g, external_service_name(g), &role),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            selector: Some(BTreeMap::from([(GROUP_LABEL.to_string(), g.name_any()), (REVISION_LABEL.to_string(), revision.to_string())])),
            ports: Some(
                EXTERNAL_PORTS
                    .iter()
                    .map(|(name, port, app)| ServicePort {
                        name: Some((*name).into()),
                        port: *port,
                        target_port: Some(IntOrString::Int(*port)),
                        protocol: Some("TCP".into()),
                        app_protocol: app.map(str::to_string),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// The hostnames of `protocol`'s route.
pub fn hostnames(g: &SeiNodeDeployment, gateway: &GatewayConfig, protocol: &str) -> Vec<String> {
    let mut names = vec![format!("{}-{protocol}.{}", g.name_any(), gateway.domain)];
    if let Some(public) = &gateway.public_domain {
        names.push(format!("{}-{protocol}.{}.{public}", g.name_any(), g.namespace().unwrap_or_default()));
    }
    names
}

/// One HTTPRoute per routed protocol, attached to the platform's Gateway, to the external Service.
pub fn http_routes(g: &SeiNodeDeployment, gateway: &GatewayConfig) -> Vec<Value> {
    ROUTED
        .iter()
        .map(|(protocol, port)| {
            let metadata = meta(g, route_name(g, protocol), &BTreeMap::new());
            json!({
                "apiVersion": format!("{}/{}", GATEWAY_API.0, GATEWAY_API.1),
                "kind": "HTTPRoute",
                "metadata": metadata,
                "spec": {
                    "parentRefs": [{"group": GATEWAY_API.0, "kind": "Gateway", "name": gateway.name, "namespace": gateway.namespace}],
                    "hostnames": hostnames(g, gateway, protocol),
                    "rules": [{"backendRefs": [{"name": external_service_name(g), "port": port}]}]
                }
            })
        })
        .collect()
}

/// The routes the group's status lists: every hostname with its protocol.
pub fn route_status(g: &SeiNodeDeployment, gateway: &GatewayConfig) -> Vec<RouteStatus> {
    ROUTED
        .iter()
        .flat_map(|(protocol, _)| {
            hostnames(g, gateway, protocol).into_iter().map(|h| RouteStatus { hostname: h, protocol: protocol.to_string() })
        })
        .collect()
}

/// Whether the Gateway `gateway` accepted `route` (a `status.parents[]` entry naming it with
/// condition `Accepted` True).
pub fn route_accepted(route: &Value, gateway: &GatewayConfig) -> bool {
    route.pointer("/status/parents").and_then(Value::as_array).into_iter().flatten().any(|p| {
        let r = &p["parentRef"];
        r["name"].as_str() == Some(gateway.name.as_str())
            && r["namespace"].as_str().is_none_or(|ns| ns == gateway.namespace)
            && p["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"].as_str() == Some("Accepted") && c["status"].as_str() == Some("True"))
    })
}

/// The ServiceMonitor over the group's per-node Services (port `metrics`).
pub fn service_monitor(g: &SeiNodeDeployment, config: &ServiceMonitorConfig) -> Value {
    let metadata = meta(g, g.name_any(), &config.labels);
    json!({
        "apiVersion": format!("{}/{}", MONITORING_API.0, MONITORING_API.1),
        "kind": "ServiceMonitor",
        "metadata": metadata,
        "spec": {
            "selector": {
                "matchLabels": {GROUP_LABEL: g.name_any()},
                "matchExpressions": [{"key": NODE_LABEL, "operator": "Exists"}]
            },
            "namespaceSelector": {"matchNames": [g.namespace().unwrap_or_default()]},
            "endpoints": [{"port": "metrics", "interval": config.interval}]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::seinodedeployment::{RolloutStatus, SeiNodeDeploymentStatus, UpdateStrategyType};

    fn group(status: Option<SeiNodeDeploymentStatus>) -> SeiNodeDeployment {
        let mut g: SeiNodeDeployment = serde_json::from_value(json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment",
            "metadata": {"name": "net", "namespace": "sei", "uid": "u-1", "generation": 4},
            "spec": {"replicas": 2, "template": {"spec": {"chainId": "c", "image": "i", "fullNode": {}}},
                     "networking": {}, "updateStrategy": {"type": "BlueGreen"}}
        }))
        .unwrap();
        g.status = status;
        g
    }

    fn child(name: &str, ordinal: i32, revision: &str) -> SeiNode {
        serde_json::from_value(json!({
            "apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
            "metadata": {"name": name, "labels": {"sei.io/nodedeployment-ordinal": ordinal.to_string(), "sei.io/revision": revision}},
            "spec": {"chainId": "c", "image": "i", "fullNode": {}}
        }))
        .unwrap()
    }

    fn gateway(public: Option<&str>) -> GatewayConfig {
        GatewayConfig { name: "gw".into(), namespace: "infra".into(), domain: "sei.example".into(), public_domain: public.map(Into::into) }
    }

    #[test]
    fn the_service_follows_the_serving_revision() {
        let children = [child("net-1", 1, "2"), child("net-0", 0, "1")];
        // No rollout: the lowest ordinal's revision; no children: the group's generation.
        assert_eq!(serving_revision(&group(None), &children), "1");
        assert_eq!(serving_revision(&group(None), &[]), "4");
        // A rollout: its incumbent revision, whichever children exist (switch-traffic moves it).
        let rolling = |incumbent: &str| {
            group(Some(SeiNodeDeploymentStatus {
                rollout: Some(RolloutStatus {
                    strategy: UpdateStrategyType::BlueGreen,
                    target_hash: "h".into(),
                    incumbent_revision: Some(incumbent.into()),
                    entrant_revision: Some("4".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }))
        };
        assert_eq!(serving_revision(&rolling("1"), &children), "1");
        assert_eq!(serving_revision(&rolling("4"), &children), "4");
        let svc = external_service(&group(None), "7");
        assert_eq!(
            svc.spec.as_ref().unwrap().selector.as_ref().unwrap(),
            &BTreeMap::from([("sei.io/nodedeployment".to_string(), "net".to_string()), ("sei.io/revision".to_string(), "7".to_string())])
        );
        let ports: Vec<(String, i32)> =
            svc.spec.unwrap().ports.unwrap().into_iter().map(|p| (p.name.unwrap_or_default(), p.port)).collect();
        assert_eq!(ports.len(), 5);
        assert!(ports.contains(&("rpc".into(), 26657)) && ports.contains(&("evm-rpc".into(), 8545)));
    }

    #[test]
    fn objects_are_owned_and_named_by_the_group() {
        let g = group(None);
        let svc = serde_json::to_value(external_service(&g, "1")).unwrap();
        let routes = http_routes(&g, &gateway(None));
        let monitor = service_monitor(&g, &ServiceMonitorConfig { interval: "15s".into(), labels: BTreeMap::new() });
        let names: Vec<&str> =
            std::iter::once(&svc).chain(&routes).chain([&monitor]).filter_map(|o| o["metadata"]["name"].as_str()).collect();
        assert_eq!(names, ["net-external", "net-rpc", "net-evm", "net-evm-ws", "net-rest", "net"]);
        for o in std::iter::once(&svc).chain(&routes).chain([&monitor]) {
            assert_eq!(o["metadata"]["namespace"], "sei");
            assert_eq!(o["metadata"]["labels"]["sei.io/nodedeployment"], "net");
            let owner = &o["metadata"]["ownerReferences"][0];
            assert_eq!(
                (owner["kind"].as_str(), owner["uid"].as_str(), owner["controller"].as_bool()),
                (Some("SeiNodeDeployment"), Some("u-1"), Some(true))
            );
        }
        assert_eq!(svc["metadata"]["labels"]["sei.io/role"], "external");
    }

    #[test]
    fn routes_carry_the_references_hostnames() {
        let g = group(None);
        let routes = http_routes(&g, &gateway(Some("public.example")));
        assert_eq!(routes[0]["spec"]["hostnames"], json!(["net-rpc.sei.example", "net-rpc.sei.public.example"]));
        assert_eq!(
            routes[0]["spec"]["parentRefs"],
            json!([{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw", "namespace": "infra"}])
        );
        assert_eq!(routes[1]["spec"]["rules"], json!([{"backendRefs": [{"name": "net-external", "port": 8545}]}]));
        let private = http_routes(&g, &gateway(None));
        assert_eq!(private[3]["spec"]["hostnames"], json!(["net-rest.sei.example"]));
        let listed = route_status(&g, &gateway(Some("public.example")));
        assert_eq!(listed.len(), 8);
        assert_eq!(listed[2], RouteStatus { hostname: "net-evm.sei.example".into(), protocol: "evm".into() });
    }

    #[test]
    fn a_route_is_ready_when_its_gateway_accepted_it() {
        let gw = gateway(None);
        let with = |parent: Value| json!({"status": {"parents": [parent]}});
        let accepted = |name: &str, status: &str| {
            with(
                json!({"parentRef": {"name": name, "namespace": "infra"}, "controllerName": "x", "conditions": [{"type": "Accepted", "status": status}]}),
            )
        };
        assert!(route_accepted(&accepted("gw", "True"), &gw));
        assert!(!route_accepted(&accepted("gw", "False"), &gw));
        assert!(!route_accepted(&accepted("other", "True"), &gw), "another Gateway's acceptance does not count");
        assert!(!route_accepted(&json!({}), &gw), "no status yet");
        assert!(!route_accepted(&json!({"status": {"parents": "garbage"}}), &gw));
        let other_ns =
            with(json!({"parentRef": {"name": "gw", "namespace": "elsewhere"}, "conditions": [{"type": "Accepted", "status": "True"}]}));
        assert!(!route_accepted(&other_ns, &gw));
    }

    #[test]
    fn the_monitor_scrapes_every_node_service() {
        let g = group(None);
        let m = service_monitor(
            &g,
            &ServiceMonitorConfig { interval: "15s".into(), labels: BTreeMap::from([("release".into(), "prom".into())]) },
        );
        assert_eq!(m["spec"]["selector"]["matchLabels"], json!({"sei.io/nodedeployment": "net"}));
        assert_eq!(m["spec"]["selector"]["matchExpressions"], json!([{"key": "sei.io/node", "operator": "Exists"}]));
        assert_eq!(m["spec"]["endpoints"], json!([{"port": "metrics", "interval": "15s"}]));
        assert_eq!(m["metadata"]["labels"]["release"], "prom");
        assert_eq!(m["spec"]["namespaceSelector"], json!({"matchNames": ["sei"]}));
    }
}
