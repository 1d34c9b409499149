//! The sidecars of a group's member SeiNodes (the `member-sidecars` host interface, WIT 0.1.1):
//! only a SeiNodeDeployment's tasks may call it, and only for the group's own members.

pub use crate::bindings::sei::task::member_sidecars::MemberTask;
pub use crate::bindings::sei::task::sidecar::SidecarError;
use crate::host as raw;

pub fn submit_task(node: &str, id: &str, task_type: &str, params: Option<&serde_json::Value>) -> Result<String, SidecarError> {
    let params = params.map(|p| p.to_string());
    raw::member_submit(node, id, task_type, params.as_deref())
}
pub fn get_task(node: &str, id: &str) -> Result<MemberTask, SidecarError> {
    raw::member_get_task(node, id)
}
pub fn status(node: &str) -> Result<String, SidecarError> {
    raw::member_status(node)
}
pub fn node_id(node: &str) -> Result<String, SidecarError> {
    raw::member_node_id(node)
}
