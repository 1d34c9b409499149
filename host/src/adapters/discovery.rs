//! Whether the API server serves an optional API (the Gateway API's HTTPRoutes, the Prometheus
//! Operator's ServiceMonitors), asked of discovery (`GET /apis/<group>/<version>`) and remembered
//! for a while, so that a group reconcile costs no discovery request most of the time and a CRD
//! installed later is noticed within `ttl`.
//!
//! Invariants (tests below): an answer is reused until `ttl` has passed (`answers_are_reused_until_they_expire`);
//! a group version that is absent (404) is "not served", not an error; any other failure is an
//! error and is not remembered (`a_failed_lookup_is_not_remembered`).

use kube::Client;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an answer is reused by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Asks discovery; a small trait so the cache is tested without an API server.
#[async_trait::async_trait]
pub trait ServedLookup: Send + Sync {
    /// Whether `resource` (plural) is served in `group/version`.
    async fn served(&self, group: &str, version: &str, resource: &str) -> Result<bool, kube::Error>;
}

#[async_trait::async_trait]
impl ServedLookup for Client {
    async fn served(&self, group: &str, version: &str, resource: &str) -> Result<bool, kube::Error> {
        match self.list_api_group_resources(&format!("{group}/{version}")).await {
            Ok(list) => Ok(list.resources.iter().any(|r| r.name == resource)),
            Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// (group, version, resource).
type ApiKey = (String, String, String);

/// Remembered answers: API → (when asked, served).
pub struct ApiDiscovery {
    lookup: Box<dyn ServedLookup>,
    ttl: Duration,
    answers: Mutex<HashMap<ApiKey, (Instant, bool)>>,
}

impl ApiDiscovery {
    pub fn new(lookup: Box<dyn ServedLookup>, ttl: Duration) -> Self {
        Self { lookup, ttl, answers: Mutex::new(HashMap::new()) }
    }

    /// Whether `resource` is served in `group/version`, from memory when the answer is fresh.
    pub async fn served(&self, (group, version, resource): (&str, &str, &str)) -> Result<bool, kube::Error> {
        let key = (group.to_string(), version.to_string(), resource.to_string());
        let now = Instant::now();
        if let Some((at, served)) = self.answers.lock().unwrap_or_else(|p| p.into_inner()).get(&key)
            && now.duration_since(*at) < self.ttl
        {
            return Ok(*served);
        }
        let served = self.lookup.served(group, version, resource).await?;
        self.answers.lock().unwrap_or_else(|p| p.into_inner()).insert(key, (now, served));
        Ok(served)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Counting {
        asked: Arc<AtomicUsize>,
        answer: Answer,
    }

    #[async_trait::async_trait]
    impl ServedLookup for Counting {
        async fn served(&self, _: &str, _: &str, _: &str) -> Result<bool, kube::Error> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            match *self.answer.lock().unwrap() {
                Ok(b) => Ok(b),
                Err(code) => Err(kube::Error::Api(Box::new(kube::core::Status::failure("down", "ServiceUnavailable").with_code(code)))),
            }
        }
    }

    /// What the fake discovery answers next: served, or an HTTP error code.
    type Answer = Arc<Mutex<Result<bool, u16>>>;

    fn discovery(ttl: Duration, answer: Result<bool, u16>) -> (ApiDiscovery, Arc<AtomicUsize>, Answer) {
        let asked = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(Mutex::new(answer));
        (ApiDiscovery::new(Box::new(Counting { asked: asked.clone(), answer: answer.clone() }), ttl), asked, answer)
    }

    const ROUTES: (&str, &str, &str) = ("gateway.networking.k8s.io", "v1", "httproutes");

    #[tokio::test]
    async fn answers_are_reused_until_they_expire() {
        let (d, asked, answer) = discovery(Duration::from_secs(3600), Ok(false));
        assert!(!d.served(ROUTES).await.unwrap());
        *answer.lock().unwrap() = Ok(true);
        assert!(!d.served(ROUTES).await.unwrap(), "a fresh answer is reused");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(d.served(("monitoring.coreos.com", "v1", "servicemonitors")).await.unwrap());
        assert_eq!(asked.load(Ordering::SeqCst), 2, "another API is asked on its own");

        let (d, asked, answer) = discovery(Duration::ZERO, Ok(false));
        assert!(!d.served(ROUTES).await.unwrap());
        *answer.lock().unwrap() = Ok(true);
        assert!(d.served(ROUTES).await.unwrap(), "an expired answer is asked again");
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_lookup_is_not_remembered() {
        let (d, asked, answer) = discovery(Duration::from_secs(3600), Err(503));
        assert!(d.served(ROUTES).await.is_err());
        *answer.lock().unwrap() = Ok(true);
        assert!(d.served(ROUTES).await.unwrap());
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }
}
