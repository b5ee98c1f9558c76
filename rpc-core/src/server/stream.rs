//! The server's side of streams (protocol 1.1): admitting a `Request` that opens one (the method must stream,
//! and the connection must be under [`crate::ServerConfig::max_streams_per_connection`]), routing the client's
//! `Item`, `End` and `Credit` frames to it, and [`Opened`], what the call's handler holds of its stream: the
//! items the client sends, the credit for those it sends back. The stream leaves the connection when the
//! handler is done with it.

use std::sync::Arc;

use bytes::Bytes;
use rpc_codec::{FrameRef, Header, Kind, Metadata, Status};

use super::connection::ConnShared;
use crate::error::RpcError;
use crate::stream::{Event, Inbound, Link, Outbound, overrun};

/// What the connection keeps of each open stream.
#[derive(Debug)]
pub(crate) struct Open {
    /// The items the client sends, if the method takes a stream.
    inbound: Option<Arc<Inbound>>,
    outbound: Arc<Outbound>,
}

/// A stream the connection admitted. The call's handler holds it ([`Held`]), and so does the [`crate::Streaming`]
/// of the client's items, if any; once neither does, it leaves the connection.
pub(crate) struct Opened {
    pub(crate) id: u64,
    pub(crate) method: &'static crate::MethodInfo,
    pub(crate) conn: Arc<ConnShared>,
    pub(crate) inbound: Option<Arc<Inbound>>,
    pub(crate) outbound: Arc<Outbound>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("id", &self.id)
            .field("method", &self.method)
            .finish_non_exhaustive()
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.end_call();
        self.conn.streams().remove(&self.id);
    }
}

impl Opened {
    /// The call ended (answered, cancelled, out of time): nothing more is sent, and a reader of the client's
    /// items that outlives the handler (in a task of its own) hears that they end.
    fn end_call(&self) {
        self.outbound.close();
        if let Some(inbound) = &self.inbound {
            let message = format!("the call of {} ended", self.method);
            inbound.close(Event::Failed(RpcError::new(Status::Cancelled, message)));
        }
    }
}

/// The handler's hold on its stream: when the handler's future is dropped, the call has ended.
pub(crate) struct Held(pub(crate) Arc<Opened>);

impl Drop for Held {
    fn drop(&mut self) {
        self.0.end_call();
    }
}

impl Link for Opened {
    fn grant(&self, id: u64, bytes: u32) {
        self.conn.grant(id, bytes);
    }

    fn abandon(&self, _id: u64) {
        // The handler stopped reading; the stream stays open until the call ends (the handler may still send).
    }
}

/// Admits the request of `frame` for a method that streams as `kind` (`None`: a unary method): `Ok(None)` for
/// a unary call, `Ok(Some)` for a stream now open, `Err` with the refusal's status and message.
pub(crate) fn admit(
    conn: &Arc<ConnShared>,
    frame: &FrameRef<'_>,
    kind: Option<crate::stream::Kind>,
    method: &'static crate::MethodInfo,
) -> Result<Option<Arc<Opened>>, (Status, String)> {
    let h = frame.header();
    let opens = h.flags.contains(rpc_codec::Flags::STREAM);
    let kind = match (kind, opens) {
        (None, false) => return Ok(None),
        (Some(kind), true) => kind,
        (None, true) => {
            let message = format!(
                "{method} does not stream: it is called with a plain request, without the STREAM flag (0x08)"
            );
            return Err((Status::InvalidArgument, message));
        }
        (Some(_), false) => {
            let message = format!(
                "{method} streams: it is opened with the STREAM flag (0x08) of protocol 1.1 \
                 (docs/PROTOCOL.md section 14)"
            );
            return Err((Status::InvalidArgument, message));
        }
    };
    let config = &conn.config;
    let mut streams = conn.streams();
    if streams.len() >= config.max_streams_per_connection {
        let message = format!(
            "this connection has {} streams open, the limit (max_streams_per_connection)",
            streams.len()
        );
        return Err((Status::ResourceExhausted, message));
    }
    let inbound = kind
        .client_sends()
        .then(|| Arc::new(Inbound::new(config.stream_window)));
    let outbound = Arc::new(Outbound::default());
    streams.insert(
        h.request_id,
        Open {
            inbound: inbound.clone(),
            outbound: Arc::clone(&outbound),
        },
    );
    drop(streams);
    if let Some(grant) = inbound.as_ref().and_then(|i| i.opening_grant()) {
        conn.grant(h.request_id, grant);
    }
    Ok(Some(Arc::new(Opened {
        id: h.request_id,
        method,
        conn: Arc::clone(conn),
        inbound,
        outbound,
    })))
}

/// Routes a stream frame of the client (`Item`, `End`, `Credit`) to its stream. Frames of a stream that is
/// not open (it ended, or never was) are dropped: they cost their parse alone.
pub(crate) fn route(conn: &ConnShared, frame: &FrameRef<'_>) {
    let h = frame.header();
    let (inbound, outbound) = match conn.streams().get(&h.request_id) {
        Some(open) => (open.inbound.clone(), Arc::clone(&open.outbound)),
        None => return,
    };
    match h.kind {
        Kind::Credit => {
            let bytes = <[u8; 4]>::try_from(frame.payload).map_or(0, u32::from_le_bytes);
            outbound.grant(bytes);
        }
        Kind::End => {
            if let Some(inbound) = inbound {
                inbound.close(Event::End);
            }
        }
        Kind::Item => {
            // Items to a half that takes none are dropped.
            let Some(inbound) = inbound else { return };
            // An item costs its payload as sent; a compressed one is decompressed only within the credit.
            let cost = crate::stream::cost(frame.payload.len());
            let payload = match h.flags.encoding() {
                None => Ok(Bytes::copy_from_slice(frame.payload)),
                Some(_) if !inbound.has_credit() => Ok(Bytes::new()),
                Some(encoding) => {
                    conn.compression
                        .inflate(encoding, frame.payload, conn.codec_config())
                }
            };
            let refused = match payload {
                Ok(payload) => match inbound.item(payload, h.flags, cost) {
                    Ok(()) => return,
                    Err(refused) => overrun(h.request_id, &refused),
                },
                Err((status, message)) => RpcError::new(status, message),
            };
            // The stream fails; the connection and its other calls go on.
            inbound.close(Event::Failed(refused.clone()));
            conn.fail_stream(h.request_id, refused.code(), refused.message());
        }
        _ => {}
    }
}

/// Ends every stream of the connection: it is closing.
pub(crate) fn close_all(conn: &ConnShared) {
    let open: Vec<Open> = conn.streams().drain().map(|(_, open)| open).collect();
    for open in open {
        open.end(|| RpcError::unavailable("connection closed"));
    }
}

/// The client cancelled stream `id`: its halves end.
pub(crate) fn cancelled(conn: &ConnShared, id: u64) {
    let open = conn.streams().remove(&id);
    if let Some(open) = open {
        open.end(|| RpcError::new(Status::Cancelled, "the client cancelled the stream"));
    }
}

impl Open {
    /// The stream is over: nothing more is sent, and a reader of the client's items hears `error` last.
    fn end(self, error: impl FnOnce() -> RpcError) {
        self.outbound.close();
        if let Some(inbound) = self.inbound {
            inbound.close(Event::Failed(error()));
        }
    }
}

impl Link for ConnShared {
    fn grant(&self, id: u64, bytes: u32) {
        let _ = self.outbox.push(|state| {
            self.codec.encode_bytes(
                &Header::credit(id),
                &Metadata::new(),
                &bytes.to_le_bytes(),
                &mut state.buf,
            )
        });
    }

    fn abandon(&self, _id: u64) {
        // The handler stopped reading; its stream stays open until the handler ends (it may still send).
    }
}
