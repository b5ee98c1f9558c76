//! The counts behind the `limits` of the rules a server follows: for each limit, the calls under way and a token
//! bucket, for every caller together or for each caller apart (at most [`DEFAULT_MAX_CALLERS`] callers a
//! limit; past it, the callers not yet tracked share one count). They are made afresh when the rules change.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::super::concurrency::Permit;
use crate::rules::Limit;
use crate::server::layer::DEFAULT_MAX_CALLERS;

/// The key of the callers a limit counts together, and of the callers past [`DEFAULT_MAX_CALLERS`].
const TOGETHER: &str = "";

/// The counts of one revision of the rules.
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// The rules they count for (by address: a new revision is a new `Arc`).
    pub(super) of: usize,
    limits: Vec<Mutex<LimitCounts>>,
}

#[derive(Debug, Default)]
struct LimitCounts {
    in_flight: HashMap<String, Arc<AtomicUsize>>,
    buckets: HashMap<String, Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Why a call was shed: the limit, and what it allows.
pub(super) struct Shed {
    pub(super) limit: usize,
    pub(super) what: String,
}

impl Counts {
    /// Counts for `limits` of the rules at `of`.
    pub(super) fn new(of: usize, limits: &[Limit]) -> Counts {
        Counts {
            of,
            limits: limits.iter().map(|_| Mutex::default()).collect(),
        }
    }

    /// Takes the call's places under `limits` that apply to it (of `method`, from `identity`, which
    /// `matches` a limit's callers), or says which limit sheds it; the places are given back when dropped.
    pub(super) fn admit(
        &self,
        limits: &[Limit],
        method: &str,
        identity: &str,
        caller_matches: impl Fn(&Limit) -> bool,
        now: Instant,
    ) -> Result<Vec<Permit>, Shed> {
        let mut permits = Vec::new();
        for (i, (limit, counts)) in limits.iter().zip(&self.limits).enumerate() {
            if !limit.methods.iter().any(|m| m.matches(method)) || !caller_matches(limit) {
                continue;
            }
            let mut counts = crate::sync::lock(counts);
            let key = if limit.per_caller { identity } else { TOGETHER };
            if let Some(rate) = limit.rate_per_second {
                let burst = limit.burst.map_or(rate.max(1.0), f64::from);
                let tracked = counts.buckets.len();
                let key = if tracked >= DEFAULT_MAX_CALLERS && !counts.buckets.contains_key(key) {
                    TOGETHER
                } else {
                    key
                };
                let bucket = counts.buckets.entry(key.to_owned()).or_insert(Bucket {
                    tokens: burst,
                    at: now,
                });
                let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
                bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
                bucket.at = now;
                if bucket.tokens < 1.0 {
                    return Err(Shed {
                        limit: i,
                        what: format!("{rate} calls a second{}", per(limit)),
                    });
                }
                bucket.tokens -= 1.0;
            }
            if let Some(max) = limit.max_concurrency {
                let tracked = counts.in_flight.len();
                let key = if tracked >= DEFAULT_MAX_CALLERS && !counts.in_flight.contains_key(key) {
                    TOGETHER
                } else {
                    key
                };
                let count = counts.in_flight.entry(key.to_owned()).or_default();
                match Permit::take(count, max as usize) {
                    Some(permit) => permits.push(permit),
                    None => {
                        return Err(Shed {
                            limit: i,
                            what: format!("{max} calls at once{}", per(limit)),
                        });
                    }
                }
            }
        }
        Ok(permits)
    }
}

fn per(limit: &Limit) -> &'static str {
    if limit.per_caller { " per caller" } else { "" }
}

/// How long a call shed by a rate waits before it is worth sending again: a token's time.
pub(super) fn retry_after(limit: &Limit) -> Duration {
    match limit.rate_per_second {
        Some(rate) if rate > 0.0 => Duration::from_secs_f64((1.0 / rate).min(1.0)),
        _ => super::super::DEFAULT_CONCURRENCY_RETRY_AFTER,
    }
}
