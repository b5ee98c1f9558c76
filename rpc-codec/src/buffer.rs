//! The output buffer: memory that is initialised once and then reused, so that frames are serialized into
//! plain `&mut [u8]` slices (bincode's fastest writer) without `unsafe`, and a connection's writer sends every
//! queued frame with one syscall.
//!
//! A `BytesMut` cannot serve here without `unsafe`: safe code can only append to it one checked write at a
//! time, which costs more than the serialization of a small value (see `docs/BENCHMARKS.md`).
//!
//! A buffer may keep large payloads apart ([`WriteBuf::keep_apart_from`]): such a payload is serialized into an
//! allocation of its own, its frame's header and metadata stay in the buffer, and a writer sends the pieces in
//! order with one vectored write ([`WriteBuf::io_slices`]). The buffer itself then holds only small frames and
//! never grows, zeroes and shrinks by megabytes when many large calls are in flight, and no payload is copied
//! after it is serialized.

use core::fmt;
use std::io::IoSlice;

/// Smallest growth step, so that a buffer filled byte by byte does not grow byte by byte.
const MIN_GROWTH: usize = 256;

/// An output buffer of frames: `len` bytes of content followed by initialised spare room.
///
/// ```
/// use rpc_codec::{Bincode, FrameCodec, Header, Metadata, WriteBuf};
///
/// let mut out = WriteBuf::with_capacity(64 * 1024);
/// let codec = FrameCodec::default();
/// codec.encode_value(&Header::response(1), &Metadata::new(), &42u32, &Bincode, &mut out)?;
/// codec.encode_value(&Header::response(2), &Metadata::new(), &43u32, &Bincode, &mut out)?;
/// assert_eq!(out.len(), 2 * 29);
/// // A writer sends `out.as_slice()` in one syscall, then `out.consume(written)`.
/// out.consume(29);
/// assert_eq!(out.len(), 29);
/// # Ok::<(), rpc_codec::EncodeError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct WriteBuf {
    /// Content and spare room, all initialised; `data.len()` is the capacity.
    data: Vec<u8>,
    /// Bytes of content in `data`.
    len: usize,
    /// Payloads kept apart, in order; each follows the first `at` bytes of `data`'s content.
    apart: Vec<Apart>,
    /// Bytes of all the payloads kept apart.
    apart_len: usize,
    /// Payloads of at least this many bytes are kept apart; `usize::MAX`: none is.
    apart_from: usize,
}

/// A payload kept apart from the buffer.
#[derive(Clone, PartialEq, Eq)]
struct Apart {
    /// Where in the buffer's content it goes.
    at: usize,
    bytes: Vec<u8>,
}

impl Default for WriteBuf {
    fn default() -> WriteBuf {
        WriteBuf::new()
    }
}

impl WriteBuf {
    /// An empty buffer with no room; the first frame makes some.
    pub const fn new() -> WriteBuf {
        WriteBuf {
            data: Vec::new(),
            len: 0,
            apart: Vec::new(),
            apart_len: 0,
            apart_from: usize::MAX,
        }
    }

    /// An empty buffer with `capacity` bytes of room, zeroed now and never again.
    pub fn with_capacity(capacity: usize) -> WriteBuf {
        WriteBuf {
            data: vec![0; capacity],
            ..WriteBuf::new()
        }
    }

    /// Keeps every payload of at least `len` bytes that does not fit in the spare room apart from the buffer,
    /// in an allocation of its own, instead of growing the buffer for it (see the module's docs). The content
    /// is then in pieces: write it with [`WriteBuf::io_slices`], not [`WriteBuf::as_slice`].
    ///
    /// ```
    /// use rpc_codec::{Bincode, FrameCodec, Header, Metadata, WriteBuf};
    /// use std::io::IoSlice;
    ///
    /// let mut out = WriteBuf::with_capacity(1024);
    /// out.keep_apart_from(4096);
    /// let big = serde_bytes::ByteBuf::from(vec![7u8; 10_000]);
    /// let codec = FrameCodec::default();
    /// codec.encode_value(&Header::response(1), &Metadata::new(), &big, &Bincode, &mut out)?;
    /// codec.encode_value(&Header::response(2), &Metadata::new(), &42u32, &Bincode, &mut out)?;
    /// let mut slices = [IoSlice::new(&[]); 8];
    /// // The first header, the payload apart, then the second frame.
    /// assert_eq!(out.io_slices(0, &mut slices), 3);
    /// assert_eq!(slices[..3].iter().map(|s| s.len()).sum::<usize>(), out.len());
    /// assert_eq!(out.capacity(), 1024);
    /// # Ok::<(), rpc_codec::EncodeError>(())
    /// ```
    pub fn keep_apart_from(&mut self, len: usize) {
        self.apart_from = len.max(1);
    }

    /// The length from which a payload that does not fit is kept apart, if the buffer keeps any apart.
    pub(crate) fn apart_from(&self) -> usize {
        self.apart_from
    }

    /// Bytes of content, the payloads kept apart included.
    pub fn len(&self) -> usize {
        self.len + self.apart_len
    }

    /// Whether there is no content.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Room in the buffer itself (content plus spare room), payloads kept apart not counted.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// Whether all the content is in the buffer itself ([`WriteBuf::as_slice`]): no payload is kept apart.
    pub fn is_contiguous(&self) -> bool {
        self.apart.is_empty()
    }

    /// The content, ready to be written to a socket. When payloads are kept apart, this is only what the buffer
    /// itself holds: write the whole with [`WriteBuf::io_slices`].
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// The content from byte `from` on, in order, as slices for one vectored write: fills `out` from its start
    /// and returns how many it filled (fewer than the pieces there are if `out` is too short; none if `from` is
    /// at or past the end).
    pub fn io_slices<'a>(&'a self, from: usize, out: &mut [IoSlice<'a>]) -> usize {
        let mut skip = from;
        let mut filled = 0;
        let mut start = 0;
        for i in 0..=self.apart.len() {
            let (end, apart) = match self.apart.get(i) {
                Some(a) => (a.at, a.bytes.as_slice()),
                None => (self.len, &[][..]),
            };
            for piece in [&self.data[start..end], apart] {
                if filled == out.len() {
                    return filled;
                }
                if skip >= piece.len() {
                    skip -= piece.len();
                    continue;
                }
                out[filled] = IoSlice::new(&piece[skip..]);
                skip = 0;
                filled += 1;
            }
            start = end;
        }
        filled
    }

    /// Drops all content, keeping the room.
    pub fn clear(&mut self) {
        self.len = 0;
        self.apart.clear();
        self.apart_len = 0;
    }

    /// Drops content past `len`, in a buffer that keeps no payload apart.
    pub fn truncate(&mut self, len: usize) {
        debug_assert!(self.apart.is_empty(), "truncate of a buffer in pieces");
        self.len = self.len.min(len);
    }

    /// Drops the first `n` bytes of content (those a partial write sent), moving the rest to the front, in a
    /// buffer that keeps no payload apart.
    pub fn consume(&mut self, n: usize) {
        debug_assert!(self.apart.is_empty(), "consume of a buffer in pieces");
        let n = n.min(self.len);
        self.data.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Appends `bytes` as a payload kept apart, after the content so far.
    pub(crate) fn push_apart(&mut self, bytes: Vec<u8>) {
        self.apart_len += bytes.len();
        self.apart.push(Apart {
            at: self.len,
            bytes,
        });
    }

    /// Gives back room beyond `capacity` bytes (or beyond the content, if that is longer), after a burst.
    pub fn shrink_to(&mut self, capacity: usize) {
        let keep = capacity.max(self.len);
        if keep < self.data.len() {
            self.data.truncate(keep);
            self.data.shrink_to_fit();
        }
    }

    /// Appends `bytes`, growing if needed.
    #[inline]
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.reserve(bytes.len());
        let end = self.len + bytes.len();
        self.data[self.len..end].copy_from_slice(bytes);
        self.len = end;
    }

    /// Makes room for at least `additional` more bytes, at least doubling the capacity when it grows.
    #[inline(always)]
    pub fn reserve(&mut self, additional: usize) {
        if additional > self.data.len() - self.len {
            self.grow(additional);
        }
    }

    #[cold]
    #[inline(never)]
    fn grow(&mut self, additional: usize) {
        let need = self.len.saturating_add(additional);
        let new_len = need.max(self.data.len().saturating_mul(2)).max(MIN_GROWTH);
        self.data.resize(new_len, 0);
    }

    /// The spare room, initialised.
    #[inline(always)]
    pub(crate) fn spare_mut(&mut self) -> &mut [u8] {
        &mut self.data[self.len..]
    }

    /// Counts `n` bytes of the spare room as content (at most the room there is).
    #[inline(always)]
    pub(crate) fn advance(&mut self, n: usize) {
        self.len = (self.len + n).min(self.data.len());
    }
}

impl AsRef<[u8]> for WriteBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl fmt::Debug for WriteBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBuf")
            .field("len", &self.len())
            .field("capacity", &self.data.len())
            .field("apart", &self.apart.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_consumes_and_keeps_its_room() {
        let mut b = WriteBuf::new();
        b.extend_from_slice(b"hello ");
        b.extend_from_slice(b"world");
        assert_eq!(b.as_slice(), b"hello world");
        let cap = b.capacity();
        assert!(cap >= MIN_GROWTH);
        b.consume(6);
        assert_eq!(b.as_slice(), b"world");
        b.consume(100);
        assert!(b.is_empty());
        b.extend_from_slice(b"again");
        assert_eq!(b.as_slice(), b"again");
        assert_eq!(b.capacity(), cap);
    }

    #[test]
    fn grows_by_doubling_and_shrinks_on_request() {
        let mut b = WriteBuf::with_capacity(1000);
        b.extend_from_slice(&[1; 1500]);
        assert_eq!(b.capacity(), 2000);
        b.extend_from_slice(&[2; 5000]);
        assert_eq!(b.capacity(), 6500);
        b.clear();
        b.shrink_to(100);
        assert_eq!(b.capacity(), 100);
        b.extend_from_slice(&[3; 50]);
        b.shrink_to(10);
        assert_eq!(b.capacity(), 50);
    }

    /// The same frames written into a buffer that keeps large payloads apart and into one that does not: the
    /// pieces from any offset on are the bytes of the whole from that offset.
    #[test]
    fn pieces_from_any_offset_are_the_contiguous_bytes_from_there() {
        use crate::{Bincode, FrameCodec, Header, Metadata};
        let codec = FrameCodec::default();
        let mut apart = WriteBuf::with_capacity(64);
        apart.keep_apart_from(100);
        let mut whole = WriteBuf::new();
        for (id, len) in [(1, 5), (2, 300), (3, 7), (4, 250), (5, 1000)] {
            let value = serde_bytes::ByteBuf::from(vec![id as u8; len]);
            for buf in [&mut apart, &mut whole] {
                codec
                    .encode_value(
                        &Header::response(id),
                        &Metadata::new(),
                        &value,
                        &Bincode,
                        buf,
                    )
                    .unwrap();
            }
        }
        assert_eq!(apart.len(), whole.len());
        assert!(!apart.is_contiguous() && whole.is_contiguous());
        assert!(
            apart.capacity() < 1000,
            "the large payloads grew the buffer"
        );
        for from in 0..=whole.len() {
            let mut slices = [IoSlice::new(&[]); 16];
            let n = apart.io_slices(from, &mut slices);
            let joined: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
            assert_eq!(joined, whole.as_slice()[from..], "from {from}");
        }
        // A short `out` takes the first pieces only.
        let mut two = [IoSlice::new(&[]); 2];
        assert_eq!(apart.io_slices(0, &mut two), 2);
        apart.clear();
        assert!(apart.is_empty());
        assert_eq!(apart.io_slices(0, &mut [IoSlice::new(&[])]), 0);
    }

    #[test]
    fn advance_never_passes_the_room() {
        let mut b = WriteBuf::with_capacity(8);
        b.spare_mut()[..3].copy_from_slice(b"abc");
        b.advance(3);
        assert_eq!(b.as_slice(), b"abc");
        b.advance(100);
        assert_eq!(b.len(), 8);
        b.truncate(2);
        assert_eq!(b.as_slice(), b"ab");
    }
}
