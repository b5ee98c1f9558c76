//! The registry's reads over its RPC API (`instances`, `watch`, `watch_changes`, `services`, `status`, `report`): each
//! takes what it needs under the state's lock (`Arc`s of listings and history records: pointer copies) and
//! builds its answer after releasing it, so that no read makes a heartbeat wait while it copies instances.
//! Watches are long polls woken by their service's revision; `subscribe` streams the same answers.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::{
    Held, Placement, ServiceReport, ServiceStatus, ServiceSummary, Snapshot, Watched,
};
use crate::server::service::Shared;
use crate::server::store::Reading;
use crate::server::store::history::Record;
use crate::server::store::listing::{Clock, Listing, Listings};

/// The shortest wait between two items of a subscription when nothing changes: 1 s.
pub(crate) const MIN_SUBSCRIBE_WAIT: Duration = Duration::from_secs(1);

/// Where a subscription stands: the registry, the service, and the revision of the last item.
struct Subscribed {
    shared: Arc<Shared>,
    service: String,
    epoch: u64,
    since: u64,
    first: bool,
}

/// What a watch takes under the lock to answer with.
struct Seen {
    epoch: u64,
    listing: Arc<Listing>,
    /// The records of the removals after the watcher's revision, and whether the history covers them all.
    removals: Vec<Record>,
    complete: bool,
}

impl Seen {
    /// The answer of a watch of `service` from revision `since` of registry `epoch`, with the removals since
    /// if `removals` is asked and the watcher saw a revision of this registry.
    fn take(
        state: &mut Reading<'_>,
        service: &str,
        epoch: u64,
        since: u64,
        removals: bool,
    ) -> Seen {
        let listing = state.listing(service);
        let (removals, complete) = if removals && epoch == state.epoch() && since != 0 {
            let history = state.history();
            (history.removals(service, since), history.covers(since))
        } else {
            (Vec::new(), true)
        };
        Seen {
            epoch: state.epoch(),
            listing,
            removals,
            complete,
        }
    }
}

impl Shared {
    /// The instances of `service` now.
    pub(crate) fn instances(&self, service: &str) -> Snapshot {
        let (epoch, listing) = {
            let mut state = self.index().read();
            (state.epoch(), state.listing(service))
        };
        listing.snapshot(epoch)
    }

    /// The instances of `service` once they differ from revision `since` of registry `epoch` (see
    /// [`crate::api::Registry::watch`]).
    pub(crate) async fn watch(
        &self,
        service: &str,
        epoch: u64,
        since: u64,
        wait_ms: u64,
    ) -> Snapshot {
        let seen = self.wait(service, epoch, since, wait_ms, false).await;
        seen.listing.snapshot(seen.epoch)
    }

    /// As [`Shared::watch`], with the removals since `since` (see [`crate::api::Registry::watch_changes`]).
    pub(crate) async fn watch_changes(
        &self,
        service: &str,
        epoch: u64,
        since: u64,
        wait_ms: u64,
    ) -> Watched {
        let seen = self.wait(service, epoch, since, wait_ms, true).await;
        Watched {
            snapshot: seen.listing.snapshot(seen.epoch),
            removed: seen.removals.iter().filter_map(Record::removal).collect(),
            complete: seen.complete,
        }
    }

    /// The instances of `service` as a stream (see [`crate::api::Registry::subscribe`]): the state at once, then
    /// each change (or the state unchanged after `wait_ms`, at least [`MIN_SUBSCRIBE_WAIT`]), each with the
    /// removals since the item before.
    pub(crate) fn subscribe(
        self: Arc<Self>,
        service: String,
        epoch: u64,
        since: u64,
        wait_ms: u64,
    ) -> impl futures_util::Stream<Item = Watched> + Send + 'static {
        let wait = Duration::from_millis(wait_ms)
            .max(MIN_SUBSCRIBE_WAIT)
            .min(self.config.max_watch_wait.max(MIN_SUBSCRIBE_WAIT));
        let start = Subscribed {
            shared: self,
            service,
            epoch,
            since,
            first: true,
        };
        futures_util::stream::unfold(Some(start), move |at| async move {
            let mut at = at?;
            let first = std::mem::replace(&mut at.first, false);
            let wait_ms = if first { 0 } else { wait.as_millis() as u64 };
            let asked = Instant::now();
            let seen = at
                .shared
                .watch_changes(&at.service, at.epoch, at.since, wait_ms)
                .await;
            let changed = seen.snapshot.epoch != at.epoch || seen.snapshot.revision != at.since;
            // Unchanged long before its wait (as the registry caps it): the registry shuts down, or cannot
            // track one more service.
            let applied = wait.min(at.shared.config.max_watch_wait);
            if !first && !changed && asked.elapsed() < applied / 2 {
                return None;
            }
            at.epoch = seen.snapshot.epoch;
            at.since = seen.snapshot.revision;
            Some((seen, Some(at)))
        })
    }

    /// Waits, within `wait`, until this registry has applied revision `since` of `epoch`, if it has not yet:
    /// replicas of one store share an epoch and a sequence of revisions, and a watcher that moved from a replica
    /// ahead of this one is neither answered with an older state nor told of a change twice.
    async fn catch_up(&self, epoch: u64, since: u64, wait: Duration) {
        if !self.store.replicated() {
            return;
        }
        let mut applied = {
            let state = self.index().read();
            if epoch != state.epoch() || since <= state.revision() {
                return;
            }
            state.subscribe_all()
        };
        let _ = tokio::time::timeout(wait, applied.wait_for(|&revision| revision >= since)).await;
    }

    /// Waits until `service` differs from revision `since` of registry `epoch` (at once if it already does), or
    /// for `wait_ms` (at most `max_watch_wait`), or until the registry shuts down; then takes its listing.
    async fn wait(
        &self,
        service: &str,
        epoch: u64,
        since: u64,
        wait_ms: u64,
        removals: bool,
    ) -> Seen {
        let wait = Duration::from_millis(wait_ms).min(self.config.max_watch_wait);
        self.catch_up(epoch, since, wait).await;
        let mut changed = {
            let mut state = self.index().read();
            let current = state.listing(service).revision;
            // A watcher of another registry process, or one behind, is answered at once.
            if epoch != state.epoch() || current != since {
                return Seen::take(&mut state, service, epoch, since, removals);
            }
            match state.subscribe(service) {
                Some(changed) => changed,
                // Tracking one more service would cross max_services: answer at once instead of waiting.
                None => return Seen::take(&mut state, service, epoch, since, removals),
            }
        };
        let _watching = self.stats.rpc_watching();
        tokio::select! {
            _ = tokio::time::timeout(wait, changed.wait_for(|&revision| revision != since)) => {}
            () = self.closed() => {}
        }
        drop(changed);
        let mut state = self.index().read();
        let seen = Seen::take(&mut state, service, epoch, since, removals);
        state.forget_if_unused(service);
        seen
    }

    /// Every service with instances.
    pub(crate) fn services(&self) -> Vec<ServiceSummary> {
        let listings = self.index().read().listings();
        listings.iter().map(|l| l.summary()).collect()
    }

    /// The instances of `only` (of every service, if `None`) with how their heartbeats stand; services without
    /// instances are left out.
    pub(crate) fn status(&self, only: Option<&str>) -> Vec<ServiceStatus> {
        self.each_listing(only, Listing::status)
    }

    /// The store, its replicas, and which replica holds each instance of `only` (of every service if `None`).
    pub(crate) fn placement(&self, only: Option<&str>) -> Placement {
        let status = self.store.status();
        let listings = {
            let mut state = self.index().read();
            match only {
                Some(name) => Arc::from([state.listing(name)]),
                None => state.listings(),
            }
        };
        let held = match status.replica {
            None => Vec::new(),
            Some(_) => listings
                .iter()
                .flat_map(|l| l.instances.iter())
                .filter_map(|i| {
                    Some(Held {
                        replica: self.store.holder(&i.service, &i.address)?,
                        service: i.service.clone(),
                        address: i.address.clone(),
                        incarnation: i.incarnation,
                    })
                })
                .collect(),
        };
        Placement {
            store: status.kind.to_owned(),
            replica: status.replica,
            replicas: status.replicas,
            held,
        }
    }

    /// As [`Shared::status`], with each instance's own weight and load.
    pub(crate) fn report(&self, only: Option<&str>) -> Vec<ServiceReport> {
        self.each_listing(only, Listing::report)
    }

    /// `view` of the listing of `only` (of every service with instances, if `None`), made after the state's lock
    /// is released.
    fn each_listing<T>(
        &self,
        only: Option<&str>,
        view: impl Fn(&Listing, &Clock, Instant) -> T,
    ) -> Vec<T> {
        let (clock, listings): (Clock, Listings) = {
            let mut state = self.index().read();
            let listings = match only {
                Some(name) => Arc::from([state.listing(name)]),
                None => state.listings(),
            };
            (state.clock(), listings)
        };
        let now = Instant::now();
        listings
            .iter()
            .filter(|l| !l.instances.is_empty())
            .map(|l| view(l, &clock, now))
            .collect()
    }
}
