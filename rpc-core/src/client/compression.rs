//! A client connection's side of compression (protocol 1.1, see `crate::compression`): it offers its encodings
//! in the metadata of each request until a response answers the offer, with the server's list (from then on
//! requests large enough are compressed in the first of the client's encodings that the server has) or without
//! one (a server that does not compress: the offers stop). Compressed responses are decompressed within
//! `max_decoded_len` (and `max_frame_len`); one in an encoding the client's build lacks fails its call.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, Ordering};

use bytes::Bytes;
use rpc_codec::{Encoding, Metadata, Status};

use crate::compression::{ACCEPT_ENCODING, CompressionConfig};
use crate::error::RpcError;

/// Offering, until a response answers.
const OFFERING: u8 = 0;
/// The server answered: no more offers.
const SETTLED: u8 = 1;

/// What one connection negotiated, when the client compresses at all.
#[derive(Debug)]
pub(crate) struct Negotiation {
    config: CompressionConfig,
    /// The list the offers carry.
    offer: String,
    state: AtomicU8,
    /// The encoding of large requests, once the server said it has one of the client's.
    requests_in: OnceLock<Encoding>,
}

/// How the next request is written.
pub(crate) struct Plan {
    /// The metadata entry of the offer, if the request carries it.
    pub(crate) offer: Option<String>,
    pub(crate) squeeze: Option<(Encoding, usize)>,
}

impl Negotiation {
    /// The negotiation of `config`, or `None` when the client does not compress.
    pub(crate) fn of(config: &CompressionConfig) -> Option<Negotiation> {
        config.is_on().then(|| Negotiation {
            offer: config.offer(),
            config: config.clone(),
            state: AtomicU8::new(OFFERING),
            requests_in: OnceLock::new(),
        })
    }

    /// How the next request is written, or `None` for a request as protocol 1.0 writes it.
    pub(crate) fn plan(&self) -> Option<Plan> {
        let offer = (self.state.load(Ordering::Acquire) == OFFERING).then(|| self.offer.clone());
        let squeeze = self.requests_in.get().map(|e| (*e, self.config.threshold));
        (offer.is_some() || squeeze.is_some()).then_some(Plan { offer, squeeze })
    }

    /// A response came with `metadata`: if it answers the offer, the negotiation is settled.
    pub(crate) fn heard(&self, metadata: &Metadata) {
        if self.state.load(Ordering::Acquire) != OFFERING {
            return;
        }
        if let Some(list) = metadata.get_str(ACCEPT_ENCODING)
            && let Some(encoding) = self.config.prefer(list)
        {
            let _ = self.requests_in.set(encoding);
        }
        self.state.store(SETTLED, Ordering::Release);
    }
}

/// A response's payload compressed with `encoding`, decompressed within `limit`. A client decompresses any
/// encoding its build has, offered or not (an offer a user put in a call's metadata, say); one it lacks fails
/// the call.
pub(crate) fn inflate(
    encoding: Encoding,
    payload: &[u8],
    limits: &rpc_codec::Config,
) -> Result<Bytes, RpcError> {
    if !encoding.is_supported() {
        return Err(RpcError::new(
            Status::Internal,
            format!(
                "the server compressed a response with {encoding}, which this client does not have (it has: {})",
                rpc_codec::compression::supported_list()
            ),
        ));
    }
    crate::compression::inflate(encoding, payload, limits, "the response", Status::Internal)
        .map_err(|(status, message)| RpcError::new(status, message))
}

/// `metadata` with the offer's entry after its own (an entry of that key the caller set is left out: the offer
/// is the connection's).
pub(crate) fn with_offer(metadata: &Metadata, offer: &str) -> Result<Metadata, RpcError> {
    let mut builder = Metadata::builder();
    for (key, value) in metadata.iter().filter(|(key, _)| *key != ACCEPT_ENCODING) {
        builder.insert(key, value).map_err(offer_error)?;
    }
    builder
        .insert(ACCEPT_ENCODING, offer)
        .map_err(offer_error)?;
    Ok(builder.build())
}

fn offer_error(e: rpc_codec::MetadataError) -> RpcError {
    RpcError::not_processed(
        Status::InvalidArgument,
        format!("the call's metadata has no room for the offer of compression: {e}"),
    )
}
