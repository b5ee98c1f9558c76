//! A TCP proxy on 127.0.0.1 between registry clients and a registry: it counts the connections it accepts (how
//! many connections a process opens to the registry), can hold back the answer to one call of a method for a
//! while, as a slow network or an overloaded registry would (the call itself goes through at once), and can
//! turn its clients over to another registry (as a restarted one that others reached first).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// The length of a frame's header (`docs/PROTOCOL.md`, section 2).
const HEADER_LEN: usize = 28;
/// The kind byte of a `Request`.
const REQUEST: u8 = 0x01;

/// An answer to hold back: to the next call of `method` (a method id), for `delay`.
#[derive(Clone, Copy, Debug)]
struct Hold {
    method: u32,
    delay: Duration,
}

#[derive(Debug, Default)]
struct State {
    /// The hold armed and not yet used.
    armed: Option<Hold>,
    /// The request whose answer is held back, once its call went through.
    request: Option<(u64, Duration)>,
}

/// A running proxy; it stops when dropped.
#[derive(Debug)]
pub(crate) struct Proxy {
    /// Where clients connect.
    pub(crate) addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
    held: watch::Receiver<usize>,
    /// Where new connections go.
    upstream: Arc<Mutex<SocketAddr>>,
    /// Bumped to cut every connection relayed so far.
    cut: Arc<watch::Sender<u64>>,
    task: JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Starts a proxy to `upstream` on a port the OS assigns.
    pub(crate) async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let state = Arc::new(Mutex::new(State::default()));
        let (held_tx, held) = watch::channel(0usize);
        let held_tx = Arc::new(held_tx);
        let upstream = Arc::new(Mutex::new(upstream));
        let cut = Arc::new(watch::Sender::new(0u64));
        let task = {
            let (accepted, state) = (Arc::clone(&accepted), Arc::clone(&state));
            let (upstream, cut) = (Arc::clone(&upstream), Arc::clone(&cut));
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let to = *upstream.lock().unwrap();
                    let Ok(server) = TcpStream::connect(to).await else {
                        continue;
                    };
                    // Each frame leaves at once, as the ends' own sockets send them (no Nagle delay).
                    let _ = (client.set_nodelay(true), server.set_nodelay(true));
                    let (state, held) = (Arc::clone(&state), Arc::clone(&held_tx));
                    tokio::spawn(relay(client, server, state, held, cut.subscribe()));
                }
            })
        };
        Proxy {
            addr,
            accepted,
            state,
            held,
            upstream,
            cut,
            task,
        }
    }

    /// Connections accepted so far.
    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Holds back the answer to the next call of `method` (an id, `rpc_codec::method_id`) for `delay`.
    pub(crate) fn hold_next_answer(&self, method: u32, delay: Duration) {
        self.state.lock().unwrap().armed = Some(Hold { method, delay });
    }

    /// Waits until an answer has been held back (bounded by `limit`); whether one was.
    pub(crate) async fn answer_held(&self, limit: Duration) -> bool {
        let mut held = self.held.clone();
        tokio::time::timeout(limit, held.wait_for(|n| *n > 0))
            .await
            .is_ok()
    }

    /// Sends new connections to `upstream`, and closes those relayed so far (their clients connect again).
    pub(crate) fn redirect(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap() = upstream;
        self.cut.send_modify(|n| *n += 1);
    }

    /// Answers held back so far.
    pub(crate) fn held(&self) -> usize {
        *self.held.borrow()
    }
}

/// Reads one frame: its header and its bytes (header included); `None` at the end of the stream or on an error.
async fn read_frame(from: &mut OwnedReadHalf) -> Option<([u8; HEADER_LEN], Vec<u8>)> {
    let mut header = [0u8; HEADER_LEN];
    from.read_exact(&mut header).await.ok()?;
    let metadata_len = u16::from_le_bytes([header[6], header[7]]) as usize;
    let payload_len = u32::from_le_bytes(header[24..28].try_into().unwrap()) as usize;
    let mut frame = header.to_vec();
    frame.resize(HEADER_LEN + metadata_len + payload_len, 0);
    from.read_exact(&mut frame[HEADER_LEN..]).await.ok()?;
    Some((header, frame))
}

fn request_id(header: &[u8; HEADER_LEN]) -> u64 {
    u64::from_le_bytes(header[8..16].try_into().unwrap())
}

fn method_id(header: &[u8; HEADER_LEN]) -> u32 {
    u32::from_le_bytes(header[16..20].try_into().unwrap())
}

/// Relays frames both ways until either side closes, or `cut` changes (then both connections close at once);
/// an answer held back is written after its delay, out of order with the answers that follow it (the protocol
/// allows that).
async fn relay(
    client: TcpStream,
    server: TcpStream,
    state: Arc<Mutex<State>>,
    held: Arc<watch::Sender<usize>>,
    mut cut: watch::Receiver<u64>,
) {
    let (mut client_r, client_w) = client.into_split();
    let (mut server_r, mut server_w) = server.into_split();
    let (to_client, queue) = mpsc::unbounded_channel::<Vec<u8>>();
    let writer = tokio::spawn(write_all(client_w, queue));
    let upstream = {
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            while let Some((header, frame)) = read_frame(&mut client_r).await {
                if header[3] == REQUEST {
                    let mut state = state.lock().unwrap();
                    if let Some(hold) = state.armed
                        && hold.method == method_id(&header)
                    {
                        state.armed = None;
                        state.request = Some((request_id(&header), hold.delay));
                    }
                }
                if server_w.write_all(&frame).await.is_err() {
                    return;
                }
            }
        })
    };
    loop {
        let next = tokio::select! {
            next = read_frame(&mut server_r) => next,
            _ = cut.changed() => {
                upstream.abort();
                writer.abort();
                return;
            }
        };
        let Some((header, frame)) = next else { break };
        let delay = {
            let mut state = state.lock().unwrap();
            match state.request {
                Some((id, delay)) if header[3] != REQUEST && id == request_id(&header) => {
                    state.request = None;
                    Some(delay)
                }
                _ => None,
            }
        };
        match delay {
            Some(delay) => {
                held.send_modify(|n| *n += 1);
                let to_client = to_client.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = to_client.send(frame);
                });
            }
            None => {
                if to_client.send(frame).is_err() {
                    break;
                }
            }
        }
    }
    upstream.abort();
    drop(to_client);
    let _ = writer.await;
}

async fn write_all(mut to: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(frame) = queue.recv().await {
        if to.write_all(&frame).await.is_err() {
            return;
        }
    }
}
