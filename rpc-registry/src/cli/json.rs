//! JSON from a peer as `call` and `describe --json` print it: checked to be one JSON value (at most
//! [`MAX_JSON_DEPTH`] levels deep), then laid out on indented lines in the order it came (a struct's fields stay in the order
//! the server wrote them), with every character a terminal must not receive as it is ([`rpc_core::text`]) written
//! as a `\uXXXX` escape inside its string, so the output is still the same JSON. Its length is the answer's,
//! which the client's frame limit bounds, plus the indentation.

use std::fmt::Write;

use rpc_core::text::must_escape;

/// `json` laid out with two spaces per level, like `serde_json::to_string_pretty`, in the order it came and
/// with the characters a terminal must not receive escaped; `Err` if it is not one JSON value in UTF-8.
///
/// ```
/// use rpc_registry::cli::pretty_json;
/// assert_eq!(pretty_json(br#"{"value":5,"instance":"a"}"#)?, "{\n  \"value\": 5,\n  \"instance\": \"a\"\n}");
/// assert_eq!(pretty_json("[\"x\u{202e}\"]".as_bytes())?, "[\n  \"x\\u202e\"\n]");
/// assert!(pretty_json(b"{\"a\": 1").is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn pretty_json(json: &[u8]) -> Result<String, serde_json::Error> {
    let text = std::str::from_utf8(json).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format!(
            "expected UTF-8, got a byte that is not at offset {}",
            e.valid_up_to()
        ))
    })?;
    serde_json::from_str::<serde::de::IgnoredAny>(text)?;
    lay_out(text).ok_or_else(|| {
        <serde_json::Error as serde::de::Error>::custom(format!(
            "expected JSON at most {MAX_JSON_DEPTH} levels deep, got deeper"
        ))
    })
}

/// The deepest JSON laid out: 128 levels, serde_json's own limit when it builds values. The indentation grows
/// with the depth, so the output stays within a small multiple of the input.
pub const MAX_JSON_DEPTH: usize = 128;

/// `text`, a checked JSON value, laid out; `None` if it is nested deeper than [`MAX_JSON_DEPTH`].
fn lay_out(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                string(&mut chars, &mut out);
            }
            '{' | '[' => {
                let close = if c == '{' { '}' } else { ']' };
                while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
                if chars.next_if_eq(&close).is_some() {
                    out.push(c);
                    out.push(close);
                } else {
                    out.push(c);
                    depth += 1;
                    if depth > MAX_JSON_DEPTH {
                        return None;
                    }
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    Some(out)
}

/// Copies the rest of a string (after its opening quote) and its closing quote, escaping what must be.
fn string(chars: &mut impl Iterator<Item = char>, out: &mut String) {
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                return;
            }
            '\\' => {
                // An escape is ASCII: copied as it is (`\uXXXX` is four more plain characters).
                out.push('\\');
                if let Some(escaped) = chars.next() {
                    out.push(escaped);
                }
            }
            c if must_escape(c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_is_serde_jsons_and_the_order_is_the_peers() {
        let text = r#" {"z": [1, 2, {"a": null}], "a": {}, "m": [], "s": "x,y:{\"q\"}"} "#;
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        let laid = pretty_json(text.as_bytes()).unwrap();
        assert_eq!(
            laid,
            "{\n  \"z\": [\n    1,\n    2,\n    {\n      \"a\": null\n    }\n  ],\n  \"a\": {},\n  \"m\": [],\n  \
             \"s\": \"x,y:{\\\"q\\\"}\"\n}"
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&laid).unwrap(),
            value
        );
        assert_eq!(pretty_json(b" 5 ").unwrap(), "5");
        assert_eq!(pretty_json(b"\"a b\"").unwrap(), "\"a b\"");
    }

    #[test]
    fn characters_a_terminal_must_not_receive_are_escaped_and_the_json_means_the_same() {
        for raw in ["\u{7f}", "\u{9b}31m", "a\u{202e}b", "\u{2028}", "\u{200b}"] {
            let json = serde_json::to_string(raw).unwrap();
            let laid = pretty_json(json.as_bytes()).unwrap();
            assert!(!laid.chars().any(must_escape), "{laid:?}");
            assert_eq!(serde_json::from_str::<String>(&laid).unwrap(), raw);
        }
    }

    #[test]
    fn what_is_not_one_json_value_is_refused() {
        for bad in [&b"{"[..], b"[1,]", b"1 2", b"\"\x1b\"", b"\"\xff\"", b""] {
            assert!(pretty_json(bad).is_err(), "{bad:?}");
        }
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        // The innermost `[]` is laid out on its line: it adds no level.
        assert!(pretty_json(deep(MAX_JSON_DEPTH + 1).as_bytes()).is_ok());
        let e = pretty_json(deep(MAX_JSON_DEPTH + 2).as_bytes()).unwrap_err();
        assert!(e.to_string().contains("at most 128 levels deep"), "{e}");
    }
}
