//! Calls in JSON on a server (protocol 1.2, flag `JSON`; feature `json`): which calls may come in JSON, and how
//! their arguments, an object keyed by argument name, are decoded. The answer goes back in JSON too (the
//! `answer` module's `Coded`); everything else about the call is the same as for bincode.

use rpc_codec::PayloadError;
use serde::de::DeserializeOwned;

use super::registry::Entry;

/// Why a JSON call of `entry`'s method is refused (`Unimplemented`), if it is: a server built without the
/// feature `json`, or a streaming method, whose items travel in bincode only.
pub(crate) fn refusal(entry: &Entry) -> Option<String> {
    if !cfg!(feature = "json") {
        return Some(String::from(
            "this server takes no calls in JSON: it was built without rpc-core's feature `json`",
        ));
    }
    entry.stream.map(|_| {
        format!(
            "{} streams, and streams take no calls in JSON: call it in bincode",
            entry.method
        )
    })
}

/// The arguments of a JSON call, `payload`: an object keyed by `names`, decoded as the tuple `A` of their types,
/// within `max_decoded_len` bytes of memory. An argument left out is `null`; if that does not decode, the error
/// names what was left out.
#[cfg(feature = "json")]
pub(crate) fn decode_named<A: DeserializeOwned>(
    payload: &[u8],
    names: &[&str],
    max_decoded_len: usize,
) -> Result<A, PayloadError> {
    use rpc_codec::PayloadCodec;
    let (array, missing) = rpc_codec::json_call::named_args(payload, names)?;
    rpc_codec::JsonCall
        .decode_within(&array, max_decoded_len)
        .map_err(|e| match (e, missing.is_empty()) {
            (PayloadError::Invalid(why), false) => {
                PayloadError::Invalid(format!("{why}; arguments missing: {}", missing.join(", ")))
            }
            (e, _) => e,
        })
}

/// Without the feature `json`, no JSON call reaches a service.
#[cfg(not(feature = "json"))]
pub(crate) fn decode_named<A: DeserializeOwned>(
    _: &[u8],
    _: &[&str],
    _: usize,
) -> Result<A, PayloadError> {
    Err(PayloadError::Invalid(String::from(
        "this server takes no calls in JSON",
    )))
}
