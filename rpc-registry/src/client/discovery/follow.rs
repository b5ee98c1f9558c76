//! The watch of one service's instances: a subscription to the registry's stream of its changes
//! (`Registry.subscribe`, protocol 1.1), or long polls for a while when the registry refuses the stream; the
//! warm-up that keeps the instances known before a registry restart; and the pauses after failures.

use std::sync::Arc;
use std::time::Duration;

use rpc_core::{RpcError, Status};
use tokio::sync::watch;
use tokio::time::Instant;

use super::{DiscoveryConfig, Errors, POLLS_BEFORE_STREAMS, retry_pause};
use crate::api::{Instance, RegistryClient, Snapshot};

/// Where a watch of one service stands: the registry's epoch and the revision seen last, and, after a registry
/// restart, the instances known before, kept until an instant (they register again within a heartbeat).
#[derive(Default)]
struct Tracked {
    epoch: u64,
    since: u64,
    warming: Option<(Instant, Vec<Instance>)>,
    /// The registry's last snapshot, without the instances kept through a warm-up.
    last: Option<Snapshot>,
}

impl Tracked {
    /// Takes `snapshot` in: `tx` hears of it if it differs from what was seen, or the warm-up ended. Returns
    /// whether it did.
    fn apply(
        &mut self,
        snapshot: Snapshot,
        config: &DiscoveryConfig,
        tx: &watch::Sender<Arc<Snapshot>>,
    ) -> bool {
        if self.epoch != 0 && snapshot.epoch != self.epoch {
            self.warming = Some((
                Instant::now() + config.warm_up,
                tx.borrow().instances.clone(),
            ));
        }
        let warm_over = self
            .warming
            .as_ref()
            .is_some_and(|(until, _)| Instant::now() >= *until);
        if warm_over {
            self.warming = None;
        }
        let changed = snapshot.epoch != self.epoch || snapshot.revision != self.since || warm_over;
        self.epoch = snapshot.epoch;
        self.since = snapshot.revision;
        if changed {
            self.last = Some(snapshot.clone());
            tx.send_replace(Arc::new(with_warming(snapshot, self.warming.as_ref())));
        }
        changed
    }

    /// Ends a warm-up that is over: `tx` hears of the instances without those known before the restart.
    fn end_warm_up(&mut self, tx: &watch::Sender<Arc<Snapshot>>) {
        let over = self
            .warming
            .take_if(|(until, _)| Instant::now() >= *until)
            .is_some();
        if over && let Some(last) = &self.last {
            tx.send_replace(Arc::new(last.clone()));
        }
    }
}

/// How one subscription of a service ended.
enum Subscription {
    /// The registry ended it (it shuts down, or tracks too many services): subscribe again after a pause.
    Ended { items: u32 },
    /// The registry did not take the stream (an older one, or one at its limit of streams on this connection):
    /// watch with long polls for a while instead.
    Unsupported,
    /// It failed: subscribe again after the pause of failures.
    Failed(RpcError),
}

/// Keeps `tx` current with the instances of `service`: a stream of its changes (`subscribe`, protocol 1.1), or,
/// from a registry that does not stream, long polls answered as soon as the service changes. On errors it keeps
/// the last instances and tries again (after a pause that grows while the errors go on): with several registry
/// addresses, the connection tries another replica then, and the watch goes on there from the epoch and
/// revision it had seen.
pub(super) async fn watch_loop(
    registry: RegistryClient,
    service: String,
    config: DiscoveryConfig,
    tx: watch::Sender<Arc<Snapshot>>,
    errors: Errors,
) {
    let mut at = Tracked::default();
    let mut failures = 0u32;
    // Unchanged answers (or ended streams) that came back long before the wait asked for, in a row.
    let mut early = 0u32;
    // While set, the registry did not take a subscription: long polls until then, then a subscription again
    // (it may have been upgraded, or have room for one more stream).
    let mut polls_until: Option<Instant> = None;
    loop {
        if polls_until.is_none_or(|until| Instant::now() >= until) {
            polls_until = None;
            let asked = Instant::now();
            match subscription(&registry, &service, &config, &tx, &errors, &mut at).await {
                Subscription::Unsupported => {
                    polls_until = Some(Instant::now() + POLLS_BEFORE_STREAMS)
                }
                Subscription::Ended { items } => {
                    failures = 0;
                    if items <= 1 || asked.elapsed() < config.watch_wait / 2 {
                        early = early.saturating_add(1);
                        tokio::time::sleep(retry_pause(early)).await;
                    } else {
                        early = 0;
                    }
                }
                Subscription::Failed(e) => {
                    rpc_core::sync::lock(&errors).insert(service.clone(), e.to_string());
                    failures = failures.saturating_add(1);
                    tokio::time::sleep(retry_pause(failures)).await;
                }
            }
            continue;
        }
        let mut wait = config.watch_wait;
        if let Some((until, _)) = &at.warming {
            wait = wait.min(until.saturating_duration_since(Instant::now()));
        }
        let call = registry.with_deadline(wait + Duration::from_secs(5));
        let wait_ms = wait.as_millis() as u64;
        let asked = Instant::now();
        match call
            .watch(service.clone(), at.epoch, at.since, wait_ms)
            .await
        {
            Ok(snapshot) => {
                if failures > 0 {
                    rpc_core::sync::lock(&errors).remove(&service);
                }
                failures = 0;
                if at.apply(snapshot, &config, &tx) {
                    early = 0;
                } else if asked.elapsed() < wait / 2 {
                    // The registry answered at once with nothing new: it will not keep this watch (a name it
                    // cannot track, or it is shutting down). Asking again at once would spin; back off as
                    // after an error.
                    early = early.saturating_add(1);
                    tokio::time::sleep(retry_pause(early)).await;
                } else {
                    early = 0;
                }
            }
            Err(e) => {
                if e.code() == Status::DeadlineExceeded {
                    // The registry let the long poll pass its wait and 5 s: silent, though its connection
                    // stands (a hung process). Move to the next of its addresses.
                    registry
                        .client()
                        .reconnect("the registry's watch went silent");
                }
                rpc_core::sync::lock(&errors).insert(service.clone(), e.to_string());
                failures = failures.saturating_add(1);
                tokio::time::sleep(retry_pause(failures)).await;
            }
        }
    }
}

/// Follows one subscription of `service` until it ends: each item goes to `tx`. A registry silent for the
/// watch's wait and 5 s more (it sends the state unchanged after each wait) is taken for gone.
async fn subscription(
    registry: &RegistryClient,
    service: &str,
    config: &DiscoveryConfig,
    tx: &watch::Sender<Arc<Snapshot>>,
    errors: &Errors,
    at: &mut Tracked,
) -> Subscription {
    let wait = config.watch_wait;
    let wait_ms = wait.as_millis() as u64;
    let mut items = match registry
        .subscribe(service.to_owned(), at.epoch, at.since, wait_ms)
        .await
    {
        Ok(items) => items,
        Err(e) => return Subscription::Failed(e),
    };
    let mut got = 0u32;
    loop {
        let silent_at = Instant::now() + wait + Duration::from_secs(5);
        let until = at
            .warming
            .as_ref()
            .map_or(silent_at, |(until, _)| (*until).min(silent_at));
        match tokio::time::timeout_at(until, items.next()).await {
            Err(_) if Instant::now() < silent_at => at.end_warm_up(tx),
            Err(_) => {
                let message =
                    format!("the registry's stream of {service} went silent for {wait:?} and 5 s");
                // A registry that hangs keeps its connection open: move to the next of its addresses.
                registry.client().reconnect(&message);
                return Subscription::Failed(RpcError::new(Status::Unavailable, message));
            }
            Ok(None) => return Subscription::Ended { items: got },
            Ok(Some(Ok(watched))) => {
                if got == 0 {
                    rpc_core::sync::lock(errors).remove(service);
                }
                got = got.saturating_add(1);
                at.apply(watched.snapshot, config, tx);
            }
            // A registry of protocol 1.0 refuses the stream's flag; one of 1.1 without `subscribe` refuses the
            // method; one at its limit of streams on this connection refuses the stream.
            Ok(Some(Err(e)))
                if got == 0
                    && matches!(
                        e.code(),
                        Status::Unimplemented | Status::InvalidArgument | Status::ResourceExhausted
                    ) =>
            {
                return Subscription::Unsupported;
            }
            Ok(Some(Err(e))) => return Subscription::Failed(e),
        }
    }
}

/// `snapshot`, plus the instances known before a registry restart that have not registered again yet.
fn with_warming(mut snapshot: Snapshot, warming: Option<&(Instant, Vec<Instance>)>) -> Snapshot {
    if let Some((_, before)) = warming {
        for old in before {
            if !snapshot.instances.iter().any(|i| i.address == old.address) {
                snapshot.instances.push(old.clone());
            }
        }
    }
    snapshot
}
