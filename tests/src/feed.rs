//! The `Feed` service: one method of each kind of stream (protocol 1.1), and a producer that notes how far it
//! got and when it was dropped, so that tests can see a cancel reach it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use rpc_core::{Server, ServerConfig, Stream, Streaming, service};
use tokio::net::TcpListener;

/// Streams of every kind.
#[service]
pub trait Feed {
    /// The numbers `from..from + n`, as fast as the client takes them.
    async fn count(&self, from: u64, n: u64) -> impl Stream<Item = u64>;
    /// `n` blocks of `size` bytes each, as fast as the client takes them.
    async fn blocks(&self, n: u64, size: u32) -> impl Stream<Item = serde_bytes::ByteBuf>;
    /// `0..n`, with every multiple of 3 the application's error.
    async fn checked(&self, n: u32) -> impl Stream<Item = Result<u32, String>>;
    /// `n` items, then a panic in the producer.
    async fn breaks(&self, n: u32) -> impl Stream<Item = u32>;
    /// One item each `every_ms` (0: as fast as the client takes them), without end; notes each item made and
    /// the producer's drop.
    async fn forever(&self, every_ms: u64) -> impl Stream<Item = u64>;
    /// The sum of the client's items, or the application's error if one is 0.
    async fn sum(&self, items: Streaming<u64>) -> Result<u64, String>;
    /// Each of the client's lines with `prefix`, as they come.
    async fn echo(&self, prefix: String, lines: Streaming<String>) -> impl Stream<Item = String>;
    /// Hands the client's stream to a task of its own, which notes how it ended, and answers 0 at once.
    async fn detach(&self, items: Streaming<u64>) -> u32;
    /// Holds the client's stream without reading it, until the call is cancelled.
    async fn hold(&self, items: Streaming<u64>) -> u32;
    /// A unary method beside the streams.
    async fn ping(&self, n: u32) -> u32;
}

/// What the `forever` producer did.
#[derive(Debug, Default)]
pub struct Produced {
    /// Items it made.
    pub items: AtomicU64,
    /// It was dropped (the stream was cancelled or ended).
    pub dropped: AtomicBool,
}

/// The implementation, sharing what its producers did.
#[derive(Clone, Debug, Default)]
pub struct FeedImpl {
    /// What the `forever` producers did.
    pub produced: Arc<Produced>,
    /// How the reader `detach` left behind ended: `ended`, or the error's status and message.
    pub detached: Arc<std::sync::Mutex<Option<String>>>,
}

/// Notes the producer's drop.
struct OnDrop(Arc<Produced>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.dropped.store(true, Ordering::SeqCst);
    }
}

impl Feed for FeedImpl {
    async fn count(&self, from: u64, n: u64) -> impl Stream<Item = u64> {
        futures_util::stream::iter(from..from + n)
    }

    async fn blocks(&self, n: u64, size: u32) -> impl Stream<Item = serde_bytes::ByteBuf> {
        let block = serde_bytes::ByteBuf::from(vec![7u8; size as usize]);
        futures_util::stream::iter((0..n).map(move |_| block.clone()))
    }

    async fn checked(&self, n: u32) -> impl Stream<Item = Result<u32, String>> {
        futures_util::stream::iter((0..n).map(|i| match i % 3 {
            0 => Err(format!("{i} is a multiple of 3")),
            _ => Ok(i),
        }))
    }

    async fn breaks(&self, n: u32) -> impl Stream<Item = u32> {
        futures_util::stream::iter(0..=n).map(move |i| {
            assert!(i < n, "the producer broke after {n} items");
            i
        })
    }

    async fn forever(&self, every_ms: u64) -> impl Stream<Item = u64> {
        let produced = Arc::clone(&self.produced);
        let guard = OnDrop(Arc::clone(&produced));
        futures_util::stream::unfold((0u64, guard), move |(i, guard)| {
            let produced = Arc::clone(&produced);
            async move {
                if every_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(every_ms)).await;
                }
                produced.items.fetch_add(1, Ordering::SeqCst);
                Some((i, (i + 1, guard)))
            }
        })
    }

    async fn sum(&self, mut items: Streaming<u64>) -> Result<u64, String> {
        let mut total = 0u64;
        while let Some(item) = items.next().await {
            match item {
                Ok(0) => return Err(String::from("a zero item")),
                Ok(n) => total += n,
                Err(e) => return Err(format!("the stream failed: {e}")),
            }
        }
        Ok(total)
    }

    async fn echo(&self, prefix: String, lines: Streaming<String>) -> impl Stream<Item = String> {
        lines.map(move |line| match line {
            Ok(line) => format!("{prefix}{line}"),
            Err(e) => format!("error: {e}"),
        })
    }

    async fn detach(&self, mut items: Streaming<u64>) -> u32 {
        let detached = Arc::clone(&self.detached);
        tokio::spawn(async move {
            let ended = loop {
                match items.next().await {
                    Some(Ok(_)) => {}
                    Some(Err(e)) => break format!("{:?}: {}", e.code(), e.message()),
                    None => break String::from("ended"),
                }
            };
            *detached.lock().unwrap() = Some(ended);
        });
        0
    }

    async fn hold(&self, items: Streaming<u64>) -> u32 {
        let _held = items;
        std::future::pending().await
    }

    async fn ping(&self, n: u32) -> u32 {
        n
    }
}

/// Serves `feed` with `config` on 127.0.0.1 at a port the OS assigns; the server runs until the runtime ends.
pub async fn serve_feed(feed: FeedImpl, config: ServerConfig) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .config(config)
        .add_service(FeedServer::new(feed))
        .build()
        .expect("the server builds");
    tokio::spawn(server.serve(listener));
    addr
}
