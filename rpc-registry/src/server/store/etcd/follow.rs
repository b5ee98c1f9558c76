//! The etcd store's own work: reading the whole prefix into the index (at start, and again after etcd
//! compacted revisions a watch needed), the watch that applies each change in revision order, the keep-alive of
//! the replica's lease (a new lease, and the replica announced again, if etcd let it end), and the eviction of
//! this replica's instances whose timers fired.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use etcd_client::{EventType, GetOptions, KeyValue, WatchOptions};
use tokio::time::Instant;

use super::EtcdStore;
use super::keys::{self, Key, Marker, Stored};
use crate::api::{RemovalReason, RulesRevision};
use crate::server::store::Replica;
use crate::server::store::state::State;

/// Keys read per request when reading the whole prefix, at first: 10,000. etcd 3.4 spends time on a page in
/// proportion to the keys after its start, so the whole read grows as the square of the keys over the page:
/// measured at 100,000 instances, 1.6 s with pages of 10,000 against 24 s with pages of 100
/// (docs/BENCHMARKS.md).
const PAGE: i64 = 10_000;

/// The smallest page: a page that etcd cannot send (larger than [`MAX_ANSWER`]: rules of a megabyte each, say)
/// is asked again a tenth as large, down to this.
const MIN_PAGE: i64 = 10;

/// The largest answer taken from etcd (a page of keys, a watch's batch of events): 256 MiB. gRPC's default of
/// 4 MiB is less than a page of instances with the metadata the registry allows.
pub(super) const MAX_ANSWER: usize = 256 << 20;

/// How long an eviction that could not be written waits before it is tried again: 1 s.
const EVICTION_RETRY: Duration = Duration::from_secs(1);

/// The longest pause between two attempts to reach etcd again: 2 s.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Follows etcd until dropped: the watch and the evictions side by side, and the lease's keep-alive in a task
/// of its own, so that applying a large batch of changes never delays it.
pub(super) async fn run(store: Arc<EtcdStore>, evicted: Box<dyn Fn() + Send + Sync>) {
    let alive = tokio::spawn(keep_alive(Arc::clone(&store)));
    let _stop = AbortOnDrop(alive.abort_handle());
    tokio::join!(follow(Arc::clone(&store)), evict(store, evicted));
}

/// Aborts a task when dropped: the keep-alive ends with the store's work.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Removal reasons met in one watch answer, by service and address, for the deletions they come with.
type Reasons = HashMap<(String, String), RemovalReason>;

impl EtcdStore {
    /// Reads every key at one revision, in pages, and makes the index hold exactly that: what it lacks is
    /// added, what etcd no longer has is removed (as evicted: why is lost with the revisions compacted).
    pub(super) async fn snapshot(&self) -> Result<(), String> {
        let mut client = self
            .client
            .kv_client()
            .max_decoding_message_size(MAX_ANSWER);
        let prefix = self.keys.all().as_bytes().to_vec();
        let end = prefix_end(&prefix);
        let (mut kvs, mut at, mut cluster) = (Vec::new(), 0i64, 0u64);
        let mut from = prefix.clone();
        let mut limit = PAGE;
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(limit);
            if at != 0 {
                options = options.with_revision(at);
            }
            let mut page = match client.get(from.clone(), Some(options)).await {
                Ok(page) => page,
                // Too large an answer: the same keys in smaller pages.
                Err(e) if limit > MIN_PAGE && e.to_string().contains("too large") => {
                    limit /= 10;
                    continue;
                }
                Err(e) => return Err(format!("cannot read etcd: {e}")),
            };
            limit = (limit * 10).min(PAGE);
            if let Some(header) = page.header() {
                if at == 0 {
                    at = header.revision();
                }
                cluster = header.cluster_id();
            }
            let more = page.more();
            let got = page.take_kvs();
            if let Some(last) = got.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            kvs.extend(got);
            if !more {
                break;
            }
        }
        let mut state = self.index.write();
        state.set_epoch(cluster | 1);
        let mut seen_instances = HashSet::new();
        let mut seen_weights = HashSet::new();
        let mut replicas = BTreeMap::new();
        for kv in &kvs {
            match self.keys.parse(kv.key()) {
                // A value that does not parse is no instance: left out, it is removed below.
                Some(Key::Instance { service, address })
                    if serde_json::from_slice::<Stored>(kv.value()).is_ok() =>
                {
                    seen_instances.insert((service, address));
                }
                Some(Key::Weight { service, address }) => {
                    seen_weights.insert((service, address));
                }
                Some(Key::Replica { .. }) => {
                    if let Ok(replica) = serde_json::from_slice::<Replica>(kv.value()) {
                        replicas.insert(replica.name.clone(), replica);
                    }
                }
                _ => {}
            }
            // Each key at the revision that wrote it, so that a service's revision is its last write's, as
            // on a replica that watched it happen (the index's own revision never goes back).
            state.pin_revision(Some(u64::try_from(kv.mod_revision()).unwrap_or(0)));
            self.put(&mut state, kv, &mut Reasons::new());
        }
        // What left meanwhile left by the snapshot's revision.
        state.pin_revision(Some(u64::try_from(at).unwrap_or(0)));
        for (listed, _) in state.every_instance() {
            let key = (listed.service.clone(), listed.address.clone());
            if !seen_instances.contains(&key) {
                state.remove_mirrored(&key.0, &key.1, RemovalReason::Evicted);
                rpc_core::sync::lock(&self.holders).remove(&key);
            }
        }
        let stale: Vec<(String, String)> = state
            .weights()
            .iter()
            .map(|(s, a, _)| (s.to_owned(), a.to_owned()))
            .filter(|key| !seen_weights.contains(key))
            .collect();
        for (service, address) in stale {
            state.mirror_weight(&service, &address, None);
        }
        state.pin_revision(None);
        drop(state);
        *rpc_core::sync::lock(&self.replicas) = replicas;
        self.applied.send_replace(at);
        Ok(())
    }

    /// Applies a key etcd reports written.
    fn put(&self, state: &mut State, kv: &KeyValue, reasons: &mut Reasons) {
        match self.keys.parse(kv.key()) {
            Some(Key::Instance { service, address }) => {
                let Ok(stored) = serde_json::from_slice::<Stored>(kv.value()) else {
                    // Not an instance of ours: whatever held the address is gone.
                    state.remove_mirrored(&service, &address, RemovalReason::Evicted);
                    rpc_core::sync::lock(&self.holders).remove(&(service, address));
                    return;
                };
                let lease = u64::try_from(kv.mod_revision()).unwrap_or(0);
                if state.lease_at(&service, &address) == Some(lease) {
                    return;
                }
                let local = kv.lease() == self.lease.load(Ordering::Relaxed)
                    && stored.replica == self.config.replica;
                let mut instance = stored.instance;
                (instance.service, instance.address, instance.lease) =
                    (service.clone(), address.clone(), lease);
                state.put_mirrored(
                    instance,
                    keys::owner_of(&stored.owner),
                    local,
                    Instant::now(),
                );
                rpc_core::sync::lock(&self.holders).insert((service, address), stored.replica);
                if local {
                    self.added.notify_one();
                }
            }
            Some(Key::Service { service }) => {
                if let Ok(marker) = serde_json::from_slice::<Marker>(kv.value()) {
                    reasons.insert((service, marker.address), marker.reason);
                }
            }
            Some(Key::Rules { .. }) => {
                if let Ok(revision) = serde_json::from_slice::<RulesRevision>(kv.value()) {
                    self.rules.mirror(revision);
                }
            }
            Some(Key::Weight { service, address }) => {
                let weight = std::str::from_utf8(kv.value())
                    .ok()
                    .and_then(|w| w.parse().ok());
                state.mirror_weight(&service, &address, weight);
            }
            Some(Key::Replica { name }) => {
                if let Ok(replica) = serde_json::from_slice::<Replica>(kv.value()) {
                    rpc_core::sync::lock(&self.replicas).insert(name, replica);
                }
            }
            None => {}
        }
    }

    /// Applies a key etcd reports deleted.
    fn delete(&self, state: &mut State, kv: &KeyValue, reasons: &mut Reasons) {
        match self.keys.parse(kv.key()) {
            Some(Key::Instance { service, address }) => {
                let key = (service, address);
                // No reason recorded: the replica's lease ended with the replica.
                let reason = reasons.remove(&key).unwrap_or(RemovalReason::Evicted);
                state.remove_mirrored(&key.0, &key.1, reason);
                rpc_core::sync::lock(&self.holders).remove(&key);
            }
            Some(Key::Weight { service, address }) => {
                state.mirror_weight(&service, &address, None);
            }
            Some(Key::Replica { name }) => {
                rpc_core::sync::lock(&self.replicas).remove(&name);
            }
            _ => {}
        }
    }
}

/// The first key after every key that starts with `prefix`.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// How a watch ended.
enum Ended {
    /// etcd compacted the revisions it needed: read everything again.
    Compacted,
    /// It failed; watch again from the last revision applied.
    Failed(String),
}

/// Watches the prefix from the revision after the last applied, applying each answer, for ever.
async fn follow(store: Arc<EtcdStore>) {
    let mut pause = Duration::from_millis(100);
    loop {
        match watch(&store).await {
            Ended::Compacted => {
                if let Err(e) = store.snapshot().await {
                    store.set_problem(Some(e));
                    tokio::time::sleep(pause).await;
                }
            }
            Ended::Failed(e) => {
                store.set_problem(Some(format!("etcd's watch failed: {e}")));
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_PAUSE);
                continue;
            }
        }
        pause = Duration::from_millis(100);
    }
}

/// One watch, from the revision after the last applied, until it ends.
async fn watch(store: &EtcdStore) -> Ended {
    let from = *store.applied.borrow() + 1;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(from)
        .with_progress_notify();
    let mut client = store
        .client
        .watch_client()
        .max_decoding_message_size(MAX_ANSWER);
    let mut stream = match client.watch(store.keys.all(), Some(options)).await {
        Ok(stream) => stream,
        Err(e) => return Ended::Failed(e.to_string()),
    };
    loop {
        let answer = match stream.message().await {
            Ok(Some(answer)) => answer,
            Ok(None) => return Ended::Failed(String::from("the watch ended")),
            Err(e) => return Ended::Failed(e.to_string()),
        };
        if answer.compact_revision() > 0 {
            return Ended::Compacted;
        }
        if answer.canceled() {
            return Ended::Failed(format!("cancelled: {}", answer.cancel_reason()));
        }
        store.set_problem(None);
        let events = answer.events();
        if events.is_empty() {
            // A progress notice: every change up to its revision was sent.
            if !answer.created()
                && let Some(header) = answer.header()
            {
                store.applied.send_if_modified(|at| {
                    std::mem::replace(at, header.revision().max(*at)) != *at
                });
            }
            continue;
        }
        let mut last = 0;
        {
            let mut state = store.index.write();
            let mut reasons = Reasons::new();
            for event in events {
                let Some(kv) = event.kv() else { continue };
                let revision = kv.mod_revision();
                state.pin_revision(Some(u64::try_from(revision).unwrap_or(0)));
                match event.event_type() {
                    EventType::Put => store.put(&mut state, kv, &mut reasons),
                    EventType::Delete => store.delete(&mut state, kv, &mut reasons),
                }
                last = last.max(revision);
            }
            state.pin_revision(None);
        }
        store.applied.send_replace(last);
    }
}

/// Keeps the replica's lease alive every third of its TTL; takes a new one if etcd let it end.
async fn keep_alive(store: Arc<EtcdStore>) {
    let every = Duration::from_secs(u64::try_from(store.lease_ttl()).unwrap_or(2)) / 3;
    let mut pause = Duration::from_millis(100);
    loop {
        let mut client = store.client.clone();
        let id = store.lease.load(Ordering::Relaxed);
        match client.lease_keep_alive(id).await {
            Ok((mut keeper, mut answers)) => loop {
                // At a fixed rate, each answer awaited no longer than the period: a slow or lost answer does
                // not push the next keep-alive back (heartbeats are refused after two thirds of the TTL
                // without one).
                let tick = tokio::time::Instant::now() + every;
                if keeper.keep_alive().await.is_err() {
                    break;
                }
                match tokio::time::timeout_at(tick, answers.message()).await {
                    Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                        pause = Duration::from_millis(100);
                        store.confirmed();
                    }
                    Ok(Ok(Some(_))) => {
                        // The lease ended (etcd was out of reach longer than its TTL): this replica's
                        // instances went with it, and register again with a new one.
                        if let Err(e) = store.grant().await {
                            store.set_problem(Some(e));
                        }
                        break;
                    }
                    _ => break,
                }
                tokio::time::sleep_until(tick).await;
            },
            Err(e) => store.set_problem(Some(format!("etcd's lease keep-alive failed: {e}"))),
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Removes from etcd each instance of this replica's whose timer fired (no heartbeat within the TTL).
async fn evict(store: Arc<EtcdStore>, evicted: Box<dyn Fn() + Send + Sync>) {
    loop {
        let added = store.added.notified();
        let fired = std::future::poll_fn(|cx| {
            let mut state = store.index.write();
            match state.expiries.poll_expired(cx) {
                Poll::Ready(Some(fired)) => {
                    let lease = fired.into_inner();
                    Poll::Ready(Some(state.disown(lease).map(|listed| (listed, lease))))
                }
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            }
        })
        .await;
        match fired {
            Some(Some((listed, lease))) => {
                let removed = store
                    .remove(
                        &listed.service,
                        &listed.address,
                        lease,
                        RemovalReason::Evicted,
                    )
                    .await;
                match removed {
                    Ok(true) => evicted(),
                    Ok(false) => {}
                    // etcd could not be written: try again in a while, rather than list it for ever.
                    Err(_) => store.index.write().rearm(lease, EVICTION_RETRY),
                }
            }
            Some(None) => {}
            None => added.await,
        }
    }
}
