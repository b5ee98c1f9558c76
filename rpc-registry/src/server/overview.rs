//! The dashboard's view, `GET /v1/overview`: the registry's totals, one page of its instances (services by
//! name, instances by address; with a filter, only the services whose name matches it and the instances whose
//! address or metadata does), and its changes with their reasons (on a first load the last ones, then those
//! after the revision the page shows). Built after the state's lock is released, from the listings and history
//! records taken under it, on a blocking thread (counting the late instances and filtering look at every
//! instance: milliseconds at 100,000, which must not hold up a worker that serves heartbeats); a page holds at
//! most [`MAX_PAGE`] instances whatever the registry holds.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::api::{InstanceReport, InstanceState, ServiceReport};
use crate::server::stats::Totals;
use crate::server::store::StoreStatus;
use crate::server::store::history::{Record, What};
use crate::server::store::listing::{Clock, Listed, Listing, Listings};

/// Instances on a page when the query does not say: 500.
pub(crate) const DEFAULT_PAGE: usize = 500;
/// Most instances on a page, whatever `limit` asks: 2,000.
pub(crate) const MAX_PAGE: usize = 2000;
/// Most changes in one answer (the newest): 100.
pub(crate) const MAX_CHANGES: usize = 100;
/// Longest filter, in bytes; a longer one is cut there: 256.
pub(crate) const MAX_FILTER_LEN: usize = 256;

/// `?offset=N&limit=N&q=TEXT` of `GET /v1/overview`: which page of the instances, and which instances.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct PageQuery {
    /// How many matching instances come before the page. Default 0.
    offset: Option<usize>,
    /// Instances on the page. Default [`DEFAULT_PAGE`], at most [`MAX_PAGE`].
    limit: Option<usize>,
    /// Only services whose name holds this (ASCII case ignored), and instances whose address or a `key=value`
    /// of whose metadata holds it.
    q: Option<String>,
}

/// One instance as the HTTP API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct InstanceView {
    address: String,
    weight: u32,
    /// The weight it registered with: `weight` differs when an operator set another (0 drains it).
    registered_weight: u32,
    metadata: BTreeMap<String, String>,
    lease: u64,
    incarnation: u64,
    /// `up`, or `late` (no heartbeat for over half the TTL).
    state: InstanceState,
    /// Milliseconds since the instance's last heartbeat.
    heartbeat_age_ms: u64,
    /// Its load over the registry's window of its reports, if it sends them.
    #[serde(skip_serializing_if = "Option::is_none")]
    load: Option<crate::api::LoadSummary>,
}

impl From<InstanceReport> for InstanceView {
    fn from(r: InstanceReport) -> InstanceView {
        let s = r.status;
        InstanceView {
            address: s.instance.address,
            weight: s.instance.weight,
            registered_weight: r.registered_weight,
            metadata: s.instance.metadata,
            lease: s.instance.lease,
            incarnation: s.instance.incarnation,
            state: s.state,
            heartbeat_age_ms: s.heartbeat_age_ms,
            load: r.load,
        }
    }
}

/// One service as the HTTP API shows it (`GET /v1/services/{name}`).
#[derive(Debug, Serialize)]
pub(crate) struct ServiceView {
    name: String,
    revision: u64,
    instances: Vec<InstanceView>,
}

impl From<ServiceReport> for ServiceView {
    fn from(s: ServiceReport) -> ServiceView {
        ServiceView {
            name: s.name,
            revision: s.revision,
            instances: s.instances.into_iter().map(InstanceView::from).collect(),
        }
    }
}

/// A service on a page: all of its numbers, and the instances of it that fall on the page.
#[derive(Debug, Serialize)]
struct PageService {
    name: String,
    revision: u64,
    /// Every instance of the service, on the page or not.
    instance_count: usize,
    /// The weights of every instance of the service, for the shares of those shown.
    total_weight: u64,
    /// Its instances that are late now.
    late: usize,
    instances: Vec<InstanceView>,
}

/// Where the page lies among the matching instances.
#[derive(Debug, Serialize)]
struct Page {
    offset: usize,
    limit: usize,
    /// Instances that match the filter (all of them, without one).
    instances: usize,
    /// Services with at least one matching instance.
    services: usize,
}

/// One change, as the dashboard's log shows it.
#[derive(Debug, Serialize)]
struct ChangeView {
    revision: u64,
    /// When, in milliseconds since the Unix epoch.
    at_ms: u64,
    service: String,
    address: String,
    /// `registered`, `deregistered`, `evicted`, `superseded` or `reweighed` (by an operator).
    kind: &'static str,
    weight: u32,
    /// For `reweighed`: the weight before.
    #[serde(skip_serializing_if = "Option::is_none")]
    from_weight: Option<u32>,
    incarnation: u64,
    /// For a registration that replaced the address's previous instance: that instance's incarnation.
    superseded: Option<u64>,
}

impl ChangeView {
    fn of(record: &Record) -> ChangeView {
        let mut from_weight = None;
        let (kind, superseded) = match &record.what {
            What::Registered { superseded, .. } => {
                ("registered", superseded.as_ref().map(|old| old.incarnation))
            }
            What::Reweighed { from, .. } => {
                from_weight = Some(*from);
                ("reweighed", None)
            }
            What::Removed { reason, .. } => (
                match reason {
                    crate::api::RemovalReason::Deregistered => "deregistered",
                    crate::api::RemovalReason::Evicted => "evicted",
                    crate::api::RemovalReason::Superseded => "superseded",
                },
                None,
            ),
        };
        let instance = record.instance();
        let at = record.at.duration_since(UNIX_EPOCH).unwrap_or_default();
        ChangeView {
            revision: record.revision,
            at_ms: u64::try_from(at.as_millis()).unwrap_or(u64::MAX),
            service: instance.service.clone(),
            address: instance.address.clone(),
            kind,
            weight: instance.weight,
            from_weight,
            incarnation: instance.incarnation,
            superseded,
        }
    }
}

/// Everything the dashboard shows, at one revision.
#[derive(Debug, Serialize)]
pub(crate) struct Overview {
    /// The registry process's identity, as a string (JavaScript numbers cannot hold every `u64`).
    epoch: String,
    /// The registry's revision: that of its last change.
    revision: u64,
    ttl_ms: u64,
    heartbeat_ms: u64,
    uptime_ms: u64,
    totals: Totals,
    /// Instances late now, all services together.
    late: usize,
    /// The page: its services, each with its instances on the page.
    services: Vec<PageService>,
    page: Page,
    /// The changes after the page's revision (on a first load, the last ones), oldest first.
    changes: Vec<ChangeView>,
    /// Whether `changes` holds every change after the page's revision (or, on a first load, since the registry
    /// started): false when more happened than the history or the answer holds.
    changes_complete: bool,
    /// Where the registry keeps its state, whether it takes writes, and its replicas.
    store: StoreStatus,
    /// Whether the registry calls services for HTTP callers (`POST /call/{Service}/{method}`, `serve --gateway`).
    gateway: bool,
}

/// What the overview takes under the state's lock.
pub(crate) struct Taken {
    pub(crate) epoch: u64,
    pub(crate) revision: u64,
    pub(crate) clock: Clock,
    pub(crate) listings: Listings,
    pub(crate) totals: Totals,
    /// The newest changes after the page's revision, at most [`MAX_CHANGES`] + 1 (one more says there are more).
    pub(crate) changes: Vec<Record>,
    /// Whether the history holds every change after the page's revision.
    pub(crate) covered: bool,
    pub(crate) uptime: Duration,
    pub(crate) store: StoreStatus,
    pub(crate) gateway: bool,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Whether `haystack` holds `needle`, ASCII case ignored (`needle` is lowercase).
fn holds(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// Whether the instance's address or one of its `key=value` holds `q`.
fn matches(instance: &Listed, q: &str) -> bool {
    holds(&instance.address, q)
        || instance.metadata.iter().any(|(k, v)| {
            holds(k, q) || holds(v, q) || q.contains('=') && holds(&format!("{k}={v}"), q)
        })
}

/// The character boundary at or below `at` in `s`.
fn floor_boundary(s: &str, at: usize) -> usize {
    (0..=at.min(s.len()))
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0)
}

impl Overview {
    /// The page `query` asks for, of what was `taken`, at `now`.
    pub(crate) fn build(taken: Taken, query: &PageQuery, now: Instant) -> Overview {
        let offset = query.offset.unwrap_or(0);
        let limit = query.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let end = offset.saturating_add(limit);
        let q = query.q.as_deref().unwrap_or("").trim();
        let q = q[..floor_boundary(q, MAX_FILTER_LEN)].to_ascii_lowercase();
        let clock = &taken.clock;
        let late_cutoff = clock.late_cutoff(now);
        let mut services = Vec::new();
        let (mut matched, mut matched_services, mut late) = (0, 0, 0);
        for listing in taken.listings.iter() {
            let service_late = listing
                .instances
                .iter()
                .filter(|i| i.is_late(late_cutoff))
                .count();
            late += service_late;
            let by_name = holds(&listing.name, &q);
            let first = matched;
            let shown: Vec<&Arc<Listed>> = if by_name {
                // Every instance matches: only the page's part is looked at.
                let len = listing.instances.len();
                let from = offset.saturating_sub(matched).min(len);
                let to = end.saturating_sub(matched).min(len).max(from);
                matched += len;
                listing.instances[from..to].iter().collect()
            } else {
                let mut shown = Vec::new();
                for instance in listing.instances.iter().filter(|i| matches(i, &q)) {
                    if (offset..end).contains(&matched) {
                        shown.push(instance);
                    }
                    matched += 1;
                }
                shown
            };
            if matched > first {
                matched_services += 1;
            }
            if !shown.is_empty() {
                services.push(page_service(listing, &shown, service_late, clock, now));
            }
        }
        let changes_complete = taken.covered && taken.changes.len() <= MAX_CHANGES;
        let skip = taken.changes.len().saturating_sub(MAX_CHANGES);
        let ttl = millis(clock.ttl());
        Overview {
            epoch: taken.epoch.to_string(),
            revision: taken.revision,
            ttl_ms: ttl,
            heartbeat_ms: (ttl / 3).max(1),
            uptime_ms: millis(taken.uptime),
            store: taken.store,
            gateway: taken.gateway,
            totals: taken.totals,
            late,
            services,
            page: Page {
                offset,
                limit,
                instances: matched,
                services: matched_services,
            },
            changes: taken.changes[skip..].iter().map(ChangeView::of).collect(),
            changes_complete,
        }
    }
}

fn page_service(
    listing: &Listing,
    shown: &[&Arc<Listed>],
    late: usize,
    clock: &Clock,
    now: Instant,
) -> PageService {
    PageService {
        name: listing.name.clone(),
        revision: listing.revision,
        instance_count: listing.instances.len(),
        total_weight: listing.total_weight,
        late,
        instances: shown
            .iter()
            .map(|i| InstanceView::from(i.report(clock, now)))
            .collect(),
    }
}
