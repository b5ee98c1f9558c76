//! `RpcError`: why a call did not produce the method's result. It carries a status code from the protocol's
//! table and a message; an application's own error travels apart, as the method's `Err` value.

use std::borrow::Cow;
use std::fmt::Write as _;

use rpc_codec::Status;

/// Where a payload was when its codec failed, which says whose fault it was: the caller's for a request (its
/// arguments), the server's for a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PayloadSide {
    /// Arguments: encoded by the client, decoded by the server.
    Request,
    /// A result or an application's error: encoded by the server, decoded by the client.
    Response,
}

/// The status of a payload that its codec could not encode or decode: `ResourceExhausted` when it crossed a limit
/// (frame length, payload room, decoded memory, nesting), else `InvalidArgument` for a request and `Internal` for
/// a response. The one mapping from codec errors to statuses, on both sides.
pub(crate) fn payload_status(side: PayloadSide, error: &rpc_codec::PayloadError) -> Status {
    use rpc_codec::PayloadError;
    match error {
        PayloadError::TooLarge { .. }
        | PayloadError::DecodedTooLarge { .. }
        | PayloadError::TooDeep { .. } => Status::ResourceExhausted,
        _ => match side {
            PayloadSide::Request => Status::InvalidArgument,
            PayloadSide::Response => Status::Internal,
        },
    }
}

/// [`payload_status`] for a frame that did not encode: a limit of the frame is `ResourceExhausted` too.
pub(crate) fn encode_status(side: PayloadSide, error: &rpc_codec::EncodeError) -> Status {
    match error {
        rpc_codec::EncodeError::Limit(_) => Status::ResourceExhausted,
        rpc_codec::EncodeError::Payload(p) => payload_status(side, p),
        _ => match side {
            PayloadSide::Request => Status::InvalidArgument,
            PayloadSide::Response => Status::Internal,
        },
    }
}

/// The metadata key of an `Error` frame by which a server that refused a call unprocessed (shedding load, over a
/// rate limit) asks for it again no sooner than this many milliseconds, as decimal ASCII (`retry-after-ms: 250`;
/// docs/PROTOCOL.md section 7.5). A balanced client sends the call to another instance meanwhile, and leaves the
/// one that refused it alone for that long.
pub const RETRY_AFTER: &str = "retry-after-ms";

/// The longest `retry-after-ms` taken from a peer (one hour); a longer one counts as this.
pub(crate) const MAX_RETRY_AFTER_MS: u32 = 3_600_000;

/// Most bytes of a peer's text (the message of an `Error` or `GoAway` frame) that an error message carries.
pub(crate) const MAX_PEER_TEXT: usize = 4096;

/// A call failed in transport or in the runtime: the status code of `docs/PROTOCOL.md` section 6 and a message.
///
/// A method that returns `Result<U, E>` gives its caller `Result<Result<U, E>, RpcError>`: the outer error is
/// this one, the inner `E` is the application's own, so the two are never confused.
///
/// ```
/// use rpc_core::{RpcError, Status};
/// let e = RpcError::new(Status::Unavailable, "connection closed");
/// assert_eq!(e.to_string(), "unavailable: connection closed");
/// assert!(!e.is_not_processed(), "a connection that closed mid-call leaves the call's fate unknown");
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct RpcError {
    code: Status,
    message: Cow<'static, str>,
    /// The call certainly did not run on the server.
    not_processed: bool,
    /// How long the server asked the caller to wait before sending it this call again, in milliseconds (0: it
    /// did not say). A `u32` beside the flag keeps the error as small as it was.
    retry_after_ms: u32,
}

impl RpcError {
    /// An error with this status and message.
    pub fn new(code: Status, message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
            not_processed: false,
            retry_after_ms: 0,
        }
    }

    /// An error for a call that certainly did not run: it never left this client (no connection could be
    /// made, or the connection closed before the request was written), or the server refused it unprocessed.
    pub fn not_processed(code: Status, message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError {
            not_processed: true,
            ..RpcError::new(code, message)
        }
    }

    /// The status code.
    pub fn code(&self) -> Status {
        self.code
    }

    /// The message, which says what was expected and what happened.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether the call certainly did not run on the server, so that sending it again, to this server or
    /// another, cannot run it twice. A balanced client retries such calls for any method; after other
    /// `Unavailable` errors (a connection lost mid-call) it retries only `#[idempotent]` methods.
    pub fn is_not_processed(&self) -> bool {
        self.not_processed
    }

    /// How long the server asked the caller to wait before sending it this call again ([`RETRY_AFTER`]), if it
    /// said.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        (self.retry_after_ms > 0)
            .then(|| std::time::Duration::from_millis(u64::from(self.retry_after_ms)))
    }

    /// This error, asking the caller to wait `after` before sending the call again (at least 1 ms, at most an
    /// hour): what a layer that sheds load or limits a rate answers.
    pub fn with_retry_after(self, after: std::time::Duration) -> RpcError {
        let ms = after.as_millis().clamp(1, u128::from(MAX_RETRY_AFTER_MS)) as u32;
        RpcError {
            retry_after_ms: ms,
            ..self
        }
    }

    /// This error, marked as certainly not processed.
    pub(crate) fn unprocessed(self) -> RpcError {
        RpcError {
            not_processed: true,
            ..self
        }
    }

    pub(crate) fn unavailable(message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError::new(Status::Unavailable, message)
    }

    pub(crate) fn internal(message: impl Into<Cow<'static, str>>) -> RpcError {
        RpcError::new(Status::Internal, message)
    }
}

/// A peer's text as it may appear in an error message: invalid UTF-8 replaced, what
/// [`must_escape`](crate::text::must_escape) names escaped (no peer can clear a terminal or forge a log line), and cut after [`MAX_PEER_TEXT`] bytes, saying so.
pub(crate) fn peer_text(bytes: &[u8]) -> String {
    let cut = bytes.len() > MAX_PEER_TEXT;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_PEER_TEXT)]);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if crate::text::must_escape(c) {
            let _ = write!(out, "{}", c.escape_default());
        } else {
            out.push(c);
        }
    }
    if cut {
        let _ = write!(out, "... ({} bytes in all)", bytes.len());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_errors_map_to_one_status_each_side() {
        use rpc_codec::{EncodeError, LimitExceeded, PayloadError};
        let too_large = || PayloadError::TooLarge { limit: 10 };
        let malformed = || PayloadError::Unencodable("no".to_owned());
        let deep = || PayloadError::TooDeep { limit: 3 };
        for (side, otherwise) in [
            (PayloadSide::Request, Status::InvalidArgument),
            (PayloadSide::Response, Status::Internal),
        ] {
            assert_eq!(
                payload_status(side, &too_large()),
                Status::ResourceExhausted
            );
            assert_eq!(payload_status(side, &deep()), Status::ResourceExhausted);
            assert_eq!(payload_status(side, &malformed()), otherwise);
            let limit = EncodeError::Limit(LimitExceeded::MetadataTooLarge { len: 9, limit: 8 });
            assert_eq!(encode_status(side, &limit), Status::ResourceExhausted);
            assert_eq!(
                encode_status(side, &EncodeError::Payload(too_large())),
                Status::ResourceExhausted
            );
            assert_eq!(
                encode_status(side, &EncodeError::Payload(malformed())),
                otherwise
            );
        }
    }

    #[test]
    fn a_peers_text_is_escaped_and_bounded() {
        assert_eq!(peer_text(b"no such method"), "no such method");
        assert_eq!(peer_text(b"\x1b[2J\nforged"), "\\u{1b}[2J\\nforged");
        assert_eq!(peer_text(&[0x66, 0xff]), "f\u{fffd}");
        let long = peer_text(&vec![b'a'; MAX_PEER_TEXT + 10]);
        assert!(long.starts_with(&"a".repeat(MAX_PEER_TEXT)), "{long}");
        assert!(long.ends_with(&format!("... ({} bytes in all)", MAX_PEER_TEXT + 10)));
    }
}
