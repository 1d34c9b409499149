//! The SeiNodeDeployment (group) controller.
//!
//! - `planner`: pure, the plan a group should run (genesis, fork genesis, InPlace, BlueGreen,
//!   HardFork), with the typed params of `tasks-wasm/params/src/group.rs`.
//!
//! The `SeiNodeDeployment` resource itself is in `api/seinodedeployment.rs`. Nothing here imports
//! another controller (`node`, `taskmodule`).

pub mod planner;
