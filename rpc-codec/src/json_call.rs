//! A call in JSON (protocol 1.2, flag [`Flags::JSON`]): [`JsonCall`], the payload codec whose frames carry the
//! flag, and [`named_args`], which turns a call's arguments as JSON tools write them (an object keyed by
//! argument name) into what the method's skeleton decodes (the array of their values, in the trait's order).
//!
//! A key that names no argument, a key given twice and anything but an object are refused; an argument left
//! out is `null` (an `Option` argument is then `None`; any other type fails to decode, and the error names the
//! argument). The values themselves are decoded by [`Json`], under the same limits of memory and depth.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::Flags;
use crate::error::PayloadError;
use crate::json::Json;
use crate::payload::PayloadCodec;

/// Most bytes of a key quoted in an error: a peer's text is cut.
const MAX_QUOTED: usize = 64;

/// JSON for one call: [`Json`], and its frames carry [`Flags::JSON`], so that the peer reads the payload as
/// JSON whatever the service's own codec is.
///
/// ```
/// use rpc_codec::{Flags, JsonCall, PayloadCodec};
/// assert_eq!(JsonCall::FLAGS, Flags::JSON);
/// let n: u32 = JsonCall.decode(b"7")?;
/// assert_eq!(n, 7);
/// # Ok::<(), rpc_codec::PayloadError>(())
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JsonCall;

impl PayloadCodec for JsonCall {
    const FLAGS: Flags = Flags::JSON;

    fn encode_into<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        out: &mut [u8],
    ) -> Result<Option<usize>, PayloadError> {
        Json.encode_into(value, out)
    }

    fn encoded_len<T: serde::Serialize + ?Sized>(&self, value: &T) -> Result<usize, PayloadError> {
        Json.encoded_len(value)
    }

    fn encode_to_vec<T: serde::Serialize + ?Sized>(
        &self,
        value: &T,
        len: usize,
    ) -> Result<Vec<u8>, PayloadError> {
        Json.encode_to_vec(value, len)
    }

    fn decode<'de, T: Deserialize<'de>>(&self, payload: &'de [u8]) -> Result<T, PayloadError> {
        Json.decode(payload)
    }

    fn decode_within<'de, T: Deserialize<'de>>(
        &self,
        payload: &'de [u8],
        max_decoded_len: usize,
    ) -> Result<T, PayloadError> {
        Json.decode_within(payload, max_decoded_len)
    }
}

/// The arguments of a JSON call, `payload` (an object keyed by the names in `names`; empty text counts as
/// `{}`), as the JSON array of their values in the order of `names` (`null` for a method of no arguments),
/// with the names of the arguments left out.
///
/// ```
/// let (array, missing) = rpc_codec::json_call::named_args(br#"{"b": 3, "a": 2}"#, &["a", "b"])?;
/// assert_eq!(array, b"[2,3]");
/// assert!(missing.is_empty());
/// let (array, missing) = rpc_codec::json_call::named_args(br#"{"a": 2}"#, &["a", "b"])?;
/// assert_eq!((array.as_slice(), missing), (&b"[2,null]"[..], vec!["b"]));
/// # Ok::<(), rpc_codec::PayloadError>(())
/// ```
pub fn named_args<'n>(
    payload: &[u8],
    names: &[&'n str],
) -> Result<(Vec<u8>, Vec<&'n str>), PayloadError> {
    let payload = trim(payload);
    let mut values: Vec<Option<&RawValue>> = vec![None; names.len()];
    if !payload.is_empty() {
        let mut json = serde_json::Deserializer::from_slice(payload);
        let seen = json
            .deserialize_any(Args {
                names,
                values: &mut values,
            })
            .and_then(|seen| json.end().map(|()| seen));
        match seen {
            Ok(Ok(())) => {}
            Ok(Err(refused)) => return Err(PayloadError::Invalid(refused)),
            Err(e) if e.is_eof() => return Err(PayloadError::UnexpectedEnd { needed: 1 }),
            Err(e) => return Err(PayloadError::Invalid(e.to_string())),
        }
    }
    if names.is_empty() {
        return Ok((b"null".to_vec(), Vec::new()));
    }
    let len: usize = values
        .iter()
        .map(|v| v.map_or(4, |v| v.get().len()) + 1)
        .sum();
    let mut array = Vec::with_capacity(len + 1);
    let mut missing = Vec::new();
    array.push(b'[');
    for (i, (value, name)) in values.iter().zip(names).enumerate() {
        if i > 0 {
            array.push(b',');
        }
        match value {
            Some(value) => array.extend_from_slice(value.get().as_bytes()),
            None => {
                array.extend_from_slice(b"null");
                missing.push(*name);
            }
        }
    }
    array.push(b']');
    Ok((array, missing))
}

/// `bytes` without JSON's white space (space, tab, line feed, carriage return) at either end.
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

/// Reads the object of arguments into `values`; a refusal of what it holds comes back as `Ok(Err(why))`.
struct Args<'a, 'n, 'de> {
    names: &'a [&'n str],
    values: &'a mut Vec<Option<&'de RawValue>>,
}

impl<'de> Visitor<'de> for Args<'_, '_, 'de> {
    type Value = Result<(), String>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "an object of the arguments keyed by name ({})",
            list(self.names)
        )
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // The first refusal is kept, and the rest of the object read (serde_json wants it whole).
        let mut refused = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let at = self.names.iter().position(|n| *n == key);
            let why = match at {
                None => Some(format!(
                    "unknown argument {}: expected {}",
                    quote(&key),
                    match self.names.is_empty() {
                        true => String::from("no arguments"),
                        false => format!("one of {}", list(self.names)),
                    }
                )),
                Some(at) if self.values[at].is_some() => {
                    Some(format!("argument {} given twice", quote(&key)))
                }
                Some(_) => None,
            };
            match (at, why) {
                (Some(at), None) if refused.is_none() => {
                    self.values[at] = Some(map.next_value::<&'de RawValue>()?);
                }
                (_, why) => {
                    refused = refused.or(why);
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
        }
        Ok(refused.map_or(Ok(()), Err))
    }
}

/// `names`, comma-separated.
fn list(names: &[&str]) -> String {
    names.join(", ")
}

/// `text` quoted and escaped, cut to [`MAX_QUOTED`] characters.
fn quote(text: &str) -> String {
    let cut: String = text.chars().take(MAX_QUOTED).collect();
    let more = match cut.len() < text.len() {
        true => "...",
        false => "",
    };
    format!("{:?}{more}", cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_becomes_the_array_of_its_values_in_the_traits_order() {
        let (array, missing) =
            named_args(br#" {"b": [1, 2], "a": {"x": "y"}} "#, &["a", "b"]).unwrap();
        assert_eq!(
            std::str::from_utf8(&array).unwrap(),
            r#"[{"x": "y"},[1, 2]]"#
        );
        assert!(missing.is_empty());
        let (a, b): (serde_json::Value, Vec<u8>) = Json.decode(&array).unwrap();
        assert_eq!((a["x"].as_str(), b), (Some("y"), vec![1, 2]));
    }

    #[test]
    fn no_arguments_is_an_empty_object_or_nothing_at_all() {
        for payload in [&b""[..], b"{}", b"  { }\n", b"\r\t{}"] {
            assert_eq!(named_args(payload, &[]).unwrap().0, b"null");
        }
        // A form feed is white space to Rust, not to JSON.
        assert!(named_args(b"\x0c{}", &[]).is_err());
        let () = Json.decode(&named_args(b"{}", &[]).unwrap().0).unwrap();
    }

    #[test]
    fn unknown_twice_given_and_non_object_arguments_are_refused_by_name() {
        let err = |p: &[u8], names: &[&str]| named_args(p, names).unwrap_err().to_string();
        assert!(
            err(br#"{"c": 1}"#, &["a", "b"])
                .contains(r#"unknown argument "c": expected one of a, b"#)
        );
        assert!(err(br#"{"a": 1, "a": 2}"#, &["a", "b"]).contains(r#"argument "a" given twice"#));
        assert!(
            err(br#"[1, 2]"#, &["a", "b"])
                .contains("expected an object of the arguments keyed by name (a, b)")
        );
        assert!(err(br#"{"x": 1}"#, &[]).contains("expected no arguments"));
        let long = format!(r#"{{"{}\u0007": 1}}"#, "k".repeat(500));
        let message = err(long.as_bytes(), &["a"]);
        assert!(
            message.len() < 200 && message.contains("...") && !message.contains('\u{7}'),
            "{message}"
        );
        assert!(matches!(
            named_args(br#"{"a": 1"#, &["a"]),
            Err(PayloadError::UnexpectedEnd { .. })
        ));
        assert!(matches!(
            named_args(br#"{"a": 1} x"#, &["a"]),
            Err(PayloadError::Invalid(_))
        ));
    }

    #[test]
    fn nesting_past_the_limit_is_refused_when_the_values_decode() {
        // serde_json skips a value without recursion; the array is then decoded under the depth limit.
        let deep = format!(r#"{{"a": {}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        let (array, _) = named_args(deep.as_bytes(), &["a"]).unwrap();
        assert!(matches!(
            Json.decode::<(serde_json::Value,)>(&array),
            Err(PayloadError::TooDeep { .. })
        ));
    }
}
