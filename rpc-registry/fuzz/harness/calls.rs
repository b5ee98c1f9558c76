//! The calls the harness makes on the registry, and what each answer must be given the harness's model:
//! registrations against the limits and the leases held, heartbeats and deregistrations against the current
//! leases, watches against the registry's epoch and the service's revision.

use std::collections::BTreeSet;
use std::time::Duration;

use rpc_registry::api::{
    Instance, Lease, LeaseRef, NewInstance, Registry, RegistryError, Snapshot,
};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::checks::assert_unchanged;
use super::{
    Fuzz, INLINE_WATCH, MAX_INSTANCES, MAX_INSTANCES_PER_SERVICE, MAX_METADATA_BYTES,
    MAX_METADATA_ENTRIES, MAX_NAME_LEN, MAX_SERVICES, TTL, through_codec,
};

/// A lease the harness holds, and the instance the registry must list for it.
#[derive(Debug)]
pub(super) struct Held {
    pub(super) instance: Instance,
    pub(super) renewed: Instant,
}

/// A watch running in its own task.
#[derive(Debug)]
pub(super) struct Watch {
    pub(super) call: WatchCall,
    /// The answer and when it came; `None` if the caller gave up first.
    pub(super) handle: JoinHandle<Option<(Snapshot, Instant)>>,
}

/// A watch's arguments, and what the registry held when it was called.
#[derive(Debug)]
pub(super) struct WatchCall {
    pub(super) service: String,
    pub(super) epoch: u64,
    pub(super) since: u64,
    pub(super) wait: Duration,
    /// The service's revision at the call.
    pub(super) current: u64,
    /// Whether the registry may answer at once instead of waiting: the name is longer than `max_name_len`, or
    /// the registry tracks `max_services` services and perhaps not this one.
    pub(super) no_room: bool,
    pub(super) started: Instant,
}

/// A rule a registration breaks, with the configuration name a refusal for it quotes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    Name,
    MetadataEntries,
    MetadataBytes,
    PerService,
    Instances,
    Services,
}

impl Rule {
    /// Whether `error` is a refusal for this rule.
    fn matches(self, error: &RegistryError) -> bool {
        let quote = match self {
            Rule::Name => return matches!(error, RegistryError::Invalid(_)),
            Rule::MetadataEntries => "(max_metadata_entries)",
            Rule::MetadataBytes => "(max_metadata_bytes)",
            Rule::PerService => "(max_instances_per_service)",
            Rule::Instances => "(max_instances)",
            Rule::Services => "(max_services)",
        };
        matches!(error, RegistryError::LimitExceeded(message) if message.contains(quote))
    }
}

impl Fuzz {
    /// The services the registry must keep: those with instances, and those a running watch waits on. (It may
    /// keep more: a watch its caller gave up leaves the service's entry behind until room is needed.)
    fn tracked(&self) -> BTreeSet<&str> {
        let mut tracked: BTreeSet<&str> = self
            .watches
            .iter()
            .filter(|w| !w.handle.is_finished() && w.call.service.len() <= MAX_NAME_LEN)
            .map(|w| w.call.service.as_str())
            .collect();
        tracked.extend(self.model.keys().map(|(s, _)| s.as_str()));
        tracked
    }

    /// The rules `new` breaks, as far as the harness can tell, and whether the one on services is certain (it is
    /// not if a watch its caller gave up may have left the service's entry behind).
    fn rules_broken(&self, new: &NewInstance) -> (Vec<Rule>, bool) {
        let mut broken = Vec::new();
        for name in [&new.service, &new.address] {
            if name.is_empty() || name.len() > MAX_NAME_LEN {
                broken.push(Rule::Name);
            }
        }
        if new.metadata.len() > MAX_METADATA_ENTRIES {
            broken.push(Rule::MetadataEntries);
        }
        let bytes: usize = new.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > MAX_METADATA_BYTES {
            broken.push(Rule::MetadataBytes);
        }
        let key = (new.service.clone(), new.address.clone());
        let mut certain = true;
        // A new registration of a registered address replaces it, and adds nothing.
        if !self.model.contains_key(&key) {
            let of_service = self.model.keys().filter(|(s, _)| *s == new.service).count();
            if of_service >= MAX_INSTANCES_PER_SERVICE {
                broken.push(Rule::PerService);
            }
            if self.model.len() >= MAX_INSTANCES {
                broken.push(Rule::Instances);
            }
            let tracked = self.tracked();
            if !tracked.contains(new.service.as_str()) && tracked.len() >= MAX_SERVICES {
                broken.push(Rule::Services);
                certain = !self.watched.contains(&new.service);
            }
        }
        (broken, certain)
    }

    pub(super) async fn register(&mut self, new: NewInstance) {
        self.learn(&new.service);
        let (broken, certain) = self.rules_broken(&new);
        let now = Instant::now();
        match self.registry.register(new.clone()).await {
            Ok(lease) => {
                let only_uncertain = !certain && broken == [Rule::Services];
                assert!(
                    broken.is_empty() || only_uncertain,
                    "accepted a registration that breaks {broken:?}: {new:?}"
                );
                self.granted_lease(new, lease, now);
            }
            Err(error) => {
                assert!(
                    broken.iter().any(|rule| rule.matches(&error)),
                    "refused a registration for {error:?}, but it breaks only {broken:?}: {new:?}"
                );
                let after = self.view().await;
                assert_unchanged(&self.last, &after);
            }
        }
    }

    fn granted_lease(&mut self, new: NewInstance, lease: Lease, now: Instant) {
        let ttl_ms = TTL.as_millis() as u64;
        assert_eq!(
            (lease.ttl_ms, lease.heartbeat_ms),
            (ttl_ms, ttl_ms / 3),
            "lease timings"
        );
        assert!(
            lease.id > self.last_lease,
            "lease {} granted after lease {}",
            lease.id,
            self.last_lease
        );
        self.last_lease = lease.id;
        let key = (new.service.clone(), new.address.clone());
        let incarnation = self
            .model
            .get(&key)
            .map_or(1, |held| held.instance.incarnation + 1);
        assert_eq!(
            lease.incarnation,
            incarnation,
            "incarnation of {key:?} after {:?}",
            self.model.get(&key)
        );
        self.granted.push(LeaseRef {
            lease: lease.id,
            incarnation: lease.incarnation,
            service: new.service.clone(),
            address: new.address.clone(),
        });
        let instance = Instance {
            service: new.service,
            address: new.address,
            weight: new.weight,
            metadata: new.metadata,
            lease: lease.id,
            incarnation: lease.incarnation,
        };
        self.model.insert(
            key,
            Held {
                instance,
                renewed: now,
            },
        );
    }

    /// The (service, address) of the current lease `lease` names, if it names one by its own id, incarnation,
    /// service and address.
    fn current(&self, lease: &LeaseRef) -> Option<(String, String)> {
        let key = (lease.service.clone(), lease.address.clone());
        let held = self.model.get(&key)?;
        (held.instance.lease == lease.lease && held.instance.incarnation == lease.incarnation)
            .then_some(key)
    }

    /// The refusal of a heartbeat or deregistration of a lease that is not current.
    fn stale(&self, lease: &LeaseRef) -> RegistryError {
        let key = (lease.service.clone(), lease.address.clone());
        match self.model.get(&key) {
            Some(held) if held.instance.lease > lease.lease => RegistryError::Superseded {
                lease: lease.lease,
                incarnation: lease.incarnation,
                current: held.instance.incarnation,
            },
            _ => RegistryError::UnknownLease { lease: lease.lease },
        }
    }

    pub(super) async fn heartbeat(&mut self, lease: LeaseRef) {
        let current = self.current(&lease);
        let now = Instant::now();
        let result = self.registry.heartbeat(lease.clone()).await;
        match (result, current) {
            (Ok(()), Some(key)) => {
                if let Some(held) = self.model.get_mut(&key) {
                    held.renewed = now;
                }
            }
            (Ok(()), None) => panic!("accepted a heartbeat of a lease it does not hold: {lease:?}"),
            (Err(error), Some(key)) => {
                panic!("refused a heartbeat of the current lease of {key:?}: {error}; {lease:?}")
            }
            (Err(error), None) => {
                assert_eq!(error, self.stale(&lease), "refusal of {lease:?}")
            }
        }
    }

    pub(super) async fn deregister(&mut self, lease: LeaseRef) {
        let current = self.current(&lease);
        let result = self.registry.deregister(lease.clone()).await;
        match (result, current) {
            (Ok(()), Some(key)) => {
                self.model.remove(&key);
            }
            (Ok(()), None) => assert_eq!(
                self.stale(&lease),
                RegistryError::UnknownLease { lease: lease.lease },
                "accepted a deregistration of a superseded lease"
            ),
            (Err(error), Some(key)) => {
                panic!(
                    "refused a deregistration of the current lease of {key:?}: {error}; {lease:?}"
                )
            }
            (Err(error), None) => {
                let expected = self.stale(&lease);
                assert!(
                    matches!(expected, RegistryError::Superseded { .. }),
                    "refused the deregistration of an unknown lease (it is idempotent): {error}"
                );
                assert_eq!(error, expected, "refusal of {lease:?}");
            }
        }
    }

    /// Heartbeats every listed instance with its own `LeaseRef`; each must be accepted.
    pub(super) async fn heartbeat_every_instance(&mut self) {
        let view = self.view().await;
        for snapshot in view.snapshots.values() {
            for instance in &snapshot.instances {
                let lease = LeaseRef {
                    lease: instance.lease,
                    incarnation: instance.incarnation,
                    service: instance.service.clone(),
                    address: instance.address.clone(),
                };
                let (lease,) = through_codec(&(lease,));
                let result = self.registry.heartbeat(lease.clone()).await;
                assert_eq!(
                    result,
                    Ok(()),
                    "a listed instance's own lease was refused: {lease:?}"
                );
                if let Some(held) = self.model.get_mut(&(lease.service, lease.address)) {
                    held.renewed = Instant::now();
                }
            }
        }
    }

    /// Calls `watch`, inline (given up after [`INLINE_WATCH`]) or, with `spawned`, in a task that gives up after
    /// that long.
    pub(super) async fn watch(
        &mut self,
        service: String,
        epoch: u64,
        since: u64,
        wait_ms: u64,
        spawned: Option<Duration>,
    ) {
        let current = self.registry.instances(service.clone()).await.revision;
        let tracked = self.tracked();
        let no_room = service.len() > MAX_NAME_LEN
            || !tracked.contains(service.as_str()) && tracked.len() >= MAX_SERVICES;
        self.watched.insert(service.clone());
        let registry = self.registry.clone();
        let (name, give_up) = (service.clone(), spawned.unwrap_or(INLINE_WATCH));
        let call = async move {
            let answer = tokio::time::timeout(give_up, registry.watch(name, epoch, since, wait_ms));
            answer.await.ok().map(|snapshot| (snapshot, Instant::now()))
        };
        let call_args = WatchCall {
            service,
            epoch,
            since,
            wait: Duration::from_millis(wait_ms),
            current,
            no_room,
            started: Instant::now(),
        };
        if spawned.is_some() {
            let handle = tokio::spawn(call);
            self.watches.push(Watch {
                call: call_args,
                handle,
            });
        } else if let Some((snapshot, answered)) = call.await {
            self.check_watch(&call_args, answered, &snapshot);
        }
    }
}
