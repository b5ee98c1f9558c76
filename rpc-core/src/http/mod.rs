//! Calls over HTTP/1.1 with JSON bodies (Connect's unary shape: `POST /{Service}/{method}`, the arguments an
//! object keyed by name): how an answer becomes an HTTP status and a JSON body ([`answer`]). Servers and the
//! registry's gateway answer with the same mapping, so that a tool sees one protocol wherever it calls.
//!
//! # Layout
//! - [`answer`]: statuses to HTTP codes (the table of `docs/PROTOCOL.md` section 16) and the JSON bodies of
//!   values, application errors and failures.

pub mod answer;
