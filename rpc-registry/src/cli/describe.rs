//! `rpc-registry describe [SERVICE]`: what a live server says of a service through `rpc.Reflection`: its doc
//! comment, then a line per method (its signature and tags: `[idempotent]`, `[server stream]`, ...) with its
//! docs indented below; or, without a service, the services the server serves. `--json` prints the description
//! (or the list) as JSON instead. Everything the server says is escaped and bounded before it is printed.

use std::io::Write;

use rpc_core::Status;
use rpc_core::reflect::ServiceDescription;

use super::call::stream_kind;
use super::escape::{field, line};
use super::exit::CallError;
use super::json::pretty_json;
use super::target::{Reached, Target, reach};

/// `rpc-registry describe [SERVICE] [--json]`: prints to `out` the description of `service` as [`render`]
/// lays it out (as JSON with `json`), or without a service the services the server serves, one a line (a JSON
/// array with `json`); the latter needs [`super::Via::Server`]. Fails with a [`CallError`].
pub async fn describe(
    target: &Target,
    service: Option<&str>,
    json: bool,
    out: &mut impl Write,
) -> Result<(), CallError> {
    let reached = reach(target, service).await?;
    let text = match service {
        Some(service) => {
            let description = fetch(&reached, service).await?;
            match json {
                true => as_json(&description)?,
                false => render(&description),
            }
        }
        None => {
            let services = reached
                .reflection()
                .services()
                .await
                .map_err(reflection_failed)?;
            match json {
                true => as_json(&services)?,
                false => services.iter().map(|s| field(s) + "\n").collect(),
            }
        }
    };
    write!(out, "{}", text.trim_end())?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// The description of `service`, from the server's `rpc.Reflection`.
pub(super) async fn fetch(
    reached: &Reached,
    service: &str,
) -> Result<ServiceDescription, CallError> {
    reached
        .reflection()
        .describe(service.to_owned())
        .await
        .map_err(reflection_failed)?
        .map_err(CallError::NoService)
}

/// A failed call of `rpc.Reflection`; a server that does not serve it is told apart.
fn reflection_failed(e: rpc_core::RpcError) -> CallError {
    match e.code() {
        Status::Unimplemented => CallError::failed(
            Status::Unimplemented,
            format!(
                "{}; the server does not serve rpc.Reflection (ServerBuilder::reflection(false)?), so its \
                 methods can be neither described nor called by name",
                e.message()
            ),
        ),
        _ => CallError::Failed(e),
    }
}

/// `description` for a person: the service's name and doc comment (indented), a blank line, then per method
/// its signature and tags, and its docs indented below. Every piece is escaped, each line bounded.
///
/// ```
/// # use std::borrow::Cow;
/// use rpc_core::reflect::{ArgDescription, MethodDescription, ServiceDescription, Streaming};
/// let args = vec![ArgDescription { name: "a".into(), ty: "i64".into() }];
/// let add = MethodDescription {
///     name: "twice".into(), id: 1, docs: "`2 * a`.".into(), args: args.into(), returns: "i64".into(),
///     value: "i64".into(), error: None, idempotent: true, streaming: Streaming::Unary,
/// };
/// let calc = ServiceDescription { name: "Calc".into(), docs: "Arithmetic.".into(), methods: vec![add].into() };
/// assert_eq!(
///     rpc_registry::cli::describe::render(&calc),
///     "Calc\n  Arithmetic.\n\ntwice(a: i64) -> i64 [idempotent]\n    `2 * a`.\n"
/// );
/// ```
pub fn render(description: &ServiceDescription) -> String {
    let mut text = format!("{}\n", field(&description.name));
    for doc in description.docs.lines() {
        text.push_str(&indented("  ", doc));
    }
    text.push('\n');
    if description.methods.is_empty() {
        text.push_str("(no methods)\n");
    }
    for method in description.methods.iter() {
        let mut tags = Vec::new();
        if method.idempotent {
            tags.push("[idempotent]".to_owned());
        }
        if let Some(kind) = stream_kind(method.streaming) {
            tags.push(format!("[{kind}]"));
        }
        let signature = line(&method.signature()).into_owned();
        text.push_str(
            &[signature]
                .into_iter()
                .chain(tags)
                .collect::<Vec<_>>()
                .join(" "),
        );
        text.push('\n');
        for doc in method.docs.lines() {
            text.push_str(&indented("    ", doc));
        }
    }
    text
}

/// `doc`, escaped and bounded, after `indent`, and a newline; a blank line stays blank.
fn indented(indent: &str, doc: &str) -> String {
    match doc.trim_end() {
        "" => "\n".to_owned(),
        doc => format!("{indent}{}\n", line(doc)),
    }
}

/// `value` as JSON for the terminal.
fn as_json(value: &impl serde::Serialize) -> Result<String, CallError> {
    serde_json::to_vec(value)
        .map_err(|e| e.to_string())
        .and_then(|json| pretty_json(&json).map_err(|e| e.to_string()))
        .map_err(|e| CallError::failed(Status::Internal, format!("cannot write JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use rpc_core::reflect::{ArgDescription, MethodDescription, Streaming};

    use super::*;

    fn method(name: &str, docs: &str, streaming: Streaming) -> MethodDescription {
        MethodDescription {
            name: name.to_owned().into(),
            id: 7,
            docs: docs.to_owned().into(),
            args: vec![ArgDescription {
                name: "to".into(),
                ty: "u64".into(),
            }]
            .into(),
            returns: "impl Stream<Item = u64>".into(),
            value: "u64".into(),
            error: None,
            idempotent: false,
            streaming,
        }
    }

    #[test]
    fn streams_are_tagged_and_what_the_peer_wrote_is_escaped() {
        let description = ServiceDescription {
            name: "Feed\x1b[2J".into(),
            docs: "Line one.\n\nLine\u{202e} two.".into(),
            methods: vec![
                method("count", "Counts.\nUp.", Streaming::Server),
                method("both\nways", "", Streaming::Bidirectional),
            ]
            .into(),
        };
        assert_eq!(
            render(&description),
            "Feed\\x1b[2J\n  Line one.\n\n  Line\\u{202e} two.\n\n\
             count(to: u64) -> impl Stream<Item = u64> [server stream]\n    Counts.\n    Up.\n\
             both\\nways(to: u64) -> impl Stream<Item = u64> [bidirectional stream]\n"
        );
    }

    #[test]
    fn a_long_signature_is_cut() {
        let long = method(&"x".repeat(5_000), "", Streaming::Unary);
        let description = ServiceDescription {
            name: "S".into(),
            docs: "".into(),
            methods: vec![long].into(),
        };
        let shown = render(&description);
        let longest = shown.lines().map(|l| l.chars().count()).max().unwrap();
        assert!(longest <= super::super::MAX_LINE_CHARS + 1, "{longest}");
    }
}
