//! The registry's HTTP port: the dashboard at `/`, the JSON API (`GET /v1/services`, `GET /v1/services/{name}`,
//! `GET /v1/services/{name}/methods`, `GET /v1/overview`, `GET /v1/rules/{name}`, `GET /v1/weights`,
//! `GET /healthz`) and Prometheus metrics at `/metrics`, built after the state's lock is released like the RPC
//! API's reads; the dashboard's writes are `http_writes`', and calls through the gateway `gateway`'s. When reads
//! need a credential (`readers` in the credentials file), the JSON API, metrics and the gateway want
//! `authorization: Bearer <token>` and answer `401` without it; the dashboard's page itself holds no data, and
//! `/healthz` stays open for liveness probes.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api::ServiceSummary;
use crate::server::describe::{DescribeError, Describer};
use crate::server::overview::{MAX_CHANGES, Overview, PageQuery, ServiceView, Taken};
use crate::server::service::{Shared, shown};
use crate::server::store::StoreStatus;

/// The dashboard: one self-contained page (its styles and script inline, nothing loaded from elsewhere).
const DASHBOARD: &str = include_str!("dashboard.html");

/// Overviews built at once, each on a blocking thread: 2. More wait for their turn (without a thread), so that
/// many dashboards opened at once cost a queue, not a thread each scanning every instance.
const MAX_OVERVIEW_BUILDS: usize = 2;

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
    /// Where instances and rules are kept (`memory` or `etcd`), whether it takes writes, and the replicas.
    store: StoreStatus,
    /// Whether `POST /call/{Service}/{method}` calls services (`serve --gateway`).
    gateway: bool,
}

/// `?epoch=E&since=R&wait_ms=W` of `GET /v1/overview` (which page it shows is a [`PageQuery`]).
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
    /// Permits to build an overview ([`MAX_OVERVIEW_BUILDS`]).
    builds: Arc<Semaphore>,
    /// The services' descriptions, asked of their instances.
    describer: Arc<Describer>,
}

/// The routes, over the registry's state and its RPC server's metrics.
pub(crate) fn router(shared: Arc<Shared>, rpc: rpc_core::Metrics) -> Router {
    let describer = Arc::new(Describer::new(&shared.config));
    Router::new()
        .route("/", get(dashboard))
        .route("/healthz", get(health))
        .route("/metrics", get(metrics))
        .route("/v1/services", get(services))
        .route("/v1/services/{name}", get(service))
        .route("/v1/services/{name}/methods", get(methods))
        .route("/v1/overview", get(overview))
        .route("/v1/rules/{name}", get(rules))
        .route("/v1/weights", get(weights))
        .with_state(Http {
            shared: Arc::clone(&shared),
            rpc,
            builds: Arc::new(Semaphore::new(MAX_OVERVIEW_BUILDS)),
            describer: Arc::clone(&describer),
        })
        .merge(crate::server::gateway::router(
            Arc::clone(&shared),
            describer,
        ))
        .layer(axum::middleware::from_fn_with_state(
            Arc::clone(&shared),
            readers_only,
        ))
        .merge(crate::server::http_writes::router(shared))
}

/// `GET /v1/services/{name}/methods`: the service's description (its methods, their arguments' names and
/// types, docs, idempotency and streaming), as one of its instances gave it; `404` when no instance is
/// registered, `503` (as the gateway answers `unavailable`) when none that was asked described it. A JSON error
/// body says why.
async fn methods(State(http): State<Http>, Path(name): Path<String>) -> Response {
    match http.describer.describe(&http.shared, &name).await {
        Ok(description) => Json(&*description).into_response(),
        Err(e) => {
            let status = match e {
                DescribeError::NotRegistered { .. } => StatusCode::NOT_FOUND,
                DescribeError::NoAnswer { .. } => StatusCode::SERVICE_UNAVAILABLE,
            };
            (status, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
        }
    }
}

/// `GET /v1/weights`: every weight operators set, whether an instance holds its address now or not.
async fn weights(State(http): State<Http>) -> Json<Vec<serde_json::Value>> {
    let weights = http.shared.index().read().weights();
    Json(
        weights
            .iter()
            .map(|(service, address, weight)| {
                serde_json::json!({ "service": service, "address": address, "weight": weight })
            })
            .collect(),
    )
}

/// A revision of a service's rules as `GET /v1/rules/{name}` shows it.
#[derive(Debug, Serialize)]
struct RulesView {
    revision: u64,
    applied_at_ms: u64,
    origin: String,
    /// The document, as pretty JSON (one field a line, for a diff).
    rules: String,
}

/// `GET /v1/rules/{name}`: the rules of a service in force and the revision before them (`null` for either that
/// is not there), so that a page can show the last change.
#[derive(Debug, Serialize)]
struct RulesPair {
    service: String,
    current: Option<RulesView>,
    previous: Option<RulesView>,
}

async fn rules(State(http): State<Http>, Path(name): Path<String>) -> Json<RulesPair> {
    let history = http.shared.store.rules().history(&name);
    let view = |r: &crate::api::RulesRevision| RulesView {
        revision: r.revision,
        applied_at_ms: r.applied_at_ms,
        origin: r.origin.clone(),
        rules: serde_json::from_str::<serde_json::Value>(&r.rules)
            .and_then(|v| serde_json::to_string_pretty(&v))
            .unwrap_or_else(|_| r.rules.clone()),
    };
    let mut newest = history.iter().rev();
    Json(RulesPair {
        service: name.clone(),
        current: newest.next().map(view),
        previous: newest.next().map(view),
    })
}

/// Answers `401` to a read of data without a credential that may read, when reads need one.
async fn readers_only(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    let config = &shared.config;
    // With `callers`, the gateway checks its calls' credentials itself (a caller need not be a reader).
    let open = matches!(request.uri().path(), "/" | "/healthz")
        || config.credentials.calls_need_caller() && request.uri().path().starts_with("/call/");
    if open || !config.credentials.reads_need_credential() {
        return next.run(request).await;
    }
    let carried = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .map(|v| v.strip_prefix(b"Bearer ").unwrap_or(v));
    match carried {
        Some(token) if config.credentials.may_read(token, config.token.as_deref()) => {
            next.run(request).await
        }
        _ => {
            let why = match carried {
                Some(_) => "the bearer token is not one that may read this registry",
                None => "reading this registry needs a credential: `authorization: Bearer <token>`",
            };
            (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                Json(serde_json::json!({ "error": why })),
            )
                .into_response()
        }
    }
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
        let state = http.shared.index().read();
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
    let store = http.shared.store.status();
    if let Some(problem) = &store.problem {
        reasons.push(format!("store: {problem}"));
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
        store,
        gateway: config.gateway,
    })
}

async fn metrics(State(http): State<Http>) -> Response {
    let mut body = String::with_capacity(4096);
    let (listings, ttl) = {
        let mut state = http.shared.index().read();
        (state.listings(), state.ttl())
    };
    http.shared.stats.render_into(&listings, ttl, &mut body);
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
    Json(http.shared.services())
}

async fn service(
    State(http): State<Http>,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, (StatusCode, String)> {
    let status = http.shared.report(Some(&name));
    match status.into_iter().next() {
        Some(service) => Ok(Json(ServiceView::from(service))),
        None => Err((
            StatusCode::NOT_FOUND,
            format!("no instances of service `{}` are registered", shown(&name)),
        )),
    }
}

/// The overview (one page of it, see [`PageQuery`]), at once if it differs from revision `since` of registry
/// `epoch` (or those are not given), else as soon as anything changes, or after `wait_ms` (at most
/// `max_watch_wait`) with no change.
async fn overview(
    State(http): State<Http>,
    Query(since): Query<Since>,
    Query(page): Query<PageQuery>,
) -> Response {
    let shared = &http.shared;
    let changed = {
        let state = shared.index().read();
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
    let Ok(_building) = http.builds.acquire().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    // Outside the index's lock: the store's status takes locks of its own.
    let store = shared.store.status();
    let taken = {
        let mut state = shared.index().read();
        // The changes after the page's revision; on a first load (or from another epoch), the last ones.
        let after = match since.epoch.as_deref() == Some(&state.epoch().to_string()) {
            true => since.since.unwrap_or(0),
            false => 0,
        };
        Taken {
            epoch: state.epoch(),
            revision: state.revision(),
            clock: state.clock(),
            listings: state.listings(),
            totals: shared
                .stats
                .totals(state.service_count(), state.instance_count()),
            changes: state.history().after(after, MAX_CHANGES + 1),
            covered: state.history().covers(after),
            uptime: shared.started.elapsed(),
            store,
            gateway: shared.config.gateway,
        }
    };
    // Counting late instances and filtering look at every instance: not on a worker that serves heartbeats.
    let now = Instant::now();
    let built = tokio::task::spawn_blocking(move || {
        serde_json::to_vec(&Overview::build(taken, &page, now))
    })
    .await;
    match built {
        Ok(Ok(body)) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Ok(Err(e)) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the overview does not serialize: {e}"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("building the overview failed: {e}"),
        )
            .into_response(),
    }
}
