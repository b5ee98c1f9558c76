//! How a stream's items travel: each one an `Item` frame whose payload the service's payload codec encodes. An
//! item of type `Result<U, E>` goes as `U`, or as `E` with [`rpc_codec::Flags::APP_ERROR`], so that the
//! application's error stays apart from the stream's own failures, as for unary calls.

use rpc_codec::{EncodeError, FrameCodec, Header, Metadata, PayloadCodec, PayloadError, WriteBuf};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{PayloadSide, RpcError, encode_status, payload_status};
use crate::method::MethodInfo;

/// Writes items of type `T` as frames, and reads them back.
pub trait ItemCodec<T>: Send + Sync + 'static {
    /// Appends the `Item` frame of stream `id` carrying `item`.
    fn encode(
        &self,
        frame: &FrameCodec,
        id: u64,
        item: &T,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError>;

    /// Appends the bytes of `item` alone (for a batch of items, `rpc_codec::items`) to `out`; `true` if it is
    /// the application's error.
    fn encode_body(&self, item: &T, out: &mut Vec<u8>) -> Result<bool, PayloadError>;

    /// The item whose payload is `payload` (the application's error if `app_error`), decoding at most `limit`
    /// bytes of memory.
    fn decode(&self, payload: &[u8], app_error: bool, limit: usize) -> Result<T, PayloadError>;
}

/// Items that are values, in codec `C`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plain<C>(pub C);

impl<C, T> ItemCodec<T> for Plain<C>
where
    C: PayloadCodec + Send + Sync + 'static,
    T: Serialize + DeserializeOwned,
{
    fn encode(
        &self,
        frame: &FrameCodec,
        id: u64,
        item: &T,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        frame.encode_value(&Header::item(id), &Metadata::new(), item, &self.0, buf)
    }

    fn encode_body(&self, item: &T, out: &mut Vec<u8>) -> Result<bool, PayloadError> {
        append(&self.0, item, out).map(|()| false)
    }

    fn decode(&self, payload: &[u8], app_error: bool, limit: usize) -> Result<T, PayloadError> {
        if app_error {
            return Err(PayloadError::Invalid(String::from(
                "an item flagged as the application's error (APP_ERROR), for items that have none",
            )));
        }
        self.0.decode_within(payload, limit)
    }
}

/// Items of type `Result<U, E>` in codec `C`: `Err` travels flagged [`rpc_codec::Flags::APP_ERROR`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Fallible<C>(pub C);

impl<C, U, E> ItemCodec<Result<U, E>> for Fallible<C>
where
    C: PayloadCodec + Send + Sync + 'static,
    U: Serialize + DeserializeOwned,
    E: Serialize + DeserializeOwned,
{
    fn encode(
        &self,
        frame: &FrameCodec,
        id: u64,
        item: &Result<U, E>,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        let md = Metadata::new();
        match item {
            Ok(v) => frame.encode_value(&Header::item(id), &md, v, &self.0, buf),
            Err(e) => frame.encode_value(&Header::app_error_item(id), &md, e, &self.0, buf),
        }
    }

    fn encode_body(&self, item: &Result<U, E>, out: &mut Vec<u8>) -> Result<bool, PayloadError> {
        match item {
            Ok(v) => append(&self.0, v, out).map(|()| false),
            Err(e) => append(&self.0, e, out).map(|()| true),
        }
    }

    fn decode(
        &self,
        payload: &[u8],
        app_error: bool,
        limit: usize,
    ) -> Result<Result<U, E>, PayloadError> {
        match app_error {
            false => self.0.decode_within(payload, limit).map(Ok),
            true => self.0.decode_within(payload, limit).map(Err),
        }
    }
}

/// Appends `value`, encoded by `codec`, to `out`.
fn append<C: PayloadCodec, T: Serialize + ?Sized>(
    codec: &C,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), PayloadError> {
    // Most items are small: tried in a little room first, measured only if they do not fit.
    let at = out.len();
    out.resize(at + 64, 0);
    if let Some(n) = codec.encode_into(value, &mut out[at..])? {
        out.truncate(at + n);
        return Ok(());
    }
    let len = codec.encoded_len(value)?;
    out.resize(at + len, 0);
    match codec.encode_into(value, &mut out[at..])? {
        Some(n) if n == len => Ok(()),
        _ => {
            out.truncate(at);
            Err(PayloadError::Unencodable(format!(
                "the value measured {len} bytes but encoded to another length"
            )))
        }
    }
}

/// The error of an item of `method` that did not encode, on the `side` that sent it.
pub(crate) fn unencodable(method: &MethodInfo, e: &EncodeError, side: PayloadSide) -> RpcError {
    RpcError::new(
        encode_status(side, e),
        format!("an item of {method} does not encode: {e}"),
    )
}

/// The error of an item of `method` that did not decode, on the `side` that received it.
pub(crate) fn undecodable(method: &MethodInfo, e: &PayloadError, side: PayloadSide) -> RpcError {
    RpcError::new(
        payload_status(side, e),
        format!("an item of {method} does not decode: {e}"),
    )
}
