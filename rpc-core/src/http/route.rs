//! Which method a request calls: the path `/{Service}/{method}`, the service named in full (its name may hold
//! dots, `calc.v1.Calc`) and the method by the last segment, found among the server's methods by the same id a
//! binary call names it with (`rpc_codec::method_id`), and then checked by name.

use crate::server::registry::{Entry, Registry};
use crate::text::quoted;

/// Most characters of a request's path quoted in an answer: 128.
const QUOTED: usize = 128;

/// Why a path names no method of the server.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    /// The path is not `/{Service}/{method}`.
    #[error("path {path} names no method: expected /{{Service}}/{{method}}")]
    Shape { path: String },
    /// No service of that name.
    #[error("no service {service} on this server")]
    Service { service: String },
    /// The service has no method of that name.
    #[error("service {service} has no method {method}")]
    Method { service: String, method: String },
}

fn shown(text: &str) -> String {
    format!("\"{}\"", quoted(text, QUOTED))
}

/// The method the request `path` calls, with its service.
pub(crate) fn find<'r>(registry: &'r Registry, path: &str) -> Result<&'r Entry, RouteError> {
    let split = path
        .strip_prefix('/')
        .and_then(|rest| rest.rsplit_once('/'))
        .filter(|(service, method)| !service.is_empty() && !method.is_empty());
    let Some((service, method)) = split else {
        return Err(RouteError::Shape { path: shown(path) });
    };
    let id = rpc_codec::method_id(service, method);
    match registry.method(id) {
        Some(entry) if entry.method.service == service && entry.method.name == method => Ok(entry),
        _ if registry.serves(service) => Err(RouteError::Method {
            service: shown(service),
            method: shown(method),
        }),
        _ => Err(RouteError::Service {
            service: shown(service),
        }),
    }
}
