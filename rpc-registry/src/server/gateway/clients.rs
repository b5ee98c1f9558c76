//! The gateway's clients: one balanced [`Client`] per service called, over the service's instances as the
//! registry lists them and following its rules (`follow`), with peak EWMA as its policy unless the rules name
//! another, as a client that discovers through the registry does; so weights, drains, routes, retries and
//! outlier detection apply to calls through the gateway too. At most
//! [`RegistryConfig::gateway_max_services`](crate::RegistryConfig::gateway_max_services) are kept; past it the
//! one used least recently is dropped (its calls in flight finish, its connections close after them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rpc_core::balance::{Balancer, PeakEwma};
use rpc_core::{Client, ClientConfig};

use crate::server::gateway::follow;
use crate::server::service::Shared;

/// A client kept, when it was used last, and the task that keeps its rules current.
#[derive(Debug)]
struct Kept {
    client: Client,
    used: u64,
    rules: tokio::task::AbortHandle,
}

impl Drop for Kept {
    fn drop(&mut self) {
        self.rules.abort();
    }
}

/// The clients kept, by service.
#[derive(Debug, Default)]
struct Map {
    /// Counts uses, for "least recently".
    tick: u64,
    by_service: HashMap<String, Kept>,
}

/// The gateway's clients.
#[derive(Debug)]
pub(crate) struct Clients {
    shared: Arc<Shared>,
    max: usize,
    map: Mutex<Map>,
}

impl Clients {
    /// No client yet, for the registry of `shared`.
    pub(crate) fn new(shared: Arc<Shared>) -> Clients {
        Clients {
            max: shared.config.gateway_max_services.max(1),
            shared,
            map: Mutex::default(),
        }
    }

    /// The client of `service`, made if none is kept; `None` if the registry cannot follow one more service.
    pub(crate) fn of(&self, service: &str) -> Option<Client> {
        let mut map = rpc_core::sync::lock(&self.map);
        map.tick += 1;
        let tick = map.tick;
        if let Some(kept) = map.by_service.get_mut(service) {
            kept.used = tick;
            return Some(kept.client.clone());
        }
        let instances = follow::Instances::of(Arc::clone(&self.shared), service)?;
        let (rules, task) = follow::rules(Arc::clone(&self.shared), service.to_owned());
        let balancer = Balancer::from_parts(Arc::new(PeakEwma::default()), Box::new(instances))
            .with_rules(rules);
        let client = Client::balanced(balancer, ClientConfig::default());
        if map.by_service.len() >= self.max {
            let oldest = map
                .by_service
                .iter()
                .min_by_key(|(_, kept)| kept.used)
                .map(|(name, _)| name.clone());
            if let Some(oldest) = oldest {
                map.by_service.remove(&oldest);
            }
        }
        map.by_service.insert(
            service.to_owned(),
            Kept {
                client: client.clone(),
                used: tick,
                rules: task,
            },
        );
        Some(client)
    }
}
