//! The floor: raw tokio TCP. A request is 12 bytes (the count of chunks, u64, and their size, u32, both
//! little-endian); the server answers with that many chunks, each a 4-byte little-endian length and the bytes,
//! copied into one output buffer and written with one call once it holds 64 KiB or more (so a 64 KiB chunk is
//! one write, and small ones are coalesced). The client reads into one buffer and counts whole chunks. No ids,
//! no flow control beyond TCP's, no serialization: what a stream costs at the least.

use std::net::SocketAddr;
use std::sync::Arc;

use benches::server_thread::ServerThread;
use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use crate::run::{Drained, Source};
use crate::workload::block;

/// Bytes the server gathers before a write, and the client asks of the socket at least per read: 64 KiB.
const CHUNK: usize = 64 * 1024;
/// The length of a request.
const REQUEST_LEN: usize = 12;

/// Starts the server on its own thread with a current-thread runtime.
pub(crate) fn start_server() -> std::io::Result<ServerThread> {
    ServerThread::spawn("raw-server", |listener| async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve(stream));
        }
    })
}

/// Answers each request of the connection with its chunks, until the client closes it.
async fn serve(mut stream: TcpStream) {
    let mut request = [0u8; REQUEST_LEN];
    let mut output = Vec::with_capacity(2 * CHUNK);
    while stream.read_exact(&mut request).await.is_ok() {
        let n = u64::from_le_bytes(request[..8].try_into().expect("8 bytes"));
        let size = u32::from_le_bytes(request[8..].try_into().expect("4 bytes"));
        let chunk = block(size);
        for _ in 0..n {
            output.extend_from_slice(&size.to_le_bytes());
            output.extend_from_slice(&chunk);
            if output.len() >= CHUNK {
                if stream.write_all(&output).await.is_err() {
                    return;
                }
                output.clear();
            }
        }
        if stream.write_all(&output).await.is_err() {
            return;
        }
        output.clear();
    }
}

/// A client over one connection; clones share it, one stream at a time.
#[derive(Clone)]
pub(crate) struct Client {
    stream: Arc<Mutex<(TcpStream, BytesMut)>>,
}

impl Client {
    /// Connects to `addr`, TCP_NODELAY set.
    pub(crate) async fn connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
        stream
            .set_nodelay(true)
            .map_err(|e| format!("cannot set TCP_NODELAY: {e}"))?;
        let input = BytesMut::with_capacity(4 * CHUNK);
        Ok(Client {
            stream: Arc::new(Mutex::new((stream, input))),
        })
    }
}

impl Source for Client {
    async fn drain(&self, n: u64, size: u32) -> Result<Drained, String> {
        let mut guard = self.stream.lock().await;
        let (stream, input) = &mut *guard;
        let mut request = [0u8; REQUEST_LEN];
        request[..8].copy_from_slice(&n.to_le_bytes());
        request[8..].copy_from_slice(&size.to_le_bytes());
        stream
            .write_all(&request)
            .await
            .map_err(|e| format!("write failed: {e}"))?;
        let mut drained = Drained::default();
        while drained.items < n {
            if input.capacity() - input.len() < CHUNK {
                input.reserve(4 * CHUNK);
            }
            match stream.read_buf(input).await {
                Ok(0) => return Err(String::from("the server closed the connection")),
                Ok(_) => {}
                Err(e) => return Err(format!("read failed: {e}")),
            }
            while let Some(prefix) = input.get(..4) {
                let len = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
                if input.len() - 4 < len {
                    break;
                }
                input.advance(4 + len);
                drained.items += 1;
                drained.bytes += len as u64;
            }
        }
        Ok(drained)
    }
}
