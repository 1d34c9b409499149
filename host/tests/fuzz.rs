//! Property tests over hostile input (issue #14): the planner on arbitrary SeiNode JSON, the pod
//! policy on arbitrary objects, and the host's reading of what modules return. Each property runs
//! `PROPTEST_CASES` cases (256 by default: a few seconds in CI); `make fuzz` runs many more and
//! `make fuzz-for MINUTES=N` runs them with fresh seeds for a while (`BENCHMARKS.md` records the
//! longest run). A failure prints its minimal case; fixed, it becomes a unit test next to the
//! code.
//!
//! - `the_planner_never_panics`: any JSON that deserializes as a SeiNode gets a plan, idles, or a
//!   typed error; mutations of valid nodes (any value at any path) likewise;
//! - `the_pod_policy_never_panics`: any object of any kind gets a verdict;
//! - `a_forbidden_field_is_denied_whatever_surrounds_it`: a valid StatefulSet with one forbidden
//!   setting (privileged, host network, a hostPath volume, a Secret env reference, image pull
//!   secrets, another node's claim) planted anywhere it applies, plus arbitrary extra fields, is
//!   always refused;
//! - `a_node_whose_status_holds_its_plan_never_gets_another`: whatever else changed in the spec,
//!   a node with an active plan in its status resumes it (the crash-recovery path);
//! - `the_guard_never_allows_a_call_outside_the_scope`: any verb, kind, namespace and name: an
//!   allowed call is in the node's namespace, of an allowed kind, and a write is of one of the
//!   node's own objects;
//! - `a_group_task_never_reaches_beyond_its_members`: a SeiNodeDeployment's task, whatever kinds
//!   it was granted, reaches only SeiNodes in its namespace, a named one only if a member, writes
//!   only named members, and calls only members' sidecars;
//! - `a_forbidden_field_is_denied_whatever_surrounds_it` also plants fields outside the pod and
//!   container allow-lists (`hostAliases`, a probe's `host`, a field no release has yet);
//! - the host's reading of a module's step (output, checkpoint, messages) is a property test
//!   beside the code: `sandbox::run::properties::step_outcomes_are_bounded_and_escaped`.

use proptest::prelude::*;
use sei_operator::api::seinode::SeiNode;
use sei_operator::platform::PlatformConfig;
use sei_operator::policy::guard::{CapabilityGuard, CapabilityName, DEFAULT_KINDS, Grants, KubeCall, KubeVerb, WRITABLE_KINDS};
use sei_operator::policy::pod_policy::check_object;
use sei_operator::policy::scope::Scope;
use serde_json::{Value, json};

/// Any JSON value, with strings that include control characters, escapes and long runs.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| json!(f)),
        "[a-zA-Z0-9.:/_-]{0,24}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
        Just(Value::String("\u{1b}[31m\u{202e}\\x00".into())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Valid SeiNodes of every mode: the seeds that mutations start from.
fn seeds() -> Vec<Value> {
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    let modes = [
        json!({"fullNode": {}, "peers": peers}),
        json!({"fullNode": {"snapshot": {"stateSync": {}}}, "peers": peers}),
        json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}, "bootstrapImage": "seid:boot"}}, "peers": peers}),
        json!({"archive": {}, "peers": peers}),
        json!({"replayer": {"snapshot": {"s3": {"targetHeight": 5}}, "resultExport": {"canonicalRpc": "http://rpc"}}, "peers": peers}),
        json!({"validator": {"genesisCeremony": {"chainId": "c", "stakingAmount": "1", "accountBalance": "2", "index": 0}}}),
        json!({"validator": {}, "peers": [{"label": {"selector": {"sei.io/chain": "pacific-1"}}}]}),
    ];
    modes
        .into_iter()
        .map(|mode| {
            let mut spec = json!({"chainId": "pacific-1", "image": "seid:v1", "overrides": {"evm.http_port": "8545"}});
            for (k, v) in mode.as_object().unwrap() {
                spec[k] = v.clone();
            }
            json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode",
                   "metadata": {"name": "rpc", "namespace": "sei", "uid": "u-1", "generation": 1}, "spec": spec})
        })
        .collect()
}

/// `base` with `value` at the path `keys` picks (objects by key, arrays by index, both modulo
/// their size; a scalar on the way is replaced).
fn mutate(mut base: Value, keys: &[usize], value: Value) -> Value {
    set_at(&mut base, keys, value);
    base
}

fn set_at(cur: &mut Value, keys: &[usize], value: Value) {
    let descend = match cur {
        Value::Object(m) => !m.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => false,
    };
    let Some((k, rest)) = keys.split_first().filter(|_| descend) else {
        *cur = value;
        return;
    };
    let child = match cur {
        Value::Object(m) => {
            let key = m.keys().nth(k % m.len()).cloned().unwrap_or_default();
            m.get_mut(&key)
        }
        Value::Array(a) => {
            let i = k % a.len();
            a.get_mut(i)
        }
        _ => None,
    };
    if let Some(child) = child {
        set_at(child, rest, value);
    }
}

fn plan(v: &Value) {
    let Ok(node) = serde_json::from_value::<SeiNode>(v.clone()) else { return };
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    // A plan, idle, resume, or a typed error: anything but a panic.
    let _ = sei_operator::node::planner::resolve_plan(&node, &Default::default(), &PlatformConfig::for_local(), "p", &now);
}

fn scope() -> Scope {
    Scope::for_node("sei", "rpc").with_pod_labels([("team".to_string(), "infra".to_string())].into())
}

fn statefulset(pod: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "rpc"}, "spec": {
        "replicas": 1, "serviceName": "rpc", "selector": {"matchLabels": {"sei.io/node": "rpc"}},
        "template": {"metadata": {"labels": {"sei.io/node": "rpc", "team": "infra"}}, "spec": pod}
    }})
}

fn valid_pod() -> Value {
    json!({
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-rpc"}}, {"name": "tmp", "emptyDir": {}}],
        "containers": [
            {"name": "seid", "image": "seid:v1", "env": [{"name": "TMPDIR", "value": "/sei/tmp"}]},
            {"name": "sei-sidecar", "image": "seictl:v1"}
        ]
    })
}

/// One forbidden setting, as (pointer under the pod spec, value).
fn forbidden() -> impl Strategy<Value = (String, Value)> {
    let container = prop_oneof![Just("containers/0"), Just("containers/1")];
    prop_oneof![
        Just(("/hostNetwork".to_string(), json!(true))),
        Just(("/hostPID".to_string(), json!(true))),
        Just(("/imagePullSecrets".to_string(), json!([{"name": "theirs"}]))),
        Just(("/volumes/1".to_string(), json!({"name": "tmp", "hostPath": {"path": "/"}}))),
        Just(("/volumes/0".to_string(), json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-other"}}))),
        container.clone().prop_map(|c| (format!("/{c}/securityContext"), json!({"privileged": true}))),
        container.clone().prop_map(|c| (format!("/{c}/securityContext"), json!({"capabilities": {"add": ["SYS_ADMIN"]}}))),
        container
            .clone()
            .prop_map(|c| (format!("/{c}/env"), json!([{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]))),
        Just(("/hostAliases".to_string(), json!([{"ip": "10.0.0.1", "hostnames": ["x"]}]))),
        "[a-z]{1,8}Future".prop_map(|k| (format!("/{k}"), json!(true))),
        container.clone().prop_map(|c| (format!("/{c}/livenessProbe"), json!({"httpGet": {"host": "169.254.169.254", "port": 80}}))),
        container.prop_map(|c| (format!("/{c}/volumeDevices"), json!([{"name": "data", "devicePath": "/dev/sda"}]))),
    ]
}

/// Set `value` at the JSON pointer `at` (its parent exists in the valid pod).
fn set(mut v: Value, at: &str, value: Value) -> Value {
    let (parent, last) = at.rsplit_once('/').unwrap_or(("", at));
    if let Some(p) = v.pointer_mut(parent) {
        match p {
            Value::Object(m) => {
                m.insert(last.to_string(), value);
            }
            Value::Array(a) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < a.len()
                {
                    a[i] = value;
                }
            }
            _ => {}
        }
    }
    v
}

fn verb() -> impl Strategy<Value = KubeVerb> {
    prop_oneof![Just(KubeVerb::Get), Just(KubeVerb::List), Just(KubeVerb::Create), Just(KubeVerb::Apply), Just(KubeVerb::Delete)]
}

/// Names near the node's own (its objects' names, other nodes', invalid ones) and arbitrary ones.
fn name() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        prop_oneof![Just("rpc"), Just("data-rpc"), Just("rpc-bootstrap"), Just("rpc2"), Just("data-other"), Just("RPC"), Just("rpc/..")]
            .prop_map(|s| Some(s.to_string())),
        any::<String>().prop_map(Some),
    ]
}

proptest! {
    #[test]
    fn a_node_whose_status_holds_its_plan_never_gets_another(seed in 0usize..7, keys in prop::collection::vec(any::<usize>(), 1..4), value in arb_json()) {
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
        let base: SeiNode = serde_json::from_value(seeds()[seed].clone()).unwrap();
        let Ok(sei_operator::node::planner::PlanDecision::New { plan, .. }) =
            sei_operator::node::planner::resolve_plan(&base, &Default::default(), &PlatformConfig::for_local(), "p", &now)
        else {
            return Err(TestCaseError::fail("a seed plans"));
        };
        let mut with_plan = serde_json::to_value(&base).unwrap();
        with_plan["status"] = json!({"phase": "Initializing", "plan": plan});
        let unchanged: SeiNode = serde_json::from_value(with_plan.clone()).unwrap();
        let resumed = sei_operator::node::planner::resolve_plan(&unchanged, &Default::default(), &PlatformConfig::for_local(), "q", &now);
        prop_assert!(matches!(resumed, Ok(sei_operator::node::planner::PlanDecision::Resume)), "{resumed:?}");
        // Anything in the spec may change under the persisted plan (not the status).
        let mut spec = with_plan["spec"].clone();
        spec = mutate(spec, &keys, value);
        with_plan["spec"] = spec;
        let Ok(node) = serde_json::from_value::<SeiNode>(with_plan) else { return Ok(()) };
        let decision = sei_operator::node::planner::resolve_plan(&node, &Default::default(), &PlatformConfig::for_local(), "q", &now);
        prop_assert!(
            matches!(decision, Ok(sei_operator::node::planner::PlanDecision::Resume) | Err(_)),
            "an active plan was replaced: {decision:?}"
        );
    }

    #[test]
    fn the_guard_never_allows_a_call_outside_the_scope(
        verb in verb(),
        kind in prop_oneof![
            prop::sample::select(DEFAULT_KINDS.to_vec()).prop_map(|(a, k)| (a.to_string(), k.to_string())),
            Just(("v1".to_string(), "Secret".to_string())),
            Just(("rbac.authorization.k8s.io/v1".to_string(), "ClusterRoleBinding".to_string())),
            ("[a-z/0-9]{0,12}", "[A-Za-z]{0,12}"),
        ],
        namespace in prop_oneof![Just(None), Just(Some("sei".to_string())), Just(Some("kube-system".to_string())), any::<String>().prop_map(Some)],
        name in name(),
    ) {
        let grants = Grants::new([CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete, CapabilityName::Sidecar]);
        let guard = CapabilityGuard::new(std::sync::Arc::new(grants), scope());
        let call = KubeCall { verb, api_version: &kind.0, kind: &kind.1, namespace: namespace.as_deref(), name: name.as_deref() };
        if guard.check_kube(&call).is_ok() {
            prop_assert!(namespace.as_deref().is_none_or(|ns| ns == "sei"), "another namespace: {call:?}");
            prop_assert!(DEFAULT_KINDS.contains(&(kind.0.as_str(), kind.1.as_str())), "a kind outside the grants: {call:?}");
            if matches!(verb, KubeVerb::Create | KubeVerb::Apply | KubeVerb::Delete) {
                prop_assert!(WRITABLE_KINDS.contains(&(kind.0.as_str(), kind.1.as_str())), "a read-only kind written: {call:?}");
                let own = scope().writable_name(&kind.1);
                prop_assert_eq!(name.as_deref(), Some(own.as_str()), "another object written: {:?}", call);
            }
        }
    }

    #[test]
    fn a_group_task_never_reaches_beyond_its_members(
        verb in verb(),
        kind in prop_oneof![
            Just(("sei.io/v1alpha1".to_string(), "SeiNode".to_string())),
            Just(("sei.io/v1alpha1".to_string(), "SeiNodeDeployment".to_string())),
            prop::sample::select(DEFAULT_KINDS.to_vec()).prop_map(|(a, k)| (a.to_string(), k.to_string())),
            ("[a-z./0-9]{0,16}", "[A-Za-z]{0,12}"),
        ],
        namespace in prop_oneof![Just(None), Just(Some("sei".to_string())), Just(Some("other".to_string())), any::<String>().prop_map(Some)],
        name in prop_oneof![
            Just(None),
            prop_oneof![Just("net-0"), Just("net-1"), Just("net"), Just("net-2"), Just("rpc"), Just("net-0-exporter")].prop_map(|s| Some(s.to_string())),
            any::<String>().prop_map(Some),
        ],
        sidecar_of in prop_oneof![Just("net-0".to_string()), Just("net-9".to_string()), Just("net".to_string()), any::<String>()],
    ) {
        let members: std::collections::BTreeSet<String> = ["net-0".to_string(), "net-1".to_string()].into();
        let scope = Scope::for_group("sei", "net", "g-uid", members.clone(), Default::default(), Default::default());
        let grants = Grants::new([CapabilityName::KubeRead, CapabilityName::KubeWrite, CapabilityName::KubeDelete, CapabilityName::Sidecar])
            .with_kinds(&[("sei.io/v1alpha1", "SeiNode"), ("sei.io/v1alpha1", "SeiNodeDeployment"), ("v1", "ConfigMap"), ("v1", "Secret")]);
        let guard = CapabilityGuard::new(std::sync::Arc::new(grants), scope);
        let call = KubeCall { verb, api_version: &kind.0, kind: &kind.1, namespace: namespace.as_deref(), name: name.as_deref() };
        if guard.check_kube(&call).is_ok() {
            prop_assert!(namespace.as_deref().is_none_or(|ns| ns == "sei"), "another namespace: {call:?}");
            prop_assert_eq!((kind.0.as_str(), kind.1.as_str()), ("sei.io/v1alpha1", "SeiNode"), "not a SeiNode: {:?}", call);
            prop_assert!(name.as_ref().is_none_or(|n| members.contains(n)), "not a member: {call:?}");
            if matches!(verb, KubeVerb::Create | KubeVerb::Apply | KubeVerb::Delete) {
                prop_assert!(name.is_some(), "an unnamed write: {call:?}");
            }
        }
        if guard.check_member_sidecar("submit-task", &sidecar_of).is_ok() {
            prop_assert!(members.contains(&sidecar_of), "the sidecar of a non-member: {sidecar_of}");
        }
        prop_assert!(guard.check_sidecar("status").is_err(), "a group has no sidecar of its own");
    }

    #[test]
    fn the_planner_never_panics(v in arb_json(), seed in 0usize..7, keys in prop::collection::vec(any::<usize>(), 1..5), value in arb_json()) {
        plan(&v);
        plan(&mutate(seeds()[seed].clone(), &keys, value));
    }

    #[test]
    fn the_pod_policy_never_panics(
        kind in prop_oneof![
            Just("StatefulSet".to_string()),
            Just("Job".to_string()),
            Just("Service".to_string()),
            Just("PersistentVolumeClaim".to_string()),
            "[A-Za-z]{0,12}"
        ],
        object in arb_json(),
        keys in prop::collection::vec(any::<usize>(), 1..6),
        value in arb_json(),
    ) {
        let _ = check_object(&kind, &object, &scope());
        let _ = check_object("StatefulSet", &mutate(statefulset(valid_pod()), &keys, value), &scope());
    }

    #[test]
    fn a_forbidden_field_is_denied_whatever_surrounds_it(
        (at, bad) in forbidden(),
        extra_key in "[a-z]{1,10}",
        extra in arb_json(),
    ) {
        prop_assert!(check_object("StatefulSet", &statefulset(valid_pod()), &scope()).is_ok(), "the base is valid");
        // Arbitrary extra fields around it (annotations and labels aside: those have rules of their own).
        let mut pod = set(valid_pod(), &at, bad.clone());
        if let Value::Object(m) = &mut pod && !m.contains_key(&extra_key) {
            m.insert(extra_key, extra);
        }
        let verdict = check_object("StatefulSet", &statefulset(pod), &scope());
        prop_assert!(verdict.is_err(), "{at} = {bad} was allowed");
    }
}

/// The seeds are valid nodes that plan: the mutations start from real plans, not from nothing.
#[test]
fn every_seed_plans() {
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now());
    for seed in seeds() {
        let node: SeiNode = serde_json::from_value(seed.clone()).unwrap();
        let decision = sei_operator::node::planner::resolve_plan(&node, &Default::default(), &PlatformConfig::for_local(), "p", &now);
        assert!(matches!(decision, Ok(sei_operator::node::planner::PlanDecision::New { .. })), "{seed}: {decision:?}");
    }
}
