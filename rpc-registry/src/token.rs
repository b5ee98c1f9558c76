//! The one rule every token meets, wherever it comes from (the registry's `--token` or `RPC_REGISTRY_TOKEN`, a
//! credentials file, a [`RegistryConfig`](crate::RegistryConfig), the token a [`Registration`](crate::Registration),
//! a [`Discovery`](crate::Discovery) or `rpc-registry ls`/`watch` sends, the example programs' flags): from
//! [`MIN_TOKEN_LEN`] to [`MAX_TOKEN_LEN`] bytes, each a visible ASCII character (`!` to `~`), so that an empty
//! or guessable token never opens a registry, a stray space or newline never makes a token that cannot be
//! typed, and every token can travel as call metadata. A refusal says what is wrong without showing the token.

use rpc_core::Metadata;

/// Fewest bytes a token may have: 8.
pub const MIN_TOKEN_LEN: usize = 8;
/// Most bytes a token may have: 4,096, so that it travels (as `authorization: Bearer <token>`) within the
/// metadata a frame may carry (8 KiB by default, [`rpc_core::codec::Config::max_metadata_len`]).
pub const MAX_TOKEN_LEN: usize = 4096;

/// Why a token was refused. Never shows the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// The token is empty.
    #[error("the token is empty; a token needs at least {MIN_TOKEN_LEN} bytes")]
    Empty,
    /// The token is shorter than [`MIN_TOKEN_LEN`].
    #[error("the token is too short: {len} of at least {MIN_TOKEN_LEN} bytes")]
    TooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// The token is longer than [`MAX_TOKEN_LEN`].
    #[error("the token is too long: {len} of at most {MAX_TOKEN_LEN} bytes")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// The token holds a space, a control character or a non-ASCII byte.
    #[error(
        "byte {at} of the token is not a visible ASCII character; a token is made of `!` to `~` only (no \
         space, no newline)"
    )]
    NotVisible {
        /// Where, counting from 1.
        at: usize,
    },
}

/// Checks `token` against the rule: [`MIN_TOKEN_LEN`] to [`MAX_TOKEN_LEN`] bytes, each `!` to `~`.
///
/// ```
/// use rpc_registry::{TokenError, check_token};
/// assert_eq!(check_token("s3cret-token"), Ok(()));
/// assert_eq!(check_token(""), Err(TokenError::Empty));
/// assert_eq!(check_token("x"), Err(TokenError::TooShort { len: 1 }));
/// assert_eq!(check_token("s3cret-token\n"), Err(TokenError::NotVisible { at: 13 }));
/// assert_eq!(check_token(&"x".repeat(4097)), Err(TokenError::TooLong { len: 4097 }));
/// ```
pub fn check_token(token: &str) -> Result<(), TokenError> {
    if token.is_empty() {
        return Err(TokenError::Empty);
    }
    if token.len() < MIN_TOKEN_LEN {
        return Err(TokenError::TooShort { len: token.len() });
    }
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::TooLong { len: token.len() });
    }
    match token.bytes().position(|b| !b.is_ascii_graphic()) {
        Some(i) => Err(TokenError::NotVisible { at: i + 1 }),
        None => Ok(()),
    }
}

/// The metadata that carries `token` to the registry, `authorization: Bearer <token>`; refused, without showing
/// the token, if it breaks the rule.
pub(crate) fn bearer(token: &str) -> Result<Metadata, TokenError> {
    check_token(token)?;
    // Within the rule, the only refusal left is a length a metadata value cannot have.
    Metadata::from_pairs([(crate::AUTHORIZATION, format!("Bearer {token}"))])
        .map_err(|_| TokenError::TooLong { len: token.len() })
}

/// How a token shows in a `Debug`: `Some("<hidden>")`, or `None`.
pub(crate) fn hidden(token: &Option<String>) -> Option<&'static str> {
    token.as_ref().map(|_| "<hidden>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_refuses_empty_short_and_invisible_tokens_without_showing_them() {
        assert_eq!(check_token("12345678"), Ok(()));
        assert_eq!(check_token("1234567"), Err(TokenError::TooShort { len: 7 }));
        assert_eq!(
            check_token(" 2345678"),
            Err(TokenError::NotVisible { at: 1 })
        );
        assert_eq!(
            check_token("1234\t678"),
            Err(TokenError::NotVisible { at: 5 })
        );
        assert_eq!(
            check_token("pässword"),
            Err(TokenError::NotVisible { at: 2 })
        );
        assert_eq!(check_token(&"x".repeat(MAX_TOKEN_LEN)), Ok(()));
        for secret in ["", "abc", "abcdefg ", "abcdefgh\u{1b}"] {
            let message = check_token(secret).unwrap_err().to_string();
            assert!(
                secret.is_empty() || !message.contains(secret.trim()),
                "{message}"
            );
        }
    }
}
