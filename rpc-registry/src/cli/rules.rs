//! The `rules` subcommands that talk to a registry: `apply FILE` (checked here first, then by the registry),
//! `get SERVICE` (the rules in force, as TOML that `apply` takes back), `history SERVICE` (a line per
//! revision) and `rollback SERVICE REVISION`. What they print from the registry is escaped and bounded.

use std::io::Write;

use rpc_core::rules::Rules;

use super::escape::{field, line};
use super::{CliError, Options, connect, format_timestamp};
use crate::api::RulesRevision;
use crate::rules_file::{parse_rules, summary};

/// `rpc-registry rules apply FILE`: checks `text` (the file's, named `file`), then applies it; prints the
/// revision it became.
pub async fn apply(
    options: &Options,
    file: &str,
    text: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let rules = parse_rules(text).map_err(|e| CliError::Rules {
        file: file.to_owned(),
        problems: e.lines,
    })?;
    let json = serde_json::to_string(&rules).map_err(|e| CliError::Rules {
        file: file.to_owned(),
        problems: vec![e.to_string()],
    })?;
    let registry = connect(options).await?;
    let revision = registry
        .with_deadline(options.timeout)
        .apply_rules(json)
        .await
        .map_err(|e| CliError::registry(options, e))?
        .map_err(|e| CliError::Refused(e.to_string()))?;
    writeln!(
        out,
        "applied {} as revision {} of the rules of {}",
        field(file),
        revision.revision,
        field(&revision.service)
    )?;
    writeln!(out, "{}", summary(&rules))?;
    Ok(())
}

/// `rpc-registry rules get SERVICE`: the rules in force, as TOML, after a comment line naming their revision.
pub async fn get(options: &Options, service: &str, out: &mut impl Write) -> Result<(), CliError> {
    let registry = connect(options).await?;
    let current = registry
        .with_deadline(options.timeout)
        .rules(service.to_owned())
        .await
        .map_err(|e| CliError::registry(options, e))?;
    let Some(revision) = current else {
        return Err(CliError::NoRules {
            service: service.to_owned(),
            registry: options.registry.clone(),
        });
    };
    let rules = document(&revision)?;
    writeln!(
        out,
        "# the rules of {}, revision {}, applied {} ({})",
        field(&revision.service),
        revision.revision,
        format_timestamp(at(revision.applied_at_ms)),
        line(&revision.origin)
    )?;
    let toml = toml::to_string(&rules).map_err(|e| CliError::Refused(e.to_string()))?;
    write!(out, "{toml}")?;
    Ok(())
}

/// `rpc-registry rules history SERVICE`: a line per revision, oldest first.
pub async fn history(
    options: &Options,
    service: &str,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let registry = connect(options).await?;
    let revisions = registry
        .with_deadline(options.timeout)
        .rules_history(service.to_owned())
        .await
        .map_err(|e| CliError::registry(options, e))?;
    if revisions.is_empty() {
        return Err(CliError::NoRules {
            service: service.to_owned(),
            registry: options.registry.clone(),
        });
    }
    for revision in &revisions {
        let rules = document(revision)?;
        writeln!(
            out,
            "{:>5}  {}  {:<16}  {}",
            revision.revision,
            format_timestamp(at(revision.applied_at_ms)),
            line(&revision.origin),
            summary(&rules)
        )?;
    }
    Ok(())
}

/// `rpc-registry rules rollback SERVICE REVISION`: applies revision `revision` again, as the next.
pub async fn rollback(
    options: &Options,
    service: &str,
    revision: u64,
    out: &mut impl Write,
) -> Result<(), CliError> {
    let registry = connect(options).await?;
    let applied = registry
        .with_deadline(options.timeout)
        .rollback_rules(service.to_owned(), revision)
        .await
        .map_err(|e| CliError::registry(options, e))?
        .map_err(|e| CliError::Refused(e.to_string()))?;
    writeln!(
        out,
        "rolled the rules of {} back to revision {revision}, as revision {}",
        field(&applied.service),
        applied.revision
    )?;
    Ok(())
}

/// A time in milliseconds since the Unix epoch.
fn at(ms: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms)
}

/// The document of `revision`, as the registry checked it.
fn document(revision: &RulesRevision) -> Result<Rules, CliError> {
    serde_json::from_str(&revision.rules)
        .map_err(|e| CliError::Refused(format!("the registry sent rules that do not read: {e}")))
}
