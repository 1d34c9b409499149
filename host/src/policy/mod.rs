//! Policy, pure: what a task step may do and what the objects it writes may contain.
//!
//! - `scope`: the node a step works for (namespace, names, owner, pod labels, placement);
//! - `guard`: the `CapabilityGuard`, which checks every host call against the module's grants
//!   and the step's scope;
//! - `pod_policy`: what a created or applied object may contain.
//!
//! Imports point down only: `guard` uses `pod_policy` and `scope`; `pod_policy` uses `scope`.

pub mod guard;
pub mod pod_policy;
pub mod scope;
