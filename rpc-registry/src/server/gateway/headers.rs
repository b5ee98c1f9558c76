//! What only a gateway adds to rpc-core's reading of a request's headers (`rpc_core::http::headers`, which
//! rpc-core's own HTTP port uses too): the deadline bounded by the gateway's longest, and no metadata from the
//! registry's own credentials (`authorization`, `cookie`) nor from a header the `Connection` header names (a
//! proxy drops those, RFC 9110 section 7.6.1).

use std::time::Duration;

use axum::http::HeaderMap;
use rpc_core::Metadata;
use rpc_core::http::headers::{self, HeaderError};
use tokio::time::Instant;

/// Headers that carry the registry's credentials, never passed on: an instance is not given the registry's
/// token or a dashboard's cookie.
pub(crate) const CREDENTIALS: [&str; 2] = ["authorization", "cookie"];

/// The call's deadline from now: the caller's (`rpc-timeout-ms`, `connect-timeout-ms`: the smaller), at most
/// `longest`; `longest` when the caller gives none.
pub(crate) fn deadline(headers: &HeaderMap, longest: Duration) -> Result<Duration, HeaderError> {
    let now = Instant::now();
    Ok(headers::deadline(headers, now)?.map_or(longest, |at| (at - now).min(longest)))
}

/// The call's metadata: rpc-core's reading, without the registry's [`CREDENTIALS`] and the headers the
/// `Connection` header names, within the limits of `codec`.
pub(crate) fn metadata(
    headers: &HeaderMap,
    codec: &rpc_core::codec::Config,
) -> Result<Metadata, HeaderError> {
    let named: Vec<String> = headers
        .get_all("connection")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
        .filter(|token| !token.is_empty())
        .collect();
    let mut not: Vec<&str> = CREDENTIALS.to_vec();
    not.extend(named.iter().map(String::as_str));
    headers::metadata(headers, codec, &not)
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

    #[tokio::test(start_paused = true)]
    async fn the_callers_deadline_is_kept_below_the_longest_and_none_is_the_longest() {
        let longest = Duration::from_secs(60);
        assert_eq!(deadline(&headers(&[]), longest).unwrap(), longest);
        let both = headers(&[("rpc-timeout-ms", "250"), ("connect-timeout-ms", "100")]);
        assert_eq!(
            deadline(&both, longest).unwrap(),
            Duration::from_millis(100)
        );
        let far = headers(&[("rpc-timeout-ms", "9999999999")]);
        assert_eq!(deadline(&far, longest).unwrap(), longest);
        let bad = headers(&[("rpc-timeout-ms", "soon")]);
        let why = deadline(&bad, longest).unwrap_err().to_string();
        assert!(
            why.starts_with("header rpc-timeout-ms is \"soon\": expected"),
            "{why}"
        );
    }

    #[test]
    fn neither_credentials_nor_connection_named_headers_nor_connection_settings_become_metadata() {
        let map = headers(&[
            ("host", "127.0.0.1:7071"),
            ("authorization", "Bearer registry-token"),
            ("cookie", "a=b"),
            ("content-type", "application/json"),
            ("accept-encoding", "gzip"),
            ("rpc-accept-encoding", "zstd"),
            ("retry-after-ms", "5"),
            ("rpc-timeout-ms", "100"),
            ("connection", "keep-alive, X-Hop"),
            ("x-hop", "1"),
            ("x-tenant", "a"),
            ("x-tenant", "b"),
        ]);
        let metadata = metadata(&map, &rpc_core::codec::Config::default()).unwrap();
        let entries: Vec<(&str, &[u8])> = metadata.iter().collect();
        assert_eq!(entries, [("x-tenant", &b"a"[..]), ("x-tenant", &b"b"[..])]);
    }
}
