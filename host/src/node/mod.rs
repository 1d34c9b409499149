//! The SeiNode controller.
//!
//! - `planner`: pure, the plan a node should run (reference task lists, typed params);
//! - `stepper`: pure, how a step's outcome changes the plan and the node's status;
//! - `step_clock`: when each waiting node may step again;
//! - `written`: the version of each node this controller last wrote (a cached copy at that
//!   version needs no fresh read);
//! - `convergence`: how often a Running node may get a convergence plan;
//! - `scope`: what a node's steps may touch;
//! - `observe`: what a reconcile reads besides the node;
//! - `caches`: the same answered from the controller's watch caches (idle nodes cost no request);
//! - `events`: the node's Events;
//! - `error`: typed reconcile errors with a metric label per cause;
//! - `context`: everything a reconcile needs, built once;
//! - `reconcile`: the reconcile loop and `run`.
//!
//! The `SeiNode` resource itself is in `api/seinode.rs` (shared with the group controller).
//! Imports point down in that order (`reconcile` at the top); nothing here imports another
//! controller (`taskmodule`, `group`).

pub mod caches;
pub mod context;
pub mod convergence;
pub mod error;
pub mod events;
pub mod observe;
pub mod planner;
pub mod reconcile;
pub mod scope;

pub mod step_clock;
pub mod stepper;
pub mod written;

pub use crate::adapters::node_sidecars::SidecarResolver;
pub use context::{Context, ContextBuilder};
pub use reconcile::{MIN_REQUEUE, run, run_until};
