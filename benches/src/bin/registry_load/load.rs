//! The instances: `--instances` leases held over a few connections (not one connection each), each renewed
//! every heartbeat interval the registry asks for. Every connection carries `--callers` tasks; each task owns an
//! equal share of the leases and renews them one after another, evenly spaced over the interval, so that the
//! registry sees a steady stream of heartbeats. A task registers each of its instances on its first pass (and
//! again if the registry forgot it), so that no instance waits longer than one interval for its first heartbeat.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rpc_registry::{LeaseRef, NewInstance, RegistryClient};
use tokio::sync::watch;
use tokio::time::{Instant, MissedTickBehavior};

use crate::histogram::Histogram;

/// What the callers count, shared with the driver.
pub(crate) struct Counts {
    /// Instances registered now (by this load).
    pub(crate) registered: AtomicU64,
    /// Heartbeats answered `Ok`.
    pub(crate) heartbeats: AtomicU64,
    /// Heartbeats refused because the lease was gone (evicted, or superseded): the instance registers again.
    pub(crate) lost: AtomicU64,
    /// Calls that failed (no answer, connection lost, ...).
    pub(crate) failed: AtomicU64,
    /// The phase whose histogram a heartbeat's round trip goes to.
    pub(crate) phase: AtomicUsize,
    /// Heartbeat round trips, by phase.
    pub(crate) round_trips: Vec<Histogram>,
}

impl Counts {
    pub(crate) fn new(phases: usize) -> Counts {
        Counts {
            registered: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            phase: AtomicUsize::new(0),
            round_trips: (0..phases).map(|_| Histogram::new()).collect(),
        }
    }
}

/// The `i`-th instance of the load: service `load-NNN` (`per_service` instances each), a made-up address.
pub(crate) fn instance(i: usize, per_service: usize) -> NewInstance {
    NewInstance {
        service: format!("load-{:03}", i / per_service),
        address: format!("10.{}.{}.{}:7000", i >> 16 & 255, i >> 8 & 255, i & 255),
        weight: 1 + (i % 5) as u32,
        metadata: BTreeMap::from([
            ("zone".to_owned(), format!("zone-{}", i % 3)),
            ("version".to_owned(), "1.4.2".to_owned()),
        ]),
    }
}

/// One caller: registers, then renews, the instances `owned` every `interval`, starting at `start`, until
/// `stop` turns true.
pub(crate) async fn caller(
    registry: RegistryClient,
    owned: Vec<NewInstance>,
    interval: Duration,
    start: Instant,
    counts: Arc<Counts>,
    mut stop: watch::Receiver<bool>,
) {
    if owned.is_empty() {
        return;
    }
    let mut leases: Vec<Option<LeaseRef>> = vec![None; owned.len()];
    let mut tick = tokio::time::interval_at(start, interval / owned.len() as u32);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for slot in (0..owned.len()).cycle() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|&stop| stop) => return,
        }
        let Some(lease) = &leases[slot] else {
            match registry.register(owned[slot].clone()).await {
                Ok(Ok(lease)) => {
                    counts.registered.fetch_add(1, Ordering::Relaxed);
                    let new = &owned[slot];
                    leases[slot] = Some(LeaseRef {
                        lease: lease.id,
                        incarnation: lease.incarnation,
                        service: new.service.clone(),
                        address: new.address.clone(),
                    });
                }
                Ok(Err(_)) | Err(_) => {
                    counts.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            continue;
        };
        let sent = Instant::now();
        match registry.heartbeat(lease.clone()).await {
            Ok(Ok(())) => {
                let phase = counts.phase.load(Ordering::Relaxed);
                counts.round_trips[phase].record(sent.elapsed());
                counts.heartbeats.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(_)) => {
                counts.lost.fetch_add(1, Ordering::Relaxed);
                counts.registered.fetch_sub(1, Ordering::Relaxed);
                leases[slot] = None;
            }
            Err(_) => {
                counts.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}
