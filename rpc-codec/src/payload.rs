//! The payload codec: how argument and result values become payload bytes. [`Bincode`] (bincode 2, standard
//! configuration, through serde) is the default; [`PayloadCodec`] lets a service plug in another.
//!
//! Encoding serializes straight into the spare room of the connection's output buffer (a [`crate::WriteBuf`]);
//! a value that does not fit is measured, the buffer grows once (within the frame limit) and it is encoded
//! again. Decoding borrows from the received payload, bounds every length inside it by the payload's size, the
//! memory of the decoded value by a limit and its nesting by [`crate::MAX_DEPTH`] (see the `guard` module), and
//! refuses bytes left over after the value.
//!
//! # Byte payloads
//! Through serde, a plain `Vec<u8>` or `[u8]` is a sequence and goes element by element; serde's bytes go as
//! one length and one copy, and bincode writes the same bytes for both. `#[service]` sends an argument or result
//! written `Vec<u8>` or `Bytes` as bytes by itself (its docs say so where a user meets them); byte fields inside
//! a value need `#[serde(with = "serde_bytes")]` or `serde_bytes::ByteBuf`.

use serde::{Deserialize, Serialize};

use crate::error::PayloadError;
use crate::guard;

/// Turns values into payload bytes and back.
pub trait PayloadCodec: Clone + Send + Sync + 'static {
    /// The flags a frame whose payload this codec encoded carries: [`Flags::JSON`](crate::Flags::JSON) for a
    /// call in JSON ([`crate::JsonCall`]), none for the rest, whose payload format is the service's.
    const FLAGS: crate::Flags = crate::Flags::EMPTY;

    /// Encodes `value` at the start of `out` and returns how many bytes it wrote, or `Ok(None)` if `out` is too
    /// small; the frame encoder then asks [`PayloadCodec::encoded_len`], makes room and calls this again.
    fn encode_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut [u8],
    ) -> Result<Option<usize>, PayloadError>;

    /// The exact length of the encoding of `value`.
    fn encoded_len<T: Serialize + ?Sized>(&self, value: &T) -> Result<usize, PayloadError>;

    /// Encodes `value`, whose encoding takes `len` bytes ([`PayloadCodec::encoded_len`]), into a new vector:
    /// how a large payload is kept apart from the output buffer ([`crate::WriteBuf::keep_apart_from`]). The
    /// default zeroes the vector and calls [`PayloadCodec::encode_into`]; [`Bincode`] appends without zeroing.
    fn encode_to_vec<T: Serialize + ?Sized>(
        &self,
        value: &T,
        len: usize,
    ) -> Result<Vec<u8>, PayloadError> {
        let mut out = vec![0; len];
        match self.encode_into(value, &mut out)? {
            Some(n) if n == len => Ok(out),
            _ => Err(PayloadError::Unencodable(format!(
                "the codec measured the value at {len} bytes but encoded it to another length"
            ))),
        }
    }

    /// Decodes a `T` that spans exactly `payload`; `T` may borrow from it.
    fn decode<'de, T: Deserialize<'de>>(&self, payload: &'de [u8]) -> Result<T, PayloadError>;

    /// Like [`PayloadCodec::decode`], refusing a value that would take more than `max_decoded_len` bytes of
    /// memory ([`PayloadError::DecodedTooLarge`]). The default ignores the limit; [`Bincode`] keeps it.
    fn decode_within<'de, T: Deserialize<'de>>(
        &self,
        payload: &'de [u8],
        max_decoded_len: usize,
    ) -> Result<T, PayloadError> {
        let _ = max_decoded_len;
        self.decode(payload)
    }
}

/// The default payload codec: bincode 2 with `bincode::config::standard()` (little-endian, variable-length
/// integers), as `docs/PROTOCOL.md` specifies byte by byte.
///
/// ```
/// use rpc_codec::{Bincode, PayloadCodec};
/// let bytes = Bincode.to_vec(&(7u32, "hi"))?;
/// assert_eq!(bytes, [7, 2, b'h', b'i']);
/// let (n, s): (u32, &str) = Bincode.decode(&bytes)?;
/// assert_eq!((n, s), (7, "hi"));
/// # Ok::<(), rpc_codec::PayloadError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bincode;

/// The bincode configuration of wire protocol v1.
const CONFIG: bincode::config::Configuration = bincode::config::standard();

impl Bincode {
    /// Encodes `value` into a new vector.
    pub fn to_vec<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, PayloadError> {
        let mut out = vec![0; self.encoded_len(value)?];
        match self.encode_into(value, &mut out)? {
            Some(n) if n == out.len() => Ok(out),
            _ => Err(PayloadError::Unencodable(
                "the value encoded to a different length the second time".to_owned(),
            )),
        }
    }
}

impl PayloadCodec for Bincode {
    #[inline(always)]
    fn encode_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut [u8],
    ) -> Result<Option<usize>, PayloadError> {
        // `bincode::serde::encode_into_slice`, spelled out so that it inlines into the frame encoder.
        let writer = bincode::enc::write::SliceWriter::new(out);
        let mut encoder = bincode::enc::EncoderImpl::new(writer, CONFIG);
        match bincode::Encode::encode(&bincode::serde::Compat(value), &mut encoder) {
            Ok(()) => Ok(Some(encoder.into_writer().bytes_written())),
            Err(bincode::error::EncodeError::UnexpectedEnd) => Ok(None),
            Err(e) => Err(encode_error(e)),
        }
    }

    fn encoded_len<T: Serialize + ?Sized>(&self, value: &T) -> Result<usize, PayloadError> {
        let mut size = bincode::enc::write::SizeWriter::default();
        bincode::serde::encode_into_writer(value, &mut size, CONFIG).map_err(encode_error)?;
        Ok(size.bytes_written)
    }

    fn encode_to_vec<T: Serialize + ?Sized>(
        &self,
        value: &T,
        len: usize,
    ) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::with_capacity(len);
        bincode::serde::encode_into_std_write(value, &mut out, CONFIG).map_err(encode_error)?;
        if out.len() != len {
            return Err(PayloadError::Unencodable(format!(
                "the value measured {len} bytes but encoded to {}",
                out.len()
            )));
        }
        Ok(out)
    }

    /// Decodes with no limit on the decoded value's memory beyond what the payload's length implies; servers
    /// and clients of `rpc-core` use [`PayloadCodec::decode_within`] with their configured limit.
    #[inline]
    fn decode<'de, T: Deserialize<'de>>(&self, payload: &'de [u8]) -> Result<T, PayloadError> {
        self.decode_within(payload, usize::MAX)
    }

    #[inline]
    fn decode_within<'de, T: Deserialize<'de>>(
        &self,
        payload: &'de [u8],
        max_decoded_len: usize,
    ) -> Result<T, PayloadError> {
        let account = guard::Account::new(payload.len(), max_decoded_len);
        let seed = guard::Seed::<T>::new(&account);
        match bincode::serde::seed_decode_from_slice(seed, payload, CONFIG) {
            Ok((value, read)) if read == payload.len() => Ok(value),
            Ok((_, read)) => Err(PayloadError::TrailingBytes {
                extra: payload.len() - read,
            }),
            Err(_) if account.exceeded() => Err(PayloadError::DecodedTooLarge {
                limit: max_decoded_len,
            }),
            Err(_) if account.too_deep() => Err(PayloadError::TooDeep {
                limit: guard::MAX_DEPTH,
            }),
            Err(e) => Err(decode_error(e)),
        }
    }
}

#[cold]
fn encode_error(e: bincode::error::EncodeError) -> PayloadError {
    match e {
        bincode::error::EncodeError::Serde(bincode::serde::EncodeError::SequenceMustHaveLength) => {
            PayloadError::Unencodable(
                "bincode needs a sequence's length up front; serialize a collection, not an iterator".to_owned(),
            )
        }
        other => PayloadError::Unencodable(other.to_string()),
    }
}

/// Rewrites bincode's errors (whose `Display` is their `Debug`) as sentences.
#[cold]
fn decode_error(e: bincode::error::DecodeError) -> PayloadError {
    use bincode::error::DecodeError as E;
    let text = match e {
        E::UnexpectedEnd { additional } => {
            return PayloadError::UnexpectedEnd { needed: additional };
        }
        E::InvalidIntegerType { expected, found } => {
            format!(
                "expected an integer of type {expected:?}, found the varint marker of {found:?}"
            )
        }
        E::NonZeroTypeIsZero { non_zero_type } => {
            format!("expected a non-zero {non_zero_type:?}, found 0")
        }
        E::UnexpectedVariant {
            type_name,
            allowed,
            found,
        } => format!("expected a variant index of {type_name} in {allowed:?}, found {found}"),
        E::Utf8 { inner } => format!("expected a UTF-8 string: {inner}"),
        E::InvalidCharEncoding(b) => format!("expected a UTF-8 encoded char, found bytes {b:02x?}"),
        E::InvalidBooleanValue(b) => format!("expected a bool (0 or 1), found {b}"),
        E::ArrayLengthMismatch { required, found } => {
            format!("expected an array of {required} elements, found {found}")
        }
        E::OutsideUsizeRange(n) => format!("expected a length that fits in usize, found {n}"),
        E::OtherString(s) => s,
        E::Other(s) => s.to_owned(),
        E::Serde(bincode::serde::DecodeError::AnyNotSupported) => {
            "the type asks for a self-describing format (deserialize_any), which bincode is not; \
             untagged or internally tagged enums and flattened structs cannot be used"
                .to_owned()
        }
        other => format!("{other:?}"),
    };
    PayloadError::Invalid(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Owned {
        name: String,
        #[serde(with = "serde_bytes")]
        blob: Vec<u8>,
        list: Vec<u64>,
        map: BTreeMap<String, i32>,
        opt: Option<Box<Owned>>,
    }

    fn sample() -> Owned {
        Owned {
            name: "outer".into(),
            blob: vec![1, 2, 3],
            list: vec![0, 300, u64::MAX],
            map: [("a".to_owned(), -1), ("b".to_owned(), 70_000)].into(),
            opt: Some(Box::new(Owned {
                name: "inner".into(),
                blob: vec![],
                list: vec![],
                map: BTreeMap::new(),
                opt: None,
            })),
        }
    }

    #[test]
    fn matches_bincode_byte_for_byte_and_round_trips() {
        let v = sample();
        let ours = Bincode.to_vec(&v).unwrap();
        let theirs = bincode::serde::encode_to_vec(&v, CONFIG).unwrap();
        assert_eq!(ours, theirs);
        let back: Owned = Bincode.decode(&ours).unwrap();
        assert_eq!(back, v);
    }

    #[test]
    fn borrowed_fields_point_into_the_payload() {
        let bytes = Bincode
            .to_vec(&("hello", serde_bytes::Bytes::new(b"xyz")))
            .unwrap();
        let (s, b): (&str, &serde_bytes::Bytes) = Bincode.decode(&bytes).unwrap();
        assert_eq!(s, "hello");
        let range = bytes.as_ptr_range();
        assert!(range.contains(&s.as_ptr()) && range.contains(&b.as_ptr()));
    }

    #[test]
    fn a_forged_string_length_is_refused_without_allocating_it() {
        // Varint 253 = u64 follows: a string claiming 2^62 bytes, then 3 bytes of data.
        let mut p = vec![253];
        p.extend_from_slice(&(1u64 << 62).to_le_bytes());
        p.extend_from_slice(b"abc");
        let err = Bincode.decode::<String>(&p).unwrap_err();
        assert!(matches!(err, PayloadError::UnexpectedEnd { .. }), "{err}");
        let err = Bincode.decode::<serde_bytes::ByteBuf>(&p).unwrap_err();
        assert!(matches!(err, PayloadError::UnexpectedEnd { .. }), "{err}");
    }

    #[test]
    fn a_forged_sequence_length_is_refused_with_the_numbers() {
        let mut p = vec![253];
        p.extend_from_slice(&u64::MAX.to_le_bytes());
        let err = Bincode.decode::<Vec<u32>>(&p).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload does not decode: sequence declares 18446744073709551615 elements \
             but the payload holds only 9 bytes"
        );
        // Zero-sized elements would otherwise loop 2^64 times without reading a byte.
        assert!(Bincode.decode::<Vec<()>>(&p).is_err());
        let err = Bincode.decode::<BTreeMap<u8, u8>>(&p).unwrap_err();
        assert!(err.to_string().contains("map declares"), "{err}");
    }

    #[test]
    fn trailing_bytes_are_refused() {
        let err = Bincode.decode::<u8>(&[1, 2, 3]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload has 2 bytes after the end of the value (wrong type, or a newer peer?)"
        );
    }

    #[test]
    fn bad_bytes_say_what_was_expected() {
        let err = Bincode.decode::<bool>(&[7]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "payload does not decode: expected a bool (0 or 1), found 7"
        );
        let err = Bincode.decode::<Option<u8>>(&[9, 0]).unwrap_err();
        assert!(err.to_string().contains("found 9"), "{err}");
        let err = Bincode.decode::<u32>(&[]).unwrap_err();
        assert_eq!(err.to_string(), "payload ended early: 1 more bytes needed");
    }

    #[test]
    fn encoding_into_a_slice_says_when_it_does_not_fit() {
        let mut out = [0u8; 8];
        assert_eq!(Bincode.encode_into(&"abc", &mut out).unwrap(), Some(4));
        assert_eq!(&out[..4], b"\x03abc");
        assert_eq!(Bincode.encode_into(&"too long", &mut out).unwrap(), None);
        assert_eq!(Bincode.encoded_len(&"too long").unwrap(), 9);
    }

    #[test]
    fn iterators_without_a_length_are_refused_clearly() {
        struct Unsized;
        impl Serialize for Unsized {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use serde::ser::SerializeSeq;
                s.serialize_seq(None)?.end()
            }
        }
        let err = Bincode.to_vec(&Unsized).unwrap_err();
        assert!(err.to_string().contains("length up front"), "{err}");
    }

    #[test]
    fn empty_vectors_are_charged_their_size_not_their_bytes() {
        // 10,000 empty vectors: 10,002 bytes on the wire, 240,000 bytes of vector headers in memory.
        let value: Vec<Vec<u8>> = vec![Vec::new(); 10_000];
        let bytes = Bincode.to_vec(&value).unwrap();
        assert!(bytes.len() < 10_010);
        let need = 10_000 * core::mem::size_of::<Vec<u8>>();
        let err = Bincode
            .decode_within::<Vec<Vec<u8>>>(&bytes, need - 1)
            .unwrap_err();
        assert!(
            matches!(err, PayloadError::DecodedTooLarge { limit } if limit == need - 1),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            format!(
                "the decoded value would take more than {} bytes of memory, the limit",
                need - 1
            )
        );
        let back: Vec<Vec<u8>> = Bincode.decode_within(&bytes, need).unwrap();
        assert_eq!(back.len(), 10_000);
    }

    #[test]
    fn a_small_variant_costs_the_size_of_the_largest() {
        // The size difference between variants is the point of the test.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Serialize, Deserialize)]
        enum Shape {
            Dot,
            #[allow(dead_code)]
            Bitmap(#[serde(with = "serde_bytes")] [u8; 4096]),
        }
        // 1,000 one-byte tags would take 4 MB as a vector of `Shape`.
        let dots: Vec<Shape> = (0..1000).map(|_| Shape::Dot).collect();
        let bytes = Bincode.to_vec(&dots).unwrap();
        assert!(bytes.len() < 1010);
        let err = Bincode
            .decode_within::<Vec<Shape>>(&bytes, 1 << 20)
            .unwrap_err();
        assert!(matches!(err, PayloadError::DecodedTooLarge { .. }), "{err}");
        assert_eq!(
            Bincode
                .decode_within::<Vec<Shape>>(&bytes, 8 << 20)
                .map(|v| v.len())
                .ok(),
            Some(1000)
        );
    }

    #[test]
    fn owned_strings_count_their_length_and_borrowed_ones_nothing() {
        let words = vec!["x".repeat(1000); 10];
        let bytes = Bincode.to_vec(&words).unwrap();
        let headers = 10 * core::mem::size_of::<String>();
        assert!(matches!(
            Bincode.decode_within::<Vec<String>>(&bytes, headers + 9_999),
            Err(PayloadError::DecodedTooLarge { .. })
        ));
        assert!(
            Bincode
                .decode_within::<Vec<String>>(&bytes, headers + 10_000)
                .is_ok()
        );
        // Borrowed strings point into the payload: only the vector of references is charged.
        let refs = 10 * core::mem::size_of::<&str>();
        assert!(Bincode.decode_within::<Vec<&str>>(&bytes, refs).is_ok());
        // The fields of a struct or tuple live inline in their parent and cost nothing more.
        let pair = Bincode.to_vec(&(7u64, 9u64)).unwrap();
        assert_eq!(
            Bincode.decode_within::<(u64, u64)>(&pair, 0).unwrap(),
            (7, 9)
        );
    }

    /// A vector of boxed values whose small variant encodes in one byte but whose type is 4 KiB.
    #[allow(clippy::large_enum_variant)]
    #[derive(Debug, Serialize, Deserialize)]
    enum Page {
        Blank,
        #[allow(dead_code)]
        Full(#[serde(with = "serde_bytes")] [u8; 4096]),
    }

    #[test]
    fn a_boxed_value_costs_its_size_though_its_box_is_a_pointer() {
        // 1,000 one-byte boxed pages: 8 KB of boxes as far as the vector shows, 4 MB behind them.
        let pages: Vec<Box<Page>> = (0..1000).map(|_| Box::new(Page::Blank)).collect();
        let bytes = Bincode.to_vec(&pages).unwrap();
        assert!(bytes.len() < 1010);
        let boxes = 1000 * core::mem::size_of::<Box<Page>>();
        let behind = 1000 * core::mem::size_of::<Page>();
        let err = Bincode
            .decode_within::<Vec<Box<Page>>>(&bytes, boxes + behind - 1)
            .unwrap_err();
        assert!(matches!(err, PayloadError::DecodedTooLarge { .. }), "{err}");
        let back = Bincode.decode_within::<Vec<Box<Page>>>(&bytes, boxes + behind);
        assert_eq!(back.map(|v| v.len()).ok(), Some(1000));
        // Unboxed, the same pages cost the same: each element is charged its size once.
        let unboxed = Bincode.decode_within::<Vec<Page>>(&bytes, behind);
        assert_eq!(unboxed.map(|v| v.len()).ok(), Some(1000));
    }

    /// A recursive list, as a hostile payload would nest it.
    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Link {
        pad: [u64; 16],
        next: Option<Box<Link>>,
    }

    fn chain(levels: usize) -> Vec<u8> {
        // Each link encodes as its 16 pad integers (zeros: a byte each), then 1 for Some or 0 for None.
        let mut bytes = Vec::new();
        for i in 0..levels {
            bytes.extend_from_slice(&[0; 16]);
            bytes.push(u8::from(i + 1 < levels));
        }
        bytes
    }

    #[test]
    fn a_value_nested_past_the_limit_is_refused_before_the_stack_runs_out() {
        // Each link is two levels (the struct, and the option holding the next one).
        let within = chain(crate::MAX_DEPTH / 2);
        let too_deep = chain(100_000);
        // On a stack the size of a tokio worker's, in this build's frame sizes (debug ones are the largest).
        let run = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let ok = Bincode
                    .decode_within::<Link>(&within, usize::MAX)
                    .map(|_| ());
                let refused = Bincode
                    .decode_within::<Link>(&too_deep, usize::MAX)
                    .map(|_| ());
                (ok, refused)
            })
            .unwrap()
            .join()
            .expect("no stack overflow");
        assert!(run.0.is_ok(), "{:?}", run.0);
        let err = run.1.unwrap_err();
        assert!(
            matches!(
                err,
                PayloadError::TooDeep {
                    limit: crate::MAX_DEPTH
                }
            ),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "the value is nested more than 128 levels deep, the limit"
        );
        let one_more = Bincode.decode_within::<Link>(&chain(crate::MAX_DEPTH / 2 + 1), usize::MAX);
        assert!(
            matches!(one_more, Err(PayloadError::TooDeep { .. })),
            "{one_more:?}"
        );
    }
}
