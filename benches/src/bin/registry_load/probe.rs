//! The watch probe: one client waits on a watch of the service `probe` while another registers an instance of
//! it and deregisters it again, one change at a time. A change's watch latency runs from the moment its write is
//! sent to the moment the waiting watch's answer carries it: the write's round trip, the wake-up of the watch,
//! and its answer's round trip, as a client's discovery lives them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_registry::{LeaseRef, NewInstance, RegistryClient};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use crate::histogram::Histogram;
use crate::load::Counts;

/// The service the probe changes and watches.
pub(crate) const SERVICE: &str = "probe";
/// The pause between one change being seen and the next being made.
const PAUSE: Duration = Duration::from_millis(100);
/// How long the writer waits for the watcher to see a change before it makes the next one anyway.
const GIVE_UP: Duration = Duration::from_secs(10);

/// When the write in flight was sent; the watcher takes it when it sees the write's change.
#[derive(Default)]
pub(crate) struct Pending {
    sent: std::sync::Mutex<Option<(bool, Instant)>>,
    seen: Notify,
    /// The writes the registry accepted (registrations and removals of `probe`): with the etcd store, one etcd
    /// transaction each.
    pub(crate) writes: std::sync::atomic::AtomicU64,
}

/// Watches `probe` and records each change's latency in `latencies[phase]`, until `stop`.
pub(crate) async fn watcher(
    registry: RegistryClient,
    pending: Arc<Pending>,
    counts: Arc<Counts>,
    latencies: Arc<Vec<Histogram>>,
    mut stop: watch::Receiver<bool>,
) {
    let (mut epoch, mut revision) = (0, 0);
    loop {
        let call = registry.watch(SERVICE.to_owned(), epoch, revision, 30_000);
        let answer = tokio::select! {
            answer = call => answer,
            _ = stop.wait_for(|&stop| stop) => return,
        };
        let Ok(snapshot) = answer else {
            tokio::time::sleep(PAUSE).await;
            continue;
        };
        let at = Instant::now();
        (epoch, revision) = (snapshot.epoch, snapshot.revision);
        let present = !snapshot.instances.is_empty();
        let mut sent = rpc_core::sync::lock(&pending.sent);
        if let Some((registered, when)) = *sent
            && registered == present
        {
            latencies[counts.phase.load(Ordering::Relaxed)].record(at - when);
            *sent = None;
            pending.seen.notify_one();
        }
    }
}

/// Registers and deregisters an instance of `probe`, one change at a time, until `stop`.
pub(crate) async fn writer(
    registry: RegistryClient,
    pending: Arc<Pending>,
    mut stop: watch::Receiver<bool>,
) {
    let new = NewInstance {
        service: SERVICE.to_owned(),
        address: "10.255.255.1:7000".to_owned(),
        weight: 1,
        metadata: BTreeMap::new(),
    };
    let mut lease: Option<LeaseRef> = None;
    loop {
        let seen = pending.seen.notified();
        let registering = lease.is_none();
        *rpc_core::sync::lock(&pending.sent) = Some((registering, Instant::now()));
        match lease.take() {
            None => {
                if let Ok(Ok(granted)) = registry.register(new.clone()).await {
                    pending.writes.fetch_add(1, Ordering::Relaxed);
                    lease = Some(LeaseRef {
                        lease: granted.id,
                        incarnation: granted.incarnation,
                        service: new.service.clone(),
                        address: new.address.clone(),
                    });
                }
            }
            Some(held) => {
                if let Ok(Ok(())) = registry.deregister(held).await {
                    pending.writes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::timeout(GIVE_UP, seen) => {}
            _ = stop.wait_for(|&stop| stop) => return,
        }
        tokio::time::sleep(PAUSE).await;
    }
}
