//! The checks after every operation: what the registry lists for every followed service, against the limits,
//! the harness's model of the leases, and the revisions seen before; and the answers of watches that finished.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rpc_registry::api::{Instance, InstanceState, Registry, ServiceSummary, Snapshot};
use tokio::time::Instant;

use super::calls::WatchCall;
use super::{
    EVICTION_SLACK, Fuzz, MAX_INSTANCES, MAX_INSTANCES_PER_SERVICE, MAX_NAME_LEN, MAX_SERVICES,
    MAX_WATCH_WAIT, TTL,
};

/// The last snapshot of a service the harness saw.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) revision: u64,
    pub(super) instances: Vec<Instance>,
    /// The highest revision seen.
    pub(super) highest: u64,
}

/// What one `instances` call per followed service, and one `services` call, return.
#[derive(Debug, Default, PartialEq)]
pub(super) struct View {
    pub(super) snapshots: BTreeMap<String, Snapshot>,
    pub(super) services: Vec<ServiceSummary>,
}

impl Fuzz {
    /// Checks the answer of a watch, which came at `answered`.
    pub(super) fn check_watch(&self, call: &WatchCall, answered: Instant, snapshot: &Snapshot) {
        let service = &call.service;
        self.check_answer(service, snapshot);
        let waited = answered - call.started;
        if call.epoch != self.epoch || call.since != call.current {
            assert_eq!(
                waited,
                Duration::ZERO,
                "a watch of {service} from another epoch or revision than the current one waited"
            );
        } else if snapshot.revision == call.since && !call.no_room {
            assert!(
                waited >= call.wait.min(MAX_WATCH_WAIT),
                "a watch of {service} answered unchanged after {waited:?}, before its wait of {:?}",
                call.wait
            );
        }
    }

    /// Checks an answer about `service` on its own: the service, the epoch, the limit, the order.
    pub(super) fn check_answer(&self, service: &str, snapshot: &Snapshot) {
        if service.len() > MAX_NAME_LEN {
            // A name the registry cannot track is answered at once, empty, under a short escaped prefix of
            // the name (64 characters, each escaped in at most 10 bytes, then its length), never the name whole.
            assert!(
                snapshot.instances.is_empty(),
                "instances listed under a name longer than max_name_len"
            );
            assert!(
                snapshot.service.len() <= 1024,
                "an answer echoes {} bytes of a {}-byte name",
                snapshot.service.len(),
                service.len()
            );
        } else {
            assert_eq!(snapshot.service, service, "answer about another service");
        }
        assert_eq!(snapshot.epoch, self.epoch, "the epoch changed");
        assert!(
            snapshot.instances.len() <= MAX_INSTANCES_PER_SERVICE,
            "{service} has {} instances",
            snapshot.instances.len()
        );
        assert!(
            snapshot
                .instances
                .windows(2)
                .all(|w| w[0].address < w[1].address),
            "instances of {service} not in address order, or repeated: {:?}",
            snapshot.instances
        );
        assert!(
            snapshot.instances.iter().all(|i| i.service == service),
            "an instance of another service listed under {service}"
        );
        if snapshot.revision == 0 {
            assert!(
                snapshot.instances.is_empty(),
                "{service} has instances at revision 0"
            );
        }
    }

    /// Checks `status(service)` against the view of the last check (the registry has not changed since) and the
    /// model: the same services and instances at the same revisions, each with the age of its last heartbeat, and
    /// late exactly when that is over half the TTL.
    pub(super) async fn check_status(&self, service: Option<String>) {
        let now = Instant::now();
        let status = self.registry.status(service.clone()).await;
        let expected: Vec<(&String, &Snapshot)> = self
            .last
            .snapshots
            .iter()
            .filter(|(name, snapshot)| {
                !snapshot.instances.is_empty() && service.as_ref().is_none_or(|only| only == *name)
            })
            .collect();
        let names: Vec<&String> = expected.iter().map(|(name, _)| *name).collect();
        let got: Vec<&String> = status.iter().map(|s| &s.name).collect();
        assert_eq!(got, names, "status of {service:?} lists other services");
        for (status, (_, snapshot)) in status.iter().zip(&expected) {
            assert_eq!(
                status.revision, snapshot.revision,
                "status of {}",
                status.name
            );
            let instances: Vec<&Instance> = status.instances.iter().map(|i| &i.instance).collect();
            let listed: Vec<&Instance> = snapshot.instances.iter().collect();
            assert_eq!(
                instances, listed,
                "status of {} lists other instances",
                status.name
            );
            for instance in &status.instances {
                let key = (
                    instance.instance.service.clone(),
                    instance.instance.address.clone(),
                );
                let age = now - self.model[&key].renewed;
                let state = if age > TTL / 2 {
                    InstanceState::Late
                } else {
                    InstanceState::Up
                };
                assert_eq!(
                    (instance.state, instance.heartbeat_age_ms),
                    (state, age.as_millis() as u64),
                    "status of {key:?}, last renewed {age:?} ago"
                );
            }
        }
    }

    /// The instances of every followed service, and the list of services.
    pub(super) async fn view(&self) -> View {
        let mut names: BTreeSet<&String> = self.names.iter().collect();
        names.extend(self.model.keys().map(|(s, _)| s));
        let mut snapshots = BTreeMap::new();
        for name in names {
            let snapshot = self.registry.instances(name.clone()).await;
            snapshots.insert(name.clone(), snapshot);
        }
        let services = self.registry.services().await;
        View {
            snapshots,
            services,
        }
    }

    /// The checks after every operation.
    pub(super) async fn check(&mut self) {
        let now = Instant::now();
        let view = self.view().await;

        // Limits.
        let total: usize = view.snapshots.values().map(|s| s.instances.len()).sum();
        assert!(total <= MAX_INSTANCES, "{total} instances in all");
        assert!(
            view.services.len() <= MAX_SERVICES,
            "{} services",
            view.services.len()
        );
        let listed: Vec<ServiceSummary> = view
            .snapshots
            .iter()
            .filter(|(_, s)| !s.instances.is_empty())
            .map(|(name, s)| ServiceSummary {
                name: name.clone(),
                instances: s.instances.len(),
                revision: s.revision,
            })
            .collect();
        assert_eq!(
            view.services, listed,
            "`services` disagrees with `instances`"
        );

        // The model: what is listed is what was registered, evicted neither early nor late.
        let mut leases = BTreeSet::new();
        for (name, snapshot) in &view.snapshots {
            self.check_answer(name, snapshot);
            for instance in &snapshot.instances {
                assert!(
                    leases.insert(instance.lease),
                    "lease {} listed twice",
                    instance.lease
                );
                let key = (instance.service.clone(), instance.address.clone());
                let held = self.model.get(&key);
                assert_eq!(
                    held.map(|h| &h.instance),
                    Some(instance),
                    "listed an instance the harness does not hold"
                );
            }
        }
        self.model.retain(|key, held| {
            let listed = view.snapshots[&key.0]
                .instances
                .iter()
                .any(|i| i.address == key.1);
            if listed {
                assert!(
                    now < held.renewed + TTL + EVICTION_SLACK,
                    "lease {} of {key:?} still listed {:?} after its last renewal",
                    held.instance.lease,
                    now - held.renewed
                );
            } else {
                assert!(
                    now >= held.renewed + TTL,
                    "lease {} of {key:?} evicted {:?} after its last renewal, before its TTL",
                    held.instance.lease,
                    now - held.renewed
                );
            }
            listed
        });

        // Revisions.
        for (name, snapshot) in &view.snapshots {
            let seen = self.seen.entry(name.clone()).or_default();
            if snapshot.revision != 0 {
                assert!(
                    snapshot.revision >= seen.highest,
                    "the revision of {name} went back from {} to {}",
                    seen.highest,
                    snapshot.revision
                );
                seen.highest = snapshot.revision;
            }
            if snapshot.revision == seen.revision {
                assert_eq!(
                    snapshot.instances, seen.instances,
                    "the instances of {name} changed without a new revision"
                );
            }
            seen.revision = snapshot.revision;
            seen.instances.clone_from(&snapshot.instances);
        }

        // Watches that answered.
        let mut running = Vec::new();
        for watch in std::mem::take(&mut self.watches) {
            if !watch.handle.is_finished() {
                running.push(watch);
                continue;
            }
            let answer = watch.handle.await.expect("a watch task does not panic");
            if let Some((snapshot, answered)) = answer {
                self.check_watch(&watch.call, answered, &snapshot);
            }
        }
        self.watches = running;
        self.last = view;
    }
}

/// Asserts that a refused registration changed nothing, but the revision of a service with no instance: the
/// registry may forget such a service (to make room for another), and then answers revision 0.
///
/// `before` is the view of the last check, which may follow a service only for an instance of the model that
/// it found evicted (once `MAX_NAMES` names are followed): `after` no longer follows it, and
/// `before` listed no instance of it.
pub(super) fn assert_unchanged(before: &View, after: &View) {
    assert_eq!(
        before.services, after.services,
        "a refused registration changed the services"
    );
    for (name, old) in &before.snapshots {
        let Some(new) = after.snapshots.get(name) else {
            assert!(
                old.instances.is_empty(),
                "{name} is no longer followed but listed instances"
            );
            continue;
        };
        if old.instances.is_empty() && new.instances.is_empty() && new.revision == 0 {
            continue;
        }
        assert_eq!(old, new, "a refused registration changed {name}");
    }
}
