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
