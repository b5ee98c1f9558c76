//! The floor: raw tokio TCP echo with coalesced writes. Frames are a 4-byte little-endian length and the
//! payload. The server echoes every whole frame of each read into one buffer and writes it with one call. The
//! client keeps its share of the calls in flight on each connection with one task that writes every new request
//! of a batch with one call, and reads while a write waits. Answers come back in order, so a queue of send times
//! is all the bookkeeping there is. Nothing an RPC framework does (ids, deadlines, dispatch, serialization) is
//! done here.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use benches::server_thread::{Flavor, ServerThread};
use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::driver::{Control, Phase, Sample, Tally, gather};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 64 * 1024;

/// Starts the echo server on its own thread with a runtime of `flavor`.
pub(crate) fn start_server(flavor: Flavor) -> std::io::Result<ServerThread> {
    ServerThread::spawn_on("raw-server", flavor, |listener| async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream));
        }
    })
}

async fn serve(mut stream: TcpStream) {
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let mut output = Vec::with_capacity(READ_CHUNK);
    loop {
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        match stream.read_buf(&mut input).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let whole = whole_frames(&input);
        output.extend_from_slice(&input[..whole]);
        input.advance(whole);
        if stream.write_all(&output).await.is_err() {
            return;
        }
        output.clear();
    }
}

/// The length of the whole frames at the start of `buf`.
fn whole_frames(buf: &[u8]) -> usize {
    let mut at = 0;
    while let Some(prefix) = buf.get(at..at + 4) {
        let len = u32::from_le_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if buf.len() - at - 4 < len {
            break;
        }
        at += 4 + len;
    }
    at
}

/// `concurrency` calls in flight, spread over `connections` connections; warm-up, then the measured window.
pub(crate) async fn closed_loop(
    addr: SocketAddr,
    concurrency: usize,
    connections: usize,
    payload: Bytes,
    warm_up: Duration,
    measure: Duration,
) -> Sample {
    let control = Control::new();
    let mut frame = Vec::with_capacity(4 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&payload);
    let frame: Arc<[u8]> = frame.into();
    let mut tasks = Vec::new();
    for c in 0..connections {
        // An even share, the first connections taking the remainder.
        let window = concurrency / connections + usize::from(c < concurrency % connections);
        let (control, frame) = (Arc::clone(&control), Arc::clone(&frame));
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::new();
            if let Err(e) = connection(addr, window, &frame, &control, &mut tally).await {
                tally.fail(e);
            }
            tally
        }));
    }
    let (elapsed, cpu) = control.time_window(warm_up, measure).await;
    gather(tasks).await.into_sample(elapsed, cpu)
}

/// One connection with `window` calls in flight until the recorder says stop; then its calls drain. While a
/// write is pending the connection keeps reading: with a window larger than the sockets' buffers (128 calls of
/// 64 KiB), a client that only wrote would wait on a server waiting on it to read its answers.
async fn connection(
    addr: SocketAddr,
    window: usize,
    frame: &[u8],
    control: &Control,
    tally: &mut Tally,
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
    let (mut reader, mut writer) = stream.split();
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(window);
    let mut output = Vec::with_capacity(window * frame.len());
    // How much of `output` is written.
    let mut written = 0;
    let mut input = BytesMut::with_capacity(READ_CHUNK);
    let now = Instant::now();
    for _ in 0..window {
        output.extend_from_slice(frame);
        sent.push_back(now);
    }
    loop {
        if sent.is_empty() {
            return Ok(());
        }
        if input.capacity() - input.len() < READ_CHUNK / 4 {
            input.reserve(READ_CHUNK);
        }
        let read = if written < output.len() {
            // Both are cancel-safe: the branch that loses did nothing.
            tokio::select! {
                biased;
                wrote = writer.write(&output[written..]) => {
                    written += wrote.map_err(|e| format!("write failed: {e}"))?;
                    if written == output.len() {
                        output.clear();
                        written = 0;
                    }
                    continue;
                }
                read = reader.read_buf(&mut input) => read,
            }
        } else {
            reader.read_buf(&mut input).await
        };
        match read {
            Ok(0) => return Err(String::from("the server closed the connection")),
            Ok(_) => {}
            Err(e) => return Err(format!("read failed: {e}")),
        }
        let now = Instant::now();
        let whole = whole_frames(&input);
        let answers = whole / frame.len();
        if !whole.is_multiple_of(frame.len()) {
            return Err(format!(
                "answers of {whole} bytes are not whole echoes of {} bytes",
                frame.len()
            ));
        }
        input.advance(whole);
        let phase = control.phase();
        let more = phase != Phase::Stop;
        // What is written is done with; new requests go after what is not.
        output.drain(..written);
        written = 0;
        for _ in 0..answers {
            let Some(at) = sent.pop_front() else {
                return Err(String::from("more answers than calls"));
            };
            tally.ok(phase, now - at);
            if more {
                output.extend_from_slice(frame);
                sent.push_back(now);
            }
        }
    }
}
