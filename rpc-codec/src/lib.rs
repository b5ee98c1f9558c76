//! Wire protocol v1 of the rpc framework: the frame format, its limits, and the payload codec.
//!
//! A frame is a fixed 28-byte header (magic `RP`, version, kind, flags, status, lengths, request id, method id,
//! deadline budget), then a metadata section, then the payload. `docs/PROTOCOL.md` specifies every byte.
//! [`FrameCodec`] is a tokio-util `Decoder` and `Encoder` for frames: it never panics on any input, checks
//! every declared length against [`Config`] before it reserves memory, and hands sections out as `Bytes`
//! split from the read buffer, or reads them in place with no copy and no reference counting
//! ([`FrameCodec::parse`]). [`Bincode`] turns argument and result values into payloads, serializing
//! straight into the output buffer ([`WriteBuf`]) and bounding every length inside a payload by the payload's
//! size.
//!
//! This crate has no runtime and no sockets; `rpc-core` drives it over TCP.
//!
//! # Layout
//! - [`frame`]: [`Header`], [`Kind`], [`Flags`], [`Frame`], the byte layout and the rules of each kind.
//! - [`status`]: the status-code table.
//! - [`metadata`]: key-value call metadata in wire form.
//! - [`codec`]: [`FrameCodec`], the codec and its limits.
//! - [`decode`]: [`FrameCodec::parse`] (frames read in place), `decode_with`, and the tokio-util `Decoder`.
//! - `encode`: frames serialized into a [`WriteBuf`], and the tokio-util `Encoder`.
//! - [`buffer`]: [`WriteBuf`], the output buffer frames are serialized into.
//! - [`payload`]: [`PayloadCodec`] and the default [`Bincode`].
//! - `json` (feature `json`): `Json`, a second payload codec.
//! - `json_call` (feature `json`): `JsonCall`, a call in JSON (flag `JSON`), and its arguments by name.
//! - `guard`: the serde adapter that bounds allocations by the payload's length, the decoded value's memory by
//!   a limit, and its nesting by [`MAX_DEPTH`].
//! - [`method`]: method ids from `"Service.method"`.
//! - [`compression`]: [`Encoding`] (lz4; zstd with the `zstd` feature), and payloads compressed and
//!   decompressed within a limit.
//! - [`items`]: batches of stream items (protocol 1.1), each item its length and its bytes.
//! - [`config`]: [`Config`], the limits.
//! - [`error`]: the error types.

pub mod buffer;
pub mod codec;
pub mod compression;
pub mod config;
pub mod decode;
mod encode;
pub mod error;
pub mod frame;
mod guard;
pub mod items;
#[cfg(feature = "json")]
pub mod json;
#[cfg(feature = "json")]
pub mod json_call;
pub mod metadata;
pub mod method;
pub mod payload;
pub mod status;

pub use buffer::WriteBuf;
pub use codec::FrameCodec;
pub use compression::{CompressionError, Encoding};
pub use config::Config;
pub use decode::{FrameRef, Received, ReceivedRef, Refused};
pub use error::{EncodeError, FrameError, HeaderError, LimitExceeded, MetadataError, PayloadError};
pub use frame::{Flags, Frame, HEADER_LEN, Header, Kind, MAGIC, VERSION, budget_us};
pub use guard::MAX_DEPTH;
#[cfg(feature = "json")]
pub use json::Json;
#[cfg(feature = "json")]
pub use json_call::JsonCall;
pub use metadata::{Metadata, MetadataBuilder, MetadataRef};
pub use method::{method_id, method_id_of};
pub use payload::{Bincode, PayloadCodec};
pub use status::{Status, UnknownStatus};

// Re-exported so that users of the codec name the same versions.
pub use bytes;
