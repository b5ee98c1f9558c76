//! Cross-origin calls from browsers, when the server's [`Cors`] allows them: the preflight (`OPTIONS` with an
//! `Origin`) is answered `204` with what a page of an allowed origin may send, and every answer to such a page
//! names its origin, says that answers vary by origin and lets the page read `Retry-After`. Without CORS
//! settings the server sends none of these headers.

use hyper::HeaderMap;
use hyper::header::{self, HeaderName, HeaderValue};
use rpc_codec::Status;

use super::config::Cors;
use super::headers::{CONNECT_TIMEOUT_HEADER, TIMEOUT_HEADER};
use super::reply::{self, HttpResponse};

/// The request headers every allowed page may set.
const ALLOWED_HEADERS: [&str; 5] = [
    "content-type",
    "authorization",
    TIMEOUT_HEADER,
    CONNECT_TIMEOUT_HEADER,
    crate::TRACEPARENT,
];

/// A server's CORS settings, with their headers' values made once.
#[derive(Debug)]
pub(crate) struct Policy {
    cors: Cors,
    allow_headers: HeaderValue,
    max_age: HeaderValue,
}

/// Why CORS settings cannot be served.
#[derive(Debug, thiserror::Error)]
#[error(
    "CORS allowed header {name} is not a header name: expected letters, digits and !#$%&'*+-.^_`|~"
)]
pub struct CorsError {
    name: String,
}

impl Policy {
    /// The policy of `cors`, or the first of its extra headers that is no header name.
    pub(crate) fn new(cors: Cors) -> Result<Policy, CorsError> {
        let mut names: Vec<String> = ALLOWED_HEADERS.map(String::from).to_vec();
        for extra in &cors.allowed_headers {
            let name = HeaderName::from_bytes(extra.trim().as_bytes()).map_err(|_| CorsError {
                name: format!("\"{}\"", crate::text::quoted(extra, 64)),
            })?;
            if !names.iter().any(|n| n == name.as_str()) {
                names.push(name.as_str().to_owned());
            }
        }
        // Made of header names alone, so a valid value.
        let allow_headers = HeaderValue::from_str(&names.join(", "))
            .unwrap_or_else(|_| HeaderValue::from_static("content-type"));
        let max_age = HeaderValue::from(cors.max_age.as_secs());
        Ok(Policy {
            cors,
            allow_headers,
            max_age,
        })
    }

    /// The request's `Origin`, if the policy allows it.
    pub(crate) fn origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        self.cors
            .allows_bytes(origin.as_bytes())
            .then(|| origin.clone())
    }

    /// The answer to a preflight from `origin` (allowed, or `None`).
    pub(crate) fn preflight(&self, origin: Option<HeaderValue>) -> HttpResponse {
        let Some(origin) = origin else {
            let message =
                "this origin may not call: the request carried no Origin the server allows";
            return reply::failure(403, Status::PermissionDenied, message);
        };
        let mut response = HttpResponse::default();
        *response.status_mut() = hyper::StatusCode::NO_CONTENT;
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("POST"),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            self.allow_headers.clone(),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        response
    }

    /// Adds to `response` the headers of an answer to a page of `origin` (allowed, or `None`).
    pub(crate) fn decorate(&self, response: &mut HttpResponse, origin: Option<HeaderValue>) {
        let headers = response.headers_mut();
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        if let Some(origin) = origin {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("Retry-After"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extra_headers_join_the_list_and_a_bad_one_is_named() {
        let cors = Cors {
            allowed_headers: vec![String::from("X-Tenant"), String::from("authorization")],
            ..Cors::allow(["https://a.example"])
        };
        let policy = Policy::new(cors).unwrap();
        assert_eq!(
            policy.allow_headers,
            "content-type, authorization, rpc-timeout-ms, connect-timeout-ms, traceparent, x-tenant"
        );
        let bad = Cors {
            allowed_headers: vec![String::from("x y\n")],
            ..Cors::allow(["*"])
        };
        let err = Policy::new(bad).unwrap_err().to_string();
        assert!(
            err.starts_with("CORS allowed header \"x y\\n\" is not"),
            "{err}"
        );
    }

    #[test]
    fn only_allowed_origins_are_named() {
        let policy = Policy::new(Cors::allow(["https://a.example"])).unwrap();
        let mut headers = HeaderMap::new();
        assert_eq!(policy.origin(&headers), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://b.example"),
        );
        assert_eq!(policy.origin(&headers), None);
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://a.example"),
        );
        assert_eq!(policy.origin(&headers).unwrap(), "https://a.example");
        let preflight = policy.preflight(policy.origin(&headers));
        assert_eq!(preflight.status(), 204);
        assert_eq!(preflight.headers()["access-control-allow-methods"], "POST");
        assert_eq!(preflight.headers()["access-control-max-age"], "600");
    }
}
