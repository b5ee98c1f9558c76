//! A balanced client's routes: the [`Rules`] it follows (watched, so that a change applies to the next call),
//! and for each call the subset of instances its route sends it to, drawn by the route's weights, and what the
//! policy of its route and method sets ([`Applied`]): deadline, retries, a retry budget, hedging, a balancing
//! policy, outlier detection, faults. For each subset it keeps the instances outside it, computed once per
//! change of the instances or of the rules, so that a routed call only hands the balancing policy a list to
//! skip; for each route and method, what its policy sets, made once per change of the rules and kept up to
//! date with the instances (a balancing policy and a detector of the route's own hear of them as the client's
//! do).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use tokio::time::Instant;

use super::ClientConfig;
use super::layer::budget::{RetryBudget, RetryBudgetConfig};
use super::layer::hedge::Hedging;
use crate::balance::{CallInfo, Instance, Outliers, Policy, Subset};
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
    /// What its route and method's policy sets, if it sets anything.
    pub(crate) applied: Option<Arc<Applied>>,
}

/// What the policy of a route and method (the route's, with the method's over it) sets for their calls, in
/// place of the client's own; each part is `None` where the policy leaves the client's.
pub(crate) struct Applied {
    /// The policy, for its deadline and retries.
    pub(crate) policy: CallPolicy,
    /// The faults it injects.
    pub(crate) fault: Option<Fault>,
    /// The retry budget of these calls, when the policy sets a share (`retry.budget_percent`).
    pub(crate) budget: Option<RetryBudget>,
    /// Their hedging, with its own latencies.
    pub(crate) hedging: Option<Hedging>,
    /// Their balancing policy, over the client's instances.
    pub(crate) balance: Option<Arc<dyn Policy>>,
    /// Their outlier detector: it steers these calls only, and closes no connection.
    pub(crate) outliers: Option<Outliers>,
}

impl std::fmt::Debug for Applied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Applied")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Applied {
    /// What `policy` sets for the calls of the route named `route`, over the client's `config`, with the
    /// balancing policy and detector told of the client's `instances` (asked for only if the policy sets
    /// either); `None` if it sets nothing.
    fn new(
        policy: CallPolicy,
        route: &str,
        config: &ClientConfig,
        instances: &mut dyn FnMut() -> Vec<Instance>,
    ) -> Option<Applied> {
        let instances = match policy.balance.is_some() || policy.outliers.is_some() {
            true => instances(),
            false => Vec::new(),
        };
        let fault = policy
            .fault
            .as_ref()
            .map(|f| f.fault(route))
            .filter(|f| f.delay.is_some() || f.abort.is_some());
        let budget = policy
            .retry
            .as_ref()
            .and_then(|r| r.budget_percent)
            .map(|percent| {
                RetryBudget::new(RetryBudgetConfig {
                    ratio: percent.get() / 100.0,
                    ..config.retry_budget.clone()
                })
            });
        let hedging = policy
            .hedge
            .as_ref()
            .map(|rule| Hedging::new(rule.over(&config.hedge.clone().unwrap_or_default())));
        let balance = policy.balance.as_ref().map(|rule| {
            let balance = rule.policy();
            balance.update(&instances);
            balance
        });
        let outliers = policy.outliers.as_ref().map(|rule| {
            let outliers = Outliers::new(rule.over(&config.outliers));
            outliers.update(&instances);
            outliers
        });
        let sets = policy.deadline_ms.is_some()
            || policy.retry.is_some()
            || fault.is_some()
            || hedging.is_some()
            || balance.is_some()
            || outliers.is_some();
        sets.then_some(Applied {
            policy,
            fault,
            budget,
            hedging,
            balance,
            outliers,
        })
    }
}

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
    /// What the policy of each route (by its place; `None`: no route took the call) and method seen so far
    /// sets.
    applied: HashMap<(Option<usize>, &'static str), Option<Arc<Applied>>>,
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
                applied: HashMap::new(),
            }),
        }
    }

    /// The instances changed: the subsets' outsides are computed again, and the routes' own balancing policies
    /// and detectors hear of the change.
    pub(crate) fn instances_changed(&self, instances: &[Instance]) {
        let mut state = crate::sync::lock(&self.state);
        state.outside.clear();
        for applied in state.applied.values().flatten() {
            if let Some(balance) = &applied.balance {
                balance.update(instances);
            }
            if let Some(outliers) = &applied.outliers {
                outliers.update(instances);
            }
        }
    }

    /// The periodic checks of the routes' own detectors (stalls, recoveries, failure rates).
    pub(crate) fn tick(&self, now: Instant) {
        let detectors: Vec<Arc<Applied>> = crate::sync::lock(&self.state)
            .applied
            .values()
            .flatten()
            .filter(|a| a.outliers.is_some())
            .cloned()
            .collect();
        for applied in detectors {
            if let Some(outliers) = &applied.outliers {
                // An ejection only steers the route's calls: no connection is closed.
                let _ = outliers.tick(now);
            }
        }
    }

    /// Where `call` goes and what its policy sets; `None`: any instance, the client's own settings. `instances`
    /// gives the balancer's instances, asked for only when a subset's outside or a route's policy is new.
    pub(crate) fn route(
        &self,
        call: &CallInfo<'_>,
        config: &ClientConfig,
        instances: impl FnOnce() -> Vec<Instance>,
    ) -> Option<Routed> {
        let mut instances = Some(instances);
        let mut got: Option<Vec<Instance>> = None;
        let mut instances = move || -> Vec<Instance> {
            if let Some(list) = &got {
                return list.clone();
            }
            let list = instances.take().map(|f| f()).unwrap_or_default();
            got = Some(list.clone());
            list
        };
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
            state.applied.clear();
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
        let applied = state
            .applied
            .entry((at, call.method.name))
            .or_insert_with(|| {
                let policy = rules.policy(route, call.method.name);
                Applied::new(policy, name, config, &mut instances).map(Arc::new)
            })
            .clone();
        let subset = route
            .and_then(|r| r.subset(crate::random::fraction()))
            .cloned();
        if subset.is_none() && applied.is_none() {
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
            applied,
        })
    }
}
