//! Who may write to the registry: the registry's own token (any service), per-service tokens, and the names of
//! verified client certificates (mutual TLS), each granted a list of services. A write is allowed if any
//! credential the call carries covers its service; a refusal says which credential came and what it may do, and
//! never shows a token. The credential that allowed a registration owns the instance (`Identity`): only it or
//! the registry's own token may renew, remove or supersede it. Every token meets [`check_token`].
//!
//! The credentials file (`rpc-registry serve --credentials FILE`) is JSON:
//!
//! ```json
//! {
//!   "tokens": [
//!     { "token": "calc-secret", "services": ["Calc"] },
//!     { "token": "ops-secret", "services": ["*"] }
//!   ],
//!   "identities": [
//!     { "name": "calc.client.test", "services": ["Calc", "Billing"] }
//!   ],
//!   "readers": { "tokens": ["dashboard-read-token"], "identities": ["monitor.test"] },
//!   "callers": [{ "token": "calc-caller", "services": ["Calc"] }]
//! }
//! ```
//!
//! With `readers`, reading the registry needs a credential too: the registry's own token, a token or identity
//! above, or a reader's (which may only read). That covers the RPC API's reads (instances, watches, services,
//! status, rules) and the HTTP JSON API and metrics (`authorization: Bearer <token>`); the dashboard asks for a
//! token and sends it. `/healthz` stays open, for liveness probes. Without `readers`, reads are open.
//!
//! With `callers`, calling a service through the gateway (`serve --gateway`, `POST /call/{Service}/{method}`)
//! needs the registry's own token or a caller's token granted that service; nothing else may call, not even a
//! reader. Without `callers`, whoever may read may call every service (anyone, when reads are open).

use std::path::Path;

use rpc_core::server::layer::{Authorize, Caller, Grant};
use serde::Deserialize;

use crate::server::service::shown;
use crate::token::{TokenError, check_token};

/// Tokens and certificate names, each with the services it may register. `Default` grants nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// Tokens a call may carry (`authorization: Bearer <token>`).
    #[serde(default)]
    pub tokens: Vec<TokenGrant>,
    /// DNS names of client certificates, verified by mutual TLS.
    #[serde(default)]
    pub identities: Vec<IdentityGrant>,
    /// Who may read, when reads need a credential; `None`: reads are open.
    #[serde(default)]
    pub readers: Option<Readers>,
    /// Who may call which services through the gateway; `None`: whoever may read (see the module's
    /// documentation).
    #[serde(default)]
    pub callers: Option<Vec<TokenGrant>>,
}

/// The credentials that may only read (see the module's documentation).
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Readers {
    /// Tokens that may read.
    #[serde(default)]
    pub tokens: Vec<String>,
    /// DNS names of client certificates that may read.
    #[serde(default)]
    pub identities: Vec<String>,
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("tokens", &self.tokens.len())
            .field("identities", &self.identities)
            .finish()
    }
}

/// The registry's methods that write: their handlers check credentials themselves, with messages that say
/// what the credential may write; every other method reads.
const WRITES: [&str; 5] = [
    "Registry.register",
    "Registry.heartbeat",
    "Registry.deregister",
    "Registry.apply_rules",
    "Registry.rollback_rules",
];

/// The name [`Credentials::layer`] gives the reader tokens, before their place.
const READER: &str = "reader-";

/// A token and what it may register.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenGrant {
    /// The token.
    pub token: String,
    /// The services it may register, heartbeat and deregister; `"*"` for all.
    pub services: Vec<String>,
}

impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenGrant")
            .field("token", &"<hidden>")
            .field("services", &self.services)
            .finish()
    }
}

/// A client certificate's name and what it may register.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityGrant {
    /// A DNS name of the certificate (a subject alternative name).
    pub name: String,
    /// The services it may register, heartbeat and deregister; `"*"` for all.
    pub services: Vec<String>,
}

/// Why a credentials file could not be used. No message shows a token, nor any other text of the file: a
/// malformed file may hold a secret in the place where the parser stumbled.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read the credentials file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not JSON, or not of the expected shape.
    #[error(
        "the credentials file {path} is not valid at line {line} column {column}: {problem} (the file is \
         {{\"tokens\": [{{\"token\": ..., \"services\": [...]}}], \"identities\": [{{\"name\": ..., \
         \"services\": [...]}}], \"readers\": {{\"tokens\": [...], \"identities\": [...]}}}})"
    )]
    Parse {
        /// The file.
        path: String,
        /// What is wrong there, quoting nothing of the file (the parser's own message may quote a token).
        problem: String,
        /// Where, counting from 1.
        line: usize,
        /// Where in the line, counting from 1.
        column: usize,
    },
    /// A grant is unusable.
    #[error("the credentials file {path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        #[source]
        reason: InvalidGrant,
    },
}

/// Why a grant cannot be used (see [`Credentials::check`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidGrant {
    /// A token breaks the rule of [`check_token`].
    #[error("token {index}: {source}")]
    Token {
        /// Which token, counting from 1.
        index: usize,
        /// Why.
        #[source]
        source: TokenError,
    },
    /// A token grants nothing.
    #[error("token {index} grants no service")]
    TokenGrantsNothing {
        /// Which token, counting from 1.
        index: usize,
    },
    /// A reader's token breaks the rule of [`check_token`].
    #[error("reader token {index}: {source}")]
    ReaderToken {
        /// Which reader token, counting from 1.
        index: usize,
        /// Why.
        #[source]
        source: TokenError,
    },
    /// A caller's token breaks the rule of [`check_token`].
    #[error("caller token {index}: {source}")]
    CallerToken {
        /// Which caller token, counting from 1.
        index: usize,
        /// Why.
        #[source]
        source: TokenError,
    },
    /// A caller's token grants nothing.
    #[error("caller token {index} grants no service")]
    CallerGrantsNothing {
        /// Which caller token, counting from 1.
        index: usize,
    },
    /// An identity grants nothing.
    #[error("identity {name} grants no service")]
    IdentityGrantsNothing {
        /// The certificate name (escaped and shortened).
        name: String,
    },
}

/// What a JSON error is about, in words that quote nothing of the file: syntax errors name only what the parser
/// expected, and of a type error only what serde expected (the part after the last `, expected`) is kept, the
/// key or value that came being left out.
fn problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let full = e.to_string();
    let message = full
        .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
        .unwrap_or(&full);
    match e.classify() {
        // Fixed texts (`expected value`, `trailing comma`, `EOF while parsing a string`...).
        Category::Syntax | Category::Eof | Category::Io => message.to_owned(),
        // Of our fields only: `missing field `services``, `duplicate field `tokens``.
        Category::Data
            if message.starts_with("missing field `")
                || message.starts_with("duplicate field `") =>
        {
            message.to_owned()
        }
        Category::Data => {
            let what =
                if message.starts_with("unknown field") || message.starts_with("unknown variant") {
                    "an unknown key"
                } else {
                    "a value of the wrong type or form"
                };
            match message.rfind(", expected ") {
                Some(at) => format!("{what} (not shown: it may be a secret){}", &message[at..]),
                None => format!("{what} (not shown: it may be a secret)"),
            }
        }
    }
}

fn covers(services: &[String], service: &str) -> bool {
    services.iter().any(|s| s == "*" || s == service)
}

impl Credentials {
    /// Credentials from the JSON text of a credentials file; `path` names it in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Credentials, CredentialsError> {
        let credentials: Credentials =
            serde_json::from_str(text).map_err(|e| CredentialsError::Parse {
                path: path.to_owned(),
                problem: problem(&e),
                line: e.line(),
                column: e.column(),
            })?;
        credentials
            .check()
            .map_err(|reason| CredentialsError::Invalid {
                path: path.to_owned(),
                reason,
            })?;
        Ok(credentials)
    }

    /// Checks that every grant is usable: each token meets [`check_token`], and each grant names a service.
    /// The registry checks its credentials with this when it starts, wherever they came from.
    pub fn check(&self) -> Result<(), InvalidGrant> {
        for (i, grant) in self.tokens.iter().enumerate() {
            let index = i + 1;
            check_token(&grant.token).map_err(|source| InvalidGrant::Token { index, source })?;
            if grant.services.is_empty() {
                return Err(InvalidGrant::TokenGrantsNothing { index });
            }
        }
        for grant in &self.identities {
            if grant.services.is_empty() {
                return Err(InvalidGrant::IdentityGrantsNothing {
                    name: shown(&grant.name).to_string(),
                });
            }
        }
        if let Some(readers) = &self.readers {
            for (i, token) in readers.tokens.iter().enumerate() {
                check_token(token).map_err(|source| InvalidGrant::ReaderToken {
                    index: i + 1,
                    source,
                })?;
            }
        }
        for (i, grant) in self.callers.iter().flatten().enumerate() {
            let index = i + 1;
            check_token(&grant.token)
                .map_err(|source| InvalidGrant::CallerToken { index, source })?;
            if grant.services.is_empty() {
                return Err(InvalidGrant::CallerGrantsNothing { index });
            }
        }
        Ok(())
    }

    /// Whether the gateway's calls are checked against `callers` rather than the read credential.
    pub fn calls_need_caller(&self) -> bool {
        self.callers.is_some()
    }

    /// Whether the bearer token `carried` may call `service` through the gateway, when there are `callers`: the
    /// registry's own (`master`), or a caller's granted `service`. `Err(true)` for a token that may call other
    /// services only, `Err(false)` for one that may call none. Compared in constant time.
    pub(crate) fn may_call(
        &self,
        carried: &[u8],
        master: Option<&str>,
        service: &str,
    ) -> Result<(), bool> {
        let master = master.is_some_and(|m| constant_time_eq(carried, m.as_bytes()));
        let (granted, known) =
            self.callers
                .iter()
                .flatten()
                .fold((master, master), |(granted, known), grant| {
                    let same = constant_time_eq(carried, grant.token.as_bytes());
                    (
                        granted | (same && covers(&grant.services, service)),
                        known | same,
                    )
                });
        match granted {
            true => Ok(()),
            false => Err(known),
        }
    }

    /// Whether reading needs a credential.
    pub fn reads_need_credential(&self) -> bool {
        self.readers.is_some()
    }

    /// Whether the bearer token `carried` may read: the registry's own (`master`), one of the tokens, or a
    /// reader's. Compared in constant time.
    pub(crate) fn may_read(&self, carried: &[u8], master: Option<&str>) -> bool {
        let readers = self.readers.iter().flat_map(|r| r.tokens.iter());
        master
            .into_iter()
            .chain(self.tokens.iter().map(|g| g.token.as_str()))
            .chain(readers.map(String::as_str))
            .fold(false, |found, token| {
                found | constant_time_eq(carried, token.as_bytes())
            })
    }

    /// Credentials from a credentials file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Credentials, CredentialsError> {
        let shown = path.as_ref().display().to_string();
        let text =
            std::fs::read_to_string(path.as_ref()).map_err(|source| CredentialsError::Read {
                path: shown.clone(),
                source,
            })?;
        Credentials::from_json(&text, &shown)
    }

    /// Whether nothing is granted.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty() && self.identities.is_empty()
    }

    /// The authorization layer that finds out which of these credentials a call carries: the registry's own
    /// token (`master`, named `admin`), each token (named by its place in [`Credentials::tokens`], from 0) and
    /// each client certificate name. It refuses no call: which instances a credential may write depends on the
    /// instance, which [`Credentials::authorize`] checks once the call is decoded.
    pub fn layer(&self, master: Option<&str>) -> Authorize {
        let anonymous = match &self.readers {
            None => Grant::all(),
            Some(_) => Grant::to(WRITES),
        };
        let mut layer = Authorize::new().anonymous(anonymous);
        if let Some(readers) = &self.readers {
            for (i, token) in readers.tokens.iter().enumerate() {
                layer = layer.token(format!("{READER}{i}"), token.as_bytes(), Grant::all());
            }
            for name in &readers.identities {
                layer = layer.certificate(name.as_str(), Grant::all());
            }
        }
        if let Some(master) = master {
            layer = layer.token(ADMIN, master, Grant::all());
        }
        for (i, grant) in self.tokens.iter().enumerate() {
            layer = layer.token(i.to_string(), grant.token.as_bytes(), Grant::all());
        }
        for grant in &self.identities {
            layer = layer.certificate(grant.name.as_str(), Grant::all());
        }
        layer
    }

    /// Allows a write (`what`: registration, heartbeat, deregistration) of `service` by `caller` (as the layer
    /// of [`Credentials::layer`] found it) over a connection whose client certificate is named `names`, and
    /// names the credential that allowed it.
    pub(crate) fn authorize(
        &self,
        what: &str,
        service: &str,
        caller: &Caller,
        names: &[String],
    ) -> Result<Identity, String> {
        let quoted = shown(service);
        let refused = |why: String| Err(format!("{what} of {quoted} refused: {why}"));
        let mut narrower = None;
        match token_of(caller) {
            Some(Token::Admin) => return Ok(Identity::Admin),
            Some(Token::Grant(i)) => {
                // The layer names the first grant of the token; a file may grant the same token twice.
                let token = self.tokens.get(i).map(|g| g.token.as_str());
                for (j, grant) in self.tokens.iter().enumerate() {
                    if Some(grant.token.as_str()) != token {
                        continue;
                    }
                    if covers(&grant.services, service) {
                        return Ok(Identity::Token(j));
                    }
                    narrower = Some(format!(
                        "the token the call carried may write {}, not {quoted}",
                        grant.services.join(", ")
                    ));
                }
            }
            None if caller
                .token
                .as_deref()
                .is_some_and(|t| t.starts_with(READER)) =>
            {
                return refused(String::from(
                    "the token the call carried may only read (it is a reader's)",
                ));
            }
            None if caller.carried_token && names.is_empty() => {
                return refused(String::from(
                    "the token the call carried is not one of this registry's",
                ));
            }
            None => {}
        }
        let mut unknown_names = Vec::new();
        for name in names {
            let mut granted = false;
            for grant in self.identities.iter().filter(|g| &g.name == name) {
                granted = true;
                if covers(&grant.services, service) {
                    return Ok(Identity::Certificate(name.clone()));
                }
                narrower = Some(format!(
                    "the client certificate {} may write {}, not {quoted}",
                    shown(name),
                    grant.services.join(", ")
                ));
            }
            if !granted {
                unknown_names.push(shown(name).to_string());
            }
        }
        if let Some(why) = narrower {
            return refused(why);
        }
        if !unknown_names.is_empty() {
            return refused(format!(
                "this registry grants nothing to the client certificate {}{}",
                unknown_names.join(", "),
                if caller.carried_token {
                    ", and does not know the token the call carried"
                } else {
                    ""
                }
            ));
        }
        refused(String::from(
            "this registry needs a token (metadata `authorization: Bearer <token>`) or a client certificate, \
             and the call carried neither",
        ))
    }

    /// Whether `caller` (over a connection whose client certificate is named `names`) may renew, remove or
    /// supersede an instance that `owner` registered: it carries `owner`'s credential, or the registry's own
    /// token (an admin's).
    pub(crate) fn may_act_for(&self, owner: &Identity, caller: &Caller, names: &[String]) -> bool {
        let token = token_of(caller);
        if token == Some(Token::Admin) {
            return true;
        }
        match owner {
            Identity::Anyone => true,
            Identity::Admin => false,
            Identity::Token(i) => match (token, self.tokens.get(*i)) {
                (Some(Token::Grant(j)), Some(owner)) => {
                    self.tokens.get(j).is_some_and(|g| g.token == owner.token)
                }
                _ => false,
            },
            Identity::Certificate(name) => names.contains(name),
        }
    }
}

/// The name [`Credentials::layer`] gives the registry's own token.
const ADMIN: &str = "admin";

/// A token the layer recognised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Admin,
    Grant(usize),
}

/// Whether `caller` carried the registry's own token (an admin's).
pub(crate) fn is_admin(caller: &Caller) -> bool {
    token_of(caller) == Some(Token::Admin)
}

/// Compares without stopping at the first difference, so that timing does not tell how much of a token matched.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token `caller` carried, if the layer of [`Credentials::layer`] knew it.
fn token_of(caller: &Caller) -> Option<Token> {
    let name = caller.token.as_deref()?;
    if name == ADMIN {
        return Some(Token::Admin);
    }
    name.parse().ok().map(Token::Grant)
}

/// The credential a write was allowed by; an instance belongs to the identity that registered it, and only that
/// identity or an admin (the registry's own token) may renew, remove or supersede it. Shown without the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Identity {
    /// Anyone: the registry is open.
    Anyone,
    /// The registry's own token.
    Admin,
    /// The token of this grant of [`Credentials::tokens`] (counting from 0).
    Token(usize),
    /// A verified client certificate with this name.
    Certificate(String),
}

impl std::fmt::Display for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Anyone => f.write_str("anyone"),
            Identity::Admin => f.write_str("the registry's own token"),
            Identity::Token(i) => write!(f, "token {} of the credentials", i + 1),
            Identity::Certificate(name) => write!(f, "the client certificate {}", shown(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        Credentials::from_json(
            r#"{"tokens": [{"token": "calc-secret", "services": ["Calc"]},
                            {"token": "ops-secret!", "services": ["*"]}],
                "identities": [{"name": "calc.client.test", "services": ["Calc", "Billing"]}]}"#,
            "creds.json",
        )
        .unwrap()
    }

    #[test]
    fn callers_are_checked_when_loaded_and_may_call_their_services_only() {
        let bad = |callers: &str| {
            let text = format!(r#"{{"callers": {callers}}}"#);
            Credentials::from_json(&text, "c.json")
                .unwrap_err()
                .to_string()
        };
        assert!(bad(r#"[{"token": "x", "services": ["Calc"]}]"#).contains("caller token 1"));
        assert!(
            bad(r#"[{"token": "calc-caller-1", "services": []}]"#)
                .contains("caller token 1 grants no service")
        );
        let c = Credentials::from_json(
            r#"{"callers": [{"token": "calc-caller-1", "services": ["Calc"]}]}"#,
            "c.json",
        )
        .unwrap();
        assert!(c.calls_need_caller() && !sample().calls_need_caller());
        assert_eq!(c.may_call(b"calc-caller-1", None, "Calc"), Ok(()));
        assert_eq!(c.may_call(b"calc-caller-1", None, "Lab"), Err(true));
        assert_eq!(c.may_call(b"calc-caller-2", None, "Calc"), Err(false));
        assert_eq!(
            c.may_call(b"master-token", Some("master-token"), "Lab"),
            Ok(())
        );
    }

    #[test]
    fn each_credential_covers_its_services_only() {
        let c = sample();
        let layer = c.layer(Some("master-token"));
        let ok = |token: Option<&str>, names: &[&str], service: &str| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            let bearer = token.map(|t| format!("Bearer {t}"));
            let metadata =
                rpc_core::Metadata::from_pairs(bearer.iter().map(|b| ("authorization", b)))
                    .expect("a valid entry");
            let caller = layer.identify(&metadata, &names);
            c.authorize("registration", service, &caller, &names)
        };
        assert!(ok(Some("master-token"), &[], "Anything").is_ok());
        assert!(ok(Some("calc-secret"), &[], "Calc").is_ok());
        assert!(ok(Some("ops-secret!"), &[], "Billing").is_ok());
        assert!(ok(None, &["calc.client.test"], "Billing").is_ok());
        assert_eq!(
            ok(Some("calc-secret"), &[], "Billing"),
            Err("registration of Billing refused: the token the call carried may write Calc, not Billing".into())
        );
        assert_eq!(
            ok(None, &["calc.client.test"], "Payments"),
            Err("registration of Payments refused: the client certificate calc.client.test may write Calc, \
                 Billing, not Payments"
                .into())
        );
        assert_eq!(
            ok(Some("guess-token"), &[], "Calc"),
            Err("registration of Calc refused: the token the call carried is not one of this registry's".into())
        );
        assert_eq!(
            ok(None, &["rogue.test"], "Calc"),
            Err("registration of Calc refused: this registry grants nothing to the client certificate rogue.test"
                .into())
        );
        assert_eq!(
            ok(None, &[], "Calc"),
            Err("registration of Calc refused: this registry needs a token (metadata `authorization: Bearer \
                 <token>`) or a client certificate, and the call carried neither"
                .into())
        );
        // A certificate with a grant still works when the call also carries an unknown token.
        assert!(ok(Some("guess-token"), &["calc.client.test"], "Calc").is_ok());
    }

    #[test]
    fn a_token_granted_twice_covers_the_services_of_both_grants() {
        let c = Credentials::from_json(
            r#"{"tokens": [{"token": "shared-secret", "services": ["Calc"]},
                            {"token": "shared-secret", "services": ["Billing"]}]}"#,
            "creds.json",
        )
        .unwrap();
        let layer = c.layer(None);
        let metadata =
            rpc_core::Metadata::from_pairs([("authorization", "Bearer shared-secret")]).unwrap();
        let caller = layer.identify(&metadata, &[]);
        assert_eq!(
            c.authorize("registration", "Calc", &caller, &[]),
            Ok(Identity::Token(0))
        );
        assert_eq!(
            c.authorize("registration", "Billing", &caller, &[]),
            Ok(Identity::Token(1))
        );
        assert!(c.may_act_for(&Identity::Token(1), &caller, &[]));
    }

    #[test]
    fn no_error_of_a_credentials_file_shows_a_credential() {
        let secret = "SECRET-b0d7c2e9";
        for text in [
            format!(r#"{{"tokens": ["{secret}"]}}"#),
            format!(r#"{{"tokens": [{{"{secret}": ["Calc"]}}]}}"#),
            format!(r#"{{"{secret}": []}}"#),
            format!(r#"{{"tokens": [{{"token": "{secret}", "services": "Calc"}}]}}"#),
            format!(r#"{{"tokens": [{{"token": "{secret}", "services": ["Calc"], "x": 1}}]}}"#),
            format!(r#"{{"tokens": [{{"token": "{secret}\n", "services": ["Calc"]}}]}}"#),
            format!(r#"{{"tokens": [{{"token": {secret}, "services": ["Calc"]}}]}}"#),
            format!(r#"{{"identities": [{{"name": "calc", "services": ["{secret}"], "x": 1}}]}}"#),
            format!(r#"{{"tokens": [{{"token": "{secret}", "services": []}}]}}"#),
            format!(r#"{{"tokens": [{{"token": "{secret}", "services": ["Calc"]}}]"#),
        ] {
            let err = Credentials::from_json(&text, "c.json").unwrap_err();
            let mut shown = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(e) = source {
                shown.push_str(&format!(" / {e}"));
                source = e.source();
            }
            shown.push_str(&format!(" / {err:?}"));
            assert!(!shown.contains("SECRET"), "{text} gives {shown}");
        }
    }

    #[test]
    fn a_bad_credentials_file_is_refused_with_the_reason() {
        let err = Credentials::from_json(
            r#"{"tokens": [{"token": "short", "services": ["Calc"]}]}"#,
            "c.json",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the credentials file c.json is not valid: token 1: the token is too short: 5 of at least 8 bytes"
        );
        let err = Credentials::from_json(
            r#"{"tokens": [{"token": "long-enough", "services": []}]}"#,
            "c.json",
        )
        .unwrap_err();
        assert!(
            err.to_string().ends_with("token 1 grants no service"),
            "{err}"
        );
        let err = Credentials::from_json(r#"{"token": "x"}"#, "c.json").unwrap_err();
        assert!(
            err.to_string().starts_with(
                "the credentials file c.json is not valid at line 1 column 8: an unknown key (not shown: it \
                 may be a secret), expected one of `tokens`, `identities`, `readers`"
            ),
            "{err}"
        );
        let err = Credentials::from_json(r#"{"tokens": [{"token": "long-enough"}]}"#, "c.json")
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("at line 1 column 36: missing field `services`"),
            "{err}"
        );
        let shown = format!("{:?}", sample());
        assert!(shown.contains("<hidden>"), "{shown}");
        assert!(
            !shown.contains("calc-secret"),
            "tokens stay out of logs: {shown}"
        );
    }
}
