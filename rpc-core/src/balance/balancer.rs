//! [`Balancer`]: a [`Policy`] and the [`Feed`] that keeps its instances current, as a balanced client uses them;
//! and [`Picked`], the guard of one pick, which reports the call's outcome and latency to the policy when the
//! call ends, or `Cancelled` when it is dropped first.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{CallInfo, Discover, Feed, Instance, Outcome, Policy};

/// A policy over the instances a feed keeps current.
pub struct Balancer {
    policy: Arc<dyn Policy>,
    /// Looked at before each pick without waiting: a pick that finds another one refreshing goes on with the
    /// instances the policy has.
    feed: Mutex<Box<dyn Feed>>,
    /// The instances last taken from the feed.
    instances: Mutex<Vec<Instance>>,
    /// The rules whose routes send calls to subsets, if any.
    rules: Option<crate::client::RulesFeed>,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer").finish_non_exhaustive()
    }
}

impl Balancer {
    /// `policy` over the instances of `feed` (a `Vec<Instance>` for a fixed list).
    pub fn new(policy: impl Policy, feed: impl Feed) -> Balancer {
        Balancer::from_parts(Arc::new(policy), Box::new(feed))
    }

    /// `policy` over the instances of `feed`, both already boxed.
    pub fn from_parts(policy: Arc<dyn Policy>, mut feed: Box<dyn Feed>) -> Balancer {
        let instances = feed.current();
        policy.update(&instances);
        Balancer {
            policy,
            feed: Mutex::new(feed),
            instances: Mutex::new(instances),
            rules: None,
        }
    }

    /// The balancer, following the routes of `rules`: a call that a route takes goes to an instance of the
    /// subset the route draws for it (`rpc_core::rules`); a change of the rules applies to the next call.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use rpc_core::balance::{Balancer, Instance, PeakEwma};
    /// use rpc_core::rules::Rules;
    ///
    /// let rules: Rules = serde_json::from_str(
    ///     r#"{"service": "Calc", "routes": [{"name": "v2", "to": [{"subset": "version=v2", "weight": 1}]}]}"#,
    /// )?;
    /// let (_updates, rules) = tokio::sync::watch::channel(Some(Arc::new(rules)));
    /// let instances = vec![
    ///     Instance::new("127.0.0.1:7001", 1).with_labels([("version", "v1")]),
    ///     Instance::new("127.0.0.1:7002", 1).with_labels([("version", "v2")]),
    /// ];
    /// let balancer = Balancer::new(PeakEwma::default(), instances).with_rules(rules);
    /// # let _ = balancer;
    /// # Ok::<(), serde_json::Error>(())
    /// ```
    pub fn with_rules(self, rules: crate::client::RulesFeed) -> Balancer {
        Balancer {
            rules: Some(rules),
            ..self
        }
    }

    /// The rules it follows, if any.
    pub(crate) fn rules(&self) -> Option<crate::client::RulesFeed> {
        self.rules.clone()
    }

    /// The instances the policy has now.
    pub fn instances(&self) -> Vec<Instance> {
        crate::sync::lock(&self.instances).clone()
    }

    /// Hands the policy the feed's instances if they changed, and returns them then. A refresh that finds
    /// another one under way does nothing.
    pub(crate) fn refresh(&self) -> Option<Vec<Instance>> {
        let mut feed = self.feed.try_lock().ok()?;
        if !feed.has_changed() {
            return None;
        }
        let instances = feed.current();
        self.policy.update(&instances);
        crate::sync::lock(&self.instances).clone_from(&instances);
        Some(instances)
    }

    /// The instances of `service` that `discovery` finds, under the policy it names for them, following the
    /// rules it has for them, if any.
    pub fn discovered(discovery: impl Discover, service: &str) -> Balancer {
        let policy = discovery.default_policy(service);
        Balancer::discovered_with(discovery, service, policy)
    }

    /// `policy` over the instances of `service` that `discovery` finds, following the rules it has for them,
    /// if any.
    pub fn discovered_with(
        discovery: impl Discover,
        service: &str,
        policy: Arc<dyn Policy>,
    ) -> Balancer {
        let balancer = Balancer::from_parts(policy, discovery.feed(service));
        match discovery.rules(service) {
            Some(rules) => balancer.with_rules(rules),
            None => balancer,
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Arc<dyn Policy> {
        &self.policy
    }

    /// Picks an instance for `call`, not one in `skip`, after handing the policy any change of the feed. The
    /// guard reports to the policy once: [`Picked::finish`], or `Cancelled` if it is dropped first.
    pub fn pick(&self, call: &CallInfo<'_>, skip: &[Arc<str>]) -> Option<Picked<'_>> {
        self.refresh();
        self.pick_at(call, skip, Instant::now())
    }

    /// Picks as [`Balancer::pick`] does at `now`, without looking at the feed first (the caller just did).
    pub(crate) fn pick_at(
        &self,
        call: &CallInfo<'_>,
        skip: &[Arc<str>],
        now: Instant,
    ) -> Option<Picked<'_>> {
        Picked::by(&*self.policy, call, skip, now)
    }
}

/// One pick: the instance's address, and the report owed to the policy.
pub struct Picked<'a> {
    policy: &'a dyn Policy,
    address: Arc<str>,
    picked_at: Instant,
    reported: bool,
}

impl std::fmt::Debug for Picked<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Picked")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl<'a> Picked<'a> {
    /// What `policy` picks for `call` at `now`, not one of `skip`, with the guard that reports to it.
    pub(crate) fn by(
        policy: &'a dyn Policy,
        call: &CallInfo<'_>,
        skip: &[Arc<str>],
        now: Instant,
    ) -> Option<Picked<'a>> {
        let address = policy.pick(call, skip, now)?;
        Some(Picked {
            policy,
            address,
            picked_at: now,
            reported: false,
        })
    }

    /// The instance picked.
    pub fn address(&self) -> &Arc<str> {
        &self.address
    }

    /// Reports how the call ended, with the time since the pick.
    pub fn finish(mut self, outcome: Outcome) {
        self.report(outcome, Instant::now());
    }

    /// When the pick was made.
    pub(crate) fn picked_at(&self) -> Instant {
        self.picked_at
    }

    /// Reports how the call ended, at `now`, `latency` after the pick (both known to the caller already); the
    /// guard reports nothing more.
    pub(crate) fn finish_at(&mut self, outcome: Outcome, latency: Duration, now: Instant) {
        if !self.reported {
            self.reported = true;
            self.policy.report(&self.address, outcome, latency, now);
        }
    }

    fn report(&mut self, outcome: Outcome, now: Instant) {
        let latency = now.saturating_duration_since(self.picked_at);
        self.finish_at(outcome, latency, now);
    }
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        if !self.reported {
            self.report(Outcome::Cancelled, Instant::now());
        }
    }
}
