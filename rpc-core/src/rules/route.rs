//! Routes: which calls a route takes ([`Match`]: methods, metadata entries matched exactly, by prefix or by
//! regular expression, caller identities) and where it sends them ([`Split`]: subsets of instances with
//! weights). The first route that matches a call takes it.

use std::sync::Arc;

use rpc_codec::Metadata;
use serde::{Deserialize, Serialize};

use super::{CallPolicy, CallerPattern, MethodPattern, Problem};
use crate::balance::Subset;

/// The longest regular expression a metadata match takes: 256 bytes (its compiled size is bounded too).
pub const MAX_REGEX_LEN: usize = 256;

/// The largest compiled regular expression: 64 KiB.
const MAX_REGEX_SIZE: usize = 64 * 1024;

/// A route: the calls it takes, and the subsets it sends them to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Its name, for errors, logs and the dashboard.
    pub name: String,
    /// Which calls it takes; a route without conditions takes every call (a default route, last).
    #[serde(default, rename = "match")]
    pub matches: Match,
    /// Where its calls go: subsets with weights (a call picks one in proportion); empty: every instance.
    #[serde(default)]
    pub to: Vec<Split>,
    /// How its calls are made (a method's own policy overrides it field by field).
    #[serde(default)]
    pub policy: CallPolicy,
}

/// The calls a route takes: all of its conditions hold (each one left out holds for every call).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    /// The call's method is one of these (`add`, or `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<MethodPattern>,
    /// Each of these metadata entries is present and its value matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metadata: Vec<MetadataMatch>,
    /// The caller is one of these identities (`token:NAME`, `mtls:NAME`, `jwt:SUBJECT`, or `*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<CallerPattern>,
}

/// One metadata entry a route looks for, and how its value must match (exactly one of the three).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetadataMatch {
    /// The entry's key.
    pub key: String,
    /// The value is exactly this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    /// The value starts with this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// The value matches this regular expression (anchored at both ends: `v[0-9]+` does not match `xv1`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(skip)]
    compiled: Option<Arc<regex_lite::Regex>>,
}

/// A share of a route's calls, to a subset of the instances.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Split {
    /// The instances (`version=v2`); empty: every instance.
    #[serde(default)]
    pub subset: Subset,
    /// Its share, relative to the route's other splits.
    pub weight: u32,
}

/// What a route looks at in a call.
#[derive(Clone, Copy, Debug)]
pub struct CallSite<'a> {
    /// The method's name (`add`).
    pub method: &'a str,
    /// The call's metadata.
    pub metadata: &'a Metadata,
    /// The caller's identities (`token:ops`, `mtls:calc-client`), as the server knows them; none on a client.
    pub callers: &'a [&'a str],
}

impl Route {
    /// Whether the route takes `call`.
    pub fn takes(&self, call: &CallSite<'_>) -> bool {
        let m = &self.matches;
        (m.methods.is_empty() || m.methods.iter().any(|p| p.matches(call.method)))
            && m.metadata.iter().all(|e| e.matches(call.metadata))
            && (m.callers.is_empty()
                || m.callers
                    .iter()
                    .any(|p| call.callers.iter().any(|c| p.matches(c))))
    }

    /// The subset of the split that `draw` (uniform in `0..1`) falls in, or `None` to call any instance.
    pub fn subset(&self, draw: f64) -> Option<&Subset> {
        let total: u64 = self.to.iter().map(|s| u64::from(s.weight)).sum();
        if total == 0 {
            return None;
        }
        let mut point = (draw.clamp(0.0, 1.0) * total as f64) as u64;
        for split in &self.to {
            let weight = u64::from(split.weight);
            if point < weight {
                return Some(&split.subset);
            }
            point -= weight;
        }
        self.to
            .iter()
            .rev()
            .find(|s| s.weight > 0)
            .map(|s| &s.subset)
    }

    /// Whether it has no condition: it takes every call.
    pub fn is_default(&self) -> bool {
        let m = &self.matches;
        m.methods.is_empty() && m.metadata.is_empty() && m.callers.is_empty()
    }

    /// Checks the route, whose field path is `at`: its regular expressions compile, its splits have weight.
    pub(super) fn check(&mut self, at: &str, problems: &mut Vec<Problem>) {
        if self.name.trim().is_empty() {
            problems.push(Problem::new(format!("{at}.name"), "a route needs a name"));
        }
        for (i, entry) in self.matches.metadata.iter_mut().enumerate() {
            entry.check(&format!("{at}.match.metadata[{i}]"), problems);
        }
        self.policy.check(&format!("{at}.policy"), problems);
        if !self.to.is_empty() && self.to.iter().all(|s| s.weight == 0) {
            problems.push(Problem::new(
                format!("{at}.to"),
                "every split has weight 0: the route could send a call nowhere",
            ));
        }
    }
}

impl MetadataMatch {
    /// A match of `key`'s value, exactly `value`.
    pub fn exact(key: &str, value: &str) -> MetadataMatch {
        MetadataMatch {
            key: key.to_owned(),
            exact: Some(value.to_owned()),
            prefix: None,
            regex: None,
            compiled: None,
        }
    }

    /// Whether `metadata` holds the entry, with a value that matches.
    pub fn matches(&self, metadata: &Metadata) -> bool {
        let Some(value) = metadata.get_str(&self.key) else {
            return false;
        };
        if let Some(exact) = &self.exact {
            return value == exact;
        }
        if let Some(prefix) = &self.prefix {
            return value.starts_with(prefix.as_str());
        }
        match &self.compiled {
            Some(regex) => regex.is_match(value),
            // Not checked (so not compiled): it matches nothing rather than everything.
            None => false,
        }
    }

    fn check(&mut self, at: &str, problems: &mut Vec<Problem>) {
        if let Err(e) = rpc_codec::Metadata::from_pairs([(self.key.as_str(), "")]) {
            problems.push(Problem::new(format!("{at}.key"), e.to_string()));
        }
        let given = [
            self.exact.is_some(),
            self.prefix.is_some(),
            self.regex.is_some(),
        ];
        if given.iter().filter(|g| **g).count() != 1 {
            problems.push(Problem::new(
                at.to_owned(),
                "expected exactly one of `exact`, `prefix` and `regex`",
            ));
            return;
        }
        if let Some(pattern) = &self.regex {
            if pattern.len() > MAX_REGEX_LEN {
                let problem = format!(
                    "a regular expression of {} bytes, over the limit of {MAX_REGEX_LEN}",
                    pattern.len()
                );
                problems.push(Problem::new(format!("{at}.regex"), problem));
                return;
            }
            let anchored = format!("^(?:{pattern})$");
            match regex_lite::RegexBuilder::new(&anchored)
                .size_limit(MAX_REGEX_SIZE)
                .build()
            {
                Ok(regex) => self.compiled = Some(Arc::new(regex)),
                Err(e) => problems.push(Problem::new(format!("{at}.regex"), e.to_string())),
            }
        }
    }
}

/// Equal when they are written the same (the compiled expression follows from the text).
impl PartialEq for MetadataMatch {
    fn eq(&self, other: &MetadataMatch) -> bool {
        (&self.key, &self.exact, &self.prefix, &self.regex)
            == (&other.key, &other.exact, &other.prefix, &other.regex)
    }
}
