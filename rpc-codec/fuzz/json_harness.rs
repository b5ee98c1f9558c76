//! The JSON-arguments fuzz harness, shared by the cargo-fuzz target `json_args` and the `cargo test` replay of
//! its seeds and past crashes (`rpc-codec/tests/fuzz_regressions.rs`).
//!
//! Input: byte 0 picks the limit on the decoded value's memory (as `payload_decoder` does), byte 1 a method: a
//! list of argument names and the tuple of their types; the rest is the payload, the call's arguments as a JSON
//! object keyed by name. It runs `rpc_codec::json_call::named_args`, then `JsonCall.decode_within` on the array
//! that makes, as a server does. Besides "no panic", the harness checks:
//! - an object whose keys are all names, each once, becomes an array of exactly `names.len()` elements (`null`
//!   for a method of none), each the text of the value given for that name, in the order of the names, or
//!   `null` for a name left out, which is then listed as missing;
//! - an object with a key that names no argument, or a key given twice, is refused for the first such key, and
//!   the message quotes it escaped and cut: no control or bidirectional-override character, a bounded length;
//!   anything but an object (or empty text) is refused;
//! - the limit only refuses: an array that decodes under a limit decodes to the same value without one, and one
//!   refused for another reason is refused for the same reason without one; a refusal for the limit names it;
//! - what the decoded value takes in memory, measured by walking it (`Footprint`, shared with
//!   `payload_harness.rs`): the guard's measure never exceeds the limit, and the real heap stays within a small
//!   multiple of it;
//! - the value re-encoded with serde_json and wrapped back in an object by the names decodes, through
//!   `named_args` and under the same limit, to an equal value.

// Relative to this file, which `cargo test` and the fuzz target both include by `#[path]`. Its `NO_MAP` and
// `STABLE` serve bincode's byte-exact checks, which JSON text does not have. The replay test includes it twice,
// through both harnesses, each a crate root of the fuzz targets.
#[allow(dead_code, clippy::duplicate_mod)]
#[path = "payload_harness/footprint.rs"]
mod footprint;

use std::collections::BTreeMap;
use std::fmt::Debug;

use rpc_codec::json_call::named_args;
use rpc_codec::{JsonCall, PayloadCodec, PayloadError};
use serde::de::{DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use footprint::{Cost, Footprint, cost_of};

/// How far the real heap of a decoded value may exceed the limit, as a factor (as in `payload_harness.rs`).
const HEAP_FACTOR: usize = 8;
/// Heap a value may take beyond [`HEAP_FACTOR`] times the limit, for a limit of zero or a few bytes.
const HEAP_SLACK: usize = 1024;
/// Most characters of a key an error quotes (`json_call`'s own bound); escaped, each takes at most 10 bytes
/// (`\u{10ffff}`).
const MAX_QUOTED: usize = 64;

/// Runs one input; panics if a property does not hold.
pub(crate) fn run(data: &[u8]) {
    let [limit, which, payload @ ..] = data else {
        return;
    };
    let limit = limit_of(*limit);
    match which % 6 {
        0 => check::<(u64, String)>(payload, &["id", "name"], limit),
        1 => check::<(Option<i32>, Vec<u8>)>(payload, &["n", "bytes"], limit),
        2 => check::<(Value,)>(payload, &["value"], limit),
        3 => check::<(Settings, Option<Mode>)>(payload, &["settings", "mode"], limit),
        4 => check::<()>(payload, &[], limit),
        _ => check::<(Vec<Value>, Option<String>, f64)>(
            payload,
            &["items", "cursor", "scale"],
            limit,
        ),
    }
}

/// The limit byte 0 picks: below 128, a multiple of 8 bytes up to 1016; from 128, one of a few sizes from
/// 1 KiB to none at all.
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

/// A struct argument with a map, an enum and a defaulted field.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Settings {
    name: String,
    limits: BTreeMap<String, u32>,
    mode: Mode,
    #[serde(default)]
    tags: Vec<String>,
}

/// An enum of a unit, a newtype, a struct and a string variant.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub(crate) enum Mode {
    Off,
    Level(u8),
    Range { lo: i64, hi: i64 },
    Named(String),
}

impl Footprint for Settings {
    fn add(&self, cost: &mut Cost) {
        self.name.add(cost);
        self.limits.add(cost);
        self.mode.add(cost);
        self.tags.add(cost);
    }
}

impl Footprint for Mode {
    fn add(&self, cost: &mut Cost) {
        if let Mode::Named(s) = self {
            s.add(cost);
        }
    }
}

impl Footprint for Value {
    fn add(&self, cost: &mut Cost) {
        match self {
            Value::Null | Value::Bool(_) | Value::Number(_) => {}
            Value::String(s) => s.add(cost),
            Value::Array(items) => items.add(cost),
            Value::Object(map) => {
                // Each entry the size of its key and value; the node overhead of a B-tree map, as footprint.rs
                // counts it for a `BTreeMap<String, Value>`.
                let entry = size_of::<String>() + size_of::<Value>();
                cost.charged += map.len() * entry;
                let len = map.len();
                if len > 0 {
                    let leaf = 16 + 11 * entry;
                    let leaves = if len <= 11 { 1 } else { len / 5 + 1 };
                    let internal = if len <= 11 { 0 } else { leaves / 5 + 1 };
                    cost.heap += leaves * leaf + internal * (leaf + 12 * size_of::<usize>());
                }
                for (k, v) in map {
                    // A key is read as a borrowed `str` and copied: the guard does not charge it.
                    cost.heap += k.capacity();
                    v.add(cost);
                }
            }
        }
    }
}

/// The text with JSON's white space (space, tab, line feed, carriage return) trimmed at both ends, as
/// `named_args` trims it.
fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The entries of a JSON object, in the order of the text, each value as its text.
struct Entries;

impl<'de> Visitor<'de> for Entries {
    type Value = Vec<(String, &'de RawValue)>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            entries.push((key, map.next_value::<&'de RawValue>()?));
        }
        Ok(entries)
    }
}

/// The entries of `payload` if it is one JSON object and nothing else; `Some(empty)` for empty text.
fn entries_of(payload: &[u8]) -> Option<Vec<(String, &RawValue)>> {
    let payload = trim(payload);
    if payload.is_empty() {
        return Some(Vec::new());
    }
    let mut json = serde_json::Deserializer::from_slice(payload);
    let entries = json.deserialize_map(Entries).ok()?;
    json.end().ok()?;
    Some(entries)
}

/// Whether `c` may not appear in an error message that quotes a peer's text: a control character, or one that
/// reorders or hides the text around it.
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// Checks `named_args` on `payload` against the object's own entries, and returns its array if it accepted.
fn check_named_args(payload: &[u8], names: &[&str]) -> Option<Vec<u8>> {
    let result = named_args(payload, names);
    let Some(entries) = entries_of(payload) else {
        assert!(
            result.is_err(),
            "accepted what is not one object: {result:?}"
        );
        return None;
    };
    // The first key that names no argument or that was given before.
    let refused = entries.iter().enumerate().find_map(|(i, (key, _))| {
        let twice = entries[..i].iter().any(|(k, _)| k == key);
        (!names.contains(&key.as_str()) || twice).then_some((key, twice))
    });
    match (result, refused) {
        (Ok((array, missing)), None) => {
            if names.is_empty() {
                assert_eq!(array, b"null", "a method of no arguments");
                assert!(missing.is_empty());
                return Some(array);
            }
            let items: Vec<&RawValue> =
                serde_json::from_slice(&array).expect("the arguments make a JSON array");
            assert_eq!(items.len(), names.len(), "not one element per argument");
            let mut expected_missing = Vec::new();
            for (name, item) in names.iter().zip(&items) {
                match entries.iter().find(|(k, _)| k == name) {
                    Some((_, given)) => assert_eq!(item.get(), given.get(), "argument {name}"),
                    None => {
                        assert_eq!(item.get(), "null", "argument {name} left out");
                        expected_missing.push(*name);
                    }
                }
            }
            assert_eq!(missing, expected_missing, "the missing arguments");
            Some(array)
        }
        (Err(PayloadError::Invalid(message)), Some((key, twice))) => {
            let cut: String = key.chars().take(MAX_QUOTED).collect();
            let quoted = format!("{cut:?}");
            assert!(
                message.contains(&quoted),
                "the refusal does not quote {quoted}: {message}"
            );
            let what = if twice {
                "given twice"
            } else {
                "unknown argument"
            };
            assert!(message.contains(what), "not refused as {what}: {message}");
            assert!(
                !message.chars().any(unprintable),
                "an unprintable character in {message:?}"
            );
            let names_len: usize = names.iter().map(|n| n.len() + 2).sum();
            assert!(
                message.len() <= 100 + names_len + MAX_QUOTED * 10,
                "a refusal of {} bytes",
                message.len()
            );
            None
        }
        (result, refused) => {
            panic!("named_args gave {result:?} for the first refused key {refused:?}")
        }
    }
}

/// Runs `payload` through `named_args` and the decode of a `T` under `limit`; checks the overview's properties.
fn check<T>(payload: &[u8], names: &[&str], limit: usize)
where
    T: DeserializeOwned + Serialize + Footprint + PartialEq + Debug,
{
    let Some(array) = check_named_args(payload, names) else {
        return;
    };
    let limited = JsonCall.decode_within::<T>(&array, limit);
    let unlimited = JsonCall.decode::<T>(&array);
    match limited {
        Ok(value) => {
            let again = unlimited.expect("an array that decodes under a limit decodes without one");
            assert_eq!(again, value, "the limit changed the decoded value");
            check_value(names, limit, &value);
        }
        Err(PayloadError::DecodedTooLarge { limit: named }) => {
            assert_eq!(named, limit, "the refusal names another limit");
        }
        Err(error) => {
            let again = unlimited.expect_err("an array refused under a limit decodes without one");
            assert_eq!(
                error.to_string(),
                again.to_string(),
                "the limit changed the error"
            );
        }
    }
}

/// The properties of a value decoded under `limit`: its memory, and its round trip through an object.
fn check_value<T>(names: &[&str], limit: usize, value: &T)
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
    assert_eq!(cost.boxes, 0, "no argument type of the harness has a box");

    let object = match serde_json::to_value(value).expect("a decoded value encodes") {
        Value::Null if names.is_empty() => serde_json::Map::new(),
        Value::Array(items) if items.len() == names.len() => names
            .iter()
            .map(|name| name.to_string())
            .zip(items)
            .collect(),
        other => panic!("the arguments encode as {other}, not one value per name"),
    };
    let text = serde_json::to_vec(&object).expect("an object encodes");
    let (array, missing) = named_args(&text, names).expect("the re-encoded arguments are accepted");
    assert!(missing.is_empty(), "the re-encoding leaves out {missing:?}");
    let again = JsonCall
        .decode_within::<T>(&array, limit)
        .unwrap_or_else(|e| panic!("the re-encoded arguments do not decode under {limit}: {e}"));
    assert_eq!(
        &again, value,
        "the re-encoded arguments decode to another value"
    );
}
