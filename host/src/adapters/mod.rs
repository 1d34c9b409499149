//! The edges a module reaches through the host: Kubernetes and the node's sidecar. Each is a
//! small trait with a real implementation and an in-memory one (for `task run`, unit tests and
//! benchmarks).

pub mod kube;
pub mod sidecar;
