//! `rpc-registry weight SERVICE ADDRESS WEIGHT`: sets the weight clients see for an instance in place of the
//! one it registered with (`0` drains it), or gives it back its own (`registered`). What it prints from the
//! registry is escaped and bounded.

use std::io::Write;

use super::escape::field;
use super::{CliError, Options, connect};

/// Sets (`Some`) or undoes (`None`) an operator's weight for `address` in `service`; prints what clients see now.
pub async fn set(
    options: &Options,
    service: &str,
    address: &str,
    weight: Option<u32>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let registry = connect(options).await?;
    let now = registry
        .with_deadline(options.timeout)
        .set_weight(service.to_owned(), address.to_owned(), weight)
        .await
        .map_err(|e| CliError::registry(options, e))?
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let (service, address) = (field(service), field(address));
    match (weight, now) {
        (Some(0), _) => writeln!(out, "drained {service} {address}: clients see weight 0")?,
        (Some(w), _) => writeln!(out, "set the weight of {service} {address} to {w}")?,
        (None, Some(instance)) => writeln!(
            out,
            "{service} {address} has its own weight again: {}",
            instance.weight
        )?,
        (None, None) => writeln!(
            out,
            "{service} {address} has no weight set now; no instance holds that address"
        )?,
    }
    Ok(())
}
