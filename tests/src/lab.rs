//! The `Lab` service: one method per behaviour the end-to-end tests observe (echo, delayed answers, a call
//! that never ends, a panic, a large argument or answer, metadata, an application error, a call relayed to
//! another server, the client's certificate names, a rendezvous of concurrent calls, an argument nested as
//! deep as the caller likes, the deadline the server saw), and counters that let a test see from the server's side what happened.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::{Context, PeerAddr, service};
use serde::{Deserialize, Serialize};

/// The application error of [`Lab::div`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MathError {
    /// The divisor was zero.
    DivisionByZero {
        /// The dividend.
        dividend: i32,
    },
}

/// A value as deep as a peer makes it: each `Node` is one level more.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Tree {
    /// The bottom.
    Leaf,
    /// One level above the rest.
    Node(Box<Tree>),
}

/// The service under test.
#[service]
pub trait Lab {
    /// Returns `n`.
    async fn echo(&self, n: u64) -> u64;
    /// Returns `n` after `ms` milliseconds.
    async fn delayed(&self, n: u64, ms: u64) -> u64;
    /// Never returns; the server-side state counts how many started and how many were dropped.
    async fn hang(&self);
    /// Panics.
    async fn boom(&self) -> u32;
    /// Returns the argument's length.
    async fn blob(&self, data: serde_bytes::ByteBuf) -> u64;
    /// Returns `data`: a large payload both ways.
    async fn mirror(&self, data: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf;
    /// Returns the `trace-id` metadata of the call.
    async fn trace_id(&self) -> Option<String>;
    /// `a / b`, or the application's error.
    async fn div(&self, a: i32, b: i32) -> Result<i32, MathError>;
    /// Blocks its thread (it never awaits) until a second `rendezvous` call is running too, at most 5 s; says
    /// whether one came. Two calls meet only if their handlers run at the same time.
    async fn rendezvous(&self) -> bool;
    /// How many byte strings came: an argument whose decoded size is many times its wire size.
    async fn tally(&self, items: Vec<Vec<u8>>) -> u64;
    /// The names of the caller's verified client certificate (mutual TLS), if any.
    async fn whoami(&self) -> Vec<String>;
    /// `len` bytes: a large answer for a small request.
    async fn fill(&self, len: u64) -> serde_bytes::ByteBuf;
    /// Calls `echo(n)` on the Lab server at `addr` and returns its answer: a handler that is a client too.
    async fn relay(&self, addr: String, n: u64) -> Result<u64, String>;
    /// The value of the call's metadata entry `key`, if it came.
    async fn header(&self, key: String) -> Option<String>;
    /// How many `Node`s deep `tree` is: an argument whose nesting a peer chooses.
    async fn depth(&self, tree: Tree) -> u64;
    /// Milliseconds left of the call's deadline as the server saw it when the call started, if it had one:
    /// what a caller's budget became on the way.
    async fn deadline_left_ms(&self) -> Option<u64>;
}

/// What the server side observed.
#[derive(Debug, Default)]
pub struct Observed {
    /// `hang` calls that started.
    pub hangs_started: AtomicUsize,
    /// `hang` calls whose future was dropped (cancelled, timed out, or the connection closed).
    pub hangs_dropped: AtomicUsize,
    /// `delayed` calls that started.
    pub delayed_started: AtomicUsize,
    /// The peer addresses calls came from.
    pub peers: Mutex<HashSet<PeerAddr>>,
    /// `rendezvous` calls that arrived.
    pub rendezvous: AtomicUsize,
}

impl Observed {
    /// How many distinct connections made calls.
    pub fn connections(&self) -> usize {
        self.peers.lock().map(|p| p.len()).unwrap_or(0)
    }
}

/// The implementation; clones share their [`Observed`].
#[derive(Clone, Debug, Default)]
pub struct LabImpl {
    /// Shared with the test.
    pub observed: Arc<Observed>,
}

struct DropCounter(Arc<Observed>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        self.0.hangs_dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl LabImpl {
    fn note_peer(&self) {
        if let Some(peer) = Context::current().and_then(|c| c.peer().cloned())
            && let Ok(mut peers) = self.observed.peers.lock()
        {
            peers.insert(peer);
        }
    }
}

impl Lab for LabImpl {
    async fn echo(&self, n: u64) -> u64 {
        self.note_peer();
        n
    }

    async fn delayed(&self, n: u64, ms: u64) -> u64 {
        self.note_peer();
        self.observed.delayed_started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        n
    }

    async fn hang(&self) {
        self.observed.hangs_started.fetch_add(1, Ordering::SeqCst);
        let _counter = DropCounter(Arc::clone(&self.observed));
        std::future::pending::<()>().await;
    }

    async fn boom(&self) -> u32 {
        panic!("the lab exploded")
    }

    async fn blob(&self, data: serde_bytes::ByteBuf) -> u64 {
        data.len() as u64
    }

    async fn mirror(&self, data: serde_bytes::ByteBuf) -> serde_bytes::ByteBuf {
        data
    }

    async fn trace_id(&self) -> Option<String> {
        Context::current().and_then(|c| c.metadata().get_str("trace-id").map(str::to_owned))
    }

    async fn div(&self, a: i32, b: i32) -> Result<i32, MathError> {
        a.checked_div(b)
            .ok_or(MathError::DivisionByZero { dividend: a })
    }

    async fn tally(&self, items: Vec<Vec<u8>>) -> u64 {
        items.len() as u64
    }

    async fn relay(&self, addr: String, n: u64) -> Result<u64, String> {
        let next = LabClient::connect(addr.as_str())
            .await
            .map_err(|e| e.to_string())?;
        next.echo(n).await.map_err(|e| e.to_string())
    }

    async fn header(&self, key: String) -> Option<String> {
        Context::current().and_then(|c| c.metadata().get_str(&key).map(str::to_owned))
    }

    async fn fill(&self, len: u64) -> serde_bytes::ByteBuf {
        serde_bytes::ByteBuf::from(vec![0x5a; len.min(1 << 24) as usize])
    }

    async fn depth(&self, tree: Tree) -> u64 {
        let (mut depth, mut at) = (0, &tree);
        while let Tree::Node(below) = at {
            depth += 1;
            at = below;
        }
        depth
    }

    async fn deadline_left_ms(&self) -> Option<u64> {
        let deadline = Context::current()?.deadline()?;
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        Some(left.as_millis() as u64)
    }

    async fn whoami(&self) -> Vec<String> {
        Context::current()
            .map(|c| c.client_names().to_vec())
            .unwrap_or_default()
    }

    async fn rendezvous(&self) -> bool {
        self.observed.rendezvous.fetch_add(1, Ordering::SeqCst);
        for _ in 0..5000 {
            if self.observed.rendezvous.load(Ordering::SeqCst) >= 2 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        false
    }
}

/// Makes `calls` calls of `mirror` at once, each with `len` bytes of its own (its index, then a pattern of it), and
/// checks that each comes back whole, as its own; at most `within` for all. The first failure, with the call's
/// index.
pub async fn mirror_many(
    client: &LabClient,
    calls: u32,
    len: usize,
    within: Duration,
) -> Result<(), String> {
    let mut running = tokio::task::JoinSet::new();
    for i in 0..calls {
        let client = client.clone();
        let mut data = vec![(i % 251) as u8; len];
        data[..4].copy_from_slice(&i.to_le_bytes());
        running.spawn(async move {
            let sent = serde_bytes::ByteBuf::from(data);
            let back = client.mirror(sent.clone()).await;
            match back {
                Ok(back) if back == sent => Ok(()),
                Ok(back) => Err(format!(
                    "call {i}: {} bytes came back, not its own {len}",
                    back.len()
                )),
                Err(e) => Err(format!("call {i}: {e}")),
            }
        });
    }
    let all = async {
        while let Some(joined) = running.join_next().await {
            joined.map_err(|e| e.to_string())??;
        }
        Ok(())
    };
    tokio::time::timeout(within, all)
        .await
        .map_err(|_| format!("not every call came back within {within:?}"))?
}
