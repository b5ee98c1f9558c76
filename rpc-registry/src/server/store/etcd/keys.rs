//! How the etcd store lays out its keys and values, under one prefix (`--etcd-prefix`, default
//! `/rpc-registry/`). Names are escaped (`%` and `/` as `%25` and `%2F`) so that every key splits back into them.
//!
//! | key | value | lease |
//! |---|---|---|
//! | `instances/SERVICE/ADDRESS` | [`Stored`] as JSON: the instance, its owner, its replica | the replica's |
//! | `services/SERVICE` | [`Marker`]: the last removal and why (written with it, in one transaction) | none |
//! | `rules/SERVICE/REVISION` | a `RulesRevision` as JSON (REVISION zero-padded to 20 digits) | none |
//! | `weights/SERVICE/ADDRESS` | an operator's weight, in decimal | none |
//! | `replicas/NAME` | a `Replica` as JSON | the replica's |
//!
//! An instance's lease id is the etcd revision that wrote its key (its `mod_revision`): unique across
//! replicas, and growing, as the index wants.

use serde::{Deserialize, Serialize};

use crate::api::{Instance, RemovalReason};
use crate::server::credentials::Identity;

/// The default prefix of every key.
pub(crate) const DEFAULT_PREFIX: &str = "/rpc-registry/";

/// What a key of the store is, split back into names.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Key {
    Instance { service: String, address: String },
    Service { service: String },
    Rules { service: String },
    Weight { service: String, address: String },
    Replica { name: String },
}

/// The keys under one prefix.
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
}

impl Keys {
    /// The keys under `prefix`, which ends with `/` (one is added if not), so that `/a` never reads `/ab/`.
    pub(crate) fn new(prefix: &str) -> Keys {
        let mut prefix = prefix.to_owned();
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        Keys { prefix }
    }

    /// Every key of the store: the prefix itself.
    pub(crate) fn all(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn instance(&self, service: &str, address: &str) -> String {
        format!("{}instances/{}/{}", self.prefix, seg(service), seg(address))
    }

    pub(crate) fn service(&self, service: &str) -> String {
        format!("{}services/{}", self.prefix, seg(service))
    }

    pub(crate) fn rules(&self, service: &str, revision: u64) -> String {
        format!("{}rules/{}/{revision:020}", self.prefix, seg(service))
    }

    pub(crate) fn weight(&self, service: &str, address: &str) -> String {
        format!("{}weights/{}/{}", self.prefix, seg(service), seg(address))
    }

    pub(crate) fn replica(&self, name: &str) -> String {
        format!("{}replicas/{}", self.prefix, seg(name))
    }

    /// What `key` is; `None` for a key this store did not write.
    pub(crate) fn parse(&self, key: &[u8]) -> Option<Key> {
        let key = std::str::from_utf8(key).ok()?.strip_prefix(&self.prefix)?;
        let mut parts = key.split('/');
        let kind = parts.next()?;
        let mut next = || parts.next().and_then(unseg);
        let parsed = match kind {
            "instances" => Key::Instance {
                service: next()?,
                address: next()?,
            },
            "services" => Key::Service { service: next()? },
            "rules" => Key::Rules { service: next()? },
            "weights" => Key::Weight {
                service: next()?,
                address: next()?,
            },
            "replicas" => Key::Replica { name: next()? },
            _ => return None,
        };
        // A key of rules has its revision after the service; any other segment makes it no key of ours.
        if matches!(parsed, Key::Rules { .. }) {
            parts.next()?;
        }
        parts.next().is_none().then_some(parsed)
    }
}

/// A name as one segment of a key.
fn seg(name: &str) -> String {
    name.replace('%', "%25").replace('/', "%2F")
}

/// A segment back into its name.
fn unseg(segment: &str) -> Option<String> {
    let mut out = String::with_capacity(segment.len());
    let mut rest = segment;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        out.push(match code {
            "25" => '%',
            "2F" => '/',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Some(out)
}

/// An instance as its key holds it. The lease id is not kept: it is the key's revision.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Stored {
    pub(crate) instance: Instance,
    /// Who registered it ([`owner_text`]).
    pub(crate) owner: String,
    /// The replica that holds it: the one its heartbeats renew it with.
    pub(crate) replica: String,
}

/// Written to `services/SERVICE` in the transaction that removes an instance: which, and why, so that every
/// replica records the same reason.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Marker {
    pub(crate) address: String,
    pub(crate) reason: RemovalReason,
}

/// An owner as text, for the value of its instance.
pub(crate) fn owner_text(owner: &Identity) -> String {
    match owner {
        Identity::Anyone => String::from("anyone"),
        Identity::Admin => String::from("admin"),
        Identity::Token(i) => format!("token:{i}"),
        Identity::Certificate(name) => format!("certificate:{name}"),
    }
}

/// An owner back from text; one that does not parse owns nothing but an admin may act for (`Admin`).
pub(crate) fn owner_of(text: &str) -> Identity {
    match text.split_once(':') {
        None if text == "anyone" => Identity::Anyone,
        Some(("token", i)) => i.parse().map_or(Identity::Admin, Identity::Token),
        Some(("certificate", name)) => Identity::Certificate(name.to_owned()),
        _ => Identity::Admin,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_splits_back_into_its_names_whatever_they_hold() {
        let keys = Keys::new(DEFAULT_PREFIX);
        let (service, address) = ("a/b%2F", "[::1]:7/x");
        let key = keys.instance(service, address);
        assert_eq!(key, "/rpc-registry/instances/a%2Fb%252F/[::1]:7%2Fx");
        assert_eq!(
            keys.parse(key.as_bytes()),
            Some(Key::Instance {
                service: service.into(),
                address: address.into()
            })
        );
        assert_eq!(
            keys.parse(keys.rules("Calc", 7).as_bytes()),
            Some(Key::Rules {
                service: "Calc".into()
            })
        );
        assert_eq!(keys.parse(b"/rpc-registry/other/x"), None);
        assert_eq!(
            keys.parse(b"/rpc-registry/instances/a/b/c"),
            None,
            "a segment too many"
        );
        assert_eq!(keys.parse(b"/rpc-registry/rules/Calc"), None, "no revision");
        assert_eq!(Keys::new("/mine").instance("a", "b"), "/mine/instances/a/b");
        assert_eq!(keys.parse(b"/elsewhere/instances/a/b"), None);
        assert_eq!(keys.parse(b"/rpc-registry/instances/a%zz/b"), None);
    }

    #[test]
    fn owners_go_to_text_and_back() {
        for owner in [
            Identity::Anyone,
            Identity::Admin,
            Identity::Token(3),
            Identity::Certificate("calc:server".into()),
        ] {
            assert_eq!(owner_of(&owner_text(&owner)), owner);
        }
        assert_eq!(owner_of("garbage"), Identity::Admin);
    }
}
