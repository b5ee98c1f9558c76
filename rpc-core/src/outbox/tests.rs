//! The outbox under transports that misbehave the ways real ones do: buffering what they accepted (TLS),
//! taking a few bytes at a time, and counting writes; and the writer's batching on a multi-thread runtime.

use std::sync::Arc;

use super::*;

/// A transport that takes at most `per_write` bytes per write and has no vectored write of its own (so each
/// write takes from the first piece only), as a worst case for a queue in pieces.
struct Trickle {
    sent: Arc<Mutex<Vec<u8>>>,
    per_write: usize,
}

impl AsyncWrite for Trickle {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let n = buf.len().min(self.per_write);
        self.sent.lock().unwrap().extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Frames queued by tasks that were ready when one of them woke the writer (callers woken by one read of
/// replies) leave in the same write, also on a multi-thread runtime, whose worker would run the woken writer
/// first (its LIFO slot): the writer lets them run before it takes the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn frames_of_tasks_ready_when_the_writer_wakes_leave_in_one_write() {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let io = Trickle {
        sent: Arc::clone(&sent),
        per_write: usize::MAX,
    };
    let writes = Arc::new(Mutex::new(0));
    let io = CountWrites(io, Arc::clone(&writes));
    let outbox = Arc::new(Outbox::new(1 << 20, Box::pin(io)));
    // All on the one worker: the writer starts and waits for a frame; nine tasks become ready; then the first
    // frame wakes the writer.
    let on_worker = Arc::clone(&outbox);
    tokio::spawn(async move {
        tokio::spawn({
            let outbox = Arc::clone(&on_worker);
            async move { outbox.run_writer().await }
        });
        tokio::task::yield_now().await;
        for i in 1..10u8 {
            let outbox = Arc::clone(&on_worker);
            tokio::spawn(
                async move { outbox.push(|state| state.buf.extend_from_slice(&[b'0' + i])) },
            );
        }
        on_worker
            .push(|state| state.buf.extend_from_slice(b"0"))
            .unwrap();
    })
    .await
    .unwrap();
    // The worker is another thread: wait for it in real time, at most 5 s.
    for _ in 0..500 {
        if sent.lock().unwrap().len() == 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(sent.lock().unwrap().as_slice(), b"0123456789");
    assert_eq!(
        *writes.lock().unwrap(),
        1,
        "the frames left in more than one write"
    );
    outbox.close();
}

/// Counts the writes that reach a transport.
struct CountWrites(Trickle, Arc<Mutex<usize>>);

impl AsyncWrite for CountWrites {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        *self.1.lock().unwrap() += 1;
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[tokio::test]
async fn large_payloads_kept_apart_leave_in_order_between_the_frames_around_them() {
    use rpc_codec::{Bincode, FrameCodec, Header, Metadata};
    let codec = FrameCodec::default();
    let sent = Arc::new(Mutex::new(Vec::new()));
    let io = Trickle {
        sent: Arc::clone(&sent),
        per_write: 10_000,
    };
    let outbox = Arc::new(Outbox::new(1 << 20, Box::pin(io)));
    let writer = tokio::spawn({
        let outbox = Arc::clone(&outbox);
        async move { outbox.run_writer().await }
    });
    let mut expected = WriteBuf::new();
    for (id, len) in [
        (1, 10),
        (2, 3 * APART_FROM),
        (3, 20),
        (4, 5 * APART_FROM),
        (5, 30),
    ] {
        let value = vec![id as u8; len];
        outbox
            .push(|state| {
                codec.encode_value(
                    &Header::response(id),
                    &Metadata::new(),
                    &value,
                    &Bincode,
                    &mut state.buf,
                )
            })
            .unwrap()
            .unwrap();
        codec
            .encode_value(
                &Header::response(id),
                &Metadata::new(),
                &value,
                &Bincode,
                &mut expected,
            )
            .unwrap();
    }
    assert!(outbox.lock().buf.capacity() <= WRITE_BUF, "the queue grew");
    assert_eq!(
        until_sent(&sent, expected.as_slice()).await,
        expected.as_slice()
    );
    outbox.close();
    writer.await.unwrap().unwrap();
}

/// A transport that, like TLS when its socket would block, accepts bytes it has not sent: they reach
/// `sent` only on a flush, and the first `pending_flushes` flushes would block (waking their task at once,
/// as a socket that turns writable).
struct Buffering {
    accepted: Vec<u8>,
    sent: Arc<Mutex<Vec<u8>>>,
    pending_flushes: usize,
}

impl AsyncWrite for Buffering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.accepted.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        if self.pending_flushes > 0 {
            self.pending_flushes -= 1;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let accepted = std::mem::take(&mut self.accepted);
        self.sent.lock().unwrap().extend_from_slice(&accepted);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.poll_flush(cx)
    }
}

fn outbox(pending_flushes: usize) -> (Arc<Outbox>, Arc<Mutex<Vec<u8>>>) {
    let sent = Arc::new(Mutex::new(Vec::new()));
    let io = Buffering {
        accepted: Vec::new(),
        sent: Arc::clone(&sent),
        pending_flushes,
    };
    (Arc::new(Outbox::new(1 << 20, Box::pin(io))), sent)
}

/// Yields until `sent` holds `want`, at most 100 times.
async fn until_sent(sent: &Mutex<Vec<u8>>, want: &[u8]) -> Vec<u8> {
    for _ in 0..100 {
        if sent.lock().unwrap().as_slice() == want {
            break;
        }
        tokio::task::yield_now().await;
    }
    sent.lock().unwrap().clone()
}

#[tokio::test]
async fn bytes_a_buffering_transport_accepted_are_flushed_by_the_writer_task() {
    let (outbox, sent) = outbox(0);
    let writer = tokio::spawn({
        let outbox = Arc::clone(&outbox);
        async move { outbox.run_writer().await }
    });
    outbox
        .push(|state| state.buf.extend_from_slice(b"frame"))
        .unwrap();
    assert_eq!(until_sent(&sent, b"frame").await, b"frame");
    outbox.close();
    writer.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_flush_from_the_caller_that_would_block_is_finished_by_the_writer_task() {
    for pending_flushes in [0, 1] {
        let (outbox, sent) = outbox(pending_flushes);
        let writer = tokio::spawn({
            let outbox = Arc::clone(&outbox);
            async move { outbox.run_writer().await }
        });
        outbox
            .push_quiet(|state| state.buf.extend_from_slice(b"frame"))
            .unwrap();
        outbox.flush_now();
        assert_eq!(
            until_sent(&sent, b"frame").await,
            b"frame",
            "{pending_flushes} flushes would block"
        );
        outbox.close();
        writer.await.unwrap().unwrap();
    }
}
