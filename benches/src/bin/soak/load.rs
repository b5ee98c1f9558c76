//! The load of a soak run: on long-lived connections, fast callers (echoes and application errors, each with
//! its next call made as soon as the last is answered) beside slow callers (calls dropped before their answer,
//! and calls past their deadline while the handler still runs); and a churner that every few seconds opens fresh connections, calls through them and drops them. Every outcome is
//! counted; one that its kind of call should never have is kept for the report.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::Status;
use serde_bytes::ByteBuf;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::service::{Refusal, SoakClient};

/// One call in this many of a fast caller is answered with the application's error (10 %).
const REFUSE_EVERY: usize = 10;
/// How long a dropped call waits for its answer before it is dropped; its handler sleeps [`DROPPED_SLEEP_MS`].
const DROP_AFTER: Duration = Duration::from_millis(1);
/// How long the handler of a dropped call sleeps.
const DROPPED_SLEEP_MS: u64 = 20;
/// The deadline of a late call; its handler sleeps [`LATE_SLEEP_MS`], far past it.
const LATE_DEADLINE: Duration = Duration::from_millis(10);
/// How long the handler of a late call sleeps.
const LATE_SLEEP_MS: u64 = 200;
/// Echo payload sizes, taken in turn.
const PAYLOADS: [usize; 4] = [16, 128, 1024, 8192];
/// Calls each churned connection makes before it is dropped.
const CHURN_CALLS: u64 = 50;
/// Unexpected outcomes kept for the report (all are counted).
const KEPT: usize = 10;

/// Turns `true` when the load must stop.
pub(crate) type Stop = watch::Receiver<bool>;

/// What happened, by kind of call.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Echoes answered with their payload.
    pub(crate) echo: AtomicU64,
    /// Calls answered with the application's error.
    pub(crate) refused: AtomicU64,
    /// Calls dropped before their answer.
    pub(crate) dropped: AtomicU64,
    /// Calls meant to be dropped whose answer came first.
    pub(crate) answered_before_drop: AtomicU64,
    /// Calls failed with `DeadlineExceeded`.
    pub(crate) late: AtomicU64,
    /// Echoes through churned connections.
    pub(crate) churn_calls: AtomicU64,
    /// Churned connections opened.
    pub(crate) churn_connections: AtomicU64,
    /// Outcomes a call of its kind should never have.
    pub(crate) unexpected: AtomicU64,
    /// The first [`KEPT`] of them.
    pub(crate) first_unexpected: Mutex<Vec<String>>,
}

impl Counts {
    /// Calls finished so far, whatever their outcome.
    pub(crate) fn calls(&self) -> u64 {
        [
            &self.echo,
            &self.refused,
            &self.dropped,
            &self.answered_before_drop,
            &self.late,
            &self.churn_calls,
            &self.unexpected,
        ]
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
    }

    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn unexpected(&self, what: String) {
        self.unexpected.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut kept) = self.first_unexpected.lock()
            && kept.len() < KEPT
        {
            kept.push(what);
        }
    }
}

/// Calls through `client` until told to stop, as fast as answers come: echoes of every payload size, and one call in
/// [`REFUSE_EVERY`] answered with the application's error. `start` staggers the callers of a connection.
pub(crate) async fn caller(client: SoakClient, stop: Stop, counts: Arc<Counts>, start: usize) {
    let payloads = PAYLOADS.map(|len| ByteBuf::from(vec![0x5a; len]));
    let mut i = start;
    while !*stop.borrow() {
        if i.is_multiple_of(REFUSE_EVERY) {
            match client.refuse(i as u64).await {
                Ok(Err(Refusal::No(n))) if n == i as u64 => Counts::add(&counts.refused),
                other => counts.unexpected(format!("refuse({i}): {other:?}")),
            }
        } else {
            let payload = &payloads[i % PAYLOADS.len()];
            match client.echo(payload.clone()).await {
                Ok(back) if back.len() == payload.len() => Counts::add(&counts.echo),
                other => counts.unexpected(format!(
                    "echo of {} bytes: {:?}",
                    payload.len(),
                    other.map(|b| b.len())
                )),
            }
        }
        i += 1;
    }
}

/// Until told to stop, alternately through `client`: a call dropped [`DROP_AFTER`] after it was made (its handler
/// sleeps [`DROPPED_SLEEP_MS`], so the drop nearly always comes first and cancels it; an answer that wins the
/// race is counted apart), and a call whose [`LATE_DEADLINE`] passes while its handler sleeps
/// [`LATE_SLEEP_MS`]. These callers wait most of their time; they keep such calls in flight beside the fast
/// ones at every moment.
pub(crate) async fn slow_caller(client: SoakClient, stop: Stop, counts: Arc<Counts>, start: usize) {
    let late = client.with_deadline(LATE_DEADLINE);
    let mut i = start;
    while !*stop.borrow() {
        if i.is_multiple_of(2) {
            match tokio::time::timeout(DROP_AFTER, client.sleep(DROPPED_SLEEP_MS)).await {
                Err(_) => Counts::add(&counts.dropped),
                Ok(Ok(_)) => Counts::add(&counts.answered_before_drop),
                Ok(Err(e)) => counts.unexpected(format!("sleep({DROPPED_SLEEP_MS}) to drop: {e}")),
            }
        } else {
            match late.sleep(LATE_SLEEP_MS).await {
                Err(e) if e.code() == Status::DeadlineExceeded => Counts::add(&counts.late),
                other => counts.unexpected(format!(
                    "sleep({LATE_SLEEP_MS}) past its deadline: {other:?}"
                )),
            }
        }
        i += 1;
    }
}

/// Until told to stop, every `every`: opens `clients` connections to `addr` at once, makes [`CHURN_CALLS`] echoes
/// through each, and drops them.
pub(crate) async fn churn(
    addr: SocketAddr,
    mut stop: Stop,
    every: Duration,
    clients: usize,
    counts: Arc<Counts>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|&stop| stop) => return,
        }
        let mut round = JoinSet::new();
        for _ in 0..clients {
            let counts = Arc::clone(&counts);
            round.spawn(async move {
                let client = match SoakClient::connect(addr).await {
                    Ok(client) => client,
                    Err(e) => return counts.unexpected(format!("churn: cannot connect: {e}")),
                };
                Counts::add(&counts.churn_connections);
                let payload = ByteBuf::from(vec![0xa5; 64]);
                for _ in 0..CHURN_CALLS {
                    match client.echo(payload.clone()).await {
                        Ok(back) if back == payload => Counts::add(&counts.churn_calls),
                        other => counts.unexpected(format!("churn echo: {other:?}")),
                    }
                }
                // Dropping the last handle closes the connection.
                drop(client);
            });
        }
        while round.join_next().await.is_some() {}
    }
}
