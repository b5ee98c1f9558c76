//! The output buffer: memory that is initialised once and then reused, so that frames are serialized into
//! plain `&mut [u8]` slices (bincode's fastest writer) without `unsafe`, and a connection's writer sends every
//! queued frame with one syscall.
//!
//! A `BytesMut` cannot serve here without `unsafe`: safe code can only append to it one checked write at a
//! time, which costs more than the serialization of a small value (see `docs/BENCHMARKS.md`).

use core::fmt;

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
#[derive(Clone, Default, PartialEq, Eq)]
pub struct WriteBuf {
    /// Content and spare room, all initialised; `data.len()` is the capacity.
    data: Vec<u8>,
    /// Bytes of content.
    len: usize,
}

impl WriteBuf {
    /// An empty buffer with no room; the first frame makes some.
    pub const fn new() -> WriteBuf {
        WriteBuf {
            data: Vec::new(),
            len: 0,
        }
    }

    /// An empty buffer with `capacity` bytes of room, zeroed now and never again.
    pub fn with_capacity(capacity: usize) -> WriteBuf {
        WriteBuf {
            data: vec![0; capacity],
            len: 0,
        }
    }

    /// Bytes of content.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no content.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Content plus spare room.
    pub fn capacity(&self) -> usize {
        self.data.len()
    }

    /// The content, ready to be written to a socket.
    pub fn as_slice(&self) -> &[u8] {
        &self.data[..self.len]
    }

    /// Drops all content, keeping the room.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Drops content past `len`.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Drops the first `n` bytes of content (those a partial write sent), moving the rest to the front.
    pub fn consume(&mut self, n: usize) {
        let n = n.min(self.len);
        self.data.copy_within(n..self.len, 0);
        self.len -= n;
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
            .field("len", &self.len)
            .field("capacity", &self.data.len())
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
