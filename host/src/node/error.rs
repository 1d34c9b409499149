//! Why a SeiNode reconcile failed, with its cause kept (as kube-rs's `controller-rs` does) and a
//! metric label per cause (`reconcile_errors_total{cause}`). An invalid SeiNode is not an error:
//! the reconcile reports it (a Warning event) and waits for the spec to change.
//!
//! Invariant: every variant has a label, and a finalizer error is labelled by what failed inside
//! it; a finalizer patch that lost a race (409, or 422: its test of the list failed) is a conflict
//! (`labels_name_the_cause`).

use kube::runtime::finalizer;

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("serializing the node: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<ReconcileError>>),
}

impl ReconcileError {
    /// The `cause` label of the reconcile-error metric.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Kube(e) => kube_label(e),
            ReconcileError::Serialize(_) => "serialize",
            ReconcileError::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                // The finalizer patch tests the list it read first: a list that changed since
                // (a stale cache) fails that test with 422, a lost race like a 409.
                finalizer::Error::AddFinalizer(kube::Error::Api(s)) | finalizer::Error::RemoveFinalizer(kube::Error::Api(s))
                    if s.code == 409 || s.code == 422 =>
                {
                    "conflict"
                }
                finalizer::Error::AddFinalizer(_) | finalizer::Error::RemoveFinalizer(_) => "finalizer",
                finalizer::Error::UnnamedObject | finalizer::Error::InvalidFinalizer => "finalizer",
            },
        }
    }

    /// A write lost to a concurrent change (HTTP 409): retried at once on fresh data.
    pub fn is_conflict(&self) -> bool {
        self.metric_label() == "conflict"
    }
}

use crate::adapters::kube::kube_error_label as kube_label;

#[cfg(test)]
mod tests {
    use super::*;

    fn api(code: u16) -> kube::Error {
        kube::Error::Api(Box::new(kube::core::Status::failure("m", "r").with_code(code)))
    }

    #[test]
    fn labels_name_the_cause() {
        assert_eq!(ReconcileError::Kube(api(409)).metric_label(), "conflict");
        assert!(ReconcileError::Kube(api(409)).is_conflict());
        assert_eq!(ReconcileError::Kube(api(404)).metric_label(), "not-found");
        assert_eq!(ReconcileError::Kube(api(403)).metric_label(), "forbidden");
        assert_eq!(ReconcileError::Kube(api(500)).metric_label(), "api");
        let bad_json = serde_json::from_str::<serde_json::Value>("{").unwrap_err();
        assert_eq!(ReconcileError::Serialize(bad_json).metric_label(), "serialize");
        let wrapped = ReconcileError::Finalizer(Box::new(finalizer::Error::ApplyFailed(ReconcileError::Kube(api(409)))));
        assert_eq!(wrapped.metric_label(), "conflict", "the cause inside the finalizer");
        assert_eq!(ReconcileError::Finalizer(Box::new(finalizer::Error::AddFinalizer(api(500)))).metric_label(), "finalizer");
        let stale_list = ReconcileError::Finalizer(Box::new(finalizer::Error::AddFinalizer(api(422))));
        assert!(stale_list.is_conflict(), "a finalizer patch whose test failed is retried at once");
    }
}
