//! Kubernetes conditions, one rule for every status this controller writes: a condition's
//! `lastTransitionTime` moves only when its status flips (`condition_transition_time_moves_only_on_flip`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// The condition `type_` with `ok` as its status, keeping the transition time of `old`'s entry
/// of that type while the status is unchanged.
pub fn condition(
    type_: &str,
    ok: bool,
    reason: &str,
    message: String,
    generation: Option<i64>,
    now: &Time,
    old: &[Condition],
) -> Condition {
    let status = if ok { "True" } else { "False" }.to_string();
    // The transition time moves only when the status flips.
    let last_transition_time =
        old.iter().find(|c| c.type_ == type_ && c.status == status).map(|c| c.last_transition_time.clone()).unwrap_or_else(|| now.clone());
    Condition { type_: type_.into(), status, reason: reason.into(), message, observed_generation: generation, last_transition_time }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap())
    }

    #[test]
    fn condition_transition_time_moves_only_on_flip() {
        let earlier = Time(k8s_openapi::jiff::Timestamp::from_second(1_700_000_000).unwrap());
        let old = vec![Condition {
            type_: "Ready".into(),
            status: "True".into(),
            reason: "Running".into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: earlier.clone(),
        }];
        assert_eq!(condition("Ready", true, "Running", String::new(), None, &now(), &old).last_transition_time, earlier);
        assert_eq!(condition("Ready", false, "NotRunning", String::new(), None, &now(), &old).last_transition_time, now());
    }
}
