//! The registry's HTTP JSON view: `GET /v1/services` and `GET /v1/services/{name}`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use serde::Serialize;
use tokio::time::Instant;

use crate::api::ServiceSummary;
use crate::service::Shared;

/// One instance as the HTTP view shows it.
#[derive(Debug, Serialize)]
struct InstanceView {
    address: String,
    weight: u32,
    metadata: std::collections::BTreeMap<String, String>,
    lease: u64,
    incarnation: u64,
    /// Milliseconds since the instance's last heartbeat.
    heartbeat_age_ms: u64,
}

/// One service as the HTTP view shows it.
#[derive(Debug, Serialize)]
struct ServiceView {
    name: String,
    revision: u64,
    instances: Vec<InstanceView>,
}

/// The routes, over the registry's state.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/services", get(services))
        .route("/v1/services/{name}", get(service))
        .with_state(shared)
}

async fn services(State(shared): State<Arc<Shared>>) -> Json<Vec<ServiceSummary>> {
    Json(shared.state().services())
}

async fn service(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
) -> Result<Json<ServiceView>, (StatusCode, String)> {
    let state = shared.state();
    let revision = state.snapshot(&name).revision;
    match state.instances_with_age(&name, Instant::now()) {
        Some(instances) if !instances.is_empty() => Ok(Json(ServiceView {
            name,
            revision,
            instances: instances
                .into_iter()
                .map(|(i, age)| InstanceView {
                    address: i.address,
                    weight: i.weight,
                    metadata: i.metadata,
                    lease: i.lease,
                    incarnation: i.incarnation,
                    heartbeat_age_ms: age.as_millis() as u64,
                })
                .collect(),
        })),
        _ => Err((
            StatusCode::NOT_FOUND,
            format!("no instances of service `{name}`"),
        )),
    }
}
