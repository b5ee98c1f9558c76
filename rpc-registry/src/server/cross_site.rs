//! The checks that keep a page of another site from making a request of the registry's HTTP port through a
//! visitor's browser: the dashboard's writes (`http_writes`) and gateway calls (`gateway`) pass them all.
//! - `Host` must be an IP address, `localhost`, or a name in `http_allowed_hosts`: a page whose own name an
//!   attacker pointed at this registry (DNS rebinding) is refused;
//! - `Origin`, when a browser sends it, must be this very host, and `Sec-Fetch-Site` must not say `cross-site`
//!   or `same-site`;
//! - the body must be `application/json`, which a cross-site page cannot send without a CORS preflight, and
//!   the registry answers none.
//!
//! A refusal quotes what came short and escaped.

use std::net::IpAddr;

use axum::http::{HeaderMap, StatusCode, header};

use crate::server::config::RegistryConfig;
use crate::server::service::shown;

/// Refuses a request (`one`: what it is, `write` or `gateway call`) that a page of another site could have
/// made, with the status to answer and why.
pub(crate) fn check(
    config: &RegistryConfig,
    headers: &HeaderMap,
    one: &str,
) -> Result<(), (StatusCode, String)> {
    let text =
        |name: header::HeaderName| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let Some(host) = text(header::HOST) else {
        return Err((
            StatusCode::FORBIDDEN,
            format!("a {one} needs a `Host` header"),
        ));
    };
    if !host_allowed(host, &config.http_allowed_hosts) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "{one}s addressed to host {} are refused: expected an IP address, `localhost`, or a name given \
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
                "a {one} from origin {} is refused: expected a page of http://{} itself",
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
                "a {one} from a page of another site (sec-fetch-site: {}) is refused",
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
                "a {one}'s body must be `content-type: application/json`, not {}",
                shown(text(header::CONTENT_TYPE).unwrap_or("none"))
            ),
        ));
    }
    Ok(())
}

/// Whether `host` (a `Host` header: a name or address, and maybe a port) is one requests may be addressed to.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_for_addresses_localhost_and_the_names_allowed() {
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

    #[test]
    fn a_refusal_names_what_was_refused() {
        let config = RegistryConfig::default();
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "evil.example:7071".parse().unwrap());
        let (status, why) = check(&config, &headers, "gateway call").unwrap_err();
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(
            why.starts_with("gateway calls addressed to host evil.example:7071 are refused"),
            "{why}"
        );
        headers.insert(header::HOST, "127.0.0.1:7071".parse().unwrap());
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        let (status, why) = check(&config, &headers, "write").unwrap_err();
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(why.contains("not text/plain"), "{why}");
        headers.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert_eq!(check(&config, &headers, "write"), Ok(()));
    }
}
