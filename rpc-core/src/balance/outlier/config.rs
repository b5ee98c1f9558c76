//! [`OutlierConfig`]: what makes the detector eject an instance, and for how long, with Envoy's defaults as
//! the reference.

use std::time::Duration;

/// Default of [`OutlierConfig::consecutive_failures`]: 5, as Envoy's `consecutive_5xx`.
pub const DEFAULT_CONSECUTIVE_FAILURES: u32 = 5;
/// Default of [`OutlierConfig::interval`]: 10 s, as Envoy's.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);
/// Default of [`OutlierConfig::failure_rate`]: 0.5. Envoy's failure-percentage check ejects at 85% and is off
/// by default; half the calls failing while the peers answer is already an instance to route around.
pub const DEFAULT_FAILURE_RATE: f64 = 0.5;
/// Default of [`OutlierConfig::min_calls`]: 20 calls in an interval before its failure rate or latency counts.
pub const DEFAULT_MIN_CALLS: u32 = 20;
/// Default of [`OutlierConfig::slow_factor`]: 10 times the peers' median latency.
pub const DEFAULT_SLOW_FACTOR: f64 = 10.0;
/// Default of [`OutlierConfig::stall_after`]: 200 ms without an answer while calls are in flight.
pub const DEFAULT_STALL_AFTER: Duration = Duration::from_millis(200);
/// Default of [`OutlierConfig::base_ejection`]: 30 s, as Envoy's.
pub const DEFAULT_BASE_EJECTION: Duration = Duration::from_secs(30);
/// Default of [`OutlierConfig::max_ejection`]: 300 s, as Envoy's.
pub const DEFAULT_MAX_EJECTION: Duration = Duration::from_secs(300);
/// Default of [`OutlierConfig::max_ejection_percent`]: 10%, as Envoy's (and always at least one instance).
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;

/// How a balanced client tells outliers apart. `enabled: false` turns detection off (pushback still holds an
/// instance back).
#[derive(Clone, Debug, PartialEq)]
pub struct OutlierConfig {
    /// Whether instances are ejected at all.
    pub enabled: bool,
    /// Failures in a row that eject an instance (default [`DEFAULT_CONSECUTIVE_FAILURES`]; 0: never).
    pub consecutive_failures: u32,
    /// The window of the failure-rate and latency checks, and the pace at which an instance's ejection count
    /// decays while it serves well (default [`DEFAULT_INTERVAL`]).
    pub interval: Duration,
    /// The share of failed calls over an interval that ejects (default [`DEFAULT_FAILURE_RATE`]; above 1:
    /// never).
    pub failure_rate: f64,
    /// Calls an instance must have ended in the interval for its failure rate and latency to count (default
    /// [`DEFAULT_MIN_CALLS`]).
    pub min_calls: u32,
    /// How far above its peers' median latency an instance's latency must be to eject it (default
    /// [`DEFAULT_SLOW_FACTOR`]); the latency check needs three instances with enough calls.
    pub slow_factor: f64,
    /// How long an instance may hold calls without answering any while its peers answer, before it is taken
    /// for stalled (default [`DEFAULT_STALL_AFTER`]; the slow factor times its own usual latency, or its
    /// peers' median, if that is longer, so that an instance that is merely slow is left to the latency check;
    /// `None`: no stall check, for services whose calls may legitimately take long, such as long polls).
    pub stall_after: Option<Duration>,
    /// The first ejection's length, multiplied by the number of ejections (default
    /// [`DEFAULT_BASE_EJECTION`]).
    pub base_ejection: Duration,
    /// The longest ejection (default [`DEFAULT_MAX_EJECTION`]).
    pub max_ejection: Duration,
    /// Most instances ejected at once, in percent of them (default [`DEFAULT_MAX_EJECTION_PERCENT`]); one may
    /// always be ejected, as long as another remains.
    pub max_ejection_percent: u32,
}

impl Default for OutlierConfig {
    fn default() -> OutlierConfig {
        OutlierConfig {
            enabled: true,
            consecutive_failures: DEFAULT_CONSECUTIVE_FAILURES,
            interval: DEFAULT_INTERVAL,
            failure_rate: DEFAULT_FAILURE_RATE,
            min_calls: DEFAULT_MIN_CALLS,
            slow_factor: DEFAULT_SLOW_FACTOR,
            stall_after: Some(DEFAULT_STALL_AFTER),
            base_ejection: DEFAULT_BASE_EJECTION,
            max_ejection: DEFAULT_MAX_EJECTION,
            max_ejection_percent: DEFAULT_MAX_EJECTION_PERCENT,
        }
    }
}

impl OutlierConfig {
    /// No ejections (pushback still holds instances back).
    pub fn disabled() -> OutlierConfig {
        OutlierConfig {
            enabled: false,
            ..OutlierConfig::default()
        }
    }
}
