//! The timing of a connection's limits, pinned on paused time over an in-memory pipe (no socket, so the paused
//! clock moves only when every task waits, and silence proves absence): a frame cut exactly at `frame_timeout`
//! after its first byte, a peer that does not read cut exactly at `write_timeout` after the server began to wait
//! for it, and an idle connection told go-away within a quarter of `idle_timeout` after it while a connection
//! with a call in flight never is.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use rpc_codec::{Frame, FrameCodec, Header, Kind, Status};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::codec::Decoder;

use super::admission::{Admission, Admitted};
use super::connection::{self, Accepted};
use super::layer::{Metered, Own};
use super::registry::Registry;
use super::{Call, Dispatch, Dispatched, Peer, ServerConfig, Service};
use crate::method::MethodInfo;

/// A server connection (serving `Hang`) at the far end of an in-memory pipe of `pipe` bytes each way.
struct Served {
    peer: DuplexStream,
    task: JoinHandle<()>,
    /// Kept: dropping it would start the server's drain.
    _shutdown: watch::Sender<bool>,
}

/// `Hang.hang`, a method that never returns.
const HANG: MethodInfo = MethodInfo {
    service: "Hang",
    name: "hang",
    id: 0x4a4e_4748,
    idempotent: false,
};

/// A service whose one method never returns: a call to it stays in flight.
struct Hang;

impl Service for Hang {
    fn name(&self) -> &'static str {
        "Hang"
    }

    fn methods(&self) -> &'static [MethodInfo] {
        std::slice::from_ref(&HANG)
    }

    fn dispatch(&self, call: Call<'_>) -> Dispatched {
        call.spawn(&HANG, std::future::pending::<()>())
    }
}

fn serve(config: ServerConfig, pipe: usize) -> Served {
    let (peer, server) = tokio::io::duplex(pipe);
    let services: Vec<Arc<dyn Service>> = vec![Arc::new(Hang)];
    let registry = Arc::new(Registry::new(services).expect("one service, no collision"));
    let Admitted::Slot(slot) = Admission::new(&config).admit() else {
        panic!("the first connection is admitted");
    };
    let (shutdown, draining) = watch::channel(false);
    let (reader, writer) = tokio::io::split(server);
    let accepted = Accepted {
        peer: Arc::new(Peer::default()),
        slot,
    };
    let dispatch = Dispatch::new(Arc::clone(&registry), &config.codec);
    let own = Own::new(
        Metered::default(),
        Arc::new(AtomicBool::new(false)),
        config.max_in_flight_per_connection,
    );
    let task = tokio::spawn(connection::run::<_, _, tower_layer::Identity>(
        reader,
        writer,
        accepted,
        registry,
        (own, dispatch),
        Arc::new(config),
        draining,
    ));
    Served {
        peer,
        task,
        _shutdown: shutdown,
    }
}

/// The bytes of a request `id` with no arguments.
fn request(id: u64) -> Vec<u8> {
    Header::request(id, 7).to_bytes(0, 0).to_vec()
}

/// Every frame the server sent, up to its close.
async fn frames_until_closed(peer: &mut DuplexStream) -> Vec<Frame> {
    let mut bytes = Vec::new();
    tokio::time::timeout(Duration::from_secs(1), peer.read_to_end(&mut bytes))
        .await
        .expect("the server closed the pipe")
        .expect("the pipe reads");
    let mut bytes = bytes::BytesMut::from(bytes.as_slice());
    let mut codec = FrameCodec::default();
    let mut frames = Vec::new();
    // A connection cut while its writer was blocked may end inside a frame: the whole frames before count.
    while let Some(item) = codec
        .decode(&mut bytes)
        .expect("the server's frames decode")
    {
        match item {
            rpc_codec::Received::Frame(frame) => frames.push(frame),
            rpc_codec::Received::Refused(r) => panic!("a frame over the limits: {r:?}"),
        }
    }
    frames
}

/// Waits until `task` ends (at most `limit`), on the paused clock; how long that took.
async fn ends_within(task: &mut JoinHandle<()>, limit: Duration) -> Duration {
    let start = Instant::now();
    tokio::time::timeout(limit, task)
        .await
        .expect("the connection ended")
        .expect("the connection's task did not panic");
    start.elapsed()
}

#[tokio::test(start_paused = true)]
async fn a_slow_frame_is_cut_at_the_frame_timeout_after_its_first_byte() {
    let frame_timeout = Duration::from_secs(20);
    let config = ServerConfig {
        frame_timeout,
        ..ServerConfig::default()
    };
    let mut served = serve(config, 64 * 1024);
    // The connection's own timer runs from its start; the frame begins out of step with it.
    tokio::time::sleep(Duration::from_millis(5_001)).await;
    // A whole frame, then the first bytes of the next: the slow frame began in this write.
    let mut bytes = request(1);
    bytes.extend_from_slice(&request(2)[..10]);
    served.peer.write_all(&bytes).await.unwrap();
    let first_byte = Instant::now();
    // The rest of that frame, 19 s later: it arrived within its time, so it is served.
    tokio::time::sleep(Duration::from_secs(19)).await;
    let mut bytes = request(2)[10..].to_vec();
    // And a third frame begins: its time runs from now, not from the second's first byte.
    bytes.extend_from_slice(&request(3)[..5]);
    served.peer.write_all(&bytes).await.unwrap();
    let third_first_byte = Instant::now();
    assert!(first_byte.elapsed() < frame_timeout);
    tokio::time::sleep_until(first_byte + frame_timeout + Duration::from_secs(1)).await;
    assert!(
        !served.task.is_finished(),
        "the second frame was whole in time"
    );
    // Not before the frame timeout...
    tokio::time::sleep_until(third_first_byte + frame_timeout - Duration::from_millis(1)).await;
    assert!(!served.task.is_finished(), "cut before the frame timeout");
    // ...and not after it either.
    let took = ends_within(&mut served.task, Duration::from_secs(10)).await;
    let cut_at = third_first_byte.elapsed();
    assert!(
        cut_at >= frame_timeout && cut_at <= frame_timeout + Duration::from_millis(1),
        "cut {cut_at:?} after the frame's first byte (waited {took:?} more)"
    );
    let frames = frames_until_closed(&mut served.peer).await;
    let kinds: Vec<(Kind, u64)> = frames
        .iter()
        .map(|f| (f.header.kind, f.header.request_id))
        .collect();
    assert_eq!(
        kinds,
        [(Kind::Error, 1), (Kind::Error, 2), (Kind::Error, 0)],
        "two answers (no such method), then the cut: {frames:?}"
    );
    let cut = &frames[2];
    assert_eq!(cut.header.status, Status::ResourceExhausted);
    assert!(
        cut.message().contains("frame_timeout"),
        "{:?}",
        cut.message()
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_does_not_read_is_cut_at_the_write_timeout() {
    let write_timeout = Duration::from_secs(30);
    let config = ServerConfig {
        write_timeout,
        max_pending_output: 1024,
        ..ServerConfig::default()
    };
    let mut served = serve(config, 64 * 1024);
    // 2,000 requests (56,000 bytes, within the pipe's 64 KiB) whose answers (about 70 bytes each, 140 KB) fill
    // the pipe back and the server's queue: the server stops taking requests and waits for the peer to read.
    let requests: Vec<u8> = (1..=2000).flat_map(request).collect();
    served.peer.write_all(&requests).await.unwrap();
    let stalled = Instant::now();
    tokio::time::sleep(write_timeout - Duration::from_millis(1)).await;
    assert!(!served.task.is_finished(), "cut before the write timeout");
    let _ = ends_within(&mut served.task, Duration::from_secs(10)).await;
    let cut_at = stalled.elapsed();
    assert!(
        cut_at >= write_timeout && cut_at <= write_timeout + Duration::from_millis(1),
        "cut {cut_at:?} after the server began to wait"
    );
    // What the server wrote before it gave up is there to read, in order; then the pipe is closed.
    let frames = frames_until_closed(&mut served.peer).await;
    assert!(
        frames.len() > 500 && frames.len() < 2000,
        "{} answers",
        frames.len()
    );
    for (id, frame) in (1..).zip(&frames) {
        assert_eq!(
            (frame.header.kind, frame.header.request_id),
            (Kind::Error, id)
        );
    }
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_told_go_away_and_one_with_a_call_in_flight_never_is() {
    let idle_timeout = Duration::from_secs(60);
    let config = ServerConfig {
        idle_timeout,
        ..ServerConfig::default()
    };
    let mut idle = serve(config.clone(), 64 * 1024);
    let mut busy = serve(config, 64 * 1024);
    // The idle connection's last read: a request to a method that does not exist (answered at once).
    idle.peer.write_all(&request(1)).await.unwrap();
    let quiet_since = Instant::now();
    let hang = Header::request(1, HANG.id).to_bytes(0, 0);
    busy.peer.write_all(&hang).await.unwrap();
    tokio::time::sleep_until(quiet_since + idle_timeout - Duration::from_millis(1)).await;
    assert!(!idle.task.is_finished(), "closed before the idle timeout");
    ends_within(&mut idle.task, idle_timeout).await;
    let closed_after = quiet_since.elapsed();
    assert!(
        closed_after >= idle_timeout && closed_after <= idle_timeout + idle_timeout / 4,
        "closed {closed_after:?} after its last read"
    );
    let frames = frames_until_closed(&mut idle.peer).await;
    let heads: Vec<(Kind, u64, Status)> = frames
        .iter()
        .map(|f| (f.header.kind, f.header.request_id, f.header.status))
        .collect();
    assert_eq!(
        heads,
        [
            (Kind::Error, 1, Status::Unimplemented),
            (Kind::GoAway, 1, Status::Ok)
        ]
    );
    assert!(
        frames[1].message().contains("idle_timeout"),
        "{:?}",
        frames[1].message()
    );
    // Ten idle timeouts later, the connection with a call in flight is still served.
    tokio::time::sleep(idle_timeout * 10).await;
    assert!(
        !busy.task.is_finished(),
        "a connection with a call in flight was closed as idle"
    );
    busy.peer
        .write_all(&Header::ping(5).to_bytes(0, 0))
        .await
        .unwrap();
    let mut pong = [0u8; rpc_codec::HEADER_LEN];
    busy.peer.read_exact(&mut pong).await.unwrap();
    assert_eq!(pong, Header::pong(5).to_bytes(0, 0));
}
