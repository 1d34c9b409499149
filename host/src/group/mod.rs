//! The SeiNodeDeployment (group) controller.
//!
//! - `planner`: pure, the plan a group should run (genesis, fork genesis, InPlace, BlueGreen,
//!   HardFork), with the typed params of `tasks-wasm/params/src/group.rs`;
//! - `children`: pure, the children a group should have, what to sync, scale-down, rollout
//!   detection, the ceremony's deadline, the group's phase;
//! - `networking`: pure, the `<group>-external` Service, HTTPRoutes and ServiceMonitor, and
//!   what a route's status means;
//! - `error`: typed reconcile errors with a metric label per cause;
//! - `context`: everything a reconcile needs, built once;
//! - `reconcile`: the reconcile loop and `run_until`; plans run through the shared `executor`
//!   in the group's scope (`policy::scope::Scope::for_group`).
//!
//! The `SeiNodeDeployment` resource itself is in `api/seinodedeployment.rs`. Nothing here imports
//! another controller (`node`, `taskmodule`).

pub mod children;
pub mod context;
pub mod error;
pub mod networking;
pub mod planner;
pub mod reconcile;

pub use context::GroupContext;
pub use reconcile::run_until;
