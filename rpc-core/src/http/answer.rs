//! How a call's end looks over HTTP: a value is `200` with its JSON; the method's own error (a method returning
//! `Result<T, E>` answered `Err`) is `422` with `{"code": "application_error", "error": "<E>", "detail": <the
//! error's JSON>}`; a failure is the status's HTTP code (Connect's mapping, [`http_status`]) with `{"code":
//! "<status in snake_case>", "message": "..."}`, and `Retry-After` when the server asked the caller to wait.

use std::time::Duration;

use rpc_codec::Status;

/// The HTTP status of a method's own error: the request was understood, and the method refused it.
pub const APP_ERROR_STATUS: u16 = 422;

/// Most bytes of a failure's message in a body: a peer's text is cut.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// The HTTP status code of a call that ended with `status` (Connect's table; `499` is nginx's "client closed
/// request").
///
/// ```
/// use rpc_core::Status;
/// use rpc_core::http::answer::http_status;
/// assert_eq!(http_status(Status::InvalidArgument), 400);
/// assert_eq!(http_status(Status::ResourceExhausted), 429);
/// assert_eq!(http_status(Status::DeadlineExceeded), 504);
/// ```
pub const fn http_status(status: Status) -> u16 {
    match status {
        Status::Ok => 200,
        Status::Cancelled => 499,
        Status::Unknown => 500,
        Status::InvalidArgument => 400,
        Status::DeadlineExceeded => 504,
        Status::NotFound => 404,
        Status::AlreadyExists => 409,
        Status::PermissionDenied => 403,
        Status::ResourceExhausted => 429,
        Status::FailedPrecondition => 400,
        Status::Aborted => 409,
        Status::OutOfRange => 400,
        Status::Unimplemented => 501,
        Status::Internal => 500,
        Status::Unavailable => 503,
        Status::DataLoss => 500,
        Status::Unauthenticated => 401,
    }
}

/// `status` as a body's `code`: its name in snake case (`invalid_argument`), as Connect writes it.
pub fn status_code_name(status: Status) -> String {
    let mut out = String::new();
    for (i, c) in status.as_str().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The body of a failure: `{"code": "...", "message": "..."}`, the message cut to [`MAX_MESSAGE_LEN`] bytes
/// (JSON escapes every control character).
pub fn failure_body(status: Status, message: &str) -> Vec<u8> {
    let mut cut = message.len().min(MAX_MESSAGE_LEN);
    while !message.is_char_boundary(cut) {
        cut -= 1;
    }
    let body = serde_json::json!({
        "code": status_code_name(status),
        "message": &message[..cut],
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The body of a method's own error: `{"code": "application_error", "error": "<type>", "detail": <detail>}`,
/// `detail` the error's JSON as the method sent it, `error` the type its description names (`null` if unknown).
pub fn app_error_body(error_type: Option<&str>, detail: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(detail.len() + 64);
    body.extend_from_slice(br#"{"code":"application_error","error":"#);
    let name = serde_json::to_vec(&error_type).unwrap_or_else(|_| b"null".to_vec());
    body.extend_from_slice(&name);
    body.extend_from_slice(br#","detail":"#);
    match detail.is_empty() {
        true => body.extend_from_slice(b"null"),
        false => body.extend_from_slice(detail),
    }
    body.push(b'}');
    body
}

/// Whether `bytes` are one JSON value and nothing else: what an answer's body or an application error's
/// `detail` must be before it is sent (a layer's answer in another codec, or a peer's text, must not become
/// part of the JSON around it).
///
/// ```
/// use rpc_core::http::answer::is_json;
/// assert!(is_json(br#" {"a": [1, 2]} "#));
/// assert!(!is_json(br#"1,"code":"ok""#));
/// assert!(!is_json(&[0x05, 0x00]));
/// ```
pub fn is_json(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// `Retry-After`'s value for a wait of `after`: whole seconds, rounded up (at least 1).
pub fn retry_after_secs(after: Duration) -> u64 {
    after.as_millis().div_ceil(1000).max(1) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_has_a_code_and_a_snake_case_name() {
        let named: Vec<(u16, String)> = (0..=16)
            .map(Status::from_u8)
            .map(|s| (http_status(s), status_code_name(s)))
            .collect();
        assert_eq!(named[3], (400, String::from("invalid_argument")));
        assert_eq!(named[16], (401, String::from("unauthenticated")));
        assert_eq!(named[1], (499, String::from("cancelled")));
        assert_eq!(named[12], (501, String::from("unimplemented")));
        assert_eq!(named[14], (503, String::from("unavailable")));
        assert!(named.iter().all(|(code, _)| (200..600).contains(code)));
    }

    /// `docs/PROTOCOL.md` section 16's table of statuses is this mapping, row for row.
    #[test]
    fn the_protocol_documents_every_status_as_mapped() {
        let doc = include_str!("../../../docs/PROTOCOL.md");
        let table = doc
            .split_once("<!-- http-status-table -->")
            .and_then(|(_, rest)| rest.split_once("<!-- end http-status-table -->"))
            .expect("the table between its markers")
            .0;
        let rows: Vec<String> = table
            .lines()
            .skip(3)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        let expected: Vec<String> = (1..=16)
            .map(Status::from_u8)
            .map(|s| {
                let (name, code) = (status_code_name(s), http_status(s));
                format!("| `{s:?}` ({}) | `{name}` | {code} |", s as u8)
            })
            .collect();
        assert_eq!(rows, expected);
    }

    #[test]
    fn bodies_are_json_and_messages_are_cut() {
        let body = failure_body(Status::NotFound, "no \"x\"\u{7}");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["code"], "not_found");
        assert_eq!(v["message"], "no \"x\"\u{7}");
        assert!(!body.contains(&7u8));
        let long = "é".repeat(5000);
        let v: serde_json::Value =
            serde_json::from_slice(&failure_body(Status::Internal, &long)).unwrap();
        assert!(v["message"].as_str().unwrap().len() <= MAX_MESSAGE_LEN);
        let v: serde_json::Value =
            serde_json::from_slice(&app_error_body(Some("CalcError"), br#""DivisionByZero""#))
                .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": "application_error", "error": "CalcError", "detail": "DivisionByZero"})
        );
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
