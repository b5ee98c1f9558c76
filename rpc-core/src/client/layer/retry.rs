//! A balanced client's retries: when a failed attempt is tried again on another instance, how many times
//! ([`crate::ClientConfig::max_retries`]), after what pause (a backoff with jitter, within the call's deadline),
//! and whether the retry budget (`budget.rs`) allows it.
//!
//! A call that certainly did not run (no connection, a refusal before processing, a server's pushback) is
//! retried whatever its method. An `#[idempotent]` method's call is also retried after an attempt that timed
//! out ([`crate::ClientConfig::attempt_timeout`]) or failed with a status of [`RetryOn`] (by default
//! `Unavailable`: the connection was lost, or the instance was ejected while the call was in flight).

use std::time::Duration;

use rpc_codec::Status;
use tokio::time::Instant;

use super::budget::RetryBudget;
use crate::client::ClientConfig;
use crate::error::RpcError;
use crate::method::MethodInfo;

/// The statuses after which an idempotent method's call is retried by default: `Unavailable`.
pub const DEFAULT_RETRY_ON: &[Status] = &[Status::Unavailable];

/// Which failures of an `#[idempotent]` method's call a balanced client retries on another instance, by
/// default and per method (a call that certainly did not run is retried whatever its status).
///
/// ```
/// use rpc_core::{ClientConfig, Status};
/// use rpc_core::client::layer::RetryOn;
///
/// let config = ClientConfig {
///     retry_on: RetryOn::default().method("Calc.add", &[Status::Unavailable, Status::ResourceExhausted]),
///     ..ClientConfig::default()
/// };
/// # let _ = config;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryOn {
    default: Vec<Status>,
    /// (`Service.method`, its statuses).
    methods: Vec<(String, Vec<Status>)>,
}

impl Default for RetryOn {
    fn default() -> RetryOn {
        RetryOn::statuses(DEFAULT_RETRY_ON)
    }
}

impl RetryOn {
    /// Retries on `statuses` for every idempotent method.
    pub fn statuses(statuses: &[Status]) -> RetryOn {
        RetryOn {
            default: statuses.to_vec(),
            methods: Vec::new(),
        }
    }

    /// Retries calls of `method` (`Service.method`) on `statuses` instead.
    pub fn method(mut self, method: &str, statuses: &[Status]) -> RetryOn {
        self.methods.retain(|(m, _)| m != method);
        self.methods.push((method.to_owned(), statuses.to_vec()));
        self
    }

    /// Whether a call of `method` that failed with `status` is retried.
    pub fn retries(&self, method: &MethodInfo, status: Status) -> bool {
        let statuses = self
            .methods
            .iter()
            .find(|(m, _)| {
                m.strip_prefix(method.service)
                    .and_then(|rest| rest.strip_prefix('.'))
                    == Some(method.name)
            })
            .map_or(&self.default, |(_, s)| s);
        statuses.contains(&status)
    }
}

/// The retries of one call.
pub(crate) struct Retry<'a> {
    config: &'a ClientConfig,
    budget: &'a RetryBudget,
    method: &'static MethodInfo,
    deadline: Instant,
    /// Attempts made after the first (retries and hedges).
    extra: u32,
    /// The most of them: the client's, or a rule's.
    max_retries: u32,
    /// The statuses an idempotent method is retried after, if a rule says (else the client's `retry_on`).
    statuses: Option<Vec<Status>>,
}

impl<'a> Retry<'a> {
    pub(crate) fn new(
        config: &'a ClientConfig,
        budget: &'a RetryBudget,
        method: &'static MethodInfo,
        deadline: Instant,
    ) -> Retry<'a> {
        Retry {
            config,
            budget,
            method,
            deadline,
            extra: 0,
            max_retries: config.max_retries,
            statuses: None,
        }
    }

    /// Follows `rule` (the call's, from the rules) where it says something.
    pub(crate) fn follow(&mut self, rule: &crate::rules::RetryRule) {
        if let Some(max) = rule.max_retries {
            self.max_retries = max;
        }
        if !rule.on.is_empty() {
            self.statuses = Some(rule.on.iter().map(|s| s.0).collect());
        }
    }

    /// An attempt failed with `error` (`timed_out`: it ran out of its attempt timeout, not of the call's
    /// deadline): the pause before the next, or `None` if the call ends with it (it may have run and may not
    /// be run twice, the retries or the budget are spent, or the pause would outlast the deadline).
    pub(crate) fn after(&mut self, error: &RpcError, timed_out: bool) -> Option<Duration> {
        let retryable = error.is_not_processed()
            || (self.method.idempotent
                && (timed_out
                    || match &self.statuses {
                        Some(statuses) => statuses.contains(&error.code()),
                        None => self.config.retry_on.retries(self.method, error.code()),
                    }));
        if !retryable || self.extra >= self.max_retries {
            return None;
        }
        let now = Instant::now();
        let pause = self.config.retry_pause(self.extra + 1);
        if now + pause >= self.deadline {
            return None;
        }
        if !self.budget.try_withdraw(now) {
            tracing::debug!(method = %self.method, "retry budget spent: no retry");
            return None;
        }
        self.extra += 1;
        Some(pause)
    }

    /// Whether a second attempt may go now alongside the first (hedging): within the retries and the budget.
    pub(crate) fn hedge(&mut self) -> bool {
        if self.extra >= self.max_retries || !self.budget.try_withdraw(Instant::now()) {
            return false;
        }
        self.extra += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::layer::budget::RetryBudgetConfig;

    static GET: MethodInfo = MethodInfo {
        service: "Kv",
        name: "get",
        id: 1,
        idempotent: true,
    };
    static PUT: MethodInfo = MethodInfo {
        service: "Kv",
        name: "put",
        id: 2,
        idempotent: false,
    };

    #[tokio::test(start_paused = true)]
    async fn what_is_retried_depends_on_the_method_and_whether_the_call_ran() {
        let config = ClientConfig {
            retry_on: RetryOn::default().method("Kv.get", &[Status::ResourceExhausted]),
            ..ClientConfig::default()
        };
        let budget = RetryBudget::new(RetryBudgetConfig::default());
        let deadline = Instant::now() + Duration::from_secs(1);
        let lost = RpcError::new(Status::Unavailable, "connection closed");
        let shed = RpcError::new(Status::ResourceExhausted, "busy");
        let unsent = RpcError::not_processed(Status::Unavailable, "no connection");
        let timed_out = RpcError::new(Status::DeadlineExceeded, "attempt timed out");

        let mut put = Retry::new(&config, &budget, &PUT, deadline);
        assert_eq!(
            put.after(&lost, false),
            None,
            "a write that may have run is not repeated"
        );
        assert_eq!(put.after(&timed_out, true), None);
        assert!(put.after(&unsent, false).is_some(), "one that never ran is");

        let mut get = Retry::new(&config, &budget, &GET, deadline);
        assert!(
            get.after(&shed, false).is_some(),
            "Kv.get retries on its own statuses"
        );
        assert!(
            get.after(&timed_out, true).is_some(),
            "and after an attempt timeout"
        );
        assert_eq!(get.after(&shed, false), None, "two retries at most");
        let mut get = Retry::new(&config, &budget, &GET, deadline);
        assert_eq!(
            get.after(&lost, false),
            None,
            "Unavailable is not among Kv.get's statuses"
        );
        assert!(
            config.retry_on.retries(&PUT, Status::Unavailable),
            "the default for the others"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_budget_or_a_near_deadline_ends_the_call() {
        let config = ClientConfig::default();
        let budget = RetryBudget::new(RetryBudgetConfig {
            min_per_second: 0,
            ..RetryBudgetConfig::default()
        });
        let unsent = RpcError::not_processed(Status::Unavailable, "no connection");
        let mut retry = Retry::new(
            &config,
            &budget,
            &GET,
            Instant::now() + Duration::from_secs(1),
        );
        assert_eq!(
            retry.after(&unsent, false),
            None,
            "no calls deposited, no floor"
        );
        for _ in 0..10 {
            budget.deposit(Instant::now());
        }
        assert!(retry.hedge(), "10 calls pay for 2 extra attempts");
        let mut near = Retry::new(
            &config,
            &budget,
            &GET,
            Instant::now() + Duration::from_millis(1),
        );
        assert_eq!(
            near.after(&unsent, false),
            None,
            "the pause would outlast the deadline"
        );
    }
}
