//! The instances: `--instances` leases held over a few connections (not one connection each), each renewed
//! every heartbeat interval the registry asks for. Every connection carries `--callers` tasks; each task owns an
//! equal share of the leases and renews them one after another, evenly spaced over the interval, so that the
//! registry sees a steady stream of heartbeats. A task registers each of its instances on its first pass (and
//! again if the registry forgot it), so that no instance waits longer than one interval for its first heartbeat.
//! A registration runs beside the task's heartbeats (at most [`REGISTERING`] at once per task), as instances
//! start independently: when registrations are slow (the etcd store writes each through etcd), the instances
//! already registered keep their heartbeats on time, and those waiting are tried again on the next pass.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use rpc_registry::{LeaseRef, NewInstance, RegistryClient};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};

use crate::histogram::Histogram;

/// Registrations one caller has in flight at most: 2, so that a connection's 256 callers stay within the
/// server's 1,024 calls in flight per connection.
pub(crate) const REGISTERING: usize = 2;

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
    let mut registering = vec![false; owned.len()];
    let mut in_flight = JoinSet::new();
    let mut tick = tokio::time::interval_at(start, interval / owned.len() as u32);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut next = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(Ok((slot, granted))) = in_flight.join_next() => {
                registering[slot] = false;
                match granted {
                    Some(lease) => {
                        counts.registered.fetch_add(1, Ordering::Relaxed);
                        leases[slot] = Some(lease);
                    }
                    None => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                continue;
            }
            _ = stop.wait_for(|&stop| stop) => return,
        }
        let slot = next;
        next = (next + 1) % owned.len();
        let Some(lease) = &leases[slot] else {
            if !registering[slot] && in_flight.len() < REGISTERING {
                registering[slot] = true;
                in_flight.spawn(register(registry.clone(), owned[slot].clone(), slot));
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

/// Registers `new`, the caller's instance `slot`: the slot and its lease, or `None` if the registration failed.
async fn register(
    registry: RegistryClient,
    new: NewInstance,
    slot: usize,
) -> (usize, Option<LeaseRef>) {
    let lease = match registry.register(new.clone()).await {
        Ok(Ok(lease)) => Some(LeaseRef {
            lease: lease.id,
            incarnation: lease.incarnation,
            service: new.service,
            address: new.address,
        }),
        Ok(Err(_)) | Err(_) => None,
    };
    (slot, lease)
}
