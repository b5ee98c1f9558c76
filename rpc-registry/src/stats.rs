//! The registry's own counters (registrations, heartbeats, evictions, refusals, watchers) and their rendering,
//! with the instances of each service, in the Prometheus text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use rpc_core::metrics::escape;
use serde::Serialize;

use crate::api::RegistryError;
use crate::listing::Listings;

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
const REFUSALS: [&str; 6] = [
    "unauthenticated",
    "unknown_lease",
    "superseded",
    "invalid",
    "limit",
    "address",
];

fn refusal(e: &RegistryError) -> usize {
    match e {
        RegistryError::Unauthenticated(_) => 0,
        RegistryError::UnknownLease { .. } => 1,
        RegistryError::Superseded { .. } => 2,
        RegistryError::Invalid(_) => 3,
        RegistryError::LimitExceeded(_) => 4,
        RegistryError::AddressRefused(_) => 5,
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

/// Writes the `HELP` and `TYPE` lines of `rpc_registry_{name}`, and hands `out` back for its samples.
fn family<'a>(out: &'a mut String, name: &str, kind: &str, help: &str) -> &'a mut String {
    let _ = writeln!(out, "# HELP rpc_registry_{name} {help}");
    let _ = writeln!(out, "# TYPE rpc_registry_{name} {kind}");
    out
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

    /// Appends the registry's metrics (`rpc_registry_*`) in the Prometheus text format, with the instances of
    /// each service of `listings` and the registry's `ttl`.
    pub(crate) fn render_into(&self, listings: &Listings, ttl: Duration, out: &mut String) {
        let o = family(
            out,
            "instances",
            "gauge",
            "Instances registered now, by service.",
        );
        for listing in listings.iter() {
            let _ = writeln!(
                o,
                "rpc_registry_instances{{service=\"{}\"}} {}",
                escape(&listing.name),
                listing.instances.len()
            );
        }
        let o = family(
            out,
            "services",
            "gauge",
            "Services with at least one instance.",
        );
        let _ = writeln!(o, "rpc_registry_services {}", listings.len());
        let counters = [
            (
                "registrations_total",
                "Registrations accepted.",
                &self.registrations,
            ),
            (
                "deregistrations_total",
                "Instances deregistered by their lease holder.",
                &self.deregistrations,
            ),
            (
                "heartbeats_total",
                "Heartbeats accepted (rate() of it is heartbeats per second).",
                &self.heartbeats,
            ),
            (
                "evictions_total",
                "Instances evicted for want of a heartbeat within the TTL.",
                &self.evictions,
            ),
        ];
        for (name, help, counter) in counters {
            let o = family(out, name, "counter", help);
            let _ = writeln!(o, "rpc_registry_{name} {}", counter.load(Ordering::Relaxed));
        }
        let o = family(
            out,
            "refused_total",
            "counter",
            "Writes refused, by reason.",
        );
        for (reason, counter) in REFUSALS.iter().zip(&self.refused) {
            let _ = writeln!(
                o,
                "rpc_registry_refused_total{{reason=\"{reason}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        let o = family(
            out,
            "watchers",
            "gauge",
            "Watches waiting for a change now: rpc (clients' discovery) and http (dashboards' long polls).",
        );
        for (api, gauge) in [("rpc", &self.rpc_watchers), ("http", &self.http_watchers)] {
            let _ = writeln!(
                o,
                "rpc_registry_watchers{{api=\"{api}\"}} {}",
                gauge.load(Ordering::Relaxed)
            );
        }
        let o = family(
            out,
            "ttl_seconds",
            "gauge",
            "Time after its last heartbeat at which an instance is evicted.",
        );
        let _ = writeln!(o, "rpc_registry_ttl_seconds {}", ttl.as_secs_f64());
    }
}
