//! The dashboard's writes: `POST /v1/services/{name}/weights` (`{"address": A, "weight": N}` sets the weight
//! clients see for an instance, 0 drains it; `"weight": null` gives it back its own) and
//! `POST /v1/rules/{name}/rollback` (`{"revision": N}`). Each needs the registry's own token in
//! `authorization: Bearer <token>` (unless the registry is open), never in the URL, and passes the checks that
//! keep a page of another site from making it through a visitor's browser (`cross_site`: `Host`, `Origin`,
//! `Sec-Fetch-Site`, and a body in `application/json`).
//!
//! A refusal is JSON, `{"error": ...}`, and quotes what came short and escaped.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::api::RegistryError;
use crate::server::service::Shared;

/// Largest body of a write: 4 KiB (an address and a weight, or a revision).
const MAX_WRITE_BODY: usize = 4096;

/// The body of `POST /v1/services/{name}/weights`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetWeight {
    address: String,
    /// The weight clients see; `null` gives the instance back its own.
    weight: Option<u32>,
}

/// The body of `POST /v1/rules/{name}/rollback`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rollback {
    revision: u64,
}

/// The write routes, over the registry's state.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/services/{name}/weights", post(set_weight))
        .route("/v1/rules/{name}/rollback", post(rollback))
        .layer(DefaultBodyLimit::max(MAX_WRITE_BODY))
        .with_state(shared)
}

async fn set_weight(
    State(shared): State<Arc<Shared>>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let write = match checked::<SetWeight>(&shared, &headers, &body) {
        Ok(write) => write,
        Err((status, why)) => return error(status, why),
    };
    let done = shared.stats.refused(
        shared
            .store
            .set_weight(&service, &write.address, write.weight)
            .await,
    );
    match done {
        Ok(now) => Json(serde_json::json!({
            "service": service,
            "address": write.address,
            "set": write.weight,
            "instance": now,
        }))
        .into_response(),
        Err(e) => refusal(&e),
    }
}

async fn rollback(
    State(shared): State<Arc<Shared>>,
    Path(service): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let write = match checked::<Rollback>(&shared, &headers, &body) {
        Ok(write) => write,
        Err((status, why)) => return error(status, why),
    };
    match shared
        .stats
        .refused(shared.rollback_rules(&service, write.revision).await)
    {
        Ok(revision) => Json(revision).into_response(),
        Err(e) => refusal(&e),
    }
}

/// The write's body, once the request passed every check of the module's list.
fn checked<T: DeserializeOwned>(
    shared: &Shared,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<T, (StatusCode, String)> {
    let config = &shared.config;
    crate::server::cross_site::check(config, headers, "write")?;
    if !config.is_open() {
        let carried = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "));
        let admin = match (carried, config.token.as_deref()) {
            (Some(carried), Some(token)) => {
                crate::server::credentials::constant_time_eq(carried, token.as_bytes())
            }
            _ => false,
        };
        if !admin {
            let refused = RegistryError::Unauthenticated(shared.admin_needed().to_owned());
            let _ = shared.stats.refused::<()>(Err(refused.clone()));
            return Err((StatusCode::UNAUTHORIZED, refused.to_string()));
        }
    }
    serde_json::from_slice(body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            format!(
                "the body is not the JSON expected: {}",
                rpc_core::text::quoted(&e.to_string(), 256)
            ),
        )
    })
}

/// A refusal: `{"error": why}`, with `www-authenticate` when it is for want of a credential.
fn error(status: StatusCode, why: String) -> Response {
    let mut response = (status, Json(serde_json::json!({ "error": why }))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    response
}

/// A refused write, with the HTTP status of its reason.
fn refusal(e: &RegistryError) -> Response {
    let status = match e {
        RegistryError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        RegistryError::NotFound(_) => StatusCode::NOT_FOUND,
        RegistryError::LimitExceeded(_) => StatusCode::CONFLICT,
        RegistryError::NotStored(_) => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    };
    error(status, e.to_string())
}
