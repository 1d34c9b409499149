//! The SeiNode CRD on the real API server: valid manifests are accepted, invalid ones are
//! rejected with a message naming the rule, and the status subresource holds a plan.

use kube::api::{Api, Patch, PatchParams, PostParams};
use sei_operator::node::crd::SeiNode;
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
