//! Who may write to the registry: the registry's own token (any service), per-service tokens, and the names of
//! verified client certificates (mutual TLS), each granted a list of services. A write is allowed if any
//! credential the call carries covers its service; a refusal says which credential came and what it may do.
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
//!   ]
//! }
//! ```

use std::path::Path;

use serde::Deserialize;

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
}

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

/// Why a credentials file could not be used.
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
    /// The file is not the expected JSON.
    #[error(
        "the credentials file {path} is not valid: {source} (expected {{\"tokens\": [{{\"token\": ..., \
         \"services\": [...]}}], \"identities\": [{{\"name\": ..., \"services\": [...]}}]}})"
    )]
    Parse {
        /// The file.
        path: String,
        /// The parser's complaint.
        #[source]
        source: serde_json::Error,
    },
    /// A grant is unusable.
    #[error("the credentials file {path} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

fn covers(services: &[String], service: &str) -> bool {
    services.iter().any(|s| s == "*" || s == service)
}

/// Compares without stopping at the first difference, so that response times do not leak a token.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Credentials {
    /// Credentials from the JSON text of a credentials file; `path` names it in errors.
    pub fn from_json(text: &str, path: &str) -> Result<Credentials, CredentialsError> {
        let credentials: Credentials =
            serde_json::from_str(text).map_err(|source| CredentialsError::Parse {
                path: path.to_owned(),
                source,
            })?;
        let invalid = |reason: String| CredentialsError::Invalid {
            path: path.to_owned(),
            reason,
        };
        for (i, grant) in credentials.tokens.iter().enumerate() {
            if grant.token.len() < 8 {
                return Err(invalid(format!(
                    "token {} is {} characters long; use at least 8",
                    i + 1,
                    grant.token.len()
                )));
            }
            if grant.services.is_empty() {
                return Err(invalid(format!("token {} grants no service", i + 1)));
            }
        }
        for grant in &credentials.identities {
            if grant.services.is_empty() {
                return Err(invalid(format!(
                    "identity {} grants no service",
                    grant.name
                )));
            }
        }
        Ok(credentials)
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

    /// Allows a write (`what`: registration, heartbeat, deregistration) of `service` by a call that carried
    /// `token` (the bearer token, if any) and a client certificate named `names`; `master` is the registry's own
    /// token, which covers every service.
    pub(crate) fn authorize(
        &self,
        master: Option<&str>,
        what: &str,
        service: &str,
        token: Option<&[u8]>,
        names: &[String],
    ) -> Result<(), String> {
        let refused = |why: String| Err(format!("{what} of {service} refused: {why}"));
        let mut narrower = None;
        if let Some(token) = token {
            if master.is_some_and(|m| constant_time_eq(token, m.as_bytes())) {
                return Ok(());
            }
            let mut known = false;
            for grant in &self.tokens {
                if constant_time_eq(token, grant.token.as_bytes()) {
                    known = true;
                    if covers(&grant.services, service) {
                        return Ok(());
                    }
                    narrower = Some(format!(
                        "the token the call carried may write {}, not {service}",
                        grant.services.join(", ")
                    ));
                }
            }
            if !known && names.is_empty() {
                return refused(String::from(
                    "the token the call carried is not one of this registry's",
                ));
            }
        }
        let mut unknown_names = Vec::new();
        for name in names {
            let mut granted = false;
            for grant in self.identities.iter().filter(|g| &g.name == name) {
                granted = true;
                if covers(&grant.services, service) {
                    return Ok(());
                }
                narrower = Some(format!(
                    "the client certificate {name} may write {}, not {service}",
                    grant.services.join(", ")
                ));
            }
            if !granted {
                unknown_names.push(name.as_str());
            }
        }
        if let Some(why) = narrower {
            return refused(why);
        }
        if !unknown_names.is_empty() {
            return refused(format!(
                "this registry grants nothing to the client certificate {}{}",
                unknown_names.join(", "),
                if token.is_some() {
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
    fn each_credential_covers_its_services_only() {
        let c = sample();
        let ok = |token: Option<&str>, names: &[&str], service: &str| {
            let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
            c.authorize(
                Some("master-token"),
                "registration",
                service,
                token.map(str::as_bytes),
                &names,
            )
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
    fn a_bad_credentials_file_is_refused_with_the_reason() {
        let err = Credentials::from_json(
            r#"{"tokens": [{"token": "short", "services": ["Calc"]}]}"#,
            "c.json",
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the credentials file c.json is not valid: token 1 is 5 characters long; use at least 8"
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
        assert!(err.to_string().contains("unknown field `token`"), "{err}");
        let shown = format!("{:?}", sample());
        assert!(shown.contains("<hidden>"), "{shown}");
        assert!(
            !shown.contains("calc-secret"),
            "tokens stay out of logs: {shown}"
        );
    }
}
