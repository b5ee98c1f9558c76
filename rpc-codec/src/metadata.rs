//! Call metadata (trace id, auth token, ...): key-value entries kept in their wire form, so a received section
//! is a zero-copy slice of the read buffer ([`Metadata`] owns one, [`MetadataRef`] borrows one) and a built
//! one is copied into a frame with one `memcpy`.
//!
//! Wire form of one entry: `key_len: u8`, `key` (1-255 bytes of printable ASCII `0x21..=0x7e`),
//! `value_len: u16` little-endian, `value` (0-65535 arbitrary bytes). Entries follow each other with no
//! padding; the header's `metadata_len` gives the section's length.

use core::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::MetadataError;

/// Largest metadata section the header can describe (`metadata_len` is a `u16`).
pub const MAX_METADATA_LEN: usize = u16::MAX as usize;

/// Key-value metadata of a frame, in wire form. Keys may repeat; [`Metadata::get`] returns the first.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// The wire form; `None` when there are no entries, so that empty metadata costs nothing to drop.
    raw: Option<Bytes>,
    count: u16,
}

impl Metadata {
    /// Empty metadata; allocates nothing.
    pub const fn new() -> Metadata {
        Metadata {
            raw: None,
            count: 0,
        }
    }

    /// A builder for metadata.
    ///
    /// ```
    /// let mut b = rpc_codec::Metadata::builder();
    /// b.insert("trace-id", "4bf92f3577b34da6")?;
    /// b.insert("auth", [0xde, 0xad])?;
    /// let md = b.build();
    /// assert_eq!(md.get_str("trace-id"), Some("4bf92f3577b34da6"));
    /// assert_eq!(md.get("auth"), Some(&[0xde, 0xad][..]));
    /// assert_eq!(md.len(), 2);
    /// # Ok::<(), rpc_codec::MetadataError>(())
    /// ```
    pub fn builder() -> MetadataBuilder {
        MetadataBuilder::default()
    }

    /// Metadata from `(key, value)` pairs.
    pub fn from_pairs<K, V, I>(pairs: I) -> Result<Metadata, MetadataError>
    where
        K: AsRef<str>,
        V: AsRef<[u8]>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut b = MetadataBuilder::default();
        for (k, v) in pairs {
            b.insert(k.as_ref(), v)?;
        }
        Ok(b.build())
    }

    /// Parses and checks a received section: structure, key characters, and at most `max_entries` entries.
    pub fn from_wire(raw: Bytes, max_entries: u16) -> Result<Metadata, MetadataError> {
        let count = validate(&raw, max_entries)?;
        Ok(Metadata::from_checked(raw, count))
    }

    /// A section that [`validate`] has checked and counted.
    pub(crate) fn from_checked(raw: Bytes, count: u16) -> Metadata {
        Metadata {
            raw: (!raw.is_empty()).then_some(raw),
            count,
        }
    }

    /// The borrowed view of these entries.
    pub fn view(&self) -> MetadataRef<'_> {
        MetadataRef {
            raw: self.as_bytes(),
            count: self.count,
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The section as it goes on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        self.raw.as_deref().unwrap_or_default()
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.view().get(key)
    }

    /// The value of the first entry named `key`, if it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.view().get_str(key)
    }

    /// The entries in order.
    pub fn iter(&self) -> Iter<'_> {
        self.view().iter()
    }
}

/// Checks a metadata section and counts its entries.
pub(crate) fn validate(raw: &[u8], max_entries: u16) -> Result<u16, MetadataError> {
    if raw.len() > MAX_METADATA_LEN {
        return Err(MetadataError::SectionTooLong { len: raw.len() });
    }
    let mut count: u16 = 0;
    let mut rest = raw;
    while !rest.is_empty() {
        let offset = raw.len() - rest.len();
        let (_, _, tail) = split_entry(rest, offset)?;
        if count == max_entries {
            return Err(MetadataError::TooManyEntries { limit: max_entries });
        }
        count += 1;
        rest = tail;
    }
    Ok(count)
}

/// Metadata borrowed from a frame that is still in the read buffer (see [`crate::FrameCodec::decode_with`]).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MetadataRef<'a> {
    raw: &'a [u8],
    count: u16,
}

impl<'a> MetadataRef<'a> {
    /// A checked section with `count` entries.
    pub(crate) fn new(raw: &'a [u8], count: u16) -> MetadataRef<'a> {
        MetadataRef { raw, count }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        usize::from(self.count)
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The section as it is on the wire.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// The value of the first entry named `key`.
    pub fn get(&self, key: &str) -> Option<&'a [u8]> {
        self.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The value of the first entry named `key`, if it is UTF-8.
    pub fn get_str(&self, key: &str) -> Option<&'a str> {
        self.get(key).and_then(|v| core::str::from_utf8(v).ok())
    }

    /// The entries in order.
    pub fn iter(&self) -> Iter<'a> {
        Iter { rest: self.raw }
    }

    /// An owned copy.
    #[inline]
    pub fn to_metadata(&self) -> Metadata {
        // Most calls carry none: no copy, no call.
        if self.raw.is_empty() {
            return Metadata::new();
        }
        Metadata::from_checked(Bytes::copy_from_slice(self.raw), self.count)
    }
}

impl fmt::Debug for MetadataRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.iter().map(|(k, v)| (k, String::from_utf8_lossy(v))))
            .finish()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.view().fmt(f)
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a str, &'a [u8]);
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// Iterator over the entries of a [`Metadata`].
#[derive(Clone, Debug)]
pub struct Iter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        // A `Metadata` is checked when it is built or received, so every entry here is whole.
        let (key, value, tail) = split_entry(self.rest, 0).ok()?;
        self.rest = tail;
        Some((key, value))
    }
}

/// Splits the first entry off `buf`; `offset` is where `buf` starts in the section, for error messages.
fn split_entry(buf: &[u8], offset: usize) -> Result<(&str, &[u8], &[u8]), MetadataError> {
    let truncated = |need: usize| MetadataError::Truncated {
        offset,
        need,
        have: buf.len(),
    };
    let (&key_len, rest) = buf.split_first().ok_or_else(|| truncated(1))?;
    let key_len = usize::from(key_len);
    if key_len == 0 {
        return Err(MetadataError::EmptyKey { offset });
    }
    let need = 1 + key_len + 2;
    if buf.len() < need {
        return Err(truncated(need));
    }
    let (key, rest) = rest.split_at(key_len);
    let (len_bytes, rest) = rest.split_at(2);
    let value_len = usize::from(u16::from_le_bytes([len_bytes[0], len_bytes[1]]));
    if rest.len() < value_len {
        return Err(truncated(need + value_len));
    }
    let key = check_key(key, offset + 1)?;
    let (value, rest) = rest.split_at(value_len);
    Ok((key, value, rest))
}

fn check_key(key: &[u8], offset: usize) -> Result<&str, MetadataError> {
    if let Some(pos) = key.iter().position(|b| !(0x21..=0x7e).contains(b)) {
        return Err(MetadataError::BadKeyByte {
            offset: offset + pos,
            byte: key[pos],
        });
    }
    // Printable ASCII is UTF-8; this cannot fail after the check above.
    core::str::from_utf8(key).map_err(|_| MetadataError::BadKeyByte {
        offset,
        byte: key[0],
    })
}

/// Builds a [`Metadata`] entry by entry, checking each key and the section's size.
#[derive(Debug, Default)]
pub struct MetadataBuilder {
    buf: BytesMut,
    count: u16,
}

impl MetadataBuilder {
    /// Appends an entry. The key must be 1-255 bytes of printable ASCII (`0x21..=0x7e`), the value at most
    /// 65535 bytes, and the whole section at most 65535 bytes.
    pub fn insert(
        &mut self,
        key: &str,
        value: impl AsRef<[u8]>,
    ) -> Result<&mut Self, MetadataError> {
        let value = value.as_ref();
        if key.is_empty() {
            return Err(MetadataError::EmptyKey {
                offset: self.buf.len(),
            });
        }
        if key.len() > usize::from(u8::MAX) {
            return Err(MetadataError::KeyTooLong { len: key.len() });
        }
        check_key(key.as_bytes(), self.buf.len() + 1)?;
        if value.len() > usize::from(u16::MAX) {
            return Err(MetadataError::ValueTooLong { len: value.len() });
        }
        let len = self.buf.len() + 3 + key.len() + value.len();
        if len > MAX_METADATA_LEN {
            return Err(MetadataError::SectionTooLong { len });
        }
        self.buf.reserve(3 + key.len() + value.len());
        self.buf.put_u8(key.len() as u8);
        self.buf.put_slice(key.as_bytes());
        self.buf.put_u16_le(value.len() as u16);
        self.buf.put_slice(value);
        self.count += 1;
        Ok(self)
    }

    /// The finished metadata.
    pub fn build(&mut self) -> Metadata {
        let count = core::mem::take(&mut self.count);
        Metadata::from_checked(self.buf.split().freeze(), count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_reads_back_entries_in_order() {
        let md = Metadata::from_pairs([("a", &b"1"[..]), ("b", b""), ("a", b"3")]).unwrap();
        let entries: Vec<_> = md.iter().collect();
        assert_eq!(
            entries,
            [("a", &b"1"[..]), ("b", &b""[..]), ("a", &b"3"[..])]
        );
        assert_eq!(md.get("a"), Some(&b"1"[..]));
        assert_eq!(md.get("zz"), None);
        assert_eq!(md.as_bytes(), b"\x01a\x01\x001\x01b\x00\x00\x01a\x01\x003");
    }

    #[test]
    fn wire_form_is_parsed_with_the_same_result() {
        let md = Metadata::from_pairs([("trace-id", "abc"), ("k", "")]).unwrap();
        let back = Metadata::from_wire(Bytes::copy_from_slice(md.as_bytes()), 64).unwrap();
        assert_eq!(back, md);
    }

    #[test]
    fn bad_keys_are_refused_by_the_builder() {
        let mut b = Metadata::builder();
        assert!(matches!(
            b.insert("", "x"),
            Err(MetadataError::EmptyKey { .. })
        ));
        assert!(matches!(
            b.insert("has space", "x"),
            Err(MetadataError::BadKeyByte { byte: b' ', .. })
        ));
        let long = "k".repeat(256);
        assert!(matches!(
            b.insert(&long, "x"),
            Err(MetadataError::KeyTooLong { len: 256 })
        ));
        let big = vec![0u8; 65536];
        assert!(matches!(
            b.insert("k", &big),
            Err(MetadataError::ValueTooLong { len: 65536 })
        ));
    }

    #[test]
    fn the_section_may_not_outgrow_its_u16_length() {
        let mut b = Metadata::builder();
        let v = vec![7u8; 60_000];
        b.insert("a", &v).unwrap();
        let err = b.insert("b", &v).unwrap_err();
        assert!(matches!(err, MetadataError::SectionTooLong { len } if len > 65535));
    }

    #[test]
    fn truncated_and_malformed_sections_are_refused() {
        let cases: [(&[u8], &str); 5] = [
            (b"\x05abc", "truncated"),
            (b"\x01a\x05\x00ab", "truncated"),
            (b"\x00\x00\x00", "is empty"),
            (b"\x01\n\x00\x00", "0x0a"),
            (b"\x01a\x00", "truncated"),
        ];
        for (raw, want) in cases {
            let err = Metadata::from_wire(Bytes::from_static(raw), 64).unwrap_err();
            assert!(err.to_string().contains(want), "{raw:?}: {err}");
        }
    }

    #[test]
    fn too_many_entries_are_refused() {
        let md = Metadata::from_pairs((0..5).map(|i| (format!("k{i}"), ""))).unwrap();
        let raw = Bytes::copy_from_slice(md.as_bytes());
        assert!(Metadata::from_wire(raw.clone(), 5).is_ok());
        let err = Metadata::from_wire(raw, 4).unwrap_err();
        assert_eq!(err.to_string(), "metadata has more than 4 entries");
    }
}
