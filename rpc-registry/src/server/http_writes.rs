//! The dashboard's writes: `POST /v1/services/{name}/weights` (`{"address": A, "weight": N}` sets the weight
//! clients see for an instance, 0 drains it; `"weight": null` gives it back its own) and
//! `POST /v1/rules/{name}/rollback` (`{"revision": N}`). Each needs the registry's own token in
//! `authorization: Bearer <token>` (unless the registry is open), never in the URL, and passes the checks that
//! keep a page of another site from making it through a visitor's browser:
//! - `Host` must be an IP address, `localhost`, or a name in `http_allowed_hosts`: a page whose own name an
//!   attacker pointed at this registry (DNS rebinding) is refused;
//! - `Origin`, when a browser sends it, must be this very host, and `Sec-Fetch-Site` must not say `cross-site`
//!   or `same-site`;
//! - the body must be `application/json`, which a cross-site page cannot send without a CORS preflight, and
//!   the registry answers none.
//!
//! A refusal is JSON, `{"error": ...}`, and quotes what came short and escaped.

use std::net::IpAddr;
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
use crate::server::service::{Shared, shown};

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
    let text =
        |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let Some(host) = text(header::HOST) else {
        return Err((
            StatusCode::FORBIDDEN,
            "a write needs a `Host` header".into(),
        ));
    };
    if !host_allowed(host, &config.http_allowed_hosts) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "writes addressed to host {} are refused: expected an IP address, `localhost`, or a name given \
                 to `serve --http-allowed-host`",
                shown(host)
            ),
        ));
    }
    if let Some(origin) = text(header::ORIGIN)
        && !same_origin(origin, host)
    {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "a write from origin {} is refused: expected a page of http://{} itself",
                shown(origin),
                shown(host)
            ),
        ));
    }
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.as_bytes(), b"same-origin" | b"none")
    {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "a write from a page of another site (sec-fetch-site: {}) is refused",
                shown(site.to_str().unwrap_or("\u{fffd}"))
            ),
        ));
    }
    let json = text(header::CONTENT_TYPE).is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if !json {
        return Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "a write's body must be `content-type: application/json`, not {}",
                shown(text(header::CONTENT_TYPE).unwrap_or("none"))
            ),
        ));
    }
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

/// Whether `host` (a `Host` header: a name or address, and maybe a port) is one writes may be addressed to.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = match host.strip_prefix('[') {
        // `[v6]` or `[v6]:port`.
        Some(rest) => match rest.split_once(']') {
            Some((v6, port)) if port.is_empty() || port.starts_with(':') => {
                return v6.parse::<std::net::Ipv6Addr>().is_ok();
            }
            _ => return false,
        },
        None => host.rsplit_once(':').map_or(host, |(name, _port)| name),
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || allowed.iter().any(|a| a.eq_ignore_ascii_case(name))
}

/// Whether `origin` (`scheme://host[:port]`) is the page of `host` itself.
fn same_origin(origin: &str, host: &str) -> bool {
    let Some((scheme, rest)) = origin.split_once("://") else {
        return false;
    };
    matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_for_addresses_localhost_and_the_names_allowed() {
        let allowed = [String::from("registry.internal")];
        for host in [
            "127.0.0.1:7071",
            "127.0.0.1",
            "[::1]:7071",
            "[::1]",
            "localhost:7071",
            "LOCALHOST",
            "registry.internal:80",
            "10.1.2.3:8080",
        ] {
            assert!(host_allowed(host, &allowed), "{host}");
        }
        for host in [
            "evil.example:7071",
            "evil.example",
            "localhost.evil.example",
            "[::1]x",
            "[not-an-address]:1",
            "",
        ] {
            assert!(!host_allowed(host, &allowed), "{host}");
        }
    }

    #[test]
    fn the_origin_must_be_the_host_itself() {
        assert!(same_origin("http://127.0.0.1:7071", "127.0.0.1:7071"));
        assert!(same_origin("https://localhost:7071", "localhost:7071"));
        assert!(!same_origin("http://127.0.0.1:7072", "127.0.0.1:7071"));
        assert!(!same_origin("http://evil.example", "127.0.0.1:7071"));
        assert!(!same_origin("null", "127.0.0.1:7071"));
        assert!(!same_origin("file://127.0.0.1:7071", "127.0.0.1:7071"));
    }
}
