//! The load of a chaos run: calls at a fixed rate (an open loop: a slow answer does not slow the next call, as
//! with users who do not wait for each other), each with the run's deadline, recorded as they end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::service::ChaosClient;

/// One call as it ended: when it started and ended (from the start of the load) and whether it succeeded.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ended {
    pub(crate) started: Duration,
    pub(crate) latency: Duration,
    pub(crate) ok: bool,
}

/// The calls of one load, as they ended.
#[derive(Default)]
pub(crate) struct Record {
    pub(crate) calls: Vec<Ended>,
    /// The first few distinct errors, for the report.
    pub(crate) errors: Vec<String>,
}

/// Calls `client` `rate` times a second for `length` with `deadline` each (keyed by the call's number modulo
/// 1000, for policies that hash), and returns what happened; calls still running at the end are awaited.
pub(crate) async fn run(
    client: ChaosClient,
    rate: u32,
    length: Duration,
    deadline: Duration,
) -> Record {
    let record = Arc::new(Mutex::new(Record::default()));
    let mut calls = JoinSet::new();
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let mut ticks = tokio::time::interval(period);
    // Calls missed while the driver was busy go at once: the offered load stays what was asked.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let start = Instant::now();
    let total = (length.as_secs_f64() * f64::from(rate)) as u64;
    for n in 0..total {
        ticks.tick().await;
        let client = client
            .with_deadline(deadline)
            .with_hash_key((n % 1000).to_le_bytes());
        let record = Arc::clone(&record);
        calls.spawn(async move {
            let began = Instant::now();
            let result = client.work(n).await;
            let ended = Ended {
                started: began.duration_since(start),
                latency: began.elapsed(),
                ok: result == Ok(n),
            };
            let mut record = record.lock().unwrap();
            record.calls.push(ended);
            if let Err(e) = result
                && record.errors.len() < 5
            {
                let text = e.to_string();
                let text: String = text.chars().take(200).collect();
                if !record.errors.contains(&text) {
                    record.errors.push(text);
                }
            }
        });
        // Reap what ended, so that the set does not grow with the whole run.
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    Arc::try_unwrap(record)
        .map(|m| m.into_inner().unwrap())
        .unwrap_or_default()
}
