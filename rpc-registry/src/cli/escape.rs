//! Text from the registry (service names, addresses, metadata, error messages) made safe for a terminal before
//! `ls` and `watch` print it: every control character is written as an escape (`\x1b`, `\n`, `\u{202e}`), so a
//! name cannot clear the operator's screen nor a metadata value forge a row, and each piece of text is cut to a
//! bounded length.

use std::borrow::Cow;
use std::fmt::Write;

// Whether a character must not reach a terminal as it is: the runtime's one rule.
use rpc_core::text::must_escape as is_unsafe;

/// The longest one field is printed, in characters: a service name, an address, one metadata key or value.
/// Longer text is cut and ends in `…`. 200.
pub const MAX_FIELD_CHARS: usize = 200;

/// The longest a whole line or message is printed, in characters (a `watch` line, an error). 2,000.
pub const MAX_LINE_CHARS: usize = 2_000;

/// `text` with every unsafe character escaped (`\n`, `\r`, `\t`, `\x1b`, `\u{202e}`), cut after `max`
/// characters with `…` in place of the rest. Text that needs neither is returned as it is. Escaping is
/// idempotent: what it returns contains nothing it would change again (backslashes are left alone).
///
/// ```
/// use rpc_registry::cli::escape;
/// assert_eq!(escape("Calc\x1b[2J", 100), "Calc\\x1b[2J");
/// assert_eq!(escape("zone=a\nCalc", 100), "zone=a\\nCalc");
/// assert_eq!(escape("abcdef", 3), "abc…");
/// assert_eq!(escape("Zählung", 100), "Zählung");
/// ```
pub fn escape(text: &str, max: usize) -> Cow<'_, str> {
    let long = text.len() > max && text.chars().nth(max).is_some();
    if !long && !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len().min(max * 2) + 8);
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if is_unsafe(c) && (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c if is_unsafe(c) => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` escaped and cut to [`MAX_FIELD_CHARS`].
pub(super) fn field(text: &str) -> Cow<'_, str> {
    escape(text, MAX_FIELD_CHARS)
}

/// `text` escaped and cut to [`MAX_LINE_CHARS`].
pub(super) fn line(text: &str) -> Cow<'_, str> {
    escape(text, MAX_LINE_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_character_is_escaped_and_nothing_else() {
        for (raw, shown) in [
            ("\x1b[2J", "\\x1b[2J"),
            ("a\nb\rc\td", "a\\nb\\rc\\td"),
            ("\x00\x07\x7f", "\\x00\\x07\\x7f"),
            ("\u{9b}31m", "\\u{009b}31m"),
            ("abc\u{202e}fed", "abc\\u{202e}fed"),
            ("line\u{2028}sep", "line\\u{2028}sep"),
            ("127.0.0.1:7001", "127.0.0.1:7001"),
            ("back\\slash", "back\\slash"),
            ("日本", "日本"),
        ] {
            let escaped = escape(raw, 100);
            assert_eq!(escaped, shown, "{raw:?}");
            assert!(!escaped.chars().any(is_unsafe), "{escaped:?}");
            assert_eq!(
                escape(&escaped, 100),
                escaped,
                "escaping twice changes nothing"
            );
        }
    }

    #[test]
    fn long_text_is_cut_at_its_bound_in_characters() {
        assert_eq!(escape("abcdef", 6), "abcdef");
        assert_eq!(escape("abcdefg", 6), "abcdef…");
        assert_eq!(escape("äöüäöüä", 6), "äöüäöü…");
        assert_eq!(escape(&"x".repeat(1 << 20), 5), "xxxxx…");
        assert!(matches!(escape("short", 6), Cow::Borrowed(_)));
    }
}
