//! What the gateway's clients follow, taken from the registry's own state rather than through a watch over
//! the network: a service's instances (a [`Feed`] woken by the service's revision, with the weights operators
//! set and the instances' labels, as a discovery sees them) and its rules (the revision in force at once, then
//! each one applied, by a task that ends with the registry or when its client is dropped).

use std::sync::Arc;
use std::time::Duration;

use rpc_core::balance::{Feed, Instance};
use rpc_core::client::RulesFeed;
use rpc_core::rules::Rules;
use tokio::sync::watch;

use crate::api::RulesRevision;
use crate::server::service::Shared;

/// How long one wait for a service's next rules lasts before it starts again: 60 s.
const RULES_WAIT: Duration = Duration::from_secs(60);

/// The instances of one service, as the registry lists them now.
pub(crate) struct Instances {
    shared: Arc<Shared>,
    service: String,
    /// The service's revision: it changes with its instances.
    revision: watch::Receiver<u64>,
}

impl Instances {
    /// The instances of `service`; `None` if the registry cannot follow one more service (its `max_services`).
    pub(crate) fn of(shared: Arc<Shared>, service: &str) -> Option<Instances> {
        let revision = shared.index().read().subscribe(service)?;
        Some(Instances {
            shared,
            service: service.to_owned(),
            revision,
        })
    }
}

impl Feed for Instances {
    fn has_changed(&self) -> bool {
        // A store that rebuilt its state dropped the revision's sender: look again (and subscribe again).
        self.revision.has_changed().unwrap_or(true)
    }

    fn current(&mut self) -> Vec<Instance> {
        if self.revision.has_changed().is_err()
            && let Some(again) = self.shared.index().read().subscribe(&self.service)
        {
            self.revision = again;
        }
        self.revision.borrow_and_update();
        self.shared
            .instances(&self.service)
            .instances
            .iter()
            .map(|i| {
                Instance::new(&i.address, i.weight)
                    .with_labels(i.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            })
            .collect()
    }
}

/// The rules of `service` in force, kept current by a task (abort it when the client that follows them goes).
pub(crate) fn rules(shared: Arc<Shared>, service: String) -> (RulesFeed, tokio::task::AbortHandle) {
    let current = shared.store.rules().current(&service);
    let mut since = current.as_ref().map_or(0, |r| r.revision);
    let (tx, rx) = watch::channel(current.as_ref().and_then(parsed));
    let task = tokio::spawn(async move {
        loop {
            let next = tokio::select! {
                () = shared.closed() => return,
                next = shared.store.rules().watch(&service, since, RULES_WAIT, std::future::pending()) => next,
            };
            let revision = next.as_ref().map_or(0, |r| r.revision);
            if revision == since {
                continue;
            }
            since = revision;
            match next {
                None => {
                    tx.send_replace(None);
                }
                // A revision that does not read (none should: the registry checked it) keeps the ones before.
                Some(applied) => {
                    if let Some(rules) = parsed(&applied) {
                        tx.send_replace(Some(rules));
                    }
                }
            }
        }
    });
    (rx, task.abort_handle())
}

/// The rules of `revision`, read and checked.
fn parsed(revision: &RulesRevision) -> Option<Arc<Rules>> {
    let mut rules = serde_json::from_str::<Rules>(&revision.rules).ok()?;
    rules.check().ok()?;
    Some(Arc::new(rules))
}
