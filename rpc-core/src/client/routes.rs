//! A balanced client's routes: the [`Rules`] it follows (watched, so that a change applies to the next call),
//! and for each call the subset of instances its route sends it to, drawn by the route's weights. For each
//! subset it keeps the instances outside it, computed once per change of the instances or of the rules, so that
//! a routed call only hands the policy a list to skip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::balance::{CallInfo, Instance, Subset};
use crate::rules::{CallSite, Rules};

/// Rules as a balanced client receives them: the latest, or none. A fixed document is
/// `tokio::sync::watch::channel(Some(Arc::new(rules))).1`.
pub type RulesFeed = watch::Receiver<Option<Arc<Rules>>>;

/// Where one call goes.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The route that took it.
    pub(crate) route: String,
    /// The subset it goes to.
    pub(crate) subset: Subset,
    /// The instances outside that subset.
    pub(crate) outside: Arc<[Arc<str>]>,
}

/// The rules and what they make of the current instances.
pub(crate) struct Routes {
    feed: Mutex<RulesFeed>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rules: Option<Arc<Rules>>,
    instances: Vec<Instance>,
    /// The instances outside each subset drawn so far.
    outside: HashMap<Subset, Arc<[Arc<str>]>>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl Routes {
    pub(crate) fn new(mut feed: RulesFeed, instances: Vec<Instance>) -> Routes {
        let rules = feed.borrow_and_update().clone();
        Routes {
            feed: Mutex::new(feed),
            state: Mutex::new(State {
                rules,
                instances,
                outside: HashMap::new(),
            }),
        }
    }

    /// The instances changed.
    pub(crate) fn instances(&self, instances: &[Instance]) {
        let mut state = crate::sync::lock(&self.state);
        state.instances = instances.to_vec();
        state.outside.clear();
    }

    /// Where `call` goes, if a route with subsets takes it; `None` sends it to any instance.
    pub(crate) fn route(&self, call: &CallInfo<'_>) -> Option<Routed> {
        let changed = {
            let mut feed = crate::sync::lock(&self.feed);
            match feed.has_changed() {
                Ok(true) => Some(feed.borrow_and_update().clone()),
                _ => None,
            }
        };
        let mut state = crate::sync::lock(&self.state);
        if let Some(rules) = changed {
            state.rules = rules;
            state.outside.clear();
        }
        let rules = Arc::clone(state.rules.as_ref()?);
        let site = CallSite {
            method: call.method.name,
            metadata: call.metadata,
            callers: &[],
        };
        let route = rules.route(&site)?;
        let subset = route.subset(crate::random::fraction())?.clone();
        let State {
            instances, outside, ..
        } = &mut *state;
        let outside = Arc::clone(outside.entry(subset.clone()).or_insert_with(|| {
            instances
                .iter()
                .filter(|i| !subset.holds(i))
                .map(|i| Arc::clone(&i.address))
                .collect()
        }));
        Some(Routed {
            route: route.name.clone(),
            subset,
            outside,
        })
    }
}
