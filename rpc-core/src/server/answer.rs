//! A handler's answer: the handler's future, run in its call's [`Context`], and once it is done its value,
//! kept typed in the same allocation until the connection serializes it straight into its output buffer.
//! Layers see the value's status at no cost, and its bytes when they ask ([`crate::server::Response::payload`]).

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use rpc_codec::{
    EncodeError, FrameCodec, Header, Metadata, PayloadCodec, PayloadError, Status, WriteBuf,
};
use serde::Serialize;

use super::handler::panic_message;

/// A handler's future and, once done, its value.
pub(crate) trait Answering: Send {
    /// Drives the handler; `Err` with the message of a panic.
    fn poll_answer(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), String>>;
    /// Whether the value is the method's own error.
    fn is_app_error(&self) -> bool;
    /// Appends the answer's frame for call `id` to `buf`.
    fn encode(&self, frame: &FrameCodec, id: u64, buf: &mut WriteBuf) -> Result<(), EncodeError>;
    /// The value's payload bytes.
    fn payload(&self) -> Result<Vec<u8>, PayloadError>;
    /// How the call ended: `Ok` but for a stream that failed.
    fn status(&self) -> Status;
    /// The answer writes its own frame (a stream's end), which is never compressed.
    fn frames_itself(&self) -> bool;
    /// The answer is in JSON (protocol 1.2): its frame carries the flag `JSON`.
    fn is_json(&self) -> bool;
}

/// How a method's value is answered: as a value, or (for `Result`) as a value or the method's own error.
pub(crate) trait Reply<T>: Send + Sync + 'static {
    /// Whether `value` is the method's own error.
    fn is_app_error(&self, value: &T) -> bool;
    /// Appends the frame answering call `id` with `value`.
    fn encode(
        &self,
        frame: &FrameCodec,
        id: u64,
        value: &T,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError>;
    /// `value`'s payload bytes.
    fn payload(&self, value: &T) -> Result<Vec<u8>, PayloadError>;
    /// How the call ended with `value`.
    fn status(&self, _value: &T) -> Status {
        Status::Ok
    }
    /// Whether `encode` writes a frame of its own kind (a stream's end), never a `Response`.
    fn frames_itself(&self) -> bool {
        false
    }
    /// Whether the value is answered in JSON.
    fn is_json(&self) -> bool {
        false
    }
}

/// How a method's value is encoded: by its service's codec, or in JSON for a call that came in JSON (protocol
/// 1.2). One flag tested per answer is all the binary path pays.
pub(crate) struct Coded<C> {
    codec: C,
    json: bool,
}

impl<C: PayloadCodec> Coded<C> {
    #[inline(always)]
    pub(crate) fn new(codec: C, json: bool) -> Coded<C> {
        Coded { codec, json }
    }

    /// Appends the frame of `header` with `value`.
    #[inline(always)]
    fn encode<T: Serialize + ?Sized>(
        &self,
        frame: &FrameCodec,
        header: &Header,
        value: &T,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        match self.json {
            false => frame.encode_value(header, &Metadata::new(), value, &self.codec, buf),
            true => encode_json(frame, header, value, buf),
        }
    }

    /// `value`'s payload bytes.
    fn payload<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, PayloadError> {
        match self.json {
            false => payload(&self.codec, value),
            #[cfg(feature = "json")]
            true => payload(&rpc_codec::JsonCall, value),
            #[cfg(not(feature = "json"))]
            true => Err(no_json()),
        }
    }
}

/// The frame of `header` with `value` in JSON (flag `JSON`).
#[cold]
#[inline(never)]
fn encode_json<T: Serialize + ?Sized>(
    frame: &FrameCodec,
    header: &Header,
    value: &T,
    buf: &mut WriteBuf,
) -> Result<(), EncodeError> {
    #[cfg(feature = "json")]
    return frame.encode_value(header, &Metadata::new(), value, &rpc_codec::JsonCall, buf);
    #[cfg(not(feature = "json"))]
    {
        let _ = (frame, header, value, buf);
        Err(EncodeError::Payload(no_json()))
    }
}

/// Without the feature `json`, no call comes in JSON (the connection refuses them), so none is answered so.
#[cfg(not(feature = "json"))]
fn no_json() -> PayloadError {
    PayloadError::Unencodable(String::from("this server was built without JSON"))
}

/// A method's value, always a value.
pub(crate) struct Plain<C>(pub(crate) Coded<C>);

impl<C: PayloadCodec, T: Serialize> Reply<T> for Plain<C> {
    fn is_app_error(&self, _: &T) -> bool {
        false
    }

    #[inline]
    fn encode(
        &self,
        frame: &FrameCodec,
        id: u64,
        value: &T,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        self.0.encode(frame, &Header::response(id), value, buf)
    }

    fn payload(&self, value: &T) -> Result<Vec<u8>, PayloadError> {
        self.0.payload(value)
    }

    fn is_json(&self) -> bool {
        self.0.json
    }
}

/// `value` encoded by `codec`, in a vector of its own.
fn payload<C: PayloadCodec, T: Serialize + ?Sized>(
    codec: &C,
    value: &T,
) -> Result<Vec<u8>, PayloadError> {
    codec.encode_to_vec(value, codec.encoded_len(value)?)
}

/// A method returning `Result<U, E>`: `Ok` is the value, `Err` the method's own error (flag `APP_ERROR`).
pub(crate) struct Fallible<C>(pub(crate) Coded<C>);

impl<C: PayloadCodec, U: Serialize, E: Serialize> Reply<Result<U, E>> for Fallible<C> {
    fn is_app_error(&self, value: &Result<U, E>) -> bool {
        value.is_err()
    }

    #[inline]
    fn encode(
        &self,
        frame: &FrameCodec,
        id: u64,
        value: &Result<U, E>,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        match value {
            Ok(v) => self.0.encode(frame, &Header::response(id), v, buf),
            Err(e) => self.0.encode(frame, &Header::app_error(id), e, buf),
        }
    }

    fn payload(&self, value: &Result<U, E>) -> Result<Vec<u8>, PayloadError> {
        match value {
            Ok(v) => self.0.payload(v),
            Err(e) => self.0.payload(e),
        }
    }

    fn is_json(&self) -> bool {
        self.0.json
    }
}

/// How a stream's handler ended (protocol 1.1): its last item sent, the stream cancelled (or its connection
/// closed), or an item that failed.
#[derive(Debug)]
pub(crate) enum StreamEnd {
    Done,
    Closed,
    Failed(crate::RpcError),
}

/// A stream's end, answered with an `End` frame, an `Error` frame, or nothing for a stream nobody reads.
pub(crate) struct Ended;

impl Reply<StreamEnd> for Ended {
    fn is_app_error(&self, _: &StreamEnd) -> bool {
        false
    }

    fn encode(
        &self,
        frame: &FrameCodec,
        id: u64,
        value: &StreamEnd,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        let md = Metadata::new();
        match value {
            StreamEnd::Done => frame.encode_bytes(&Header::end(id), &md, &[], buf),
            StreamEnd::Closed => Ok(()),
            StreamEnd::Failed(e) => {
                let text = e.message().as_bytes();
                let text = &text[..text.len().min(4096)];
                frame.encode_bytes(&Header::error(id, e.code()), &md, text, buf)
            }
        }
    }

    fn payload(&self, _: &StreamEnd) -> Result<Vec<u8>, PayloadError> {
        Ok(Vec::new())
    }

    fn status(&self, value: &StreamEnd) -> Status {
        match value {
            StreamEnd::Done => Status::Ok,
            StreamEnd::Closed => Status::Cancelled,
            StreamEnd::Failed(e) => e.code(),
        }
    }

    fn frames_itself(&self) -> bool {
        true
    }
}

pin_project_lite::pin_project! {
    /// A handler: running, then its value.
    #[project = StateProj]
    enum State<F, T> {
        Running { #[pin] future: F },
        Done { value: T },
        Panicked,
    }
}

pin_project_lite::pin_project! {
    /// A handler with the way its value is answered.
    pub(crate) struct Handler<F: Future, R> {
        #[pin]
        state: State<F, F::Output>,
        reply: R,
    }
}

impl<F: Future, R> Handler<F, R> {
    pub(crate) fn new(future: F, reply: R) -> Handler<F, R> {
        Handler {
            state: State::Running { future },
            reply,
        }
    }
}

impl<F, R> Answering for Handler<F, R>
where
    F: Future + Send,
    F::Output: Send,
    R: Reply<F::Output>,
{
    #[inline]
    fn poll_answer(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Result<(), String>> {
        let mut state = self.project().state;
        let polled = match state.as_mut().project() {
            StateProj::Running { future } => {
                // A panic inside the handler is caught at each poll: the call answers `Internal`, and the
                // connection and its other calls live on.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| future.poll(cx)))
            }
            StateProj::Done { .. } => return Poll::Ready(Ok(())),
            StateProj::Panicked => return Poll::Ready(Err(String::from("polled after a panic"))),
        };
        match polled {
            Ok(Poll::Ready(value)) => {
                state.set(State::Done { value });
                Poll::Ready(Ok(()))
            }
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => {
                state.set(State::Panicked);
                Poll::Ready(Err(panic_message(&*payload)))
            }
        }
    }

    fn is_app_error(&self) -> bool {
        match &self.state {
            State::Done { value } => self.reply.is_app_error(value),
            _ => false,
        }
    }

    #[inline]
    fn encode(&self, frame: &FrameCodec, id: u64, buf: &mut WriteBuf) -> Result<(), EncodeError> {
        match &self.state {
            State::Done { value } => self.reply.encode(frame, id, value, buf),
            _ => Err(EncodeError::Payload(PayloadError::Unencodable(
                String::from("the handler has not finished"),
            ))),
        }
    }

    fn payload(&self) -> Result<Vec<u8>, PayloadError> {
        match &self.state {
            State::Done { value } => self.reply.payload(value),
            _ => Err(PayloadError::Unencodable(String::from(
                "the handler has not finished",
            ))),
        }
    }

    fn status(&self) -> Status {
        match &self.state {
            State::Done { value } => self.reply.status(value),
            _ => Status::Ok,
        }
    }

    fn frames_itself(&self) -> bool {
        self.reply.frames_itself()
    }

    fn is_json(&self) -> bool {
        self.reply.is_json()
    }
}
