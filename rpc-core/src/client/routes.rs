//! A balanced client's routes: the [`Rules`] it follows (watched, so that a change applies to the next call),
//! and for each call the subset of instances its route sends it to, drawn by the route's weights, and the
//! policy and faults of its route and method. For each subset it keeps the instances outside it, and for each
//! route and method the merged policy and fault, computed once per change of the instances or of the rules, so
//! that a routed call only hands the balancing policy a list to skip.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::balance::{CallInfo, Instance, Subset};
use crate::fault::Fault;
use crate::rules::{CallPolicy, CallSite, Rules};

/// Rules as a balanced client receives them: the latest, or none. A fixed document is
/// `tokio::sync::watch::channel(Some(Arc::new(rules))).1`.
pub type RulesFeed = watch::Receiver<Option<Arc<Rules>>>;

/// Where one call goes, and what is injected into it.
#[derive(Debug)]
pub(crate) struct Routed {
    /// The route that took it (`default` if none did).
    pub(crate) route: String,
    /// The subset it goes to, if its route names one.
    pub(crate) subset: Option<Subset>,
    /// The instances outside that subset.
    pub(crate) outside: Arc<[Arc<str>]>,
    /// The faults its policies inject, if any.
    pub(crate) fault: Option<Arc<Fault>>,
    /// Its route's policy, with its method's over it, if it sets a deadline or retries.
    pub(crate) policy: Option<Arc<CallPolicy>>,
}

/// What a route and method's policies make of a call: the policy (if it sets a deadline or retries) and the
/// fault (if it injects one).
type Policies = (Option<Arc<CallPolicy>>, Option<Arc<Fault>>);

/// The rules and what they make of the current instances.
pub(crate) struct Routes {
    feed: Mutex<RulesFeed>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    rules: Option<Arc<Rules>>,
    /// The instances outside each subset drawn so far (computed from the balancer's instances).
    outside: HashMap<Subset, Arc<[Arc<str>]>>,
    /// The fault of each route (by its place; `None`: no route took the call) and method seen so far.
    policies: HashMap<(Option<usize>, &'static str), Policies>,
}

impl std::fmt::Debug for Routes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routes").finish_non_exhaustive()
    }
}

impl Routes {
    pub(crate) fn new(mut feed: RulesFeed) -> Routes {
        let rules = feed.borrow_and_update().clone();
        Routes {
            feed: Mutex::new(feed),
            state: Mutex::new(State {
                rules,
                outside: HashMap::new(),
                policies: HashMap::new(),
            }),
        }
    }

    /// The instances changed: the subsets' outsides are computed again.
    pub(crate) fn instances_changed(&self) {
        crate::sync::lock(&self.state).outside.clear();
    }

    /// Where `call` goes and what is injected into it; `None`: any instance, nothing injected. `instances` gives
    /// the balancer's instances, asked for only when a subset's outside is not known yet.
    pub(crate) fn route(
        &self,
        call: &CallInfo<'_>,
        instances: impl FnOnce() -> Vec<Instance>,
    ) -> Option<Routed> {
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
            state.policies.clear();
        }
        let rules = Arc::clone(state.rules.as_ref()?);
        let site = CallSite {
            method: call.method.name,
            metadata: call.metadata,
            callers: &[],
        };
        let at = rules.routes.iter().position(|r| r.takes(&site));
        let route = at.map(|i| &rules.routes[i]);
        let name = route.map_or("default", |r| r.name.as_str());
        let (policy, fault) = state
            .policies
            .entry((at, call.method.name))
            .or_insert_with(|| {
                let policy = rules.policy(route, call.method.name);
                let fault = policy
                    .fault
                    .as_ref()
                    .map(|f| f.fault(name))
                    .filter(|f| f.delay.is_some() || f.abort.is_some())
                    .map(Arc::new);
                let policy = (policy.deadline_ms.is_some() || policy.retry.is_some())
                    .then(|| Arc::new(policy));
                (policy, fault)
            })
            .clone();
        let subset = route
            .and_then(|r| r.subset(crate::random::fraction()))
            .cloned();
        if subset.is_none() && fault.is_none() && policy.is_none() {
            return None;
        }
        let outside = match &subset {
            None => Arc::from([]),
            Some(subset) => Arc::clone(state.outside.entry(subset.clone()).or_insert_with(|| {
                instances()
                    .iter()
                    .filter(|i| !subset.holds(i))
                    .map(|i| Arc::clone(&i.address))
                    .collect()
            })),
        };
        Some(Routed {
            route: name.to_owned(),
            subset,
            outside,
            fault,
            policy,
        })
    }
}
