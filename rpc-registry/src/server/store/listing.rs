//! What reads see of the registry without holding its lock. Each instance is [`Listed`] once, shared by `Arc`
//! between its lease and every list that shows it, with its last renewal in an atomic that heartbeats store to
//! and readers load from. Each service's instances at its revision are a [`Listing`]: an immutable list that
//! the state rebuilds (on the first read after a change) only for the services that changed. A read takes the
//! `Arc`s it needs under the state's lock, which costs a few pointer copies, and copies, filters and
//! serializes after releasing it; heartbeats and registrations never wait for a reader's copy.

use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use rpc_core::server::layer::LoadReport;

use crate::api::{
    Instance, InstanceReport, InstanceState, InstanceStatus, LOAD_WINDOW, LoadSummary,
    ServiceReport, ServiceStatus, ServiceSummary, Snapshot,
};

/// The renewal of an instance another replica holds: never late here.
const HELD_ELSEWHERE: u64 = u64::MAX;

/// An instance as registered, with its last renewal.
#[derive(Debug)]
pub(crate) struct Listed {
    instance: Instance,
    /// The weight it registered with (`instance.weight` is the one an operator set, if one did).
    registered_weight: u32,
    /// Nanoseconds from the registry's [`Clock`] origin to the last heartbeat (or the registration).
    renewed: AtomicU64,
    /// Its last load reports, newest last (at most [`LOAD_WINDOW`]).
    load: Mutex<VecDeque<LoadReport>>,
}

impl Deref for Listed {
    type Target = Instance;

    fn deref(&self) -> &Instance {
        &self.instance
    }
}

impl Listed {
    /// `instance`, registered at `now`.
    pub(crate) fn new(instance: Instance, clock: &Clock, now: Instant) -> Listed {
        Listed {
            registered_weight: instance.weight,
            instance,
            renewed: AtomicU64::new(clock.nanos(now)),
            load: Mutex::default(),
        }
    }

    /// The same instance with weight `weight` (an operator's, or its own again): its renewal and load reports
    /// carried over.
    pub(crate) fn reweighed(&self, weight: u32) -> Listed {
        Listed {
            instance: Instance {
                weight,
                ..self.instance.clone()
            },
            registered_weight: self.registered_weight,
            renewed: AtomicU64::new(self.renewed.load(Ordering::Relaxed)),
            load: Mutex::new(rpc_core::sync::lock(&self.load).clone()),
        }
    }

    /// The weight it registered with.
    pub(crate) fn registered_weight(&self) -> u32 {
        self.registered_weight
    }

    /// A load report came with a heartbeat.
    pub(crate) fn add_load(&self, load: LoadReport) {
        let mut window = rpc_core::sync::lock(&self.load);
        if window.len() == LOAD_WINDOW {
            window.pop_front();
        }
        window.push_back(load);
    }

    /// What its load reports say, if it sent any.
    pub(crate) fn load(&self) -> Option<LoadSummary> {
        let window = rpc_core::sync::lock(&self.load);
        let last = window.back()?;
        Some(LoadSummary {
            reports: window.len() as u32,
            window_ms: window.iter().map(|r| r.window_ms).sum(),
            calls: window.iter().map(|r| r.calls).sum(),
            errors: window.iter().map(|r| r.errors).sum(),
            p99_us: window.iter().map(|r| r.p99_us).max().unwrap_or(0),
            in_flight: last.in_flight,
        })
    }

    /// The same instance, held by another replica (the etcd store): that replica renews it and removes it
    /// when it expires, so here it counts as just renewed.
    #[cfg(feature = "etcd")]
    pub(crate) fn held_elsewhere(self) -> Listed {
        self.renewed.store(HELD_ELSEWHERE, Ordering::Relaxed);
        self
    }

    /// A heartbeat at `now`.
    pub(crate) fn renew(&self, clock: &Clock, now: Instant) {
        self.renewed.store(clock.nanos(now), Ordering::Relaxed);
    }

    /// Time since the last heartbeat, at `now`.
    pub(crate) fn age(&self, clock: &Clock, now: Instant) -> Duration {
        let renewed = self.renewed.load(Ordering::Relaxed);
        if renewed == HELD_ELSEWHERE {
            return Duration::ZERO;
        }
        let renewed = clock.origin + Duration::from_nanos(renewed);
        now.saturating_duration_since(renewed)
    }

    /// Whether it is late, given the [`Clock::late_cutoff`] of now: one atomic load and a comparison, so that
    /// the instances of a whole registry are counted in a few milliseconds.
    pub(crate) fn is_late(&self, late_cutoff: u64) -> bool {
        self.renewed.load(Ordering::Relaxed) < late_cutoff
    }

    /// The instance with how its heartbeats stand at `now`.
    pub(crate) fn status(&self, clock: &Clock, now: Instant) -> InstanceStatus {
        let age = self.age(clock, now);
        InstanceStatus {
            instance: self.instance.clone(),
            state: if age > clock.late_after() {
                InstanceState::Late
            } else {
                InstanceState::Up
            },
            heartbeat_age_ms: u64::try_from(age.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// Its status at `now`, its own weight and its load.
    pub(crate) fn report(&self, clock: &Clock, now: Instant) -> InstanceReport {
        InstanceReport {
            status: self.status(clock, now),
            registered_weight: self.registered_weight,
            load: self.load(),
        }
    }
}

/// The registry's time origin and TTL: what turns a renewal into an age and a state.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    origin: Instant,
    ttl: Duration,
}

impl Clock {
    pub(crate) fn new(origin: Instant, ttl: Duration) -> Clock {
        Clock { origin, ttl }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// An instance is late after half the TTL without a heartbeat.
    fn late_after(&self) -> Duration {
        self.ttl / 2
    }

    /// The renewal (in nanoseconds from the origin) before which an instance is late at `now`: it is late when
    /// its age is over half the TTL, that is when it was renewed before `now` minus half the TTL.
    pub(crate) fn late_cutoff(&self, now: Instant) -> u64 {
        self.nanos(now)
            .saturating_sub(u64::try_from(self.late_after().as_nanos()).unwrap_or(u64::MAX))
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// The instances of one service at one revision, by address. Never changed once built.
#[derive(Debug)]
pub(crate) struct Listing {
    pub(crate) name: String,
    /// The registry's revision when the service last changed (0: it never had an instance here).
    pub(crate) revision: u64,
    pub(crate) instances: Vec<Arc<Listed>>,
    /// The sum of the instances' weights.
    pub(crate) total_weight: u64,
}

impl Listing {
    pub(crate) fn new(name: String, revision: u64, instances: Vec<Arc<Listed>>) -> Listing {
        let total_weight = instances.iter().map(|i| u64::from(i.weight)).sum();
        Listing {
            name,
            revision,
            instances,
            total_weight,
        }
    }

    /// The answer to `instances` and `watch`.
    pub(crate) fn snapshot(&self, epoch: u64) -> Snapshot {
        Snapshot {
            service: self.name.clone(),
            epoch,
            revision: self.revision,
            instances: self.instances.iter().map(|i| i.instance.clone()).collect(),
        }
    }

    /// The service with each instance's status at `now`.
    pub(crate) fn status(&self, clock: &Clock, now: Instant) -> ServiceStatus {
        ServiceStatus {
            name: self.name.clone(),
            revision: self.revision,
            instances: self
                .instances
                .iter()
                .map(|i| i.status(clock, now))
                .collect(),
        }
    }

    /// The service with each instance's report at `now`.
    pub(crate) fn report(&self, clock: &Clock, now: Instant) -> ServiceReport {
        ServiceReport {
            name: self.name.clone(),
            revision: self.revision,
            instances: self
                .instances
                .iter()
                .map(|i| i.report(clock, now))
                .collect(),
        }
    }

    pub(crate) fn summary(&self) -> ServiceSummary {
        ServiceSummary {
            name: self.name.clone(),
            instances: self.instances.len(),
            revision: self.revision,
        }
    }
}

/// Every service with instances, by name: what the dashboard, `services`, `status` and the metrics read.
pub(crate) type Listings = Arc<[Arc<Listing>]>;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_instance_turns_late_after_half_the_ttl_by_its_age_and_by_the_cutoff_alike() {
        let origin = Instant::now();
        let clock = Clock::new(origin, Duration::from_secs(3));
        let instance = Instance {
            service: "Calc".into(),
            address: "10.0.0.1:1".into(),
            weight: 1,
            metadata: Default::default(),
            lease: 1,
            incarnation: 1,
        };
        let listed = Listed::new(instance, &clock, origin + Duration::from_millis(700));
        for (at, late) in [(2200, false), (2201, true)] {
            let now = origin + Duration::from_millis(at);
            let status = listed.status(&clock, now);
            assert_eq!(status.state == InstanceState::Late, late, "at {at} ms");
            assert_eq!(listed.is_late(clock.late_cutoff(now)), late, "at {at} ms");
        }
        // A heartbeat, seen by every holder of the `Arc` without the state.
        listed.renew(&clock, origin + Duration::from_millis(2100));
        let now = origin + Duration::from_millis(2300);
        assert_eq!(listed.status(&clock, now).heartbeat_age_ms, 200);
        assert!(!listed.is_late(clock.late_cutoff(now)));
        // Before half a TTL has passed since the origin, nothing can be late.
        assert_eq!(clock.late_cutoff(origin + Duration::from_secs(1)), 0);
    }
}
