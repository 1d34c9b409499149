//! The params of every task a group (SeiNodeDeployment) plan holds, with the wire keys of the
//! reference's group task catalogue. Like the node tasks' params: the group planner serializes
//! these types and the group modules deserialize the same types.
//!
//! Beyond the reference (each key is absent when unused, so a reference-shaped plan reads the
//! same): `assemble-*` carry the extra genesis `accounts`; `update-node-specs` carries the
//! `image` (and `sidecarImage`) it rolls out, so a batch applies the template the plan was built
//! from, not whatever the group says when the batch runs.
//!
//! Invariants (unit tests below): every group task type has exactly one params type
//! (`every_group_task_type_round_trips`) and the reference's wire shape
//! (`group_wire_keys_match_the_reference`).

use serde::{Deserialize, Serialize};

/// The namespace of the sidecar sub-task ids a group task submits to its members (the
/// reference's).
pub const SUB_TASK_NAMESPACE: uuid::Uuid = uuid::Uuid::from_u128(0xd4a7e1f3_8b29_4c6d_a5e0_2f1d3c4b5a6e);

/// The id under which group task `parent_task_id` submits a sidecar task of `kind` to `node`:
/// UUID v5 over `<node>/<kind>/<parentTaskID>`, so a repeated step re-submits the same id.
pub fn sub_task_id(node: &str, kind: &str, parent_task_id: &str) -> String {
    uuid::Uuid::new_v5(&SUB_TASK_NAMESPACE, format!("{node}/{kind}/{parent_task_id}").as_bytes()).to_string()
}

/// Every task type a group plan holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GroupTaskType {
    CreateExporter,
    AwaitExporterRunning,
    SubmitExportState,
    TeardownExporter,
    AssembleAndUploadGenesis,
    AssembleGenesisFork,
    CollectAndSetPeers,
    AwaitNodesRunning,
    UpdateNodeSpecs,
    AwaitSpecUpdate,
    MarkNodesReady,
    CreateEntrantNodes,
    SubmitHaltSignal,
    AwaitNodesAtHeight,
    AwaitNodesCaughtUp,
    SwitchTraffic,
    TeardownNodes,
}

impl GroupTaskType {
    pub const ALL: [GroupTaskType; 17] = [
        GroupTaskType::CreateExporter,
        GroupTaskType::AwaitExporterRunning,
        GroupTaskType::SubmitExportState,
        GroupTaskType::TeardownExporter,
        GroupTaskType::AssembleAndUploadGenesis,
        GroupTaskType::AssembleGenesisFork,
        GroupTaskType::CollectAndSetPeers,
        GroupTaskType::AwaitNodesRunning,
        GroupTaskType::UpdateNodeSpecs,
        GroupTaskType::AwaitSpecUpdate,
        GroupTaskType::MarkNodesReady,
        GroupTaskType::CreateEntrantNodes,
        GroupTaskType::SubmitHaltSignal,
        GroupTaskType::AwaitNodesAtHeight,
        GroupTaskType::AwaitNodesCaughtUp,
        GroupTaskType::SwitchTraffic,
        GroupTaskType::TeardownNodes,
    ];

    /// The task type's name in plans and in modules' `describe`.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupTaskType::CreateExporter => "create-exporter",
            GroupTaskType::AwaitExporterRunning => "await-exporter-running",
            GroupTaskType::SubmitExportState => "submit-export-state",
            GroupTaskType::TeardownExporter => "teardown-exporter",
            GroupTaskType::AssembleAndUploadGenesis => "assemble-and-upload-genesis",
            GroupTaskType::AssembleGenesisFork => "assemble-genesis-fork",
            GroupTaskType::CollectAndSetPeers => "collect-and-set-peers",
            GroupTaskType::AwaitNodesRunning => "await-nodes-running",
            GroupTaskType::UpdateNodeSpecs => "update-node-specs",
            GroupTaskType::AwaitSpecUpdate => "await-spec-update",
            GroupTaskType::MarkNodesReady => "mark-nodes-ready",
            GroupTaskType::CreateEntrantNodes => "create-entrant-nodes",
            GroupTaskType::SubmitHaltSignal => "submit-halt-signal",
            GroupTaskType::AwaitNodesAtHeight => "await-nodes-at-height",
            GroupTaskType::AwaitNodesCaughtUp => "await-nodes-caught-up",
            GroupTaskType::SwitchTraffic => "switch-traffic",
            GroupTaskType::TeardownNodes => "teardown-nodes",
        }
    }

    pub fn parse(name: &str) -> Option<GroupTaskType> {
        GroupTaskType::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl std::fmt::Display for GroupTaskType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `create-exporter`: a full node of the source chain that restores to the export height.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateExporter {
    pub group_name: String,
    pub exporter_name: String,
    pub namespace: String,
    pub source_chain_id: String,
    pub source_image: String,
    pub export_height: i64,
}

/// `await-exporter-running`, `teardown-exporter`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Exporter {
    pub exporter_name: String,
    pub namespace: String,
}

/// `submit-export-state`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitExportState {
    pub exporter_name: String,
    pub namespace: String,
    pub export_height: i64,
    pub source_chain_id: String,
}

/// One validator of the genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisNode {
    pub name: String,
}

/// A genesis account beyond the validators'.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GenesisAccount {
    pub address: String,
    pub balance: String,
}

/// `assemble-and-upload-genesis`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssembleGenesis {
    pub account_balance: String,
    pub namespace: String,
    pub nodes: Vec<GenesisNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<GenesisAccount>,
}

/// `assemble-genesis-fork`: the same, from the source chain's exported state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssembleGenesisFork {
    pub account_balance: String,
    pub namespace: String,
    pub nodes: Vec<GenesisNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accounts: Vec<GenesisAccount>,
    pub source_chain_id: String,
    pub chain_id: String,
}

/// `collect-and-set-peers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupNodes {
    pub group_name: String,
    pub namespace: String,
    pub node_names: Vec<String>,
}

/// `await-nodes-running`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwaitNodesRunning {
    pub group_name: String,
    pub namespace: String,
    pub expected: i32,
    pub node_names: Vec<String>,
}

/// `update-node-specs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateNodeSpecs {
    pub group_name: String,
    pub namespace: String,
    pub node_names: Vec<String>,
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_image: Option<String>,
}

/// `await-spec-update`, `mark-nodes-ready`, `await-nodes-caught-up`, `teardown-nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nodes {
    pub namespace: String,
    pub node_names: Vec<String>,
}

/// `create-entrant-nodes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateEntrantNodes {
    pub group_name: String,
    pub namespace: String,
    pub entrant_revision: String,
    pub node_names: Vec<String>,
}

/// `submit-halt-signal`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubmitHaltSignal {
    pub namespace: String,
    pub node_names: Vec<String>,
    pub halt_height: i64,
}

/// `await-nodes-at-height`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AwaitNodesAtHeight {
    pub namespace: String,
    pub node_names: Vec<String>,
    pub target_height: i64,
}

/// `switch-traffic`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SwitchTraffic {
    pub group_name: String,
    pub namespace: String,
    pub entrant_revision: String,
}

/// The params of one group task, by task type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupTaskParams {
    CreateExporter(CreateExporter),
    AwaitExporterRunning(Exporter),
    SubmitExportState(SubmitExportState),
    TeardownExporter(Exporter),
    AssembleAndUploadGenesis(AssembleGenesis),
    AssembleGenesisFork(AssembleGenesisFork),
    CollectAndSetPeers(GroupNodes),
    AwaitNodesRunning(AwaitNodesRunning),
    UpdateNodeSpecs(UpdateNodeSpecs),
    AwaitSpecUpdate(Nodes),
    MarkNodesReady(Nodes),
    CreateEntrantNodes(CreateEntrantNodes),
    SubmitHaltSignal(SubmitHaltSignal),
    AwaitNodesAtHeight(AwaitNodesAtHeight),
    AwaitNodesCaughtUp(Nodes),
    SwitchTraffic(SwitchTraffic),
    TeardownNodes(Nodes),
}

impl GroupTaskParams {
    pub fn task_type(&self) -> GroupTaskType {
        use GroupTaskParams as P;
        use GroupTaskType as T;
        match self {
            P::CreateExporter(_) => T::CreateExporter,
            P::AwaitExporterRunning(_) => T::AwaitExporterRunning,
            P::SubmitExportState(_) => T::SubmitExportState,
            P::TeardownExporter(_) => T::TeardownExporter,
            P::AssembleAndUploadGenesis(_) => T::AssembleAndUploadGenesis,
            P::AssembleGenesisFork(_) => T::AssembleGenesisFork,
            P::CollectAndSetPeers(_) => T::CollectAndSetPeers,
            P::AwaitNodesRunning(_) => T::AwaitNodesRunning,
            P::UpdateNodeSpecs(_) => T::UpdateNodeSpecs,
            P::AwaitSpecUpdate(_) => T::AwaitSpecUpdate,
            P::MarkNodesReady(_) => T::MarkNodesReady,
            P::CreateEntrantNodes(_) => T::CreateEntrantNodes,
            P::SubmitHaltSignal(_) => T::SubmitHaltSignal,
            P::AwaitNodesAtHeight(_) => T::AwaitNodesAtHeight,
            P::AwaitNodesCaughtUp(_) => T::AwaitNodesCaughtUp,
            P::SwitchTraffic(_) => T::SwitchTraffic,
            P::TeardownNodes(_) => T::TeardownNodes,
        }
    }

    /// The params as they are stored in the plan and handed to the module.
    pub fn to_json(&self) -> serde_json::Value {
        use GroupTaskParams as P;
        match self {
            P::CreateExporter(p) => crate::json(p),
            P::AwaitExporterRunning(p) | P::TeardownExporter(p) => crate::json(p),
            P::SubmitExportState(p) => crate::json(p),
            P::AssembleAndUploadGenesis(p) => crate::json(p),
            P::AssembleGenesisFork(p) => crate::json(p),
            P::CollectAndSetPeers(p) => crate::json(p),
            P::AwaitNodesRunning(p) => crate::json(p),
            P::UpdateNodeSpecs(p) => crate::json(p),
            P::AwaitSpecUpdate(p) | P::MarkNodesReady(p) | P::AwaitNodesCaughtUp(p) | P::TeardownNodes(p) => crate::json(p),
            P::CreateEntrantNodes(p) => crate::json(p),
            P::SubmitHaltSignal(p) => crate::json(p),
            P::AwaitNodesAtHeight(p) => crate::json(p),
            P::SwitchTraffic(p) => crate::json(p),
        }
    }

    /// The params of `task_type` from their JSON (what a module reads).
    pub fn from_json(task_type: GroupTaskType, value: &serde_json::Value) -> Result<GroupTaskParams, serde_json::Error> {
        use GroupTaskParams as P;
        use GroupTaskType as T;
        let v = value;
        Ok(match task_type {
            T::CreateExporter => P::CreateExporter(crate::parse(v)?),
            T::AwaitExporterRunning => P::AwaitExporterRunning(crate::parse(v)?),
            T::SubmitExportState => P::SubmitExportState(crate::parse(v)?),
            T::TeardownExporter => P::TeardownExporter(crate::parse(v)?),
            T::AssembleAndUploadGenesis => P::AssembleAndUploadGenesis(crate::parse(v)?),
            T::AssembleGenesisFork => P::AssembleGenesisFork(crate::parse(v)?),
            T::CollectAndSetPeers => P::CollectAndSetPeers(crate::parse(v)?),
            T::AwaitNodesRunning => P::AwaitNodesRunning(crate::parse(v)?),
            T::UpdateNodeSpecs => P::UpdateNodeSpecs(crate::parse(v)?),
            T::AwaitSpecUpdate => P::AwaitSpecUpdate(crate::parse(v)?),
            T::MarkNodesReady => P::MarkNodesReady(crate::parse(v)?),
            T::CreateEntrantNodes => P::CreateEntrantNodes(crate::parse(v)?),
            T::SubmitHaltSignal => P::SubmitHaltSignal(crate::parse(v)?),
            T::AwaitNodesAtHeight => P::AwaitNodesAtHeight(crate::parse(v)?),
            T::AwaitNodesCaughtUp => P::AwaitNodesCaughtUp(crate::parse(v)?),
            T::SwitchTraffic => P::SwitchTraffic(crate::parse(v)?),
            T::TeardownNodes => P::TeardownNodes(crate::parse(v)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names() -> Vec<String> {
        vec!["g-0".into(), "g-1".into()]
    }

    fn nodes() -> Nodes {
        Nodes { namespace: "sei".into(), node_names: names() }
    }

    fn examples() -> Vec<GroupTaskParams> {
        use GroupTaskParams as P;
        let exporter = || Exporter { exporter_name: "g-exporter".into(), namespace: "sei".into() };
        let genesis_nodes = || names().into_iter().map(|name| GenesisNode { name }).collect::<Vec<_>>();
        vec![
            P::CreateExporter(CreateExporter {
                group_name: "g".into(),
                exporter_name: "g-exporter".into(),
                namespace: "sei".into(),
                source_chain_id: "pacific-1".into(),
                source_image: "seid:5".into(),
                export_height: 100,
            }),
            P::AwaitExporterRunning(exporter()),
            P::SubmitExportState(SubmitExportState {
                exporter_name: "g-exporter".into(),
                namespace: "sei".into(),
                export_height: 100,
                source_chain_id: "pacific-1".into(),
            }),
            P::TeardownExporter(exporter()),
            P::AssembleAndUploadGenesis(AssembleGenesis {
                account_balance: "1usei".into(),
                namespace: "sei".into(),
                nodes: genesis_nodes(),
                accounts: vec![],
            }),
            P::AssembleGenesisFork(AssembleGenesisFork {
                account_balance: "1usei".into(),
                namespace: "sei".into(),
                nodes: genesis_nodes(),
                accounts: vec![GenesisAccount { address: "sei1x".into(), balance: "5usei".into() }],
                source_chain_id: "pacific-1".into(),
                chain_id: "fork-1".into(),
            }),
            P::CollectAndSetPeers(GroupNodes { group_name: "g".into(), namespace: "sei".into(), node_names: names() }),
            P::AwaitNodesRunning(AwaitNodesRunning { group_name: "g".into(), namespace: "sei".into(), expected: 2, node_names: names() }),
            P::UpdateNodeSpecs(UpdateNodeSpecs {
                group_name: "g".into(),
                namespace: "sei".into(),
                node_names: names(),
                image: "seid:6".into(),
                sidecar_image: None,
            }),
            P::AwaitSpecUpdate(nodes()),
            P::MarkNodesReady(nodes()),
            P::CreateEntrantNodes(CreateEntrantNodes {
                group_name: "g".into(),
                namespace: "sei".into(),
                entrant_revision: "3".into(),
                node_names: names(),
            }),
            P::SubmitHaltSignal(SubmitHaltSignal { namespace: "sei".into(), node_names: names(), halt_height: 500 }),
            P::AwaitNodesAtHeight(AwaitNodesAtHeight { namespace: "sei".into(), node_names: names(), target_height: 500 }),
            P::AwaitNodesCaughtUp(nodes()),
            P::SwitchTraffic(SwitchTraffic { group_name: "g".into(), namespace: "sei".into(), entrant_revision: "3".into() }),
            P::TeardownNodes(nodes()),
        ]
    }

    #[test]
    fn every_group_task_type_round_trips() {
        let examples = examples();
        assert_eq!(examples.iter().map(GroupTaskParams::task_type).collect::<Vec<_>>(), GroupTaskType::ALL);
        for p in examples {
            let t = p.task_type();
            assert_eq!(GroupTaskType::parse(t.as_str()), Some(t));
            assert_eq!(GroupTaskParams::from_json(t, &p.to_json()).unwrap(), p, "{t}");
        }
        // Group and node task types never share a name (one registry serves both).
        for t in GroupTaskType::ALL {
            assert_eq!(crate::TaskType::parse(t.as_str()), None, "{t}");
        }
    }

    #[test]
    fn sub_task_ids_are_the_references() {
        let id = sub_task_id("net-0", "mark-ready", "7f0c2a4e-0000-5000-8000-000000000001");
        assert_eq!(id, uuid::Uuid::new_v5(&SUB_TASK_NAMESPACE, b"net-0/mark-ready/7f0c2a4e-0000-5000-8000-000000000001").to_string());
        assert_ne!(id, sub_task_id("net-1", "mark-ready", "7f0c2a4e-0000-5000-8000-000000000001"));
        assert_eq!(SUB_TASK_NAMESPACE.to_string(), "d4a7e1f3-8b29-4c6d-a5e0-2f1d3c4b5a6e");
    }

    #[test]
    fn group_wire_keys_match_the_reference() {
        let e = examples();
        assert_eq!(
            e[0].to_json(),
            json!({"groupName": "g", "exporterName": "g-exporter", "namespace": "sei", "sourceChainId": "pacific-1",
                   "sourceImage": "seid:5", "exportHeight": 100})
        );
        assert_eq!(e[4].to_json(), json!({"accountBalance": "1usei", "namespace": "sei", "nodes": [{"name": "g-0"}, {"name": "g-1"}]}));
        assert_eq!(e[5].to_json()["sourceChainId"], "pacific-1");
        assert_eq!(e[5].to_json()["chainId"], "fork-1");
        assert_eq!(e[6].to_json(), json!({"groupName": "g", "namespace": "sei", "nodeNames": ["g-0", "g-1"]}));
        assert_eq!(e[7].to_json(), json!({"groupName": "g", "namespace": "sei", "expected": 2, "nodeNames": ["g-0", "g-1"]}));
        assert_eq!(e[12].to_json(), json!({"namespace": "sei", "nodeNames": ["g-0", "g-1"], "haltHeight": 500}));
        assert_eq!(e[13].to_json(), json!({"namespace": "sei", "nodeNames": ["g-0", "g-1"], "targetHeight": 500}));
        assert_eq!(e[15].to_json(), json!({"groupName": "g", "namespace": "sei", "entrantRevision": "3"}));
    }
}
