//! Publishing Kubernetes Events (`events.k8s.io/v1`), the way client-go's recorder does it:
//! an Event repeated within `SERIES_WINDOW` (same object, type, reason, action and note) becomes a
//! series on the first one (a PATCH of its count and last time) instead of a new object, and each
//! object may publish at most `BURST` Events, refilled one per `REFILL` (client-go's spam filter:
//! 25, one per 5 minutes); what the filter drops is counted (`sei_events_dropped_total`) and
//! logged at debug level.
//!
//! Why not kube's `Recorder`: it keeps every Event it published for 6 minutes as a whole
//! `Event` object in a map that it sweeps on every publish (10 MB and O(n) per Event at 1,000
//! nodes, measured by heaptrack in the scale benchmark), and its series key leaves out the note,
//! so a second `PlanCreated` within 6 minutes showed the first plan's note. Here an entry is the
//! Event's name, count and times (about 100 bytes), expired in time order (amortized O(1)).
//!
//! A series whose first Event is gone (the API server keeps Events an hour) starts a new Event.
//! Names are `<object>.<nanoseconds>`, the object's name cut to fit 253 characters. The series
//! key is a 64-bit hash of (object uid, type, reason, action, note).
//!
//! Invariants (unit tests below): a repeat within the window is a series of the first Event
//! (`repeats_become_a_series`); a different note is a new Event (`a_new_note_is_a_new_event`);
//! past the burst an object's Events are dropped until refilled (`spam_is_dropped_per_object`);
//! entries leave the caches once expired or refilled (`caches_shrink_back`).

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A repeat within this long joins the first Event's series.
pub const SERIES_WINDOW: Duration = Duration::from_secs(6 * 60);
/// Events one object may publish at once.
pub const BURST: f64 = 25.0;
/// One more Event per this long.
pub const REFILL: Duration = Duration::from_secs(5 * 60);

/// What the recorder decided for one Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A new Event object.
    Create,
    /// The `count`th occurrence of the Event named `name`.
    Series { name: String, count: i32 },
    /// The object published too many Events.
    Drop,
}

struct Entry {
    name: String,
    count: i32,
    last: Instant,
}

/// The pure part: series and spam filter, with the clock passed in.
#[derive(Default)]
pub struct Correlator {
    series: HashMap<u64, Entry>,
    /// (when, key) of every series entry, oldest first.
    expiry: VecDeque<(Instant, u64)>,
    /// Per object uid: (tokens, when last refilled).
    buckets: HashMap<String, (f64, Instant)>,
    /// Publishes since the buckets were last swept.
    since_sweep: usize,
}

fn key(uid: &str, ev: &Event) -> u64 {
    let mut h = DefaultHasher::new();
    (uid, matches!(ev.type_, EventType::Warning), &ev.reason, &ev.action, &ev.note).hash(&mut h);
    h.finish()
}

impl Correlator {
    /// Decide for `ev` about the object `uid` at `now`; a `Create` must be followed by `created`
    /// with the new Event's name.
    pub fn decide(&mut self, uid: &str, ev: &Event, now: Instant) -> Decision {
        self.expire(now);
        let bucket = self.buckets.entry(uid.to_string()).or_insert((BURST, now));
        let refilled = now.saturating_duration_since(bucket.1).as_secs_f64() / REFILL.as_secs_f64();
        *bucket = ((bucket.0 + refilled).min(BURST), now);
        if bucket.0 < 1.0 {
            return Decision::Drop;
        }
        bucket.0 -= 1.0;
        match self.series.get_mut(&key(uid, ev)) {
            Some(e) => {
                e.count += 1;
                e.last = now;
                self.expiry.push_back((now, key(uid, ev)));
                Decision::Series { name: e.name.clone(), count: e.count }
            }
            None => Decision::Create,
        }
    }

    /// Remember the Event just created for `ev` about `uid`.
    pub fn created(&mut self, uid: &str, ev: &Event, name: String, now: Instant) {
        let k = key(uid, ev);
        self.series.insert(k, Entry { name, count: 1, last: now });
        self.expiry.push_back((now, k));
    }

    /// Drop series past the window (in time order), and every so often the buckets that are
    /// full again.
    fn expire(&mut self, now: Instant) {
        while let Some((at, k)) = self.expiry.front().copied() {
            if now.saturating_duration_since(at) < SERIES_WINDOW {
                break;
            }
            self.expiry.pop_front();
            if self.series.get(&k).is_some_and(|e| now.saturating_duration_since(e.last) >= SERIES_WINDOW) {
                self.series.remove(&k);
            }
        }
        self.since_sweep += 1;
        if self.since_sweep >= 1024 {
            self.since_sweep = 0;
            let full_after = REFILL.mul_f64(BURST);
            self.buckets.retain(|_, (tokens, at)| {
                *tokens + now.saturating_duration_since(*at).as_secs_f64() / REFILL.as_secs_f64() < BURST
                    && now.saturating_duration_since(*at) < full_after
            });
        }
    }

    /// Forget the series of `ev` about `uid` (its first Event is gone).
    pub fn forget(&mut self, uid: &str, ev: &Event) {
        self.series.remove(&key(uid, ev));
    }

    /// (series entries, objects with a bucket).
    pub fn sizes(&self) -> (usize, usize) {
        (self.series.len(), self.buckets.len())
    }
}

/// Publishes Events as `controller` (`instance`: this replica).
pub struct EventRecorder {
    client: kube::Client,
    controller: String,
    instance: String,
    correlator: Mutex<Correlator>,
    dropped: AtomicU64,
}

impl EventRecorder {
    pub fn new(client: kube::Client, controller: &str, instance: Option<String>) -> Self {
        Self {
            client,
            instance: instance.unwrap_or_else(|| controller.to_string()),
            controller: controller.to_string(),
            correlator: Mutex::new(Correlator::default()),
            dropped: AtomicU64::new(0),
        }
    }

    /// Events dropped by the spam filter so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Publish `ev` about `regarding` (created in its namespace); `false`: dropped by the spam
    /// filter.
    pub async fn publish(&self, ev: &Event, regarding: &ObjectReference) -> Result<bool, kube::Error> {
        let uid = regarding.uid.clone().unwrap_or_else(|| format!("{:?}/{:?}", regarding.namespace, regarding.name));
        let now = Instant::now();
        let decision = self.correlator.lock().unwrap_or_else(|p| p.into_inner()).decide(&uid, ev, now);
        let ns = regarding.namespace.clone().unwrap_or_else(|| "default".into());
        let events: Api<K8sEvent> = Api::namespaced(self.client.clone(), &ns);
        match decision {
            Decision::Drop => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(object = ?regarding.name, reason = %ev.reason, "event dropped: the object published too many");
                Ok(false)
            }
            Decision::Series { name, count } => {
                let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
                let patch = serde_json::json!({"series": EventSeries { count, last_observed_time: stamp }});
                match events.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await {
                    Ok(_) => Ok(true),
                    // The first Event is gone (the API server's Event TTL, or someone deleted it):
                    // start a new one, as client-go does.
                    Err(_) => {
                        self.correlator.lock().unwrap_or_else(|p| p.into_inner()).forget(&uid, ev);
                        self.create(&events, ev, regarding, &uid, now).await
                    }
                }
            }
            Decision::Create => self.create(&events, ev, regarding, &uid, now).await,
        }
    }

    /// Create a new Event for `ev` about `regarding` (object uid `uid`) and remember it.
    async fn create(
        &self,
        events: &Api<K8sEvent>,
        ev: &Event,
        regarding: &ObjectReference,
        uid: &str,
        now: Instant,
    ) -> Result<bool, kube::Error> {
        let stamp = MicroTime(k8s_openapi::jiff::Timestamp::now());
        // `<object>.<nanoseconds in hex>` (16 digits) within the 253 characters of a name.
        let object: String = regarding.name.as_deref().unwrap_or(&self.controller).chars().take(253 - 17).collect();
        let name = format!("{object}.{:x}", stamp.0.as_nanosecond());
        let event = K8sEvent {
            metadata: ObjectMeta { name: Some(name.clone()), namespace: regarding.namespace.clone(), ..ObjectMeta::default() },
            action: Some(ev.action.clone()),
            reason: Some(ev.reason.clone()),
            note: ev.note.clone(),
            event_time: Some(stamp),
            regarding: Some(regarding.clone()),
            related: ev.secondary.clone(),
            reporting_controller: Some(self.controller.clone()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(if matches!(ev.type_, EventType::Warning) { "Warning" } else { "Normal" }.into()),
            ..K8sEvent::default()
        };
        events.create(&PostParams::default(), &event).await?;
        self.correlator.lock().unwrap_or_else(|p| p.into_inner()).created(uid, ev, name, now);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(reason: &str, note: &str) -> Event {
        Event { type_: EventType::Normal, reason: reason.into(), note: Some(note.into()), action: "Reconcile".into(), secondary: None }
    }

    #[test]
    fn repeats_become_a_series() {
        let (mut c, t0) = (Correlator::default(), Instant::now());
        assert_eq!(c.decide("u", &ev("Running", "phase"), t0), Decision::Create);
        c.created("u", &ev("Running", "phase"), "rpc.1".into(), t0);
        for count in 2..5 {
            assert_eq!(c.decide("u", &ev("Running", "phase"), t0), Decision::Series { name: "rpc.1".into(), count });
        }
        assert_eq!(c.decide("other", &ev("Running", "phase"), t0), Decision::Create, "per object");
        // The window runs from the last occurrence.
        let later = t0 + SERIES_WINDOW - Duration::from_secs(1);
        assert_eq!(c.decide("u", &ev("Running", "phase"), later), Decision::Series { name: "rpc.1".into(), count: 5 });
        assert_eq!(c.decide("u", &ev("Running", "phase"), later + SERIES_WINDOW), Decision::Create, "past the window: a new Event");
    }

    #[test]
    fn a_new_note_is_a_new_event() {
        let (mut c, t0) = (Correlator::default(), Instant::now());
        assert_eq!(c.decide("u", &ev("PlanCreated", "plan a"), t0), Decision::Create);
        c.created("u", &ev("PlanCreated", "plan a"), "rpc.1".into(), t0);
        assert_eq!(c.decide("u", &ev("PlanCreated", "plan b"), t0), Decision::Create);
        let mut warning = ev("PlanCreated", "plan a");
        warning.type_ = EventType::Warning;
        assert_eq!(c.decide("u", &warning, t0), Decision::Create, "the type is part of the key");
    }

    #[test]
    fn spam_is_dropped_per_object() {
        let (mut c, t0) = (Correlator::default(), Instant::now());
        for i in 0..BURST as usize {
            assert_ne!(c.decide("u", &ev("X", &i.to_string()), t0), Decision::Drop, "event {i}");
        }
        assert_eq!(c.decide("u", &ev("X", "one more"), t0), Decision::Drop);
        assert_ne!(c.decide("v", &ev("X", "one more"), t0), Decision::Drop, "another object has its own burst");
        assert_ne!(c.decide("u", &ev("X", "refilled"), t0 + REFILL), Decision::Drop, "one more after REFILL");
        assert_eq!(c.decide("u", &ev("X", "again"), t0 + REFILL), Decision::Drop);
    }

    #[test]
    fn caches_shrink_back() {
        let (mut c, t0) = (Correlator::default(), Instant::now());
        for i in 0..2000 {
            let uid = format!("n{i}");
            assert_eq!(c.decide(&uid, &ev("Running", "phase"), t0), Decision::Create);
            c.created(&uid, &ev("Running", "phase"), format!("n{i}.1"), t0);
        }
        assert_eq!(c.sizes(), (2000, 2000));
        let late = t0 + REFILL.mul_f64(BURST) + SERIES_WINDOW;
        for _ in 0..1024 {
            c.decide("x", &ev("Y", "z"), late);
        }
        assert_eq!(c.sizes(), (0, 1), "expired series and refilled buckets are gone");
    }
}
