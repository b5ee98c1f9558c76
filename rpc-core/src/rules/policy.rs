//! What a client does with the calls of a route or a method ([`CallPolicy`]): their deadline, retries and
//! retry budget, hedging, balancing policy, outlier detection, and the faults injected into them. Every field
//! left out keeps what a wider rule says (a method's policy over its route's), or else the client's own
//! setting.

use serde::{Deserialize, Serialize};

use super::{Percent, Problem, StatusName};

/// The longest deadline a rule may set: one hour.
pub const MAX_DEADLINE_MS: u64 = 3_600_000;

/// How a client treats the calls a rule applies to.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CallPolicy {
    /// The deadline of a call that sets none, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_ms: Option<u64>,
    /// Retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryRule>,
    /// Hedging of idempotent methods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hedge: Option<HedgeRule>,
    /// The balancing policy and its parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<BalanceRule>,
    /// Outlier detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outliers: Option<OutlierRule>,
    /// Faults injected into the calls, before they are sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<FaultRule>,
}

/// Retries: how many, after which statuses, within which budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRule {
    /// Retries of one call at most.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// The statuses an idempotent method is retried after (`unavailable`, `resource_exhausted`, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<StatusName>,
    /// Retries may add at most this share of calls (Envoy's retry budget).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_percent: Option<Percent>,
    /// The time allowed each attempt, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt_timeout_ms: Option<u64>,
}

/// Hedging: a second attempt of a slow idempotent call, after a fixed delay or a percentile of latency.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HedgeRule {
    /// After this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// After this percentile of the method's latency (95: the p95).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<Percent>,
}

/// The balancing policy of the calls, by name, and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "policy", rename_all = "snake_case")]
pub enum BalanceRule {
    /// Power of two choices over peak EWMA latency (the default).
    PeakEwma {
        /// How fast the average forgets, in milliseconds.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decay_ms: Option<u64>,
    },
    /// The fewest calls in flight among `choices` instances drawn at random.
    LeastRequest {
        /// How many are drawn.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        choices: Option<u32>,
    },
    /// Smooth weighted round-robin.
    RoundRobin,
    /// Consistent hashing of a metadata entry's value.
    RingHash {
        /// The entry whose value is hashed.
        key: String,
    },
}

/// Outlier detection's thresholds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutlierRule {
    /// Off, or on (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Failures in a row that eject an instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
    /// A failure rate over an interval that ejects it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percent: Option<Percent>,
    /// The first ejection's length, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_ms: Option<u64>,
    /// The most instances ejected at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<Percent>,
}

/// Faults: a share of calls delayed, a share failed with a status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultRule {
    /// The delay, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// The share of calls delayed (100 if a delay is given without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_percent: Option<Percent>,
    /// The share of calls failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_percent: Option<Percent>,
    /// The status they fail with (`unavailable` unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort_status: Option<StatusName>,
}

impl FaultRule {
    /// The fault it injects, into the calls of the route named `route`: an abort says which rule injected it.
    pub fn fault(&self, route: &str) -> crate::fault::Fault {
        let mut fault = crate::fault::Fault::new();
        if let Some(ms) = self.delay_ms {
            let percent = self.delay_percent.map_or(100.0, Percent::get);
            fault = fault.delay(std::time::Duration::from_millis(ms), percent);
        }
        if let Some(percent) = self.abort_percent {
            let status = self
                .abort_status
                .map_or(crate::fault::DEFAULT_ABORT_STATUS, |s| s.0);
            let message = format!(
                "a fault was injected by the rules (route `{}`)",
                crate::text::quoted(route, 64)
            );
            fault = fault.abort(status, message, percent.get());
        }
        fault
    }
}

impl BalanceRule {
    /// The balancing policy it names, with its parameters (the others at their defaults).
    pub fn policy(&self) -> std::sync::Arc<dyn crate::balance::Policy> {
        use crate::balance::{LeastRequest, PeakEwma, RingHash, SmoothWrr};
        match self {
            BalanceRule::PeakEwma { decay_ms } => {
                let policy = PeakEwma::default();
                std::sync::Arc::new(match decay_ms {
                    Some(ms) => policy.with_decay(std::time::Duration::from_millis(*ms)),
                    None => policy,
                })
            }
            BalanceRule::LeastRequest { choices } => {
                let policy = LeastRequest::default();
                std::sync::Arc::new(match choices {
                    Some(n) => policy.with_choice_count(*n as usize),
                    None => policy,
                })
            }
            BalanceRule::RoundRobin => std::sync::Arc::new(SmoothWrr::default()),
            BalanceRule::RingHash { key } => std::sync::Arc::new(RingHash::on_metadata(key)),
        }
    }
}

impl OutlierRule {
    /// `base` (the client's outlier detection) with what the rule sets in place of its fields.
    pub fn over(&self, base: &crate::balance::OutlierConfig) -> crate::balance::OutlierConfig {
        let mut config = base.clone();
        if let Some(enabled) = self.enabled {
            config.enabled = enabled;
        }
        if let Some(n) = self.consecutive_failures {
            config.consecutive_failures = n;
        }
        if let Some(percent) = self.failure_percent {
            config.failure_rate = percent.get() / 100.0;
        }
        if let Some(ms) = self.base_ejection_ms {
            config.base_ejection = std::time::Duration::from_millis(ms);
        }
        if let Some(percent) = self.max_ejection_percent {
            config.max_ejection_percent = percent.get().round() as u32;
        }
        config
    }
}

impl HedgeRule {
    /// `base` (the client's hedging, or the default) with the rule's delay.
    pub fn over(
        &self,
        base: &crate::client::layer::HedgeConfig,
    ) -> crate::client::layer::HedgeConfig {
        use crate::client::layer::HedgeDelay;
        let mut config = base.clone();
        if let Some(ms) = self.delay_ms {
            config.delay = HedgeDelay::After(std::time::Duration::from_millis(ms));
        } else if let Some(percent) = self.percentile {
            config.delay = HedgeDelay::Percentile(percent.get());
        }
        config
    }
}

impl CallPolicy {
    /// Checks the values that each field's type cannot: bounds, and the pairs that go together.
    pub(super) fn check(&self, at: &str, problems: &mut Vec<Problem>) {
        let positive = |value: Option<u64>, field: &str, problems: &mut Vec<Problem>| {
            if let Some(ms) = value
                && !(1..=MAX_DEADLINE_MS).contains(&ms)
            {
                let problem = format!("expected 1 to {MAX_DEADLINE_MS} milliseconds, found {ms}");
                problems.push(Problem::new(format!("{at}.{field}"), problem));
            }
        };
        positive(self.deadline_ms, "deadline_ms", problems);
        if let Some(retry) = &self.retry {
            positive(
                retry.attempt_timeout_ms,
                "retry.attempt_timeout_ms",
                problems,
            );
        }
        if let Some(hedge) = &self.hedge {
            match (hedge.delay_ms, &hedge.percentile) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => problems.push(Problem::new(
                    format!("{at}.hedge"),
                    "expected exactly one of `delay_ms` and `percentile`",
                )),
            }
            positive(hedge.delay_ms, "hedge.delay_ms", problems);
        }
        if let Some(BalanceRule::LeastRequest {
            choices: Some(choices),
        }) = &self.balance
            && !(2..=16).contains(choices)
        {
            let problem = format!("expected 2 to 16 choices, found {choices}");
            problems.push(Problem::new(format!("{at}.balance.choices"), problem));
        }
        if let Some(BalanceRule::PeakEwma { decay_ms }) = &self.balance {
            positive(*decay_ms, "balance.decay_ms", problems);
        }
        if let Some(outliers) = &self.outliers {
            positive(
                outliers.base_ejection_ms,
                "outliers.base_ejection_ms",
                problems,
            );
        }
        if let Some(fault) = &self.fault {
            if fault.delay_percent.is_some() && fault.delay_ms.is_none() {
                problems.push(Problem::new(
                    format!("{at}.fault.delay_percent"),
                    "a share of calls to delay, but no `delay_ms`",
                ));
            }
            positive(fault.delay_ms, "fault.delay_ms", problems);
            if fault.abort_status.is_some() && fault.abort_percent.is_none() {
                problems.push(Problem::new(
                    format!("{at}.fault.abort_status"),
                    "a status to fail calls with, but no `abort_percent`",
                ));
            }
            if let Some(status) = &fault.abort_status
                && status.0 == rpc_codec::Status::Ok
            {
                problems.push(Problem::new(
                    format!("{at}.fault.abort_status"),
                    "ok is not a failure",
                ));
            }
        }
    }
}
