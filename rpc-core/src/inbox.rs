//! A connection's incoming side: how much room each read gets. A read asks for what is arriving rather than
//! a fixed chunk: the rest of a frame whose header is in (so a large frame lands whole, in one allocation),
//! and otherwise a room that doubles while reads fill it (up to [`MAX_READ`]) and halves while they bring a
//! small share of it (down to [`FIRST_READ`]), so that 128 calls of 64 KiB in flight take a few large reads
//! instead of a hundred small ones, and an idle connection holds little.

use bytes::BytesMut;
use rpc_codec::FrameCodec;

/// Room of a connection's first read, and the least any read is given: 64 KiB.
pub(crate) const FIRST_READ: usize = 64 * 1024;

/// The most room a read is given beyond the rest of a frame under way: 1 MiB.
pub(crate) const MAX_READ: usize = 1024 * 1024;

/// How much the next read asks for.
#[derive(Debug)]
pub(crate) struct ReadSize {
    /// Room to give a read that starts between frames.
    next: usize,
    /// The room the last read had.
    room: usize,
}

impl ReadSize {
    pub(crate) fn new() -> ReadSize {
        ReadSize {
            next: FIRST_READ,
            room: 0,
        }
    }

    /// A buffer for the first read.
    pub(crate) fn first_buf() -> BytesMut {
        BytesMut::with_capacity(FIRST_READ)
    }

    /// Makes room in `buf` (what is left of earlier reads, a partial frame at most) before a read: the rest of
    /// the frame under way if its header is in, else a quarter of the current read size at least.
    pub(crate) fn make_room(&mut self, codec: &FrameCodec, buf: &mut BytesMut) {
        let spare = buf.capacity() - buf.len();
        let rest = codec
            .next_frame_len(buf)
            .map_or(0, |len| len.saturating_sub(buf.len()));
        if rest > 0 {
            // Mid-frame: room for its rest is enough; one that has it reads the rest without moving a byte.
            if spare < rest {
                buf.reserve(rest.max(self.next));
            }
        } else if spare < self.next / 4 {
            buf.reserve(self.next);
        }
        self.room = buf.capacity() - buf.len();
    }

    /// Notes that a read brought `n` bytes: one that filled its room doubles the next, one that brought less
    /// than an eighth of it halves it.
    pub(crate) fn note(&mut self, n: usize) {
        if n >= self.room && self.room >= self.next / 4 {
            self.next = (self.next * 2).min(MAX_READ);
        } else if n < self.room / 8 {
            self.next = (self.next / 2).max(FIRST_READ);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rpc_codec::{Header, Metadata, WriteBuf};

    #[test]
    fn reads_that_fill_their_room_double_it_up_to_the_cap_and_small_reads_halve_it() {
        let codec = FrameCodec::default();
        let mut size = ReadSize::new();
        let mut buf = ReadSize::first_buf();
        let mut rooms = Vec::new();
        for _ in 0..8 {
            size.make_room(&codec, &mut buf);
            rooms.push(size.next);
            size.note(size.room);
            buf.clear();
        }
        assert_eq!(
            rooms[..5],
            [
                FIRST_READ,
                2 * FIRST_READ,
                4 * FIRST_READ,
                8 * FIRST_READ,
                MAX_READ
            ]
        );
        assert_eq!(size.next, MAX_READ);
        for _ in 0..8 {
            size.make_room(&codec, &mut buf);
            size.note(10);
        }
        assert_eq!(size.next, FIRST_READ);
    }

    #[test]
    fn a_frame_under_way_gets_room_for_its_rest_in_one_piece() {
        let codec = FrameCodec::default();
        let mut out = WriteBuf::new();
        codec
            .encode_bytes(
                &Header::response(1),
                &Metadata::new(),
                &[1; 300_000],
                &mut out,
            )
            .unwrap();
        let mut size = ReadSize::new();
        let mut buf = BytesMut::from(&out.as_slice()[..1000]);
        size.make_room(&codec, &mut buf);
        assert!(
            buf.capacity() >= out.len(),
            "{} < {}",
            buf.capacity(),
            out.len()
        );
    }
}
