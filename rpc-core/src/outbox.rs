//! A connection's outgoing side: the frames that callers and handlers encode wait in one output buffer, and one
//! writer task drains the whole buffer with one write each time it wakes. Frames are serialized straight into
//! that buffer under a lock that only this connection's tasks share, and held only while encoding.
//!
//! The buffer has a soft limit: a producer that finds it over the limit waits until the writer drains it, so a
//! peer that stops reading costs bounded memory.

use std::sync::{Mutex, MutexGuard};

use rpc_codec::WriteBuf;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::error::RpcError;

/// Capacity of the writer's own buffer, which it keeps between writes.
const WRITE_BUF: usize = 64 * 1024;

/// What producers share under the lock.
#[derive(Debug)]
pub(crate) struct OutState {
    /// Frames waiting for the writer.
    pub(crate) buf: WriteBuf,
    /// Set when the connection is closing: nothing more is accepted.
    pub(crate) closed: bool,
    /// The last request id handed out (clients only); ids are taken under this lock, in wire order.
    pub(crate) last_request_id: u64,
}

/// The queue of encoded frames of one connection.
#[derive(Debug)]
pub(crate) struct Outbox {
    state: Mutex<OutState>,
    /// Wakes the writer when the buffer stops being empty, or on close.
    wake_writer: Notify,
    /// Wakes producers waiting for room.
    room: Notify,
    /// The buffer's soft limit in bytes.
    limit: usize,
}

impl Outbox {
    pub(crate) fn new(limit: usize) -> Outbox {
        Outbox {
            state: Mutex::new(OutState {
                buf: WriteBuf::with_capacity(WRITE_BUF),
                closed: false,
                last_request_id: 0,
            }),
            wake_writer: Notify::new(),
            room: Notify::new(),
            limit,
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        // A producer that panicked while encoding left the buffer whole: encoding writes nothing on failure.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `encode` on the buffer under the lock, then wakes the writer. Fails if the connection is closing.
    pub(crate) fn push<R>(&self, encode: impl FnOnce(&mut OutState) -> R) -> Result<R, RpcError> {
        let mut state = self.lock();
        if state.closed {
            return Err(RpcError::unavailable("connection closed"));
        }
        let was_empty = state.buf.is_empty();
        let r = encode(&mut state);
        let wake = was_empty && !state.buf.is_empty();
        drop(state);
        if wake {
            self.wake_writer.notify_one();
        }
        Ok(r)
    }

    /// Like [`Outbox::push`], but first waits while the buffer is over its limit.
    pub(crate) async fn push_when_room<R>(
        &self,
        encode: impl FnOnce(&mut OutState) -> R,
    ) -> Result<R, RpcError> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let state = self.lock();
                if state.closed || state.buf.len() < self.limit {
                    break;
                }
            }
            room.await;
        }
        self.push(encode)
    }

    /// Accepts no more frames; the writer sends what is queued and stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake_writer.notify_one();
        self.room.notify_waiters();
    }

    /// Writes queued frames to `io` until the outbox is closed and drained, or a write fails. Each wake-up takes
    /// the whole buffer (swapping in the writer's empty one) and writes it with one `write_all`.
    pub(crate) async fn run_writer<W: AsyncWrite + Unpin>(
        &self,
        io: &mut W,
    ) -> std::io::Result<()> {
        let mut local = WriteBuf::with_capacity(WRITE_BUF);
        loop {
            // Decided under the lock, acted on after it: the guard is never held across an await.
            let has_frames = {
                let mut state = self.lock();
                if !state.buf.is_empty() {
                    std::mem::swap(&mut state.buf, &mut local);
                    Some(true)
                } else if state.closed {
                    None
                } else {
                    Some(false)
                }
            };
            match has_frames {
                None => return io.shutdown().await,
                Some(false) => {
                    self.wake_writer.notified().await;
                    continue;
                }
                Some(true) => {}
            }
            self.room.notify_waiters();
            let written = io.write_all(local.as_slice()).await;
            local.clear();
            if local.capacity() > 16 * WRITE_BUF {
                local.shrink_to(WRITE_BUF);
            }
            if let Err(e) = written {
                self.close();
                return Err(e);
            }
        }
    }
}
