//! The sending half of one stream (protocol 1.1): the credit the receiver has granted, and [`send_items`], the
//! pump that takes items from a `Stream` and writes them to the connection's outbox while there is credit and
//! room. A receiver that stops reading grants nothing more, so its stream alone stalls; the other streams and
//! calls of the connection go on.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use futures_core::Stream;
use rpc_codec::{EncodeError, WriteBuf};

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

/// Writes the items of `items` as frames, each by `encode` (which appends one frame and returns nothing), while
/// the receiver grants credit and the outbox has room; returns once `items` ends.
pub(crate) async fn send_items<S, E>(
    outbound: &Outbound,
    outbox: &Outbox,
    items: S,
    mut encode: E,
) -> Result<(), Stopped>
where
    S: Stream,
    E: FnMut(&S::Item, &mut WriteBuf) -> Result<(), EncodeError>,
{
    let mut items = std::pin::pin!(items);
    let mut held: VecDeque<S::Item> = VecDeque::new();
    let mut ended = false;
    // A panic of the stream, once the items it made before are sent.
    let mut broken: Option<String> = None;
    // What the last item cost: the stream is pulled no further ahead than the credit covers.
    let mut last_cost: i64 = 1;
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
                return Ok(());
            }
        }
        let mut spent = 0;
        let pushed = outbox.push(|state| {
            while credit > 0
                && let Some(item) = held.front()
            {
                let before = state.buf.len();
                encode(item, &mut state.buf)?;
                let cost = (state.buf.len() - before) as i64;
                last_cost = cost;
                credit -= cost;
                spent += cost;
                held.pop_front();
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
