//! Leader election on a `coordination.k8s.io/v1` Lease: only the replica holding the Lease
//! reconciles SeiNodes; every replica loads TaskModules (so a standby is warm).
//!
//! The rules, as in client-go's leader election, each a pure function with table tests below:
//! - a replica may take the Lease when it does not exist, has no holder (released), or its holder
//!   has not renewed it for `leaseDurationSeconds` **as measured on this replica's own monotonic
//!   clock** since it last saw the record change (`attempt`; no trust in other replicas' wall
//!   clocks) — `attempt_follows_the_lease_table`;
//! - the holder renews every `retry_period`; a holder that has not renewed successfully for
//!   `renew_deadline` (shorter than the lease duration) has lost leadership and must stop at once,
//!   before any other replica may take the Lease (`lost`; `a_holder_stops_before_others_may_take_over`).
//!   A renewal counts from when its attempt *started* (the write happened later), and the
//!   deadline is a timer of its own, not checked after a request that may hang;
//! - taking keeps the acquire time and transition count when the holder does not change, and
//!   counts a transition when it does (`claim`); releasing clears the holder and shortens the
//!   duration to one second (`release`) — `claim_and_release_keep_the_history`;
//! - every write is a replace with the `resourceVersion` read before it (optimistic locking), so
//!   two replicas can never both think they took the Lease.
//!
//! Why not the `kube-lease-manager` crate: a standby there sleeps until the Lease expires, so a
//! released Lease is taken a full lease duration later (hand-over on SIGTERM must take under
//! 2 s; here standbys watch the Lease and take a released one at once), and a holder whose
//! renewals fail keeps reporting leadership while retrying, past the Lease's expiry; here the
//! holder steps down at `renew_deadline`.

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use std::time::Duration;
use tokio::sync::watch;
use tokio::time::Instant;

/// How a replica takes part in the election.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica (its pod name); written as the Lease's holder.
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Settings that cannot work, named.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SettingsError {
    #[error("leader election needs a namespace for its Lease (--leader-election-namespace or POD_NAMESPACE)")]
    NoNamespace,
    #[error("leader election needs an identity for this replica (--replica-id or POD_NAME)")]
    NoIdentity,
    #[error(
        "the renew deadline ({renew:?}) must be shorter than the lease duration ({lease:?}), or a replica that cannot renew would still act after another took over"
    )]
    RenewDeadlineTooLong { renew: Duration, lease: Duration },
    #[error("the retry period ({retry:?}) must be shorter than the renew deadline ({renew:?})")]
    RetryPeriodTooLong { retry: Duration, renew: Duration },
}

impl LeaseSettings {
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.namespace.trim().is_empty() {
            return Err(SettingsError::NoNamespace);
        }
        if self.identity.trim().is_empty() {
            return Err(SettingsError::NoIdentity);
        }
        if self.renew_deadline >= self.lease_duration {
            return Err(SettingsError::RenewDeadlineTooLong { renew: self.renew_deadline, lease: self.lease_duration });
        }
        if self.retry_period >= self.renew_deadline {
            return Err(SettingsError::RetryPeriodTooLong { retry: self.retry_period, renew: self.renew_deadline });
        }
        Ok(())
    }
}

/// The part of a Lease the election reads.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRecord {
    pub holder: Option<String>,
    pub duration: Duration,
    pub acquire_time: Option<MicroTime>,
    pub renew_time: Option<MicroTime>,
    pub transitions: i32,
}

impl LeaseRecord {
    pub fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64),
            acquire_time: spec.acquire_time,
            renew_time: spec.renew_time,
            transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    fn spec(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: self.holder.clone(),
            lease_duration_seconds: Some(i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: self.acquire_time.clone(),
            renew_time: self.renew_time.clone(),
            lease_transitions: Some(self.transitions),
            ..Default::default()
        }
    }
}

/// What this replica should do, given the Lease as it last saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// No Lease yet: create it, holding it.
    Create,
    /// Free or expired: take it.
    Take,
    /// Ours: renew it.
    Renew,
    /// Held by another replica, valid for `remaining` more (on this replica's clock).
    Wait { holder: String, remaining: Duration },
}

/// The election rule (pure). `observed_at`: when this replica first saw the record as it is now.
pub fn attempt(record: Option<&LeaseRecord>, observed_at: Instant, now: Instant, me: &str) -> Attempt {
    let Some(r) = record else { return Attempt::Create };
    match r.holder.as_deref() {
        None => Attempt::Take,
        Some(h) if h == me => Attempt::Renew,
        Some(h) => {
            let expires = observed_at + r.duration;
            if now >= expires { Attempt::Take } else { Attempt::Wait { holder: h.to_string(), remaining: expires - now } }
        }
    }
}

/// When this replica saw `new` first: the earlier time if it is the record it saw before (the
/// holder has not renewed since), else `now`.
pub fn observed(prev: Option<&(LeaseRecord, Instant)>, new: &LeaseRecord, now: Instant) -> Instant {
    match prev {
        Some((r, at)) if r == new => *at,
        _ => now,
    }
}

/// The record that makes `me` the holder at `now`.
pub fn claim(current: Option<&LeaseRecord>, me: &str, now: MicroTime, duration: Duration) -> LeaseRecord {
    let same_holder = current.and_then(|r| r.holder.as_deref()) == Some(me);
    let transitions = current.map_or(0, |r| r.transitions);
    LeaseRecord {
        holder: Some(me.to_string()),
        duration,
        acquire_time: if same_holder { current.and_then(|r| r.acquire_time.clone()) } else { Some(now.clone()) },
        renew_time: Some(now),
        transitions: if same_holder || current.is_none() { transitions } else { transitions.saturating_add(1) },
    }
}

/// The record that gives the Lease up: no holder, and a one-second duration.
pub fn release(current: &LeaseRecord, now: MicroTime) -> LeaseRecord {
    LeaseRecord {
        holder: None,
        duration: Duration::from_secs(1),
        acquire_time: Some(now.clone()),
        renew_time: Some(now),
        transitions: current.transitions,
    }
}

/// Whether a holder whose last successful renewal was at `last_renewed` has lost leadership.
pub fn lost(last_renewed: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now.saturating_duration_since(last_renewed) >= renew_deadline
}

/// This replica's part in the election, as the elector publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    Following,
    Leading,
    /// Held, then lost (a renewal deadline passed, or another replica holds the Lease): stop.
    Lost,
}

/// Failures of one request of the election; all are retried until the renew deadline.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    #[error("Lease {namespace}/{name}: {source}")]
    Kube {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Lease {namespace}/{name} was changed by another replica between read and write")]
    Conflict { namespace: String, name: String },
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Runs the election for one replica.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The Lease as last read, with its resourceVersion, and when this replica saw it first.
    seen: Option<(LeaseRecord, Instant)>,
    resource_version: Option<String>,
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Elector { api, settings, seen: None, resource_version: None }
    }

    fn error(&self, source: kube::Error) -> ElectionError {
        ElectionError::Kube { namespace: self.settings.namespace.clone(), name: self.settings.name.clone(), source }
    }

    /// Read the Lease and remember when its record changed.
    async fn read(&mut self) -> Result<Option<LeaseRecord>, ElectionError> {
        let lease = self.api.get_opt(&self.settings.name).await.map_err(|e| self.error(e))?;
        let now = Instant::now();
        Ok(match lease {
            None => {
                self.seen = None;
                self.resource_version = None;
                None
            }
            Some(l) => {
                let record = LeaseRecord::of(&l);
                let at = observed(self.seen.as_ref(), &record, now);
                self.seen = Some((record.clone(), at));
                self.resource_version = l.metadata.resource_version;
                Some(record)
            }
        })
    }

    /// Write `record` over the Lease read last (or create it); a conflict means another replica
    /// wrote in between.
    async fn write(&mut self, record: &LeaseRecord, create: bool) -> Result<(), ElectionError> {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(self.settings.name.clone()),
                namespace: Some(self.settings.namespace.clone()),
                resource_version: if create { None } else { self.resource_version.clone() },
                ..Default::default()
            },
            spec: Some(record.spec()),
        };
        let written = if create {
            self.api.create(&PostParams::default(), &lease).await
        } else {
            self.api.replace(&self.settings.name, &PostParams::default(), &lease).await
        };
        match written {
            Ok(l) => {
                self.resource_version = l.metadata.resource_version.clone();
                self.seen = Some((LeaseRecord::of(&l), Instant::now()));
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err(ElectionError::Conflict { namespace: self.settings.namespace.clone(), name: self.settings.name.clone() })
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// One round: read, then take or renew if the rule allows. `Ok(true)`: this replica holds
    /// the Lease now.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, ElectionError> {
        let record = self.read().await?;
        let observed_at = self.seen.as_ref().map_or_else(Instant::now, |(_, at)| *at);
        match attempt(record.as_ref(), observed_at, Instant::now(), &self.settings.identity) {
            Attempt::Wait { .. } => Ok(false),
            Attempt::Create => {
                let next = claim(None, &self.settings.identity, now_micro(), self.settings.lease_duration);
                self.write(&next, true).await.map(|()| true)
            }
            Attempt::Take | Attempt::Renew => {
                let next = claim(record.as_ref(), &self.settings.identity, now_micro(), self.settings.lease_duration);
                self.write(&next, false).await.map(|()| true)
            }
        }
    }

    /// Give the Lease up if this replica holds it (on shutdown, after the last step).
    pub async fn release(&mut self) -> Result<(), ElectionError> {
        let Some(record) = self.read().await? else { return Ok(()) };
        if record.holder.as_deref() != Some(self.settings.identity.as_str()) {
            return Ok(());
        }
        self.write(&release(&record, now_micro()), false).await
    }

    /// Take part until leadership is lost or `state` has no receivers: follow (re-checking on
    /// every change of the Lease and every `retry_period`), lead (renewing every `retry_period`),
    /// and publish `Lost` the moment a renewal deadline passes. Returns the elector so that the
    /// caller can release the Lease after its last step.
    pub async fn run(mut self, state: watch::Sender<Leadership>) -> Self {
        let fields = format!("metadata.name={}", self.settings.name);
        let mut changes = watcher::watcher(self.api.clone(), watcher::Config::default().fields(&fields)).default_backoff().boxed();
        // Following. A write's effect is dated from when the attempt started: the Lease was
        // written after that, so the holder's deadline never ends later than a follower thinks.
        let mut last_renewed;
        loop {
            let started = Instant::now();
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewed = started;
                    break;
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "leader election: could not read or take the Lease; retrying"),
            }
            tokio::select! {
                () = state.closed() => return self,
                _ = changes.next() => {}
                () = tokio::time::sleep(self.wait_hint()) => {}
            }
        }
        drop(changes);
        tracing::info!(lease = %format!("{}/{}", self.settings.namespace, self.settings.name), identity = %self.settings.identity, "became the leader");
        if state.send(Leadership::Leading).is_err() {
            return self;
        }
        // Leading: renew every retry period; the renew deadline is a timer of its own, so a
        // renewal stuck in flight cannot keep this replica leading past it.
        loop {
            let deadline = last_renewed + self.settings.renew_deadline;
            tokio::select! {
                () = state.closed() => return self,
                () = tokio::time::sleep(self.settings.retry_period) => {}
                () = tokio::time::sleep_until(deadline) => {}
            }
            let started = Instant::now();
            let renewed = tokio::select! {
                r = self.try_acquire_or_renew(), if started < deadline => Some(r),
                () = tokio::time::sleep_until(deadline) => None,
            };
            match renewed {
                Some(Ok(true)) => last_renewed = started,
                Some(Ok(false)) => {
                    tracing::error!(holder = ?self.seen.as_ref().and_then(|(r, _)| r.holder.clone()), "leader election: another replica holds the Lease; stopping");
                    let _ = state.send(Leadership::Lost);
                    return self;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "leader election: renewing the Lease failed; retrying"),
                None => {}
            }
            if lost(last_renewed, Instant::now(), self.settings.renew_deadline) {
                tracing::error!(deadline = ?self.settings.renew_deadline, "leader election: the Lease was not renewed within the renew deadline; stopping");
                let _ = state.send(Leadership::Lost);
                return self;
            }
        }
    }

    /// How long a follower waits before it looks again if the Lease does not change: until the
    /// current holder's lease would expire, at most one retry period.
    fn wait_hint(&self) -> Duration {
        let Some((record, at)) = &self.seen else { return self.settings.retry_period };
        match attempt(Some(record), *at, Instant::now(), &self.settings.identity) {
            Attempt::Wait { remaining, .. } => remaining.min(self.settings.retry_period),
            _ => self.settings.retry_period,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: Option<&str>, secs: u64) -> LeaseRecord {
        LeaseRecord { holder: holder.map(str::to_string), duration: Duration::from_secs(secs), ..Default::default() }
    }

    fn at(s: &str) -> MicroTime {
        MicroTime(s.parse().unwrap())
    }

    #[test]
    fn attempt_follows_the_lease_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let cases: Vec<(&str, Option<LeaseRecord>, Duration, Attempt)> = vec![
            ("no lease", None, s(0), Attempt::Create),
            ("released (no holder)", Some(record(None, 1)), s(0), Attempt::Take),
            ("ours", Some(record(Some("me"), 15)), s(0), Attempt::Renew),
            ("ours even when old", Some(record(Some("me"), 15)), s(60), Attempt::Renew),
            ("another holder, fresh", Some(record(Some("other"), 15)), s(5), Attempt::Wait { holder: "other".into(), remaining: s(10) }),
            ("another holder, expired on our clock", Some(record(Some("other"), 15)), s(15), Attempt::Take),
            ("another holder, long expired", Some(record(Some("other"), 15)), s(100), Attempt::Take),
        ];
        for (name, r, elapsed, want) in cases {
            assert_eq!(attempt(r.as_ref(), t0, t0 + elapsed, "me"), want, "{name}");
        }
    }

    #[test]
    fn expiry_is_measured_from_when_this_replica_saw_the_record_change() {
        let t0 = Instant::now();
        let r = record(Some("other"), 15);
        // The same record seen again keeps its first sighting: the holder did not renew.
        let first = observed(None, &r, t0);
        let again = observed(Some(&(r.clone(), first)), &r, t0 + Duration::from_secs(10));
        assert_eq!(again, t0);
        // A renewal (a new renew time) restarts the clock, whatever the wall clocks say.
        let mut renewed = r.clone();
        renewed.renew_time = Some(at("2020-01-01T00:00:00Z"));
        let later = t0 + Duration::from_secs(12);
        assert_eq!(observed(Some(&(r.clone(), first)), &renewed, later), later);
        assert!(matches!(attempt(Some(&renewed), later, later + Duration::from_secs(14), "me"), Attempt::Wait { .. }));
    }

    #[test]
    fn claim_and_release_keep_the_history() {
        let d = Duration::from_secs(15);
        let fresh = claim(None, "a", at("2026-11-30T00:00:00Z"), d);
        assert_eq!(fresh.holder.as_deref(), Some("a"));
        assert_eq!(fresh.transitions, 0, "creating is not a transition");
        assert_eq!(fresh.acquire_time, Some(at("2026-11-30T00:00:00Z")));

        let renewed = claim(Some(&fresh), "a", at("2026-11-30T00:00:02Z"), d);
        assert_eq!(renewed.acquire_time, fresh.acquire_time, "renewing keeps the acquire time");
        assert_eq!(renewed.renew_time, Some(at("2026-11-30T00:00:02Z")));
        assert_eq!(renewed.transitions, 0);

        let taken = claim(Some(&renewed), "b", at("2026-11-30T00:00:30Z"), d);
        assert_eq!((taken.holder.as_deref(), taken.transitions), (Some("b"), 1), "a new holder is a transition");
        assert_eq!(taken.acquire_time, Some(at("2026-11-30T00:00:30Z")));

        let released = release(&taken, at("2026-11-30T00:00:40Z"));
        assert_eq!(released.holder, None);
        assert_eq!(released.duration, Duration::from_secs(1));
        assert_eq!(released.transitions, 1);
        let after = claim(Some(&released), "a", at("2026-11-30T00:00:41Z"), d);
        assert_eq!(after.transitions, 2, "taking a released lease is a transition");

        // The spec written round-trips through the Lease type.
        let lease = Lease { metadata: ObjectMeta::default(), spec: Some(after.spec()) };
        assert_eq!(LeaseRecord::of(&lease), after);
        // An empty holder string is no holder.
        let empty =
            Lease { metadata: ObjectMeta::default(), spec: Some(LeaseSpec { holder_identity: Some(String::new()), ..Default::default() }) };
        assert_eq!(LeaseRecord::of(&empty).holder, None);
    }

    #[test]
    fn a_holder_stops_before_others_may_take_over() {
        let settings = LeaseSettings {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        settings.validate().unwrap();
        let t0 = Instant::now();
        // The holder renewed at t0 (and a follower saw that write at t0 at the earliest).
        assert!(!lost(t0, t0 + Duration::from_secs(9), settings.renew_deadline));
        let stops = t0 + settings.renew_deadline;
        assert!(lost(t0, stops, settings.renew_deadline));
        // A follower may take over only once the lease duration passed since it saw the renewal.
        let r = record(Some("a"), settings.lease_duration.as_secs());
        assert!(matches!(attempt(Some(&r), t0, stops, "b"), Attempt::Wait { .. }), "no overlap");
        assert_eq!(attempt(Some(&r), t0, t0 + settings.lease_duration, "b"), Attempt::Take);
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let ok = LeaseSettings {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        };
        assert_eq!(ok.validate(), Ok(()));
        let with = |f: &dyn Fn(&mut LeaseSettings)| {
            let mut s = ok.clone();
            f(&mut s);
            s.validate().unwrap_err().to_string()
        };
        assert!(with(&|s| s.namespace.clear()).contains("POD_NAMESPACE"));
        assert!(with(&|s| s.identity = " ".into()).contains("POD_NAME"));
        assert!(with(&|s| s.renew_deadline = Duration::from_secs(15)).contains("shorter than the lease duration"));
        assert!(with(&|s| s.retry_period = Duration::from_secs(10)).contains("shorter than the renew deadline"));
    }
}
