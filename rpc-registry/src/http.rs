//! The registry's HTTP port: the dashboard at `/`, the JSON API (`GET /v1/services`, `GET /v1/services/{name}`,
//! `GET /v1/overview`, `GET /healthz`) and Prometheus metrics at `/metrics`. Read-only, like the RPC API's reads.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::api::{InstanceState, InstanceStatus, ServiceStatus, ServiceSummary};
use crate::service::Shared;
use crate::stats::Totals;

/// The dashboard: one self-contained page (its styles and script inline, nothing loaded from elsewhere).
const DASHBOARD: &str = include_str!("dashboard.html");

/// One instance as the HTTP API shows it.
#[derive(Debug, Serialize)]
struct InstanceView {
    address: String,
    weight: u32,
    metadata: BTreeMap<String, String>,
    lease: u64,
    incarnation: u64,
    /// `up`, or `late` (no heartbeat for over half the TTL).
    state: InstanceState,
    /// Milliseconds since the instance's last heartbeat.
    heartbeat_age_ms: u64,
}

impl From<InstanceStatus> for InstanceView {
    fn from(s: InstanceStatus) -> InstanceView {
        InstanceView {
            address: s.instance.address,
            weight: s.instance.weight,
            metadata: s.instance.metadata,
            lease: s.instance.lease,
            incarnation: s.instance.incarnation,
            state: s.state,
            heartbeat_age_ms: s.heartbeat_age_ms,
        }
    }
}

/// One service as the HTTP API shows it.
#[derive(Debug, Serialize)]
struct ServiceView {
    name: String,
    revision: u64,
    instances: Vec<InstanceView>,
}

impl From<ServiceStatus> for ServiceView {
    fn from(s: ServiceStatus) -> ServiceView {
        ServiceView {
            name: s.name,
            revision: s.revision,
            instances: s.instances.into_iter().map(InstanceView::from).collect(),
        }
    }
}

/// Everything the dashboard shows, at one revision.
#[derive(Debug, Serialize)]
struct Overview {
    /// The registry process's identity, as a string (JavaScript numbers cannot hold every `u64`).
    epoch: String,
    /// The registry's revision: that of its last change.
    revision: u64,
    ttl_ms: u64,
    heartbeat_ms: u64,
    uptime_ms: u64,
    totals: Totals,
    services: Vec<ServiceView>,
}

/// `GET /healthz`: `ok`, or `degraded` while a cap is reached (the registry then refuses something it would
/// otherwise take), each such cap named in `reasons`. Answered `200` either way: a full registry still serves.
#[derive(Debug, Serialize)]
struct Health {
    /// `ok` or `degraded`.
    status: &'static str,
    /// Each cap reached: which, how full, and what is refused meanwhile. Empty when `ok`.
    reasons: Vec<String>,
    epoch: String,
    uptime_ms: u64,
    /// Services with instances.
    services: usize,
    instances: usize,
    /// Connections open to the RPC API.
    connections: u64,
}

/// `?epoch=E&since=R&wait_ms=W` of `GET /v1/overview`.
#[derive(Debug, Deserialize)]
struct Since {
    epoch: Option<String>,
    since: Option<u64>,
    wait_ms: Option<u64>,
}

/// What the handlers share.
#[derive(Clone)]
struct Http {
    shared: Arc<Shared>,
    /// The metrics of the registry's RPC server, rendered after the registry's own.
    rpc: rpc_core::Metrics,
}

/// The routes, over the registry's state and its RPC server's metrics.
pub(crate) fn router(shared: Arc<Shared>, rpc: rpc_core::Metrics) -> Router {
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/services", get(services))
        .route("/v1/services/{name}", get(service))
        .route("/v1/overview", get(overview))
        .with_state(Http { shared, rpc })
}

async fn dashboard() -> Html<&'static str> {
    Html(DASHBOARD)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

async fn health(State(http): State<Http>) -> Json<Health> {
    let config = &http.shared.config;
    let (epoch, services, tracked, instances) = {
        let state = http.shared.state();
        let counts = (
            state.service_count(),
            state.tracked(),
            state.instance_count(),
        );
        (state.epoch(), counts.0, counts.1, counts.2)
    };
    let connections = http.rpc.connections();
    let max_connections = config.server.max_connections as u64;
    let mut reasons = Vec::new();
    if instances >= config.max_instances {
        reasons.push(format!(
            "instances: {instances} of {} (max_instances): new instances are refused",
            config.max_instances
        ));
    }
    if tracked >= config.max_services {
        reasons.push(format!(
            "services: {tracked} of {} tracked (max_services): new services are refused, and watches of them \
             answered at once",
            config.max_services
        ));
    }
    if connections >= max_connections {
        reasons.push(format!(
            "connections: {connections} of {max_connections} (max_connections): new connections are refused"
        ));
    }
    Json(Health {
        status: if reasons.is_empty() { "ok" } else { "degraded" },
        reasons,
        epoch: epoch.to_string(),
        uptime_ms: millis(http.shared.started.elapsed()),
        services,
        instances,
        connections,
    })
}

async fn metrics(State(http): State<Http>) -> Response {
    let mut body = String::with_capacity(4096);
    {
        let state = http.shared.state();
        http.shared.stats.render_into(&state, &mut body);
    }
    http.rpc.render_into(&mut body);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn services(State(http): State<Http>) -> Json<Vec<ServiceSummary>> {
    Json(http.shared.state().services())
}

async fn service(
    State(http): State<Http>,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, (StatusCode, String)> {
    let status = http.shared.state().status(Some(&name), Instant::now());
    match status.into_iter().next() {
        Some(service) => Ok(Json(ServiceView::from(service))),
        None => Err((
            StatusCode::NOT_FOUND,
            format!("no instances of service `{name}` are registered"),
        )),
    }
}

/// The overview, at once if it differs from revision `since` of registry `epoch` (or those are not given), else
/// as soon as anything changes, or after `wait_ms` (at most `max_watch_wait`) with no change.
async fn overview(State(http): State<Http>, Query(since): Query<Since>) -> Response {
    let shared = &http.shared;
    let changed = {
        let state = shared.state();
        let current = since.epoch.as_deref() == Some(&state.epoch().to_string())
            && since.since == Some(state.revision());
        current.then(|| state.subscribe_all())
    };
    if let Some(mut changed) = changed {
        let limit = shared.config.max_http_watchers;
        let Some(_watching) = shared.stats.http_watching(limit) else {
            let busy = format!(
                "{limit} dashboards are already waiting for changes, the limit (max_http_watchers): retry later"
            );
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                busy,
            )
                .into_response();
        };
        let wait =
            Duration::from_millis(since.wait_ms.unwrap_or(0)).min(shared.config.max_watch_wait);
        // `wait_for` looks at the current revision first, so a change made since the check above is not missed.
        let from = since.since;
        tokio::select! {
            _ = tokio::time::timeout(wait, changed.wait_for(|&revision| Some(revision) != from)) => {}
            () = shared.closed() => {}
        }
    }
    let state = shared.state();
    let ttl = state.ttl();
    Json(Overview {
        epoch: state.epoch().to_string(),
        revision: state.revision(),
        ttl_ms: millis(ttl),
        heartbeat_ms: (millis(ttl) / 3).max(1),
        uptime_ms: millis(shared.started.elapsed()),
        totals: shared.stats.totals(&state),
        services: state
            .status(None, Instant::now())
            .into_iter()
            .map(ServiceView::from)
            .collect(),
    })
    .into_response()
}
