//! The edges a module reaches through the host: Kubernetes and the node's sidecar. Each is a
//! small trait with a real implementation and an in-memory one (for `task run`, unit tests and
//! benchmarks). `node_sidecars` says where a SeiNode's sidecar is and keeps one client per address
//! (both controllers use it). `discovery` says whether an optional API is served. `events` publishes Kubernetes Events with
//! series and a per-object spam filter.

pub mod discovery;
pub mod events;
pub mod kube;
pub mod node_sidecars;
pub mod sidecar;
