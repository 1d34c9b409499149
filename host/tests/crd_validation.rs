//! The SeiNode CRD on the real API server: valid manifests are accepted, invalid ones are
//! rejected with a message naming the rule, and the status subresource holds a plan.

use kube::api::{Api, Patch, PatchParams, PostParams};
use sei_operator::api::seinode::SeiNode;
use sei_testkit::TestCluster;
use serde_json::{Value, json};

fn manifest(name: &str, spec: Value) -> SeiNode {
    let mut s = json!({"chainId": "pacific-1", "image": "seid:v1"});
    for (k, v) in spec.as_object().unwrap() {
        s[k] = v.clone();
    }
    serde_json::from_value(json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNode", "metadata": {"name": name}, "spec": s})).unwrap()
}

async fn api() -> (Api<SeiNode>, sei_testkit::TestNamespace) {
    let cluster = TestCluster::shared();
    cluster.install_crds(&[sei_operator::crds::seinode()]).await.unwrap();
    let ns = cluster.namespace("crd").await;
    (Api::namespaced(cluster.client().await, ns.name()), ns)
}

async fn rejection(api: &Api<SeiNode>, node: &SeiNode) -> String {
    match api.create(&PostParams::default(), node).await {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 422, "{s:?}");
            s.message
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn valid_manifests_of_every_mode_are_accepted() {
    let (api, _ns) = api().await;
    let peers = json!([{"static": {"addresses": ["abc@1.2.3.4:26656"]}}]);
    for (name, spec) in [
        ("full", json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}}}, "peers": peers})),
        ("state-sync", json!({"fullNode": {"snapshot": {"stateSync": {}, "trustPeriod": "9999h0m0s"}}})),
        ("archive", json!({"archive": {"snapshotGeneration": {"keepRecent": 2}}})),
        ("replayer", json!({"replayer": {"snapshot": {"s3": {"targetHeight": 5}}}, "peers": peers})),
        ("bootstrap", json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 100}, "bootstrapImage": "seid:boot"}}})),
        ("validator", json!({"validator": {"genesisCeremony": {"chainId": "c", "stakingAmount": "1", "accountBalance": "2", "index": 0}}})),
    ] {
        api.create(&PostParams::default(), &manifest(name, spec)).await.unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_the_rule_message() {
    let (api, _ns) = api().await;
    let cases = [
        ("no-mode", json!({}), "exactly one mode must be set: fullNode, archive, replayer or validator"),
        ("two-modes", json!({"fullNode": {}, "archive": {}}), "exactly one mode must be set"),
        (
            "replayer-no-peers",
            json!({"replayer": {"snapshot": {"s3": {"targetHeight": 5}}}}),
            "a replayer needs at least one peer source in spec.peers",
        ),
        (
            "s3-and-state-sync",
            json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 5}, "stateSync": {}}}}),
            "a snapshot source sets exactly one of s3 or stateSync",
        ),
        (
            "bootstrap-without-s3",
            json!({"fullNode": {"snapshot": {"stateSync": {}, "bootstrapImage": "x"}}}),
            "snapshot.bootstrapImage needs snapshot.s3",
        ),
        (
            "two-peer-kinds",
            json!({"fullNode": {}, "peers": [{"static": {"addresses": ["a@b:1"]}, "label": {"selector": {"a": "b"}}}]}),
            "a peer source sets exactly one of",
        ),
        ("zero-height", json!({"fullNode": {"snapshot": {"s3": {"targetHeight": 0}}}}), "spec.fullNode.snapshot.s3.targetHeight"),
    ];
    for (name, spec, want) in cases {
        let message = rejection(&api, &manifest(name, spec)).await;
        assert!(message.contains(want), "{name}: {message}");
    }
    let mut empty_chain = manifest("empty-chain", json!({"fullNode": {}}));
    empty_chain.spec.chain_id = String::new();
    let message = rejection(&api, &empty_chain).await;
    assert!(message.contains("spec.chainId"), "{message}");
}

#[tokio::test]
async fn status_holds_a_plan_with_opaque_params() {
    let (api, _ns) = api().await;
    let node = api.create(&PostParams::default(), &manifest("rpc", json!({"fullNode": {}}))).await.unwrap();
    let decision = sei_operator::node::planner::resolve_plan(
        &node,
        &Default::default(),
        &sei_operator::platform::PlatformConfig::for_local(),
        "plan-1",
        &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    )
    .unwrap();
    let sei_operator::node::planner::PlanDecision::New { plan, phase, .. } = decision else { panic!("{decision:?}") };
    let patch = json!({"status": {"phase": phase, "plan": plan, "planProgress": "0/7", "currentTask": "ensure-data-pvc"}});
    api.patch_status("rpc", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let stored = api.get_status("rpc").await.unwrap().status.unwrap();
    assert_eq!(stored.plan.as_ref().unwrap().tasks.len(), 7);
    assert_eq!(
        stored.plan.unwrap().tasks[0].params,
        Some(json!({"nodeName": "rpc", "namespace": node.metadata.namespace.unwrap(), "storageSize": "2000Gi"}))
    );
    assert_eq!(stored.plan_progress.as_deref(), Some("0/7"));
}

mod groups {
    //! The SeiNodeDeployment CRD: every CEL rule and immutability rule, on the real API server.
    use super::*;
    use sei_operator::api::seinodedeployment::SeiNodeDeployment;

    async fn groups() -> (Api<SeiNodeDeployment>, sei_testkit::TestNamespace) {
        let cluster = TestCluster::shared();
        cluster.install_crds(&[sei_operator::crds::seinodedeployment()]).await.unwrap();
        let ns = cluster.namespace("crd-group").await;
        (Api::namespaced(cluster.client().await, ns.name()), ns)
    }

    fn group(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "sei.io/v1alpha1", "kind": "SeiNodeDeployment", "metadata": {"name": name}, "spec": spec})
    }

    fn genesis_spec() -> Value {
        json!({
            "replicas": 4,
            "template": {"spec": {"chainId": "net-1", "image": "seid:v1", "validator": {}}},
            "genesis": {"chainId": "net-1"},
            "updateStrategy": {"type": "InPlace"}
        })
    }

    async fn create(api: &Api<SeiNodeDeployment>, manifest: Value) -> Result<SeiNodeDeployment, kube::Error> {
        let g: SeiNodeDeployment = serde_json::from_value(manifest).unwrap();
        api.create(&PostParams::default(), &g).await
    }

    fn message_of(r: Result<SeiNodeDeployment, kube::Error>) -> String {
        match r {
            Err(kube::Error::Api(s)) => {
                assert_eq!(s.code, 422, "{s:?}");
                s.message
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn valid_groups_are_accepted_with_the_references_defaults() {
        let (api, _ns) = groups().await;
        let g = create(&api, group("net", genesis_spec())).await.unwrap();
        let genesis = g.spec.genesis.unwrap();
        assert_eq!(genesis.staking_amount, "10000000usei");
        assert_eq!(genesis.max_ceremony_duration, "15m");
        let rpc = json!({"replicas": 3, "template": {"spec": {"chainId": "pacific-1", "image": "seid:v1", "fullNode": {}}},
                         "updateStrategy": {"type": "BlueGreen"}, "deletionPolicy": "Retain"});
        create(&api, group("rpc", rpc)).await.unwrap();
        let fork = json!({"replicas": 1, "template": {"spec": {"chainId": "pacific-1", "image": "seid:v1", "validator": {}}},
                          "updateStrategy": {"type": "HardFork", "hardFork": {"haltHeight": 100}}});
        create(&api, group("val", fork)).await.unwrap();
    }

    #[tokio::test]
    async fn invalid_groups_are_rejected_with_the_rule_message() {
        let (api, _ns) = groups().await;
        let with = |patch: Value| {
            let mut s = genesis_spec();
            json_patch(&mut s, patch);
            s
        };
        let cases = [
            ("too-many", with(json!({"replicas": 101})), "spec.replicas"),
            (
                "hard-fork-no-height",
                with(json!({"updateStrategy": {"type": "HardFork"}})),
                "a HardFork update needs hardFork.haltHeight >= 1",
            ),
            (
                "double-sign",
                json!({"replicas": 2, "template": {"spec": {"chainId": "c", "image": "i", "validator": {}}}, "updateStrategy": {"type": "InPlace"}}),
                "a validator group without a genesis ceremony runs exactly 1 replica",
            ),
            ("blue-green-validators", with(json!({"updateStrategy": {"type": "BlueGreen"}})), "a validator group cannot use BlueGreen"),
            (
                "genesis-full-nodes",
                with(json!({"template": {"spec": {"chainId": "net-1", "image": "i", "fullNode": {}, "validator": null}}})),
                "spec.genesis needs a validator template",
            ),
            (
                "other-chain",
                with(json!({"template": {"spec": {"chainId": "net-2"}}})),
                "template.spec.chainId must equal spec.genesis.chainId",
            ),
            (
                "ceremony-in-template",
                with(
                    json!({"template": {"spec": {"validator": {"genesisCeremony": {"chainId": "net-1", "stakingAmount": "1", "accountBalance": "1"}}}}}),
                ),
                "template.spec.validator.genesisCeremony is set by the group",
            ),
            ("short-ceremony", with(json!({"genesis": {"maxCeremonyDuration": "30s"}})), "genesis.maxCeremonyDuration must be at least 1m"),
            ("bad-duration", with(json!({"genesis": {"maxCeremonyDuration": "soon"}})), "spec.genesis.maxCeremonyDuration"),
            (
                "bad-chain-id",
                with(json!({"genesis": {"chainId": "Net_1"}, "template": {"spec": {"chainId": "Net_1"}}})),
                "spec.genesis.chainId",
            ),
            ("template-mode", with(json!({"template": {"spec": {"validator": null}}})), "exactly one mode must be set"),
        ];
        for (name, spec, want) in cases {
            let message = message_of(create(&api, group(name, spec)).await);
            assert!(message.contains(want), "{name}: {message}");
        }
        for name in ["net-g3", "net-exporter"] {
            let message = message_of(create(&api, group(name, genesis_spec())).await);
            assert!(message.contains("may not end in -g<number> or -exporter"), "{name}: {message}");
        }
        let long = "n".repeat(41);
        let message = message_of(create(&api, group(&long, genesis_spec())).await);
        assert!(message.contains("is at most 40 characters"), "{message}");
    }

    /// Merge `patch` into `target` (JSON merge patch: null removes).
    fn json_patch(target: &mut Value, patch: Value) {
        match patch {
            Value::Object(map) => {
                if !target.is_object() {
                    *target = json!({});
                }
                for (k, v) in map {
                    if v.is_null() {
                        target.as_object_mut().unwrap().remove(&k);
                    } else {
                        json_patch(target.as_object_mut().unwrap().entry(k).or_insert(Value::Null), v);
                    }
                }
            }
            other => *target = other,
        }
    }

    #[tokio::test]
    async fn genesis_and_ceremony_replicas_are_immutable() {
        let (api, _ns) = groups().await;
        create(&api, group("net", genesis_spec())).await.unwrap();
        let pp = PatchParams::default();
        let change = |patch: Value| {
            let api = api.clone();
            let pp = pp.clone();
            async move { api.patch("net", &pp, &Patch::Merge(&json!({"spec": patch}))).await }
        };
        let message = message_of(change(json!({"genesis": {"chainId": "net-2"}, "template": {"spec": {"chainId": "net-2"}}})).await);
        assert!(message.contains("spec.genesis is immutable"), "{message}");
        let message = message_of(change(json!({"genesis": null})).await);
        assert!(message.contains("spec.genesis cannot be added or removed"), "{message}");
        // Before the ceremony starts, the validator count may still change.
        change(json!({"replicas": 3})).await.unwrap();
        let started = json!({"status": {"ceremonyStartedAt": "2026-12-01T00:00:00Z"}});
        api.patch_status("net", &pp, &Patch::Merge(&started)).await.unwrap();
        let message = message_of(change(json!({"replicas": 5})).await);
        assert!(message.contains("spec.replicas cannot change once the genesis ceremony has started"), "{message}");
        // Everything else still changes (an image rollout).
        change(json!({"template": {"spec": {"image": "seid:v2"}}})).await.unwrap();
        // A group created without genesis cannot get one.
        let rpc = json!({"replicas": 1, "template": {"spec": {"chainId": "net-1", "image": "seid:v1", "validator": {}}},
                         "updateStrategy": {"type": "InPlace"}});
        create(&api, group("solo", rpc)).await.unwrap();
        let message = message_of(api.patch("solo", &pp, &Patch::Merge(&json!({"spec": {"genesis": {"chainId": "net-1"}}}))).await);
        assert!(message.contains("spec.genesis cannot be added or removed"), "{message}");
    }
}
