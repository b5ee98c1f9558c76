//! The registry's own counters (registrations, heartbeats, evictions, refusals, watchers), and their exposition
//! with the instances of each service: a `prometheus-client` collector over one scrape's values, written in the
//! Prometheus text format by the crate's encoder, as the framework's own metrics are.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::metrics::prometheus_client::collector::Collector;
use rpc_core::metrics::prometheus_client::encoding::{
    DescriptorEncoder, NoLabelSet, prometheus_text,
};
use rpc_core::metrics::prometheus_client::metrics::MetricType;
use rpc_core::metrics::prometheus_client::registry::{Registry, Unit};
use serde::Serialize;

use crate::api::RegistryError;
use crate::server::store::listing::Listings;

/// Counters of what the registry did since it started.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    registrations: AtomicU64,
    deregistrations: AtomicU64,
    heartbeats: AtomicU64,
    evictions: AtomicU64,
    /// Refused writes, by [`refusal`] kind.
    refused: [AtomicU64; REFUSALS.len()],
    /// Watches waiting for a change: RPC watches (clients' discovery), and HTTP long polls (dashboards).
    rpc_watchers: AtomicI64,
    http_watchers: AtomicI64,
}

/// The kinds of refused writes, as the `reason` label names them.
const REFUSALS: [&str; 9] = [
    "unauthenticated",
    "unknown_lease",
    "superseded",
    "invalid",
    "limit",
    "address",
    "invalid_rules",
    "not_found",
    "not_stored",
];

fn refusal(e: &RegistryError) -> usize {
    match e {
        RegistryError::Unauthenticated(_) => 0,
        RegistryError::UnknownLease { .. } => 1,
        RegistryError::Superseded { .. } => 2,
        RegistryError::Invalid(_) => 3,
        RegistryError::LimitExceeded(_) => 4,
        RegistryError::AddressRefused(_) => 5,
        RegistryError::InvalidRules(_) => 6,
        RegistryError::NotFound(_) => 7,
        RegistryError::NotStored(_) => 8,
    }
}

/// The counters, as the JSON overview shows them.
#[derive(Clone, Copy, Debug, Serialize)]
pub(crate) struct Totals {
    pub(crate) services: usize,
    pub(crate) instances: usize,
    pub(crate) registrations: u64,
    pub(crate) deregistrations: u64,
    pub(crate) heartbeats: u64,
    pub(crate) evictions: u64,
    pub(crate) refused: u64,
    pub(crate) watchers: i64,
}

/// A watcher counted in [`Stats`] until dropped.
pub(crate) struct Watching<'a>(&'a AtomicI64);

impl Drop for Watching<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Stats {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn registered(&self) {
        Stats::add(&self.registrations);
    }

    pub(crate) fn deregistered(&self) {
        Stats::add(&self.deregistrations);
    }

    pub(crate) fn heartbeat(&self) {
        Stats::add(&self.heartbeats);
    }

    pub(crate) fn evicted(&self) {
        Stats::add(&self.evictions);
    }

    /// Counts `result` if it is a refusal, and passes it on.
    pub(crate) fn refused<T>(&self, result: Result<T, RegistryError>) -> Result<T, RegistryError> {
        if let Err(e) = &result {
            Stats::add(&self.refused[refusal(e)]);
        }
        result
    }

    /// A waiting RPC watch, counted until the guard drops.
    pub(crate) fn rpc_watching(&self) -> Watching<'_> {
        self.rpc_watchers.fetch_add(1, Ordering::Relaxed);
        Watching(&self.rpc_watchers)
    }

    /// A waiting HTTP long poll, counted until the guard drops; `None` if `limit` of them already wait.
    pub(crate) fn http_watching(&self, limit: usize) -> Option<Watching<'_>> {
        let before = self.http_watchers.fetch_add(1, Ordering::Relaxed);
        let guard = Watching(&self.http_watchers);
        (before < i64::try_from(limit).unwrap_or(i64::MAX)).then_some(guard)
    }

    /// The counters, with the registry's `services` (with instances) and `instances`.
    pub(crate) fn totals(&self, services: usize, instances: usize) -> Totals {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Totals {
            services,
            instances,
            registrations: load(&self.registrations),
            deregistrations: load(&self.deregistrations),
            heartbeats: load(&self.heartbeats),
            evictions: load(&self.evictions),
            refused: self.refused.iter().map(load).sum(),
            watchers: self.rpc_watchers.load(Ordering::Relaxed)
                + self.http_watchers.load(Ordering::Relaxed),
        }
    }

    /// Appends the registry's metrics (`rpc_registry_*`) in the Prometheus text format (version 0.0.4), with
    /// the instances of each service of `listings` and the registry's `ttl`.
    pub(crate) fn render_into(&self, listings: &Listings, ttl: Duration, out: &mut String) {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let scrape = Scrape {
            listings: Listings::clone(listings),
            ttl,
            counters: [
                load(&self.registrations),
                load(&self.deregistrations),
                load(&self.heartbeats),
                load(&self.evictions),
            ],
            refused: std::array::from_fn(|i| load(&self.refused[i])),
            watchers: [
                self.rpc_watchers.load(Ordering::Relaxed),
                self.http_watchers.load(Ordering::Relaxed),
            ],
        };
        let mut registry = Registry::default();
        registry.register_collector(Box::new(scrape));
        // Writing to a `String` does not fail, and these metrics hold nothing the format refuses.
        let _ = prometheus_text::encode(out, &registry);
    }
}

/// The names and help of [`Stats`]' counters, in [`Scrape::counters`]' order (without `_total`, which the
/// encoder appends).
const COUNTERS: [(&str, &str); 4] = [
    ("rpc_registry_registrations", "Registrations accepted."),
    (
        "rpc_registry_deregistrations",
        "Instances deregistered by their lease holder.",
    ),
    (
        "rpc_registry_heartbeats",
        "Heartbeats accepted (rate() of it is heartbeats per second).",
    ),
    (
        "rpc_registry_evictions",
        "Instances evicted for want of a heartbeat within the TTL.",
    ),
];

/// The registry's metrics at one scrape, for `prometheus-client` to write.
#[derive(Debug)]
struct Scrape {
    /// Every service with instances.
    listings: Listings,
    ttl: Duration,
    /// Registrations, deregistrations, heartbeats and evictions, as [`COUNTERS`] names them.
    counters: [u64; COUNTERS.len()],
    /// Refused writes, by [`REFUSALS`].
    refused: [u64; REFUSALS.len()],
    /// RPC watchers, then HTTP ones.
    watchers: [i64; 2],
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let mut instances = encoder.encode_descriptor(
            "rpc_registry_instances",
            "Instances registered now, by service.",
            None,
            MetricType::Gauge,
        )?;
        for listing in self.listings.iter() {
            instances
                .encode_family(&[("service", listing.name.as_str())])?
                .encode_gauge(&listing.instances.len())?;
        }
        encoder
            .encode_descriptor(
                "rpc_registry_services",
                "Services with at least one instance.",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&self.listings.len())?;
        for ((name, help), count) in COUNTERS.iter().zip(self.counters) {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        let mut refused = encoder.encode_descriptor(
            "rpc_registry_refused",
            "Writes refused, by reason.",
            None,
            MetricType::Counter,
        )?;
        for (&reason, count) in REFUSALS.iter().zip(self.refused) {
            refused
                .encode_family(&[("reason", reason)])?
                .encode_counter::<NoLabelSet, _, u64>(&count, None)?;
        }
        let mut watchers = encoder.encode_descriptor(
            "rpc_registry_watchers",
            "Watches waiting for a change now: rpc (clients' discovery) and http (dashboards' long polls).",
            None,
            MetricType::Gauge,
        )?;
        for (api, count) in ["rpc", "http"].into_iter().zip(self.watchers) {
            watchers
                .encode_family(&[("api", api)])?
                .encode_gauge(&count)?;
        }
        let seconds = Unit::Seconds;
        encoder
            .encode_descriptor(
                "rpc_registry_ttl",
                "Time after its last heartbeat at which an instance is evicted.",
                Some(&seconds),
                MetricType::Gauge,
            )?
            .encode_gauge(&self.ttl.as_secs_f64())?;
        self.encode_load(&mut encoder)
    }
}

/// A gauge of instances' load: its name, its help, and its value from a load summary.
type Gauge = (
    &'static str,
    &'static str,
    fn(&crate::api::LoadSummary) -> f64,
);

impl Scrape {
    /// Each reporting instance's load over the registry's window of its reports.
    fn encode_load(&self, encoder: &mut DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let loads: Vec<(&str, &str, crate::api::LoadSummary)> = self
            .listings
            .iter()
            .flat_map(|l| {
                l.instances
                    .iter()
                    .filter_map(move |i| Some((l.name.as_str(), i.address.as_str(), i.load()?)))
            })
            .collect();
        let gauges: [Gauge; 4] = [
            (
                "rpc_registry_instance_calls_per_second",
                "Calls an instance answered per second, over its last load reports.",
                |l| l.calls as f64 * 1000.0 / l.window_ms.max(1) as f64,
            ),
            (
                "rpc_registry_instance_error_ratio",
                "The share of an instance's calls that failed, over its last load reports.",
                |l| l.errors as f64 / l.calls.max(1) as f64,
            ),
            (
                "rpc_registry_instance_p99_latency_seconds",
                "The highest 99th percentile latency among an instance's last load reports.",
                |l| l.p99_us as f64 / 1e6,
            ),
            (
                "rpc_registry_instance_in_flight",
                "Calls under way at an instance's last load report.",
                |l| l.in_flight as f64,
            ),
        ];
        for (name, help, value) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for (service, address, load) in &loads {
                family
                    .encode_family(&[("service", *service), ("address", *address)])?
                    .encode_gauge(&value(load))?;
            }
        }
        Ok(())
    }
}
