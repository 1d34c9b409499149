//! What a pod template written by a task module may contain (pure). `kube-write` lets a module
//! create the node's StatefulSet and bootstrap Job; without this check a module could use them
//! to run pods that read the namespace's Secrets, run privileged or on the host's network, or act
//! as another service account. Checked by the capability guard on every create and apply of a
//! `StatefulSet` or `Job`, for built-in and swapped-in modules alike.
//!
//! Allowed: volumes of type `persistentVolumeClaim`, `emptyDir`, `configMap`, `downwardAPI`;
//! containers without Secret references in `env`/`envFrom`, without `privileged`,
//! `allowPrivilegeEscalation` or added capabilities; no `hostNetwork`/`hostPID`/`hostIPC`; a
//! service account only from the scope's list (`default` and the platform's).
//!
//! Invariants (unit tests below): each refused field is named in the message
//! (`each_escape_is_refused_with_its_field`); the built-in StatefulSet shape passes
//! (`the_reference_statefulset_passes`); other kinds are not inspected.

use serde_json::Value;
use std::collections::BTreeSet;

const ALLOWED_VOLUME_TYPES: &[&str] = &["persistentVolumeClaim", "emptyDir", "configMap", "downwardAPI"];

/// Check the pod template of a workload object; `Err` names what is refused.
pub fn check_workload(kind: &str, object: &Value, service_accounts: &BTreeSet<String>) -> Result<(), String> {
    if !matches!(kind, "StatefulSet" | "Job") {
        return Ok(());
    }
    let Some(pod) = object.pointer("/spec/template/spec") else { return Ok(()) };
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod.get(field) == Some(&Value::Bool(true)) {
            return Err(format!("{kind} pod template sets {field}: true"));
        }
    }
    for field in ["serviceAccountName", "serviceAccount"] {
        if let Some(sa) = pod.get(field).and_then(Value::as_str)
            && !service_accounts.contains(sa)
        {
            let allowed: Vec<&str> = service_accounts.iter().map(String::as_str).collect();
            return Err(format!("{kind} pod template uses service account `{sa}` (allowed: {})", allowed.join(", ")));
        }
    }
    for volume in pod.get("volumes").and_then(Value::as_array).into_iter().flatten() {
        let name = volume.get("name").and_then(Value::as_str).unwrap_or("?");
        if let Some(obj) = volume.as_object()
            && let Some(source) = obj.keys().find(|k| *k != "name" && !ALLOWED_VOLUME_TYPES.contains(&k.as_str()))
        {
            return Err(format!("{kind} pod template volume `{name}` is of type {source}; allowed: {}", ALLOWED_VOLUME_TYPES.join(", ")));
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in pod.get(list).and_then(Value::as_array).into_iter().flatten() {
            check_container(kind, c)?;
        }
    }
    Ok(())
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
    let sc = c.get("securityContext");
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

    fn sas() -> BTreeSet<String> {
        ["default".to_string(), "sei-node".to_string()].into_iter().collect()
    }

    fn sts(pod: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "rpc"}, "spec": {"template": {"spec": pod}}})
    }

    fn reference_pod() -> Value {
        json!({
            "shareProcessNamespace": true,
            "serviceAccountName": "sei-node",
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-rpc"}}],
            "initContainers": [{"name": "seid-init", "volumeMounts": [{"name": "data", "mountPath": "/sei"}]}],
            "containers": [
                {"name": "seid", "env": [{"name": "TMPDIR", "value": "/sei/tmp"}]},
                {"name": "sei-sidecar", "env": [{"name": "SEI_CHAIN_ID", "value": "pacific-1"}]}
            ]
        })
    }

    #[test]
    fn the_reference_statefulset_passes() {
        assert_eq!(check_workload("StatefulSet", &sts(reference_pod()), &sas()), Ok(()));
        assert_eq!(check_workload("Service", &json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}), &sas()), Ok(()));
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
        ];
        for (pointer, value, want) in cases {
            let mut pod = reference_pod();
            let (parent, key) = pointer.rsplit_once('/').unwrap();
            let target = if parent.is_empty() { &mut pod } else { pod.pointer_mut(parent).unwrap() };
            match target {
                Value::Array(a) => a[key.parse::<usize>().unwrap()] = value,
                other => other[key] = value,
            }
            let err = check_workload("StatefulSet", &sts(pod.clone()), &sas()).unwrap_err();
            assert!(err.contains(want), "{pointer}: {err}");
            let job = json!({"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": pod}}});
            assert!(check_workload("Job", &job, &sas()).is_err(), "{pointer} in a Job");
        }
    }
}
