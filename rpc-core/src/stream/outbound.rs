//! The sending half of one stream (protocol 1.1): the credit the receiver has granted, and [`send_items`], the
//! pump that takes items from a `Stream` and writes them to the connection's outbox while there is credit and
//! room. A receiver that stops reading grants nothing more, so its stream alone stalls; the other streams and
//! calls of the connection go on.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use rpc_codec::{EncodeError, Flags, FrameCodec, HEADER_LEN, Header, Metadata, WriteBuf, items};

use super::ItemCodec;
use crate::error::{PayloadSide, RpcError};
use crate::method::MethodInfo;
use crate::outbox::Outbox;

/// Items pulled from a stream at once, at most, before they are written with one lock of the outbox; fewer when
/// the credit left covers fewer items of the size seen last.
const BATCH: usize = 64;

/// The credit of one stream's sender.
#[derive(Debug)]
pub(crate) struct Outbound {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Granted minus sent; below zero when the last item overshot it (the receiver counts the same way).
    credit: i64,
    /// The stream is over (the receiver cancelled or answered, the connection closed): nothing more is sent.
    closed: bool,
    waker: Option<Waker>,
}

impl Default for Outbound {
    fn default() -> Outbound {
        Outbound {
            state: Mutex::new(State {
                credit: super::INITIAL_CREDIT as i64,
                closed: false,
                waker: None,
            }),
        }
    }
}

impl Outbound {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The receiver granted `bytes` more (a `Credit` frame).
    pub(crate) fn grant(&self, bytes: u32) {
        let waker = {
            let mut state = self.lock();
            // Saturating: a peer that grants without end cannot make the count wrap.
            state.credit = state.credit.saturating_add(i64::from(bytes));
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The stream is over: the pump stops at its next item.
    pub(crate) fn close(&self) {
        let waker = {
            let mut state = self.lock();
            state.closed = true;
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Ready with the credit left once there is some; `None` once the stream is over.
    fn poll_credit(&self, cx: &mut Context<'_>) -> Poll<Option<i64>> {
        let mut state = self.lock();
        if state.closed {
            return Poll::Ready(None);
        }
        if state.credit > 0 {
            return Poll::Ready(Some(state.credit));
        }
        state.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    /// Whether the stream is over; if not, the task is woken when it is (or when credit comes).
    fn poll_closed(&self, cx: &mut Context<'_>) -> bool {
        let mut state = self.lock();
        if !state.closed {
            state.waker = Some(cx.waker().clone());
        }
        state.closed
    }

    fn spend(&self, bytes: i64) {
        self.lock().credit -= bytes;
    }
}

/// Why [`send_items`] stopped before the stream's end.
#[derive(Debug)]
pub(crate) enum Stopped {
    /// The stream is over for the sender (cancelled, answered, or its connection closed).
    Closed,
    /// An item did not encode (too large for the frame limit, say).
    Encode(EncodeError),
    /// The stream panicked making an item (its message); the items before were sent.
    Panicked(String),
}

impl Stopped {
    /// The error that ends a stream of `method` whose sender (on `side`) stopped so; `None` when it was closed.
    pub(crate) fn error(self, method: &MethodInfo, side: PayloadSide) -> Option<RpcError> {
        match self {
            Stopped::Closed => None,
            Stopped::Encode(e) => Some(super::unencodable(method, &e, side)),
            Stopped::Panicked(why) => Some(RpcError::new(
                rpc_codec::Status::Internal,
                format!("{method} panicked making an item: {why}"),
            )),
        }
    }
}

/// Bytes of small items packed into one `Item` frame ([`rpc_codec::Flags::BATCH`]), at most: 16 KiB. An item
/// larger than half of it goes in a frame of its own, encoded straight into the connection's queue.
const BATCH_BYTES: usize = 16 * 1024;

/// How a sender frames its items: the connection's codec, the stream's id, and the items' codec.
pub(crate) struct Framing<'a, I> {
    pub(crate) frame: &'a FrameCodec,
    pub(crate) id: u64,
    pub(crate) items: &'a I,
}

/// Writes the items of `items` as `Item` frames (small ones packed several to a frame), while the receiver
/// grants credit and the outbox has room; returns once `items` ends.
pub(crate) async fn send_items<S: Stream, I: ItemCodec<S::Item>>(
    outbound: &Outbound,
    outbox: &Outbox,
    items: S,
    framing: Framing<'_, I>,
) -> Result<(), Stopped> {
    let mut items = std::pin::pin!(items);
    let mut held: VecDeque<S::Item> = VecDeque::new();
    let mut ended = false;
    // A panic of the stream, once the items it made before are sent.
    let mut broken: Option<String> = None;
    // What the last item cost: the stream is pulled no further ahead than the credit covers, and large items
    // skip the batch. Unknown before the first item, which is pulled alone.
    let mut last_cost: i64 = i64::MAX;
    // The batch being built, kept between frames.
    let mut scratch = Vec::new();
    loop {
        let Some(mut credit) = std::future::poll_fn(|cx| outbound.poll_credit(cx)).await else {
            return Err(Stopped::Closed);
        };
        outbox.wait_for_room().await;
        if held.is_empty() {
            if let Some(why) = broken {
                return Err(Stopped::Panicked(why));
            }
            if ended {
                return Ok(());
            }
            // The stream may wait long for its next item: the sender stops meanwhile if the stream ends.
            let ahead = usize::try_from(credit.div_euclid(last_cost).max(1)).unwrap_or(BATCH);
            let pulled = std::future::poll_fn(|cx| match outbound.poll_closed(cx) {
                true => Poll::Ready(None),
                false => pull(items.as_mut(), &mut held, ahead.min(BATCH), cx).map(Some),
            });
            match pulled.await {
                None => return Err(Stopped::Closed),
                Some(Pulled::More) => {}
                Some(Pulled::Ended) => ended = true,
                Some(Pulled::Panicked(why)) => broken = Some(why),
            }
            if held.is_empty() {
                // A stream that panicked before making an item ends with the panic, not well.
                return broken.map_or(Ok(()), |why| Err(Stopped::Panicked(why)));
            }
        }
        let mut spent = 0;
        let pushed = outbox.push(|state| {
            while credit > 0 && !held.is_empty() {
                let large = last_cost > (BATCH_BYTES / 2) as i64 && last_cost != i64::MAX;
                let (count, cost) = if large {
                    let before = state.buf.len();
                    let item = &held[0];
                    framing
                        .items
                        .encode(framing.frame, framing.id, item, &mut state.buf)?;
                    (1, (state.buf.len() - before) as i64)
                } else {
                    batch(&framing, &held, credit, &mut scratch, &mut state.buf)?
                };
                last_cost = cost / count as i64;
                credit -= cost;
                spent += cost;
                held.drain(..count);
            }
            Ok(())
        });
        outbound.spend(spent);
        match pushed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Stopped::Encode(e)),
            Err(_) => return Err(Stopped::Closed),
        }
    }
}

/// Writes one `Item` frame of the first items of `held` to `buf`: as many as fit in [`BATCH_BYTES`] and in the
/// `credit` (the first always goes), all values or all the application's errors, packed with
/// [`rpc_codec::Flags::BATCH`] when there are several. Returns how many items it took and what the frame cost.
fn batch<T, I: ItemCodec<T>>(
    framing: &Framing<'_, I>,
    held: &VecDeque<T>,
    credit: i64,
    scratch: &mut Vec<u8>,
    buf: &mut WriteBuf,
) -> Result<(usize, i64), EncodeError> {
    scratch.clear();
    // No larger than the sender's own frames may be (a receiver of streams takes at least `BATCH_BYTES`).
    let most = BATCH_BYTES.min(framing.frame.config().max_frame_len as usize - HEADER_LEN);
    let mut kind = None;
    let mut count = 0;
    for item in held {
        let at = scratch.len();
        let app_error = match items::push(scratch, |out| framing.items.encode_body(item, out)) {
            Ok(app_error) => app_error,
            // The items before it go; it fails alone, first of the next frame.
            Err(_) if count > 0 => break,
            Err(e) => return Err(EncodeError::Payload(e)),
        };
        let fits = scratch.len() <= most && (scratch.len() + HEADER_LEN) as i64 <= credit;
        if count > 0 && (kind != Some(app_error) || !fits) {
            scratch.truncate(at);
            break;
        }
        kind = Some(app_error);
        count += 1;
        if scratch.len() >= most {
            break;
        }
    }
    let mut header = match kind {
        Some(true) => Header::app_error_item(framing.id),
        _ => Header::item(framing.id),
    };
    let payload = match count {
        1 => &scratch[items::LEN_PREFIX..],
        _ => {
            header.flags = header.flags.with(Flags::BATCH);
            &scratch[..]
        }
    };
    let before = buf.len();
    framing
        .frame
        .encode_bytes(&header, &Metadata::new(), payload, buf)?;
    Ok((count, (buf.len() - before) as i64))
}

/// What a pull of the stream came to.
enum Pulled {
    /// Items, and maybe more to come.
    More,
    /// The stream ended.
    Ended,
    /// The stream panicked.
    Panicked(String),
}

/// Pulls the items that are ready (at least one, at most `most`) into `held`, catching a panic of the stream
/// (the items made before it are still sent).
fn pull<S: Stream>(
    mut items: Pin<&mut S>,
    held: &mut VecDeque<S::Item>,
    most: usize,
    cx: &mut Context<'_>,
) -> Poll<Pulled> {
    while held.len() < most {
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            items.as_mut().poll_next(cx)
        }));
        match polled {
            Ok(Poll::Ready(Some(item))) => held.push_back(item),
            Ok(Poll::Ready(None)) => return Poll::Ready(Pulled::Ended),
            Ok(Poll::Pending) if held.is_empty() => return Poll::Pending,
            Ok(Poll::Pending) => break,
            Err(payload) => {
                return Poll::Ready(Pulled::Panicked(crate::server::panic_text(&*payload)));
            }
        }
    }
    Poll::Ready(Pulled::More)
}
