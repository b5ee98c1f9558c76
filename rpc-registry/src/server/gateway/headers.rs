//! What a gateway call takes from the headers of its HTTP request: its deadline (`rpc-timeout-ms`, or
//! Connect's `connect-timeout-ms`: the smaller wins) and its metadata (every other header, but those of the
//! HTTP exchange itself and the registry's own credential).

use std::time::Duration;

use axum::http::HeaderMap;
use rpc_core::Metadata;

use crate::server::service::shown;

/// The headers that set a call's deadline, in milliseconds: the smallest given wins.
pub(crate) const TIMEOUT_HEADERS: [&str; 2] = ["rpc-timeout-ms", "connect-timeout-ms"];

/// Most digits of a timeout header: 10, as Connect allows.
pub(crate) const MAX_TIMEOUT_DIGITS: usize = 10;

/// Headers that never become metadata: those of one HTTP hop (RFC 9110, 7.6.1), the request's own (`host`,
/// `origin`, `expect`), and the credentials meant for the registry (`authorization`, `cookie`): an instance is
/// not given the registry's token. Besides these: every `content-*` and `accept*` header, the timeout headers,
/// and any header the `connection` header names.
const NOT_METADATA: [&str; 13] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "origin",
    "expect",
    "authorization",
];

/// The credentials of the registry's HTTP port, never passed on: besides `authorization` in [`NOT_METADATA`].
const COOKIE: &str = "cookie";

/// The deadline the headers set, if they set one; a header that is not 1 to [`MAX_TIMEOUT_DIGITS`] digits of a
/// positive number is refused, by name.
pub(crate) fn deadline(headers: &HeaderMap) -> Result<Option<Duration>, String> {
    let mut smallest: Option<u64> = None;
    for name in TIMEOUT_HEADERS {
        for value in headers.get_all(name) {
            let bytes = value.as_bytes();
            let ms = std::str::from_utf8(bytes)
                .ok()
                .filter(|t| {
                    (1..=MAX_TIMEOUT_DIGITS).contains(&t.len()) && t.bytes().all(|b| b.is_ascii_digit())
                })
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .ok_or_else(|| {
                    format!(
                        "header {name} is {}: expected a whole number of milliseconds, 1 or more, of at most \
                         {MAX_TIMEOUT_DIGITS} digits",
                        shown(&String::from_utf8_lossy(bytes))
                    )
                })?;
            smallest = Some(smallest.map_or(ms, |s| s.min(ms)));
        }
    }
    Ok(smallest.map(Duration::from_millis))
}

/// The call's metadata: each header that is not the HTTP exchange's own (see [`NOT_METADATA`]), as it came.
pub(crate) fn metadata(headers: &HeaderMap) -> Result<Metadata, String> {
    let named_by_connection: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .collect();
    let mut metadata = Metadata::builder();
    for (name, value) in headers {
        let key = name.as_str();
        let skipped = NOT_METADATA.contains(&key)
            || key == COOKIE
            || TIMEOUT_HEADERS.contains(&key)
            || key.starts_with("content-")
            || key.starts_with("accept")
            || named_by_connection.iter().any(|n| n == key);
        if skipped {
            continue;
        }
        metadata
            .insert(key, value.as_bytes())
            .map_err(|e| format!("the request's headers do not fit a call's metadata: {e}"))?;
    }
    Ok(metadata.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().unwrap());
        }
        map
    }

    #[test]
    fn the_smaller_timeout_wins_and_a_malformed_one_is_refused_by_name() {
        assert_eq!(deadline(&headers(&[])), Ok(None));
        let both = headers(&[("rpc-timeout-ms", "250"), ("connect-timeout-ms", "100")]);
        assert_eq!(deadline(&both), Ok(Some(Duration::from_millis(100))));
        let one = headers(&[("connect-timeout-ms", "9999999999")]);
        assert_eq!(
            deadline(&one),
            Ok(Some(Duration::from_millis(9_999_999_999)))
        );
        for bad in ["", "0", "-5", "1.5", "12345678901", " 7", "ten"] {
            let mut map = HeaderMap::new();
            map.insert("rpc-timeout-ms", bad.parse().unwrap());
            let why = deadline(&map).unwrap_err();
            assert!(
                why.starts_with(&format!("header rpc-timeout-ms is {bad}: expected")),
                "{bad}: {why}"
            );
        }
    }

    #[test]
    fn only_the_callers_own_headers_become_metadata() {
        let map = headers(&[
            ("host", "127.0.0.1:7071"),
            ("authorization", "Bearer registry-token"),
            ("cookie", "a=b"),
            ("content-type", "application/json"),
            ("content-length", "2"),
            ("accept", "*/*"),
            ("accept-encoding", "gzip"),
            ("origin", "http://127.0.0.1:7071"),
            ("rpc-timeout-ms", "100"),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
            ("transfer-encoding", "chunked"),
            ("x-tenant", "a"),
            (
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
            ("x-tenant", "b"),
        ]);
        let metadata = metadata(&map).unwrap();
        let entries: Vec<(&str, &[u8])> = metadata.iter().collect();
        assert_eq!(
            entries,
            [
                ("x-tenant", &b"a"[..]),
                ("x-tenant", &b"b"[..]),
                (
                    "traceparent",
                    &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[..]
                ),
            ]
        );
    }
}
