//! A connection's outgoing side: callers and handlers serialize frames straight into one queue buffer, and
//! whoever writes takes the whole queue and sends it with as few syscalls as the socket allows.
//!
//! Two parties write. The writer task wakes when the queue stops being empty and drains it; under load it is the
//! one that coalesces the frames of many callers into one write. On a current-thread runtime a woken task runs
//! after every task that was ready before it, so the writer finds the frames of all the callers woken by the same
//! read of replies. A multi-thread runtime runs the task a worker wakes next (its LIFO slot), before the others:
//! there the writer yields once before it takes the queue, or it would send the first frame nearly alone while
//! the other callers are still queueing theirs. A task that knows that no one else is about to
//! queue a frame (the server's read loop at the end of a batch, a client call when no other call is in flight)
//! may instead flush at once from where it stands ([`Outbox::flush_now`]): the bytes leave without a hand-off to
//! the writer task, and whatever the socket does not take at once is left to that task. The socket's write half
//! sits behind a lock that is held only while polling it, never across an await.
//!
//! The queue has a soft limit: a producer that finds it over the limit waits until it drains, so a peer that
//! stops reading costs bounded memory.
//!
//! A payload of [`APART_FROM`] bytes or more that does not fit in the queue's spare room is serialized into an
//! allocation of its own (`WriteBuf::keep_apart_from`), and its frame leaves with the frames around it in one
//! vectored write: the queue stays small however many large calls are in flight, and no payload is copied
//! after it is serialized.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};

use rpc_codec::WriteBuf;
use tokio::io::AsyncWrite;
use tokio::sync::Notify;

use crate::error::RpcError;

/// Capacity of each of the two buffers (the queue, and the bytes being written), kept between writes.
const WRITE_BUF: usize = 64 * 1024;

/// Payloads of this many bytes or more (16 KiB) that do not fit in the queue's spare room are kept apart from it
/// instead of growing it. Below that, growing the queue costs less than an allocation of the payload's own.
pub(crate) const APART_FROM: usize = 16 * 1024;

/// Most slices handed to one vectored write: 64 (4 MiB of 64 KiB payloads, more than a socket takes at once).
const MAX_SLICES: usize = 64;

/// A queue buffer: `WRITE_BUF` of room, large payloads kept apart.
fn queue_buf() -> WriteBuf {
    let mut buf = WriteBuf::with_capacity(WRITE_BUF);
    buf.keep_apart_from(APART_FROM);
    buf
}

/// Writes `taken` from byte `sent` on, as much as `io` takes now: with one vectored write when the bytes are
/// in pieces.
fn poll_write_from(
    io: &mut WriteHalf,
    cx: &mut Context<'_>,
    taken: &WriteBuf,
    sent: usize,
) -> Poll<std::io::Result<usize>> {
    if taken.is_contiguous() {
        // The common case, small frames only: one slice, no array of them to fill.
        return io.as_mut().poll_write(cx, &taken.as_slice()[sent..]);
    }
    let mut slices = [std::io::IoSlice::new(&[]); MAX_SLICES];
    match taken.io_slices(sent, &mut slices) {
        0 => Poll::Ready(Ok(0)),
        1 => io.as_mut().poll_write(cx, &slices[0]),
        n => io.as_mut().poll_write_vectored(cx, &slices[..n]),
    }
}

/// The write half of a connection's transport.
pub(crate) type WriteHalf = Pin<Box<dyn AsyncWrite + Send>>;

/// What producers share under the lock.
#[derive(Debug)]
pub(crate) struct OutState {
    /// Frames waiting to be written.
    pub(crate) buf: WriteBuf,
    /// Set when the connection is closing: nothing more is accepted.
    pub(crate) closed: bool,
    /// The last request id handed out (clients only); ids are taken under this lock, in wire order.
    pub(crate) last_request_id: u64,
    /// Set while a task that will call [`Outbox::flush_now`] is queueing a batch: frames queued meanwhile (by
    /// anyone) do not wake the writer task, since that flush takes them.
    defer_wakes: bool,
}

/// The socket and the bytes taken from the queue that it has not accepted yet.
struct Writing {
    io: WriteHalf,
    /// Bytes taken from the queue, written up to `sent`.
    taken: WriteBuf,
    sent: usize,
}

/// The queue of encoded frames of one connection, and its socket.
pub(crate) struct Outbox {
    state: Mutex<OutState>,
    writing: Mutex<Writing>,
    /// Wakes the writer task when the queue stops being empty, when a flush left bytes behind, or on close.
    wake_writer: Notify,
    /// Wakes producers waiting for room.
    room: Notify,
    /// The queue's soft limit in bytes.
    limit: usize,
    /// Whether the queue is at or over its limit: set by pushes and cleared by takes, under the lock; read
    /// without it, to stop taking work cheaply.
    full: AtomicBool,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("queued", &self.lock().buf.len())
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    pub(crate) fn new(limit: usize, io: WriteHalf) -> Outbox {
        Outbox {
            state: Mutex::new(OutState {
                buf: queue_buf(),
                closed: false,
                last_request_id: 0,
                defer_wakes: false,
            }),
            writing: Mutex::new(Writing {
                io,
                taken: queue_buf(),
                sent: 0,
            }),
            wake_writer: Notify::new(),
            room: Notify::new(),
            limit,
            full: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, OutState> {
        // A producer that panicked while encoding left the buffer whole: encoding writes nothing on failure.
        crate::sync::lock(&self.state)
    }

    /// Runs `encode` on the queue under the lock, then wakes the writer task if the queue was empty. Fails if
    /// the connection is closing.
    pub(crate) fn push<R>(&self, encode: impl FnOnce(&mut OutState) -> R) -> Result<R, RpcError> {
        let (r, first) = self.push_quiet(encode)?;
        if first {
            self.wake_writer();
        }
        Ok(r)
    }

    /// Runs `encode` on the queue under the lock without waking anyone; also says whether the queue went from
    /// empty to not, in which case the caller must either [`Outbox::wake_writer`] or [`Outbox::flush_now`].
    pub(crate) fn push_quiet<R>(
        &self,
        encode: impl FnOnce(&mut OutState) -> R,
    ) -> Result<(R, bool), RpcError> {
        let mut state = self.lock();
        if state.closed {
            return Err(RpcError::unavailable("connection closed"));
        }
        let was_empty = state.buf.is_empty();
        let r = encode(&mut state);
        let first = was_empty && !state.buf.is_empty() && !state.defer_wakes;
        self.note_fill(&state);
        Ok((r, first))
    }

    fn note_fill(&self, state: &OutState) {
        self.full
            .store(state.buf.len() >= self.limit, Ordering::Relaxed);
    }

    /// Whether the queue is at or over its limit (without taking the lock): a producer that takes work (the
    /// server's read loop) stops and waits for room.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Like [`Outbox::push_quiet`] if the queue is under its limit (one lock for the check and the push);
    /// otherwise gives `encode` back, to try again after [`Outbox::wait_for_room`].
    pub(crate) fn try_push_quiet<R, F>(&self, encode: F) -> Result<Result<(R, bool), F>, RpcError>
    where
        F: FnOnce(&mut OutState) -> R,
    {
        let mut state = self.lock();
        if state.closed {
            return Err(RpcError::unavailable("connection closed"));
        }
        if state.buf.len() >= self.limit {
            return Ok(Err(encode));
        }
        let was_empty = state.buf.is_empty();
        let r = encode(&mut state);
        let first = was_empty && !state.buf.is_empty() && !state.defer_wakes;
        self.note_fill(&state);
        Ok(Ok((r, first)))
    }

    /// Wakes the writer task to drain the queue.
    pub(crate) fn wake_writer(&self) {
        self.wake_writer.notify_one();
    }

    /// Starts a batch: until [`Outbox::end_batch`], frames queued by anyone leave the writer task asleep.
    pub(crate) fn begin_batch(&self) {
        self.lock().defer_wakes = true;
    }

    /// Ends a batch and writes what is queued from the calling task, as [`Outbox::flush_now`] does; returns
    /// whether the queue has room for more.
    pub(crate) fn end_batch(&self) -> bool {
        self.flush(true)
    }

    /// Whether a frame may be queued without waiting: the queue is under its limit (or closing, in which case
    /// a push fails at once rather than wait).
    pub(crate) fn has_room(&self) -> bool {
        let state = self.lock();
        state.closed || state.buf.len() < self.limit
    }

    /// Waits while the queue is over its limit. With room, it returns at once without registering a waiter.
    pub(crate) async fn wait_for_room(&self) {
        if self.has_room() {
            return;
        }
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the check, so that a drain between the check and the wait is not missed.
            room.as_mut().enable();
            if self.has_room() {
                return;
            }
            room.await;
        }
    }

    /// Accepts no more frames; the writer task sends what is queued and stops.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.wake_writer.notify_one();
        self.room.notify_waiters();
    }

    /// Writes what is queued now, from the calling task, as far as the socket takes it without waiting; the rest
    /// (and any error) is left to the writer task, which is woken for it.
    pub(crate) fn flush_now(&self) {
        self.flush(false);
    }

    /// Takes the queue and writes it once, from the calling task (ending a batch first if `end_batch`); returns
    /// whether the queue has room.
    ///
    /// The queue is not looked at again after the write: a frame queued after the queue was taken found it empty
    /// and woke the writer task itself (the batch's deferral is cleared in the same lock as the take).
    fn flush(&self, end_batch: bool) -> bool {
        let writing = self.writing.try_lock();
        let mut state = self.lock();
        if end_batch {
            state.defer_wakes = false;
        }
        let mut writing = match writing {
            // Nothing to do, or bytes of an earlier write still wait: the writer task, woken for those, sends
            // them first and takes the queue after them.
            Ok(w) if state.buf.is_empty() || w.sent != w.taken.len() => {
                return state.closed || state.buf.len() < self.limit;
            }
            Ok(w) => w,
            // The writer task is writing: it takes the queue when it is done.
            Err(_) => {
                let room = state.closed || state.buf.len() < self.limit;
                let queued = !state.buf.is_empty();
                drop(state);
                if queued {
                    self.wake_writer.notify_one();
                }
                return room;
            }
        };
        let was_full = state.buf.len() >= self.limit;
        writing.taken.clear();
        writing.sent = 0;
        std::mem::swap(&mut state.buf, &mut writing.taken);
        self.full.store(false, Ordering::Relaxed);
        drop(state);
        if was_full {
            self.room.notify_waiters();
        }
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let done = loop {
            let Writing { io, taken, sent } = &mut *writing;
            match poll_write_from(io, &mut cx, taken, *sent) {
                Poll::Ready(Ok(n)) if n > 0 => {
                    *sent += n;
                    if *sent == taken.len() {
                        // Accepted is not yet sent for a transport that buffers (TLS when the socket would block).
                        break matches!(io.as_mut().poll_flush(&mut cx), Poll::Ready(Ok(())));
                    }
                }
                // Would block, failed or wrote nothing: the writer task polls again with its own waker, and sees
                // the error, if it was one.
                _ => break false,
            }
        };
        drop(writing);
        if !done {
            self.wake_writer.notify_one();
        }
        true
    }

    /// Writes the bytes taken and then the queue, until both are empty or the socket would block.
    fn poll_drain(&self, w: &mut Writing, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        loop {
            if w.sent == w.taken.len() {
                w.taken.clear();
                w.sent = 0;
                if w.taken.capacity() > 16 * WRITE_BUF {
                    w.taken.shrink_to(WRITE_BUF);
                }
                let was_full = {
                    let mut state = self.lock();
                    if state.buf.is_empty() {
                        drop(state);
                        // A transport that buffers what it accepted (TLS, when the socket would block) sends it
                        // now, or wakes this task when it can.
                        return w.io.as_mut().poll_flush(cx);
                    }
                    let was_full = state.buf.len() >= self.limit;
                    std::mem::swap(&mut state.buf, &mut w.taken);
                    self.full.store(false, Ordering::Relaxed);
                    was_full
                };
                // Producers wait only when they found the queue full, checked under the lock.
                if was_full {
                    self.room.notify_waiters();
                }
            }
            let Writing { io, taken, sent } = w;
            match poll_write_from(io, cx, taken, *sent) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    *sent += n;
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn writing(&self) -> MutexGuard<'_, Writing> {
        crate::sync::lock(&self.writing)
    }

    /// The writer task: writes whatever is queued whenever it is woken, until the outbox is closed and drained
    /// (then shuts the socket's write side down) or a write fails (then closes the outbox).
    pub(crate) async fn run_writer(&self) -> std::io::Result<()> {
        // See the module's docs: only a multi-thread runtime runs a woken task before the others that are ready.
        let yield_when_woken = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread);
        loop {
            let drained = std::future::poll_fn(|cx| self.poll_drain(&mut self.writing(), cx)).await;
            if let Err(e) = drained {
                self.close();
                return Err(e);
            }
            // Decided under the lock, acted on after it: no guard is held across an await.
            let (empty, closed) = {
                let state = self.lock();
                (state.buf.is_empty(), state.closed)
            };
            if closed && empty {
                return std::future::poll_fn(|cx| self.writing().io.as_mut().poll_shutdown(cx))
                    .await;
            }
            if empty {
                // `notify_one` keeps a permit when no one waits, so a frame queued since the check is not missed.
                self.wake_writer.notified().await;
                if yield_when_woken {
                    // Woken by the first frame of a burst: let the tasks that are ready to run (callers woken by
                    // the same read of replies) queue theirs first, so that one write takes them all.
                    tokio::task::yield_now().await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
