//! Compression of payloads (protocol 1.1): the encodings ([`Encoding`]: lz4 always, zstd with the `zstd`
//! feature), and a compressed payload's layout: its decompressed length as a little-endian `u32`, then the
//! compressed block. [`decompress`] checks that length against the caller's limit before it allocates
//! anything, and checks that the block decompresses to exactly that length, so that a small frame cannot
//! unfold into a large allocation (a decompression bomb) and a lying prefix is refused.

use core::fmt;

/// The length prefix of a compressed payload: its decompressed length, `u32` little-endian.
pub const LENGTH_PREFIX: usize = 4;

/// Payloads shorter than this are never compressed: 1 KiB. Measured (`cargo bench -p benches --bench
/// compression`, docs/BENCHMARKS.md): below 256 B neither encoding saves a byte, at 512 B lz4 saves 6% for
/// about half the CPU of a whole small call, and from 1 KiB both save a sixth to a quarter of typical messages.
pub const DEFAULT_THRESHOLD: usize = 1024;

/// The zstd level used to compress: 1, zstd's fastest standard level (calls favour latency over ratio).
#[cfg(feature = "zstd")]
pub const ZSTD_LEVEL: i32 = 1;

/// A compression algorithm a payload may be compressed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// LZ4's block format (`lz4_flex`): fast on both sides, a modest ratio.
    Lz4,
    /// Zstandard: a better ratio for a little more CPU. Needs the `zstd` feature.
    Zstd,
}

impl Encoding {
    /// Every encoding the protocol names, in order of preference.
    pub const ALL: [Encoding; 2] = [Encoding::Zstd, Encoding::Lz4];

    /// The name that negotiation uses: `lz4`, `zstd`.
    pub const fn name(self) -> &'static str {
        match self {
            Encoding::Lz4 => "lz4",
            Encoding::Zstd => "zstd",
        }
    }

    /// Whether this build can compress and decompress it.
    pub const fn is_supported(self) -> bool {
        match self {
            Encoding::Lz4 => true,
            Encoding::Zstd => cfg!(feature = "zstd"),
        }
    }

    /// The encodings this build supports, in order of preference.
    pub fn supported() -> impl Iterator<Item = Encoding> {
        Encoding::ALL.into_iter().filter(|e| e.is_supported())
    }

    /// The encoding named `name` (ASCII case ignored), if this build supports it; otherwise an error that
    /// names it and lists those it supports.
    pub fn parse(name: &str) -> Result<Encoding, CompressionError> {
        Encoding::supported()
            .find(|e| e.name().eq_ignore_ascii_case(name.trim()))
            .ok_or_else(|| CompressionError::Unsupported {
                name: quoted_short(name),
                supported: supported_list(),
            })
    }

    /// Of a peer's comma-separated list of encodings (`zstd, lz4`), those this build supports too, in the
    /// peer's order; names it does not know are left out.
    pub fn common(offered: &str) -> Vec<Encoding> {
        let mut common = Vec::new();
        for name in offered.split(',') {
            if let Ok(encoding) = Encoding::parse(name)
                && !common.contains(&encoding)
            {
                common.push(encoding);
            }
        }
        common
    }
}

impl fmt::Display for Encoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name a peer sent, as a message shows it: escaped, and cut after 32 characters.
fn quoted_short(name: &str) -> String {
    let mut shown: String = name.chars().take(32).flat_map(char::escape_debug).collect();
    if name.chars().nth(32).is_some() {
        shown.push('…');
    }
    shown
}

/// The encodings this build supports, as a list a message shows: `zstd, lz4`.
pub fn supported_list() -> String {
    Encoding::supported()
        .map(Encoding::name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a payload could not be compressed or decompressed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CompressionError {
    /// The payload is shorter than its length prefix.
    #[error("a compressed payload of {len} bytes is shorter than its 4-byte length prefix")]
    Truncated {
        /// The payload's length.
        len: usize,
    },
    /// The decompressed length the payload declares is over the limit.
    #[error(
        "a compressed payload declares {declared} bytes once decompressed, over the limit of {limit}"
    )]
    TooLarge {
        /// The declared length.
        declared: usize,
        /// The limit.
        limit: usize,
    },
    /// The block is not valid in its encoding.
    #[error("the {encoding} payload does not decompress: {why}")]
    Corrupt {
        /// The encoding.
        encoding: Encoding,
        /// What the decompressor said.
        why: String,
    },
    /// The block decompressed to another length than the prefix declared.
    #[error("the {encoding} payload declares {declared} bytes but decompresses to {got}")]
    LengthMismatch {
        /// The encoding.
        encoding: Encoding,
        /// The declared length.
        declared: usize,
        /// The length it decompressed to.
        got: usize,
    },
    /// An encoding this build does not support.
    #[error("the encoding {name} is not supported here; supported: {supported}")]
    Unsupported {
        /// The name asked for, quoted short and escaped.
        name: String,
        /// Those supported, comma-separated.
        supported: String,
    },
    /// The payload is too large to compress (its length does not fit the prefix).
    #[error("a payload of {len} bytes is too large to compress (at most 4 GiB)")]
    TooLong {
        /// The payload's length.
        len: usize,
    },
}

/// Appends `input` compressed with `encoding` to `out`, after its length prefix.
pub fn compress(
    encoding: Encoding,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CompressionError> {
    let declared =
        u32::try_from(input.len()).map_err(|_| CompressionError::TooLong { len: input.len() })?;
    out.extend_from_slice(&declared.to_le_bytes());
    match encoding {
        Encoding::Lz4 => {
            let start = out.len();
            out.resize(
                start + lz4_flex::block::get_maximum_output_size(input.len()),
                0,
            );
            let written =
                lz4_flex::block::compress_into(input, &mut out[start..]).map_err(|e| {
                    CompressionError::Corrupt {
                        encoding,
                        why: e.to_string(),
                    }
                })?;
            out.truncate(start + written);
            Ok(())
        }
        Encoding::Zstd => zstd_compress(input, out),
    }
}

/// The payload `payload` (length prefix, then block) decompressed with `encoding`, if its declared length is
/// within `limit` and the block decompresses to exactly that length.
pub fn decompress(
    encoding: Encoding,
    payload: &[u8],
    limit: usize,
) -> Result<Vec<u8>, CompressionError> {
    let Some((prefix, block)) = payload.split_first_chunk::<LENGTH_PREFIX>() else {
        return Err(CompressionError::Truncated { len: payload.len() });
    };
    let declared = u32::from_le_bytes(*prefix) as usize;
    if declared > limit {
        return Err(CompressionError::TooLarge { declared, limit });
    }
    let mut out = vec![0u8; declared];
    let got = match encoding {
        Encoding::Lz4 => lz4_flex::block::decompress_into(block, &mut out).map_err(|e| {
            CompressionError::Corrupt {
                encoding,
                why: e.to_string(),
            }
        })?,
        Encoding::Zstd => zstd_decompress(block, &mut out)?,
    };
    if got != declared {
        return Err(CompressionError::LengthMismatch {
            encoding,
            declared,
            got,
        });
    }
    Ok(out)
}

#[cfg(feature = "zstd")]
std::thread_local! {
    /// Each thread's zstd contexts, made on first use: making one costs about 10 µs, more than compressing a
    /// few kilobytes.
    static ZSTD: std::cell::RefCell<Option<(zstd::bulk::Compressor<'static>, zstd::bulk::Decompressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `f` with this thread's zstd contexts.
#[cfg(feature = "zstd")]
fn with_zstd<T>(
    f: impl FnOnce(
        &mut zstd::bulk::Compressor<'static>,
        &mut zstd::bulk::Decompressor<'static>,
    ) -> std::io::Result<T>,
) -> Result<T, CompressionError> {
    let corrupt = |e: std::io::Error| CompressionError::Corrupt {
        encoding: Encoding::Zstd,
        why: e.to_string(),
    };
    ZSTD.with(|cell| {
        let mut contexts = cell.borrow_mut();
        if contexts.is_none() {
            let compressor = zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(corrupt)?;
            let decompressor = zstd::bulk::Decompressor::new().map_err(corrupt)?;
            *contexts = Some((compressor, decompressor));
        }
        let (compressor, decompressor) = contexts.as_mut().expect("made above");
        f(compressor, decompressor).map_err(corrupt)
    })
}

#[cfg(feature = "zstd")]
fn zstd_compress(input: &[u8], out: &mut Vec<u8>) -> Result<(), CompressionError> {
    let start = out.len();
    out.resize(start + zstd::zstd_safe::compress_bound(input.len()), 0);
    let written =
        with_zstd(|compressor, _| compressor.compress_to_buffer(input, &mut out[start..]))?;
    out.truncate(start + written);
    Ok(())
}

#[cfg(not(feature = "zstd"))]
fn zstd_compress(_: &[u8], _: &mut Vec<u8>) -> Result<(), CompressionError> {
    Err(unsupported_zstd())
}

/// Decompresses into `out`, which is exactly the declared length: a block that would write more fails.
#[cfg(feature = "zstd")]
fn zstd_decompress(block: &[u8], out: &mut [u8]) -> Result<usize, CompressionError> {
    with_zstd(|_, decompressor| decompressor.decompress_to_buffer(block, out))
}

#[cfg(not(feature = "zstd"))]
fn zstd_decompress(_: &[u8], _: &mut [u8]) -> Result<usize, CompressionError> {
    Err(unsupported_zstd())
}

#[cfg(not(feature = "zstd"))]
fn unsupported_zstd() -> CompressionError {
    CompressionError::Unsupported {
        name: String::from("zstd"),
        supported: supported_list(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Text that compresses well, as many payloads do.
    fn text(len: usize) -> Vec<u8> {
        b"{\"name\": \"alice\", \"zone\": \"a\", \"items\": [1, 2, 3]} "
            .iter()
            .copied()
            .cycle()
            .take(len)
            .collect()
    }

    #[test]
    fn each_supported_encoding_round_trips_and_shrinks_text() {
        for encoding in Encoding::supported() {
            let input = text(64 * 1024);
            let mut out = Vec::new();
            compress(encoding, &input, &mut out).unwrap();
            assert!(
                out.len() < input.len() / 4,
                "{encoding}: {} bytes",
                out.len()
            );
            assert_eq!(decompress(encoding, &out, input.len()).unwrap(), input);
            assert_eq!(
                decompress(encoding, &out, input.len() - 1),
                Err(CompressionError::TooLarge {
                    declared: input.len(),
                    limit: input.len() - 1
                })
            );
        }
    }

    #[test]
    fn a_bomb_is_refused_by_its_prefix_before_anything_is_allocated() {
        // 1 GiB of zeros declared, in a payload of a few bytes: refused on the prefix alone.
        let mut bomb = (1u32 << 30).to_le_bytes().to_vec();
        bomb.extend_from_slice(&[0x1f, 0x00, 0x01]);
        let refused = decompress(Encoding::Lz4, &bomb, 64 << 20).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "a compressed payload declares 1073741824 bytes once decompressed, over the limit of 67108864"
        );
        // A real block of 1 MiB of zeros whose prefix lies (says 10 bytes): it cannot write past 10 bytes.
        for encoding in Encoding::supported() {
            let mut out = Vec::new();
            compress(encoding, &vec![0u8; 1 << 20], &mut out).unwrap();
            out[..4].copy_from_slice(&10u32.to_le_bytes());
            let refused = decompress(encoding, &out, 64 << 20).unwrap_err();
            assert!(
                matches!(refused, CompressionError::Corrupt { .. }),
                "{encoding}: {refused}"
            );
        }
    }

    #[test]
    fn truncated_corrupt_and_short_payloads_are_refused_with_what_came() {
        assert_eq!(
            decompress(Encoding::Lz4, &[1, 0], 100),
            Err(CompressionError::Truncated { len: 2 })
        );
        for encoding in Encoding::supported() {
            let mut out = Vec::new();
            compress(encoding, &text(1000), &mut out).unwrap();
            out[..4].copy_from_slice(&2000u32.to_le_bytes());
            let refused = decompress(encoding, &out, 1 << 20).unwrap_err();
            assert!(
                refused
                    .to_string()
                    .contains("declares 2000 bytes but decompresses to 1000"),
                "{encoding}: {refused}"
            );
        }
        let garbage = [5, 0, 0, 0, 0xff, 0xff, 0xff];
        assert!(matches!(
            decompress(Encoding::Lz4, &garbage, 100),
            Err(CompressionError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_encoding_this_build_lacks_is_refused_with_the_list_it_has() {
        let refused = Encoding::parse("brotli").unwrap_err();
        assert_eq!(
            refused.to_string(),
            format!(
                "the encoding brotli is not supported here; supported: {}",
                supported_list()
            )
        );
        assert_eq!(Encoding::parse(" LZ4 "), Ok(Encoding::Lz4));
        let hostile = Encoding::parse(&format!("\u{1b}[2J{}", "x".repeat(100))).unwrap_err();
        let shown = hostile.to_string();
        assert!(
            !shown.contains('\u{1b}') && shown.contains('…') && shown.len() < 200,
            "{shown}"
        );
        assert_eq!(Encoding::common("brotli, lz4,lz4"), [Encoding::Lz4]);
        assert_eq!(Encoding::common(""), []);
    }

    proptest! {
        #[test]
        fn any_payload_round_trips(input in proptest::collection::vec(any::<u8>(), 0..4096)) {
            for encoding in Encoding::supported() {
                let mut out = Vec::new();
                compress(encoding, &input, &mut out).unwrap();
                prop_assert_eq!(decompress(encoding, &out, input.len()).unwrap(), input.clone());
            }
        }

        #[test]
        fn any_block_decompresses_or_is_refused_without_panic(
            declared in 0u32..=(1 << 16),
            block in proptest::collection::vec(any::<u8>(), 0..512),
        ) {
            // A declared length within the limit, so that the block itself reaches the decompressor.
            let mut payload = declared.to_le_bytes().to_vec();
            payload.extend_from_slice(&block);
            for encoding in Encoding::supported() {
                if let Ok(out) = decompress(encoding, &payload, 1 << 16) {
                    prop_assert_eq!(out.len(), declared as usize);
                }
            }
        }
    }
}
