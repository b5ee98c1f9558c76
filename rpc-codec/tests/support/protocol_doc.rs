//! `docs/PROTOCOL.md` as the tests that check it against the code read it: the document's text, the bytes of a
//! hex vector (`<!-- vector: NAME -->` and the fenced block after it), and hex written the document's way.
//! Included by path from `rpc-codec/tests/vectors.rs` and `examples/tests/protocol_doc.rs`, so that both read
//! the vectors alike.

/// The document.
pub(crate) const DOC: &str = include_str!("../../../docs/PROTOCOL.md");

/// The bytes of the fenced block after `<!-- vector: NAME -->`: the part of each line before `|`.
pub(crate) fn doc_vector(name: &str) -> Vec<u8> {
    let marker = format!("<!-- vector: {name} -->");
    let start = DOC
        .find(&marker)
        .unwrap_or_else(|| panic!("no vector {name} in PROTOCOL.md"));
    let block = &DOC[start + marker.len()..];
    let block = block
        .split_once("```text\n")
        .expect("fenced block after the marker")
        .1;
    let block = block.split_once("```").expect("closed fenced block").0;
    let hex: Vec<&str> = block
        .lines()
        .map(|line| line.split('|').next().unwrap_or(""))
        .collect();
    hex_bytes(&hex.join(" "))
}

/// The bytes of hex pairs separated by white space (`52 50 01`).
pub(crate) fn hex_bytes(text: &str) -> Vec<u8> {
    text.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap_or_else(|_| panic!("bad hex {h:?}")))
        .collect()
}

/// `bytes` as the document writes them: lowercase hex pairs separated by spaces.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
