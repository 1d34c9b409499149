//! Every host call of the SDK goes through here: in a wasm component to the component's
//! imports (the `sei:task` interfaces), in a native build (`cargo test` of a guest) to the
//! thread's [`crate::mock::MockHost`]. A native call with no mock host installed panics with a
//! message that says how to install one.

use crate::bindings::sei::task::kube::{KubeError, ObjectRef};
use crate::bindings::sei::task::log::Level;
use crate::bindings::sei::task::member_sidecars::MemberTask;
use crate::bindings::sei::task::sidecar::{SidecarError, SidecarTask};

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::bindings::sei::task::{kube, log as wit_log, member_sidecars as member, sidecar};

    pub fn log(level: Level, msg: &str) {
        wit_log::log(level, msg)
    }
    pub fn kube_get(r: &ObjectRef) -> Result<Option<String>, KubeError> {
        kube::get(r)
    }
    pub fn kube_list(api_version: &str, kind: &str, selector: Option<&str>) -> Result<Vec<String>, KubeError> {
        kube::list_objects(api_version, kind, selector)
    }
    pub fn kube_create(object: &str) -> Result<String, KubeError> {
        kube::create(object)
    }
    pub fn kube_apply(object: &str) -> Result<String, KubeError> {
        kube::apply(object)
    }
    pub fn kube_delete(r: &ObjectRef) -> Result<bool, KubeError> {
        kube::delete(r)
    }
    pub fn sidecar_submit(id: &str, task_type: &str, params: Option<&str>) -> Result<String, SidecarError> {
        sidecar::submit_task(id, task_type, params)
    }
    pub fn sidecar_get_task(id: &str) -> Result<SidecarTask, SidecarError> {
        sidecar::get_task(id)
    }
    pub fn sidecar_status() -> Result<String, SidecarError> {
        sidecar::status()
    }
    pub fn sidecar_healthz() -> Result<bool, SidecarError> {
        sidecar::healthz()
    }
    pub fn sidecar_node_id() -> Result<String, SidecarError> {
        sidecar::node_id()
    }
    pub fn member_submit(node: &str, id: &str, task_type: &str, params: Option<&str>) -> Result<String, SidecarError> {
        member::submit_task(node, id, task_type, params)
    }
    pub fn member_get_task(node: &str, id: &str) -> Result<MemberTask, SidecarError> {
        member::get_task(node, id)
    }
    pub fn member_status(node: &str) -> Result<String, SidecarError> {
        member::status(node)
    }
    pub fn member_node_id(node: &str) -> Result<String, SidecarError> {
        member::node_id(node)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use crate::mock::with_host;

    pub fn log(level: Level, msg: &str) {
        with_host(|h| h.log(level, msg))
    }
    pub fn kube_get(r: &ObjectRef) -> Result<Option<String>, KubeError> {
        with_host(|h| h.kube_get(r))
    }
    pub fn kube_list(api_version: &str, kind: &str, selector: Option<&str>) -> Result<Vec<String>, KubeError> {
        with_host(|h| h.kube_list(api_version, kind, selector))
    }
    pub fn kube_create(object: &str) -> Result<String, KubeError> {
        with_host(|h| h.kube_create(object))
    }
    pub fn kube_apply(object: &str) -> Result<String, KubeError> {
        with_host(|h| h.kube_apply(object))
    }
    pub fn kube_delete(r: &ObjectRef) -> Result<bool, KubeError> {
        with_host(|h| h.kube_delete(r))
    }
    pub fn sidecar_submit(id: &str, task_type: &str, params: Option<&str>) -> Result<String, SidecarError> {
        with_host(|h| h.sidecar_submit(None, id, task_type, params))
    }
    pub fn sidecar_get_task(id: &str) -> Result<SidecarTask, SidecarError> {
        with_host(|h| h.sidecar_get_task(None, id)).map(|t| SidecarTask {
            id: t.id,
            task_type: t.task_type,
            status: t.status,
            error: t.error,
        })
    }
    pub fn sidecar_status() -> Result<String, SidecarError> {
        with_host(|h| h.answer_status(None))
    }
    pub fn sidecar_healthz() -> Result<bool, SidecarError> {
        with_host(|h| h.answer_healthz())
    }
    pub fn sidecar_node_id() -> Result<String, SidecarError> {
        with_host(|h| h.answer_node_id(None))
    }
    pub fn member_submit(node: &str, id: &str, task_type: &str, params: Option<&str>) -> Result<String, SidecarError> {
        with_host(|h| h.sidecar_submit(Some(node), id, task_type, params))
    }
    pub fn member_get_task(node: &str, id: &str) -> Result<MemberTask, SidecarError> {
        with_host(|h| h.sidecar_get_task(Some(node), id))
    }
    pub fn member_status(node: &str) -> Result<String, SidecarError> {
        with_host(|h| h.answer_status(Some(node)))
    }
    pub fn member_node_id(node: &str) -> Result<String, SidecarError> {
        with_host(|h| h.answer_node_id(Some(node)))
    }
}

pub(crate) use imp::*;
