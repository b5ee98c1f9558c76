//! The receiving half of one stream (protocol 1.1): the items the connection's reader has taken off the wire
//! and the consumer has not read yet, and the credit that bounds them. The reader pushes; the consumer
//! ([`super::Streaming`]) takes, and as it takes it gives credit back to the sender, half a window at a time,
//! as HTTP/2 and yamux windows do. A sender that sends past its credit breaks the protocol: the stream fails,
//! and nothing past the window is ever held.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::task::Waker;

use bytes::Bytes;
use rpc_codec::{Flags, HEADER_LEN, Status};

use crate::error::RpcError;

/// What the reader hands the consumer of a stream.
#[derive(Debug)]
pub(crate) enum Event {
    /// One item (or, with [`rpc_codec::Flags::BATCH`], several), the application's error with
    /// [`rpc_codec::Flags::APP_ERROR`], and what its frame cost against the credit (its payload as sent,
    /// compressed or not, and a header).
    Item {
        payload: Bytes,
        flags: Flags,
        cost: u64,
    },
    /// The sender's half ended well.
    End,
    /// The one answer that ends a client stream (a `Response`): the value, or the application's error.
    Answer { payload: Bytes, app_error: bool },
    /// The stream failed: an `Error` frame, the connection's end, a broken rule.
    Failed(RpcError),
}

/// What one item costs against the credit: its payload as sent and a header, so that even empty items are
/// bounded.
pub(crate) fn cost(payload_len: usize) -> u64 {
    (payload_len + HEADER_LEN) as u64
}

/// The items of one stream on their way from the reader to the consumer.
#[derive(Debug)]
pub(crate) struct Inbound {
    state: Mutex<State>,
    /// The receiver's window: the most bytes of items it lets the sender have in flight.
    window: u64,
}

#[derive(Debug)]
struct State {
    queue: VecDeque<Event>,
    /// Bytes the sender may still send: granted minus received. Below zero when the last item overshot it (a
    /// sender may start an item with any credit left); the sender counts the same way.
    credit: i64,
    /// Bytes the consumer has taken since the last grant.
    taken: u64,
    /// An `End`, an answer or a failure came: nothing more is taken.
    closed: bool,
    /// The consumer is gone: items are dropped as they come (within the credit).
    abandoned: bool,
    waker: Option<Waker>,
}

/// Why the reader could not hand over an item.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The sender sent past its credit: `got` bytes with `credit` left.
    Overrun { got: u64, credit: i64 },
}

impl Inbound {
    /// A stream whose receiver's window is `window` bytes (at least [`super::INITIAL_CREDIT`]); the sender starts
    /// with [`super::INITIAL_CREDIT`], and the rest is granted by [`Inbound::opening_grant`].
    pub(crate) fn new(window: u64) -> Inbound {
        // A `Credit` frame grants at most `u32::MAX`; a larger window could not be granted whole.
        let window = window.min(u64::from(u32::MAX));
        Inbound {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                credit: super::INITIAL_CREDIT as i64,
                taken: 0,
                closed: false,
                abandoned: false,
                waker: None,
            }),
            window: window.max(super::INITIAL_CREDIT),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        crate::sync::lock(&self.state)
    }

    /// The credit to grant the sender as the stream opens, beyond the protocol's initial credit, if any.
    pub(crate) fn opening_grant(&self) -> Option<u32> {
        let more = self.window - super::INITIAL_CREDIT;
        if more == 0 {
            return None;
        }
        self.lock().credit += more as i64;
        Some(u32::try_from(more).unwrap_or(u32::MAX))
    }

    /// Whether the sender may send an item now: its credit is above zero (checked before a compressed item is
    /// decompressed).
    pub(crate) fn has_credit(&self) -> bool {
        self.lock().credit > 0
    }

    /// The reader hands over an item that cost `cost` ([`cost`] of its payload as sent).
    pub(crate) fn item(&self, payload: Bytes, flags: Flags, cost: u64) -> Result<(), Refused> {
        self.items(&mut vec![(payload, flags, cost)])
    }

    /// The reader hands over the items of one read (each with its frame's flags and cost), under one lock;
    /// `items` is left empty. An item past the credit stops there: the ones before it are queued.
    pub(crate) fn items(&self, items: &mut Vec<(Bytes, Flags, u64)>) -> Result<(), Refused> {
        let mut refused = Ok(());
        let waker = {
            let mut state = self.lock();
            for (payload, flags, cost) in items.drain(..) {
                if state.closed {
                    break;
                }
                if state.credit <= 0 {
                    refused = Err(Refused::Overrun {
                        got: cost,
                        credit: state.credit,
                    });
                    break;
                }
                // An item may overshoot what is left (the sender may start one with any credit left): the
                // queue holds at most the window plus one item.
                state.credit -= cost as i64;
                if !state.abandoned {
                    // Nobody reads an abandoned stream: its items are dropped, and its sender stalls once its
                    // credit is spent.
                    state.queue.push_back(Event::Item {
                        payload,
                        flags,
                        cost,
                    });
                }
            }
            state.waker.take()
        };
        items.clear();
        if let Some(w) = waker {
            w.wake();
        }
        refused
    }

    /// The reader hands over the end of the stream, its answer, or why it failed; the first one counts.
    pub(crate) fn close(&self, event: Event) {
        let waker = {
            let mut state = self.lock();
            if state.closed {
                return;
            }
            state.closed = true;
            if !state.abandoned {
                state.queue.push_back(event);
            }
            state.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// The consumer is gone: what is queued is dropped, and items that come are dropped too.
    pub(crate) fn abandon(&self) {
        let mut state = self.lock();
        state.abandoned = true;
        state.queue.clear();
    }

    /// Moves what is queued into `into` (the consumer's own queue, which it reads without the lock); if nothing
    /// is queued and the stream is open, keeps `waker` to be woken when something comes. Returns `false` when
    /// nothing is queued and nothing more will come (the stream closed and its last event was taken).
    pub(crate) fn take_into(&self, into: &mut VecDeque<Event>, waker: &Waker) -> bool {
        let mut state = self.lock();
        if state.queue.is_empty() {
            if state.closed {
                return false;
            }
            match &state.waker {
                Some(w) if w.will_wake(waker) => {}
                _ => state.waker = Some(waker.clone()),
            }
            return true;
        }
        std::mem::swap(&mut state.queue, into);
        true
    }

    /// The consumer has read items of `bytes` (their [`cost`]): returns the credit to grant the sender, once
    /// half a window has been read.
    pub(crate) fn taken(&self, bytes: u64) -> Option<u32> {
        let mut state = self.lock();
        state.taken += bytes;
        if state.closed || state.taken < self.window / 2 {
            return None;
        }
        let grant = std::mem::take(&mut state.taken).min(u64::from(u32::MAX));
        state.credit += grant as i64;
        Some(grant as u32)
    }
}

/// The error of a stream whose sender sent past its credit.
pub(crate) fn overrun(id: u64, refused: &Refused) -> RpcError {
    let Refused::Overrun { got, credit } = refused;
    RpcError::new(
        Status::ResourceExhausted,
        format!(
            "stream {id} sent an item of {got} bytes with {credit} bytes of credit left (expected at most its \
             credit: docs/PROTOCOL.md section 14)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::INITIAL_CREDIT;

    #[test]
    fn a_sender_past_its_credit_is_refused_and_the_queue_holds_at_most_the_window_and_one_item() {
        let inbound = Inbound::new(INITIAL_CREDIT);
        let item = Bytes::from(vec![0u8; 1000]);
        let mut sent = 0;
        while inbound.item(item.clone(), Flags::EMPTY, cost(1000)).is_ok() {
            sent += 1;
            assert!(sent < 1000, "no bound");
        }
        // 65,536 / 1,028 = 63.75: the 64th item starts with credit left.
        assert_eq!(sent, 64);
        assert_eq!(
            inbound.item(item, Flags::EMPTY, cost(1000)),
            Err(Refused::Overrun {
                got: 1028,
                credit: 65_536 - 64 * 1028
            })
        );
    }

    #[test]
    fn credit_comes_back_half_a_window_at_a_time_as_the_consumer_reads() {
        let inbound = Inbound::new(4 * INITIAL_CREDIT);
        assert_eq!(inbound.opening_grant(), Some(3 * INITIAL_CREDIT as u32));
        assert_eq!(inbound.taken(INITIAL_CREDIT), None);
        assert_eq!(
            inbound.taken(INITIAL_CREDIT),
            Some(2 * INITIAL_CREDIT as u32)
        );
        assert_eq!(inbound.taken(1), None);
    }

    #[test]
    fn an_abandoned_stream_holds_nothing() {
        let inbound = Inbound::new(INITIAL_CREDIT);
        inbound
            .item(Bytes::from_static(b"a"), Flags::EMPTY, 29)
            .unwrap();
        inbound.abandon();
        inbound
            .item(Bytes::from_static(b"b"), Flags::EMPTY, 29)
            .unwrap();
        let mut queue = VecDeque::new();
        assert!(inbound.take_into(&mut queue, std::task::Waker::noop()));
        assert!(queue.is_empty());
    }

    #[test]
    fn a_closed_stream_whose_events_were_taken_says_so_rather_than_wait() {
        let inbound = Inbound::new(INITIAL_CREDIT);
        inbound.close(Event::End);
        let mut queue = VecDeque::new();
        assert!(inbound.take_into(&mut queue, std::task::Waker::noop()));
        assert!(matches!(queue.pop_front(), Some(Event::End)));
        assert!(!inbound.take_into(&mut queue, std::task::Waker::noop()));
    }
}
