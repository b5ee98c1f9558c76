//! The addresses of a registry's replicas as a person gives them: a comma-separated list
//! (`--registry 127.0.0.1:7070,127.0.0.1:7071`), split and checked ([`parse_registries`]) and resolved
//! ([`resolve_registries`]) into the list of socket addresses that [`crate::Registration::register`],
//! [`crate::Discovery::new`] and [`crate::RegistryHandle`] take, and that their connection fails over along.

use std::net::SocketAddr;

/// The most registry addresses one list may hold: 64.
pub const MAX_REGISTRIES: usize = 64;

/// The most characters of a given list (or of one of its entries) that an error quotes: 200; what is quoted is
/// escaped ([`rpc_core::text::quoted`]), as it may come from anywhere.
pub const MAX_QUOTED_CHARS: usize = 200;

/// Why a list of registry addresses cannot be used. Each error quotes what it was given, escaped and cut to
/// [`MAX_QUOTED_CHARS`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RegistryListError {
    /// No address at all (empty, or only spaces).
    #[error(
        "expected one or more registry addresses, host:port separated by commas, got `{}`",
        quoted(.given)
    )]
    Empty {
        /// The list, as given.
        given: String,
    },
    /// Nothing (or only spaces) between two commas, or before the first or after the last.
    #[error(
        "expected host:port as entry {position} of the registry list `{}`, got an empty entry",
        quoted(.given)
    )]
    EmptyEntry {
        /// Which entry is empty, from 1.
        position: usize,
        /// The list, as given.
        given: String,
    },
    /// More entries than [`MAX_REGISTRIES`].
    #[error("expected at most {max} registry addresses, got {count}")]
    TooMany {
        /// How many the list holds.
        count: usize,
        /// [`MAX_REGISTRIES`].
        max: usize,
    },
    /// An entry that does not resolve (not `host:port`, or an unknown host).
    #[error("cannot resolve the registry address `{}`: {}", quoted(.entry), quoted(.reason))]
    Unresolved {
        /// The entry, trimmed.
        entry: String,
        /// The resolver's answer.
        reason: String,
    },
    /// An entry that resolves to no address.
    #[error("the registry address `{}` resolved to no address", quoted(.entry))]
    NoAddress {
        /// The entry, trimmed.
        entry: String,
    },
}

/// `text` escaped and cut, as an error quotes it.
fn quoted(text: &str) -> String {
    rpc_core::text::quoted(text, MAX_QUOTED_CHARS)
}

/// The entries of the comma-separated list `list`, each trimmed of spaces; refused if there is none, if one is
/// empty, or if there are more than [`MAX_REGISTRIES`]. Nothing is resolved.
///
/// ```
/// use rpc_registry::{RegistryListError, parse_registries};
/// assert_eq!(
///     parse_registries(" 10.0.0.1:7070, registry-b:7070 ")?,
///     ["10.0.0.1:7070", "registry-b:7070"]
/// );
/// assert!(matches!(
///     parse_registries("a:1,,b:2"),
///     Err(RegistryListError::EmptyEntry { position: 2, .. })
/// ));
/// assert!(matches!(parse_registries(" "), Err(RegistryListError::Empty { .. })));
/// # Ok::<(), RegistryListError>(())
/// ```
pub fn parse_registries(list: &str) -> Result<Vec<&str>, RegistryListError> {
    if list.trim().is_empty() {
        return Err(RegistryListError::Empty {
            given: list.to_owned(),
        });
    }
    let count = list.split(',').count();
    if count > MAX_REGISTRIES {
        return Err(RegistryListError::TooMany {
            count,
            max: MAX_REGISTRIES,
        });
    }
    let mut entries = Vec::with_capacity(count);
    for (i, entry) in list.split(',').map(str::trim).enumerate() {
        if entry.is_empty() {
            return Err(RegistryListError::EmptyEntry {
                position: i + 1,
                given: list.to_owned(),
            });
        }
        entries.push(entry);
    }
    Ok(entries)
}

/// The socket addresses of the comma-separated list `list` ([`parse_registries`]), each entry resolved in
/// turn, in the order given, each address once. Pass them as a slice (`addrs.as_slice()`) wherever a
/// registry's address goes: the connection then tries them in turn, and moves to another when the one it uses
/// stops answering.
///
/// ```no_run
/// use rpc_registry::{Discovery, DiscoveryConfig, NewInstance, Registration, RegistrationConfig};
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let registries = rpc_registry::resolve_registries("127.0.0.1:7070,127.0.0.1:7071").await?;
/// let instance = NewInstance {
///     service: "Calc".into(),
///     address: "127.0.0.1:7001".into(),
///     weight: 1,
///     metadata: Default::default(),
/// };
/// // Registered with one replica; when it dies, the next heartbeat goes to the other, which does not know the
/// // lease, and the instance registers there at once.
/// let registration =
///     Registration::register(registries.as_slice(), instance, RegistrationConfig::default()).await?;
/// // Watches through one replica, then another, serving from its cache in between.
/// let discovery = Discovery::new(registries.as_slice(), DiscoveryConfig::default()).await?;
/// # let _ = (registration, discovery);
/// # Ok(()) }
/// ```
pub async fn resolve_registries(list: &str) -> Result<Vec<SocketAddr>, RegistryListError> {
    let mut addrs: Vec<SocketAddr> = Vec::new();
    for entry in parse_registries(list)? {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host(entry)
            .await
            .map_err(|e| RegistryListError::Unresolved {
                entry: entry.to_owned(),
                reason: e.to_string(),
            })?
            .collect();
        if resolved.is_empty() {
            return Err(RegistryListError::NoAddress {
                entry: entry.to_owned(),
            });
        }
        for addr in resolved {
            if !addrs.contains(&addr) {
                addrs.push(addr);
            }
        }
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_trimmed_and_empty_ones_refused_naming_the_list() {
        assert_eq!(parse_registries("a:1").unwrap(), ["a:1"]);
        assert_eq!(parse_registries("a:1 ,\tb:2").unwrap(), ["a:1", "b:2"]);
        for (list, position) in [("a:1,,b:2", 2), (",a:1", 1), ("a:1,", 2), ("a:1, ,b:2", 2)] {
            let err = parse_registries(list).unwrap_err();
            assert_eq!(
                err,
                RegistryListError::EmptyEntry {
                    position,
                    given: list.to_owned()
                }
            );
            assert!(err.to_string().contains(&format!("`{list}`")), "{err}");
        }
        let err = parse_registries("").unwrap_err();
        assert_eq!(
            err.to_string(),
            "expected one or more registry addresses, host:port separated by commas, got ``"
        );
    }

    #[test]
    fn what_an_error_quotes_is_escaped_and_bounded() {
        let hostile = format!("a:1,,\x1b[2J{}", "x".repeat(1000));
        let shown = parse_registries(&hostile).unwrap_err().to_string();
        assert!(!shown.chars().any(rpc_core::text::must_escape), "{shown:?}");
        assert!(
            shown.contains("\\u{1b}[2J") && shown.contains('…'),
            "{shown}"
        );
        assert!(shown.chars().count() < MAX_QUOTED_CHARS + 100, "{shown}");
    }

    #[test]
    fn more_entries_than_the_bound_are_refused() {
        let list = vec!["a:1"; MAX_REGISTRIES + 1].join(",");
        assert_eq!(
            parse_registries(&list).unwrap_err(),
            RegistryListError::TooMany {
                count: MAX_REGISTRIES + 1,
                max: MAX_REGISTRIES
            }
        );
        let list = vec!["a:1"; MAX_REGISTRIES].join(",");
        assert_eq!(parse_registries(&list).unwrap().len(), MAX_REGISTRIES);
    }

    #[tokio::test]
    async fn a_list_resolves_in_order_each_address_once() {
        let addrs = resolve_registries("127.0.0.1:7071, 127.0.0.1:7070,127.0.0.1:7071")
            .await
            .unwrap();
        let expected: Vec<SocketAddr> = vec![
            "127.0.0.1:7071".parse().unwrap(),
            "127.0.0.1:7070".parse().unwrap(),
        ];
        assert_eq!(addrs, expected);
        let err = resolve_registries("127.0.0.1:7070,no-port")
            .await
            .unwrap_err();
        assert!(
            matches!(&err, RegistryListError::Unresolved { entry, .. } if entry == "no-port"),
            "{err}"
        );
    }
}
