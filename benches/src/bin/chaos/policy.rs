//! The balancing policies a chaos run can put in front of the instances, by name.

use std::sync::Arc;

use rpc_core::balance::{Policy, SmoothWrr};

/// The names `--policy` takes.
pub(crate) const NAMES: [&str; 1] = ["swrr"];

/// The policy called `name`.
pub(crate) fn by_name(name: &str) -> Result<Arc<dyn Policy>, String> {
    match name {
        "swrr" => Ok(Arc::new(SmoothWrr::default())),
        other => Err(format!(
            "no policy {other:?}; expected one of {}",
            NAMES.join(", ")
        )),
    }
}
