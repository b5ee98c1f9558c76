//! The codec's errors, each naming what was expected and what came: fatal ones that end a connection
//! ([`FrameError`]), limits that refuse one frame and keep the connection ([`LimitExceeded`]), and the errors of
//! building a frame ([`EncodeError`]), of metadata ([`MetadataError`]) and of payloads ([`PayloadError`]).

use std::io;

use crate::frame::{Kind, MAGIC, VERSION};

/// A header field that the frame's kind does not allow (`docs/PROTOCOL.md`, "Field use by kind").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Flag bits the kind does not define.
    #[error(
        "flags 0b{got:08b} not allowed on a frame of kind {kind} (allowed bits: 0b{allowed:08b})"
    )]
    UnknownFlags {
        /// The frame's kind.
        kind: Kind,
        /// The flag byte received.
        got: u8,
        /// The bits this kind defines.
        allowed: u8,
    },
    /// Both compression bits: a payload is compressed with one encoding at most.
    #[error(
        "flags 0b{got:08b} on a frame of kind {kind} name two compressions (lz4 0b010 and zstd 0b100): \
         expected one at most"
    )]
    TwoEncodings {
        /// The frame's kind.
        kind: Kind,
        /// The flag byte received.
        got: u8,
    },
    /// A `Request` that opens a stream with a JSON payload (protocol 1.2): streams carry bincode only.
    #[error(
        "flags 0b{got:08b} on a request both open a stream (0b1000) and carry JSON (0b10000): expected one at \
         most"
    )]
    JsonStream {
        /// The flag byte received.
        got: u8,
    },
    /// A field that must be zero for this kind was not.
    #[error("{field} must be 0 on a frame of kind {kind}, got {got}")]
    MustBeZero {
        /// The frame's kind.
        kind: Kind,
        /// The field's name in `docs/PROTOCOL.md`.
        field: &'static str,
        /// The value received.
        got: u64,
    },
    /// A field that must be set for this kind was zero.
    #[error("{field} must not be 0 on a frame of kind {kind}")]
    MustBeNonZero {
        /// The frame's kind.
        kind: Kind,
        /// The field's name in `docs/PROTOCOL.md`.
        field: &'static str,
    },
    /// A `Credit` frame whose payload is not one `u32`.
    #[error("payload_len of a frame of kind credit must be 4 (a u32 increment), got {got}")]
    CreditLength {
        /// The payload length received.
        got: usize,
    },
}

/// A malformed metadata section, or an entry the builder refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// An entry runs past the end of the section.
    #[error("metadata truncated: entry at offset {offset} needs {need} bytes, {have} left")]
    Truncated {
        /// Where the entry starts in the section.
        offset: usize,
        /// Bytes the entry declares.
        need: usize,
        /// Bytes left in the section.
        have: usize,
    },
    /// A key of length zero.
    #[error("metadata key at offset {offset} is empty (expected 1-255 bytes)")]
    EmptyKey {
        /// Where the entry starts.
        offset: usize,
    },
    /// A key byte outside printable ASCII.
    #[error(
        "metadata key byte 0x{byte:02x} at offset {offset} is not printable ASCII (0x21..=0x7e)"
    )]
    BadKeyByte {
        /// Where the byte is.
        offset: usize,
        /// The byte.
        byte: u8,
    },
    /// A key longer than 255 bytes.
    #[error("metadata key is {len} bytes, more than 255")]
    KeyTooLong {
        /// The key's length.
        len: usize,
    },
    /// A value longer than 65535 bytes.
    #[error("metadata value is {len} bytes, more than 65535")]
    ValueTooLong {
        /// The value's length.
        len: usize,
    },
    /// The whole section would not fit its 16-bit length.
    #[error("metadata section would be {len} bytes, more than 65535")]
    SectionTooLong {
        /// The section's length.
        len: usize,
    },
    /// More entries than the receiver's limit.
    #[error("metadata has more than {limit} entries")]
    TooManyEntries {
        /// The receiver's limit.
        limit: u16,
    },
}

/// A frame that crosses one of the receiver's or sender's limits. The codec skips such a frame whole, so the
/// connection stays usable: a server answers a refused request with `ResourceExhausted`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The whole frame, header included, is larger than [`crate::Config::max_frame_len`].
    #[error("frame length {len} exceeds limit {limit}")]
    FrameTooLarge {
        /// The frame's length.
        len: u64,
        /// The limit.
        limit: u32,
    },
    /// The metadata section is longer than [`crate::Config::max_metadata_len`].
    #[error("metadata length {len} exceeds limit {limit}")]
    MetadataTooLarge {
        /// The section's length.
        len: usize,
        /// The limit.
        limit: u16,
    },
    /// More metadata entries than [`crate::Config::max_metadata_entries`].
    #[error("metadata has more than {limit} entries")]
    TooManyMetadataEntries {
        /// The limit.
        limit: u16,
    },
}

/// A fatal decoding error: the byte stream is not wire protocol v1, so the connection must close.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The first two bytes of a frame are not `RP`.
    #[error(
        "bad magic: expected {:02x} {:02x} (\"RP\"), got {:02x} {:02x}{}",
        MAGIC[0], MAGIC[1], got[0], got[1], magic_hint(*got)
    )]
    BadMagic {
        /// The two bytes received.
        got: [u8; 2],
    },
    /// A version byte other than 1.
    #[error("unsupported protocol version {got} (this peer speaks version {VERSION})")]
    UnsupportedVersion {
        /// The version received.
        got: u8,
    },
    /// A kind byte outside the table.
    #[error("unknown frame kind 0x{got:02x} (expected 0x01..=0x0b)")]
    UnknownKind {
        /// The kind byte received.
        got: u8,
    },
    /// A header field the kind does not allow.
    #[error("invalid header: {0}")]
    Header(#[from] HeaderError),
    /// A malformed metadata section.
    #[error("invalid frame of kind {kind}: {source}")]
    Metadata {
        /// The frame's kind.
        kind: Kind,
        /// What is wrong with the section.
        #[source]
        source: MetadataError,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed mid-frame: {have} of {need} bytes received")]
    Truncated {
        /// Bytes of the frame received.
        have: u64,
        /// Bytes the frame declared.
        need: u64,
    },
    /// Reading from the transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// What a bad-magic error adds when the first two bytes are `HT`: the start of an HTTP/1 response
/// (`HTTP/1.1 400 Bad Request`), which an HTTP server sends to a client of the wrong protocol.
pub const HTTP_RESPONSE_HINT: &str =
    " (this looks like an HTTP response: is this the address of an HTTP port?)";

/// Says what a wrong peer probably is, from the two bytes it sent first.
fn magic_hint(got: [u8; 2]) -> &'static str {
    match &got {
        b"HT" => HTTP_RESPONSE_HINT,
        // TLS records: change-cipher-spec, alert (a TLS server refusing plaintext), handshake, application data.
        [0x14..=0x17, 0x03] => " (this looks like TLS: is only one side configured for TLS?)",
        b"GE" | b"PO" | b"PU" | b"HE" | b"DE" | b"OP" => " (this looks like HTTP/1: wrong port?)",
        b"PR" => " (this looks like an HTTP/2 preface: is this a gRPC client?)",
        _ => "",
    }
}

/// Why a frame could not be encoded. Nothing is left in the output buffer when encoding fails.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The header breaks the rules of its kind.
    #[error("invalid header: {0}")]
    Header(#[from] HeaderError),
    /// The frame or its metadata is over a limit.
    #[error("{0}")]
    Limit(#[from] LimitExceeded),
    /// The payload codec failed.
    #[error("{0}")]
    Payload(#[from] PayloadError),
    /// Writing to the transport failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// A payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The encoded value would not fit in the frame.
    #[error("payload exceeds limit of {limit} bytes")]
    TooLarge {
        /// Bytes left for the payload in a frame of the maximum length.
        limit: usize,
    },
    /// The payload ended before the value did.
    #[error("payload ended early: {needed} more bytes needed")]
    UnexpectedEnd {
        /// Bytes missing.
        needed: usize,
    },
    /// The value ended before the payload did.
    #[error("payload has {extra} bytes after the end of the value (wrong type, or a newer peer?)")]
    TrailingBytes {
        /// Bytes left over.
        extra: usize,
    },
    /// The decoded value would take more memory than the limit ([`crate::Config::max_decoded_len`]).
    #[error("the decoded value would take more than {limit} bytes of memory, the limit")]
    DecodedTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The value is nested deeper than the limit ([`crate::MAX_DEPTH`]).
    #[error("the value is nested more than {limit} levels deep, the limit")]
    TooDeep {
        /// The limit in levels.
        limit: usize,
    },
    /// The bytes do not form a value of the expected type.
    #[error("payload does not decode: {0}")]
    Invalid(String),
    /// The value could not be serialized.
    #[error("payload does not encode: {0}")]
    Unencodable(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_http_response_in_place_of_a_frame_is_named_as_one() {
        let e = FrameError::BadMagic { got: *b"HT" };
        assert_eq!(
            e.to_string(),
            "bad magic: expected 52 50 (\"RP\"), got 48 54 (this looks like an HTTP response: is this the \
             address of an HTTP port?)"
        );
    }
}
