//! What a server sheds ([`Limit`]): calls of some methods past a number at once, or past a rate, counted for
//! every caller together or for each caller apart. Excess calls are refused at once with `ResourceExhausted`.

use serde::{Deserialize, Serialize};

use super::{CallerPattern, MethodPattern, Problem};

/// The highest rate a limit may set: 10 million calls a second.
pub const MAX_RATE_PER_SECOND: f64 = 1e7;

/// A limit on the calls of some methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limit {
    /// The methods it counts (`div`, or `*`).
    pub methods: Vec<MethodPattern>,
    /// The callers it counts (every caller if left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub callers: Vec<CallerPattern>,
    /// Counted for each caller apart (each has the whole limit), or for all together (the default).
    #[serde(default)]
    pub per_caller: bool,
    /// Calls at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Calls a second (a token bucket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// Calls the bucket holds (the rate's one second's worth unless given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl Limit {
    pub(super) fn check(&self, at: &str, problems: &mut Vec<Problem>) {
        if self.methods.is_empty() {
            problems.push(Problem::new(
                format!("{at}.methods"),
                "a limit names its methods (`*` for all)",
            ));
        }
        if self.max_concurrency.is_none() && self.rate_per_second.is_none() {
            problems.push(Problem::new(
                at.to_owned(),
                "expected `max_concurrency` or `rate_per_second` (or both)",
            ));
        }
        if self.max_concurrency == Some(0) {
            problems.push(Problem::new(
                format!("{at}.max_concurrency"),
                "0 would refuse every call; expected at least 1",
            ));
        }
        if let Some(rate) = self.rate_per_second
            && !(rate > 0.0 && rate <= MAX_RATE_PER_SECOND)
        {
            let problem =
                format!("expected more than 0 and at most {MAX_RATE_PER_SECOND}, found {rate}");
            problems.push(Problem::new(format!("{at}.rate_per_second"), problem));
        }
        if self.burst.is_some() && self.rate_per_second.is_none() {
            problems.push(Problem::new(
                format!("{at}.burst"),
                "a burst without `rate_per_second`",
            ));
        }
    }
}
