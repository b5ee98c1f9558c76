//! Decoding: [`FrameCodec::parse`] reads the next frame from the start of a byte slice without copying it or
//! consuming anything, having checked every declared length against the limits; a read loop parses every
//! whole frame of its buffer and then advances the buffer once. [`FrameCodec::decode_with`] does the same for
//! one frame of a `BytesMut`, and the tokio-util `Decoder` hands frames out as `Bytes` split from the buffer.
//! A frame over a limit is refused and its bytes skipped as they arrive, so the connection stays in sync.

use bytes::{Buf, Bytes, BytesMut};
use tokio_util::codec::Decoder;

use crate::codec::FrameCodec;
use crate::error::{FrameError, LimitExceeded, MetadataError};
use crate::frame::{Frame, HEADER_LEN, Header, Kind, MAGIC, VERSION};
use crate::metadata::{self, Metadata, MetadataRef};
use crate::status::Status;

/// What the decoder yields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Received {
    /// A whole, valid frame.
    Frame(Frame),
    /// A frame over one of this side's limits. Its bytes are skipped (now or as they arrive) and the connection
    /// stays in sync; a server answers a refused `Request` with an `Error` of status `ResourceExhausted`.
    Refused(Refused),
}

/// What [`FrameCodec::parse`] and [`FrameCodec::decode_with`] find: like [`Received`], with the frame borrowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReceivedRef<'a> {
    /// A whole, valid frame, still in the read buffer.
    Frame(FrameRef<'a>),
    /// A frame over one of this side's limits; see [`Received::Refused`].
    Refused(Refused),
}

/// A frame borrowed from the read buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef<'a> {
    /// The header's 28 bytes, already checked.
    raw_header: &'a [u8; HEADER_LEN],
    /// Key-value metadata.
    pub metadata: MetadataRef<'a>,
    /// The payload.
    pub payload: &'a [u8],
}

impl FrameRef<'_> {
    /// The fixed header, read from the buffer. (It is not copied out of the buffer until asked for: moving a
    /// header struct through the hot path cost more than parsing it.)
    #[inline]
    pub fn header(&self) -> Header {
        read_header(self.raw_header)
    }

    /// An owned copy of the frame.
    pub fn to_frame(&self) -> Frame {
        Frame {
            header: self.header(),
            metadata: self.metadata.to_metadata(),
            payload: Bytes::copy_from_slice(self.payload),
        }
    }
}

/// A frame that was refused for crossing a limit, with what is known of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The frame's header, which was valid.
    pub header: Header,
    /// The limit it crossed.
    pub reason: LimitExceeded,
}

/// Checks the magic, version and kind bytes of a header that has not fully arrived yet.
fn check_prefix(b: &[u8]) -> Result<(), FrameError> {
    if let Some(got) = b.first_chunk::<2>()
        && *got != MAGIC
    {
        return Err(FrameError::BadMagic { got: *got });
    }
    if let Some(&got) = b.get(2)
        && got != VERSION
    {
        return Err(FrameError::UnsupportedVersion { got });
    }
    match b.get(3) {
        Some(&got) if Kind::from_u8(got).is_none() => Err(FrameError::UnknownKind { got }),
        _ => Ok(()),
    }
}

/// Reads the header fields of a header already checked by `check_header` (so the kind byte is valid; the
/// `Request` fallback is never taken).
#[inline(always)]
fn read_header(b: &[u8; HEADER_LEN]) -> Header {
    let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    Header {
        kind: Kind::from_u8(b[3]).unwrap_or(Kind::Request),
        flags: crate::frame::Flags::from_bits(b[4]),
        status: Status::from_u8(b[5]),
        request_id: u64::from(u32_at(8)) | (u64::from(u32_at(12)) << 32),
        method_id: u32_at(16),
        deadline_us: u32_at(20),
    }
}

/// Checks a header; returns the metadata and payload lengths. Only lengths come back, so that no header struct
/// is built and moved on the hot path (its byte-wise stores and wide reloads stalled the decoder).
#[inline(always)]
fn check_header(b: &[u8; HEADER_LEN]) -> Result<(usize, usize), FrameError> {
    if Kind::from_u8(b[3]).is_none() || b[..3] != [MAGIC[0], MAGIC[1], VERSION] {
        // Magic, version or kind is wrong: the slow path names which.
        check_prefix(b)?;
        return Err(FrameError::UnknownKind { got: b[3] });
    }
    let metadata_len = usize::from(u16::from_le_bytes([b[6], b[7]]));
    let payload_len = u32::from_le_bytes([b[24], b[25], b[26], b[27]]) as usize;
    read_header(b).check(metadata_len, payload_len)?;
    Ok((metadata_len, payload_len))
}

impl FrameCodec {
    /// Reads the next frame at the start of `buf`, consuming nothing. Returns how many bytes of `buf` it used
    /// and what they held:
    /// - `(0, None)`: `buf` does not hold a whole frame yet; read more and call again with it all;
    /// - `(n, None)`, `n > 0`: `n` bytes of a refused frame were skipped;
    /// - `(n, Some(item))`: a frame, or a refusal (whose remaining bytes are skipped by later calls).
    ///
    /// The caller moves past `n` bytes before the next call. A read loop parses every frame in its buffer at
    /// increasing offsets and then advances the buffer once; no per-frame bookkeeping, no copy.
    ///
    /// ```
    /// use rpc_codec::{Bincode, FrameCodec, Header, Metadata, PayloadCodec, ReceivedRef, WriteBuf};
    ///
    /// let mut out = WriteBuf::new();
    /// let codec = FrameCodec::default();
    /// for id in 1..=3 {
    ///     codec.encode_value(&Header::response(id), &Metadata::new(), &(id * 10), &Bincode, &mut out)?;
    /// }
    /// let received = out.as_slice(); // what a read from the socket returned
    /// let mut reader = FrameCodec::default();
    /// let (mut at, mut values) = (0, Vec::new());
    /// loop {
    ///     match reader.parse(&received[at..])? {
    ///         (0, None) => break,
    ///         (n, item) => {
    ///             if let Some(ReceivedRef::Frame(f)) = item {
    ///                 values.push(Bincode.decode::<u64>(f.payload)?);
    ///             }
    ///             at += n;
    ///         }
    ///     }
    /// }
    /// assert_eq!(values, [10, 20, 30]);
    /// assert_eq!(at, received.len());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[inline(always)]
    pub fn parse<'a>(
        &mut self,
        buf: &'a [u8],
    ) -> Result<(usize, Option<ReceivedRef<'a>>), FrameError> {
        if self.skip > 0 {
            let now = self.skip.min(buf.len() as u64);
            self.skip -= now;
            return Ok((now as usize, None));
        }
        let Some((raw, rest)) = buf.split_first_chunk::<HEADER_LEN>() else {
            // Refuse a wrong peer on its first bytes rather than wait for a header it may never send.
            check_prefix(buf)?;
            return Ok((0, None));
        };
        let (metadata_len, payload_len) = check_header(raw)?;
        let total = (HEADER_LEN + metadata_len + payload_len) as u64;
        let config = self.config();
        if total > u64::from(config.max_frame_len) {
            let reason = LimitExceeded::FrameTooLarge {
                len: total,
                limit: config.max_frame_len,
            };
            return Ok(self.refuse(buf, total, reason));
        }
        if metadata_len > usize::from(config.max_metadata_len) {
            let reason = LimitExceeded::MetadataTooLarge {
                len: metadata_len,
                limit: config.max_metadata_len,
            };
            return Ok(self.refuse(buf, total, reason));
        }
        let Some((metadata, rest)) = rest.split_at_checked(metadata_len) else {
            return Ok((0, None));
        };
        let Some(payload) = rest.get(..payload_len) else {
            return Ok((0, None));
        };
        let metadata_count = if metadata_len == 0 {
            0
        } else {
            match metadata::validate(metadata, config.max_metadata_entries) {
                Ok(count) => count,
                Err(MetadataError::TooManyEntries { limit }) => {
                    let reason = LimitExceeded::TooManyMetadataEntries { limit };
                    return Ok(self.refuse(buf, total, reason));
                }
                Err(source) => {
                    let kind = Kind::from_u8(raw[3]).unwrap_or(Kind::Request);
                    return Err(FrameError::Metadata { kind, source });
                }
            }
        };
        let frame = FrameRef {
            raw_header: raw,
            metadata: MetadataRef::new(metadata, metadata_count),
            payload,
        };
        Ok((total as usize, Some(ReceivedRef::Frame(frame))))
    }

    /// Refuses the frame of `total` bytes whose checked header starts `buf`: uses what `buf` holds of it and
    /// leaves the rest to be skipped.
    #[cold]
    #[inline(never)]
    fn refuse<'a>(
        &mut self,
        buf: &'a [u8],
        total: u64,
        reason: LimitExceeded,
    ) -> (usize, Option<ReceivedRef<'a>>) {
        let header = match buf.first_chunk::<HEADER_LEN>() {
            Some(raw) => read_header(raw),
            None => Header::request(0, 0),
        };
        let now = total.min(buf.len() as u64);
        self.skip = total - now;
        self.skip_total = total;
        (
            now as usize,
            Some(ReceivedRef::Refused(Refused { header, reason })),
        )
    }

    /// Decodes the next frame of `src` in place: `f` sees it borrowed from `src`, then it is consumed. Returns
    /// `Ok(None)` until a whole frame is there. For many frames per read, [`FrameCodec::parse`] with one
    /// `advance` at the end is cheaper.
    ///
    /// ```
    /// use bytes::BytesMut;
    /// use rpc_codec::{Bincode, FrameCodec, Header, Metadata, PayloadCodec, ReceivedRef, WriteBuf};
    ///
    /// let mut codec = FrameCodec::default();
    /// let mut out = WriteBuf::new();
    /// codec.encode_value(&Header::response(9), &Metadata::new(), "hi", &Bincode, &mut out)?;
    /// let mut received = BytesMut::from(out.as_slice());
    /// let text = codec.decode_with(&mut received, |item| match item {
    ///     ReceivedRef::Frame(f) => Bincode.decode::<String>(f.payload),
    ///     ReceivedRef::Refused(r) => panic!("{}", r.reason),
    /// })?;
    /// assert_eq!(text.transpose()?.as_deref(), Some("hi"));
    /// assert!(received.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decode_with<R>(
        &mut self,
        src: &mut BytesMut,
        f: impl FnOnce(ReceivedRef<'_>) -> R,
    ) -> Result<Option<R>, FrameError> {
        loop {
            let (used, item) = self.parse(src)?;
            if let Some(item) = item {
                let out = f(item);
                src.advance(used);
                return Ok(Some(out));
            }
            if used == 0 {
                reserve_for_partial(src);
                return Ok(None);
            }
            src.advance(used);
        }
    }
}

impl FrameCodec {
    /// Whether a frame has begun and not ended, given `rest`, what the read buffer still holds after the last
    /// whole frame: some of its bytes are buffered, or a refused frame is still being skipped. A server times
    /// such a frame (see `rpc_core::ServerConfig::frame_timeout`), so that a peer cannot hold a connection by
    /// trickling bytes.
    ///
    /// ```
    /// let codec = rpc_codec::FrameCodec::default();
    /// assert!(!codec.mid_frame(b""));
    /// assert!(codec.mid_frame(b"RP\x01"));
    /// ```
    pub fn mid_frame(&self, rest: &[u8]) -> bool {
        self.skip > 0 || !rest.is_empty()
    }

    /// The whole length of the frame that `rest` (what the read buffer holds after the last whole frame)
    /// begins, once its header is in and within the limits; `None` before that, or while a refused frame is
    /// being skipped. A reader makes room for the rest of the frame before its next read.
    ///
    /// ```
    /// use rpc_codec::{FrameCodec, Header, Metadata, WriteBuf};
    ///
    /// let codec = FrameCodec::default();
    /// let mut out = WriteBuf::new();
    /// codec.encode_bytes(&Header::response(1), &Metadata::new(), &[7; 1000], &mut out)?;
    /// assert_eq!(codec.next_frame_len(&out.as_slice()[..10]), None);
    /// assert_eq!(codec.next_frame_len(&out.as_slice()[..100]), Some(out.len()));
    /// # Ok::<(), rpc_codec::EncodeError>(())
    /// ```
    pub fn next_frame_len(&self, rest: &[u8]) -> Option<usize> {
        if self.skip > 0 {
            return None;
        }
        let (metadata_len, payload_len) = check_header(rest.first_chunk::<HEADER_LEN>()?).ok()?;
        let len = HEADER_LEN + metadata_len + payload_len;
        (len as u64 <= u64::from(self.config().max_frame_len)).then_some(len)
    }

    /// Says whether the stream may end here, given `rest`, what the read buffer still holds after the last
    /// whole frame: an error names the frame that was cut short (one being skipped included).
    ///
    /// ```
    /// let codec = rpc_codec::FrameCodec::default();
    /// assert!(codec.end_of_stream(b"").is_ok());
    /// let err = codec.end_of_stream(b"RP\x01\x02").unwrap_err();
    /// assert_eq!(err.to_string(), "connection closed mid-frame: 4 of 28 bytes received");
    /// ```
    pub fn end_of_stream(&self, rest: &[u8]) -> Result<(), FrameError> {
        if self.skip > 0 {
            return Err(FrameError::Truncated {
                have: self.skip_total - self.skip,
                need: self.skip_total,
            });
        }
        if rest.is_empty() {
            return Ok(());
        }
        let need = match rest.first_chunk::<HEADER_LEN>() {
            Some(raw) => check_header(raw).map_or(HEADER_LEN, |(m, p)| HEADER_LEN + m + p),
            None => HEADER_LEN,
        };
        Err(FrameError::Truncated {
            have: rest.len() as u64,
            need: need as u64,
        })
    }
}

/// Makes room in `src` for the rest of a frame whose header has arrived (its length is within the limits:
/// `parse` refuses it otherwise).
fn reserve_for_partial(src: &mut BytesMut) {
    if let Some(raw) = src.first_chunk::<HEADER_LEN>()
        && let Ok((metadata_len, payload_len)) = check_header(raw)
    {
        let total = HEADER_LEN + metadata_len + payload_len;
        src.reserve(total.saturating_sub(src.len()));
    }
}

impl Decoder for FrameCodec {
    type Item = Received;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Received>, FrameError> {
        loop {
            let (used, item) = self.parse(src)?;
            let (header, metadata_len, metadata_count, payload_len) = match item {
                None if used == 0 => {
                    reserve_for_partial(src);
                    return Ok(None);
                }
                None => {
                    src.advance(used);
                    continue;
                }
                Some(ReceivedRef::Refused(refused)) => {
                    src.advance(used);
                    return Ok(Some(Received::Refused(refused)));
                }
                Some(ReceivedRef::Frame(f)) => (
                    f.header(),
                    f.metadata.as_bytes().len(),
                    f.metadata.len() as u16,
                    f.payload.len(),
                ),
            };
            src.advance(HEADER_LEN);
            let metadata = if metadata_len == 0 {
                Metadata::new()
            } else {
                Metadata::from_checked(src.split_to(metadata_len).freeze(), metadata_count)
            };
            let payload = if payload_len == 0 {
                Bytes::new()
            } else {
                src.split_to(payload_len).freeze()
            };
            return Ok(Some(Received::Frame(Frame {
                header,
                metadata,
                payload,
            })));
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Received>, FrameError> {
        match self.decode(src)? {
            Some(item) => Ok(Some(item)),
            None => self.end_of_stream(src).map(|()| None),
        }
    }
}
