//! A client spread over the instances of a service. For each call: the [`Balancer`]'s policy picks an instance
//! among those the outlier detector has not ejected (`balance/outlier/`) and that did not just push back;
//! the attempt goes over that instance's own direct client, within the attempt timeout; a slow attempt of an
//! idempotent method may be hedged (`layer/hedge.rs`); a failed one is tried again on another instance when
//! the retry policy and budget allow (`layer/retry.rs`, `layer/budget.rs`). Every attempt's outcome and latency
//! reach both the policy and the detector.
//!
//! When the detector ejects an instance, or the feed drops it (the registry evicted it), the connection to it
//! is closed: its calls in flight fail at once with `Unavailable`, and those of idempotent methods are retried
//! elsewhere. A task of the client's (started with its first call) applies the feed's changes and the
//! detector's periodic checks every [`TICK`], so that an instance that stalls every call sent to it is found
//! even when no new call comes.

use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use rpc_codec::Status;
use tokio::time::Instant;

use super::ClientConfig;
use super::connection::Reply;
use super::direct::{Direct, Target};
use super::layer::budget::RetryBudget;
use super::layer::hedge::Hedging;
use super::layer::retry::Retry;
use super::routes::{Applied, Routes};
use crate::balance::{
    Balancer, CallInfo, Ejected, Instance, Live, Outcome, Outliers, Picked, Policy,
};
use crate::error::RpcError;
use crate::ids::IdMap;
use crate::payload::Payload;

/// How often a balanced client applies the feed's changes and checks for stalled and recovered instances:
/// 25 ms.
pub(crate) const TICK: Duration = Duration::from_millis(25);

/// The instances' clients, the balancer that chooses among them, and what guards the calls.
pub(crate) struct Balanced {
    balancer: Balancer,
    pub(crate) config: ClientConfig,
    /// Each instance's connection and counts, by address, made on first use.
    pool: Mutex<IdMap<Arc<str>, Arc<Endpoint>>>,
    outliers: Outliers,
    budget: RetryBudget,
    hedging: Option<Hedging>,
    /// The routes of the rules it follows, if any.
    routes: Option<Routes>,
    /// The periodic task, started by the first call.
    ticker: OnceLock<tokio::task::AbortHandle>,
}

impl std::fmt::Debug for Balanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let instances = self.pool.lock().map(|p| p.len()).unwrap_or(0);
        f.debug_struct("Balanced")
            .field("instances_contacted", &instances)
            .finish_non_exhaustive()
    }
}

impl Drop for Balanced {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.get() {
            ticker.abort();
        }
    }
}

/// One instance as the client holds it: its direct client, and what the detector counts of it on every call
/// (found with it, in one lookup).
#[derive(Debug)]
struct Endpoint {
    direct: Arc<Direct>,
    live: Arc<Live>,
}

/// What guards one call: the client's own, or, where its route's policy sets them ([`Applied`]), the route's.
#[derive(Clone, Copy)]
struct Guards<'a> {
    /// The route's balancing policy (`None`: the balancer's).
    balance: Option<&'a dyn Policy>,
    /// The route's outlier detector (`None`: the client's).
    outliers: Option<&'a Outliers>,
    hedging: Option<&'a Hedging>,
    budget: &'a RetryBudget,
}

/// How one attempt ended.
struct Attempt {
    result: Result<Reply, RpcError>,
    /// It ran out of the attempt timeout, not of the call's deadline.
    timed_out: bool,
    /// The instance, if the attempt failed (a retry goes elsewhere).
    failed_on: Option<Arc<str>>,
}

/// An attempt under way: its instance hears `Cancelled`, from the policy's guard and here for the detector, if
/// it is dropped before it ends (the call's future was dropped, or a hedged attempt lost the race).
struct InFlight<'a> {
    outliers: &'a Outliers,
    live: &'a Live,
    picked: Picked<'a>,
    done: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if !self.done {
            let now = Instant::now();
            let latency = now.saturating_duration_since(self.picked.picked_at());
            let address = self.picked.address();
            self.outliers
                .finished_on(self.live, address, Outcome::Cancelled, latency, now);
        }
    }
}

impl Balanced {
    pub(crate) fn new(balancer: Balancer, config: ClientConfig) -> Balanced {
        let outliers = Outliers::new(config.outliers.clone());
        outliers.update(&balancer.instances());
        let routes = balancer.rules().map(Routes::new);
        Balanced {
            routes,
            balancer,
            pool: Mutex::new(IdMap::default()),
            outliers,
            budget: RetryBudget::new(config.retry_budget.clone()),
            hedging: config.hedge.clone().map(Hedging::new),
            ticker: OnceLock::new(),
            config,
        }
    }

    /// The instance at `address`: its client and counts, made on first use.
    fn endpoint(&self, address: &Arc<str>) -> Arc<Endpoint> {
        let mut pool = crate::sync::lock(&self.pool);
        if let Some(endpoint) = pool.get(address) {
            return Arc::clone(endpoint);
        }
        let target = match address.parse() {
            Ok(addr) => Target::Resolved(vec![addr]),
            Err(_) => Target::Name(address.to_string()),
        };
        let endpoint = Arc::new(Endpoint {
            direct: Arc::new(Direct::new(target, self.config.clone())),
            // An instance that left while it was picked is counted apart, and forgotten with its entry.
            live: self.outliers.live(address).unwrap_or_default(),
        });
        pool.insert(Arc::clone(address), Arc::clone(&endpoint));
        endpoint
    }

    /// Starts the periodic task, once.
    fn start_ticker(self: &Arc<Self>) {
        if self.ticker.get().is_some() {
            return;
        }
        let weak: Weak<Balanced> = Arc::downgrade(self);
        let _ = self.ticker.get_or_init(|| {
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(TICK);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    let Some(balanced) = weak.upgrade() else {
                        return;
                    };
                    balanced.maintain();
                }
            })
            .abort_handle()
        });
    }

    /// Applies the feed's changes and the detector's periodic checks.
    fn maintain(&self) {
        self.refresh();
        let now = Instant::now();
        for ejected in self.outliers.tick(now) {
            self.eject(&ejected);
        }
        if let Some(routes) = &self.routes {
            routes.tick(now);
        }
    }

    /// Takes the feed's instances if they changed: the detector learns them, and the connections to instances
    /// that left are closed, failing their calls in flight over.
    fn refresh(&self) {
        let Some(instances) = self.balancer.refresh() else {
            return;
        };
        self.outliers.update(&instances);
        if let Some(routes) = &self.routes {
            routes.instances_changed(&instances);
        }
        let gone: Vec<Arc<Endpoint>> = {
            let mut pool = crate::sync::lock(&self.pool);
            let left: Vec<Arc<str>> = pool
                .keys()
                .filter(|a| !instances.iter().any(|i: &Instance| i.address == **a))
                .cloned()
                .collect();
            let gone = left.iter().filter_map(|a| pool.remove(a)).collect();
            // An entry made while its instance was away counts apart from the detector: it takes the
            // detector's counts now.
            for (address, endpoint) in pool.iter_mut() {
                if let Some(live) = self.outliers.live(address)
                    && !Arc::ptr_eq(&live, &endpoint.live)
                {
                    let direct = Arc::clone(&endpoint.direct);
                    *endpoint = Arc::new(Endpoint { direct, live });
                }
            }
            gone
        };
        for endpoint in gone {
            endpoint.direct.close(
                "the instance left the service (the registry evicted it, or it deregistered)",
            );
        }
    }

    /// Closes the connection to an instance the detector ejected.
    fn eject(&self, ejected: &Ejected) {
        if let Some(metrics) = &self.config.metrics {
            metrics.ejected();
        }
        let endpoint = crate::sync::lock(&self.pool).get(&ejected.address).cloned();
        if let Some(endpoint) = endpoint {
            let reason = format!(
                "instance {} ejected for {} s: {}",
                ejected.address,
                ejected.duration.as_secs(),
                ejected.reason
            );
            endpoint.direct.close(&reason);
        }
    }

    /// The client of the instance a stream of `call` opens on (protocol 1.1): picked as a call's first attempt
    /// is, by its route's subset and policy and past the instances the detector ejected, without retries (a
    /// stream is not replayed). The pick is reported to the policy as the stream opens.
    pub(crate) fn stream_target(
        self: &Arc<Self>,
        call: &CallInfo<'_>,
    ) -> Result<Arc<Direct>, RpcError> {
        self.start_ticker();
        let routed = self
            .routes
            .as_ref()
            .and_then(|r| r.route(call, &self.config, || self.balancer.instances()));
        let applied: Option<&Applied> = routed.as_ref().and_then(|r| r.applied.as_deref());
        let guards = Guards {
            balance: applied.and_then(|a| a.balance.as_deref()),
            outliers: applied.and_then(|a| a.outliers.as_ref()),
            hedging: None,
            budget: applied
                .and_then(|a| a.budget.as_ref())
                .unwrap_or(&self.budget),
        };
        let outside = routed.as_ref().map_or(&[][..], |r| &r.outside[..]);
        let picked = self.pick(guards, call, &[], outside, Instant::now());
        let picked = picked.ok_or_else(|| {
            let message = format!("no instance of {} is available", call.method.service);
            RpcError::not_processed(Status::Unavailable, message)
        })?;
        Ok(Arc::clone(&self.endpoint(picked.address()).direct))
    }

    /// Picks an instance for `call` at `now`, by the balancing policy of `guards`, not one in `tried` or
    /// `outside` (its route's subset) and, while others remain, not one their detector excludes.
    fn pick<'a>(
        &'a self,
        guards: Guards<'a>,
        call: &CallInfo<'_>,
        tried: &[Arc<str>],
        outside: &[Arc<str>],
        now: Instant,
    ) -> Option<Picked<'a>> {
        self.refresh();
        let mut skip = std::borrow::Cow::Borrowed(tried);
        if !outside.is_empty() {
            skip.to_mut().extend_from_slice(outside);
        }
        let by = |skip: &[Arc<str>]| match guards.balance {
            None => self.balancer.pick_at(call, skip, now),
            Some(policy) => Picked::by(policy, call, skip, now),
        };
        match guards.outliers.unwrap_or(&self.outliers).excluded(now) {
            None => by(&skip),
            Some(excluded) => {
                let mut healthy = skip.to_vec();
                healthy.extend(excluded);
                // Everything excluded: try one anyway rather than fail the call (Envoy's panic mode).
                by(&healthy).or_else(|| by(&skip))
            }
        }
    }

    /// One attempt of `call` on the instance `picked`: reports its outcome and latency to the policy and the
    /// detector, and acts on what they make of it (an ejection, a pushback).
    async fn attempt<P: Payload + ?Sized>(
        &self,
        guards: Guards<'_>,
        picked: Picked<'_>,
        call: &CallInfo<'_>,
        args: &P,
        (deadline, attempt_timeout): (Instant, Option<Duration>),
        span: Option<&tracing::Span>,
    ) -> Attempt {
        let started = picked.picked_at();
        let endpoint = self.endpoint(picked.address());
        // A route's own detector counts its calls apart.
        let route_live;
        let (outliers, live) = match guards.outliers {
            None => (&self.outliers, &*endpoint.live),
            Some(outliers) => {
                route_live = outliers.live(picked.address()).unwrap_or_default();
                (outliers, &*route_live)
            }
        };
        outliers.started_on(live, started);
        let mut in_flight = InFlight {
            outliers,
            live,
            picked,
            done: false,
        };
        let until = match attempt_timeout {
            Some(timeout) => deadline.min(started + timeout),
            None => deadline,
        };
        let result = endpoint
            .direct
            .round_trip(call.method, args, call.metadata, until, started, span)
            .await;
        in_flight.done = true;
        let address = in_flight.picked.address();
        let now = Instant::now();
        let latency = now.duration_since(started);
        let timed_out = until < deadline
            && now >= until
            && matches!(&result, Err(e) if e.code() == Status::DeadlineExceeded);
        let result = match result {
            Err(_) if timed_out => Err(RpcError::new(
                Status::DeadlineExceeded,
                format!(
                    "{}: the attempt on {address} took longer than the attempt timeout of {} ms",
                    call.method,
                    until.duration_since(started).as_millis()
                ),
            )),
            other => other,
        };
        let outcome = match &result {
            Ok(_) => Outcome::Success,
            Err(e) => outcome_of(e),
        };
        let ended = outliers.finished_on(live, address, outcome, latency, now);
        if let Some(ejected) = ended
            && guards.outliers.is_none()
        {
            self.eject(&ejected);
        }
        let failed_on = match &result {
            Ok(_) => {
                if let Some(hedging) = guards.hedging {
                    hedging.record(call.method, latency);
                }
                None
            }
            Err(e) => {
                if let Some(after) = e.retry_after() {
                    outliers.hold(address, after, now);
                }
                Some(Arc::clone(address))
            }
        };
        in_flight.picked.finish_at(outcome, latency, now);
        Attempt {
            result,
            timed_out,
            failed_on,
        }
    }

    pub(crate) async fn round_trip<P: Payload + ?Sized>(
        self: &Arc<Self>,
        call: CallInfo<'_>,
        args: &P,
        mut deadline: Instant,
        mut now: Instant,
        span: Option<&tracing::Span>,
    ) -> Result<Reply, RpcError> {
        self.start_ticker();
        let method = call.method;
        let routed = self
            .routes
            .as_ref()
            .and_then(|r| r.route(&call, &self.config, || self.balancer.instances()));
        let applied: Option<&Applied> = routed.as_ref().and_then(|r| r.applied.as_deref());
        let guards = match applied {
            None => Guards {
                balance: None,
                outliers: None,
                hedging: self.hedging.as_ref(),
                budget: &self.budget,
            },
            Some(a) => Guards {
                balance: a.balance.as_deref(),
                outliers: a.outliers.as_ref(),
                hedging: a.hedging.as_ref().or(self.hedging.as_ref()),
                budget: a.budget.as_ref().unwrap_or(&self.budget),
            },
        };
        guards.budget.deposit(now);
        let policy = applied.map(|a| &a.policy);
        if let Some(ms) = policy.and_then(|p| p.deadline_ms)
            && !call.deadline_chosen
        {
            deadline = now + Duration::from_millis(ms);
        }
        let mut retry = Retry::new(&self.config, guards.budget, method, deadline);
        let retry_rule = policy.and_then(|p| p.retry.as_ref());
        if let Some(rule) = retry_rule {
            retry.follow(rule);
        }
        let attempt_timeout = retry_rule
            .and_then(|r| r.attempt_timeout_ms)
            .map(Duration::from_millis)
            .or(self.config.attempt_timeout);
        // The instances tried; filled only for a second attempt, so that most calls allocate nothing for it.
        let mut tried: Vec<Arc<str>> = Vec::new();
        let mut last_error = None;
        if let Some(fault) = applied.and_then(|a| a.fault.as_ref()) {
            // Boxed: the rules' faults are rare, and their future would otherwise grow every call's.
            Box::pin(inject(fault, &call, deadline)).await?;
            now = Instant::now();
        }
        let outside = routed.as_ref().map_or(&[][..], |r| &r.outside[..]);
        while let Some(picked) = self.pick(guards, &call, &tried, outside, now) {
            let hedge_at = guards
                .hedging
                .and_then(|h| h.delay(method))
                .map(|delay| now + delay)
                .filter(|at| *at < deadline);
            // Each future is awaited where it is made: one made, then moved into an `.await`, costs a copy.
            let attempt = match hedge_at {
                None => {
                    self.attempt(
                        guards,
                        picked,
                        &call,
                        args,
                        (deadline, attempt_timeout),
                        span,
                    )
                    .await
                }
                // Boxed: two attempts side by side make a large future, which every call's future would
                // otherwise carry (direct clients' too, through `Kind`); hedged calls are few.
                Some(at) => {
                    Box::pin(self.hedged(
                        guards,
                        picked,
                        at,
                        &call,
                        args,
                        (deadline, attempt_timeout, outside),
                        span,
                        &mut tried,
                        &mut retry,
                    ))
                    .await
                }
            };
            let error = match attempt.result {
                Ok(reply) => return Ok(reply),
                Err(e) => e,
            };
            if let Some(address) = attempt.failed_on
                && !tried.contains(&address)
            {
                tried.push(address);
            }
            let Some(pause) = retry.after(&error, attempt.timed_out) else {
                return Err(error);
            };
            if let Some(metrics) = &self.config.metrics {
                metrics.retried();
            }
            last_error = Some(error);
            tokio::time::sleep(pause).await;
            now = Instant::now();
        }
        Err(last_error.unwrap_or_else(|| {
            let message = match routed.as_ref().and_then(|r| Some((r, r.subset.as_ref()?))) {
                Some((r, subset)) => format!(
                    "no instance of {} in the subset {} of route `{}` is available",
                    method.service,
                    crate::text::quoted(&subset.to_string(), 128),
                    crate::text::quoted(&r.route, 64)
                ),
                None => format!("no instance of {} is available", method.service),
            };
            RpcError::not_processed(Status::Unavailable, message)
        }))
    }

    /// Sends the attempt on `first` and waits for it until `at`, then, if the retries and the budget allow and
    /// another instance is there, sends a second attempt beside it: the first to succeed wins (the other is
    /// dropped, which cancels it on its server); if both fail, the later failure stands.
    #[allow(clippy::too_many_arguments)]
    async fn hedged<'a, P: Payload + ?Sized>(
        &'a self,
        guards: Guards<'a>,
        first: Picked<'a>,
        at: Instant,
        call: &CallInfo<'_>,
        args: &P,
        (deadline, attempt_timeout, outside): (Instant, Option<Duration>, &[Arc<str>]),
        span: Option<&tracing::Span>,
        tried: &mut Vec<Arc<str>>,
        retry: &mut Retry<'_>,
    ) -> Attempt {
        tried.push(Arc::clone(first.address()));
        let first = self.attempt(guards, first, call, args, (deadline, attempt_timeout), span);
        tokio::pin!(first);
        tokio::select! {
            biased;
            done = &mut first => return done,
            () = tokio::time::sleep_until(at) => {}
        }
        let second = match self.pick(guards, call, tried, outside, Instant::now()) {
            Some(picked) if retry.hedge() => picked,
            _ => return first.await,
        };
        tried.push(Arc::clone(second.address()));
        if let Some(metrics) = &self.config.metrics {
            metrics.hedged();
        }
        tracing::debug!(method = %call.method, instance = %second.address(), "hedging a slow call");
        let second = self.attempt(
            guards,
            second,
            call,
            args,
            (deadline, attempt_timeout),
            span,
        );
        tokio::pin!(second);
        tokio::select! {
            a = &mut first => match a.result {
                Ok(_) => a,
                Err(_) => second.await,
            },
            b = &mut second => match b.result {
                Ok(_) => b,
                Err(_) => first.await,
            },
        }
    }
}

/// Injects the faults of the rules into `call`: a delay (failing the call if it would outlast `deadline`), then
/// an abort, which fails the call unsent.
async fn inject(
    fault: &crate::fault::Fault,
    call: &CallInfo<'_>,
    deadline: Instant,
) -> Result<(), RpcError> {
    let injected = fault.draw(call.method, call.metadata);
    if let Some(delay) = injected.delay {
        if Instant::now() + delay > deadline {
            tokio::time::sleep_until(deadline).await;
            return Err(super::direct::deadline_exceeded(call.method).unprocessed());
        }
        tokio::time::sleep(delay).await;
    }
    match injected.abort {
        Some((status, message)) => Err(RpcError::not_processed(status, message)),
        None => Ok(()),
    }
}

/// What an error says about the instance that returned it.
fn outcome_of(error: &RpcError) -> Outcome {
    match error.code() {
        Status::Unavailable => Outcome::Unreachable,
        Status::DeadlineExceeded
        | Status::Internal
        | Status::ResourceExhausted
        | Status::Unknown => Outcome::Failure,
        // The instance answered; the call itself was wrong.
        _ => Outcome::Success,
    }
}
