//! Batches of stream items (protocol 1.1): an `Item` frame with [`crate::Flags::BATCH`] holds several items,
//! each its length as a `u32` little-endian, then its bytes (`docs/PROTOCOL.md` section 14). A sender of small
//! items packs them, so that each costs four bytes of framing rather than a frame's 28.

/// Bytes before each item of a batch: its length, a `u32` little-endian.
pub const LEN_PREFIX: usize = 4;

/// A batch whose items do not add up to its payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a batch of items is malformed: the item at offset {offset} declares {declared} bytes, {left} are left"
)]
pub struct BatchError {
    /// Where the item's length starts in the payload.
    pub offset: usize,
    /// The length it declares (0 when not even the length is whole).
    pub declared: usize,
    /// Bytes left after its length.
    pub left: usize,
}

/// Appends one item to the batch in `out`: its length, then the bytes `write` appends. What `write` returns
/// comes back; on an error, `out` is left as it was.
pub fn push<T, E>(
    out: &mut Vec<u8>,
    write: impl FnOnce(&mut Vec<u8>) -> Result<T, E>,
) -> Result<T, E> {
    let at = out.len();
    out.extend_from_slice(&[0; LEN_PREFIX]);
    match write(out) {
        Ok(value) => {
            let len = u32::try_from(out.len() - at - LEN_PREFIX).unwrap_or(u32::MAX);
            out[at..at + LEN_PREFIX].copy_from_slice(&len.to_le_bytes());
            Ok(value)
        }
        Err(e) => {
            out.truncate(at);
            Err(e)
        }
    }
}

/// The item of `payload` at `*at`, moving `*at` past it; `None` after the last.
///
/// ```
/// let mut batch = Vec::new();
/// for item in [&b"ab"[..], b"c"] {
///     rpc_codec::items::push(&mut batch, |out| {
///         out.extend_from_slice(item);
///         Ok::<_, ()>(())
///     })
///     .unwrap();
/// }
/// let mut at = 0;
/// assert_eq!(rpc_codec::items::next(&batch, &mut at), Some(Ok(&b"ab"[..])));
/// assert_eq!(rpc_codec::items::next(&batch, &mut at), Some(Ok(&b"c"[..])));
/// assert_eq!(rpc_codec::items::next(&batch, &mut at), None);
/// ```
pub fn next<'a>(payload: &'a [u8], at: &mut usize) -> Option<Result<&'a [u8], BatchError>> {
    let rest = payload.get(*at..).filter(|rest| !rest.is_empty())?;
    let offset = *at;
    let Some((len, body)) = rest.split_first_chunk::<LEN_PREFIX>() else {
        *at = payload.len();
        return Some(Err(BatchError {
            offset,
            declared: 0,
            left: rest.len(),
        }));
    };
    let declared = u32::from_le_bytes(*len) as usize;
    match body.get(..declared) {
        Some(item) => {
            *at += LEN_PREFIX + declared;
            Some(Ok(item))
        }
        None => {
            *at = payload.len();
            Some(Err(BatchError {
                offset,
                declared,
                left: body.len(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_that_lies_about_its_items_is_refused_once_and_read_no_further() {
        let mut at = 0;
        let short = [5, 0, 0, 0, b'a'];
        assert_eq!(
            next(&short, &mut at),
            Some(Err(BatchError {
                offset: 0,
                declared: 5,
                left: 1
            }))
        );
        assert_eq!(next(&short, &mut at), None);
        let mut at = 0;
        let cut = [1, 0, 0, 0, b'a', 2, 0];
        assert_eq!(next(&cut, &mut at), Some(Ok(&b"a"[..])));
        assert_eq!(
            next(&cut, &mut at).unwrap().unwrap_err().to_string(),
            "a batch of items is malformed: the item at offset 5 declares 0 bytes, 2 are left"
        );
    }

    #[test]
    fn a_failed_write_leaves_the_batch_as_it_was() {
        let mut batch = vec![1, 0, 0, 0, b'a'];
        let failed = push(&mut batch, |out| {
            out.push(9);
            Err::<(), _>("no")
        });
        assert_eq!(failed, Err("no"));
        assert_eq!(batch, [1, 0, 0, 0, b'a']);
    }
}
