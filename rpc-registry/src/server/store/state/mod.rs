//! The registry's state: leases, the instances of each service, incarnations, revisions, and the leases' expiry
//! times in a timer wheel (tokio-util's `DelayQueue`), so that eviction follows expiry order and never scans.
//! Plain synchronous logic; `service.rs` puts it behind a lock and drives the timer.
//!
//! Every map is bounded: instances by [`Limits`], and services by `max_services` (an entry with no instance is
//! dropped when its last watcher leaves). An address's incarnation is its current instance's, so it needs no map
//! of its own; lease ids only grow, so a lease older than the address's current one is superseded.
//!
//! Reads do not copy under the lock: they take `Arc`s of [`Listing`]s (each service's instances at its revision,
//! rebuilt on the first read after a change of that service) and of history records, and copy after the lock is
//! released (see `listing`). Every change is recorded, with its reason, in the [`History`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::time::DelayQueue;
use tokio_util::time::delay_queue::Key;

use crate::api::{Instance, Lease, LeaseRef, NewInstance, RegistryError, RemovalReason};
use crate::server::config::RegistryConfig;
use crate::server::credentials::Identity;
use crate::server::store::history::{History, Record, What};
use crate::server::store::listing::{Clock, Listed, Listing, Listings};
use crate::server::store::weights::Weights;

#[cfg(feature = "etcd")]
mod mirror;

/// The bounds of the registry's state, from its configuration.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_instances: usize,
    pub(crate) max_instances_per_service: usize,
    pub(crate) max_services: usize,
    pub(crate) max_metadata_entries: usize,
    pub(crate) max_metadata_bytes: usize,
    pub(crate) max_name_len: usize,
}

impl Limits {
    pub(crate) fn of(config: &RegistryConfig) -> Limits {
        Limits {
            max_instances: config.max_instances,
            max_instances_per_service: config.max_instances_per_service,
            max_services: config.max_services,
            max_metadata_entries: config.max_metadata_entries,
            max_metadata_bytes: config.max_metadata_bytes,
            max_name_len: config.max_name_len,
        }
    }
}

/// One lease.
#[derive(Debug)]
pub(crate) struct LeaseEntry {
    /// The instance and its last renewal, shared with the listings and the history records that show it.
    pub(crate) instance: Arc<Listed>,
    /// Its timer, if this process renews it: the etcd store mirrors the instances other replicas hold, and
    /// stops renewing one of its own once its timer fired (etcd then removes it).
    expiry: Option<Key>,
    /// Who registered it: only they or an admin may renew, remove or supersede it.
    pub(crate) owner: Identity,
}

/// One service.
#[derive(Debug)]
pub(crate) struct ServiceEntry {
    /// Lease ids by address.
    instances: BTreeMap<String, u64>,
    revision: u64,
    /// The service's revision, for watchers.
    changed: watch::Sender<u64>,
    /// Its instances at `revision`, once a read asked for them; dropped at each change.
    listing: Option<Arc<Listing>>,
}

impl ServiceEntry {
    fn new() -> ServiceEntry {
        ServiceEntry {
            instances: BTreeMap::new(),
            revision: 0,
            changed: watch::Sender::new(0),
            listing: None,
        }
    }

    /// Its instances at its revision, built from `leases` if no read asked since the last change.
    fn listing(&mut self, name: &str, leases: &HashMap<u64, LeaseEntry>) -> Arc<Listing> {
        let (instances, revision) = (&self.instances, self.revision);
        let listing = self.listing.get_or_insert_with(|| {
            let listed = instances
                .values()
                .filter_map(|id| leases.get(id))
                .map(|l| Arc::clone(&l.instance))
                .collect();
            Arc::new(Listing::new(name.to_owned(), revision, listed))
        });
        Arc::clone(listing)
    }
}

/// Everything the registry knows.
#[derive(Debug)]
pub(crate) struct State {
    epoch: u64,
    /// The registry's time origin and TTL (`ttl` is its TTL).
    clock: Clock,
    ttl: Duration,
    limits: Limits,
    revision: u64,
    /// The revision the next change takes, if a store elsewhere sets it (etcd's); otherwise one more.
    pinned: Option<u64>,
    next_lease: u64,
    pub(crate) leases: HashMap<u64, LeaseEntry>,
    services: BTreeMap<String, ServiceEntry>,
    /// Lease expiries, soonest first.
    pub(crate) expiries: DelayQueue<u64>,
    /// The registry's revision, for watchers of every service (the dashboard).
    any_change: watch::Sender<u64>,
    /// Services with at least one instance.
    with_instances: usize,
    /// The listings of every service with instances, once a read asked for them; dropped at each change.
    listings: Option<Listings>,
    /// The last changes, with their reasons.
    history: History,
    /// The weights operators set, which registrations of those addresses take in place of their own. Shared, so
    /// that a read copies them after the lock is released.
    weights: Arc<Weights>,
}

impl State {
    pub(crate) fn new(epoch: u64, ttl: Duration, limits: Limits) -> State {
        State {
            epoch,
            clock: Clock::new(Instant::now(), ttl),
            ttl,
            limits,
            revision: 0,
            pinned: None,
            next_lease: 1,
            leases: HashMap::new(),
            services: BTreeMap::new(),
            expiries: DelayQueue::new(),
            any_change: watch::Sender::new(0),
            with_instances: 0,
            listings: None,
            history: History::default(),
            weights: Arc::default(),
        }
    }

    /// The weights operators set.
    pub(crate) fn weights(&self) -> Arc<Weights> {
        Arc::clone(&self.weights)
    }

    /// Replaces the weights operators set (those kept on disk, at start).
    pub(crate) fn restore_weights(&mut self, weights: Weights) {
        self.weights = Arc::new(weights);
    }

    /// Sets (or, with `None`, undoes) an operator's weight for `address` in `service`. The instance that holds
    /// the address now, if any, takes it at once (a new revision its watchers hear of), and later registrations
    /// of the address take it too. Returns that instance as it is now.
    pub(crate) fn set_weight(
        &mut self,
        service: &str,
        address: &str,
        weight: Option<u32>,
    ) -> Option<Arc<Listed>> {
        Arc::make_mut(&mut self.weights).set(service, address, weight);
        let lease = *self.services.get(service)?.instances.get(address)?;
        let entry = self.leases.get_mut(&lease)?;
        let wanted = weight.unwrap_or(entry.instance.registered_weight());
        if wanted == entry.instance.weight {
            return Some(Arc::clone(&entry.instance));
        }
        let from = entry.instance.weight;
        let reweighed = Arc::new(entry.instance.reweighed(wanted));
        entry.instance = Arc::clone(&reweighed);
        self.touch(
            service,
            What::Reweighed {
                instance: Arc::clone(&reweighed),
                from,
            },
        );
        Some(reweighed)
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// A change to `service`: a new revision, recorded in the history as `what`, and its watchers told.
    fn touch(&mut self, service: &str, what: What) {
        let revision = self.pinned.unwrap_or(self.revision + 1).max(self.revision);
        self.revision = revision;
        self.history.push(Record {
            revision,
            at: SystemTime::now(),
            what,
        });
        self.listings = None;
        let entry = self
            .services
            .entry(service.to_owned())
            .or_insert_with(ServiceEntry::new);
        entry.revision = revision;
        entry.listing = None;
        entry.changed.send_replace(revision);
        self.any_change.send_replace(revision);
    }

    /// The registry's revision: that of its last change, to any service.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    /// The registry's revision, to wait for a change to any service.
    pub(crate) fn subscribe_all(&self) -> watch::Receiver<u64> {
        self.any_change.subscribe()
    }

    /// Instances registered, all services together.
    pub(crate) fn instance_count(&self) -> usize {
        self.leases.len()
    }

    /// The TTL.
    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The time origin and TTL that turn renewals into ages.
    pub(crate) fn clock(&self) -> Clock {
        self.clock
    }

    /// Registers `new` as anyone's (tests of the state alone).
    #[cfg(test)]
    pub(crate) fn register(
        &mut self,
        new: NewInstance,
        now: Instant,
    ) -> Result<Lease, RegistryError> {
        self.register_as(new, Identity::Anyone, now)
    }

    /// Registers `new`, owned by `owner` (the caller checked that it may supersede the address's instance).
    pub(crate) fn register_as(
        &mut self,
        new: NewInstance,
        owner: Identity,
        now: Instant,
    ) -> Result<Lease, RegistryError> {
        if !self.services.contains_key(&new.service) {
            // At the limit of services, make room from entries nobody uses any more.
            let _ = self.room_for_a_service();
        }
        self.check(&new)?;
        // A new registration of the same address supersedes the old one, and follows its incarnation.
        let superseded = self.take_holder(&new.service, &new.address);
        let incarnation = superseded.as_ref().map_or(1, |old| old.incarnation + 1);
        let id = self.next_lease;
        self.next_lease += 1;
        let expiry = self.expiries.insert(id, self.ttl);
        let instance = Instance {
            service: new.service,
            address: new.address,
            weight: new.weight,
            metadata: new.metadata,
            lease: id,
            incarnation,
        };
        let listed = Listed::new(instance, &self.clock, now);
        self.place(listed, Some(expiry), owner, superseded);
        let ttl_ms = self.ttl.as_millis() as u64;
        Ok(Lease {
            id,
            incarnation,
            ttl_ms,
            heartbeat_ms: (ttl_ms / 3).max(1),
        })
    }

    /// Takes out the instance that holds `address` in `service`, if any, with its timer: a new one supersedes it.
    fn take_holder(&mut self, service: &str, address: &str) -> Option<Arc<Listed>> {
        let lease = self.holder(service, address)?.lease;
        let entry = self.leases.remove(&lease)?;
        if let Some(expiry) = &entry.expiry {
            self.expiries.remove(expiry);
        }
        Some(entry.instance)
    }

    /// Lists `listed` (with the weight an operator set for its address, if any) under its lease, owned by
    /// `owner` and renewed by `expiry`'s timer if it has one: a change of its service, which `superseded`
    /// held before.
    fn place(
        &mut self,
        mut listed: Listed,
        expiry: Option<Key>,
        owner: Identity,
        superseded: Option<Arc<Listed>>,
    ) {
        if let Some(weight) = self.weights.get(&listed.service, &listed.address) {
            listed = listed.reweighed(weight);
        }
        let listed = Arc::new(listed);
        let (id, service, address) = (listed.lease, listed.service.clone(), listed.address.clone());
        let registered = What::Registered {
            instance: Arc::clone(&listed),
            superseded,
        };
        self.leases.insert(
            id,
            LeaseEntry {
                instance: listed,
                expiry,
                owner,
            },
        );
        let instances = &mut self
            .services
            .entry(service.clone())
            .or_insert_with(ServiceEntry::new)
            .instances;
        if instances.is_empty() {
            self.with_instances += 1;
        }
        instances.insert(address, id);
        self.touch(&service, registered);
    }

    /// Refuses a registration that is malformed or would cross a limit.
    fn check(&self, new: &NewInstance) -> Result<(), RegistryError> {
        State::check_sizes(&self.limits, new)?;
        self.check_room(new)
    }

    /// Refuses a registration that is malformed or larger than `l` allows: checked before anything else looks at
    /// it, without the state's lock.
    pub(crate) fn check_sizes(l: &Limits, new: &NewInstance) -> Result<(), RegistryError> {
        if new.service.is_empty() || new.address.is_empty() {
            return Err(RegistryError::Invalid(String::from(
                "a registration names a service and an address",
            )));
        }
        for (what, value) in [("service name", &new.service), ("address", &new.address)] {
            if value.len() > l.max_name_len {
                return Err(RegistryError::Invalid(format!(
                    "the {what} is {} bytes long, over the limit of {} (max_name_len)",
                    value.len(),
                    l.max_name_len
                )));
            }
        }
        if new.metadata.len() > l.max_metadata_entries {
            return Err(RegistryError::LimitExceeded(format!(
                "the registration carries {} metadata entries, over the limit of {} (max_metadata_entries)",
                new.metadata.len(),
                l.max_metadata_entries
            )));
        }
        let bytes: usize = new.metadata.iter().map(|(k, v)| k.len() + v.len()).sum();
        if bytes > l.max_metadata_bytes {
            return Err(RegistryError::LimitExceeded(format!(
                "the registration carries {bytes} bytes of metadata, over the limit of {} (max_metadata_bytes)",
                l.max_metadata_bytes
            )));
        }
        Ok(())
    }

    /// Refuses a registration that would cross a limit of instances or services.
    fn check_room(&self, new: &NewInstance) -> Result<(), RegistryError> {
        let l = &self.limits;
        let service = self.services.get(&new.service);
        // A new registration of an address already registered supersedes it: it adds nothing.
        if service.is_some_and(|s| s.instances.contains_key(&new.address)) {
            return Ok(());
        }
        let of_service = service.map_or(0, |s| s.instances.len());
        if of_service >= l.max_instances_per_service {
            return Err(RegistryError::LimitExceeded(format!(
                "{} already has {of_service} instances, the limit (max_instances_per_service)",
                crate::server::service::shown(&new.service)
            )));
        }
        if self.leases.len() >= l.max_instances {
            return Err(RegistryError::LimitExceeded(format!(
                "the registry already holds {} instances, the limit (max_instances)",
                self.leases.len()
            )));
        }
        if service.is_none() && self.services.len() >= l.max_services {
            return Err(RegistryError::LimitExceeded(format!(
                "the registry already tracks {} services, the limit (max_services)",
                self.services.len()
            )));
        }
        Ok(())
    }

    /// Checks that `lease` is current and names its own instance; otherwise says whether it expired or was
    /// superseded. (A lease id with another service's name is not that service's lease: credentials are
    /// checked against the name, so the name must be the lease's.)
    pub(crate) fn current(&self, lease: &LeaseRef) -> Result<(), RegistryError> {
        if let Some(entry) = self.leases.get(&lease.lease)
            && entry.instance.incarnation == lease.incarnation
            && entry.instance.service == lease.service
            && entry.instance.address == lease.address
        {
            return Ok(());
        }
        match self.holder(&lease.service, &lease.address) {
            // Lease ids only grow: the address's instance registered after this lease.
            Some(current) if current.lease > lease.lease => Err(RegistryError::Superseded {
                lease: lease.lease,
                incarnation: lease.incarnation,
                current: current.incarnation,
            }),
            _ => Err(RegistryError::UnknownLease { lease: lease.lease }),
        }
    }

    /// The instance that holds `address` in `service` now.
    fn holder(&self, service: &str, address: &str) -> Option<&Instance> {
        let lease = self.services.get(service)?.instances.get(address)?;
        self.leases.get(lease).map(|entry| &**entry.instance)
    }

    /// Who registered the instance that holds `address` in `service` now.
    pub(crate) fn owner(&self, service: &str, address: &str) -> Option<&Identity> {
        let lease = self.services.get(service)?.instances.get(address)?;
        self.leases.get(lease).map(|entry| &entry.owner)
    }

    /// Who registered the instance of `lease`, if `lease` is current.
    pub(crate) fn lease_owner(&self, lease: &LeaseRef) -> Option<&Identity> {
        self.current(lease).ok()?;
        self.leases.get(&lease.lease).map(|entry| &entry.owner)
    }

    pub(crate) fn heartbeat(
        &mut self,
        lease: &LeaseRef,
        now: Instant,
    ) -> Result<Option<Arc<Listed>>, RegistryError> {
        self.current(lease)?;
        let Some(entry) = self.leases.get_mut(&lease.lease) else {
            return Ok(None);
        };
        // Another replica's instance (or one of ours that expired, on its way out): not renewed here.
        let Some(expiry) = &entry.expiry else {
            return Err(RegistryError::UnknownLease { lease: lease.lease });
        };
        entry.instance.renew(&self.clock, now);
        self.expiries.reset(expiry, self.ttl);
        Ok(Some(Arc::clone(&entry.instance)))
    }

    /// Removes the instance of `lease`; `Ok(false)` if it was already gone (deregistration is idempotent).
    pub(crate) fn deregister(&mut self, lease: &LeaseRef) -> Result<bool, RegistryError> {
        match self.current(lease) {
            Ok(()) => {}
            Err(RegistryError::UnknownLease { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        match self.leases.remove(&lease.lease) {
            Some(entry) => {
                if let Some(expiry) = &entry.expiry {
                    self.expiries.remove(expiry);
                }
                self.drop_instance(entry.instance, RemovalReason::Deregistered);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The timer fired for `lease`: evict it (it was not renewed within the TTL).
    pub(crate) fn expire(&mut self, lease: u64) -> Option<Arc<Listed>> {
        let entry = self.leases.remove(&lease)?;
        self.drop_instance(Arc::clone(&entry.instance), RemovalReason::Evicted);
        Some(entry.instance)
    }

    fn drop_instance(&mut self, instance: Arc<Listed>, reason: RemovalReason) {
        if let Some(service) = self.services.get_mut(&instance.service)
            && service.instances.get(&instance.address) == Some(&instance.lease)
        {
            // The address has no instance left: a later registration starts again at incarnation 1, and a
            // leftover heartbeat of this one learns its lease is unknown.
            service.instances.remove(&instance.address);
            if service.instances.is_empty() {
                self.with_instances -= 1;
            }
            let name = instance.service.clone();
            self.touch(&name, What::Removed { instance, reason });
            self.forget_if_unused(&name);
        }
    }

    /// Whether one more service may be tracked; at the limit, first drops the entries that have no instance
    /// and no watcher left (a watch cancelled by its caller leaves one behind). The scan runs only at the limit.
    fn room_for_a_service(&mut self) -> bool {
        if self.services.len() >= self.limits.max_services {
            self.services
                .retain(|_, s| !s.instances.is_empty() || s.changed.receiver_count() > 0);
        }
        self.services.len() < self.limits.max_services
    }

    /// Drops the entry of `service` if it has no instance and nobody watches it.
    pub(crate) fn forget_if_unused(&mut self, service: &str) {
        if self
            .services
            .get(service)
            .is_some_and(|s| s.instances.is_empty() && s.changed.receiver_count() == 0)
        {
            self.services.remove(service);
        }
    }

    /// The instances of `service` at its revision (none, at revision 0, if it is not tracked), to copy after the
    /// lock is released. A name longer than any service may have ([`Limits::max_name_len`]) is not echoed back:
    /// its listing is named by a short escaped prefix ([`crate::server::service::shown`]).
    pub(crate) fn listing(&mut self, service: &str) -> Arc<Listing> {
        match self.services.get_mut(service) {
            Some(entry) => entry.listing(service, &self.leases),
            None if service.len() > self.limits.max_name_len => {
                let shown = crate::server::service::shown(service).to_string();
                Arc::new(Listing::new(shown, 0, Vec::new()))
            }
            None => Arc::new(Listing::new(service.to_owned(), 0, Vec::new())),
        }
    }

    /// Every service with instances, by name, to copy after the lock is released.
    pub(crate) fn listings(&mut self) -> Listings {
        if let Some(listings) = &self.listings {
            return Arc::clone(listings);
        }
        let leases = &self.leases;
        let listings: Listings = self
            .services
            .iter_mut()
            .filter(|(_, entry)| !entry.instances.is_empty())
            .map(|(name, entry)| entry.listing(name, leases))
            .collect();
        self.listings = Some(Arc::clone(&listings));
        listings
    }

    /// The history of changes.
    pub(crate) fn history(&self) -> &History {
        &self.history
    }

    /// The instances of `service` as `instances` answers.
    #[cfg(test)]
    pub(crate) fn snapshot(&mut self, service: &str) -> crate::api::Snapshot {
        let epoch = self.epoch;
        self.listing(service).snapshot(epoch)
    }

    /// The revision of `service` to watch, creating the service's entry so that a watcher can wait for its
    /// first instance; `None` if that would track more services than the limit, or a name longer than any service
    /// may have (the watcher is answered at once).
    pub(crate) fn subscribe(&mut self, service: &str) -> Option<watch::Receiver<u64>> {
        if service.len() > self.limits.max_name_len
            || !self.services.contains_key(service) && !self.room_for_a_service()
        {
            return None;
        }
        Some(
            self.services
                .entry(service.to_owned())
                .or_insert_with(ServiceEntry::new)
                .changed
                .subscribe(),
        )
    }

    /// Services tracked (with instances, or watched), as `max_services` counts them.
    pub(crate) fn tracked(&self) -> usize {
        self.services.len()
    }

    /// Services with instances, without listing them.
    pub(crate) fn service_count(&self) -> usize {
        self.with_instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::InstanceState;

    fn limits() -> Limits {
        Limits::of(&RegistryConfig::default())
    }

    fn new(service: &str, address: &str) -> NewInstance {
        NewInstance {
            service: service.to_owned(),
            address: address.to_owned(),
            weight: 1,
            metadata: BTreeMap::new(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_operator_s_weight_is_a_change_watchers_see_and_holds_through_re_registration() {
        let mut s = State::new(7, Duration::from_secs(3), limits());
        let now = Instant::now();
        let mut own = new("Calc", "10.0.0.1:1");
        own.weight = 5;
        s.register(own.clone(), now).unwrap();
        let watching = s.subscribe("Calc").unwrap();
        let drained = s.set_weight("Calc", "10.0.0.1:1", Some(0)).unwrap();
        assert_eq!((drained.weight, drained.registered_weight()), (0, 5));
        assert!(watching.has_changed().unwrap(), "watchers hear of it");
        let snapshot = s.snapshot("Calc");
        assert_eq!((snapshot.revision, snapshot.instances[0].weight), (2, 0));
        assert_eq!(s.listing("Calc").total_weight, 0);
        // The same weight again changes nothing.
        s.set_weight("Calc", "10.0.0.1:1", Some(0)).unwrap();
        assert_eq!(s.revision(), 2);
        // A restarted instance registers again with its own weight: the operator's holds.
        s.register(own.clone(), now).unwrap();
        let report = s.listing("Calc").report(&s.clock(), now);
        let again = &report.instances[0];
        assert_eq!(
            (again.status.instance.weight, again.registered_weight),
            (0, 5)
        );
        assert_eq!(again.status.instance.incarnation, 2);
        // Undone: its own weight again, now and for later registrations.
        let restored = s.set_weight("Calc", "10.0.0.1:1", None).unwrap();
        assert_eq!(restored.weight, 5);
        s.register(own, now).unwrap();
        assert_eq!(s.snapshot("Calc").instances[0].weight, 5);
        assert_eq!(s.weights().len(), 0);
        // Undoing where no instance is changes nothing and answers none.
        let revision = s.revision();
        assert!(s.set_weight("Calc", "10.0.0.9:1", None).is_none());
        assert_eq!(s.revision(), revision);
        let kinds: Vec<&str> = s
            .history()
            .after(0, 100)
            .iter()
            .map(|r| match r.what {
                What::Registered { .. } => "registered",
                What::Removed { .. } => "removed",
                What::Reweighed { .. } => "reweighed",
            })
            .collect();
        assert_eq!(
            kinds,
            [
                "registered",
                "reweighed",
                "registered",
                "reweighed",
                "registered"
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn revisions_grow_with_every_change() {
        let mut s = State::new(7, Duration::from_secs(3), limits());
        let now = Instant::now();
        let a = s.register(new("Calc", "10.0.0.1:1"), now).unwrap();
        assert_eq!(s.snapshot("Calc").revision, 1);
        s.register(new("Calc", "10.0.0.2:1"), now).unwrap();
        assert_eq!(s.snapshot("Calc").revision, 2);
        s.register(new("Other", "10.0.0.3:1"), now).unwrap();
        assert_eq!(
            s.snapshot("Calc").revision,
            2,
            "a change elsewhere leaves Calc's revision"
        );
        s.deregister(&a.reference("Calc", "10.0.0.1:1")).unwrap();
        let snap = s.snapshot("Calc");
        assert_eq!((snap.revision, snap.instances.len(), snap.epoch), (4, 1, 7));
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_is_shared_until_its_service_changes_and_heartbeats_rebuild_nothing() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let now = Instant::now();
        let a = s.register(new("Calc", "10.0.0.1:1"), now).unwrap();
        s.register(new("Other", "10.0.0.2:1"), now).unwrap();
        let (calc, all) = (s.listing("Calc"), s.listings());
        let later = now + Duration::from_secs(1);
        s.heartbeat(&a.reference("Calc", "10.0.0.1:1"), later)
            .unwrap();
        assert!(
            Arc::ptr_eq(&calc, &s.listing("Calc")),
            "a heartbeat changes no list"
        );
        assert!(Arc::ptr_eq(&all, &s.listings()));
        let clock = s.clock();
        assert_eq!(
            calc.instances[0].age(&clock, later),
            Duration::ZERO,
            "the renewal shows through the shared instance"
        );
        s.register(new("Other", "10.0.0.3:1"), now).unwrap();
        assert!(
            Arc::ptr_eq(&calc, &s.listing("Calc")),
            "a change of Other leaves Calc's list as it was"
        );
        assert!(!Arc::ptr_eq(&all, &s.listings()));
        assert_eq!(s.listings().len(), 2);
        s.deregister(&a.reference("Calc", "10.0.0.1:1")).unwrap();
        assert!(s.listing("Calc").instances.is_empty());
        assert_eq!(calc.instances.len(), 1, "a list taken before never changes");
        assert_eq!(s.service_count(), 1);
        assert_eq!(s.listings().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn every_change_is_recorded_with_why_an_instance_left() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let now = Instant::now();
        let a = s.register(new("Calc", "10.0.0.1:1"), now).unwrap();
        let b = s.register(new("Calc", "10.0.0.2:1"), now).unwrap();
        let a2 = s.register(new("Calc", "10.0.0.1:1"), now).unwrap();
        s.deregister(&b.reference("Calc", "10.0.0.2:1")).unwrap();
        s.expire(a2.id).unwrap();
        // Nothing to record: already gone.
        assert!(s.expire(a.id).is_none());
        let records = s.history().after(0, 10);
        // (revision, the lease it is about, the lease it took out and why)
        type Seen = (u64, u64, Option<(u64, RemovalReason)>);
        let seen: Vec<Seen> = records
            .iter()
            .map(|r| {
                let removal = r.removal().map(|gone| (gone.lease, gone.reason));
                (r.revision, r.instance().lease, removal)
            })
            .collect();
        assert_eq!(
            seen,
            [
                (1, a.id, None),
                (2, b.id, None),
                (3, a2.id, Some((a.id, RemovalReason::Superseded))),
                (4, b.id, Some((b.id, RemovalReason::Deregistered))),
                (5, a2.id, Some((a2.id, RemovalReason::Evicted))),
            ]
        );
        assert_eq!(s.revision(), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_registration_of_an_address_supersedes_the_old_one() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let now = Instant::now();
        let first = s.register(new("Calc", "10.0.0.1:1"), now).unwrap();
        let second = s.register(new("Calc", "10.0.0.1:1"), now).unwrap();
        assert_eq!((first.incarnation, second.incarnation), (1, 2));
        let snap = s.snapshot("Calc");
        assert_eq!(snap.instances.len(), 1);
        assert_eq!(snap.instances[0].incarnation, 2);
        let stale = s
            .heartbeat(&first.reference("Calc", "10.0.0.1:1"), now)
            .unwrap_err();
        assert_eq!(
            stale,
            RegistryError::Superseded {
                lease: first.id,
                incarnation: 1,
                current: 2
            }
        );
        assert!(
            s.heartbeat(&second.reference("Calc", "10.0.0.1:1"), now)
                .is_ok()
        );
        // A stale deregistration does not remove the newer instance.
        assert!(
            s.deregister(&first.reference("Calc", "10.0.0.1:1"))
                .is_err()
        );
        assert_eq!(s.snapshot("Calc").instances.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_evicted_instance_that_wakes_up_after_its_address_was_taken_is_superseded() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let now = Instant::now();
        let paused = s.register(new("Calc", "10.0.0.1:1"), now).unwrap();
        s.expire(paused.id).unwrap();
        let next = s.register(new("Calc", "10.0.0.1:1"), now).unwrap();
        assert_eq!(next.incarnation, 1, "the address had no instance left");
        // The evicted process's heartbeat must not make it re-register and push out its successor.
        assert_eq!(
            s.heartbeat(&paused.reference("Calc", "10.0.0.1:1"), now)
                .map(|_| ()),
            Err(RegistryError::Superseded {
                lease: paused.id,
                incarnation: 1,
                current: 1
            })
        );
        // With the address empty again, the old lease is only unknown: re-registering is right.
        s.expire(next.id).unwrap();
        assert_eq!(
            s.heartbeat(&paused.reference("Calc", "10.0.0.1:1"), now)
                .map(|_| ()),
            Err(RegistryError::UnknownLease { lease: paused.id })
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_lease_named_with_another_service_or_address_is_not_that_lease() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let lease = s
            .register(new("Calc", "10.0.0.1:1"), Instant::now())
            .unwrap();
        for (service, address) in [("Billing", "10.0.0.1:1"), ("Calc", "10.0.0.2:1")] {
            let foreign = lease.reference(service, address);
            let unknown = RegistryError::UnknownLease { lease: lease.id };
            assert_eq!(
                s.heartbeat(&foreign, Instant::now()).map(|_| ()),
                Err(unknown)
            );
            assert_eq!(
                s.deregister(&foreign),
                Ok(false),
                "nothing of {service} at {address} to remove"
            );
        }
        assert_eq!(
            s.snapshot("Calc").instances.len(),
            1,
            "Calc's instance stays"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unknown_lease_is_reported_as_such() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let ghost = LeaseRef {
            lease: 99,
            incarnation: 4,
            service: "Calc".into(),
            address: "10.0.0.1:1".into(),
        };
        assert_eq!(
            s.heartbeat(&ghost, Instant::now()).unwrap_err(),
            RegistryError::UnknownLease { lease: 99 }
        );
        assert_eq!(
            s.deregister(&ghost),
            Ok(false),
            "deregistering twice is fine"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_instance_is_late_after_half_the_ttl_without_a_heartbeat() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let start = Instant::now();
        let lease = s.register(new("Calc", "10.0.0.1:1"), start).unwrap();
        s.register(new("Other", "10.0.0.2:1"), start).unwrap();
        let at = |ms| start + Duration::from_millis(ms);
        let only = |s: &mut State, now| {
            let clock = s.clock();
            s.listing("Calc").instances[0].status(&clock, now)
        };
        assert_eq!(
            (
                only(&mut s, at(1500)).state,
                only(&mut s, at(1500)).heartbeat_age_ms
            ),
            (InstanceState::Up, 1500)
        );
        assert_eq!(only(&mut s, at(1501)).state, InstanceState::Late);
        s.heartbeat(&lease.reference("Calc", "10.0.0.1:1"), at(2000))
            .unwrap();
        assert_eq!(
            (
                only(&mut s, at(2100)).state,
                only(&mut s, at(2100)).heartbeat_age_ms
            ),
            (InstanceState::Up, 100)
        );
        let all: Vec<String> = s.listings().iter().map(|x| x.name.clone()).collect();
        assert_eq!(all, ["Calc", "Other"]);
        assert!(s.listing("Nobody").instances.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_removes_the_instance_once() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let lease = s
            .register(new("Calc", "10.0.0.1:1"), Instant::now())
            .unwrap();
        let gone = s.expire(lease.id).unwrap();
        assert_eq!(gone.address, "10.0.0.1:1");
        assert!(s.expire(lease.id).is_none());
        assert!(s.snapshot("Calc").instances.is_empty());
        assert!(s.listings().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn services_are_forgotten_with_their_last_instance() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let now = Instant::now();
        for i in 0..100 {
            let address = format!("10.0.0.1:{i}");
            let lease = s.register(new(&format!("S{i}"), &address), now).unwrap();
            s.deregister(&lease.reference(&format!("S{i}"), &address))
                .unwrap();
        }
        assert_eq!(s.tracked(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn watched_services_are_bounded_and_unused_ones_make_room() {
        let bounded = Limits {
            max_services: 3,
            ..limits()
        };
        let mut s = State::new(1, Duration::from_secs(3), bounded);
        let watchers: Vec<_> = (0..3).map(|i| s.subscribe(&format!("W{i}"))).collect();
        assert!(watchers.iter().all(Option::is_some));
        assert!(
            s.subscribe("W3").is_none(),
            "a fourth service is not tracked"
        );
        let err = s
            .register(new("W3", "10.0.0.1:1"), Instant::now())
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::LimitExceeded(
                "the registry already tracks 3 services, the limit (max_services)".into()
            )
        );
        // A watcher that goes away (its call cancelled) leaves its entry behind; at the limit it makes room.
        drop(watchers);
        assert!(s.subscribe("W3").is_some());
        assert!(s.tracked() <= 3);
    }

    #[tokio::test(start_paused = true)]
    async fn the_listing_of_a_name_longer_than_max_name_len_does_not_echo_it() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let longest = "S".repeat(limits().max_name_len);
        assert_eq!(s.snapshot(&longest).service, longest);
        let hostile = format!("\u{1b}[2J{longest}");
        let snapshot = s.snapshot(&hostile);
        assert_eq!(
            snapshot.service,
            format!(
                "\\u{{1b}}[2J{}... ({} bytes)",
                "S".repeat(60),
                hostile.len()
            )
        );
        assert!(snapshot.instances.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_of_a_name_longer_than_max_name_len_is_not_kept() {
        let mut s = State::new(1, Duration::from_secs(3), limits());
        let longest = "S".repeat(limits().max_name_len);
        assert!(s.subscribe(&longest).is_some());
        assert!(s.subscribe(&format!("{longest}S")).is_none());
        assert_eq!(s.tracked(), 1);
    }
}
