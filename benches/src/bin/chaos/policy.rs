//! The balancing policies a chaos run can put in front of the instances, by name.

use std::sync::Arc;

use rpc_core::balance::{LeastRequest, PeakEwma, Policy, RingHash, SmoothWrr};

/// The names `--policy` takes (and `default`, the one discovery names).
pub(crate) const NAMES: [&str; 4] = ["swrr", "peak-ewma", "least-request", "ring-hash"];

/// The policy called `name`.
pub(crate) fn by_name(name: &str) -> Result<Arc<dyn Policy>, String> {
    match name {
        "swrr" => Ok(Arc::new(SmoothWrr::default())),
        "peak-ewma" => Ok(Arc::new(PeakEwma::default())),
        "least-request" => Ok(Arc::new(LeastRequest::default())),
        // The load keys each call by its number modulo 1000 (`load.rs`).
        "ring-hash" => Ok(Arc::new(RingHash::default())),
        other => Err(format!(
            "no policy {other:?}; expected default or one of {}",
            NAMES.join(", ")
        )),
    }
}
