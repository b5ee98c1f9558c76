//! [`Json`], a second payload codec (feature `json`): values as JSON text through serde_json. A service
//! declares it with `#[service(codec = rpc_core::codec::Json)]`; both peers must, since the payload format
//! is part of the service, not of the frame. It is slower and larger than [`crate::Bincode`], and readable by
//! any tool: the codec that the HTTP/JSON gateway work builds on.
//!
//! Limits: a value that does not fit in the frame is refused ([`PayloadError::TooLarge`]); decoding goes through
//! the same guard as bincode's (the `guard` module), so the decoded value's memory is bounded by the configured
//! `max_decoded_len` ([`PayloadError::DecodedTooLarge`]: `[0,0,0,...]` into a `Vec<u64>` takes four times
//! its text) and its nesting by [`crate::MAX_DEPTH`] ([`PayloadError::TooDeep`]).

use std::io::Write;

use serde::de::DeserializeSeed;
use serde::{Deserialize, Serialize};

use crate::error::PayloadError;
use crate::guard;
use crate::payload::PayloadCodec;

/// JSON through serde_json.
///
/// ```
/// use rpc_codec::{Json, PayloadCodec};
/// let mut out = [0u8; 32];
/// let n = Json.encode_into(&(7u32, "hi"), &mut out)?.unwrap();
/// assert_eq!(&out[..n], br#"[7,"hi"]"#);
/// let (a, b): (u32, String) = Json.decode(&out[..n])?;
/// assert_eq!((a, b.as_str()), (7, "hi"));
/// # Ok::<(), rpc_codec::PayloadError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Json;

/// Counts the bytes written to it.
struct Count(usize);

impl Write for Count {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn unencodable(e: serde_json::Error) -> PayloadError {
    PayloadError::Unencodable(e.to_string())
}

impl PayloadCodec for Json {
    fn encode_into<T: Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut [u8],
    ) -> Result<Option<usize>, PayloadError> {
        let mut cursor = std::io::Cursor::new(out);
        match serde_json::to_writer(&mut cursor, value) {
            Ok(()) => Ok(Some(cursor.position() as usize)),
            // The slice is full: the frame encoder measures the value and makes room.
            Err(e) if e.is_io() => Ok(None),
            Err(e) => Err(unencodable(e)),
        }
    }

    fn encoded_len<T: Serialize + ?Sized>(&self, value: &T) -> Result<usize, PayloadError> {
        let mut count = Count(0);
        serde_json::to_writer(&mut count, value).map_err(unencodable)?;
        Ok(count.0)
    }

    fn encode_to_vec<T: Serialize + ?Sized>(
        &self,
        value: &T,
        len: usize,
    ) -> Result<Vec<u8>, PayloadError> {
        let mut out = Vec::with_capacity(len);
        serde_json::to_writer(&mut out, value).map_err(unencodable)?;
        Ok(out)
    }

    /// Decodes with no limit on the decoded value's memory beyond the guard's default; servers and clients of
    /// `rpc-core` use [`PayloadCodec::decode_within`] with their configured limit.
    fn decode<'de, T: Deserialize<'de>>(&self, payload: &'de [u8]) -> Result<T, PayloadError> {
        self.decode_within(payload, usize::MAX)
    }

    fn decode_within<'de, T: Deserialize<'de>>(
        &self,
        payload: &'de [u8],
        max_decoded_len: usize,
    ) -> Result<T, PayloadError> {
        let account = guard::Account::new(payload.len(), max_decoded_len);
        let mut json = serde_json::Deserializer::from_slice(payload);
        let decoded = guard::Seed::<T>::new(&account)
            .deserialize(&mut json)
            .and_then(|value| json.end().map(|()| value));
        decoded.map_err(|e| {
            if account.exceeded() {
                PayloadError::DecodedTooLarge {
                    limit: max_decoded_len,
                }
            } else if account.too_deep() || e.to_string().starts_with("recursion limit exceeded") {
                // serde_json counts its own nesting to 128 too, and may stop first.
                PayloadError::TooDeep {
                    limit: guard::MAX_DEPTH,
                }
            } else if e.is_eof() {
                PayloadError::UnexpectedEnd { needed: 1 }
            } else {
                PayloadError::Invalid(e.to_string())
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameCodec, Header, Metadata, WriteBuf};

    #[test]
    fn a_value_too_large_for_the_room_is_measured_and_encoded_after_growing() {
        let codec = FrameCodec::default();
        let mut out = WriteBuf::with_capacity(40);
        let value = vec!["a long enough string"; 10];
        codec
            .encode_value(
                &Header::response(1),
                &Metadata::new(),
                &value,
                &Json,
                &mut out,
            )
            .unwrap();
        let payload = &out.as_slice()[crate::HEADER_LEN..];
        assert_eq!(payload, serde_json::to_vec(&value).unwrap().as_slice());
        let back: Vec<String> = Json.decode(payload).unwrap();
        assert_eq!(back.len(), 10);
    }

    #[test]
    fn the_decoded_values_memory_and_nesting_are_bounded_as_bincodes_are() {
        // 2 bytes of text per element, 8 bytes of memory: over a limit of twice the text.
        let text = format!("[{}0]", "0,".repeat(999));
        assert_eq!(
            Json.decode_within::<Vec<u64>>(text.as_bytes(), 8_000)
                .map(|v| v.len())
                .ok(),
            Some(1000)
        );
        assert!(matches!(
            Json.decode_within::<Vec<u64>>(text.as_bytes(), 2 * text.len()),
            Err(PayloadError::DecodedTooLarge { .. })
        ));
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(matches!(
            Json.decode::<serde_json::Value>(deep.as_bytes()),
            Err(PayloadError::TooDeep { .. })
        ));
    }

    #[test]
    fn a_self_describing_values_elements_and_strings_are_charged_too() {
        // Each `[]` is 3 bytes of text and a 32-byte `Value`: uncharged, a limit of 0 let 16 KiB through.
        let arrays = format!("[{}[]]", "[],".repeat(399));
        let strings = format!(r#"["{}"]"#, "x".repeat(3000));
        for text in [arrays, strings] {
            assert!(matches!(
                Json.decode_within::<serde_json::Value>(text.as_bytes(), 1024),
                Err(PayloadError::DecodedTooLarge { limit: 1024 })
            ));
            assert!(
                Json.decode_within::<serde_json::Value>(text.as_bytes(), 64 << 10)
                    .is_ok()
            );
        }
    }

    #[test]
    fn floats_decode_to_the_value_they_were_encoded_from() {
        // serde_json's default parsing of floats may be off by one ulp; `float_roundtrip` makes it exact.
        let x = 1.234_567_890_123_456_8e-307_f64;
        let text = serde_json::to_vec(&x).unwrap();
        assert_eq!(Json.decode::<f64>(&text).unwrap().to_bits(), x.to_bits());
    }

    #[test]
    fn bad_and_cut_short_text_are_errors() {
        assert!(matches!(
            Json.decode::<u32>(b"\"x\""),
            Err(PayloadError::Invalid(_))
        ));
        assert!(matches!(
            Json.decode::<Vec<u32>>(b"[1,2"),
            Err(PayloadError::UnexpectedEnd { .. })
        ));
    }
}
