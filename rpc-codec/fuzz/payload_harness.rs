//! The payload-decoder fuzz harness, shared by the cargo-fuzz target `payload_decoder` and the `cargo test`
//! replay of its seeds and past crashes (`rpc-codec/tests/fuzz_regressions.rs`).
//!
//! Input: byte 0 picks the limit on the decoded value's memory, byte 1 the type; the rest is the payload,
//! decoded with [`Bincode`]'s `decode_within` as one of the argument tuples below, as a server decodes a
//! method's arguments. Besides "no panic", the harness checks:
//! - the limit only ever refuses: a payload that decodes under a limit decodes to the same value without one,
//!   and a payload refused for another reason is refused for the same reason without one;
//! - a refusal for the limit names that limit, and is never spurious for a payload in canonical form;
//! - a decoded value re-encodes with `Bincode::to_vec`, to no more bytes than it came from; to exactly those
//!   bytes if the type has no map and nothing was shortened; and that re-encoding decodes to an equal value,
//!   within exactly the memory the guard charged for it (and not one byte less);
//! - what the decoded value takes in memory, measured by walking it ([`Footprint`]): the guard's own measure
//!   never exceeds the limit, and the real heap (collection capacity and node overhead included) stays within
//!   a small multiple of it. Memory behind a `Box` is measured apart ([`Footprint`]'s `boxed`): the guard
//!   charges a boxed value bigger than its slot (the `guard` module), and the harness holds the real heap, boxes
//!   included, to the same multiple of the limit.
//!
//! Byte-exact re-encoding does not hold for every input, and the harness does not claim it: bincode's varints
//! decode from a longer form than the one they encode to (`[251, 5, 0]` is 5, which encodes as `[5]`), a map
//! keeps one of two equal keys and sorts a `BTreeMap`'s keys, and a `HashMap` encodes in its own iteration
//! order. What holds for bincode is that the re-encoding is canonical: never longer, and a fixed point.

// Relative to this file, which `cargo test` and the fuzz target both include by `#[path]`.
#[path = "payload_harness/footprint.rs"]
mod footprint;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;

use rpc_codec::{Bincode, PayloadCodec, PayloadError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use footprint::{Cost, Footprint, cost_of};

/// How far the real heap of a decoded value may exceed the limit, as a factor: the guard charges a map entry
/// the size of its key and value, but a B-tree node or hash table around a single small entry takes several
/// times that (a `BTreeMap<u8, u8>` of one entry: 2 bytes charged, a 40-byte node allocated).
const HEAP_FACTOR: usize = 8;
/// Heap a value may take beyond [`HEAP_FACTOR`] times the limit, for a limit of zero or a few bytes.
const HEAP_SLACK: usize = 1024;

/// Runs one input; panics if a property does not hold.
pub(crate) fn run(data: &[u8]) {
    let [limit, which, payload @ ..] = data else {
        return;
    };
    let limit = limit_of(*limit);
    match which % 18 {
        0 => check::<(u64,)>(payload, limit),
        1 => check::<(i64, u32, bool, i128, u16)>(payload, limit),
        2 => check::<(String,)>(payload, limit),
        3 => check::<(String, Vec<u8>)>(payload, limit),
        4 => check::<(ByteBuf, Vec<u8>, Packet)>(payload, limit),
        5 => check::<(Vec<Vec<u32>>,)>(payload, limit),
        6 => check::<(Vec<Vec<String>>, Vec<ByteBuf>)>(payload, limit),
        7 => check::<(BTreeMap<String, Vec<u16>>,)>(payload, limit),
        8 => check::<(HashMap<u32, String>, Vec<HashMap<u8, ByteBuf>>)>(payload, limit),
        9 => check::<(BTreeMap<u8, BTreeMap<u8, u8>>,)>(payload, limit),
        10 => check::<(Option<Box<Node>>,)>(payload, limit),
        11 => check::<(Vec<Shape>,)>(payload, limit),
        12 => check::<(Shape, Vec<Option<Box<Shape>>>)>(payload, limit),
        13 => check::<(Registration,)>(payload, limit),
        14 => check::<(String, Vec<Registration>, Option<Registration>)>(payload, limit),
        15 => check::<(Measure, Vec<char>)>(payload, limit),
        16 => check::<()>(payload, limit),
        _ => check_borrowed(payload, limit),
    }
}

/// The limit byte 0 picks: below 128, a multiple of 8 bytes up to 1016 (to land on the exact cost of small
/// values); from 128, one of a few sizes from 1 KiB to none at all.
fn limit_of(byte: u8) -> usize {
    const LARGE: [usize; 8] = [
        1 << 10,
        2 << 10,
        4 << 10,
        16 << 10,
        64 << 10,
        1 << 20,
        64 << 20,
        usize::MAX,
    ];
    match byte {
        0..128 => usize::from(byte) * 8,
        _ => LARGE[usize::from(byte - 128) % LARGE.len()],
    }
}

/// A registration, shaped like `rpc_registry::NewInstance` (rpc-codec cannot depend on the registry).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Registration {
    service: String,
    address: String,
    weight: u32,
    metadata: BTreeMap<String, String>,
}

/// A tree, recursive through `Option<Box<..>>` and through a vector.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Node {
    value: i16,
    label: Option<String>,
    children: Vec<Node>,
    next: Option<Box<Node>>,
}

/// An enum with variants from nothing to 512 bytes inline, some owning heap memory, one recursive.
// The size difference between the variants is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Shape {
    Dot,
    Point(i32, i32),
    Text(String),
    Blob(ByteBuf),
    Grid { cells: Vec<Vec<u8>>, width: u16 },
    Big([u64; 32], [u64; 32]),
    Nested(Option<Box<Shape>>),
}

/// Byte buffers three ways: `serde_bytes` on a `Vec<u8>`, a `ByteBuf`, and a plain `Vec<u8>` (a sequence).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Packet {
    #[serde(with = "serde_bytes")]
    header: Vec<u8>,
    body: ByteBuf,
    trailer: Vec<u8>,
}

/// Floats and a char; equal when their bits are (so that a NaN equals itself).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Measure {
    value: f64,
    ratio: f32,
    unit: char,
}

impl PartialEq for Measure {
    fn eq(&self, other: &Measure) -> bool {
        (self.value.to_bits(), self.ratio.to_bits(), self.unit)
            == (other.value.to_bits(), other.ratio.to_bits(), other.unit)
    }
}

impl Footprint for Registration {
    fn add(&self, cost: &mut Cost) {
        self.service.add(cost);
        self.address.add(cost);
        self.metadata.add(cost);
    }
    const NO_MAP: bool = false;
}

impl Footprint for Node {
    fn add(&self, cost: &mut Cost) {
        self.label.add(cost);
        self.children.add(cost);
        self.next.add(cost);
    }
}

impl Footprint for Shape {
    fn add(&self, cost: &mut Cost) {
        match self {
            Shape::Dot | Shape::Point(..) | Shape::Big(..) => {}
            Shape::Text(s) => s.add(cost),
            Shape::Blob(b) => b.add(cost),
            Shape::Grid { cells, .. } => cells.add(cost),
            Shape::Nested(n) => n.add(cost),
        }
    }
}

impl Footprint for Packet {
    fn add(&self, cost: &mut Cost) {
        // `header` goes through serde_bytes as one buffer: charged its length, like a `ByteBuf`.
        cost.charged += self.header.len();
        cost.heap += self.header.capacity();
        self.body.add(cost);
        self.trailer.add(cost);
    }
}

impl Footprint for Measure {
    fn add(&self, _: &mut Cost) {}
}

/// Decodes `payload` as a `T` under `limit` and checks the properties of the module's overview.
fn check<T>(payload: &[u8], limit: usize)
where
    T: DeserializeOwned + Serialize + Footprint + PartialEq + Debug,
{
    let limited = Bincode.decode_within::<T>(payload, limit);
    let unlimited = Bincode.decode::<T>(payload);
    match limited {
        Ok(value) => {
            let again =
                unlimited.expect("a payload that decodes under a limit decodes without one");
            assert_eq!(again, value, "the limit changed the decoded value");
            check_value(payload, limit, &value);
        }
        Err(PayloadError::DecodedTooLarge { limit: named }) => {
            assert_eq!(named, limit, "the refusal names another limit");
            if let Ok(value) = unlimited {
                let cost = cost_of(&value);
                // With no shorter form and no repeated key, the guard charged exactly what the value costs.
                if Bincode.to_vec(&value).ok().as_deref() == Some(payload) {
                    assert!(
                        cost.charged > limit,
                        "refused for the limit {limit}, but the value costs only {cost:?}"
                    );
                }
            }
        }
        Err(error) => {
            let again = unlimited.expect_err("a payload refused under a limit decodes without one");
            assert_eq!(
                error.to_string(),
                again.to_string(),
                "the limit changed the error"
            );
        }
    }
}

/// The properties of a value decoded from `payload` under `limit`.
fn check_value<T>(payload: &[u8], limit: usize, value: &T)
where
    T: DeserializeOwned + Serialize + Footprint + PartialEq + Debug,
{
    let cost = cost_of(value);
    assert!(
        cost.charged <= limit,
        "decoded under the limit {limit} a value that costs {cost:?}"
    );
    assert!(
        cost.heap + cost.boxed <= limit.saturating_mul(HEAP_FACTOR).saturating_add(HEAP_SLACK),
        "decoded under the limit {limit} a value whose heap is {} bytes ({cost:?})",
        cost.heap + cost.boxed
    );
    assert!(
        cost.boxes <= payload.len(),
        "{} boxes from a payload of {} bytes",
        cost.boxes,
        payload.len()
    );

    let canonical = Bincode.to_vec(value).expect("a decoded value encodes");
    assert!(
        canonical.len() <= payload.len(),
        "re-encoding is longer than the payload: {} > {} bytes",
        canonical.len(),
        payload.len()
    );
    if T::NO_MAP && canonical.len() == payload.len() {
        assert_eq!(canonical, payload, "re-encoding differs from the payload");
    }
    let again = Bincode
        .decode_within::<T>(&canonical, cost.charged)
        .unwrap_or_else(|e| {
            panic!(
                "the re-encoding of a value that cost {} bytes does not decode within them: {e}",
                cost.charged
            )
        });
    assert_eq!(&again, value, "the re-encoding decodes to another value");
    if cost.charged > 0 {
        let short = Bincode.decode_within::<T>(&canonical, cost.charged - 1);
        assert!(
            matches!(short, Err(PayloadError::DecodedTooLarge { .. })),
            "the re-encoding of a value that cost {} bytes decodes within one byte less: {short:?}",
            cost.charged
        );
    }
    if T::STABLE {
        let twice = Bincode.to_vec(&again).expect("a decoded value encodes");
        assert_eq!(twice, canonical, "re-encoding is not a fixed point");
    }
}

/// The borrowed arguments `(&str, &Bytes)`: they point into the payload, so they cost nothing under any limit.
fn check_borrowed(payload: &[u8], limit: usize) {
    type Borrowed<'a> = (&'a str, &'a serde_bytes::Bytes);
    let limited = Bincode.decode_within::<Borrowed<'_>>(payload, limit);
    let unlimited = Bincode.decode::<Borrowed<'_>>(payload);
    match (limited, unlimited) {
        (Ok(value), Ok(again)) => {
            assert_eq!(value, again, "the limit changed the decoded value");
            let range = payload.as_ptr_range();
            assert!(
                range.contains(&value.0.as_ptr()) || value.0.is_empty(),
                "the string does not borrow from the payload"
            );
            let canonical = Bincode.to_vec(&value).expect("a decoded value encodes");
            assert!(canonical.len() <= payload.len());
            if canonical.len() == payload.len() {
                assert_eq!(canonical, payload, "re-encoding differs from the payload");
            }
            let back = Bincode
                .decode_within::<Borrowed<'_>>(&canonical, 0)
                .expect("borrowed values decode within a limit of 0");
            assert_eq!(back, value, "the re-encoding decodes to another value");
        }
        (Err(error), Err(again)) => {
            assert!(
                !matches!(error, PayloadError::DecodedTooLarge { .. }),
                "borrowed values were charged: {error}"
            );
            assert_eq!(error.to_string(), again.to_string());
        }
        (limited, unlimited) => {
            panic!("the limit changed the outcome: {limited:?} under it, {unlimited:?} without")
        }
    }
}
