//! The HTTP responses of a server: a call's end as [`super::answer`] maps it (`200` and the value's JSON, `422`
//! and the method's own error, a failure's status and `{"code", "message"}`, with `Retry-After` when the server
//! asks the caller to wait), and the refusals of requests that never became calls (`404`, `405`, `413`, ...).
//! Every body is JSON and says so.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use rpc_codec::Status;

use super::answer::{
    APP_ERROR_STATUS, app_error_body, failure_body, http_status, is_json, retry_after_secs,
};
use crate::server::Response;
use crate::server::registry::Entry;

/// A response of the server's.
pub(crate) type HttpResponse = hyper::Response<Full<Bytes>>;

/// A response of `status` with the JSON `body`.
pub(crate) fn json(status: u16, body: Vec<u8>) -> HttpResponse {
    let mut response = hyper::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A failure: HTTP `http` with `{"code": "<status>", "message": message}`.
pub(crate) fn failure(http: u16, status: Status, message: &str) -> HttpResponse {
    json(http, failure_body(status, message))
}

/// A call that failed with `status`: its HTTP status by [`http_status`].
pub(crate) fn failed(status: Status, message: &str) -> HttpResponse {
    failure(http_status(status), status, message)
}

/// A request of a method other than `POST` (and `OPTIONS`, with CORS): `405` with `Allow`.
pub(crate) fn not_allowed(method: &hyper::Method, allow: &'static str) -> HttpResponse {
    let got = crate::text::quoted(method.as_str(), 32);
    let message = format!("method \"{got}\" is not allowed: expected {allow}");
    let mut response = failure(405, Status::Unimplemented, &message);
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// The answer of a call of `entry`'s method that ended with `response`.
pub(crate) fn answer(entry: &Entry, response: &Response) -> HttpResponse {
    match response.status() {
        // A handler's answer to a JSON call is JSON; bytes a layer answered with are checked.
        Status::Ok => match response.payload() {
            Some(bytes) if !response.is_json() && !is_json(&bytes) => {
                let message = format!("the answer of {} is not JSON", entry.method);
                failed(Status::Internal, &message)
            }
            Some(bytes) if response.is_app_error() => {
                json(APP_ERROR_STATUS, app_error_body(error_type(entry), &bytes))
            }
            Some(bytes) => json(200, bytes.into_owned()),
            None => {
                let message = format!("the answer of {} does not encode as JSON", entry.method);
                failed(Status::Internal, &message)
            }
        },
        status => {
            let mut reply = failed(status, response.message().unwrap_or_default());
            if let Some(after) = response.retry_after() {
                reply.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(after)),
                );
            }
            reply
        }
    }
}

/// The name of the type of the application error of `entry`'s method, as its service describes it.
fn error_type(entry: &Entry) -> Option<&'static str> {
    let description = entry.service.description()?;
    description.method(entry.method.name)?.error.as_deref()
}
