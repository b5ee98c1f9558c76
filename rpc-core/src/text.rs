//! Text from a peer as it may be shown: which characters must never reach a terminal or a log as they are. The
//! runtime's error messages, the registry's refusals and its command line all escape by this one rule.

/// Whether `c` must be escaped before text from a peer is printed, logged or quoted in a message: C0 and C1
/// controls (a newline would forge a log line, an escape sequence drive a terminal), DEL, the line and
/// paragraph separators, the zero-width characters (which hide in a name that looks like another) and the
/// bidirectional formatting characters (which reorder what follows on screen).
///
/// ```
/// use rpc_core::text::must_escape;
/// assert!(must_escape('\x1b') && must_escape('\n') && must_escape('\u{202e}'));
/// assert!(!must_escape('a') && !must_escape('ä') && !must_escape(' '));
/// ```
pub fn must_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` as it may be quoted in a message: every character [`must_escape`] refuses escaped (`\u{1b}`), and
/// cut to `max` characters with `…` after.
///
/// ```
/// use rpc_core::text::quoted;
/// assert_eq!(quoted("version=v2", 64), "version=v2");
/// assert_eq!(quoted("a\u{1b}[2Jb", 64), "a\\u{1b}[2Jb");
/// assert_eq!(quoted("abcdef", 3), "abc…");
/// ```
pub fn quoted(text: &str, max: usize) -> String {
    let mut quoted = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            quoted.push('…');
            break;
        }
        if must_escape(c) {
            quoted.extend(c.escape_default());
        } else {
            quoted.push(c);
        }
    }
    quoted
}
