//! The state's side for a store elsewhere (etcd): changes that store reports, applied in its revision order
//! under its revision numbers and lease ids (`put_mirrored`, `remove_mirrored`, `pin_revision`), the checks a
//! registration passes before it is written there (`admit`), and the leases this process renews among those
//! it mirrors (`disown`, `rearm`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::State;
use crate::api::{Instance, NewInstance, RegistryError, RemovalReason};
use crate::server::credentials::Identity;
use crate::server::store::listing::Listed;

impl State {
    /// Checks that `new` may register (sizes, room) and answers the incarnation it takes: one more than the
    /// instance at its address, if any. For a store that writes elsewhere first (etcd's).
    pub(crate) fn admit(&mut self, new: &NewInstance) -> Result<u64, RegistryError> {
        if !self.services.contains_key(&new.service) {
            let _ = self.room_for_a_service();
        }
        self.check(new)?;
        Ok(self
            .holder(&new.service, &new.address)
            .map_or(1, |held| held.incarnation + 1))
    }

    /// The lease of the instance at `address` of `service`, if one is there.
    pub(crate) fn lease_at(&self, service: &str, address: &str) -> Option<u64> {
        self.holder(service, address).map(|held| held.lease)
    }

    /// Sets the revision that the changes applied next take (a store elsewhere numbers its changes), or
    /// `None` to count them one by one again.
    pub(crate) fn pin_revision(&mut self, revision: Option<u64>) {
        self.pinned = revision;
    }

    /// Takes `epoch` as the registry's (the etcd cluster's, shared by every replica).
    pub(crate) fn set_epoch(&mut self, epoch: u64) {
        self.epoch = epoch;
    }

    /// A store elsewhere reports `instance` at its address: it supersedes what held the address. `local`: this
    /// process renews it (a timer of the TTL starts). The lease id is the store's, and grows.
    pub(crate) fn put_mirrored(
        &mut self,
        instance: Instance,
        owner: Identity,
        local: bool,
        now: Instant,
    ) {
        let superseded = self.take_holder(&instance.service, &instance.address);
        let id = instance.lease;
        let mut listed = Listed::new(instance, &self.clock, now);
        if !local {
            listed = listed.held_elsewhere();
        }
        let expiry = local.then(|| self.expiries.insert(id, self.ttl));
        self.place(listed, expiry, owner, superseded);
    }

    /// A store elsewhere reports the instance at `address` of `service` gone, for `reason`.
    pub(crate) fn remove_mirrored(&mut self, service: &str, address: &str, reason: RemovalReason) {
        if let Some(instance) = self.take_holder(service, address) {
            self.drop_instance(instance, reason);
        }
    }

    /// The timer of `lease` fired in a store elsewhere: this process stops renewing it, and it stays listed
    /// until the store reports it removed. Answers the instance, if the lease is still there.
    pub(crate) fn disown(&mut self, lease: u64) -> Option<Arc<Listed>> {
        let entry = self.leases.get_mut(&lease)?;
        entry.expiry = None;
        Some(Arc::clone(&entry.instance))
    }

    /// Puts `lease` back on a timer of `after`, if it is still there and no timer holds it: its eviction could
    /// not be written to the store, and is tried again then.
    pub(crate) fn rearm(&mut self, lease: u64, after: Duration) {
        if let Some(entry) = self.leases.get_mut(&lease)
            && entry.expiry.is_none()
        {
            entry.expiry = Some(self.expiries.insert(lease, after));
        }
    }

    /// Sets the weights operators set, as a store elsewhere reports them, and applies each change to the
    /// instance at its address.
    pub(crate) fn mirror_weight(&mut self, service: &str, address: &str, weight: Option<u32>) {
        let _ = self.set_weight(service, address, weight);
    }

    /// Every instance, with its owner and whether this process renews it, for a store to compare against a
    /// fresh read of its own.
    pub(crate) fn every_instance(&self) -> Vec<(Arc<Listed>, bool)> {
        self.leases
            .values()
            .map(|e| (Arc::clone(&e.instance), e.expiry.is_some()))
            .collect()
    }
}
