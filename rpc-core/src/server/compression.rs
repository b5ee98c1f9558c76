//! A server connection's side of compression (protocol 1.1, see `crate::compression`): the client's offer,
//! read from a request's metadata, chooses the encoding of the answers (the first of the client's list that the
//! server has); the first answer after an offer carries the server's own list; compressed requests are
//! decompressed, within `max_decoded_len`, before any layer sees them.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use rpc_codec::{Encoding, Metadata, Status};

use crate::compression::{ACCEPT_ENCODING, CompressionConfig};

/// What one connection negotiated.
#[derive(Debug)]
pub(crate) struct Negotiated {
    config: CompressionConfig,
    /// The encoding of the answers, once a client offered one the server has.
    answers_in: OnceLock<Encoding>,
    /// An offer arrived and no answer has told the client the server's list yet.
    to_announce: AtomicBool,
}

/// How one answer is written: with the server's list (the answer to an offer), compressed, or both.
pub(crate) struct Plan {
    pub(crate) announce: Option<Metadata>,
    pub(crate) squeeze: Option<(Encoding, usize)>,
}

impl Negotiated {
    pub(crate) fn new(config: CompressionConfig) -> Negotiated {
        Negotiated {
            config,
            answers_in: OnceLock::new(),
            to_announce: AtomicBool::new(false),
        }
    }

    /// Looks for an offer in a request's `metadata`, which the server acts on if it compresses at all; whether
    /// there was one (its entry is then kept from the handler: it is the connection's).
    #[inline]
    pub(crate) fn read_offer(&self, metadata: &rpc_codec::MetadataRef<'_>) -> bool {
        if metadata.is_empty() {
            return false;
        }
        let Some(offer) = metadata.get_str(ACCEPT_ENCODING) else {
            return false;
        };
        if self.config.is_on() {
            if let Some(encoding) = self.config.choose(offer) {
                let _ = self.answers_in.set(encoding);
            }
            self.to_announce.store(true, Ordering::Release);
        }
        true
    }

    /// How the next answer is written, or `None` for an answer as protocol 1.0 writes it.
    #[inline]
    pub(crate) fn plan(&self) -> Option<Plan> {
        let announce = self.to_announce.load(Ordering::Acquire);
        let squeeze = self.answers_in.get().map(|e| (*e, self.config.threshold));
        if !announce && squeeze.is_none() {
            return None;
        }
        let announce = announce.then(|| {
            Metadata::from_pairs([(ACCEPT_ENCODING, self.config.offer().as_str())])
                .unwrap_or_default()
        });
        Some(Plan { announce, squeeze })
    }

    /// An answer carried the server's list: the next ones need not.
    pub(crate) fn announced(&self) {
        self.to_announce.store(false, Ordering::Release);
    }

    /// A request's payload compressed with `encoding`, decompressed; or the status and message that refuse it.
    pub(crate) fn inflate(
        &self,
        encoding: Encoding,
        payload: &[u8],
        limits: &rpc_codec::Config,
    ) -> Result<Bytes, (Status, String)> {
        if !self.config.accepts(encoding) {
            let accepted = match self.config.offer() {
                list if list.is_empty() => String::from("none"),
                list => list,
            };
            return Err((
                Status::InvalidArgument,
                format!(
                    "the request's payload is compressed with {encoding}, which this server does not accept \
                     (it accepts: {accepted})"
                ),
            ));
        }
        crate::compression::inflate(
            encoding,
            payload,
            limits,
            "the request's payload",
            Status::InvalidArgument,
        )
    }
}

/// A request's `metadata` without the offer's entries, as its handler sees it.
#[cold]
pub(crate) fn without_offer(metadata: &rpc_codec::MetadataRef<'_>) -> Metadata {
    let mut builder = Metadata::builder();
    for (key, value) in metadata.iter() {
        if key != ACCEPT_ENCODING {
            // Each entry came in a valid section, so it goes into a smaller one.
            let _ = builder.insert(key, value);
        }
    }
    builder.build()
}
