//! Typed errors of a SeiNodeDeployment reconcile, each with a metric label
//! (`sei_reconcile_errors_total{cause}`).

use kube::runtime::finalizer;

#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("kubernetes: {0}")]
    Kube(#[from] kube::Error),
    #[error("serializing the group: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("{0}")]
    Finalizer(#[source] Box<finalizer::Error<GroupError>>),
}

impl GroupError {
    pub fn metric_label(&self) -> &'static str {
        match self {
            GroupError::Kube(e) => crate::adapters::kube::kube_error_label(e),
            GroupError::Serialize(_) => "serialize",
            GroupError::Finalizer(e) => match e.as_ref() {
                finalizer::Error::ApplyFailed(inner) | finalizer::Error::CleanupFailed(inner) => inner.metric_label(),
                _ => "finalizer",
            },
        }
    }

    pub fn is_conflict(&self) -> bool {
        self.metric_label() == "conflict"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_cause() {
        let api = |code| kube::Error::Api(Box::new(kube::core::Status::failure("m", "r").with_code(code)));
        assert_eq!(GroupError::Kube(api(409)).metric_label(), "conflict");
        assert!(GroupError::Kube(api(409)).is_conflict());
        let wrapped = GroupError::Finalizer(Box::new(finalizer::Error::CleanupFailed(GroupError::Kube(api(403)))));
        assert_eq!(wrapped.metric_label(), "forbidden");
    }
}
