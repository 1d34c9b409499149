//! What an object written by a task module may contain (pure). `kube-write` lets a module create
//! the node's StatefulSet, bootstrap Job, PVC and Service; without these checks a module could use
//! them to run pods that read the namespace's Secrets or another node's data volume, run
//! privileged, on the host or on the control plane, act as another service account, intercept
//! another node's traffic, pull images with someone else's credentials, or bind a volume that is
//! not its own. Checked by the capability guard on every create and apply, for built-in and
//! swapped-in modules alike. The rules, each refused with the field named:
//!
//! Every object: no `metadata.finalizers` (a module could keep its objects, and the namespace,
//! from ever being deleted); annotations only `sei.io/*`, `karpenter.sh/do-not-disrupt` and
//! `kubectl.kubernetes.io/restartedAt` (an annotation can drive another controller: external-dns
//! publishing a name, a mesh injecting a sidecar); integral floats are checked as the integers the
//! API server stores (the host normalizes them first).
//!
//! Pod templates (StatefulSet, Job): only the pod and container fields on an allow-list
//! (`ALLOWED_POD_FIELDS`, `ALLOWED_CONTAINER_FIELDS`: a field a later Kubernetes release adds is
//! refused until reviewed), and of those:
//! - labels: `sei.io/node=<node>` is required; any other label must be one of the node's
//!   `spec.podLabels` with its value, or `sei.io/component=bootstrap` (so a pod never matches
//!   another node's Service selector); annotations as for objects (so no AppArmor/seccomp profile
//!   annotations); no `finalizers`, `ownerReferences`, `name`, `generateName` or `namespace` in
//!   the template's metadata (they are copied to every pod);
//! - placement: tolerations only for the platform's toleration key; `nodeSelector` and node
//!   affinity only on the platform's node-pool label and values (`Placement`); no pod
//!   (anti-)affinity, `nodeName`, `schedulerName` (but `default-scheduler`), `priorityClassName`, `priority`,
//!   `runtimeClassName`, `resourceClaims`; `hostname` only `<node>-0`, `subdomain` only `<node>`;
//! - identity: a service account only from the scope's list (`default` and the platform's); no
//!   `imagePullSecrets`;
//! - host: no `hostNetwork`/`hostPID`/`hostIPC`/`hostUsers: true` is the default and allowed, no
//!   `sysctls`, no `hostPort`;
//! - security contexts (pod and every container, init and ephemeral): no `privileged`,
//!   `allowPrivilegeEscalation`, added capabilities, `procMount: Unmasked`, `seLinuxOptions`,
//!   Windows `hostProcess`, seccomp/AppArmor profiles other than `RuntimeDefault`, `runAsUser: 0`,
//!   `runAsGroup: 0`, `fsGroup: 0` or supplemental group 0, `runAsNonRoot: false`;
//! - stopping: `terminationGracePeriodSeconds` (pod and probes) at most `MAX_GRACE_SECONDS`;
//! - containers: resources only cpu, memory, ephemeral-storage and hugepages (no device plugin's
//!   extended resource); no Windows gMSA or user name; no Secret references in `env`/`envFrom`, no `Bidirectional` mount propagation,
//!   no `volumeDevices`, no probe or lifecycle hook with a `host` of its own (the kubelet would
//!   send it anywhere: the node's network, the cloud's metadata service); no
//!   `ephemeralContainers`, `hostAliases`, `schedulingGates` or `overhead` at all;
//! - volumes: only `persistentVolumeClaim` (only the node's own `data-<node>`), `emptyDir`,
//!   `configMap`, `downwardAPI`; no `volumeClaimTemplates`;
//! - workload: a StatefulSet selects `sei.io/node=<node>` by `matchLabels` only, has at most one
//!   replica and is governed by the Service `<node>`; a Job sets no selector of its own
//!   (`manualSelector`), is managed by the Job controller (`managedBy`), and runs at most one pod
//!   at a time.
//!
//! PersistentVolumeClaim: no `dataSource`/`dataSourceRef` (cloning another volume), no
//! `volumeName`/`selector` (binding an existing volume). Service: `ClusterIP` (or headless) only,
//! no `externalIPs`/`externalName`, selecting the node's pods (`sei.io/node=<node>`).
//!
//! Invariants (unit tests below): each refused field is named in the message
//! (`each_escape_is_refused_with_its_field`, `placement_is_the_platforms`,
//! `services_and_claims_are_checked`, `labels_cannot_join_another_nodes_service`); the built-in
//! shapes pass (`the_reference_statefulset_passes`, and every controller integration test runs the
//! built-in modules under this policy).

use super::scope::{COMPONENT_LABEL, NODE_LABEL, NODE_POOL_LABEL, Placement, Scope};
use serde_json::Value;

const ALLOWED_VOLUME_TYPES: &[&str] = &["persistentVolumeClaim", "emptyDir", "configMap", "downwardAPI"];
/// The pod spec fields a module may set at all (an allow-list: a field the API server adds in a
/// later release is refused until it is reviewed here). The checks below narrow their values.
const ALLOWED_POD_FIELDS: &[&str] = &[
    "containers",
    "initContainers",
    "volumes",
    "restartPolicy",
    "terminationGracePeriodSeconds",
    "activeDeadlineSeconds",
    "dnsPolicy",
    "dnsConfig",
    "nodeSelector",
    "serviceAccountName",
    "serviceAccount",
    "automountServiceAccountToken",
    "hostNetwork",
    "hostPID",
    "hostIPC",
    "hostUsers",
    "shareProcessNamespace",
    "securityContext",
    "hostname",
    "subdomain",
    "setHostnameAsFQDN",
    "affinity",
    "schedulerName",
    "tolerations",
    "enableServiceLinks",
    "topologySpreadConstraints",
    "readinessGates",
    "os",
];
/// The longest a node's pod may take to stop (the reference's bootstrap Job asks 120 s). A module
/// controls the image: a pod that ignores SIGTERM stays Terminating for its whole grace period,
/// keeping its namespace, its node's drain and its StatefulSet's rollout waiting.
const MAX_GRACE_SECONDS: i64 = 600;
/// Resources a container may request (`hugepages-<size>` too): an extended resource of a device
/// plugin (`nvidia.com/gpu`, `devices.kubevirt.io/kvm`) hands the container host devices.
fn allowed_resource(name: &str) -> bool {
    matches!(name, "cpu" | "memory" | "ephemeral-storage") || name.starts_with("hugepages-")
}
/// The container fields a module may set (init containers too).
const ALLOWED_CONTAINER_FIELDS: &[&str] = &[
    "name",
    "image",
    "command",
    "args",
    "workingDir",
    "ports",
    "envFrom",
    "env",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "volumeMounts",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "terminationMessagePath",
    "terminationMessagePolicy",
    "imagePullPolicy",
    "securityContext",
    "stdin",
    "stdinOnce",
    "tty",
];
/// Annotation keys a module may set (on an object or a pod template).
fn allowed_annotation(key: &str) -> bool {
    key.starts_with("sei.io/") || key == "karpenter.sh/do-not-disrupt" || key == "kubectl.kubernetes.io/restartedAt"
}

fn check_annotations(what: &str, meta: &Value) -> Result<(), String> {
    if meta.get("annotations").is_some_and(|a| !a.is_object() && !a.is_null()) {
        return Err(format!("{what} has metadata.annotations that are not a map"));
    }
    for key in meta.get("annotations").and_then(Value::as_object).into_iter().flat_map(|a| a.keys()) {
        if !allowed_annotation(key) {
            return Err(format!(
                "{what} sets the annotation {key}; modules may set sei.io/*, karpenter.sh/do-not-disrupt and kubectl.kubernetes.io/restartedAt"
            ));
        }
    }
    Ok(())
}

/// Labels on the object itself: `sei.io/*` (with `sei.io/node` only the node's own name) and the
/// node's `spec.podLabels`. A label drives other controllers and selectors (a Grafana sidecar
/// loading a ConfigMap as a dashboard, a ServiceMonitor picking a Service, a proxy skipping one).
fn check_object_labels(kind: &str, meta: &Value, scope: &Scope) -> Result<(), String> {
    let Some(labels) = meta.get("labels").filter(|l| !l.is_null()) else { return Ok(()) };
    let Some(labels) = labels.as_object() else { return Err(format!("{kind} has metadata.labels that are not a map")) };
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    for (key, value) in labels {
        let value = value.as_str().unwrap_or_default();
        let allowed = if let Some(ok) = scope.identity_label(key, value, name) {
            ok
        } else if key == NODE_LABEL {
            value == scope.node_name
        } else {
            key.starts_with("sei.io/") || scope.pod_labels.get(key).is_some_and(|v| v == value)
        };
        if !allowed {
            return Err(format!(
                "{kind} label {key}={value} is not allowed; modules may set sei.io/* labels and the node's spec.podLabels"
            ));
        }
    }
    Ok(())
}

/// Check an object a module writes; `Err` names what is refused.
pub fn check_object(kind: &str, object: &Value, scope: &Scope) -> Result<(), String> {
    if object.pointer("/metadata/finalizers").and_then(Value::as_array).is_some_and(|f| !f.is_empty()) {
        return Err(format!("{kind} sets metadata.finalizers"));
    }
    if let Some(meta) = object.get("metadata") {
        check_annotations(kind, meta)?;
        check_object_labels(kind, meta, scope)?;
    }
    match kind {
        "StatefulSet" | "Job" => check_workload(kind, object, scope),
        "PersistentVolumeClaim" => {
            for (field, why) in [
                ("dataSource", "cloning another volume"),
                ("dataSourceRef", "cloning another volume"),
                ("volumeName", "binding an existing volume"),
                ("selector", "binding an existing volume"),
            ] {
                if object.pointer(&format!("/spec/{field}")).is_some_and(|v| !v.is_null()) {
                    return Err(format!("PersistentVolumeClaim sets spec.{field} ({why})"));
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
    if field("selector").and_then(|s| s.get(NODE_LABEL)).and_then(Value::as_str) != Some(scope.node_name.as_str()) {
        return Err(format!("Service must select the node's pods ({}={})", NODE_LABEL, scope.node_name));
    }
    Ok(())
}

fn is_set(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null() && v != &Value::Bool(false) && v.as_array().is_none_or(|a| !a.is_empty()))
}

fn check_workload(kind: &str, object: &Value, scope: &Scope) -> Result<(), String> {
    let spec = object.get("spec");
    if is_set(spec.and_then(|s| s.get("volumeClaimTemplates"))) {
        return Err(format!("{kind} sets spec.volumeClaimTemplates; the node's data volume is its PVC data-{}", scope.node_name));
    }
    match kind {
        "StatefulSet" => check_statefulset(object, scope)?,
        _ => check_job(object)?,
    }
    if let Some(meta) = object.pointer("/spec/template/metadata") {
        check_template_metadata(kind, meta, scope)?;
    } else if object.pointer("/spec/template/spec").is_some() {
        return Err(format!("{kind} pod template has no labels; it must carry {}={}", NODE_LABEL, scope.node_name));
    }
    let Some(pod) = object.pointer("/spec/template/spec") else { return Ok(()) };
    check_pod(kind, pod, scope)
}

fn check_statefulset(object: &Value, scope: &Scope) -> Result<(), String> {
    let spec = object.get("spec");
    let selector = spec.and_then(|s| s.get("selector"));
    if is_set(selector.and_then(|s| s.get("matchExpressions"))) {
        return Err("StatefulSet spec.selector uses matchExpressions; it selects by matchLabels only".into());
    }
    if selector.and_then(|s| s.pointer(&format!("/matchLabels/{}", NODE_LABEL.replace('/', "~1")))).and_then(Value::as_str)
        != Some(scope.node_name.as_str())
    {
        return Err(format!("StatefulSet spec.selector must select {}={}", NODE_LABEL, scope.node_name));
    }
    if let Some(r) = spec.and_then(|s| s.get("replicas")).and_then(Value::as_i64)
        && r > 1
    {
        return Err(format!("StatefulSet sets spec.replicas: {r}; a node runs one pod"));
    }
    if let Some(service) = spec.and_then(|s| s.get("serviceName")).and_then(Value::as_str)
        && service != scope.node_name
    {
        return Err(format!("StatefulSet spec.serviceName is {service}; it must be the node's Service {}", scope.node_name));
    }
    Ok(())
}

fn check_job(object: &Value) -> Result<(), String> {
    let spec = object.get("spec");
    if is_set(spec.and_then(|s| s.get("manualSelector"))) || is_set(spec.and_then(|s| s.get("selector"))) {
        return Err("Job sets its own spec.selector (manualSelector); the API server generates it".into());
    }
    if let Some(m) = spec.and_then(|s| s.get("managedBy")).and_then(Value::as_str)
        && m != "kubernetes.io/job-controller"
    {
        return Err(format!("Job sets spec.managedBy: {m}; only the Job controller runs a node's Job"));
    }
    for field in ["parallelism", "completions"] {
        if let Some(n) = spec.and_then(|s| s.get(field)).and_then(Value::as_i64)
            && n > 1
        {
            return Err(format!("Job sets spec.{field}: {n}; a bootstrap runs one pod"));
        }
    }
    Ok(())
}

fn check_template_metadata(kind: &str, meta: &Value, scope: &Scope) -> Result<(), String> {
    let labels = meta.get("labels").and_then(Value::as_object);
    let own = labels.and_then(|l| l.get(NODE_LABEL)).and_then(Value::as_str);
    if own != Some(scope.node_name.as_str()) {
        return Err(format!("{kind} pod template must carry the label {}={}", NODE_LABEL, scope.node_name));
    }
    for (key, value) in labels.into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        let allowed = key == NODE_LABEL
            || (key == COMPONENT_LABEL.0 && value == COMPONENT_LABEL.1)
            || (scope.pod_labels.get(key).is_some_and(|v| v == value) && scope.identity_label(key, value, "").is_none_or(|ok| ok));
        if !allowed {
            return Err(format!(
                "{kind} pod template label {key}={value} is not one of the node's spec.podLabels (a pod label could join another node's Service)"
            ));
        }
    }
    for field in ["finalizers", "ownerReferences", "name", "generateName", "namespace"] {
        if is_set(meta.get(field)) {
            return Err(format!("{kind} pod template sets metadata.{field}; its pods get theirs from the {kind}"));
        }
    }
    check_annotations(&format!("{kind} pod template"), meta)
}

fn check_pod(kind: &str, pod: &Value, scope: &Scope) -> Result<(), String> {
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if pod.get(field) == Some(&Value::Bool(true)) {
            return Err(format!("{kind} pod template sets {field}: true"));
        }
    }
    if let Some(s) = pod.get("schedulerName").and_then(Value::as_str)
        && s != "default-scheduler"
    {
        return Err(format!("{kind} pod template sets schedulerName {s}; placement is the default scheduler's"));
    }
    for (field, why) in [
        ("nodeName", "placement is the scheduler's"),
        ("priorityClassName", "a priority class could preempt other workloads"),
        ("priority", "a priority could preempt other workloads"),
        ("runtimeClassName", "the runtime is the cluster's"),
        ("imagePullSecrets", "pull credentials are Secrets"),
        ("resourceClaims", "devices are claimed by the platform"),
        ("ephemeralContainers", "pods are not debugged through templates"),
    ] {
        if is_set(pod.get(field)) {
            return Err(format!("{kind} pod template sets {field}; {why}"));
        }
    }
    // Anything not named above and not on the allow-list.
    // (A field left empty — null, false, [] — sets nothing, as a serializer may write it.)
    if let Some(field) =
        pod.as_object().into_iter().flatten().find(|(k, v)| !ALLOWED_POD_FIELDS.contains(&k.as_str()) && is_set(Some(v))).map(|(k, _)| k)
    {
        return Err(format!("{kind} pod template sets {field}, which a module's pod may not set"));
    }
    let own_hostname = format!("{}-0", scope.node_name);
    if let Some(h) = pod.get("hostname").and_then(Value::as_str)
        && h != own_hostname
    {
        return Err(format!("{kind} pod template sets hostname {h}; only {own_hostname} is the node's"));
    }
    if let Some(d) = pod.get("subdomain").and_then(Value::as_str)
        && d != scope.node_name
    {
        return Err(format!("{kind} pod template sets subdomain {d}; only {} is the node's", scope.node_name));
    }
    if let Some(g) = pod.get("terminationGracePeriodSeconds").and_then(Value::as_i64)
        && g > MAX_GRACE_SECONDS
    {
        return Err(format!(
            "{kind} pod template sets terminationGracePeriodSeconds {g}; at most {MAX_GRACE_SECONDS} (a pod that ignores SIGTERM would stay Terminating)"
        ));
    }
    check_placement(kind, pod, &scope.placement)?;
    if is_set(pod.pointer("/securityContext/sysctls")) {
        return Err(format!("{kind} pod template sets sysctls"));
    }
    if let Some(what) = security_context_escape(pod.get("securityContext"), true) {
        return Err(format!("{kind} pod template {what}"));
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
    for list in ["containers", "initContainers"] {
        for c in pod.get(list).and_then(Value::as_array).into_iter().flatten() {
            check_container(kind, c)?;
        }
    }
    Ok(())
}

/// Tolerations, `nodeSelector` and affinity must stay within the platform's placement.
/// Whether the pod names a node pool it must run on (the values are checked separately).
fn placed_on_a_pool(pod: &Value) -> bool {
    if pod.pointer("/nodeSelector").and_then(|s| s.get(NODE_POOL_LABEL)).is_some() {
        return true;
    }
    let terms =
        pod.pointer("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms").and_then(Value::as_array);
    terms.is_some_and(|terms| {
        !terms.is_empty()
            && terms.iter().all(|t| {
                t.get("matchExpressions")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .any(|e| e.get("key").and_then(Value::as_str) == Some(NODE_POOL_LABEL))
            })
    })
}

fn check_placement(kind: &str, pod: &Value, placement: &Placement) -> Result<(), String> {
    check_placement_values(kind, pod, placement)?;
    if placement.require_pool && !placed_on_a_pool(pod) {
        return Err(format!(
            "{kind} pod template is not placed on the platform's node pool (nodeSelector or required node affinity on {NODE_POOL_LABEL})"
        ));
    }
    Ok(())
}

/// Tolerations, node selectors and node affinity name only the platform's pools and taint.
fn check_placement_values(kind: &str, pod: &Value, placement: &Placement) -> Result<(), String> {
    for t in pod.get("tolerations").and_then(Value::as_array).into_iter().flatten() {
        let key = t.get("key").and_then(Value::as_str).unwrap_or("");
        if !placement.toleration_keys.contains(key) {
            let shown = if key.is_empty() { "every taint (no key)".to_string() } else { format!("the taint {key}") };
            return Err(format!("{kind} pod template tolerates {shown}; only the platform's toleration key may be tolerated"));
        }
    }
    let allowed = |key: &str, value: &str| placement.node_labels.get(key).is_some_and(|v| v.contains(value));
    for (key, value) in pod.get("nodeSelector").and_then(Value::as_object).into_iter().flatten() {
        let value = value.as_str().unwrap_or_default();
        if !allowed(key, value) {
            return Err(format!("{kind} pod template nodeSelector {key}={value} is not the platform's node pool"));
        }
    }
    let Some(affinity) = pod.get("affinity") else { return Ok(()) };
    for field in ["podAffinity", "podAntiAffinity"] {
        if is_set(affinity.get(field)) {
            return Err(format!("{kind} pod template sets affinity.{field}; placement is the platform's"));
        }
    }
    let node = affinity.get("nodeAffinity");
    let required = node.and_then(|n| n.pointer("/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms"));
    let preferred = node.and_then(|n| n.get("preferredDuringSchedulingIgnoredDuringExecution")).and_then(Value::as_array);
    let terms =
        required.and_then(Value::as_array).into_iter().flatten().chain(preferred.into_iter().flatten().filter_map(|p| p.get("preference")));
    for term in terms {
        if is_set(term.get("matchFields")) {
            return Err(format!("{kind} pod template node affinity uses matchFields; placement is by the platform's node pool"));
        }
        for e in term.get("matchExpressions").and_then(Value::as_array).into_iter().flatten() {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
            let values: Vec<&str> = e.get("values").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            if op != "In" || values.is_empty() || !values.iter().all(|v| allowed(key, v)) {
                return Err(format!(
                    "{kind} pod template node affinity {key} {op} [{}] is not the platform's node pool",
                    values.join(", ")
                ));
            }
        }
    }
    Ok(())
}

/// What a pod (`pod = true`) or container security context sets that escapes the node's sandbox.
fn security_context_escape(sc: Option<&Value>, pod: bool) -> Option<String> {
    let sc = sc?;
    for (field, what) in [("seccompProfile", "seccomp"), ("appArmorProfile", "AppArmor")] {
        if let Some(t) = sc.pointer(&format!("/{field}/type")).and_then(Value::as_str)
            && t != "RuntimeDefault"
        {
            return Some(format!("sets a {t} {what} profile (only RuntimeDefault)"));
        }
    }
    if is_set(sc.get("seLinuxOptions")) {
        return Some("sets seLinuxOptions".into());
    }
    if sc.pointer("/windowsOptions/hostProcess") == Some(&Value::Bool(true)) {
        return Some("sets windowsOptions.hostProcess".into());
    }
    for field in ["gmsaCredentialSpec", "gmsaCredentialSpecName", "runAsUserName"] {
        if is_set(sc.pointer(&format!("/windowsOptions/{field}"))) {
            return Some(format!("sets windowsOptions.{field} (a Windows identity of its own)"));
        }
    }
    for field in ["runAsUser", "runAsGroup"].into_iter().chain(pod.then_some("fsGroup")) {
        if sc.get(field).and_then(Value::as_i64) == Some(0) {
            return Some(format!("sets {field}: 0 (root)"));
        }
    }
    if pod && sc.get("supplementalGroups").and_then(Value::as_array).is_some_and(|g| g.iter().any(|g| g.as_i64() == Some(0))) {
        return Some("adds supplemental group 0 (root)".into());
    }
    if sc.get("runAsNonRoot") == Some(&Value::Bool(false)) {
        return Some("sets runAsNonRoot: false".into());
    }
    if !pod {
        if sc.get("procMount").and_then(Value::as_str) == Some("Unmasked") {
            return Some("sets procMount: Unmasked".into());
        }
        if sc.get("privileged") == Some(&Value::Bool(true)) {
            return Some("is privileged".into());
        }
        if sc.get("allowPrivilegeEscalation") == Some(&Value::Bool(true)) {
            return Some("allows privilege escalation".into());
        }
        if is_set(sc.pointer("/capabilities/add")) {
            return Some("adds Linux capabilities".into());
        }
    }
    None
}

fn check_container(kind: &str, c: &Value) -> Result<(), String> {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
    let refuse = |what: &str| Err(format!("{kind} container `{name}` {what}"));
    for part in ["requests", "limits"] {
        if let Some(name) =
            c.pointer(&format!("/resources/{part}")).and_then(Value::as_object).and_then(|m| m.keys().find(|k| !allowed_resource(k)))
        {
            return refuse(&format!(
                "asks for resource {name}; only cpu, memory, ephemeral-storage and hugepages (devices are the platform's)"
            ));
        }
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(g) = c.pointer(&format!("/{probe}/terminationGracePeriodSeconds")).and_then(Value::as_i64)
            && g > MAX_GRACE_SECONDS
        {
            return refuse(&format!("sets {probe}.terminationGracePeriodSeconds {g}; at most {MAX_GRACE_SECONDS}"));
        }
    }
    // A probe or lifecycle hook with a `host` is a request the kubelet makes to any address
    // (the node's network, the cloud's metadata service), not to the pod.
    for handler in ["livenessProbe", "readinessProbe", "startupProbe", "lifecycle/postStart", "lifecycle/preStop"] {
        for action in ["httpGet", "tcpSocket"] {
            if c.pointer(&format!("/{handler}/{action}/host")).is_some_and(|h| !h.is_null()) {
                return refuse(&format!(
                    "sends its {} {action} to a host of its own; probes and hooks reach the pod only",
                    handler.replace('/', ".")
                ));
            }
        }
    }
    for env in c.get("env").and_then(Value::as_array).into_iter().flatten() {
        if env.pointer("/valueFrom/secretKeyRef").is_some() {
            return refuse(&format!("reads a Secret into env {}", env.get("name").and_then(Value::as_str).unwrap_or("?")));
        }
    }
    if c.get("envFrom").and_then(Value::as_array).into_iter().flatten().any(|e| e.get("secretRef").is_some()) {
        return refuse("reads a Secret through envFrom");
    }
    if c.get("ports").and_then(Value::as_array).into_iter().flatten().any(|p| p.get("hostPort").is_some_and(|h| !h.is_null())) {
        return refuse("binds a hostPort");
    }
    if c.get("volumeMounts")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|m| m.get("mountPropagation").and_then(Value::as_str) == Some("Bidirectional"))
    {
        return refuse("mounts with Bidirectional propagation");
    }
    if let Some(what) = security_context_escape(c.get("securityContext"), false) {
        return refuse(&what);
    }
    if let Some(field) = c
        .as_object()
        .into_iter()
        .flatten()
        .find(|(k, v)| !ALLOWED_CONTAINER_FIELDS.contains(&k.as_str()) && is_set(Some(v)))
        .map(|(k, _)| k)
    {
        return refuse(&format!("sets {field}, which a module's container may not set"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::PlatformConfig;
    use serde_json::json;

    fn platform() -> PlatformConfig {
        let mut p = PlatformConfig::for_local();
        p.node_pool = Some("sei-nodes".into());
        p.toleration_key = Some("sei.io/pool".into());
        p
    }

    fn scope() -> Scope {
        Scope::for_node("sei", "rpc")
            .with_service_account(Some("sei-node".into()))
            .with_pod_labels([("team".to_string(), "infra".to_string())].into())
            .with_placement(Placement::for_platform(&platform()))
    }

    fn sts(pod: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "rpc"}, "spec": {
            "replicas": 1, "serviceName": "rpc", "selector": {"matchLabels": {"sei.io/node": "rpc"}},
            "template": {"metadata": {"labels": {"sei.io/node": "rpc", "team": "infra"}, "annotations": {"karpenter.sh/do-not-disrupt": "true"}}, "spec": pod}
        }})
    }

    fn job(pod: Value) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "rpc-bootstrap"}, "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": {"sei.io/node": "rpc", "sei.io/component": "bootstrap"}}, "spec": pod}
        }})
    }

    fn reference_pod() -> Value {
        json!({
            "shareProcessNamespace": true,
            "serviceAccountName": "sei-node",
            "tolerations": [{"key": "sei.io/pool", "operator": "Equal", "value": "sei-nodes", "effect": "NoSchedule"}],
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "karpenter.sh/nodepool", "operator": "In", "values": ["sei-nodes"]}]}
            ]}}},
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-rpc"}}, {"name": "tmp", "emptyDir": {}}],
            "initContainers": [{"name": "seid-init", "volumeMounts": [{"name": "data", "mountPath": "/sei"}]}],
            "containers": [
                {"name": "seid", "env": [{"name": "TMPDIR", "value": "/sei/tmp"}], "ports": [{"containerPort": 26656}],
                 "readinessProbe": {"httpGet": {"path": "/status", "port": 26657}}, "resources": {"requests": {"cpu": "1"}}},
                {"name": "sei-sidecar", "env": [{"name": "SEI_CHAIN_ID", "value": "pacific-1"}]}
            ]
        })
    }

    /// Set `value` at `pointer` (creating objects on the way) in a copy of `base`.
    fn with(base: &Value, pointer: &str, value: Value) -> Value {
        let mut v = base.clone();
        let mut cur = &mut v;
        let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
        for (i, p) in parts.iter().enumerate() {
            let last = i + 1 == parts.len();
            cur = match cur {
                Value::Array(a) => {
                    let idx: usize = p.parse().unwrap();
                    if last {
                        a[idx] = value;
                        return v;
                    }
                    &mut a[idx]
                }
                other => {
                    if last {
                        other[*p] = value;
                        return v;
                    }
                    if other.get(*p).is_none() {
                        other[*p] = json!({});
                    }
                    &mut other[*p]
                }
            };
        }
        v
    }

    #[test]
    fn the_reference_statefulset_passes() {
        assert_eq!(check_object("StatefulSet", &sts(reference_pod()), &scope()), Ok(()));
        let mut bootstrap = reference_pod();
        bootstrap["hostname"] = json!("rpc-0");
        bootstrap["subdomain"] = json!("rpc");
        bootstrap["restartPolicy"] = json!("Never");
        assert_eq!(check_object("Job", &job(bootstrap), &scope()), Ok(()));
        assert_eq!(check_object("ConfigMap", &json!({"spec": {"template": {"spec": {"hostNetwork": true}}}}), &scope()), Ok(()));
        // A serializer that writes every field: empty ones outside the allow-list set nothing.
        let mut verbose = reference_pod();
        verbose["overhead"] = Value::Null;
        verbose["hostAliases"] = json!([]);
        verbose["containers"][0]["volumeDevices"] = Value::Null;
        assert_eq!(check_object("StatefulSet", &sts(verbose), &scope()), Ok(()));
    }

    #[test]
    fn each_escape_is_refused_with_its_field() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/volumes/0", json!({"name": "creds", "secret": {"secretName": "aws"}}), "volume `creds` is of type secret"),
            ("/volumes/0", json!({"name": "root", "hostPath": {"path": "/"}}), "volume `root` is of type hostPath"),
            ("/volumes/0", json!({"name": "tok", "projected": {"sources": []}}), "is of type projected"),
            ("/volumes/0", json!({"name": "eph", "ephemeral": {"volumeClaimTemplate": {}}}), "is of type ephemeral"),
            ("/volumes/0", json!({"name": "csi", "csi": {"driver": "secrets-store.csi.k8s.io"}}), "is of type csi"),
            ("/hostNetwork", json!(true), "sets hostNetwork: true"),
            ("/hostPID", json!(true), "sets hostPID: true"),
            ("/hostIPC", json!(true), "sets hostIPC: true"),
            ("/serviceAccountName", json!("cluster-admin-sa"), "uses service account `cluster-admin-sa` (allowed: default, sei-node)"),
            ("/serviceAccount", json!("cluster-admin-sa"), "uses service account `cluster-admin-sa`"),
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
            ("/securityContext", json!({"seccompProfile": {"type": "Unconfined"}}), "sets a Unconfined seccomp profile"),
            (
                "/securityContext",
                json!({"seccompProfile": {"type": "Localhost", "localhostProfile": "allow-all.json"}}),
                "sets a Localhost seccomp profile",
            ),
            ("/containers/0/securityContext", json!({"appArmorProfile": {"type": "Unconfined"}}), "sets a Unconfined AppArmor profile"),
            ("/containers/0/securityContext", json!({"procMount": "Unmasked"}), "procMount: Unmasked"),
            ("/containers/0/ports/0", json!({"containerPort": 26656, "hostPort": 26656}), "binds a hostPort"),
            // Issue #9: the gaps found by hostile modules.
            ("/priorityClassName", json!("system-node-critical"), "sets priorityClassName"),
            ("/priority", json!(2000001000), "sets priority"),
            ("/imagePullSecrets", json!([{"name": "registry-creds"}]), "sets imagePullSecrets; pull credentials are Secrets"),
            ("/securityContext", json!({"seLinuxOptions": {"type": "spc_t"}}), "pod template sets seLinuxOptions"),
            ("/containers/0/securityContext", json!({"seLinuxOptions": {"type": "spc_t"}}), "`seid` sets seLinuxOptions"),
            ("/securityContext", json!({"runAsUser": 0}), "pod template sets runAsUser: 0 (root)"),
            ("/containers/0/securityContext", json!({"runAsUser": 0}), "`seid` sets runAsUser: 0 (root)"),
            ("/initContainers/0/securityContext", json!({"runAsGroup": 0}), "sets runAsGroup: 0 (root)"),
            ("/securityContext", json!({"fsGroup": 0}), "sets fsGroup: 0 (root)"),
            ("/securityContext", json!({"supplementalGroups": [1000, 0]}), "adds supplemental group 0"),
            ("/securityContext", json!({"runAsNonRoot": false}), "sets runAsNonRoot: false"),
            ("/securityContext", json!({"windowsOptions": {"hostProcess": true}}), "sets windowsOptions.hostProcess"),
            ("/schedulerName", json!("my-scheduler"), "sets schedulerName"),
            ("/runtimeClassName", json!("runc-unsandboxed"), "sets runtimeClassName"),
            ("/resourceClaims", json!([{"name": "gpu", "resourceClaimName": "other"}]), "sets resourceClaims"),
            ("/ephemeralContainers", json!([{"name": "debug", "image": "busybox"}]), "sets ephemeralContainers"),
            ("/hostname", json!("validator-0-0"), "sets hostname validator-0-0; only rpc-0"),
            ("/subdomain", json!("validator-0"), "sets subdomain validator-0; only rpc"),
            (
                "/containers/0/volumeMounts",
                json!([{"name": "data", "mountPath": "/sei", "mountPropagation": "Bidirectional"}]),
                "Bidirectional propagation",
            ),
            // Issue #14: an allow-list, not a deny-list, of pod and container fields.
            ("/hostAliases", json!([{"ip": "10.0.0.1", "hostnames": ["sidecar"]}]), "sets hostAliases, which a module's pod may not set"),
            ("/schedulingGates", json!([{"name": "never"}]), "sets schedulingGates"),
            ("/overhead", json!({"cpu": "64"}), "sets overhead"),
            ("/someFieldOfAFutureRelease", json!(true), "sets someFieldOfAFutureRelease"),
            ("/containers/0/volumeDevices", json!([{"name": "data", "devicePath": "/dev/x"}]), "`seid` sets volumeDevices"),
            ("/initContainers/0/futureField", json!(1), "`seid-init` sets futureField"),
            (
                "/containers/0/livenessProbe",
                json!({"httpGet": {"host": "169.254.169.254", "path": "/latest/meta-data/", "port": 80}}),
                "sends its livenessProbe httpGet to a host of its own",
            ),
            ("/containers/1/readinessProbe", json!({"tcpSocket": {"host": "10.0.0.1", "port": 6443}}), "readinessProbe tcpSocket"),
            (
                "/containers/0/lifecycle",
                json!({"preStop": {"httpGet": {"host": "kubernetes.default", "port": 443}}}),
                "lifecycle.preStop httpGet",
            ),
        ];
        for (pointer, value, want) in cases {
            let pod = with(&reference_pod(), pointer, value);
            let err = check_object("StatefulSet", &sts(pod.clone()), &scope()).expect_err(pointer);
            assert!(err.contains(want), "{pointer}: {err}");
            assert!(check_object("Job", &job(pod), &scope()).is_err(), "{pointer} in a Job");
        }
        let with_templates = with(&sts(reference_pod()), "/spec/volumeClaimTemplates", json!([{"metadata": {"name": "extra"}}]));
        assert!(check_object("StatefulSet", &with_templates, &scope()).unwrap_err().contains("volumeClaimTemplates"));
        let mut annotated = sts(reference_pod());
        annotated["spec"]["template"]["metadata"]["annotations"]["container.apparmor.security.beta.kubernetes.io/seid"] =
            json!("unconfined");
        assert!(check_object("StatefulSet", &annotated, &scope()).unwrap_err().contains("annotation container.apparmor"));
        for (pointer, value, want) in [
            ("/spec/template/metadata/finalizers", json!(["x.io/never"]), "pod template sets metadata.finalizers"),
            ("/spec/template/metadata/ownerReferences", json!([{"kind": "Node", "name": "n", "uid": "x"}]), "metadata.ownerReferences"),
            ("/spec/template/metadata/namespace", json!("kube-system"), "metadata.namespace"),
            (
                "/metadata/annotations",
                json!({"external-dns.alpha.kubernetes.io/hostname": "victim.example.com"}),
                "annotation external-dns",
            ),
            ("/spec/template/metadata/annotations", json!({"sidecar.istio.io/inject": "true"}), "annotation sidecar.istio.io/inject"),
            (
                "/spec/template/metadata/annotations",
                json!({"container.seccomp.security.alpha.kubernetes.io/seid": "unconfined"}),
                "annotation container.seccomp",
            ),
        ] {
            let err = check_object("StatefulSet", &with(&sts(reference_pod()), pointer, value), &scope()).expect_err(pointer);
            assert!(err.contains(want), "{pointer}: {err}");
        }
        let restart = with(
            &sts(reference_pod()),
            "/spec/template/metadata/annotations",
            json!({"kubectl.kubernetes.io/restartedAt": "2026-11-30T00:00:00Z", "sei.io/x": "y"}),
        );
        assert_eq!(check_object("StatefulSet", &restart, &scope()), Ok(()));
        assert_eq!(
            check_object("StatefulSet", &sts(with(&reference_pod(), "/schedulerName", json!("default-scheduler"))), &scope()),
            Ok(())
        );
        let finalized = with(&json!({"metadata": {"name": "rpc"}}), "/metadata/finalizers", json!(["example.com/never"]));
        assert!(check_object("ConfigMap", &finalized, &scope()).unwrap_err().contains("metadata.finalizers"));
    }

    #[test]
    fn placement_is_the_platforms() {
        let cases: Vec<(&str, Value, &str)> = vec![
            ("/tolerations", json!([{"operator": "Exists"}]), "tolerates every taint (no key)"),
            (
                "/tolerations",
                json!([{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]),
                "tolerates the taint node-role.kubernetes.io/control-plane",
            ),
            (
                "/nodeSelector",
                json!({"node-role.kubernetes.io/control-plane": ""}),
                "nodeSelector node-role.kubernetes.io/control-plane= is not the platform's node pool",
            ),
            ("/nodeSelector", json!({"karpenter.sh/nodepool": "validators"}), "nodeSelector karpenter.sh/nodepool=validators"),
            (
                "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0",
                json!({"key": "karpenter.sh/nodepool", "operator": "NotIn", "values": ["sei-nodes"]}),
                "karpenter.sh/nodepool NotIn [sei-nodes]",
            ),
            (
                "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchExpressions/0",
                json!({"key": "kubernetes.io/hostname", "operator": "In", "values": ["cp-1"]}),
                "kubernetes.io/hostname In [cp-1]",
            ),
            (
                "/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms/0/matchFields",
                json!([{"key": "metadata.name", "operator": "In", "values": ["cp-1"]}]),
                "uses matchFields",
            ),
            (
                "/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution",
                json!([{"weight": 100, "preference": {"matchExpressions": [{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}]}}]),
                "node-role.kubernetes.io/control-plane Exists",
            ),
            (
                "/affinity/podAffinity",
                json!({"requiredDuringSchedulingIgnoredDuringExecution": [{"labelSelector": {"matchLabels": {"sei.io/node": "validator-0"}}, "topologyKey": "kubernetes.io/hostname"}]}),
                "sets affinity.podAffinity",
            ),
        ];
        for (pointer, value, want) in cases {
            let err = check_object("StatefulSet", &sts(with(&reference_pod(), pointer, value)), &scope()).expect_err(pointer);
            assert!(err.contains(want), "{pointer}: {err}");
        }
        // Without a platform placement, no toleration or node selector is allowed at all.
        let bare = Scope::for_node("sei", "rpc")
            .with_service_account(Some("sei-node".into()))
            .with_pod_labels([("team".to_string(), "infra".to_string())].into());
        assert!(check_object("StatefulSet", &sts(reference_pod()), &bare).unwrap_err().contains("tolerates the taint sei.io/pool"));
        let mut archive = platform();
        archive.node_pool_archive = Some("sei-archive".into());
        let archive_scope = scope().with_placement(Placement::for_platform(&archive));
        let on_archive = with(&reference_pod(), "/nodeSelector", json!({"karpenter.sh/nodepool": "sei-archive"}));
        assert_eq!(check_object("StatefulSet", &sts(on_archive), &archive_scope), Ok(()));
    }

    #[test]
    fn labels_cannot_join_another_nodes_service() {
        let labelled = |labels: Value| {
            let mut s = sts(reference_pod());
            s["spec"]["template"]["metadata"]["labels"] = labels;
            check_object("StatefulSet", &s, &scope())
        };
        assert!(labelled(json!({"sei.io/node": "validator-0"})).unwrap_err().contains("must carry the label sei.io/node=rpc"));
        assert!(labelled(json!({"team": "infra"})).unwrap_err().contains("must carry the label sei.io/node=rpc"));
        assert!(
            labelled(json!({"sei.io/node": "rpc", "app": "rpc-gateway"}))
                .unwrap_err()
                .contains("label app=rpc-gateway is not one of the node's spec.podLabels")
        );
        assert!(labelled(json!({"sei.io/node": "rpc", "team": "payments"})).unwrap_err().contains("label team=payments"));
        assert_eq!(labelled(json!({"sei.io/node": "rpc", "team": "infra"})), Ok(()));
        let mut no_meta = sts(reference_pod());
        no_meta["spec"]["template"].as_object_mut().unwrap().remove("metadata");
        assert!(check_object("StatefulSet", &no_meta, &scope()).unwrap_err().contains("has no labels"));
        for (pointer, value, want) in [
            ("/spec/selector", json!({"matchLabels": {"sei.io/node": "validator-0"}}), "must select sei.io/node=rpc"),
            (
                "/spec/selector",
                json!({"matchLabels": {"sei.io/node": "rpc"}, "matchExpressions": [{"key": "x", "operator": "Exists"}]}),
                "matchExpressions",
            ),
            ("/spec/replicas", json!(50), "spec.replicas: 50"),
            ("/spec/serviceName", json!("validator-0"), "spec.serviceName is validator-0"),
        ] {
            let err = check_object("StatefulSet", &with(&sts(reference_pod()), pointer, value), &scope()).expect_err(pointer);
            assert!(err.contains(want), "{pointer}: {err}");
        }
        let mut bootstrap = reference_pod();
        bootstrap["hostname"] = json!("rpc-0");
        for (pointer, value, want) in [
            ("/spec/manualSelector", json!(true), "manualSelector"),
            ("/spec/selector", json!({"matchLabels": {"sei.io/node": "validator-0"}}), "its own spec.selector"),
            ("/spec/parallelism", json!(20), "spec.parallelism: 20"),
            ("/spec/completions", json!(20), "spec.completions: 20"),
            ("/spec/managedBy", json!("kueue.x-k8s.io/multikueue"), "spec.managedBy"),
        ] {
            let err = check_object("Job", &with(&job(bootstrap.clone()), pointer, value), &scope()).expect_err(pointer);
            assert!(err.contains(want), "{pointer}: {err}");
        }
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
        for (spec, want) in [
            (
                json!({"dataSource": {"kind": "PersistentVolumeClaim", "name": "data-validator-0"}}),
                "spec.dataSource (cloning another volume)",
            ),
            (json!({"dataSourceRef": {"kind": "VolumeSnapshot", "name": "s"}}), "spec.dataSourceRef"),
            (json!({"volumeName": "pv-of-validator-0"}), "spec.volumeName (binding an existing volume)"),
            (json!({"selector": {"matchLabels": {"node": "validator-0"}}}), "spec.selector (binding an existing volume)"),
        ] {
            let err = check_object("PersistentVolumeClaim", &pvc(spec.clone()), &scope()).unwrap_err();
            assert!(err.contains(want), "{spec}: {err}");
        }
    }

    // ---- Review of the allow-lists (hostile cases; each asserts the safe verdict) ----

    #[test]
    fn review_case_variants_and_set_looking_empty_values_are_refused() {
        // Kubernetes decodes case-sensitively, but a key in another case must not slip past a
        // check that looks for the exact key: the allow-list refuses it.
        let cases: Vec<(&str, Value)> = vec![
            ("/HostNetwork", json!(true)),
            ("/hostnetwork", json!(true)),
            ("/NodeName", json!("cp-1")),
            ("/containers/0/VolumeDevices", json!([{"name": "data", "devicePath": "/dev/x"}])),
            // Values `is_set` must still see as set: 0, "", {}, [{}].
            ("/priority", json!(0)),
            ("/nodeName", json!("")),
            ("/overhead", json!({})),
            ("/preemptionPolicy", json!("Never")),
            ("/hostAliases", json!([{}])),
            ("/schedulingGates", json!([{"name": ""}])),
            ("/resources", json!({"limits": {"cpu": "64"}})),
            ("/hostnameOverride", json!("cp-1")),
            ("/containers/0/volumeDevices", json!([{}])),
            ("/affinity/podAntiAffinity", json!({})),
            ("/securityContext/seLinuxOptions", json!({})),
            ("/securityContext/sysctls", json!([{}])),
        ];
        for (pointer, value) in cases {
            let pod = with(&reference_pod(), pointer, value);
            assert!(check_object("StatefulSet", &sts(pod.clone()), &scope()).is_err(), "{pointer} in a StatefulSet");
            assert!(check_object("Job", &job(pod), &scope()).is_err(), "{pointer} in a Job");
        }
    }

    #[test]
    fn review_probe_and_hook_hosts_are_refused_everywhere() {
        let metadata = json!({"host": "169.254.169.254", "port": 80, "path": "/latest/meta-data/"});
        let cases: Vec<(&str, Value)> = vec![
            ("/containers/0/startupProbe", json!({"httpGet": metadata})),
            ("/containers/0/lifecycle", json!({"postStart": {"tcpSocket": {"host": "10.0.0.1", "port": 6443}}})),
            ("/containers/0/lifecycle", json!({"preStop": {"tcpSocket": {"host": "10.0.0.1", "port": 6443}}})),
            ("/containers/0/lifecycle", json!({"postStart": {"httpGet": metadata}})),
            // A native sidecar (init container with restartPolicy Always) may have probes.
            ("/initContainers/0", json!({"name": "sidecar", "restartPolicy": "Always", "livenessProbe": {"httpGet": metadata}})),
            (
                "/initContainers/0",
                json!({"name": "sidecar", "restartPolicy": "Always", "readinessProbe": {"tcpSocket": {"host": "10.0.0.1", "port": 22}}}),
            ),
            ("/initContainers/0/lifecycle", json!({"preStop": {"httpGet": metadata}})),
            // A host that is not a string is still a host of its own.
            ("/containers/0/livenessProbe", json!({"httpGet": {"host": ["169.254.169.254"], "port": 80}})),
        ];
        for (pointer, value) in cases {
            let pod = with(&reference_pod(), pointer, value);
            let err = check_object("StatefulSet", &sts(pod.clone()), &scope()).expect_err(pointer);
            assert!(err.contains("to a host of its own"), "{pointer}: {err}");
            assert!(check_object("Job", &job(pod), &scope()).is_err(), "{pointer} in a Job");
        }
        // What reaches only the pod stays allowed: grpc (no host field), a Host header (the
        // kubelet still connects to the pod IP), exec and sleep hooks, a native sidecar.
        for (pointer, value) in [
            ("/containers/0/livenessProbe", json!({"grpc": {"port": 9090, "service": "x"}})),
            (
                "/containers/0/livenessProbe",
                json!({"httpGet": {"port": 80, "httpHeaders": [{"name": "Host", "value": "169.254.169.254"}]}}),
            ),
            (
                "/containers/0/lifecycle",
                json!({"preStop": {"exec": {"command": ["sh", "-c", "true"]}}, "postStart": {"sleep": {"seconds": 1}}}),
            ),
            (
                "/initContainers/0",
                json!({"name": "sidecar", "restartPolicy": "Always", "resizePolicy": [{"resourceName": "cpu", "restartPolicy": "NotRequired"}]}),
            ),
            ("/containers/0/livenessProbe", json!({"httpGet": {"host": null, "port": 80}})),
        ] {
            let pod = with(&reference_pod(), pointer, value);
            assert_eq!(check_object("StatefulSet", &sts(pod), &scope()), Ok(()), "{pointer}");
        }
    }

    #[test]
    fn review_termination_grace_period_cannot_pin_pods_forever() {
        // Like metadata.finalizers: a pod whose container ignores SIGTERM (or sleeps in preStop)
        // stays Terminating for the whole grace period, and keeps the namespace from being
        // deleted, a node from draining and the StatefulSet from rolling.
        for (pointer, value) in [
            ("/terminationGracePeriodSeconds", json!(i64::MAX)),
            ("/terminationGracePeriodSeconds", json!(10 * 365 * 24 * 3600)),
            ("/containers/0/livenessProbe", json!({"exec": {"command": ["false"]}, "terminationGracePeriodSeconds": 315_360_000})),
        ] {
            let pod = with(&reference_pod(), pointer, value);
            assert!(check_object("StatefulSet", &sts(pod), &scope()).is_err(), "{pointer}");
        }
    }

    #[test]
    fn review_extended_resources_do_not_claim_devices() {
        // resourceClaims are refused ("devices are claimed by the platform"); a device plugin's
        // extended resource in a container's resources reaches devices the same way.
        for limits in [json!({"nvidia.com/gpu": "8"}), json!({"devices.kubevirt.io/kvm": "1"}), json!({"smarter-devices/fuse": "1"})] {
            let pod = with(&reference_pod(), "/containers/0/resources/limits", limits.clone());
            assert!(check_object("StatefulSet", &sts(pod), &scope()).is_err(), "{limits}");
        }
    }

    #[test]
    fn review_windows_pods_cannot_take_a_domain_identity() {
        // `os` is allow-listed; a Windows pod's gMSA credential spec runs it as an Active
        // Directory account (another identity, like a foreign service account).
        for (pointer, value) in [
            ("/securityContext/windowsOptions", json!({"gmsaCredentialSpecName": "domain-admin"})),
            ("/containers/0/securityContext/windowsOptions", json!({"gmsaCredentialSpec": "{\"ActiveDirectoryConfig\":{}}"})),
        ] {
            let pod = with(&with(&reference_pod(), "/os", json!({"name": "windows"})), pointer, value);
            assert!(check_object("StatefulSet", &sts(pod), &scope()).is_err(), "{pointer}");
        }
    }
}
