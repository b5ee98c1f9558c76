//! The load-shedding and fault injection flags of the example programs, and the layers they make: on servers
//! `--max-concurrency N` (per method), `--adaptive-limit` and `--rate-limit PER_SECOND` (per method and caller);
//! on servers and clients `--fault-delay-ms MS`, `--fault-delay-percent P`, `--fault-abort-percent P` and
//! `--fault-abort-status NAME`. Without any of them, a program adds no layer and behaves as before.

use std::time::Duration;

use rpc_core::fault::{DEFAULT_ABORT_STATUS, Fault};
use rpc_core::server::layer::{
    AdaptiveConfig, AdaptiveLimit, Authorize, ConcurrencyLimit, FollowRules, InjectFault, Layers,
    LoadMeter, Only, PerMethod, Rate, RateLimit, RateLimitConfig,
};
use rpc_core::{ServerBuilder, Status};

/// The flags of a server's limits.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct LimitArgs {
    /// Shed calls of a method past N under way at once (ResourceExhausted, with a retry-after).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_concurrency: Option<u64>,
    /// Shed calls past a limit on the calls under way that follows latency (Gradient2).
    #[arg(long)]
    pub adaptive_limit: bool,
    /// Refuse each caller's calls of a method past PER_SECOND a second (in bursts of one second's worth).
    #[arg(long, value_name = "PER_SECOND", value_parser = positive)]
    pub rate_limit: Option<f64>,
}

/// The fault injection flags.
#[derive(Clone, Debug, clap::Args)]
pub struct FaultArgs {
    /// Delay calls by MS milliseconds (fault injection), --fault-delay-percent of them.
    #[arg(long, value_name = "MS")]
    pub fault_delay_ms: Option<u64>,
    /// The share of calls --fault-delay-ms delays, 0 to 100.
    #[arg(long, value_name = "P", default_value_t = 100.0, value_parser = percent, requires = "fault_delay_ms")]
    pub fault_delay_percent: f64,
    /// Fail P percent of the calls (fault injection), with --fault-abort-status.
    #[arg(long, value_name = "P", value_parser = percent)]
    pub fault_abort_percent: Option<f64>,
    /// The status of the calls --fault-abort-percent fails (`unavailable`, `internal`, ... or its code).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_ABORT_STATUS.as_str(), value_parser = status,
          requires = "fault_abort_percent")]
    pub fault_abort_status: Status,
}

impl FaultArgs {
    /// The faults the flags ask for (the message says which program injected them), if any.
    pub fn fault(&self, program: &str) -> Option<Fault> {
        if self.fault_delay_ms.is_none() && self.fault_abort_percent.is_none() {
            return None;
        }
        let mut fault = Fault::new();
        if let Some(ms) = self.fault_delay_ms {
            fault = fault.delay(Duration::from_millis(ms), self.fault_delay_percent);
        }
        if let Some(percent) = self.fault_abort_percent {
            let message = format!("{program}: fault injected (--fault-abort-percent {percent})");
            fault = fault.abort(self.fault_abort_status, message, percent);
        }
        Some(fault)
    }
}

/// What a server's flags ask for, in words; `None` for nothing.
pub fn describe(limits: &LimitArgs, fault: Option<&Fault>) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(n) = limits.max_concurrency {
        parts.push(format!("at most {n} calls of each method at once"));
    }
    if limits.adaptive_limit {
        parts.push(String::from("an adaptive limit on calls under way"));
    }
    if let Some(rate) = limits.rate_limit {
        parts.push(format!("{rate} calls/s of each method per caller"));
    }
    if let Some(delay) = fault.and_then(|f| f.delay.as_ref()) {
        let ms = delay.duration.as_millis();
        parts.push(format!("{}% of calls delayed {ms} ms", delay.percent));
    }
    if let Some(abort) = fault.and_then(|f| f.abort.as_ref()) {
        parts.push(format!(
            "{}% of calls failed {}",
            abort.percent, abort.status
        ));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// `builder` with the load meter (what the registration reports), who the caller is (`callers`), the rules'
/// authorization, then the limits and faults asked for, in the order
/// `rpc_core::server::layer` advises (rate, concurrency, adaptive, faults); a layer not asked for lets every call
/// pass.
pub fn layered(
    builder: ServerBuilder,
    meter: LoadMeter,
    callers: Authorize,
    rules: FollowRules,
    limits: &LimitArgs,
    fault: Option<Fault>,
) -> ServerBuilder<impl Layers> {
    let rate = RateLimit::new(RateLimitConfig {
        rates: PerMethod::new(limits.rate_limit.map(Rate::per_second)),
        ..RateLimitConfig::default()
    });
    let concurrency = match limits.max_concurrency {
        Some(n) => ConcurrencyLimit::per_method(usize::try_from(n).unwrap_or(usize::MAX)),
        None => ConcurrencyLimit::new(Default::default()),
    };
    // The adaptive limit for Calc's calls, or for none.
    let adaptive_services: Vec<&str> = match limits.adaptive_limit {
        true => vec!["Calc"],
        false => vec![],
    };
    let adaptive = AdaptiveLimit::new(AdaptiveConfig::default());
    builder
        .layer(meter)
        .layer(callers)
        .layer(rules)
        .layer(rate)
        .layer(concurrency)
        .layer(Only::services(adaptive_services, adaptive))
        .layer(InjectFault::new(fault.unwrap_or_default()))
}

/// A rate: a positive number.
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("expected a positive number, got {text:?}")),
    }
}

/// A percentage: 0 to 100.
fn percent(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=100.0).contains(&value) => Ok(value),
        _ => Err(format!("expected a percentage from 0 to 100, got {text:?}")),
    }
}

/// A status of failure: its name (`data_loss`, `DataLoss`, any case) or its code.
fn status(text: &str) -> Result<Status, String> {
    match text.parse::<Status>() {
        Ok(Status::Ok) => Err(String::from("ok is not a failure")),
        Ok(status) => Ok(status),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Flags {
        #[command(flatten)]
        limits: LimitArgs,
        #[command(flatten)]
        fault: FaultArgs,
    }

    fn parse(args: &[&str]) -> Result<Flags, String> {
        Flags::try_parse_from(std::iter::once("calc").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn no_flag_asks_for_nothing() {
        let flags = parse(&[]).unwrap();
        assert_eq!(flags.fault.fault("calc"), None);
        assert_eq!(describe(&flags.limits, None), None);
    }

    #[test]
    fn the_flags_make_the_limits_and_faults_they_name() {
        let flags = parse(&[
            "--max-concurrency",
            "8",
            "--adaptive-limit",
            "--rate-limit",
            "50",
            "--fault-delay-ms",
            "200",
            "--fault-delay-percent",
            "10",
            "--fault-abort-percent",
            "5",
            "--fault-abort-status",
            "DataLoss",
        ])
        .unwrap();
        let fault = flags.fault.fault("calc-server").unwrap();
        let delay = fault.delay.clone().unwrap();
        assert_eq!(
            (delay.duration, delay.percent),
            (Duration::from_millis(200), 10.0)
        );
        let abort = fault.abort.clone().unwrap();
        assert_eq!((abort.status, abort.percent), (Status::DataLoss, 5.0));
        assert_eq!(
            abort.message,
            "calc-server: fault injected (--fault-abort-percent 5)"
        );
        assert_eq!(
            describe(&flags.limits, Some(&fault)).unwrap(),
            "at most 8 calls of each method at once, an adaptive limit on calls under way, 50 calls/s of each \
             method per caller, 10% of calls delayed 200 ms, 5% of calls failed data_loss"
        );
        // A delay alone is for every call; an abort alone is `unavailable`.
        let delay = parse(&["--fault-delay-ms", "5"])
            .unwrap()
            .fault
            .fault("c")
            .unwrap();
        assert_eq!(delay.delay.unwrap().percent, 100.0);
        let abort = parse(&["--fault-abort-percent", "1"])
            .unwrap()
            .fault
            .fault("c")
            .unwrap();
        assert_eq!(abort.abort.unwrap().status, Status::Unavailable);
    }

    #[test]
    fn bad_values_are_refused_saying_what_was_expected() {
        for (args, expected) in [
            (
                &["--fault-abort-percent", "150"][..],
                "expected a percentage from 0 to 100, got \"150\"",
            ),
            (
                &["--rate-limit", "0"],
                "expected a positive number, got \"0\"",
            ),
            (&["--max-concurrency", "0"], "0 is not in 1.."),
            (
                &["--fault-abort-percent", "5", "--fault-abort-status", "ok"],
                "ok is not a failure",
            ),
            (
                &["--fault-abort-percent", "5", "--fault-abort-status", "nope"],
                "expected a status name",
            ),
            (&["--fault-delay-percent", "5"], "--fault-delay-ms"),
            (
                &["--fault-abort-status", "internal"],
                "--fault-abort-percent",
            ),
        ] {
            let error = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert!(error.contains(expected), "{args:?}: {error}");
        }
        assert_eq!(status("13"), Ok(Status::Internal));
        assert_eq!(status("resource-exhausted"), Ok(Status::ResourceExhausted));
    }
}
