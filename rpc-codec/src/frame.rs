//! The frame: its 28-byte header, the eleven kinds (three of them protocol 1.1's streams), the flags, which header fields each kind may use, and the
//! byte layout that `docs/PROTOCOL.md` specifies.

use core::fmt;
use core::time::Duration;

use bytes::Bytes;

use crate::error::HeaderError;
use crate::metadata::Metadata;
use crate::status::Status;

/// The first two bytes of every frame: ASCII `RP`.
pub const MAGIC: [u8; 2] = *b"RP";
/// The protocol version this crate speaks, byte 2 of every frame.
pub const VERSION: u8 = 1;
/// Length of the fixed header in bytes.
pub const HEADER_LEN: usize = 28;

/// What a frame is for (byte 3 of the header).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A call that expects exactly one `Response` or `Error` with the same request id.
    Request = 0x01,
    /// The result of a call: the method's value, or with [`Flags::APP_ERROR`] the application's error value.
    Response = 0x02,
    /// A call failed in transport or runtime: a [`Status`] and a UTF-8 message.
    Error = 0x03,
    /// The caller gave up on a call; the receiver stops its handler and sends nothing back.
    Cancel = 0x04,
    /// A call that expects no answer at all.
    OneWay = 0x05,
    /// Liveness probe; the receiver answers `Pong` with the same request id.
    Ping = 0x06,
    /// The answer to `Ping`.
    Pong = 0x07,
    /// The sender is draining: requests above the frame's request id were not and will not be processed.
    GoAway = 0x08,
    /// Protocol 1.1: one item of the stream that the `Request` with this id opened (with [`Flags::STREAM`]),
    /// in either direction; with [`Flags::APP_ERROR`] the item is the application's error value.
    Item = 0x09,
    /// Protocol 1.1: the sender's half of the stream ends well. From the server, the whole stream is over.
    End = 0x0A,
    /// Protocol 1.1: the receiver of a stream's items lets the sender send this many more bytes of them (a
    /// 4-byte payload, `u32` little-endian).
    Credit = 0x0B,
}

impl Kind {
    /// Every kind, in code order.
    pub const ALL: [Kind; 11] = [
        Kind::Request,
        Kind::Response,
        Kind::Error,
        Kind::Cancel,
        Kind::OneWay,
        Kind::Ping,
        Kind::Pong,
        Kind::GoAway,
        Kind::Item,
        Kind::End,
        Kind::Credit,
    ];

    /// The kind for a wire byte, or `None` for a byte outside `0x01..=0x0b`.
    pub const fn from_u8(byte: u8) -> Option<Kind> {
        match byte {
            0x01..=0x0B => Some(Kind::ALL[byte as usize - 1]),
            _ => None,
        }
    }

    /// The name used in messages (`request`, `go_away`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Request => "request",
            Kind::Response => "response",
            Kind::Error => "error",
            Kind::Cancel => "cancel",
            Kind::OneWay => "one_way",
            Kind::Ping => "ping",
            Kind::Pong => "pong",
            Kind::GoAway => "go_away",
            Kind::Item => "item",
            Kind::End => "end",
            Kind::Credit => "credit",
        }
    }

    /// Whether a frame of this kind may carry a payload.
    #[inline]
    pub const fn allows_payload(self) -> bool {
        self.rules().may & PAYLOAD != 0
    }

    /// Which header fields and sections this kind may use (`docs/PROTOCOL.md`, "Field use by kind").
    #[inline]
    pub(crate) const fn rules(self) -> Rules {
        RULES[self as usize - 1]
    }
}

// Bits of `Rules::may` and `Rules::must`: one per header field or section that may be non-zero.
const STATUS: u8 = 1 << 0;
const REQUEST_ID: u8 = 1 << 1;
const METHOD_ID: u8 = 1 << 2;
const DEADLINE: u8 = 1 << 3;
const METADATA: u8 = 1 << 4;
const PAYLOAD: u8 = 1 << 5;
const CALL: u8 = METHOD_ID | DEADLINE | METADATA | PAYLOAD;

/// The rules of each kind, in code order; the table of `docs/PROTOCOL.md` section 5.
const RULES: [Rules; 11] = [
    // Request: request id required; method, deadline, metadata and payload allowed; a compressed payload; it
    // may open a stream.
    // Protocol 1.2: its payload may be JSON.
    Rules::new(
        Flags::COMPRESSION.0 | Flags::STREAM.0 | Flags::JSON.0,
        REQUEST_ID | CALL,
        REQUEST_ID,
    ),
    // Response: request id required; may carry APP_ERROR, metadata and a payload, compressed or not, JSON or
    // not.
    Rules::new(
        Flags::APP_ERROR.0 | Flags::COMPRESSION.0 | Flags::JSON.0,
        REQUEST_ID | METADATA | PAYLOAD,
        REQUEST_ID,
    ),
    // Error: status required; request id 0 addresses the connection.
    Rules::new(0, STATUS | REQUEST_ID | METADATA | PAYLOAD, STATUS),
    // Cancel: the request id and nothing else.
    Rules::new(0, REQUEST_ID, REQUEST_ID),
    // OneWay: like Request, but the id may be 0, and it opens no stream.
    Rules::new(Flags::COMPRESSION.0 | Flags::JSON.0, REQUEST_ID | CALL, 0),
    // Ping and Pong: an opaque nonce.
    Rules::new(0, REQUEST_ID, 0),
    Rules::new(0, REQUEST_ID, 0),
    // GoAway: last processed id, a status and a reason text.
    Rules::new(0, STATUS | REQUEST_ID | PAYLOAD, 0),
    // Item: the stream's id and a payload, which may be the application's error, may hold several items and
    // may be compressed.
    Rules::new(
        Flags::APP_ERROR.0 | Flags::COMPRESSION.0 | Flags::BATCH.0,
        REQUEST_ID | PAYLOAD,
        REQUEST_ID,
    ),
    // End: the stream's id and nothing else.
    Rules::new(0, REQUEST_ID, REQUEST_ID),
    // Credit: the stream's id and a 4-byte payload (checked in `Header::check`).
    Rules::new(0, REQUEST_ID | PAYLOAD, REQUEST_ID | PAYLOAD),
];

/// The length of a `Credit` frame's payload: a `u32`, little-endian.
pub const CREDIT_LEN: usize = 4;

/// What one kind allows: flag bits, fields that may be non-zero, fields that must be.
#[derive(Clone, Copy)]
pub(crate) struct Rules {
    flags: u8,
    may: u8,
    must: u8,
}

impl Rules {
    const fn new(flags: u8, may: u8, must: u8) -> Rules {
        Rules { flags, may, must }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Flag bits (byte 4 of the header). Bits a kind does not define must be zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    /// No flag set.
    pub const EMPTY: Flags = Flags(0);
    /// On a `Response`: the payload is the application's error value, not the method's success value.
    pub const APP_ERROR: Flags = Flags(0b0000_0001);
    /// On a `Request`, `Response` or `OneWay` (protocol 1.1): the payload is compressed with lz4
    /// ([`crate::compression`]).
    pub const LZ4: Flags = Flags(0b0000_0010);
    /// On a `Request`, `Response` or `OneWay` (protocol 1.1): the payload is compressed with zstd.
    pub const ZSTD: Flags = Flags(0b0000_0100);
    /// The bits that name a payload's compression: at most one of them is set.
    pub const COMPRESSION: Flags = Flags(0b0000_0110);
    /// On a `Request` (protocol 1.1): the request opens a stream of the streaming method it names; `Item`,
    /// `End` and `Credit` frames with its id follow.
    pub const STREAM: Flags = Flags(0b0000_1000);
    /// On an `Item` (protocol 1.1): the payload holds several items, each its length as a `u32` little-endian,
    /// then its bytes ([`crate::items`]); with [`Flags::APP_ERROR`], every one of them is the application's
    /// error.
    pub const BATCH: Flags = Flags(0b0000_1000);
    /// On a `Request`, `OneWay` or `Response` (protocol 1.2): the payload is JSON text, not bincode. A request's
    /// arguments are an object keyed by argument name; its answer (the value, or with [`Flags::APP_ERROR`] the
    /// application's error) is JSON too. Never with [`Flags::STREAM`].
    pub const JSON: Flags = Flags(0b0001_0000);

    /// The flags for a wire byte, unchecked: [`Header::check`] refuses bits the kind does not allow.
    pub const fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }

    /// The wire byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is set here.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// These flags with `other`'s bits set too.
    pub const fn with(self, other: Flags) -> Flags {
        Flags(self.0 | other.0)
    }

    /// The encoding the payload is compressed with, if a compression bit is set.
    pub const fn encoding(self) -> Option<crate::compression::Encoding> {
        match self.0 & Flags::COMPRESSION.0 {
            0b010 => Some(crate::compression::Encoding::Lz4),
            0b100 => Some(crate::compression::Encoding::Zstd),
            _ => None,
        }
    }

    /// The flag of `encoding`.
    pub const fn of(encoding: crate::compression::Encoding) -> Flags {
        match encoding {
            crate::compression::Encoding::Lz4 => Flags::LZ4,
            crate::compression::Encoding::Zstd => Flags::ZSTD,
        }
    }
}

/// The fixed part of a frame, without the two lengths (the codec derives those from the sections).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Header {
    /// What the frame is for.
    pub kind: Kind,
    /// Flag bits; see [`Flags`].
    pub flags: Flags,
    /// Why a call failed (`Error`) or why the peer drains (`GoAway`); [`Status::Ok`] on every other kind.
    pub status: Status,
    /// Matches a `Response`, `Error` or `Cancel` to its `Request`; the nonce of a `Ping`/`Pong`; the last
    /// processed request of a `GoAway`.
    pub request_id: u64,
    /// The method a `Request` or `OneWay` calls (see [`crate::method_id`]); zero on every other kind.
    pub method_id: u32,
    /// Remaining time budget of a `Request` or `OneWay` in microseconds when it was sent; 0 means none.
    pub deadline_us: u32,
}

impl Header {
    const fn with(kind: Kind, request_id: u64) -> Header {
        Header {
            kind,
            flags: Flags::EMPTY,
            status: Status::Ok,
            request_id,
            method_id: 0,
            deadline_us: 0,
        }
    }

    /// A `Request` header without a deadline. `request_id` must not be zero.
    pub const fn request(request_id: u64, method_id: u32) -> Header {
        Header {
            method_id,
            ..Header::with(Kind::Request, request_id)
        }
    }

    /// A `OneWay` header without a deadline.
    pub const fn one_way(request_id: u64, method_id: u32) -> Header {
        Header {
            method_id,
            ..Header::with(Kind::OneWay, request_id)
        }
    }

    /// A `Response` header carrying the method's success value.
    pub const fn response(request_id: u64) -> Header {
        Header::with(Kind::Response, request_id)
    }

    /// A `Response` header carrying the application's error value ([`Flags::APP_ERROR`]).
    pub const fn app_error(request_id: u64) -> Header {
        Header {
            flags: Flags::APP_ERROR,
            ..Header::with(Kind::Response, request_id)
        }
    }

    /// An `Error` header; `status` must not be [`Status::Ok`]. Request id 0 addresses the whole connection.
    pub const fn error(request_id: u64, status: Status) -> Header {
        Header {
            status,
            ..Header::with(Kind::Error, request_id)
        }
    }

    /// A `Request` header that opens a stream of `method_id` (protocol 1.1, [`Flags::STREAM`]).
    pub const fn stream(request_id: u64, method_id: u32) -> Header {
        Header {
            method_id,
            flags: Flags::STREAM,
            ..Header::with(Kind::Request, request_id)
        }
    }

    /// An `Item` header of stream `request_id`.
    pub const fn item(request_id: u64) -> Header {
        Header::with(Kind::Item, request_id)
    }

    /// An `Item` header of stream `request_id` carrying the application's error ([`Flags::APP_ERROR`]).
    pub const fn app_error_item(request_id: u64) -> Header {
        Header {
            flags: Flags::APP_ERROR,
            ..Header::with(Kind::Item, request_id)
        }
    }

    /// An `End` header: the sender's half of stream `request_id` ends.
    pub const fn end(request_id: u64) -> Header {
        Header::with(Kind::End, request_id)
    }

    /// A `Credit` header for stream `request_id`; its payload is the increment ([`CREDIT_LEN`] bytes).
    pub const fn credit(request_id: u64) -> Header {
        Header::with(Kind::Credit, request_id)
    }

    /// A `Cancel` header for the call `request_id`.
    pub const fn cancel(request_id: u64) -> Header {
        Header::with(Kind::Cancel, request_id)
    }

    /// A `Ping` header with an opaque nonce.
    pub const fn ping(nonce: u64) -> Header {
        Header::with(Kind::Ping, nonce)
    }

    /// The `Pong` answering a `Ping` with this nonce.
    pub const fn pong(nonce: u64) -> Header {
        Header::with(Kind::Pong, nonce)
    }

    /// A `GoAway` header: requests with ids above `last_request_id` were not processed and will not be.
    pub const fn go_away(last_request_id: u64, status: Status) -> Header {
        Header {
            status,
            ..Header::with(Kind::GoAway, last_request_id)
        }
    }

    /// This header with a deadline budget of `remaining` (see [`budget_us`]).
    pub const fn with_deadline(self, remaining: Duration) -> Header {
        Header {
            deadline_us: budget_us(remaining),
            ..self
        }
    }

    /// The deadline budget, or `None` when the frame carries none.
    pub const fn deadline(&self) -> Option<Duration> {
        match self.deadline_us {
            0 => None,
            us => Some(Duration::from_micros(us as u64)),
        }
    }

    /// Checks the header against the rules of its kind, given the lengths of its two sections.
    ///
    /// Both the encoder and the decoder call this, so a frame that leaves this crate is one it would accept.
    #[inline(always)]
    pub fn check(&self, metadata_len: usize, payload_len: usize) -> Result<(), HeaderError> {
        // One arm per kind, as in `RULES`; a test checks both against the table of `docs/PROTOCOL.md`.
        let (flags, status, id) = (self.flags.0, self.status.code(), self.request_id);
        let call_fields = u64::from(self.method_id) | u64::from(self.deadline_us);
        let sections = metadata_len | payload_len;
        // At most one compression bit (both set would name no encoding).
        let compression = flags & Flags::COMPRESSION.0 != Flags::COMPRESSION.0;
        let plain = flags & !Flags::COMPRESSION.0;
        let ok = match self.kind {
            Kind::Request => {
                plain & !(Flags::STREAM.0 | Flags::JSON.0) | status == 0
                    && id != 0
                    && compression
                    && flags & (Flags::STREAM.0 | Flags::JSON.0) != Flags::STREAM.0 | Flags::JSON.0
            }
            Kind::OneWay => plain & !Flags::JSON.0 | status == 0 && compression,
            Kind::Response => {
                plain & !(Flags::APP_ERROR.0 | Flags::JSON.0) | status == 0
                    && id != 0
                    && call_fields == 0
                    && compression
            }
            Kind::Error => flags == 0 && status != 0 && call_fields == 0,
            Kind::Cancel => flags | status == 0 && id != 0 && call_fields == 0 && sections == 0,
            Kind::Ping | Kind::Pong => flags | status == 0 && call_fields == 0 && sections == 0,
            Kind::GoAway => flags == 0 && call_fields == 0 && metadata_len == 0,
            Kind::Item => {
                plain & !(Flags::APP_ERROR.0 | Flags::BATCH.0) | status == 0
                    && id != 0
                    && call_fields == 0
                    && metadata_len == 0
                    && compression
            }
            Kind::End => flags | status == 0 && id != 0 && call_fields == 0 && sections == 0,
            Kind::Credit => {
                flags | status == 0
                    && id != 0
                    && call_fields == 0
                    && metadata_len == 0
                    && payload_len == CREDIT_LEN
            }
        };
        if ok {
            return Ok(());
        }
        match self.diagnose(metadata_len, payload_len) {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Names the first rule the header breaks, field by field (the slow path of [`Header::check`]). It takes the
    /// header by value: were its address to escape into this out-of-line function, the compiler could no longer
    /// fold a caller's constant header fields.
    #[cold]
    #[inline(never)]
    fn diagnose(self, metadata_len: usize, payload_len: usize) -> Option<HeaderError> {
        let kind = self.kind;
        let rules = kind.rules();
        if self.flags.0 & !rules.flags != 0 {
            return Some(HeaderError::UnknownFlags {
                kind,
                got: self.flags.0,
                allowed: rules.flags,
            });
        }
        if self.flags.0 & Flags::COMPRESSION.0 == Flags::COMPRESSION.0 {
            return Some(HeaderError::TwoEncodings {
                kind,
                got: self.flags.0,
            });
        }
        let stream_json = Flags::STREAM.0 | Flags::JSON.0;
        if kind == Kind::Request && self.flags.0 & stream_json == stream_json {
            return Some(HeaderError::JsonStream { got: self.flags.0 });
        }
        let fields = [
            (STATUS, "status", u64::from(self.status.code())),
            (REQUEST_ID, "request_id", self.request_id),
            (METHOD_ID, "method_id", u64::from(self.method_id)),
            (DEADLINE, "deadline_us", u64::from(self.deadline_us)),
            (METADATA, "metadata_len", metadata_len as u64),
            (PAYLOAD, "payload_len", payload_len as u64),
        ];
        for (bit, field, got) in fields {
            if got != 0 && rules.may & bit == 0 {
                return Some(HeaderError::MustBeZero { kind, field, got });
            }
            if got == 0 && rules.must & bit != 0 {
                return Some(HeaderError::MustBeNonZero { kind, field });
            }
        }
        if kind == Kind::Credit && payload_len != CREDIT_LEN {
            return Some(HeaderError::CreditLength { got: payload_len });
        }
        None
    }

    /// Writes the 28 header bytes for sections of the given lengths (unchecked; see [`Header::check`]).
    #[inline(always)]
    pub fn to_bytes(&self, metadata_len: u16, payload_len: u32) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..2].copy_from_slice(&MAGIC);
        b[2] = VERSION;
        b[3] = self.kind as u8;
        b[4] = self.flags.0;
        b[5] = self.status.code();
        b[6..8].copy_from_slice(&metadata_len.to_le_bytes());
        b[8..16].copy_from_slice(&self.request_id.to_le_bytes());
        b[16..20].copy_from_slice(&self.method_id.to_le_bytes());
        b[20..24].copy_from_slice(&self.deadline_us.to_le_bytes());
        b[24..28].copy_from_slice(&payload_len.to_le_bytes());
        b
    }
}

/// The wire budget for `remaining` time: whole microseconds rounded up, at least 1 (0 would mean "none"),
/// at most `u32::MAX` (about 71.6 minutes; longer budgets are clamped).
///
/// ```
/// use core::time::Duration;
/// assert_eq!(rpc_codec::budget_us(Duration::from_nanos(1)), 1);
/// assert_eq!(rpc_codec::budget_us(Duration::from_millis(250)), 250_000);
/// assert_eq!(rpc_codec::budget_us(Duration::from_secs(10_000)), u32::MAX);
/// ```
pub const fn budget_us(remaining: Duration) -> u32 {
    let nanos = remaining.as_nanos();
    let us = nanos.div_ceil(1_000);
    if us == 0 {
        1
    } else if us > u32::MAX as u128 {
        u32::MAX
    } else {
        us as u32
    }
}

/// A whole frame: header, metadata section and payload, the sections sharing the receive buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// The fixed header.
    pub header: Header,
    /// Key-value metadata (trace id, auth token, ...).
    pub metadata: Metadata,
    /// The payload: encoded arguments or result, an error message, or empty.
    pub payload: Bytes,
}

impl Frame {
    /// A frame with no metadata.
    pub fn new(header: Header, payload: Bytes) -> Frame {
        Frame {
            header,
            metadata: Metadata::new(),
            payload,
        }
    }

    /// The payload of an `Error` or `GoAway` frame as text; invalid UTF-8 is replaced, never refused.
    pub fn message(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The table of `docs/PROTOCOL.md` section 5, written out independently of `RULES`:
    /// (kind, allowed flags, status, request_id, method_id, deadline, metadata, payload),
    /// where 0 = must be zero, 1 = must be non-zero, 2 = any.
    const TABLE: [(Kind, u8, [u8; 6]); 11] = [
        (Kind::Request, 0x0e, [0, 1, 2, 2, 2, 2]),
        (Kind::Response, 7, [0, 1, 0, 0, 2, 2]),
        (Kind::Error, 0, [1, 2, 0, 0, 2, 2]),
        (Kind::Cancel, 0, [0, 1, 0, 0, 0, 0]),
        (Kind::OneWay, 6, [0, 2, 2, 2, 2, 2]),
        (Kind::Ping, 0, [0, 2, 0, 0, 0, 0]),
        (Kind::Pong, 0, [0, 2, 0, 0, 0, 0]),
        (Kind::GoAway, 0, [2, 2, 0, 0, 0, 2]),
        (Kind::Item, 0x0f, [0, 1, 0, 0, 0, 2]),
        (Kind::End, 0, [0, 1, 0, 0, 0, 0]),
        (Kind::Credit, 0, [0, 1, 0, 0, 0, 1]),
    ];

    #[test]
    fn check_agrees_with_the_protocol_table_for_every_combination() {
        for (kind, allowed_flags, rules) in TABLE {
            for set in 0u8..64 {
                for flags in [0u8, 1, 2, 4, 6, 7, 8, 0x0a, 0x0e, 0x80] {
                    let on = |i: u8| set & (1 << i) != 0;
                    let header = Header {
                        kind,
                        flags: Flags::from_bits(flags),
                        status: if on(0) { Status::Internal } else { Status::Ok },
                        request_id: u64::from(on(1)) << 40,
                        method_id: u32::from(on(2)),
                        deadline_us: u32::from(on(3)) * 9,
                    };
                    // A credit's payload is one u32; every other payload, any length.
                    let payload = if kind == Kind::Credit { 4 } else { 70_000 };
                    let (mlen, plen) = (usize::from(on(4)) * 3, usize::from(on(5)) * payload);
                    let fields_ok = (0..6u8).all(|i| match rules[usize::from(i)] {
                        0 => !on(i),
                        1 => on(i),
                        _ => true,
                    });
                    // At most one compression bit, on the kinds that allow them.
                    let want = fields_ok && flags & !allowed_flags == 0 && flags & 6 != 6;
                    let got = header.check(mlen, plen);
                    assert_eq!(
                        got.is_ok(),
                        want,
                        "{kind} fields {set:06b} flags {flags:#x}: {got:?}"
                    );
                }
            }
            assert_eq!(kind.allows_payload(), rules[5] != 0, "{kind}");
        }
    }

    #[test]
    fn budgets_round_up_and_clamp() {
        assert_eq!(budget_us(Duration::ZERO), 1);
        assert_eq!(budget_us(Duration::from_nanos(1_001)), 2);
        assert_eq!(
            budget_us(Duration::from_micros(u64::from(u32::MAX))),
            u32::MAX
        );
        assert_eq!(budget_us(Duration::MAX), u32::MAX);
        let h = Header::request(1, 1).with_deadline(Duration::from_secs(3));
        assert_eq!(h.deadline(), Some(Duration::from_secs(3)));
        assert_eq!(Header::request(1, 1).deadline(), None);
    }
}
