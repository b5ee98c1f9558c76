//! Runnable programs a new user of the rpc framework starts with; each lives in `src/bin/`.
//!
//! # Layout
//! - `wire-tour`: encodes a frame of every kind, prints it byte by byte, decodes it back, and shows the
//!   codec refusing hostile input.
