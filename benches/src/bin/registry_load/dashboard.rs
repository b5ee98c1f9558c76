//! An open dashboard, as the page at `/` behaves: it fetches `/v1/overview` (the registry's default page of
//! instances), then long-polls it from the revision it shows, with the wait the page computes (until just
//! before the first instance it shows that is up would look late, at most 5 s, counted from the last answer),
//! pausing up to `pause` after an answer (the page's `POLL_MIN_MS`, 250 ms; 0 polls again at once, as the
//! page did before it paged), and reads every answer in full. The page's JSON is parsed for what the page's
//! polling needs; the rest is counted in bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

/// The page's longest wait (`POLL_MAX_MS`).
const POLL_MAX: Duration = Duration::from_secs(5);

/// What the dashboards count.
#[derive(Default)]
pub(crate) struct Polls {
    pub(crate) answered: AtomicU64,
    pub(crate) bytes: AtomicU64,
    pub(crate) failed: AtomicU64,
}

#[derive(Deserialize)]
struct Overview {
    epoch: String,
    revision: u64,
    ttl_ms: u64,
    services: Vec<Service>,
}

#[derive(Deserialize)]
struct Service {
    instances: Vec<Instance>,
}

#[derive(Deserialize)]
struct Instance {
    state: String,
    heartbeat_age_ms: u64,
}

/// The page's `margin()`: how long before an instance would look late the page asks again.
fn margin(view: &Overview) -> f64 {
    (view.ttl_ms as f64 / 12.0).min(150.0)
}

/// The page's `untilLate()`, in milliseconds from `fetched`: until just before the first up instance shown
/// would look late.
fn until_late(view: &Overview, fetched: Instant) -> f64 {
    let ttl = view.ttl_ms as f64;
    let mut until = POLL_MAX.as_millis() as f64;
    for s in &view.services {
        for i in &s.instances {
            if i.state == "up" {
                until = until.min(ttl / 2.0 - i.heartbeat_age_ms as f64 - margin(view));
            }
        }
    }
    until - fetched.elapsed().as_secs_f64() * 1000.0
}

/// `GET path` over a new connection; the body.
pub(crate) async fn get(http: SocketAddr, path: &str) -> Result<Vec<u8>, String> {
    get_as(http, path, "HTTP/1.1").await
}

/// `GET path` over a new connection in HTTP `version` (`HTTP/1.0` for a server that would otherwise answer
/// in chunks); the body of a `200` answer.
pub(crate) async fn get_as(http: SocketAddr, path: &str, version: &str) -> Result<Vec<u8>, String> {
    let mut stream = TcpStream::connect(http)
        .await
        .map_err(|e| format!("cannot connect to {http}: {e}"))?;
    let request = format!("GET {path} {version}\r\nHost: {http}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of headers in the answer")?;
    if !answer.starts_with(b"HTTP/1.1 200") && !answer.starts_with(b"HTTP/1.0 200") {
        return Err(String::from_utf8_lossy(&answer[..split]).into_owned());
    }
    Ok(answer.split_off(split + 4))
}

/// Polls as an open page does while `open` is true; waits while it is false; returns when `open` closes.
pub(crate) async fn page(
    http: SocketAddr,
    pause: Duration,
    polls: Arc<Polls>,
    mut open: watch::Receiver<bool>,
) {
    loop {
        if open.wait_for(|&open| open).await.is_err() {
            return;
        }
        let mut view: Option<(Overview, Instant)> = None;
        while *open.borrow() {
            let path = match &view {
                None => String::from("/v1/overview"),
                Some((v, fetched)) => format!(
                    "/v1/overview?epoch={}&since={}&wait_ms={}",
                    v.epoch,
                    v.revision,
                    until_late(v, *fetched).max(margin(v)).round()
                ),
            };
            let sent = Instant::now();
            let answer = tokio::select! {
                answer = get(http, &path) => answer,
                _ = open.wait_for(|&open| !open) => break,
            };
            match answer.and_then(|body| {
                polls.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
                serde_json::from_slice::<Overview>(&body).map_err(|e| e.to_string())
            }) {
                Ok(next) => {
                    polls.answered.fetch_add(1, Ordering::Relaxed);
                    let fetched = Instant::now();
                    // After a quick answer, the page's pause, never past the moment an instance would look late.
                    let rest = (pause.as_secs_f64() * 1000.0
                        - sent.elapsed().as_secs_f64() * 1000.0)
                        .min(until_late(&next, fetched) - margin(&next));
                    view = Some((next, fetched));
                    if rest > 0.0 {
                        tokio::time::sleep(Duration::from_secs_f64(rest / 1000.0)).await;
                    }
                }
                Err(_) => {
                    polls.failed.fetch_add(1, Ordering::Relaxed);
                    let pause = Instant::now() + Duration::from_secs(1);
                    tokio::time::sleep_until(pause).await;
                }
            }
        }
    }
}
