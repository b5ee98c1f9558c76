//! The frame codec: [`FrameCodec`] holds the limits and the decoder's state. Encoding lives in `encode.rs`,
//! decoding in `decode.rs`.

use crate::config::Config;
use crate::frame::HEADER_LEN;

/// Encoder and decoder of wire protocol v1 frames.
///
/// A sender serializes frames into a [`crate::WriteBuf`]; a receiver reads them in place from its read buffer
/// ([`FrameCodec::parse`], the fast path, or [`FrameCodec::decode_with`]) or as owned frames (`Decoder`, for
/// tokio-util's `FramedRead`).
///
/// ```
/// use bytes::BytesMut;
/// use rpc_codec::{Bincode, FrameCodec, Header, Metadata, PayloadCodec, Received, WriteBuf};
/// use tokio_util::codec::Decoder;
///
/// let mut codec = FrameCodec::default();
/// let mut out = WriteBuf::new();
/// let header = Header::request(1, rpc_codec::method_id("Calc", "add"));
/// codec.encode_value(&header, &Metadata::new(), &(2, 3), &Bincode, &mut out)?;
///
/// let mut received = BytesMut::from(out.as_slice()); // what the peer reads from its socket
/// let Some(Received::Frame(frame)) = codec.decode(&mut received)? else { panic!("one whole frame") };
/// assert_eq!(frame.header, header);
/// let args: (i32, i32) = Bincode.decode(&frame.payload)?;
/// assert_eq!(args, (2, 3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct FrameCodec {
    config: Config,
    /// Payload bytes a frame without metadata may carry: `max_frame_len` less the header.
    pub(crate) max_payload: usize,
    /// Bytes of a refused frame still to be skipped.
    pub(crate) skip: u64,
    /// Length of the frame being skipped, for the error if the stream ends first.
    pub(crate) skip_total: u64,
}

impl FrameCodec {
    /// A codec with these limits.
    pub fn new(config: Config) -> FrameCodec {
        FrameCodec {
            config,
            max_payload: (config.max_frame_len as usize).saturating_sub(HEADER_LEN),
            skip: 0,
            skip_total: 0,
        }
    }

    /// The limits.
    pub fn config(&self) -> &Config {
        &self.config
    }
}

impl Default for FrameCodec {
    /// A codec with the default limits.
    fn default() -> FrameCodec {
        FrameCodec::new(Config::default())
    }
}
