//! Leader election on a `coordination.k8s.io/v1` Lease: only the replica holding the Lease
//! reconciles SeiNodes; every replica loads TaskModules (so a standby is warm).
//!
//! The rules, as in client-go's leader election, each a pure function with table tests below:
//! - a replica may take the Lease when it has no holder (released), or its holder has not renewed
//!   it for its `leaseDurationSeconds` **as measured on this replica's own monotonic clock**
//!   since it last saw the record change (no trust in other replicas' wall clocks); a *missing*
//!   Lease is created only once it has been missing for a whole lease duration, since it may
//!   have been deleted under a live holder (`attempt`, `observed`;
//!   `attempt_follows_the_lease_table`, `expiry_is_measured_from_when_this_replica_saw_the_record_change`);
//! - the holder renews every `retry_period`; a holder that has not renewed for `renew_deadline`
//!   (shorter than the lease duration) has lost leadership and stops at once, before any other
//!   replica may take the Lease. A renewal counts from when its attempt *started* (the write
//!   happened later), and the deadline is a timer of its own, never checked only after a request
//!   that may hang (`lost`; `a_holder_stops_before_others_may_take_over`);
//! - the holder also stops the moment it sees the Lease deleted, cleared or held by anyone else
//!   (it keeps watching the Lease while leading), or a renewal conflicts (someone else wrote
//!   between its read and its write) (`still_ours`);
//! - taking keeps the acquire time and transition count when the holder does not change, and
//!   counts a transition when it does (`claim`); releasing clears the holder and shortens the
//!   duration to one second (`release`) — `claim_and_release_keep_the_history`;
//! - every write is a replace of the object read, with its `resourceVersion` (optimistic
//!   locking; other fields and metadata kept), so two replicas can never both take the Lease;
//! - the identity is unique per process (`main.rs` adds a random suffix to the replica's name),
//!   so a restarted replica or a second process under the same name never "renews" another's.
//!
//! Why not the `kube-lease-manager` crate: a standby there sleeps until the Lease expires, so a
//! released Lease is taken a full lease duration later (hand-over on SIGTERM must take under
//! 2 s; here standbys watch the Lease and take a released one at once), and a holder whose
//! renewals fail keeps reporting leadership while retrying, past the Lease's expiry; here the
//! holder steps down at `renew_deadline`.
//!
//! Known limit: the API server does not fence requests by Lease, so a request a leader sent
//! before it stopped may still arrive after another replica took over (the safety margin is
//! `lease duration - renew deadline`; status writes are optimistic-locked and task steps are
//! idempotent with plan-derived sidecar task ids).

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
    #[error("the retry period must be at least one second, or the leader and the standbys would poll the API server in a loop")]
    RetryPeriodTooShort,
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
        if self.retry_period < Duration::from_secs(1) {
            return Err(SettingsError::RetryPeriodTooShort);
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
    /// No Lease, and none seen for a whole lease duration: create it, holding it.
    Create,
    /// Free (released) or expired: take it.
    Take,
    /// Ours: renew it.
    Renew,
    /// Held by another replica (or gone too recently: `holder` is empty), valid for `remaining`
    /// more on this replica's clock.
    Wait { holder: String, remaining: Duration },
}

/// The election rule (pure). `observed_at`: when this replica first saw the Lease as it is now
/// (present with this record, or absent); `duration`: this replica's lease duration, which also
/// applies to a missing Lease (it may have been deleted under a live holder that has not noticed
/// yet) and to a record that names none.
pub fn attempt(record: Option<&LeaseRecord>, observed_at: Instant, now: Instant, me: &str, duration: Duration) -> Attempt {
    let wait_until = |expires: Instant, holder: &str| {
        if now >= expires { None } else { Some(Attempt::Wait { holder: holder.to_string(), remaining: expires - now }) }
    };
    let Some(r) = record else { return wait_until(observed_at + duration, "").unwrap_or(Attempt::Create) };
    match r.holder.as_deref() {
        // Released (client-go takes a cleared holder at once too).
        None => Attempt::Take,
        Some(h) if h == me => Attempt::Renew,
        Some(h) => {
            let valid_for = if r.duration.is_zero() { duration } else { r.duration };
            wait_until(observed_at + valid_for, h).unwrap_or(Attempt::Take)
        }
    }
}

/// When this replica saw the Lease as `new` first: the earlier time if it looked the same before
/// (the holder has not renewed since; or it is still absent), else `now`.
pub fn observed(prev: Option<&(Option<LeaseRecord>, Instant)>, new: Option<&LeaseRecord>, now: Instant) -> Instant {
    match prev {
        Some((r, at)) if r.as_ref() == new => *at,
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

/// Whether a holder whose last successful renewal *started* at `last_renewed` has lost
/// leadership.
pub fn lost(last_renewed: Instant, now: Instant, renew_deadline: Duration) -> bool {
    now.saturating_duration_since(last_renewed) >= renew_deadline
}

/// Whether the leader must stop on seeing the Lease as `record` (from its watch or a read):
/// gone, or held by anyone else (taken, or cleared by hand).
pub fn still_ours(record: Option<&LeaseRecord>, me: &str) -> bool {
    record.and_then(|r| r.holder.as_deref()) == Some(me)
}

/// This replica's part in the election, as the elector publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leadership {
    Following,
    Leading,
    /// Held, then lost (a renewal deadline passed, or the Lease was taken, cleared or deleted):
    /// stop.
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

/// Why a follower took the Lease (logged with "became the leader").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Woken {
    Start,
    LeaseChanged,
    Timer,
}

/// Runs the election for one replica.
pub struct Elector {
    api: Api<Lease>,
    settings: LeaseSettings,
    /// The Lease as last read (or its absence), and when this replica first saw it so.
    seen: Option<(Option<LeaseRecord>, Instant)>,
    /// The Lease object as last read or written (its metadata is kept on a write).
    last: Option<Lease>,
}

impl Elector {
    pub fn new(client: kube::Client, settings: LeaseSettings) -> Self {
        let api = Api::namespaced(client, &settings.namespace);
        Elector { api, settings, seen: None, last: None }
    }

    fn error(&self, source: kube::Error) -> ElectionError {
        ElectionError::Kube { namespace: self.settings.namespace.clone(), name: self.settings.name.clone(), source }
    }

    fn remember(&mut self, lease: Option<Lease>) -> Option<LeaseRecord> {
        let record = lease.as_ref().map(LeaseRecord::of);
        let at = observed(self.seen.as_ref(), record.as_ref(), Instant::now());
        self.seen = Some((record.clone(), at));
        self.last = lease;
        record
    }

    /// Read the Lease and remember when it changed.
    async fn read(&mut self) -> Result<Option<LeaseRecord>, ElectionError> {
        let lease = self.api.get_opt(&self.settings.name).await.map_err(|e| self.error(e))?;
        Ok(self.remember(lease))
    }

    /// Write `record` over the Lease read last, keeping its metadata and resourceVersion (or
    /// create it); a conflict means another replica wrote in between.
    async fn write(&mut self, record: &LeaseRecord, create: bool) -> Result<(), ElectionError> {
        let mut lease = match (&self.last, create) {
            (Some(l), false) => l.clone(),
            _ => Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..Default::default()
                },
                spec: None,
            },
        };
        lease.metadata.managed_fields = None;
        lease.spec = Some(record.spec());
        let written = if create {
            self.api.create(&PostParams::default(), &lease).await
        } else {
            self.api.replace(&self.settings.name, &PostParams::default(), &lease).await
        };
        match written {
            Ok(l) => {
                self.remember(Some(l));
                Ok(())
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {
                Err(ElectionError::Conflict { namespace: self.settings.namespace.clone(), name: self.settings.name.clone() })
            }
            Err(e) => Err(self.error(e)),
        }
    }

    /// A follower's round: read, then take the Lease if the rule allows. `Ok(true)`: this
    /// replica holds it now.
    pub async fn try_acquire(&mut self) -> Result<bool, ElectionError> {
        let record = self.read().await?;
        let observed_at = self.seen.as_ref().map_or_else(Instant::now, |(_, at)| *at);
        match attempt(record.as_ref(), observed_at, Instant::now(), &self.settings.identity, self.settings.lease_duration) {
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

    /// The leader's round: `Ok(true)` renewed; `Ok(false)` the Lease is gone, someone else's, or
    /// was written by someone else since it was read (a conflict): leadership is lost.
    async fn renew(&mut self) -> Result<bool, ElectionError> {
        let record = self.read().await?;
        if !still_ours(record.as_ref(), &self.settings.identity) {
            return Ok(false);
        }
        let next = claim(record.as_ref(), &self.settings.identity, now_micro(), self.settings.lease_duration);
        match self.write(&next, false).await {
            Ok(()) => Ok(true),
            Err(ElectionError::Conflict { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Give the Lease up if this replica holds it (on shutdown, after the last step).
    pub async fn release(&mut self) -> Result<(), ElectionError> {
        let Some(record) = self.read().await? else { return Ok(()) };
        if !still_ours(Some(&record), &self.settings.identity) {
            return Ok(());
        }
        self.write(&release(&record, now_micro()), false).await
    }

    /// Take part until leadership is lost or `state` has no receivers: follow (re-checking on
    /// every change of the Lease, and when the holder's time runs out), lead (renewing every
    /// `retry_period`, watching the Lease), and publish `Lost` the moment the renew deadline
    /// passes or the Lease is seen gone or someone else's. Every request is bounded by the
    /// retry period (a follower) or the renew deadline (the leader). Returns the elector so that
    /// the caller can release the Lease after its last step.
    pub async fn run(mut self, state: watch::Sender<Leadership>) -> Self {
        let fields = format!("metadata.name={}", self.settings.name);
        let mut changes = watcher::watcher(self.api.clone(), watcher::Config::default().fields(&fields)).default_backoff().boxed();
        let me = self.settings.identity.clone();
        // Following. A write's effect is dated from when the attempt started: the Lease was
        // written after that, so the holder's deadline never ends later than a follower thinks.
        let mut woken = Woken::Start;
        let mut last_renewed;
        loop {
            let started = Instant::now();
            let round = tokio::select! {
                () = state.closed() => return self,
                r = tokio::time::timeout(self.settings.retry_period, self.try_acquire()) => r,
            };
            match round {
                Ok(Ok(true)) => {
                    last_renewed = started;
                    break;
                }
                Ok(Ok(false)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "leader election: could not read or take the Lease; retrying"),
                Err(_) => {
                    tracing::warn!(timeout = ?self.settings.retry_period, "leader election: reading or taking the Lease timed out; retrying")
                }
            }
            woken = tokio::select! {
                () = state.closed() => return self,
                _ = changes.next() => Woken::LeaseChanged,
                () = tokio::time::sleep(self.wait_hint()) => Woken::Timer,
            };
        }
        let after = match woken {
            Woken::Start => "start",
            Woken::LeaseChanged => "a change of the Lease",
            Woken::Timer => "the holder's time ran out",
        };
        tracing::info!(lease = %format!("{}/{}", self.settings.namespace, self.settings.name), identity = %me, after, "became the leader");
        if state.send(Leadership::Leading).is_err() {
            return self;
        }
        // Leading: renew every retry period; the renew deadline is a timer of its own, so a
        // renewal stuck in flight cannot keep this replica leading past it; the watch stops this
        // replica the moment the Lease is deleted, cleared or taken.
        let mut next_renewal = last_renewed + self.settings.retry_period;
        loop {
            let deadline = last_renewed + self.settings.renew_deadline;
            let mut stop: Option<&str> = None;
            tokio::select! {
                () = state.closed() => return self,
                () = tokio::time::sleep_until(next_renewal) => {}
                () = tokio::time::sleep_until(deadline) => {}
                event = changes.next() => {
                    // The watch may still deliver changes from before this replica took the Lease
                    // (the release it woke on, the old holder's renewals): a change that says
                    // the Lease is not ours is checked against the Lease as it is now.
                    let suspect = match event {
                        Some(Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l))) => !still_ours(Some(&LeaseRecord::of(&l)), &me),
                        Some(Ok(watcher::Event::Delete(_))) => true,
                        _ => false,
                    };
                    if !suspect {
                        continue;
                    }
                    let now = tokio::select! {
                        r = self.read() => r.ok(),
                        () = tokio::time::sleep_until(deadline) => None,
                    };
                    match now {
                        Some(Some(r)) if still_ours(Some(&r), &me) => continue,
                        Some(None) => stop = Some("the Lease was deleted"),
                        Some(Some(_)) => stop = Some("the Lease was taken or cleared"),
                        // Unreadable: the renewal and its deadline decide.
                        None => {}
                    }
                }
            }
            if stop.is_none() {
                let started = Instant::now();
                next_renewal = started + self.settings.retry_period;
                let renewed = tokio::select! {
                    () = state.closed() => return self,
                    r = self.renew(), if started < deadline => Some(r),
                    () = tokio::time::sleep_until(deadline) => None,
                };
                match renewed {
                    Some(Ok(true)) => last_renewed = started,
                    Some(Ok(false)) => stop = Some("the Lease is gone, someone else's, or was written by someone else"),
                    Some(Err(e)) => tracing::warn!(error = %e, "leader election: renewing the Lease failed; retrying"),
                    None => {}
                }
            }
            if stop.is_none() && lost(last_renewed, Instant::now(), self.settings.renew_deadline) {
                stop = Some("the Lease was not renewed within the renew deadline");
            }
            if let Some(why) = stop {
                tracing::error!(reason = why, deadline = ?self.settings.renew_deadline, "leader election: leadership lost; stopping");
                let _ = state.send(Leadership::Lost);
                return self;
            }
        }
    }

    /// How long a follower waits before it looks again if the Lease does not change: until the
    /// current holder's lease would expire (or a missing Lease may be created), at most one retry
    /// period.
    fn wait_hint(&self) -> Duration {
        let Some((record, at)) = &self.seen else { return self.settings.retry_period };
        match attempt(record.as_ref(), *at, Instant::now(), &self.settings.identity, self.settings.lease_duration) {
            Attempt::Wait { remaining, .. } => remaining.min(self.settings.retry_period),
            _ => self.settings.retry_period,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The chart's settings (15 s / 10 s / 2 s) for replica `a`.
    fn chart_defaults() -> LeaseSettings {
        LeaseSettings {
            namespace: "ns".into(),
            name: "l".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

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
            // A missing Lease may have been deleted under a live holder: wait a lease duration.
            ("no lease, just seen missing", None, s(0), Attempt::Wait { holder: String::new(), remaining: s(15) }),
            ("no lease for a whole duration", None, s(15), Attempt::Create),
            (
                "a record without a duration counts ours",
                Some(record(Some("other"), 0)),
                s(14),
                Attempt::Wait { holder: "other".into(), remaining: s(1) },
            ),
            ("released (no holder)", Some(record(None, 1)), s(0), Attempt::Take),
            ("ours", Some(record(Some("me"), 15)), s(0), Attempt::Renew),
            ("ours even when old", Some(record(Some("me"), 15)), s(60), Attempt::Renew),
            ("another holder, fresh", Some(record(Some("other"), 15)), s(5), Attempt::Wait { holder: "other".into(), remaining: s(10) }),
            ("another holder, expired on our clock", Some(record(Some("other"), 15)), s(15), Attempt::Take),
            ("another holder, long expired", Some(record(Some("other"), 15)), s(100), Attempt::Take),
        ];
        for (name, r, elapsed, want) in cases {
            assert_eq!(attempt(r.as_ref(), t0, t0 + elapsed, "me", s(15)), want, "{name}");
        }
    }

    #[test]
    fn expiry_is_measured_from_when_this_replica_saw_the_record_change() {
        let t0 = Instant::now();
        let r = record(Some("other"), 15);
        // The same record seen again keeps its first sighting: the holder did not renew.
        let first = observed(None, Some(&r), t0);
        let again = observed(Some(&(Some(r.clone()), first)), Some(&r), t0 + Duration::from_secs(10));
        assert_eq!(again, t0);
        // The Lease deleted: absence is a change, seen from now; still absent keeps that time.
        let gone = observed(Some(&(Some(r.clone()), first)), None, t0 + Duration::from_secs(11));
        assert_eq!(gone, t0 + Duration::from_secs(11));
        assert_eq!(observed(Some(&(None, gone)), None, t0 + Duration::from_secs(20)), gone);
        // A renewal (a new renew time) restarts the clock, whatever the wall clocks say.
        let mut renewed = r.clone();
        renewed.renew_time = Some(at("2020-01-01T00:00:00Z"));
        let later = t0 + Duration::from_secs(12);
        assert_eq!(observed(Some(&(Some(r.clone()), first)), Some(&renewed), later), later);
        assert!(matches!(
            attempt(Some(&renewed), later, later + Duration::from_secs(14), "me", Duration::from_secs(15)),
            Attempt::Wait { .. }
        ));
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
        let settings = chart_defaults();
        settings.validate().unwrap();
        let t0 = Instant::now();
        // The holder renewed at t0 (and a follower saw that write at t0 at the earliest).
        assert!(!lost(t0, t0 + Duration::from_secs(9), settings.renew_deadline));
        let stops = t0 + settings.renew_deadline;
        assert!(lost(t0, stops, settings.renew_deadline));
        // A follower may take over only once the lease duration passed since it saw the renewal.
        let r = record(Some("a"), settings.lease_duration.as_secs());
        assert!(matches!(attempt(Some(&r), t0, stops, "b", settings.lease_duration), Attempt::Wait { .. }), "no overlap");
        assert_eq!(attempt(Some(&r), t0, t0 + settings.lease_duration, "b", settings.lease_duration), Attempt::Take);
        // The leader stops the moment it sees the Lease gone, cleared or taken.
        assert!(still_ours(Some(&r), "a"));
        assert!(!still_ours(None, "a"));
        assert!(!still_ours(Some(&record(None, 15)), "a"));
        assert!(!still_ours(Some(&record(Some("b"), 15)), "a"));
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let ok = chart_defaults();
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
        assert!(with(&|s| s.retry_period = Duration::ZERO).contains("at least one second"));
    }
}
