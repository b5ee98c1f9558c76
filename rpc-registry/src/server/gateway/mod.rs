//! The registry as a gateway (`RegistryConfig::gateway`, `serve --gateway`; off by default):
//! `POST /call/{Service}/{method}` on the HTTP port, with the arguments as a JSON object keyed by name, calls an
//! instance of the service in JSON (protocol 1.2) through the gateway's balanced client of that service
//! (`clients`), and answers as `rpc_core::http::answer` maps it: `200` and the value's JSON; `422` and
//! `{"code": "application_error", "error": "<type>", "detail": ...}` for the method's own error; a failure's
//! HTTP status (`http_status`), `{"code": ..., "message": ...}` and `Retry-After`.
//!
//! Before the call the request passes, in order: the caller's credential (with `callers` in the credentials
//! file, the registry's own token or a caller's granted the service: else `401`, or `403` for a caller of other
//! services; without `callers`, the read credential, which the HTTP port's `readers_only` checks when reads
//! need one), the cross-site checks of the dashboard's writes (`cross_site`: `Host`, `Origin`, `Sec-Fetch-Site`,
//! `application/json`), a permit of
//! [`RegistryConfig::gateway_max_in_flight`](crate::RegistryConfig::gateway_max_in_flight) (none: `429`,
//! `Retry-After: 1`), its headers (rpc-core's reading, `headers`: the deadline, at most
//! [`RegistryConfig::gateway_max_deadline`](crate::RegistryConfig::gateway_max_deadline) and that when none is
//! given, and the metadata), the body limit
//! ([`RegistryConfig::gateway_max_body`](crate::RegistryConfig::gateway_max_body); over it: `413`), and the
//! service's description (`describe`): the method must exist (else `404`) and be unary (else `501`), and is
//! retried on another instance only if it is idempotent. A service no instance describes is `503`
//! `unavailable`. Every refusal is a JSON failure body that quotes the caller's text short and escaped.
//!
//! # Layout
//! - this file: the route, the checks and the answer.
//! - `headers`: what the gateway adds to rpc-core's reading of a request's headers.
//! - `clients`: the balanced client of each service called, at most `gateway_max_services` of them.
//! - `follow`: the instances and rules those clients follow, from the registry's own state.

mod clients;
mod follow;
mod headers;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt;
use rpc_core::client::JsonAnswer;
use rpc_core::http::answer::{
    APP_ERROR_STATUS, app_error_body, failure_body, http_status, is_json, retry_after_secs,
};
use rpc_core::reflect::Streaming;
use rpc_core::{CallOptions, ClientConfig, MethodInfo, RpcError, Status};
use tokio::sync::Semaphore;

use crate::server::describe::{DescribeError, Describer};
use crate::server::service::{Shared, shown};
use clients::Clients;

/// Most method names a refusal for an unknown method lists: 16.
const MAX_NAMES_LISTED: usize = 16;

/// What the gateway's handler shares.
#[derive(Clone)]
struct Gateway {
    shared: Arc<Shared>,
    describer: Arc<Describer>,
    clients: Arc<Clients>,
    /// The calls that may run at once (`gateway_max_in_flight`).
    in_flight: Arc<Semaphore>,
    /// The limits of the metadata the gateway's clients send (theirs, `ClientConfig::default()`'s).
    codec: rpc_core::codec::Config,
}

/// The gateway's route, over the registry's state and its descriptions. With the gateway off, it answers `404`
/// saying so.
pub(crate) fn router(shared: Arc<Shared>, describer: Arc<Describer>) -> Router {
    Router::new()
        .route("/call/{service}/{method}", post(call))
        .with_state(Gateway {
            clients: Arc::new(Clients::new(Arc::clone(&shared))),
            in_flight: Arc::new(Semaphore::new(shared.config.gateway_max_in_flight.max(1))),
            codec: ClientConfig::default().codec,
            shared,
            describer,
        })
}

/// A refusal of the HTTP exchange itself (`403` cross-site, `413` body, `415` type, `431` headers): `http`,
/// and `{"code": <code's name>, "message": message}`.
fn refused_as(http: StatusCode, code: Status, message: &str) -> Response {
    (
        http,
        [(header::CONTENT_TYPE, "application/json")],
        failure_body(code, message),
    )
        .into_response()
}

/// A refusal or failure of the call: `code`'s HTTP status (`http_status`) and `{"code": ..., "message": ...}`.
fn refused(code: Status, message: &str) -> Response {
    let http = StatusCode::from_u16(http_status(code)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    refused_as(http, code, message)
}

/// The refusal of a caller that may not call `service`, when the credentials name `callers`: `401` without a
/// token or with one of no caller, `403` with a caller's token granted other services. The token is never shown.
fn refused_caller(
    config: &crate::RegistryConfig,
    headers: &HeaderMap,
    service: &str,
) -> Option<Response> {
    let credentials = &config.credentials;
    if !credentials.calls_need_caller() {
        return None;
    }
    let carried = headers
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes())
        .map(|v| v.strip_prefix(b"Bearer ").unwrap_or(v));
    let refused = match carried.map(|t| credentials.may_call(t, config.token.as_deref(), service)) {
        Some(Ok(())) => return None,
        None => (
            StatusCode::UNAUTHORIZED,
            Status::Unauthenticated,
            String::from(
                "calling through this gateway needs a caller's credential: `authorization: Bearer <token>`",
            ),
        ),
        Some(Err(false)) => (
            StatusCode::UNAUTHORIZED,
            Status::Unauthenticated,
            String::from("the bearer token is not one of a caller of this gateway"),
        ),
        Some(Err(true)) => (
            StatusCode::FORBIDDEN,
            Status::PermissionDenied,
            format!(
                "the bearer token may not call \"{}\" through this gateway",
                rpc_core::text::quoted(service, 64)
            ),
        ),
    };
    let (http, code, why) = refused;
    let mut response = refused_as(http, code, &why);
    if http == StatusCode::UNAUTHORIZED {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    Some(response)
}

/// `response` with `Retry-After: after` (whole seconds).
fn retry_after(mut response: Response, after: u64) -> Response {
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(after));
    response
}

/// A call that failed, as `rpc_core::http::answer` maps it, with `Retry-After` when the server asked to wait.
fn failed(e: &RpcError) -> Response {
    let response = refused(e.code(), e.message());
    match e.retry_after() {
        Some(after) => retry_after(response, retry_after_secs(after)),
        None => response,
    }
}

/// A refusal of rpc-core's reading of the headers, with the statuses it names.
fn bad_headers(e: &rpc_core::http::headers::HeaderError) -> Response {
    let (http, code) = e.statuses();
    let http = StatusCode::from_u16(http).unwrap_or(StatusCode::BAD_REQUEST);
    refused_as(http, code, &e.to_string())
}

async fn call(
    State(gateway): State<Gateway>,
    Path((service, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let config = &gateway.shared.config;
    if !config.gateway {
        return refused(
            Status::NotFound,
            "the gateway is off: start the registry with `serve --gateway` to call services over HTTP",
        );
    }
    if let Some(refusal) = refused_caller(config, &headers, &service) {
        return refusal;
    }
    if let Err((http, why)) = crate::server::cross_site::check(config, &headers, "gateway call") {
        let code = match http {
            StatusCode::FORBIDDEN => Status::PermissionDenied,
            _ => Status::InvalidArgument,
        };
        return refused_as(http, code, &why);
    }
    // Taken before the body is read: a caller past the limit costs no buffer.
    let Ok(_permit) = gateway.in_flight.try_acquire() else {
        let why = format!(
            "{} gateway calls are running, the limit (--gateway-max-in-flight): retry later",
            config.gateway_max_in_flight
        );
        return retry_after(refused(Status::ResourceExhausted, &why), 1);
    };
    let deadline = match headers::deadline(&headers, config.gateway_max_deadline) {
        Ok(deadline) => deadline,
        Err(e) => return bad_headers(&e),
    };
    let metadata = match headers::metadata(&headers, &gateway.codec) {
        Ok(metadata) => metadata,
        Err(e) => return bad_headers(&e),
    };
    let args = match read_body(body, &headers, config.gateway_max_body).await {
        Ok(args) => args,
        Err(refused) => return refused,
    };
    let described = match gateway.describer.describe(&gateway.shared, &service).await {
        Ok(described) => described,
        Err(e @ DescribeError::NotRegistered { .. }) => {
            return refused(Status::NotFound, &e.to_string());
        }
        Err(e @ DescribeError::NoAnswer { .. }) => {
            return refused(Status::Unavailable, &e.to_string());
        }
    };
    let description = &described;
    let Some(found) = description.method(&method) else {
        let names: Vec<String> = description
            .methods
            .iter()
            .take(MAX_NAMES_LISTED)
            .map(|m| shown(&m.name).to_string())
            .collect();
        let more = match description.methods.len() > MAX_NAMES_LISTED {
            true => format!(" and {} more", description.methods.len() - MAX_NAMES_LISTED),
            false => String::new(),
        };
        let why = format!(
            "service `{}` has no method `{}`: expected one of {}{more}",
            shown(&service),
            shown(&method),
            names.join(", ")
        );
        return refused(Status::NotFound, &why);
    };
    if found.streaming != Streaming::Unary {
        let why = format!(
            "`{}.{}` streams ({:?}): the gateway calls unary methods only",
            shown(&service),
            shown(&method),
            found.streaming
        );
        return refused(Status::Unimplemented, &why);
    }
    // Interned for the process's life: `describe` keeps a description's methods few (`MAX_DESCRIBED_METHODS`),
    // so one service's instance cannot fill the process's table.
    let info = match MethodInfo::intern(&service, &method, found.idempotent) {
        Ok(info) => info,
        Err(e) => return refused(Status::ResourceExhausted, &e.to_string()),
    };
    let Some(client) = gateway.clients.of(&service) else {
        let why = format!(
            "the registry follows as many services as it may (max_services): it cannot follow `{}` for the \
             gateway",
            shown(&service)
        );
        return refused(Status::ResourceExhausted, &why);
    };
    let options = CallOptions::default().metadata(metadata).deadline(deadline);
    match client.call_json(info, &args, &options).await {
        Ok(JsonAnswer::Value(value)) => {
            ([(header::CONTENT_TYPE, "application/json")], value).into_response()
        }
        // `call_json` refuses answers that are not JSON already; the detail goes inside the gateway's own JSON.
        Ok(JsonAnswer::AppError(detail)) if !is_json(&detail) => {
            let why = format!(
                "`{}.{}` answered its own error with {} bytes that are not JSON",
                shown(&service),
                shown(&method),
                detail.len()
            );
            refused(Status::Internal, &why)
        }
        Ok(JsonAnswer::AppError(detail)) => (
            StatusCode::from_u16(APP_ERROR_STATUS).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            [(header::CONTENT_TYPE, "application/json")],
            app_error_body(found.error.as_deref(), &detail),
        )
            .into_response(),
        Err(e) => failed(&e),
    }
}

/// The arguments: the body, at most `limit` bytes (else `413`), a JSON object (else `400`); none is `{}`.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Vec<u8>, Response> {
    let too_large = |len: String| {
        let why = format!(
            "the body has {len} bytes, over the gateway's limit of {limit} (--gateway-max-body)"
        );
        refused_as(
            StatusCode::PAYLOAD_TOO_LARGE,
            Status::ResourceExhausted,
            &why,
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(declared) = declared
        && declared > limit as u64
    {
        return Err(too_large(declared.to_string()));
    }
    let mut args = Vec::with_capacity(declared.map_or(0, |d| d as usize));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            let why = format!("the body could not be read: {e}");
            refused(Status::InvalidArgument, &why)
        })?;
        if args.len() + chunk.len() > limit {
            return Err(too_large(format!("more than {limit}")));
        }
        args.extend_from_slice(&chunk);
    }
    let first = args.iter().find(|b| !b.is_ascii_whitespace());
    match first {
        None => Ok(b"{}".to_vec()),
        Some(b'{') => match serde_json::from_slice::<serde::de::IgnoredAny>(&args) {
            Ok(_) => Ok(args),
            Err(e) => {
                let why = format!("the body is not JSON: {e}");
                Err(refused(Status::InvalidArgument, &why))
            }
        },
        Some(_) => {
            let start = String::from_utf8_lossy(&args[..args.len().min(64)]).into_owned();
            let why = format!(
                "the body must be a JSON object of the arguments keyed by name, not {}",
                shown(start.trim())
            );
            Err(refused(Status::InvalidArgument, &why))
        }
    }
}
