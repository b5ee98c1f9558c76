//! Compression as peers negotiate it (protocol 1.1, `docs/PROTOCOL.md` section 13): a client that wants it
//! offers the encodings it accepts in the metadata of its requests (`rpc-accept-encoding: lz4,zstd`), until a
//! response says what the server accepts, in the same entry; a response without it (a 1.0 server, or one that
//! does not compress) ends the offers. From then on each side compresses a payload of at least its
//! [`CompressionConfig::threshold`] (the server in the first of the client's encodings it has, the client in
//! the first of its own that the server listed), flagged in the frame's header; a smaller payload costs nothing.
//! Every compressed payload is decompressed within the smaller of `max_decoded_len` and `max_frame_len`,
//! checked before anything is allocated ([`rpc_codec::compression::decompress`]): a payload unfolds to no more
//! than it could have been sent as.

use rpc_codec::compression::DEFAULT_THRESHOLD;
use rpc_codec::{Encoding, Flags};

/// The metadata entry of the offer (on requests) and of the answer to it (on responses): the encodings the
/// sender accepts, comma-separated, most preferred first.
pub const ACCEPT_ENCODING: &str = "rpc-accept-encoding";

/// Which encodings a client or server uses, and from which payload size.
///
/// ```
/// use rpc_core::{ClientConfig, CompressionConfig, Encoding};
/// let config = ClientConfig {
///     compression: CompressionConfig::with(&[Encoding::Lz4]),
///     ..ClientConfig::default()
/// };
/// assert_eq!(config.compression.threshold, 1024);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompressionConfig {
    /// The encodings it accepts and compresses with, most preferred first; empty: no compression. A client's
    /// default is none (it offers nothing, and its calls are those of protocol 1.0); a server's is every
    /// encoding the build supports ([`Encoding::supported`]: lz4, and zstd with the `zstd` feature).
    pub encodings: Vec<Encoding>,
    /// The smallest payload compressed, in bytes. Default 1 KiB
    /// ([`rpc_codec::compression::DEFAULT_THRESHOLD`], measured: see docs/BENCHMARKS.md).
    pub threshold: usize,
}

impl CompressionConfig {
    /// No compression.
    pub fn off() -> CompressionConfig {
        CompressionConfig::with(&[])
    }

    /// Every encoding this build supports, at the default threshold.
    pub fn supported() -> CompressionConfig {
        CompressionConfig {
            encodings: Encoding::supported().collect(),
            threshold: DEFAULT_THRESHOLD,
        }
    }

    /// `encodings`, at the default threshold.
    pub fn with(encodings: &[Encoding]) -> CompressionConfig {
        CompressionConfig {
            encodings: encodings.to_vec(),
            threshold: DEFAULT_THRESHOLD,
        }
    }

    /// Whether it compresses at all (with an encoding this build has).
    pub fn is_on(&self) -> bool {
        self.usable().next().is_some()
    }

    /// Its encodings that this build has (an encoding configured without its feature is left out).
    fn usable(&self) -> impl Iterator<Item = Encoding> + '_ {
        self.encodings.iter().copied().filter(|e| e.is_supported())
    }

    /// The list that [`ACCEPT_ENCODING`] carries: `lz4,zstd`.
    pub(crate) fn offer(&self) -> String {
        let names: Vec<&str> = self.usable().map(Encoding::name).collect();
        names.join(",")
    }

    /// Of the peer's `offered` list, the first encoding this side has too (the peer's preference: how a server
    /// chooses the encoding of its answers).
    pub(crate) fn choose(&self, offered: &str) -> Option<Encoding> {
        Encoding::common(offered)
            .into_iter()
            .find(|e| self.accepts(*e))
    }

    /// Of this side's encodings, the first that the peer `listed` (this side's preference: how a client chooses
    /// the encoding of its requests).
    pub(crate) fn prefer(&self, listed: &str) -> Option<Encoding> {
        let listed = Encoding::common(listed);
        self.usable().find(|e| listed.contains(e))
    }

    /// Whether this side takes payloads compressed with `encoding`.
    pub(crate) fn accepts(&self, encoding: Encoding) -> bool {
        self.usable().any(|e| e == encoding)
    }
}

/// `payload` compressed with `encoding`, if it is at least `threshold` bytes and compressing makes it smaller;
/// with the flag that says so.
pub(crate) fn squeeze(
    encoding: Encoding,
    threshold: usize,
    payload: &[u8],
) -> Option<(Flags, Vec<u8>)> {
    if payload.len() < threshold {
        return None;
    }
    let mut out = Vec::with_capacity(payload.len() / 2 + 16);
    rpc_codec::compression::compress(encoding, payload, &mut out).ok()?;
    (out.len() < payload.len()).then_some((Flags::of(encoding), out))
}

/// `payload` decompressed with `encoding` within `limits` (at most what the payload could have been sent as
/// uncompressed: the smaller of `max_decoded_len` and `max_frame_len`); or the refusal, for `what`
/// (`the response`): a declared length over that is `ResourceExhausted` and names the limits, anything else is
/// `otherwise`.
pub(crate) fn inflate(
    encoding: Encoding,
    payload: &[u8],
    limits: &rpc_codec::Config,
    what: &str,
    otherwise: rpc_codec::Status,
) -> Result<bytes::Bytes, (rpc_codec::Status, String)> {
    let limit = limits.max_decoded_len.min(limits.max_frame_len as usize);
    rpc_codec::compression::decompress(encoding, payload, limit)
        .map(bytes::Bytes::from)
        .map_err(|e| match e {
            rpc_codec::CompressionError::TooLarge { .. } => (
                rpc_codec::Status::ResourceExhausted,
                format!(
                    "{what} does not decompress: {e} (the smaller of max_decoded_len and max_frame_len)"
                ),
            ),
            _ => (otherwise, format!("{what} does not decompress: {e}")),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_payload_at_the_threshold_that_shrinks_is_compressed() {
        let text: Vec<u8> = b"abcdefgh".iter().copied().cycle().take(2048).collect();
        assert!(
            squeeze(Encoding::Lz4, 4096, &text).is_none(),
            "under the threshold"
        );
        let (flags, out) = squeeze(Encoding::Lz4, 1024, &text).expect("compressed");
        assert_eq!(flags.encoding(), Some(Encoding::Lz4));
        assert!(out.len() < 100, "{}", out.len());
        // xorshift64: bytes with no pattern lz4 can use.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..2048)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(
            squeeze(Encoding::Lz4, 1024, &noise).is_none(),
            "it would not shrink"
        );
    }

    #[test]
    fn a_side_chooses_the_peer_s_first_encoding_it_has() {
        let lz4 = CompressionConfig::with(&[Encoding::Lz4]);
        assert_eq!(lz4.choose("zstd, lz4"), Some(Encoding::Lz4));
        assert_eq!(lz4.choose("brotli"), None);
        assert_eq!(CompressionConfig::off().choose("lz4"), None);
        // The server follows the client's order; the client its own.
        let both = CompressionConfig::with(&[Encoding::Lz4, Encoding::Zstd]);
        if Encoding::Zstd.is_supported() {
            assert_eq!(both.choose("zstd,lz4"), Some(Encoding::Zstd));
        }
        assert_eq!(both.prefer("zstd,lz4"), Some(Encoding::Lz4));
        assert_eq!(
            CompressionConfig::supported()
                .offer()
                .split(',')
                .next_back(),
            Some("lz4")
        );
    }
}
