//! `CallOptions`: what a caller may set per call (deadline, metadata), carried by a client stub; metadata set
//! twice is merged by key.

use core::time::Duration;

use rpc_codec::Metadata;
use rpc_codec::metadata::MAX_METADATA_LEN;

use crate::error::RpcError;

/// Per-call settings: the deadline and the metadata sent with each call. A stub carries them
/// (`CalcClient::with_deadline`, `with_metadata`); cloning is cheap.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::{CallOptions, Metadata};
///
/// let options = CallOptions::default()
///     .deadline(Duration::from_millis(250))
///     .metadata(Metadata::from_pairs([("tenant", "a"), ("trace-id", "4bf9")])?)
///     .metadata(Metadata::from_pairs([("tenant", "b")])?);
/// assert_eq!(options.deadline_or(Duration::from_secs(10)), Duration::from_millis(250));
/// // Merged by key: the later `tenant` replaces the earlier one, `trace-id` stays.
/// assert_eq!(options.metadata_ref().get_str("tenant"), Some("b"));
/// assert_eq!(options.metadata_ref().get_str("trace-id"), Some("4bf9"));
/// # Ok::<(), rpc_core::MetadataError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallOptions {
    deadline: Option<Duration>,
    metadata: Metadata,
    /// The length of a merged metadata section that did not fit the wire's limit; calls then fail at once.
    oversized: Option<usize>,
    /// The caller's key for its calls, hashed ([`crate::balance::hash_key`]).
    key: Option<u64>,
}

impl CallOptions {
    /// These options with a deadline: the time a call may take, from its start.
    pub fn deadline(mut self, deadline: Duration) -> CallOptions {
        self.deadline = Some(deadline);
        self
    }

    /// These options with `metadata` merged into the metadata they already send: every entry already there
    /// whose key `metadata` also has is dropped, then `metadata`'s entries follow, so the later value of a key
    /// wins and other keys stay. If the merged section would exceed the wire's limit of 65535 bytes, every call
    /// made with these options, or with options made from them, fails with `InvalidArgument` instead of sending
    /// part of it.
    pub fn metadata(mut self, metadata: Metadata) -> CallOptions {
        if self.oversized.is_some() || metadata.is_empty() {
            return self;
        }
        if self.metadata.is_empty() {
            self.metadata = metadata;
            return self;
        }
        let kept = || {
            self.metadata
                .iter()
                .filter(|(key, _)| metadata.get(key).is_none())
        };
        // Each entry takes a byte of key length and two of value length besides its key and value.
        let len =
            metadata.as_bytes().len() + kept().map(|(k, v)| 3 + k.len() + v.len()).sum::<usize>();
        if len > MAX_METADATA_LEN {
            self.oversized = Some(len);
            return self;
        }
        let mut merged = Metadata::builder();
        for (key, value) in kept().chain(metadata.iter()) {
            // Every entry came from a valid section and the total fits, so the insert cannot fail.
            let _ = merged.insert(key, value);
        }
        self.metadata = merged.build();
        self
    }

    /// These options with `key` as the key of each call: a balancing policy that hashes calls to instances
    /// (consistent hashing) sends every call of one key to the same instance, whichever client makes it. Use a
    /// method argument that names what the call is about (a user id, a cache key), in a stable encoding (its
    /// UTF-8 text, or its little-endian bytes). The key is not sent.
    ///
    /// ```
    /// use rpc_core::CallOptions;
    /// let user_id: u64 = 42;
    /// let options = CallOptions::default().hash_key(user_id.to_le_bytes());
    /// assert_eq!(options.key(), Some(rpc_core::balance::hash_key(&42u64.to_le_bytes())));
    /// ```
    pub fn hash_key(mut self, key: impl AsRef<[u8]>) -> CallOptions {
        self.key = Some(crate::balance::hash_key(key.as_ref()));
        self
    }

    /// The key of the calls, hashed, if one was set ([`CallOptions::hash_key`]).
    pub fn key(&self) -> Option<u64> {
        self.key
    }

    /// Whether a deadline is set here.
    pub(crate) fn has_deadline(&self) -> bool {
        self.deadline.is_some()
    }

    /// The deadline set here, or `default` (the client's).
    pub fn deadline_or(&self, default: Duration) -> Duration {
        self.deadline.unwrap_or(default)
    }

    /// The metadata sent with each call.
    pub fn metadata_ref(&self) -> &Metadata {
        &self.metadata
    }

    /// `Err` when these options cannot make a call: their merged metadata exceeds the wire's limit.
    pub fn check(&self) -> Result<(), RpcError> {
        match self.oversized {
            None => Ok(()),
            Some(len) => Err(oversized(len)),
        }
    }
}

#[cold]
fn oversized(len: usize) -> RpcError {
    RpcError::new(
        rpc_codec::Status::InvalidArgument,
        format!(
            "the call's merged metadata is {len} bytes, over the wire's limit of {MAX_METADATA_LEN} bytes"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        Metadata::from_pairs(pairs.iter().copied()).unwrap()
    }

    fn entries(options: &CallOptions) -> Vec<(String, String)> {
        options
            .metadata_ref()
            .iter()
            .map(|(k, v)| (k.to_owned(), String::from_utf8(v.to_vec()).unwrap()))
            .collect()
    }

    #[test]
    fn metadata_set_twice_is_merged_by_key_the_later_value_winning() {
        let options = CallOptions::default()
            .metadata(md(&[("auth", "token-a"), ("tenant", "a")]))
            .metadata(md(&[("tenant", "b"), ("trace-id", "t")]));
        assert_eq!(
            entries(&options),
            [
                ("auth".to_owned(), "token-a".to_owned()),
                ("tenant".to_owned(), "b".to_owned()),
                ("trace-id".to_owned(), "t".to_owned()),
            ]
        );
        assert!(options.check().is_ok());
    }

    #[test]
    fn a_repeated_key_replaces_every_earlier_entry_of_that_key() {
        let options = CallOptions::default()
            .metadata(md(&[("k", "1"), ("k", "2"), ("other", "x")]))
            .metadata(md(&[("k", "3"), ("k", "4")]));
        assert_eq!(
            entries(&options),
            [
                ("other".to_owned(), "x".to_owned()),
                ("k".to_owned(), "3".to_owned()),
                ("k".to_owned(), "4".to_owned()),
            ]
        );
    }

    #[test]
    fn empty_metadata_changes_nothing() {
        let once = CallOptions::default().metadata(md(&[("a", "1")]));
        assert_eq!(once.clone().metadata(Metadata::new()), once);
    }

    #[test]
    fn a_merge_over_the_wire_limit_fails_every_call_with_the_sizes() {
        let big = "x".repeat(40_000);
        let options = CallOptions::default()
            .metadata(md(&[("a", &big)]))
            .metadata(md(&[("b", &big)]));
        let err = options.check().unwrap_err();
        assert_eq!(err.code(), rpc_codec::Status::InvalidArgument);
        assert_eq!(
            err.message(),
            "the call's merged metadata is 80008 bytes, over the wire's limit of 65535 bytes"
        );
        // What was dropped is unknown from then on: options made from these stay refused.
        assert!(options.metadata(md(&[("a", "small")])).check().is_err());
    }
}
