//! A call's arguments on their way out, with the payload codec of their service: what the client's layers carry
//! down to the connection, which serializes them straight into its queue. Generic over the codec, so the
//! default (bincode) path pays nothing for the choice; encoded once into bytes only for the user's layers.

use bytes::Bytes;
use rpc_codec::{
    EncodeError, Flags, FrameCodec, Header, Metadata, PayloadCodec, PayloadError, WriteBuf,
};
use serde::Serialize;

/// Something that encodes as a frame's payload.
pub(crate) trait Payload {
    /// Appends the frame of `header` and `metadata` with this payload to `buf`; on error `buf` is as it was.
    fn encode_frame(
        &self,
        frame: &FrameCodec,
        header: &Header,
        metadata: &Metadata,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError>;

    /// The payload's bytes, for layers that see a call's request as bytes.
    fn to_bytes(&self) -> Result<Bytes, PayloadError>;

    /// The flags of the payload's format: [`Flags::JSON`] for a call in JSON (protocol 1.2), else none.
    fn flags(&self) -> Flags;
}

/// Arguments and the codec of their service.
pub(crate) struct Args<'a, C, A: ?Sized> {
    pub(crate) codec: &'a C,
    pub(crate) args: &'a A,
}

impl<C: PayloadCodec, A: Serialize + ?Sized> Payload for Args<'_, C, A> {
    #[inline(always)]
    fn encode_frame(
        &self,
        frame: &FrameCodec,
        header: &Header,
        metadata: &Metadata,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        frame.encode_value(header, metadata, self.args, self.codec, buf)
    }

    fn to_bytes(&self) -> Result<Bytes, PayloadError> {
        let len = self.codec.encoded_len(self.args)?;
        self.codec.encode_to_vec(self.args, len).map(Bytes::from)
    }

    #[inline(always)]
    fn flags(&self) -> Flags {
        C::FLAGS
    }
}

/// A payload already encoded (by the user's layers' [`crate::client::layer::Request`]), with the flags of its
/// format.
pub(crate) struct Encoded<'a>(pub(crate) &'a Bytes, pub(crate) Flags);

impl Payload for Encoded<'_> {
    fn encode_frame(
        &self,
        frame: &FrameCodec,
        header: &Header,
        metadata: &Metadata,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        encode_flagged(frame, header, self.1, metadata, self.0, buf)
    }

    fn to_bytes(&self) -> Result<Bytes, PayloadError> {
        Ok(self.0.clone())
    }

    fn flags(&self) -> Flags {
        self.1
    }
}

/// Arguments in JSON text, an object keyed by argument name, sent as they are (protocol 1.2, flag `JSON`):
/// what [`crate::Client::call_json`] sends.
pub(crate) struct RawJson<'a>(pub(crate) &'a [u8]);

impl Payload for RawJson<'_> {
    fn encode_frame(
        &self,
        frame: &FrameCodec,
        header: &Header,
        metadata: &Metadata,
        buf: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        encode_flagged(frame, header, Flags::JSON, metadata, self.0, buf)
    }

    fn to_bytes(&self) -> Result<Bytes, PayloadError> {
        Ok(Bytes::copy_from_slice(self.0))
    }

    fn flags(&self) -> Flags {
        Flags::JSON
    }
}

/// Appends the frame of `header`, with `flags` set too, `metadata` and `payload` as it is.
fn encode_flagged(
    frame: &FrameCodec,
    header: &Header,
    flags: Flags,
    metadata: &Metadata,
    payload: &[u8],
    buf: &mut WriteBuf,
) -> Result<(), EncodeError> {
    let header = Header {
        flags: header.flags.with(flags),
        ..*header
    };
    frame.encode_bytes(&header, metadata, payload, buf)
}
