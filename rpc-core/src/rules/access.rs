//! Who may call what ([`Authorization`]): grants of methods to caller identities, first match first, and the
//! service's default for callers no grant names, stated in the document.

use serde::{Deserialize, Serialize};

use super::{CallerPattern, MethodPattern, Problem};

/// Allow or deny.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Access {
    /// The call is served.
    Allow,
    /// The call is refused with `PermissionDenied`.
    Deny,
}

/// The service's authorization.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorization {
    /// What a call no grant matches gets. Stated, never implied.
    pub default: Access,
    /// The grants, first match first.
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// Some callers may (or may not) call some methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    /// Its name, which a refusal quotes.
    pub name: String,
    /// The caller identities (`token:NAME`, `mtls:NAME`, `jwt:SUBJECT`, `*`).
    pub callers: Vec<CallerPattern>,
    /// The methods (`add`, or `*`).
    pub methods: Vec<MethodPattern>,
    /// Allowed or denied.
    pub access: Access,
}

/// A call refused, with the rule that refused it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// The grant's name, or `default`.
    pub rule: String,
}

impl Authorization {
    /// Whether a caller with `identities` may call `method`: the first grant that names both decides, else the
    /// default.
    pub fn decide(&self, identities: &[&str], method: &str) -> Result<(), Denied> {
        let granted = self.grants.iter().find(|g| {
            g.methods.iter().any(|m| m.matches(method))
                && g.callers.iter().any(|p| p.admits(identities))
        });
        let (access, rule) = match granted {
            Some(grant) => (grant.access, grant.name.as_str()),
            None => (self.default, "default"),
        };
        match access {
            Access::Allow => Ok(()),
            Access::Deny => Err(Denied {
                rule: rule.to_owned(),
            }),
        }
    }

    pub(super) fn check(&self, at: &str, problems: &mut Vec<Problem>) {
        for (i, grant) in self.grants.iter().enumerate() {
            let here = format!("{at}.grants[{i}]");
            if grant.name.trim().is_empty() {
                problems.push(Problem::new(format!("{here}.name"), "a grant needs a name"));
            }
            if grant.callers.is_empty() {
                problems.push(Problem::new(
                    format!("{here}.callers"),
                    "a grant names its callers (`*` for all)",
                ));
            }
            if grant.methods.is_empty() {
                problems.push(Problem::new(
                    format!("{here}.methods"),
                    "a grant names its methods (`*` for all)",
                ));
            }
        }
    }
}
