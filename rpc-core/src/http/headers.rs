//! What a request's headers say of its call: that the body is JSON (`Content-Type`), the call's deadline
//! (`rpc-timeout-ms`, or Connect's `connect-timeout-ms`), and its metadata: every other header but those of
//! HTTP itself, by its lowercase name, so that `authorization` and `traceparent` reach the server's layers as a
//! binary call's metadata would. A header that cannot say what it must is refused, named, escaped and cut.
//! The registry's gateway reads its requests with the same functions, so that both answer a header alike.

use hyper::HeaderMap;
use hyper::header::HeaderValue;
use rpc_codec::{Metadata, MetadataError, Status};
use tokio::time::{Duration, Instant};

use crate::text::quoted;

/// The header of a call's deadline, in milliseconds from the request's arrival.
pub const TIMEOUT_HEADER: &str = "rpc-timeout-ms";
/// Connect's header of the same deadline; with both, the smaller counts.
pub const CONNECT_TIMEOUT_HEADER: &str = "connect-timeout-ms";
/// Most digits of a timeout header: 10 (over 115 days of milliseconds).
pub const MAX_TIMEOUT_DIGITS: usize = 10;
/// Most characters of a peer's header name or value quoted in an answer: 64.
const QUOTED: usize = 64;

/// Headers of HTTP itself, never metadata: hop-by-hop headers, those of the body and of content negotiation,
/// of CORS, and the deadline's; and the framework's own keys of the binary wire, which say something of a
/// connection, not of a call (a caller's `rpc-accept-encoding` would set the compression of a connection that
/// a gateway shares between callers).
const NOT_METADATA: [&str; 15] = [
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-type",
    "content-length",
    "expect",
    "origin",
    TIMEOUT_HEADER,
    CONNECT_TIMEOUT_HEADER,
    crate::ACCEPT_ENCODING,
    crate::RETRY_AFTER,
];

/// Headers whose names begin so are not metadata either.
const NOT_METADATA_PREFIXES: [&str; 3] = ["proxy-", "accept", "access-control-request-"];

/// Why a request's headers cannot make a call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The body is declared as something else than JSON.
    #[error(
        "content-type {got} is not JSON: expected application/json (parameters allowed) or none"
    )]
    ContentType {
        /// The header's value, quoted and cut.
        got: String,
    },
    /// A timeout header is not a count of milliseconds.
    #[error(
        "header {name} is {got}: expected 1 to {MAX_TIMEOUT_DIGITS} ASCII digits (milliseconds)"
    )]
    Timeout {
        /// The header.
        name: &'static str,
        /// Its value, quoted and cut.
        got: String,
    },
    /// A header breaks the rules of metadata.
    #[error("header {name} cannot be call metadata: {source}")]
    Metadata {
        /// The header, quoted and cut.
        name: String,
        /// The rule it breaks.
        #[source]
        source: MetadataError,
    },
    /// More headers would be metadata than the server takes.
    #[error(
        "header {name} would be metadata entry {count}, over the server's limit of {max} (max_metadata_entries)"
    )]
    TooMany {
        /// The header, quoted and cut.
        name: String,
        /// The entries it would make.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The headers would make more metadata than the server takes.
    #[error(
        "header {name} would take the metadata to {len} bytes, over the server's limit of {max} (max_metadata_len)"
    )]
    TooLarge {
        /// The header, quoted and cut.
        name: String,
        /// The bytes it would make.
        len: usize,
        /// The limit.
        max: usize,
    },
}

impl HeaderError {
    /// The HTTP status and the call status it is answered with: `431` for headers over a limit, `415` for a body
    /// that is not JSON, `400` for the rest.
    pub fn statuses(&self) -> (u16, Status) {
        match self {
            HeaderError::ContentType { .. } => (415, Status::InvalidArgument),
            HeaderError::Timeout { .. } => (400, Status::InvalidArgument),
            HeaderError::Metadata { source, .. } => match source {
                MetadataError::ValueTooLong { .. } | MetadataError::SectionTooLong { .. } => {
                    (431, Status::ResourceExhausted)
                }
                _ => (400, Status::InvalidArgument),
            },
            HeaderError::TooMany { .. } | HeaderError::TooLarge { .. } => {
                (431, Status::ResourceExhausted)
            }
        }
    }
}

/// A header's value as it may be quoted.
fn shown(value: &HeaderValue) -> String {
    format!(
        "\"{}\"",
        quoted(&String::from_utf8_lossy(value.as_bytes()), QUOTED)
    )
}

/// Checks that the body is declared JSON, or not declared.
pub fn content_type(headers: &HeaderMap) -> Result<(), HeaderError> {
    let Some(value) = headers.get(hyper::header::CONTENT_TYPE) else {
        return Ok(());
    };
    let essence = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    match essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"application/json")
    {
        true => Ok(()),
        false => Err(HeaderError::ContentType { got: shown(value) }),
    }
}

/// The call's deadline, from `arrived`: the smallest of the timeout headers' values, if there are any.
pub fn deadline(headers: &HeaderMap, arrived: Instant) -> Result<Option<Instant>, HeaderError> {
    let mut least: Option<u64> = None;
    for name in [TIMEOUT_HEADER, CONNECT_TIMEOUT_HEADER] {
        for value in headers.get_all(name) {
            let digits = value.as_bytes();
            let valid = (1..=MAX_TIMEOUT_DIGITS).contains(&digits.len())
                && digits.iter().all(u8::is_ascii_digit);
            let ms = std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse::<u64>().ok());
            let (true, Some(ms)) = (valid, ms) else {
                return Err(HeaderError::Timeout {
                    name,
                    got: shown(value),
                });
            };
            least = Some(least.map_or(ms, |l| l.min(ms)));
        }
    }
    Ok(least.map(|ms| arrived + Duration::from_millis(ms)))
}

/// Whether the header `name` (lowercase) is HTTP's own, not the call's.
fn is_metadata(name: &str) -> bool {
    !NOT_METADATA.contains(&name) && !NOT_METADATA_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// The call's metadata: every header that is not HTTP's own nor one of `also_not` (lowercase names: what a
/// gateway keeps from the services it calls, such as `authorization`), in order, within the limits of `codec`.
pub fn metadata(
    headers: &HeaderMap,
    codec: &rpc_codec::Config,
    also_not: &[&str],
) -> Result<Metadata, HeaderError> {
    let max_entries = usize::from(codec.max_metadata_entries);
    let max_len = usize::from(codec.max_metadata_len);
    let mut builder = Metadata::builder();
    let (mut count, mut len) = (0, 0);
    for (name, value) in headers {
        let name = name.as_str();
        if !is_metadata(name) || also_not.contains(&name) {
            continue;
        }
        let named = || format!("\"{}\"", quoted(name, QUOTED));
        count += 1;
        len += 3 + name.len() + value.len();
        if count > max_entries {
            let max = max_entries;
            return Err(HeaderError::TooMany {
                name: named(),
                count,
                max,
            });
        }
        if len > max_len {
            return Err(HeaderError::TooLarge {
                name: named(),
                len,
                max: max_len,
            });
        }
        builder
            .insert(name, value.as_bytes())
            .map_err(|source| HeaderError::Metadata {
                name: named(),
                source,
            })?;
    }
    Ok(builder.build())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn json_with_parameters_or_nothing_is_json() {
        assert!(content_type(&headers(&[])).is_ok());
        assert!(content_type(&headers(&[("content-type", "application/json")])).is_ok());
        assert!(
            content_type(&headers(&[(
                "content-type",
                "Application/JSON; charset=utf-8"
            )]))
            .is_ok()
        );
        let err = content_type(&headers(&[("content-type", "text/plain")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "content-type \"text/plain\" is not JSON: expected application/json (parameters allowed) or none"
        );
        assert_eq!(err.statuses().0, 415);
    }

    #[test]
    fn the_smaller_timeout_is_the_deadline_and_a_bad_one_is_named() {
        let now = Instant::now();
        let both = headers(&[("rpc-timeout-ms", "500"), ("connect-timeout-ms", "200")]);
        assert_eq!(
            deadline(&both, now).unwrap(),
            Some(now + Duration::from_millis(200))
        );
        assert_eq!(deadline(&headers(&[]), now).unwrap(), None);
        for bad in ["", "-1", "1.5", "12345678901", " 5"] {
            let err = deadline(&headers(&[("rpc-timeout-ms", bad)]), now).unwrap_err();
            assert!(
                err.to_string().starts_with("header rpc-timeout-ms is"),
                "{err}"
            );
        }
        assert_eq!(
            deadline(&headers(&[("rpc-timeout-ms", "9999999999")]), now).unwrap(),
            Some(now + Duration::from_millis(9_999_999_999))
        );
    }

    #[test]
    fn http_headers_are_not_metadata_and_the_others_are_in_order() {
        let map = headers(&[
            ("host", "x"),
            ("authorization", "Bearer t"),
            ("accept-encoding", "gzip"),
            ("proxy-authorization", "p"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("x-tenant", "a"),
            ("rpc-timeout-ms", "5"),
            ("access-control-request-method", "POST"),
            // The binary wire's own keys say something of a connection, not of a call.
            ("rpc-accept-encoding", "zstd"),
            ("retry-after-ms", "5"),
        ]);
        let md = metadata(&map, &rpc_codec::Config::default(), &[]).unwrap();
        let keys: Vec<_> = md.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["authorization", "traceparent", "x-tenant"]);
        // A gateway keeps more to itself.
        let md = metadata(&map, &rpc_codec::Config::default(), &["authorization"]).unwrap();
        let keys: Vec<_> = md.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["traceparent", "x-tenant"]);
    }

    #[test]
    fn headers_over_the_metadata_limits_are_refused_by_name() {
        let codec = rpc_codec::Config {
            max_metadata_entries: 2,
            max_metadata_len: 64,
            ..rpc_codec::Config::default()
        };
        let many = headers(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let err = metadata(&many, &codec, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "header \"c\" would be metadata entry 3, over the server's limit of 2 (max_metadata_entries)"
        );
        assert_eq!(err.statuses().0, 431);
        let long = "v".repeat(100);
        let err = metadata(&headers(&[("x-big", &long)]), &codec, &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("over the server's limit of 64 (max_metadata_len)"),
            "{err}"
        );
        assert_eq!(err.statuses().0, 431);
    }
}
