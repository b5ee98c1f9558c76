//! Rules: one document per service that says how its calls are routed and made, which its clients and servers
//! apply (the registry distributes them; `docs/CONTROL_PLANE.md` documents the format as operators write it).
//!
//! A document ([`Rules`]) declares:
//! - routes (`route.rs`): calls matched by method, metadata (exact, prefix, regular expression) and caller,
//!   sent to subsets of the instances by weight; the first route that matches takes the call;
//! - how calls are made (`policy.rs`, [`CallPolicy`]): per route, and per method over it, the deadline,
//!   retries and their budget, hedging, the balancing policy, outlier detection, injected faults;
//! - what servers shed (`limits.rs`, [`Limit`]): concurrency and rate limits per method and per caller;
//! - who may call what (`access.rs`, [`Authorization`]), with the service's default stated.
//!
//! [`Rules::check`] checks what the types cannot (names, bounds, pairs that go together, regular expressions,
//! routes that could never match) and reports every problem with the path of its field (`routes[1].to`), so
//! that a document that fails is refused whole, before it reaches a client.
//!
//! ```
//! use rpc_core::rules::{CallSite, Rules};
//!
//! let mut rules: Rules = serde_json::from_str(r#"{
//!     "service": "Calc",
//!     "routes": [
//!         {"name": "canary", "match": {"metadata": [{"key": "x-canary", "exact": "1"}]},
//!          "to": [{"subset": "version=v2", "weight": 1}]},
//!         {"name": "split", "to": [{"subset": "version=v1", "weight": 90}, {"subset": "version=v2", "weight": 10}]}
//!     ]
//! }"#).unwrap();
//! rules.check().unwrap();
//! let metadata = rpc_core::Metadata::from_pairs([("x-canary", "1")]).unwrap();
//! let call = CallSite { method: "add", metadata: &metadata, callers: &[] };
//! assert_eq!(rules.route(&call).unwrap().name, "canary");
//! ```

mod access;
mod limits;
mod policy;
mod route;

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use rpc_codec::Status;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub use access::{Access, Authorization, Denied, Grant};
pub use limits::{Limit, MAX_RATE_PER_SECOND};
pub use policy::{
    BalanceRule, CallPolicy, FaultRule, HedgeRule, MAX_DEADLINE_MS, OutlierRule, RetryRule,
};
pub use route::{CallSite, MAX_REGEX_LEN, Match, MetadataMatch, Route, Split};

/// The most routes a document holds: 256.
pub const MAX_ROUTES: usize = 256;

/// The most splits, metadata matches, methods or callers one route, limit or grant lists: 64.
pub const MAX_LIST: usize = 64;

/// The most method policies, limits or grants a document holds: 256 each.
pub const MAX_ENTRIES: usize = 256;

/// One service's rules.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rules {
    /// The service they are for (`Calc`).
    pub service: String,
    /// The routes, first match first. A call no route takes goes to any instance.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    /// Policies per method (`div`, or `*` for every method), over the route's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub methods: BTreeMap<String, CallPolicy>,
    /// What servers shed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<Limit>,
    /// Who may call what; every caller may call every method if left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

/// One thing wrong with a document: where (the path of the field, `routes[1].to`) and what.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The field's path.
    pub field: String,
    /// What is wrong, and what was expected.
    pub problem: String,
}

impl Problem {
    fn new(field: String, problem: impl Into<String>) -> Problem {
        Problem {
            field,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

/// A document refused: every problem found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct RulesError {
    /// The problems, in the order of the document.
    pub problems: Vec<Problem>,
}

impl Rules {
    /// Checks the document (and compiles its regular expressions): every problem, or none.
    pub fn check(&mut self) -> Result<(), RulesError> {
        let mut problems = Vec::new();
        if let Err(problem) = check_name(&self.service, "a service") {
            problems.push(Problem::new("service".to_owned(), problem));
        }
        let counted = [
            ("routes", self.routes.len(), MAX_ROUTES),
            ("methods", self.methods.len(), MAX_ENTRIES),
            ("limits", self.limits.len(), MAX_ENTRIES),
            (
                "authorization.grants",
                self.authorization.as_ref().map_or(0, |a| a.grants.len()),
                MAX_ENTRIES,
            ),
        ];
        for (field, count, max) in counted {
            if count > max {
                let problem = format!("{count} entries, over the limit of {max}");
                problems.push(Problem::new(field.to_owned(), problem));
            }
        }
        let mut names = std::collections::BTreeSet::new();
        let mut default_at = None;
        for (i, route) in self.routes.iter_mut().enumerate() {
            let at = format!("routes[{i}]");
            if let Some(first) = default_at {
                let problem = format!(
                    "no call can reach it: routes[{first}] before it has no condition and takes every call"
                );
                problems.push(Problem::new(at.clone(), problem));
            }
            if route.is_default() {
                default_at.get_or_insert(i);
            }
            if !names.insert(route.name.clone()) {
                let problem = format!(
                    "the name `{}` is taken by an earlier route",
                    shown(&route.name)
                );
                problems.push(Problem::new(format!("{at}.name"), problem));
            }
            let lists = [
                ("to", route.to.len()),
                ("match.metadata", route.matches.metadata.len()),
                ("match.methods", route.matches.methods.len()),
                ("match.callers", route.matches.callers.len()),
            ];
            check_lists(&at, &lists, &mut problems);
            route.check(&at, &mut problems);
        }
        for (method, policy) in &self.methods {
            let at = format!("methods.{}", shown(method));
            if let Err(e) = method.parse::<MethodPattern>() {
                problems.push(Problem::new(at.clone(), e));
            }
            policy.check(&at, &mut problems);
        }
        for (i, limit) in self.limits.iter().enumerate() {
            let at = format!("limits[{i}]");
            let lists = [
                ("methods", limit.methods.len()),
                ("callers", limit.callers.len()),
            ];
            check_lists(&at, &lists, &mut problems);
            limit.check(&at, &mut problems);
        }
        if let Some(authorization) = &self.authorization {
            for (i, grant) in authorization.grants.iter().enumerate() {
                let at = format!("authorization.grants[{i}]");
                let lists = [
                    ("methods", grant.methods.len()),
                    ("callers", grant.callers.len()),
                ];
                check_lists(&at, &lists, &mut problems);
            }
            authorization.check("authorization", &mut problems);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(RulesError { problems })
        }
    }

    /// The route that takes `call`: the first whose conditions all hold.
    pub fn route(&self, call: &CallSite<'_>) -> Option<&Route> {
        self.routes.iter().find(|r| r.takes(call))
    }

    /// How the calls of `method` on `route` are made: the route's policy, then `*`'s, then the method's own,
    /// each field of a later one over the earlier.
    pub fn policy(&self, route: Option<&Route>, method: &str) -> CallPolicy {
        let mut policy = route.map(|r| r.policy.clone()).unwrap_or_default();
        for key in ["*", method] {
            if let Some(over) = self.methods.get(key) {
                policy = policy.overridden_by(over);
            }
        }
        policy
    }
}

fn check_lists(at: &str, lists: &[(&str, usize)], problems: &mut Vec<Problem>) {
    for (field, count) in lists {
        if *count > MAX_LIST {
            let problem = format!("{count} entries, over the limit of {MAX_LIST}");
            problems.push(Problem::new(format!("{at}.{field}"), problem));
        }
    }
}

impl CallPolicy {
    /// This policy with every field `over` sets taken from `over`.
    pub fn overridden_by(&self, over: &CallPolicy) -> CallPolicy {
        CallPolicy {
            deadline_ms: over.deadline_ms.or(self.deadline_ms),
            retry: over.retry.clone().or_else(|| self.retry.clone()),
            hedge: over.hedge.clone().or_else(|| self.hedge.clone()),
            balance: over.balance.clone().or_else(|| self.balance.clone()),
            outliers: over.outliers.clone().or_else(|| self.outliers.clone()),
            fault: over.fault.clone().or_else(|| self.fault.clone()),
        }
    }
}

/// `text`, escaped and cut to 64 characters, to quote in an error.
fn shown(text: &str) -> String {
    crate::text::quoted(text, 64)
}

/// Whether `name` may name `what` (a service, a method): 1 to 128 letters, digits and `_.-`.
fn check_name(name: &str, what: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    if name.is_empty() || name.len() > 128 || !name.chars().all(fine) {
        return Err(format!(
            "{what} is named by 1 to 128 letters, digits and `_.-`, found `{}`",
            shown(name)
        ));
    }
    Ok(())
}

/// A method by name (`add`), or every method (`*`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MethodPattern(Option<String>);

impl MethodPattern {
    /// Whether `method` is one it names.
    pub fn matches(&self, method: &str) -> bool {
        self.0.as_deref().is_none_or(|m| m == method)
    }
}

impl FromStr for MethodPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<MethodPattern, String> {
        if text == "*" {
            return Ok(MethodPattern(None));
        }
        let fine = |c: char| c.is_ascii_alphanumeric() || c == '_';
        if text.is_empty() || text.len() > 128 || !text.chars().all(fine) {
            return Err(format!(
                "a method (or `*`) is named by 1 to 128 letters, digits and `_`, found `{}`",
                shown(text)
            ));
        }
        Ok(MethodPattern(Some(text.to_owned())))
    }
}

impl fmt::Display for MethodPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_deref().unwrap_or("*"))
    }
}

/// A caller identity as rules name it: `token:NAME` (a bearer token the server knows by that name),
/// `mtls:NAME` (a verified client certificate's name), `jwt:SUBJECT` (a verified JWT's subject); `KIND:*` for
/// any of a kind, and `*` for any caller, even one without an identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CallerPattern(String);

/// The kinds of caller identity.
const CALLER_KINDS: [&str; 3] = ["token", "mtls", "jwt"];

impl CallerPattern {
    /// Whether a caller with `identities` (none: a caller without an identity) is one it names: `*` names every
    /// caller.
    pub fn admits(&self, identities: &[&str]) -> bool {
        self.0 == "*" || identities.iter().any(|i| self.matches(i))
    }

    /// Whether `identity` (`token:ops`) is one it names.
    pub fn matches(&self, identity: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => identity.starts_with(prefix),
            None => self.0 == identity,
        }
    }
}

impl FromStr for CallerPattern {
    type Err = String;

    fn from_str(text: &str) -> Result<CallerPattern, String> {
        if text == "*" {
            return Ok(CallerPattern(text.to_owned()));
        }
        let expected = || {
            format!(
                "expected `*` or KIND:NAME with KIND one of token, mtls, jwt (NAME 1 to 253 visible characters, or `*`), found `{}`",
                shown(text)
            )
        };
        let (kind, name) = text.split_once(':').ok_or_else(expected)?;
        let visible = |c: char| c.is_ascii_graphic();
        if !CALLER_KINDS.contains(&kind)
            || name.is_empty()
            || name.len() > 253
            || !name.chars().all(visible)
            || (name.contains('*') && name != "*")
        {
            return Err(expected());
        }
        Ok(CallerPattern(text.to_owned()))
    }
}

impl fmt::Display for CallerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A share from 0 to 100.
#[derive(Clone, Copy, Debug, PartialEq, PartialOrd)]
pub struct Percent(f64);

impl Percent {
    /// The share, from 0 to 100.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Percent {
    type Error = String;

    fn try_from(value: f64) -> Result<Percent, String> {
        if (0.0..=100.0).contains(&value) {
            Ok(Percent(value))
        } else {
            Err(format!(
                "expected a percentage from 0 to 100, found {value}"
            ))
        }
    }
}

/// A status by name (`unavailable`), as [`Status`]'s `FromStr` reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusName(pub Status);

/// Serialized as their text, read back through `FromStr` (so that a reader's errors name what was expected).
macro_rules! as_text {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$t, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}

as_text!(MethodPattern, CallerPattern);

impl Serialize for StatusName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for StatusName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StatusName, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map(StatusName)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(self.0)
    }
}

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Percent, D::Error> {
        Percent::try_from(f64::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
