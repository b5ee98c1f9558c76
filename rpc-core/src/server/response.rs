//! [`Response`]: how a call ended, as the server's layers see it on its way back to the connection: the
//! handler's value or its own error (kept typed, and serialized straight into the connection's output buffer
//! when sent), an answer a layer made (payload bytes in the service's codec), or a status and message.

use std::borrow::Cow;
use std::pin::Pin;

use rpc_codec::{EncodeError, FrameCodec, Header, Metadata, Status, WriteBuf};

use super::answer::Answering;
use crate::metrics::Ended;

enum Kind {
    /// A handler's value, encoded when sent.
    Handler(Pin<Box<dyn Answering>>),
    /// A value a layer answered with, already encoded.
    Value(Vec<u8>),
    /// The method's own error, from a layer, already encoded.
    AppError(Vec<u8>),
    Failed {
        status: Status,
        message: Cow<'static, str>,
        /// Asks the caller to wait this long before sending the call again ([`crate::RETRY_AFTER`]); 0: no ask.
        retry_after_ms: u32,
    },
}

/// How a call ended: what the server sends back, unless the call is one-way.
///
/// ```
/// use rpc_core::server::Response;
/// use rpc_core::Status;
///
/// let refused = Response::error(Status::PermissionDenied, "tenant b may not call Calc.add");
/// assert_eq!(refused.status(), Status::PermissionDenied);
/// assert_eq!(refused.message(), Some("tenant b may not call Calc.add"));
///
/// // An answer from elsewhere (a cache, say), already encoded with the service's codec.
/// let cached = Response::value_bytes(vec![5, 0, 0, 0]);
/// assert_eq!(cached.status(), Status::Ok);
/// assert_eq!(cached.payload().as_deref(), Some(&[5u8, 0, 0, 0][..]));
/// ```
pub struct Response {
    kind: Kind,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Response");
        d.field("status", &self.status());
        d.field("app_error", &self.is_app_error());
        if let Some(message) = self.message() {
            d.field("message", &message);
        }
        d.finish()
    }
}

impl Response {
    /// Fails the call with `status` and `message` (a refusal of a layer, say). `Status::Ok` is not a failure:
    /// it becomes `Unknown`.
    pub fn error(status: Status, message: impl Into<Cow<'static, str>>) -> Response {
        let status = match status {
            Status::Ok => Status::Unknown,
            other => other,
        };
        Response {
            kind: Kind::Failed {
                status,
                message: message.into(),
                retry_after_ms: 0,
            },
        }
    }

    /// A failed call's answer asking the caller to wait `after` before sending it again (at least 1 ms, at most
    /// an hour), sent as [`crate::RETRY_AFTER`] in the `Error` frame's metadata: what a layer that sheds load
    /// or limits a rate answers, for a call it did not process. Other answers are left as they are.
    ///
    /// ```
    /// use std::time::Duration;
    /// use rpc_core::server::Response;
    /// use rpc_core::Status;
    ///
    /// let shed = Response::error(Status::ResourceExhausted, "over 100 calls/s")
    ///     .with_retry_after(Duration::from_millis(250));
    /// assert_eq!(shed.retry_after(), Some(Duration::from_millis(250)));
    /// ```
    pub fn with_retry_after(mut self, after: std::time::Duration) -> Response {
        if let Kind::Failed { retry_after_ms, .. } = &mut self.kind {
            *retry_after_ms = after
                .as_millis()
                .clamp(1, u128::from(crate::error::MAX_RETRY_AFTER_MS))
                as u32;
        }
        self
    }

    /// How long a failed call's answer asks the caller to wait before sending it again, if it asks.
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match &self.kind {
            Kind::Failed { retry_after_ms, .. } if *retry_after_ms > 0 => {
                Some(std::time::Duration::from_millis(u64::from(*retry_after_ms)))
            }
            _ => None,
        }
    }

    /// Answers with a value already encoded by the service's payload codec.
    pub fn value_bytes(payload: Vec<u8>) -> Response {
        Response {
            kind: Kind::Value(payload),
        }
    }

    /// Answers with the method's own error, already encoded by the service's payload codec.
    pub fn app_error_bytes(payload: Vec<u8>) -> Response {
        Response {
            kind: Kind::AppError(payload),
        }
    }

    /// The answer of a handler that finished.
    pub(crate) fn handler(answer: Pin<Box<dyn Answering>>) -> Response {
        Response {
            kind: Kind::Handler(answer),
        }
    }

    /// `Ok` for a value or the method's own error (the call was answered), else the status it failed with.
    pub fn status(&self) -> Status {
        match &self.kind {
            Kind::Failed { status, .. } => *status,
            Kind::Handler(answer) => answer.status(),
            _ => Status::Ok,
        }
    }

    /// A handler's answer encoded in JSON (a call in JSON's); `false` for bytes a layer answered with, whose
    /// format is not known.
    #[cfg(feature = "http")]
    pub(crate) fn is_json(&self) -> bool {
        matches!(&self.kind, Kind::Handler(answer) if answer.is_json())
    }

    /// The answer writes a frame of its own kind (a stream's end), never compressed.
    pub(crate) fn frames_itself(&self) -> bool {
        match &self.kind {
            Kind::Handler(answer) => answer.frames_itself(),
            _ => false,
        }
    }

    /// Whether the answer is the method's own error (`Err` of a method returning `Result`).
    pub fn is_app_error(&self) -> bool {
        match &self.kind {
            Kind::Handler(answer) => answer.is_app_error(),
            Kind::AppError(_) => true,
            _ => false,
        }
    }

    /// The value or application error, encoded by the service's codec (a handler's is encoded now, for the
    /// asking: the connection serializes it without this copy); `None` for a failed call or one whose value
    /// does not encode.
    pub fn payload(&self) -> Option<Cow<'_, [u8]>> {
        match &self.kind {
            Kind::Handler(answer) => answer.payload().ok().map(Cow::Owned),
            Kind::Value(bytes) | Kind::AppError(bytes) => Some(Cow::Borrowed(bytes)),
            Kind::Failed { .. } => None,
        }
    }

    /// The message of a failed call.
    pub fn message(&self) -> Option<&str> {
        match &self.kind {
            Kind::Failed { message, .. } => Some(message),
            _ => None,
        }
    }

    /// How the call ended, as metrics and spans name it.
    pub(crate) fn ended(&self) -> Ended {
        match self.status() {
            Status::Ok if self.is_app_error() => Ended::AppError,
            status => Ended::Status(status),
        }
    }

    /// Appends the answer's frame for call `id` to `buf`; `Ok(false)` for a failed call, which is answered with
    /// an `Error` frame instead.
    pub(crate) fn encode(
        &self,
        frame: &FrameCodec,
        id: u64,
        buf: &mut WriteBuf,
    ) -> Result<bool, EncodeError> {
        let md = Metadata::new();
        match &self.kind {
            Kind::Handler(answer) => answer.encode(frame, id, buf).map(|()| true),
            Kind::Value(bytes) => frame
                .encode_bytes(&Header::response(id), &md, bytes, buf)
                .map(|()| true),
            Kind::AppError(bytes) => frame
                .encode_bytes(&Header::app_error(id), &md, bytes, buf)
                .map(|()| true),
            Kind::Failed { .. } => Ok(false),
        }
    }

    /// The frame answering call `id` as `plan` says (protocol 1.1): its header, its metadata (with the server's
    /// list of encodings, if the answer carries it) and its payload (compressed, if it is large enough to gain);
    /// `None` for a failed call, which is answered with an `Error` frame instead.
    pub(crate) fn planned(
        &self,
        id: u64,
        plan: &super::compression::Plan,
    ) -> Result<Option<(Header, Metadata, Vec<u8>)>, EncodeError> {
        let header = match self.is_app_error() {
            true => Header::app_error(id),
            false => Header::response(id),
        };
        let header = match &self.kind {
            Kind::Handler(answer) if answer.is_json() => Header {
                flags: header.flags.with(rpc_codec::Flags::JSON),
                ..header
            },
            _ => header,
        };
        let bytes = match &self.kind {
            Kind::Handler(answer) => answer.payload()?,
            Kind::Value(bytes) | Kind::AppError(bytes) => bytes.clone(),
            Kind::Failed { .. } => return Ok(None),
        };
        let metadata = plan.announce.clone().unwrap_or_default();
        let squeezed = plan.squeeze.and_then(|(encoding, threshold)| {
            crate::compression::squeeze(encoding, threshold, &bytes)
        });
        Ok(Some(match squeezed {
            Some((flags, packed)) => (
                Header {
                    flags: header.flags.with(flags),
                    ..header
                },
                metadata,
                packed,
            ),
            None => (header, metadata, bytes),
        }))
    }
}
