//! The custom resources' types, shared by the controllers that read them: `SeiNode`
//! (`seinode.rs`, with the persisted `TaskPlan` both controllers use) and `SeiNodeDeployment`
//! (`seinodedeployment.rs`). Pure data and schema; no client, no I/O.

pub mod seinode;
pub mod seinodedeployment;
