//! A group's networking and monitoring objects, pure: the `<group>-external` Service, the
//! Gateway API HTTPRoutes that expose it, the ServiceMonitor that scrapes the group's nodes, and
//! what their state means for the `RouteReady` and `ServiceMonitorReady` conditions. The
//! controller writes them itself (server-side apply, field manager `sei-operator/group`), not
//! through a task module: they belong to the group, not to any one plan.
//!
//! Invariants (tests below):
//! - the external Service selects the group's pods of one revision only, the serving one
//!   (`children::revision`: during a rollout the incumbents' until `switch-traffic` completes,
//!   then the entrants') (`the_service_selects_the_serving_revision`);
//! - every object is owned by the group (controller reference), labelled with it, and named from
//!   it (`objects_are_owned_and_named_by_the_group`);
//! - routes are `<group>-<protocol>.<domain>` and, with a public domain,
//!   `<group>-<protocol>.<namespace>.<public domain>`, one HTTPRoute per protocol attached to the
//!   platform's Gateway (`routes_carry_the_references_hostnames`);
//! - a route is ready only when the Gateway named in its parent reference accepted it, and
//!   rejected when that Gateway says `Accepted` False, with its reason
//!   (`a_route_is_ready_when_its_gateway_accepted_it`);
//! - an object the group writes must be absent or controlled by the group (its uid): another
//!   owner's object of the same name is never taken over (`only_the_groups_own_objects_are_written`);
//! - the ServiceMonitor selects the per-node Services of the group (they carry `sei.io/node`),
//!   not the external one, at the spec's interval (`the_monitor_scrapes_every_node_service`).

use super::children::{GROUP_LABEL, REVISION_LABEL, ROLE_LABEL, owner_of};
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

/// What the Gateway made of a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteState {
    Accepted,
    /// `Accepted` False: the Gateway's reason and message.
    Rejected(String, String),
    /// No word from the Gateway yet.
    Pending,
}

/// The state of `route` at the Gateway `gateway` (its `status.parents[]` entry naming it).
pub fn route_state(route: &Value, gateway: &GatewayConfig) -> RouteState {
    let parents = route.pointer("/status/parents").and_then(Value::as_array).into_iter().flatten();
    let ours = parents.filter(|p| {
        let r = &p["parentRef"];
        r["name"].as_str() == Some(gateway.name.as_str()) && r["namespace"].as_str().is_none_or(|ns| ns == gateway.namespace)
    });
    let mut state = RouteState::Pending;
    for p in ours {
        let accepted = p["conditions"].as_array().into_iter().flatten().find(|c| c["type"].as_str() == Some("Accepted"));
        match accepted.and_then(|c| c["status"].as_str()) {
            Some("True") => return RouteState::Accepted,
            Some("False") => {
                let c = accepted.unwrap_or(&Value::Null);
                let text = |k: &str| crate::text::safe(c[k].as_str().unwrap_or_default(), 200);
                state = RouteState::Rejected(text("reason"), text("message"));
            }
            _ => {}
        }
    }
    state
}

/// Whether an object (its metadata) is controlled by group `g` (its uid): only such an object is
/// written, deleted or orphaned by the group.
pub fn controlled_by(g: &SeiNodeDeployment, meta: &ObjectMeta) -> bool {
    let uid = g.uid().unwrap_or_default();
    meta.owner_references.iter().flatten().any(|o| o.controller == Some(true) && o.uid == uid && o.kind == "SeiNodeDeployment")
}

/// Why an existing object of the group's name is not the group's: its controller, or none.
pub fn held_by(meta: &ObjectMeta) -> String {
    match meta.owner_references.iter().flatten().find(|o| o.controller == Some(true)) {
        Some(o) => format!("controlled by {} {}", o.kind, o.name),
        None => "not controlled by this group".to_string(),
    }
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
    use crate::api::seinodedeployment::SeiNodeDeploymentStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

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

    fn gateway(public: Option<&str>) -> GatewayConfig {
        GatewayConfig { name: "gw".into(), namespace: "infra".into(), domain: "sei.example".into(), public_domain: public.map(Into::into) }
    }

    #[test]
    fn the_service_selects_the_serving_revision() {
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
        let said = |name: &str, status: &str| {
            with(json!({"parentRef": {"name": name, "namespace": "infra"}, "controllerName": "x",
                        "conditions": [{"type": "Accepted", "status": status, "reason": "NotAllowedByListeners", "message": "no\u{1b}[31m"}]}))
        };
        assert_eq!(route_state(&said("gw", "True"), &gw), RouteState::Accepted);
        assert_eq!(
            route_state(&said("gw", "False"), &gw),
            RouteState::Rejected("NotAllowedByListeners".into(), crate::text::safe("no\u{1b}[31m", 200)),
            "the Gateway's words, escaped"
        );
        assert_eq!(route_state(&said("other", "True"), &gw), RouteState::Pending, "another Gateway's acceptance does not count");
        assert_eq!(route_state(&json!({}), &gw), RouteState::Pending, "no status yet");
        assert_eq!(route_state(&json!({"status": {"parents": "garbage"}}), &gw), RouteState::Pending);
        let other_ns =
            with(json!({"parentRef": {"name": "gw", "namespace": "elsewhere"}, "conditions": [{"type": "Accepted", "status": "True"}]}));
        assert_eq!(route_state(&other_ns, &gw), RouteState::Pending);
    }

    #[test]
    fn only_the_groups_own_objects_are_written() {
        let g = group(None);
        let owner = |kind: &str, uid: &str, controller: Option<bool>| ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: kind.into(),
                name: "x".into(),
                uid: uid.into(),
                controller,
                block_owner_deletion: None,
            }]),
            ..Default::default()
        };
        assert!(controlled_by(&g, &owner("SeiNodeDeployment", "u-1", Some(true))));
        assert!(!controlled_by(&g, &owner("SeiNodeDeployment", "u-2", Some(true))), "another group's");
        assert!(!controlled_by(&g, &owner("SeiNodeDeployment", "u-1", None)), "owned but not controlled");
        assert!(!controlled_by(&g, &owner("SeiNode", "u-1", Some(true))));
        assert!(!controlled_by(&g, &ObjectMeta::default()), "made by hand");
        assert_eq!(held_by(&owner("SeiNode", "u-9", Some(true))), "controlled by SeiNode x");
        assert_eq!(held_by(&ObjectMeta::default()), "not controlled by this group");
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
