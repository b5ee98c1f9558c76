//! Calls to etcd's v3 JSON gateway, each one `POST` over a fresh HTTP/1.1 connection ([`crate::http::request`])
//! bounded by [`REQUEST_LIMIT`]: a member's status, a put, and a read of every key under a prefix; with the
//! pieces they need: the end of a prefix's range, an answer's chunks put back together.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use super::EtcdError;
use super::base64::{decode_base64, encode_base64};

/// How long one HTTP exchange with a member may take, connection to last byte: 2 s.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(2);

/// What a member says of itself in `/v3/maintenance/status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// The member's id.
    pub member_id: u64,
    /// The id of the member it takes for the leader; 0 while it knows none.
    pub leader: u64,
    /// The raft term.
    pub raft_term: u64,
    /// etcd's version, e.g. `3.4.23`.
    pub version: String,
}

/// What the member at `endpoint` (`http://127.0.0.1:PORT`) says of itself (`/v3/maintenance/status`).
pub async fn status(endpoint: &str) -> Result<Status, EtcdError> {
    let answer = call(endpoint, "/v3/maintenance/status", &json!({})).await?;
    let number = |v: &Value| match v {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    };
    let member_id = number(&answer["header"]["member_id"])
        .ok_or_else(|| EtcdError::Answer(format!("status without header.member_id: {answer}")))?;
    Ok(Status {
        member_id,
        // Zero fields are left out: no `leader` means no leader.
        leader: number(&answer["leader"]).unwrap_or(0),
        raft_term: number(&answer["raftTerm"]).unwrap_or(0),
        version: answer["version"].as_str().unwrap_or_default().to_owned(),
    })
}

/// Writes `value` at `key` through the member at `endpoint` (`/v3/kv/put`).
pub async fn put(endpoint: &str, key: &str, value: &str) -> Result<(), EtcdError> {
    let body = json!({
        "key": encode_base64(key.as_bytes()),
        "value": encode_base64(value.as_bytes()),
    });
    call(endpoint, "/v3/kv/put", &body).await.map(|_| ())
}

/// Every key under `prefix` with its value, sorted by key, read through the member at `endpoint`
/// (`/v3/kv/range` from `prefix` to its [`prefix_end`]). Bytes that are not UTF-8 read as U+FFFD.
pub async fn get_prefix(endpoint: &str, prefix: &str) -> Result<Vec<(String, String)>, EtcdError> {
    let body = json!({
        "key": encode_base64(prefix.as_bytes()),
        "range_end": encode_base64(&prefix_end(prefix.as_bytes())),
    });
    let answer = call(endpoint, "/v3/kv/range", &body).await?;
    let Some(kvs) = answer.get("kvs") else {
        // No `kvs`: nothing under the prefix.
        return Ok(Vec::new());
    };
    let malformed = || EtcdError::Answer(format!("kvs is not a list of keys and values: {kvs}"));
    let text = |field: &Value| -> Result<String, EtcdError> {
        // An empty value is left out.
        let encoded = field.as_str().unwrap_or_default();
        let bytes = decode_base64(encoded).map_err(EtcdError::Answer)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    kvs.as_array()
        .ok_or_else(malformed)?
        .iter()
        .map(|kv| Ok((text(&kv["key"])?, text(&kv["value"])?)))
        .collect()
}

/// The end of the range of every key that starts with `prefix`, as etcd's `range_end` takes it: `prefix` with
/// its last byte below 0xff raised by one and the rest cut off; `[0]` (every key from `prefix` on) when there is
/// no such byte.
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    match prefix.iter().rposition(|&b| b < 0xff) {
        Some(last) => {
            let mut end = prefix[..=last].to_vec();
            end[last] += 1;
            end
        }
        None => vec![0],
    }
}

/// POSTs `body` to `path` on the member at `endpoint` and parses its JSON answer, within [`REQUEST_LIMIT`].
/// Compacts the member's history up to its current revision (physically: a watch from before it is then
/// cancelled with `compact_revision`); answers that revision.
pub async fn compact(endpoint: &str) -> Result<i64, EtcdError> {
    let range = call(
        endpoint,
        "/v3/kv/range",
        &json!({"key": encode_base64(b"\0")}),
    )
    .await?;
    let revision: i64 = match &range["header"]["revision"] {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
    .ok_or_else(|| EtcdError::Answer(format!("{endpoint}: no revision in {range}")))?;
    call(
        endpoint,
        "/v3/kv/compaction",
        &json!({"revision": revision.to_string(), "physical": true}),
    )
    .await?;
    Ok(revision)
}

async fn call(endpoint: &str, path: &str, body: &Value) -> Result<Value, EtcdError> {
    let addr = endpoint_addr(endpoint)?;
    let headers = [("content-type", "application/json")];
    let body = body.to_string();
    let exchange = crate::http::request(addr, "POST", path, &headers, &body);
    let (status, headers, text) = tokio::time::timeout(REQUEST_LIMIT, exchange)
        .await
        .map_err(|_| EtcdError::Io(format!("{endpoint}{path}: no answer in {REQUEST_LIMIT:?}")))?
        .map_err(|e| EtcdError::Io(format!("{endpoint}{path}: {e}")))?;
    // An answer of more than 2 KiB comes in chunks (Go's net/http does not buffer more to count it).
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let text = if chunked {
        dechunk(&text).map_err(|e| EtcdError::Answer(format!("{endpoint}{path}: {e}")))?
    } else {
        text
    };
    if status.split(' ').nth(1) != Some("200") {
        return Err(EtcdError::Answer(format!(
            "{endpoint}{path}: expected 200, got {status:?}: {text}"
        )));
    }
    serde_json::from_str(&text)
        .map_err(|e| EtcdError::Answer(format!("{endpoint}{path}: not JSON ({e}): {text}")))
}

/// The address in `http://IP:PORT`.
fn endpoint_addr(endpoint: &str) -> Result<SocketAddr, EtcdError> {
    endpoint
        .strip_prefix("http://")
        .and_then(|rest| rest.trim_end_matches('/').parse().ok())
        .ok_or_else(|| EtcdError::Answer(format!("endpoint {endpoint:?} is not http://IP:PORT")))
}

/// The body of a `transfer-encoding: chunked` answer, put back together (chunks split bytes, not characters).
fn dechunk(body: &str) -> Result<String, String> {
    let mut rest = body.as_bytes();
    let mut whole = Vec::new();
    loop {
        let end = rest.windows(2).position(|w| w == b"\r\n").ok_or_else(|| {
            format!(
                "expected a chunk size line, got {:?}",
                String::from_utf8_lossy(rest)
            )
        })?;
        let size_line = String::from_utf8_lossy(&rest[..end]);
        let digits = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(digits, 16)
            .map_err(|e| format!("expected a hex chunk size, got {size_line:?}: {e}"))?;
        rest = &rest[end + 2..];
        if size == 0 {
            return String::from_utf8(whole).map_err(|e| e.to_string());
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(format!(
                "expected a chunk of {size} bytes and CRLF, got {} bytes",
                rest.len()
            ));
        }
        whole.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}
