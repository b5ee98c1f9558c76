//! [`Subset`]: a selection of a service's instances by their labels (`version=v2`, `zone=a,version=v2`), and
//! [`InSubset`], a [`Discover`] narrowed to it, so that a client calls only the instances of one version or
//! zone. An instance is in the subset when every `key=value` of the subset is among its labels; the empty
//! subset holds every instance.
//!
//! ```
//! use rpc_core::balance::{Instance, Subset};
//!
//! let v2: Subset = "version=v2".parse()?;
//! let canary = Instance::new("127.0.0.1:7001", 1).with_labels([("version", "v2"), ("zone", "a")]);
//! let stable = Instance::new("127.0.0.1:7002", 1).with_labels([("version", "v1")]);
//! assert!(v2.holds(&canary));
//! assert!(!v2.holds(&stable));
//! assert_eq!(
//!     "version".parse::<Subset>().unwrap_err().to_string(),
//!     "subset `version`: expected KEY=VALUE pairs separated by commas, found `version`"
//! );
//! # Ok::<(), rpc_core::balance::SubsetError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use super::{Discover, Feed, Instance, Policy};

/// An instance's labels (`version` -> `v2`, say), as its registration declares them.
pub type Labels = Arc<BTreeMap<String, String>>;

/// The longest subset text [`Subset::from_str`] reads: 1 KiB.
pub const MAX_SUBSET_LEN: usize = 1024;

/// Instances selected by labels: every pair must be among an instance's labels.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Subset {
    /// Sorted by key; a key at most once.
    pairs: Vec<(String, String)>,
}

/// Why a subset's text was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("subset `{text}`: {problem}")]
pub struct SubsetError {
    /// The text, escaped and cut to 64 characters.
    text: String,
    problem: String,
}

impl SubsetError {
    fn new(text: &str, problem: String) -> SubsetError {
        SubsetError {
            text: shown(text),
            problem,
        }
    }
}

impl Subset {
    /// The subset of instances labelled `key=value` (and, with [`Subset::and`], more).
    pub fn with(key: &str, value: &str) -> Subset {
        Subset::default().and(key, value)
    }

    /// This subset, narrowed to instances also labelled `key=value` (replacing any other value of `key`).
    pub fn and(mut self, key: &str, value: &str) -> Subset {
        match self.pairs.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            Ok(at) => self.pairs[at].1 = value.to_owned(),
            Err(at) => self.pairs.insert(at, (key.to_owned(), value.to_owned())),
        }
        self
    }

    /// Whether `instance` is in the subset.
    pub fn holds(&self, instance: &Instance) -> bool {
        self.pairs
            .iter()
            .all(|(k, v)| instance.labels.get(k).is_some_and(|have| have == v))
    }

    /// Whether every instance is in it.
    pub fn is_everything(&self) -> bool {
        self.pairs.is_empty()
    }

    /// The pairs, by key.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `discovery`, narrowed to this subset: its feeds hold only the instances in it.
    pub fn of<D: Discover>(self, discovery: D) -> InSubset<D> {
        InSubset {
            discovery,
            subset: self,
        }
    }
}

/// `KEY=VALUE` pairs separated by commas; a key is letters, digits and `._-/`, a value any text without `,`
/// or `=`; spaces around either are dropped.
impl FromStr for Subset {
    type Err = SubsetError;

    fn from_str(text: &str) -> Result<Subset, SubsetError> {
        if text.len() > MAX_SUBSET_LEN {
            let problem = format!("{} bytes, over the limit of {MAX_SUBSET_LEN}", text.len());
            return Err(SubsetError::new(text, problem));
        }
        let mut subset = Subset::default();
        if text.trim().is_empty() {
            return Ok(subset);
        }
        for pair in text.split(',') {
            let Some((key, value)) = pair.split_once('=') else {
                let problem = format!(
                    "expected KEY=VALUE pairs separated by commas, found `{}`",
                    shown(pair.trim())
                );
                return Err(SubsetError::new(text, problem));
            };
            let (key, value) = (key.trim(), value.trim());
            if let Err(problem) = check_key(key) {
                return Err(SubsetError::new(text, problem));
            }
            if value.contains('=') {
                let problem = format!("the value of `{key}` holds a `=`");
                return Err(SubsetError::new(text, problem));
            }
            if subset.pairs().any(|(k, _)| k == key) {
                let problem = format!("`{key}` is named twice");
                return Err(SubsetError::new(text, problem));
            }
            subset = subset.and(key, value);
        }
        Ok(subset)
    }
}

/// Serialized as its text (`version=v2,zone=a`), read back through [`Subset::from_str`].
impl serde::Serialize for Subset {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Subset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Subset, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Subset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (k, v)) in self.pairs().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{k}={v}")?;
        }
        Ok(())
    }
}

/// Whether `key` may name a label: 1 to 63 letters, digits and `._-/`. The error says what was found.
pub fn check_key(key: &str) -> Result<(), String> {
    let fine = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/');
    if key.is_empty() {
        return Err("a label's key is empty".to_owned());
    }
    if key.len() > 63 || !key.chars().all(fine) {
        return Err(format!(
            "a label's key is 1 to 63 letters, digits and `._-/`, found `{}`",
            shown(key)
        ));
    }
    Ok(())
}

/// `text`, escaped and cut to 64 characters, to quote in an error.
fn shown(text: &str) -> String {
    crate::text::quoted(text, 64)
}

/// A [`Discover`] narrowed to a [`Subset`]: made by [`Subset::of`].
#[derive(Clone, Debug)]
pub struct InSubset<D> {
    discovery: D,
    subset: Subset,
}

impl<D: Discover> Discover for InSubset<D> {
    fn feed(&self, service: &str) -> Box<dyn Feed> {
        Box::new(Narrowed {
            feed: self.discovery.feed(service),
            subset: self.subset.clone(),
        })
    }

    fn default_policy(&self, service: &str) -> Arc<dyn Policy> {
        self.discovery.default_policy(service)
    }

    fn rules(&self, service: &str) -> Option<crate::client::RulesFeed> {
        self.discovery.rules(service)
    }
}

/// A feed's instances in a subset.
struct Narrowed {
    feed: Box<dyn Feed>,
    subset: Subset,
}

impl Feed for Narrowed {
    fn has_changed(&self) -> bool {
        self.feed.has_changed()
    }

    fn current(&mut self) -> Vec<Instance> {
        let mut instances = self.feed.current();
        instances.retain(|i| self.subset.holds(i));
        instances
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_parse_sorted_and_print_back() {
        let subset: Subset = " zone = a , version=v2".parse().unwrap();
        assert_eq!(subset.to_string(), "version=v2,zone=a");
        assert_eq!(subset, Subset::with("zone", "a").and("version", "v2"));
        assert!("".parse::<Subset>().unwrap().is_everything());
    }

    #[test]
    fn bad_text_is_refused_with_what_was_found() {
        let error = |text: &str| text.parse::<Subset>().unwrap_err().to_string();
        assert_eq!(
            error("version=v2,zone"),
            "subset `version=v2,zone`: expected KEY=VALUE pairs separated by commas, found `zone`"
        );
        assert_eq!(error("a=1,a=2"), "subset `a=1,a=2`: `a` is named twice");
        assert_eq!(error("=v2"), "subset `=v2`: a label's key is empty");
        assert_eq!(
            error("ver sion=2"),
            "subset `ver sion=2`: a label's key is 1 to 63 letters, digits and `._-/`, found `ver sion`"
        );
        assert_eq!(
            error("a=b=c"),
            "subset `a=b=c`: the value of `a` holds a `=`"
        );
        let hostile = format!("\u{1b}[31m{}", "x".repeat(2000));
        let message = error(&hostile);
        assert!(message.len() < 200, "{message}");
        assert!(!message.contains('\u{1b}'), "{message}");
    }

    #[test]
    fn an_instance_is_in_a_subset_when_it_has_every_pair() {
        let instance = Instance::new("a", 1).with_labels([("version", "v2"), ("zone", "a")]);
        assert!(Subset::default().holds(&instance));
        assert!(Subset::with("version", "v2").holds(&instance));
        assert!(
            Subset::with("version", "v2")
                .and("zone", "a")
                .holds(&instance)
        );
        assert!(
            !Subset::with("version", "v2")
                .and("zone", "b")
                .holds(&instance)
        );
        assert!(!Subset::with("region", "eu").holds(&instance));
        assert!(!Subset::with("version", "v2").holds(&Instance::new("b", 1)));
    }

    #[test]
    fn a_narrowed_feed_keeps_only_the_subset() {
        let mut feed = Narrowed {
            feed: Box::new(vec![
                Instance::new("a", 1).with_labels([("version", "v1")]),
                Instance::new("b", 1).with_labels([("version", "v2")]),
                Instance::new("c", 1),
            ]),
            subset: Subset::with("version", "v2"),
        };
        let addresses: Vec<String> = feed
            .current()
            .iter()
            .map(|i| i.address.to_string())
            .collect();
        assert_eq!(addresses, ["b"]);
    }
}
