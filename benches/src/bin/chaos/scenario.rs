//! The scenarios of a chaos run: how many instances, their weights, service times and capacities, the offered
//! load, and what happens to which instance when.
//!
//! - `none`: 10 healthy instances, the reference.
//! - `stall`: 10 instances; one stops answering (SIGSTOP) for `--stall-secs` (30 s by default), the shape of
//!   Linkerd's benchmark.
//! - `stall-511`: 3 instances of weights 5, 1 and 1; the weight-5 one is stopped for 5 s (the SIGSTOP case of
//!   issue 15).
//! - `slow`: 10 instances, one 10 times slower than the others.
//! - `flap`: 10 instances; one is killed and started again (on a new port) every 3 s, down for 1 s each time.
//! - `overload`: 3 instances that serve 4 calls at once for 10 ms each (1,200 calls/s in all), offered 3 times
//!   that.

use std::time::Duration;

/// What happens to an instance during the load.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Event {
    Stop(usize),
    Resume(usize),
    Kill(usize),
    Restart(usize),
}

/// A scenario, made concrete.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) weights: Vec<u32>,
    pub(crate) service_times: Vec<Duration>,
    /// Calls each instance serves at once (0: no limit).
    pub(crate) capacity: usize,
    /// Calls a second.
    pub(crate) rate: u32,
    pub(crate) length: Duration,
    /// (when, from the start of the load; what).
    pub(crate) events: Vec<(Duration, Event)>,
}

/// The names `--scenario` takes.
pub(crate) const NAMES: [&str; 6] = ["none", "stall", "stall-511", "slow", "flap", "overload"];

/// The service time of a healthy instance: 1 ms.
const SERVICE: Duration = Duration::from_millis(1);

/// The plan of scenario `name`; `rate` and `length` replace its own when given, `stall` is the `stall`
/// scenario's stop.
pub(crate) fn plan(
    name: &str,
    rate: Option<u32>,
    length: Option<Duration>,
    stall: Duration,
) -> Result<Plan, String> {
    let ten = |service_times: Vec<Duration>| Plan {
        weights: vec![1; 10],
        service_times,
        capacity: 0,
        rate: 1000,
        length: Duration::from_secs(10),
        events: Vec::new(),
    };
    let at = Duration::from_secs;
    let mut plan = match name {
        "none" => ten(vec![SERVICE; 10]),
        "stall" => Plan {
            length: stall + at(4),
            events: vec![(at(1), Event::Stop(0)), (at(1) + stall, Event::Resume(0))],
            ..ten(vec![SERVICE; 10])
        },
        "stall-511" => Plan {
            weights: vec![5, 1, 1],
            service_times: vec![SERVICE; 3],
            capacity: 0,
            rate: 1000,
            length: at(8),
            events: vec![(at(1), Event::Stop(0)), (at(6), Event::Resume(0))],
        },
        "slow" => {
            let mut times = vec![SERVICE; 10];
            times[0] = SERVICE * 10;
            ten(times)
        }
        "flap" => Plan {
            length: at(12),
            events: (0..4)
                .flat_map(|i| {
                    let t = at(1 + 3 * i);
                    [(t, Event::Kill(0)), (t + at(1), Event::Restart(0))]
                })
                .collect(),
            ..ten(vec![SERVICE; 10])
        },
        "overload" => Plan {
            weights: vec![1; 3],
            service_times: vec![SERVICE * 10; 3],
            capacity: 4,
            rate: 3 * 1200,
            length: at(10),
            events: Vec::new(),
        },
        other => {
            return Err(format!(
                "no scenario {other:?}; expected one of {}",
                NAMES.join(", ")
            ));
        }
    };
    if let Some(rate) = rate {
        plan.rate = rate;
    }
    if let Some(length) = length {
        // Events past the end are dropped; the last resume or restart is kept so no instance stays down.
        plan.length = length;
        let keep = length;
        plan.events
            .retain(|(t, e)| *t < keep || matches!(e, Event::Resume(_) | Event::Restart(_)));
    }
    Ok(plan)
}

/// The capacity of a plan's instances, in calls a second (`None` without a limit).
pub(crate) fn capacity(plan: &Plan) -> Option<f64> {
    (plan.capacity > 0).then(|| {
        plan.service_times
            .iter()
            .map(|t| plan.capacity as f64 / t.as_secs_f64())
            .sum()
    })
}
