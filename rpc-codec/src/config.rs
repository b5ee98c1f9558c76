//! The codec's limits: every bound a peer can push against, with its default.

/// Default of [`Config::max_frame_len`]: 16 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 16 * 1024 * 1024;
/// Default of [`Config::max_metadata_len`]: 8 KiB, gRPC's default header-list limit.
pub const DEFAULT_MAX_METADATA_LEN: u16 = 8 * 1024;
/// Default of [`Config::max_metadata_entries`]: 64.
pub const DEFAULT_MAX_METADATA_ENTRIES: u16 = 64;
/// Default of [`Config::max_decoded_len`]: 64 MiB, four times the default frame limit.
pub const DEFAULT_MAX_DECODED_LEN: usize = 64 * 1024 * 1024;

/// Limits the codec enforces on every frame, sent or received.
///
/// A received frame over a limit is skipped whole and reported as [`crate::Received::Refused`], so the
/// connection stays in sync; a frame over a limit is never sent ([`crate::EncodeError::Limit`]).
///
/// ```
/// let config = rpc_codec::Config { max_frame_len: 1 << 20, ..Default::default() };
/// let codec = rpc_codec::FrameCodec::new(config);
/// assert_eq!(codec.config().max_metadata_entries, 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Largest frame, header and both sections included, in bytes. Default 16 MiB
    /// ([`DEFAULT_MAX_FRAME_LEN`]). The decoder checks it against the header's lengths before it reserves
    /// any memory for the frame.
    pub max_frame_len: u32,
    /// Largest metadata section in bytes. Default 8 KiB ([`DEFAULT_MAX_METADATA_LEN`]); the wire allows 65535.
    pub max_metadata_len: u16,
    /// Most metadata entries in one frame. Default 64 ([`DEFAULT_MAX_METADATA_ENTRIES`]).
    pub max_metadata_entries: u16,
    /// Most memory, in bytes, that one decoded payload may take: every element of a collection counts the size
    /// of its type and every owned string or byte buffer its length, so that a small payload cannot unfold into
    /// a huge value (a payload of `n` bytes can declare `n` empty vectors of 24 bytes each). Default 64 MiB
    /// ([`DEFAULT_MAX_DECODED_LEN`]). Used by [`crate::PayloadCodec::decode_within`].
    pub max_decoded_len: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_metadata_len: DEFAULT_MAX_METADATA_LEN,
            max_metadata_entries: DEFAULT_MAX_METADATA_ENTRIES,
            max_decoded_len: DEFAULT_MAX_DECODED_LEN,
        }
    }
}
