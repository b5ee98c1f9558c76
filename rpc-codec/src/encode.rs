//! Encoding: a frame is serialized straight into the spare room of the output [`WriteBuf`], header first,
//! then metadata, then the payload, whose length is patched into the header once known; nothing counts as
//! written until the whole frame is checked. Also tokio-util's `Encoder` for `FramedWrite`.

use bytes::{BufMut, BytesMut};
use serde::Serialize;
use tokio_util::codec::Encoder;

use crate::buffer::WriteBuf;
use crate::codec::FrameCodec;
use crate::error::{EncodeError, LimitExceeded, PayloadError};
use crate::frame::{Frame, HEADER_LEN, Header};
use crate::metadata::Metadata;
use crate::payload::PayloadCodec;

impl FrameCodec {
    /// Appends a frame whose payload is `value` encoded by `codec`, serialized straight into `dst`'s spare room.
    /// On any error `dst` is left as it was.
    #[inline(always)]
    pub fn encode_value<P: PayloadCodec, T: Serialize + ?Sized>(
        &self,
        header: &Header,
        metadata: &Metadata,
        value: &T,
        codec: &P,
        dst: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        // The codec's own flags ([`Flags::JSON`](crate::Flags::JSON) for [`crate::JsonCall`]; none for bincode,
        // which folds away).
        let header = &Header {
            flags: header.flags.with(P::FLAGS),
            ..*header
        };
        let md = metadata.as_bytes();
        let room = self.payload_room(md.len(), metadata.len())?;
        // Every rule but the payload's, checked before anything is written (see `put_frame`).
        header.check(md.len(), 0)?;
        match put_frame(header, md, room, dst, |body| codec.encode_into(value, body))? {
            Some(written) => {
                dst.advance(written);
                Ok(())
            }
            // Only the header's value and the metadata's bytes go to the cold path, so that the hot path never
            // has to build them in memory.
            None => encode_value_after_growing(*header, md, room, value, codec, dst),
        }
    }

    /// Appends a frame whose payload is `payload` as it is.
    pub fn encode_bytes(
        &self,
        header: &Header,
        metadata: &Metadata,
        payload: &[u8],
        dst: &mut WriteBuf,
    ) -> Result<(), EncodeError> {
        let len = self.frame_len(header, metadata, payload.len())?;
        dst.reserve(len);
        let room = payload.len();
        let written = put_frame(header, metadata.as_bytes(), room, dst, |body| {
            Ok(body.get_mut(..payload.len()).map(|slot| {
                slot.copy_from_slice(payload);
                payload.len()
            }))
        })?;
        dst.advance(written.unwrap_or(0));
        Ok(())
    }

    /// Checks a frame with a payload of `payload_len` bytes against the header rules and the limits; returns
    /// its length.
    fn frame_len(
        &self,
        header: &Header,
        metadata: &Metadata,
        payload_len: usize,
    ) -> Result<usize, EncodeError> {
        let room = self.payload_room(metadata.as_bytes().len(), metadata.len())?;
        if payload_len > room {
            return Err(LimitExceeded::FrameTooLarge {
                len: (HEADER_LEN + metadata.as_bytes().len() + payload_len) as u64,
                limit: self.config().max_frame_len,
            }
            .into());
        }
        header.check(metadata.as_bytes().len(), payload_len)?;
        Ok(HEADER_LEN + metadata.as_bytes().len() + payload_len)
    }

    /// Bytes left for the payload in a frame with metadata of `metadata_len` bytes in `entries` entries, or the
    /// limit the metadata crosses.
    #[inline(always)]
    fn payload_room(&self, metadata_len: usize, entries: usize) -> Result<usize, LimitExceeded> {
        let config = self.config();
        if metadata_len > usize::from(config.max_metadata_len) {
            return Err(LimitExceeded::MetadataTooLarge {
                len: metadata_len,
                limit: config.max_metadata_len,
            });
        }
        if entries > usize::from(config.max_metadata_entries) {
            return Err(LimitExceeded::TooManyMetadataEntries {
                limit: config.max_metadata_entries,
            });
        }
        self.max_payload
            .checked_sub(metadata_len)
            .ok_or(LimitExceeded::FrameTooLarge {
                len: (HEADER_LEN + metadata_len) as u64,
                limit: config.max_frame_len,
            })
    }
}

/// The value did not fit in the room `dst` had: measure it, grow once (within the limit), encode again.
#[cold]
#[inline(never)]
fn encode_value_after_growing<P: PayloadCodec, T: Serialize + ?Sized>(
    header: Header,
    md: &[u8],
    room: usize,
    value: &T,
    codec: &P,
    dst: &mut WriteBuf,
) -> Result<(), EncodeError> {
    let len = codec.encoded_len(value)?;
    if len > room {
        return Err(PayloadError::TooLarge { limit: room }.into());
    }
    if len >= dst.apart_from() {
        // Kept apart: the header and metadata go into the buffer, the payload into its own allocation.
        header.check(md.len(), len)?;
        let payload = codec.encode_to_vec(value, len)?;
        dst.reserve(HEADER_LEN + md.len());
        let head = &mut dst.spare_mut()[..HEADER_LEN + md.len()];
        // Both lengths were checked against their limits (u16 and u32).
        head[..HEADER_LEN].copy_from_slice(&header.to_bytes(md.len() as u16, len as u32));
        head[HEADER_LEN..].copy_from_slice(md);
        dst.advance(HEADER_LEN + md.len());
        dst.push_apart(payload);
        return Ok(());
    }
    dst.reserve(HEADER_LEN + md.len() + len);
    match put_frame(&header, md, room, dst, |body| {
        codec.encode_into(value, body)
    })? {
        Some(written) => {
            dst.advance(written);
            Ok(())
        }
        None => Err(PayloadError::Unencodable(format!(
            "the codec measured the value at {len} bytes but could not encode it into that room"
        ))
        .into()),
    }
}

#[cold]
fn codec_overran(len: usize, limit: usize) -> EncodeError {
    PayloadError::Unencodable(format!(
        "the codec reported {len} bytes written into a room of {limit}"
    ))
    .into()
}

/// Writes a frame into the spare room of `dst` without counting it as content: header and metadata, then the
/// payload (by `fill`, into at most `room` bytes), then the payload's length into the header. Returns the
/// frame's length, or `None` if the spare room was too small (the caller then makes room and calls again).
/// The caller has checked `header` with an empty payload.
#[inline(always)]
fn put_frame(
    header: &Header,
    md: &[u8],
    room: usize,
    dst: &mut WriteBuf,
    fill: impl FnOnce(&mut [u8]) -> Result<Option<usize>, PayloadError>,
) -> Result<Option<usize>, EncodeError> {
    let Some((head, body)) = dst.spare_mut().split_at_mut_checked(HEADER_LEN + md.len()) else {
        return Ok(None);
    };
    // The header goes first so that nothing of it stays live while the payload is serialized; its payload
    // length is patched in below. The metadata's length was checked against its u16 limit.
    let (fixed, md_slot) = head.split_at_mut(HEADER_LEN);
    fixed.copy_from_slice(&header.to_bytes(md.len() as u16, 0));
    if !md.is_empty() {
        md_slot.copy_from_slice(md);
    }
    let limit = body.len().min(room);
    let Some(len) = fill(&mut body[..limit])? else {
        return Ok(None);
    };
    if len > limit {
        return Err(codec_overran(len, limit));
    }
    // The caller checked the header with an empty payload; only a payload where the kind allows none is left.
    if len != 0 && !header.kind.allows_payload() {
        header.check(md.len(), len)?;
    }
    // `len` <= room <= max_frame_len, a u32.
    fixed[HEADER_LEN - 4..].copy_from_slice(&(len as u32).to_le_bytes());
    Ok(Some(HEADER_LEN + md.len() + len))
}

/// For tokio-util's `FramedWrite`: copies header, metadata and payload of a whole frame into `dst`.
impl Encoder<&Frame> for FrameCodec {
    type Error = EncodeError;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        let len = self.frame_len(&frame.header, &frame.metadata, frame.payload.len())?;
        let md = frame.metadata.as_bytes();
        dst.reserve(len);
        // Both lengths fit: `frame_len` checked them against the limits.
        dst.put_slice(
            &frame
                .header
                .to_bytes(md.len() as u16, frame.payload.len() as u32),
        );
        dst.put_slice(md);
        dst.put_slice(&frame.payload);
        Ok(())
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = EncodeError;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<(), EncodeError> {
        self.encode(&frame, dst)
    }
}
