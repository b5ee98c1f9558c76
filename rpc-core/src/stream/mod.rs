//! Streams (protocol 1.1): a method may return a stream of items (`-> impl Stream<Item = T>`), take one (an
//! argument of type [`Streaming<T>`]), or both. A `Request` with [`rpc_codec::Flags::STREAM`] opens the stream;
//! `Item` frames carry items either way, `End` ends a half, `Credit` grants the sender more bytes, and `Cancel`,
//! `Error` and `Response` end it as they end a call (`docs/PROTOCOL.md` section 14).
//!
//! Flow control is per stream and in bytes: a sender starts with [`INITIAL_CREDIT`], the receiver grants up to
//! its window ([`DEFAULT_STREAM_WINDOW`]) as it opens the stream, then gives back what its consumer has read,
//! half a window at a time. A consumer that stops reading stalls its own stream alone, and a receiver holds at
//! most its window plus one item per stream: with [`crate::ServerConfig::max_streams_per_connection`], a
//! connection's memory is bounded whatever the peer does.
//!
//! A stream is one call to the layers of both sides: they see it open, and close when it ends; its deadline
//! covers it whole. Dropping the client's [`Streaming`] cancels the server's producer.
//!
//! # Layout
//! - this file: [`Streaming`], the items a receiver reads; the constants of flow control; [`Kind`].
//! - `inbound`: the items between the connection's reader and the consumer, and the credit they are bounded by.
//! - `outbound`: the sender's credit, and the pump that writes a `Stream`'s items while there is credit.
//! - `items`: how items are encoded, `Result` items with the application's error apart.

mod inbound;
mod items;
mod outbound;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

pub use futures_core::Stream;
pub(crate) use inbound::{Event, Inbound, Refused, cost, overrun};
pub use items::{Fallible, ItemCodec, Plain};
pub(crate) use items::{undecodable, unencodable};
pub(crate) use outbound::{Framing, Outbound, send_items};

use rpc_codec::Flags;

use crate::error::{PayloadSide, RpcError};
use crate::method::MethodInfo;

/// The credit a stream's sender starts with, in each direction, before any `Credit` frame: 64 KiB. Items cost
/// their payload's length plus 28 (a header), so that empty items are bounded too.
pub const INITIAL_CREDIT: u64 = 64 * 1024;
/// Default window of a stream's receiver ([`crate::ServerConfig::stream_window`],
/// [`crate::ClientConfig::stream_window`]): 256 KiB, as yamux's.
pub const DEFAULT_STREAM_WINDOW: u64 = 256 * 1024;
/// Default of [`crate::ServerConfig::max_streams_per_connection`]: 100.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: usize = 100;

/// How a method streams, as `#[service]` declares it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The method returns a stream of items.
    Server,
    /// An argument is a stream of items; the method returns one value.
    Client,
    /// Both.
    Bidirectional,
}

impl Kind {
    /// Whether the client sends items.
    pub fn client_sends(self) -> bool {
        matches!(self, Kind::Client | Kind::Bidirectional)
    }

    /// Whether the server sends items.
    pub fn server_sends(self) -> bool {
        matches!(self, Kind::Server | Kind::Bidirectional)
    }
}

/// What a [`Streaming`] needs of its connection.
pub(crate) trait Link: Send + Sync + 'static {
    /// Grants the sender of stream `id` `bytes` more.
    fn grant(&self, id: u64, bytes: u32);
    /// The consumer of stream `id` is gone before its end.
    fn abandon(&self, id: u64);
}

/// The items of a stream as their receiver reads them: a [`Stream`] of `Result<T, RpcError>`, which ends after
/// the sender's last item. An `Err` ends it too: the sender failed, the connection closed, the deadline passed,
/// or an item did not decode. For items of type `Result<U, E>`, the application's error is the inner `Err`.
///
/// Dropping it before its end cancels the stream (on a client) or stops reading it (on a server).
pub struct Streaming<T> {
    id: u64,
    method: &'static MethodInfo,
    inbound: Arc<Inbound>,
    link: Arc<dyn Link>,
    codec: Box<dyn ItemCodec<T>>,
    /// Most memory an item may decode to.
    limit: usize,
    /// Who decodes: a server reads what a client sent (`Request`), a client what a server sent.
    side: PayloadSide,
    /// Taken from `inbound` in one lock, read without it.
    local: VecDeque<Event>,
    /// The batch of items being read (an `Item` frame with [`Flags::BATCH`]), if any.
    batch: Option<Batch>,
    /// Bytes of items read from `local` and not yet counted in `inbound` (counted once per batch).
    read: u64,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    done: bool,
}

impl<T> std::fmt::Debug for Streaming<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streaming")
            .field("id", &self.id)
            .field("method", &self.method)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// A batch of items being read: its payload, where the next item starts, its frame's flags and cost.
struct Batch {
    payload: bytes::Bytes,
    at: usize,
    flags: Flags,
    cost: u64,
}

/// Where a [`Streaming`] reads from.
pub(crate) struct Source {
    pub(crate) id: u64,
    pub(crate) method: &'static MethodInfo,
    pub(crate) inbound: Arc<Inbound>,
    pub(crate) link: Arc<dyn Link>,
    pub(crate) limit: usize,
    pub(crate) side: PayloadSide,
    pub(crate) deadline: Option<tokio::time::Instant>,
}

impl<T: 'static> Streaming<T> {
    pub(crate) fn new(source: Source, codec: Box<dyn ItemCodec<T>>) -> Streaming<T> {
        Streaming {
            id: source.id,
            method: source.method,
            inbound: source.inbound,
            link: source.link,
            codec,
            limit: source.limit,
            side: source.side,
            local: VecDeque::new(),
            batch: None,
            read: 0,
            deadline: source
                .deadline
                .map(|at| Box::pin(tokio::time::sleep_until(at))),
            done: false,
        }
    }

    /// The next item, or `None` after the last.
    pub async fn next(&mut self) -> Option<Result<T, RpcError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The one answer of a method that takes a stream and returns a value: what its stub awaits once it has
    /// opened the stream.
    pub async fn answer(mut self) -> Result<T, RpcError> {
        match self.next().await {
            Some(answer) => answer,
            None => Err(RpcError::new(
                rpc_codec::Status::Internal,
                format!("{} ended its stream without an answer", self.method),
            )),
        }
    }

    /// Ends the stream with `error`, telling the connection that nobody reads it any more.
    fn fail(&mut self, error: RpcError) -> Poll<Option<Result<T, RpcError>>> {
        self.done = true;
        self.inbound.abandon();
        self.link.abandon(self.id);
        Poll::Ready(Some(Err(error)))
    }
}

impl<T: 'static> Stream for Streaming<T> {
    type Item = Result<T, RpcError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        loop {
            if let Some(batch) = &mut this.batch {
                let app_error = batch.flags.contains(Flags::APP_ERROR);
                match rpc_codec::items::next(&batch.payload, &mut batch.at) {
                    Some(Ok(item)) => {
                        return match this.codec.decode(item, app_error, this.limit) {
                            Ok(item) => Poll::Ready(Some(Ok(item))),
                            Err(e) => this.fail(undecodable(this.method, &e, this.side)),
                        };
                    }
                    Some(Err(e)) => {
                        let status = match this.side {
                            PayloadSide::Request => rpc_codec::Status::InvalidArgument,
                            PayloadSide::Response => rpc_codec::Status::Internal,
                        };
                        let message = format!("an item of {}: {e}", this.method);
                        return this.fail(RpcError::new(status, message));
                    }
                    // Read whole: its frame's credit goes back.
                    None => {
                        this.read += batch.cost;
                        this.batch = None;
                    }
                }
            }
            if let Some(event) = this.local.pop_front() {
                match event {
                    Event::Item {
                        payload,
                        flags,
                        cost,
                    } if flags.contains(Flags::BATCH) => {
                        this.batch = Some(Batch {
                            payload,
                            at: 0,
                            flags,
                            cost,
                        });
                        continue;
                    }
                    Event::Item {
                        payload,
                        flags,
                        cost,
                    } => {
                        this.read += cost;
                        let app_error = flags.contains(Flags::APP_ERROR);
                        return match this.codec.decode(&payload, app_error, this.limit) {
                            Ok(item) => Poll::Ready(Some(Ok(item))),
                            Err(e) => this.fail(undecodable(this.method, &e, this.side)),
                        };
                    }
                    Event::End => {
                        this.done = true;
                        return Poll::Ready(None);
                    }
                    Event::Answer { payload, app_error } => {
                        this.done = true;
                        return match this.codec.decode(&payload, app_error, this.limit) {
                            Ok(answer) => Poll::Ready(Some(Ok(answer))),
                            Err(e) => {
                                Poll::Ready(Some(Err(undecodable(this.method, &e, this.side))))
                            }
                        };
                    }
                    Event::Failed(error) => {
                        this.done = true;
                        return Poll::Ready(Some(Err(error)));
                    }
                }
            }
            if let Some(sleep) = &mut this.deadline
                && sleep.as_mut().poll(cx).is_ready()
            {
                let error = RpcError::new(
                    rpc_codec::Status::DeadlineExceeded,
                    format!("{} did not complete within its deadline", this.method),
                );
                return this.fail(error);
            }
            // What was read goes back to the sender as credit, once per batch.
            if this.read > 0
                && let Some(grant) = this.inbound.taken(std::mem::take(&mut this.read))
            {
                this.link.grant(this.id, grant);
            }
            if !this.inbound.take_into(&mut this.local, cx.waker()) {
                // Closed, its last event taken (by a consumer that was dropped meanwhile, say): nothing more.
                this.done = true;
                return Poll::Ready(None);
            }
            if this.local.is_empty() {
                return Poll::Pending;
            }
        }
    }
}

impl<T> Drop for Streaming<T> {
    fn drop(&mut self) {
        if !self.done {
            self.inbound.abandon();
            self.link.abandon(self.id);
        }
    }
}
