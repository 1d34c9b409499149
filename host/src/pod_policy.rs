//! What an object written by a task module may contain (pure). `kube-write` lets a module create
//! the node's StatefulSet, bootstrap Job, PVC and Service; without these checks a module could use
//! them to run pods that read the namespace's Secrets or another node's data volume, run
//! privileged or on the host, act as another service account, or expose and intercept traffic.
//! Checked by the capability guard on every create and apply, for built-in and swapped-in modules
//! alike.
//!
//! Pod templates (StatefulSet, Job): volumes of type `persistentVolumeClaim` (only the node's own
//! `data-<node>`), `emptyDir`, `configMap`, `downwardAPI`; no `volumeClaimTemplates`; containers
//! without Secret references in `env`/`envFrom`, without `privileged`,
//! `allowPrivilegeEscalation`, added capabilities, `hostPort`, an unmasked `procMount` or an
//! `Unconfined` seccomp/AppArmor profile; no `hostNetwork`/`hostPID`/`hostIPC`, `nodeName` or
//! `sysctls`; a service account only from the scope's list (`default` and the platform's).
//! PersistentVolumeClaim: no `dataSource`/`dataSourceRef` (no cloning another volume). Service:
//! `ClusterIP` (or headless) only, no `externalIPs`/`externalName`, selecting the node's pods
//! (`sei.io/node=<node>`).
//!
//! Invariants (unit tests below): each refused field is named in the message
//! (`each_escape_is_refused_with_its_field`, `services_and_claims_are_checked`); the built-in
//! shapes pass (`the_reference_statefulset_passes`, and every controller integration test runs
//! the built-in modules under this policy).

use crate::guard::Scope;
use serde_json::Value;

const ALLOWED_VOLUME_TYPES: &[&str] = &["persistentVolumeClaim", "emptyDir", "configMap", "downwardAPI"];

/// Check an object a module writes; `Err` names what is refused.
pub fn check_object(kind: &str, object: &Value, scope: &Scope) -> Result<(), String> {
    match kind {
        "StatefulSet" | "Job" => check_workload(kind, object, scope),
        "PersistentVolumeClaim" => {
            for field in ["dataSource", "dataSourceRef"] {
                if object.pointer(&format!("/spec/{field}")).is_some() {
                    return Err(format!("PersistentVolumeClaim sets spec.{field} (cloning another volume)"));
                }
            }
            Ok(())
        }
        "Service" => check_service(object, scope),
        _ => Ok(()),
    }
}

fn check_service(object: &Value, scope: &Scope) -> Result<(), String> {
    let field = |f: &str| object.get("spec").and_then(|s| s.get(f));
    if let Some(t) = field("type").and_then(Value::as_str)
        && t != "ClusterIP"
    {
        return Err(format!("Service is of type {t}; only ClusterIP (or headless) Services may be written"));
    }
    for f in ["externalIPs", "externalName"] {
        if field(f).is_some() {
            return Err(format!("Service sets spec.{f}"));
        }
    }
    if field("selector").and_then(|s| s.get(crate::NODE_LABEL)).and_then(Value::as_str) != Some(scope.node_name.as_str()) {
        return Err(format!("Service must select the node's pods ({}={})", crate::NODE_LABEL, scope.node_name));
    }
    Ok(())
}

fn check_workload(kind: &str, object: &Value, scope: &Scope) -> Result<(), String> {
    if object.pointer("/spec/volumeClaimTemplates").is_some() {
        return Err(format!("{kind} sets spec.volumeClaimTemplates; the node's data volume is its PVC data-{}", scope.node_name));
    }
    let Some(pod) = object.pointer("/spec/template/spec") else { return Ok(()) };
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod.get(field) == Some(&Value::Bool(true)) {
            return Err(format!("{kind} pod template sets {field}: true"));
        }
    }
    if pod.get("nodeName").is_some() {
        return Err(format!("{kind} pod template sets nodeName; placement is the scheduler's"));
    }
    if pod.pointer("/securityContext/sysctls").and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        return Err(format!("{kind} pod template sets sysctls"));
    }
    if let Some(what) = unconfined(pod.get("securityContext")) {
        return Err(format!("{kind} pod template sets an Unconfined {what} profile"));
    }
    for field in ["serviceAccountName", "serviceAccount"] {
        if let Some(sa) = pod.get(field).and_then(Value::as_str)
            && !scope.pod_service_accounts.contains(sa)
        {
            let allowed: Vec<&str> = scope.pod_service_accounts.iter().map(String::as_str).collect();
            return Err(format!("{kind} pod template uses service account `{sa}` (allowed: {})", allowed.join(", ")));
        }
    }
    let own_claim = scope.writable_name("PersistentVolumeClaim");
    for volume in pod.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let name = volume.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(obj) = volume.as_object()
            && let Some(source) = obj.keys().find(|k| *k != "name" && !ALLOWED_VOLUME_TYPES.contains(&k.as_str()))
        {
            return Err(format!("{kind} pod template volume `{name}` is of type {source}; allowed: {}", ALLOWED_VOLUME_TYPES.join(", ")));
        }
        if let Some(claim) = volume.pointer("/persistentVolumeClaim/claimName").and_then(Value::as_str)
            && claim != own_claim
        {
            return Err(format!("{kind} pod template volume `{name}` mounts PVC {claim}; only the node's own {own_claim} may be mounted"));
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in pod.get(list).and_then(Value::as_array).into_iter().flatten() {
            check_container(kind, c)?;
        }
    }
    Ok(())
}

/// `seccomp` or `AppArmor` when a security context sets that profile to `Unconfined`.
fn unconfined(sc: Option<&Value>) -> Option<&'static str> {
    let sc = sc?;
    [("seccompProfile", "seccomp"), ("appArmorProfile", "AppArmor")]
        .into_iter()
        .find(|(field, _)| sc.pointer(&format!("/{field}/type")).and_then(Value::as_str) == Some("Unconfined"))
        .map(|(_, what)| what)
}

fn check_container(kind: &str, c: &Value) -> Result<(), String> {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
    let refuse = |what: &str| Err(format!("{kind} container `{name}` {what}"));
    for env in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        if env.pointer("/valueFrom/secretKeyRef").is_some() {
            return refuse(&format!("reads a Secret into env {}", env.get("name").and_then(Value::as_str).unwrap_or("?")));
        }
    }
    if c.get("envFrom").and_then(Value::as_array).into_iter().flatten().any(|e| e.get("secretRef").is_some()) {
        return refuse("reads a Secret through envFrom");
    }
    if c.get("ports").and_then(Value::as_array).into_iter().flatten().any(|p| p.get("hostPort").is_some()) {
        return refuse("binds a hostPort");
    }
    let sc = c.get("securityContext");
    if let Some(what) = unconfined(sc) {
        return refuse(&format!("sets an Unconfined {what} profile"));
    }
    if sc.and_then(|s| s.get("procMount")).and_then(Value::as_str) == Some("Unmasked") {
        return refuse("sets procMount: Unmasked");
    }
    if sc.and_then(|s| s.get("privileged")) == Some(&Value::Bool(true)) {
        return refuse("is privileged");
    }
    if sc.and_then(|s| s.get("allowPrivilegeEscalation")) == Some(&Value::Bool(true)) {
        return refuse("allows privilege escalation");
    }
    if sc.and_then(|s| s.pointer("/capabilities/add")).and_then(Value::as_array).is_some_and(|a| !a.is_empty()) {
        return refuse("adds Linux capabilities");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn scope() -> Scope {
        Scope::for_node("sei", "rpc").with_service_account(Some("sei-node".into()))
    }

    fn sts(pod: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "rpc"}, "spec": {"template": {"spec": pod}}})
    }

    fn reference_pod() -> Value {
        json!({
            "shareProcessNamespace": true,
            "serviceAccountName": "sei-node",
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-rpc"}}, {"name": "tmp", "emptyDir": {}}],
            "initContainers": [{"name": "seid-init", "volumeMounts": [{"name": "data", "mountPath": "/sei"}]}],
            "containers": [
                {"name": "seid", "env": [{"name": "TMPDIR", "value": "/sei/tmp"}]},
                {"name": "sei-sidecar", "env": [{"name": "SEI_CHAIN_ID", "value": "pacific-1"}]}
            ]
        })
    }

    #[test]
    fn the_reference_statefulset_passes() {
        assert_eq!(check_object("StatefulSet", &sts(reference_pod()), &scope()), Ok(()));
        assert_eq!(check_object("ConfigMap", &json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}), &scope()), Ok(()));
    }

    #[test]
    fn each_escape_is_refused_with_its_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/volumes/0", json!({"name": "creds", "secret": {"secretName": "aws"}}), "volume `creds` is of type secret"),
            ("/volumes/0", json!({"name": "root", "hostPath": {"path": "/"}}), "volume `root` is of type hostPath"),
            ("/volumes/0", json!({"name": "tok", "projected": {"sources": []}}), "is of type projected"),
            ("/hostNetwork", json!(true), "sets hostNetwork: true"),
            ("/hostPID", json!(true), "sets hostPID: true"),
            ("/serviceAccountName", json!("cluster-admin-sa"), "uses service account `cluster-admin-sa` (allowed: default, sei-node)"),
            (
                "/containers/0/env/0",
                json!({"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}),
                "`seid` reads a Secret into env K",
            ),
            ("/containers/1/envFrom", json!([{"secretRef": {"name": "s"}}]), "`sei-sidecar` reads a Secret through envFrom"),
            ("/initContainers/0/securityContext", json!({"privileged": true}), "`seid-init` is privileged"),
            ("/containers/0/securityContext", json!({"allowPrivilegeEscalation": true}), "allows privilege escalation"),
            ("/containers/0/securityContext", json!({"capabilities": {"add": ["NET_ADMIN"]}}), "adds Linux capabilities"),
            (
                "/volumes/0",
                json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-validator-0"}}),
                "mounts PVC data-validator-0; only the node's own data-rpc",
            ),
            ("/nodeName", json!("node-7"), "sets nodeName"),
            ("/securityContext", json!({"sysctls": [{"name": "net.core.somaxconn", "value": "1"}]}), "sets sysctls"),
            ("/securityContext", json!({"seccompProfile": {"type": "Unconfined"}}), "Unconfined seccomp profile"),
            ("/containers/0/securityContext", json!({"appArmorProfile": {"type": "Unconfined"}}), "Unconfined AppArmor profile"),
            ("/containers/0/securityContext", json!({"procMount": "Unmasked"}), "procMount: Unmasked"),
            ("/containers/0/ports", json!([{"containerPort": 26656, "hostPort": 26656}]), "binds a hostPort"),
        ];
        for (pointer, value, want) in cases {
            let mut pod = reference_pod();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() { &mut pod } else { pod.pointer_mut(parent).unwrap() };
            match target {
                Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                other => other[key] = value,
            }
            let err = check_object("StatefulSet", &sts(pod.clone()), &scope()).unwrap_err();
            assert!(err.contains(want), "{pointer}: {err}");
            let job = json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}});
            assert!(check_object("Job", &job, &scope()).is_err(), "{pointer} in a Job");
        }
        let mut with_templates = sts(reference_pod());
        with_templates["spec"]["volumeClaimTemplates"] = json!([{"metadata": {"name": "extra"}}]);
        assert!(check_object("StatefulSet", &with_templates, &scope()).unwrap_err().contains("volumeClaimTemplates"));
    }

    #[test]
    fn services_and_claims_are_checked() {
        let svc = |spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "rpc"}, "spec": spec});
        let selector = json!({"sei.io/node": "rpc"});
        assert_eq!(check_object("Service", &svc(json!({"clusterIP": "None", "selector": selector})), &scope()), Ok(()));
        for (spec, want) in [
            (json!({"type": "LoadBalancer", "selector": selector}), "of type LoadBalancer"),
            (json!({"type": "NodePort", "selector": selector}), "of type NodePort"),
            (json!({"selector": selector, "externalIPs": ["10.0.0.1"]}), "spec.externalIPs"),
            (json!({"type": "ExternalName", "externalName": "evil.example.com"}), "of type ExternalName"),
            (json!({"selector": {"sei.io/node": "validator-0"}}), "must select the node's pods (sei.io/node=rpc)"),
            (json!({}), "must select the node's pods"),
        ] {
            let err = check_object("Service", &svc(spec.clone()), &scope()).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
        let pvc = |spec: Value| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": spec});
        assert_eq!(check_object("PersistentVolumeClaim", &pvc(json!({"accessModes": ["ReadWriteOnce"]})), &scope()), Ok(()));
        let clone = pvc(json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "data-validator-0"}}));
        assert!(check_object("PersistentVolumeClaim", &clone, &scope()).unwrap_err().contains("spec.dataSource"));
    }
}
