//! `rpc-registry call SERVICE.METHOD 'JSON'`: calls a method of a live service in JSON (protocol 1.2). The
//! arguments are checked to be a JSON object before anything is sent; the service's description
//! (`rpc.Reflection`) says whether it has the method, whether the method streams (then it cannot be called in
//! JSON), whether it is idempotent (so a balanced client may retry it) and the type of its own error. The value
//! is printed as JSON; the method's own error as `{"error": TYPE, "detail": JSON}`; a failed call is a
//! [`CallError`] whose exit code is 64 plus its status ([`super::EXIT_CODES`]).

use std::io::Write;

use rpc_core::client::JsonAnswer;
use rpc_core::reflect::{MethodDescription, Streaming};
use rpc_core::{MethodInfo, Status};

use super::exit::{CallError, EXIT_APP_ERROR, EXIT_VALUE};
use super::json::pretty_json;
use super::target::{Reached, Target, reach};

/// What a call printed: the method's value, or its own error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answered {
    /// The value, as JSON.
    Value,
    /// The method's own error, as `{"error": TYPE, "detail": JSON}`.
    AppError,
}

impl Answered {
    /// The process's exit code: 0 for a value, 1 for the method's own error.
    pub fn exit_code(self) -> u8 {
        match self {
            Answered::Value => EXIT_VALUE,
            Answered::AppError => EXIT_APP_ERROR,
        }
    }
}

/// `SERVICE.METHOD` split at its last dot: `calc.v1.Calc.add` is the method `add` of `calc.v1.Calc`.
///
/// ```
/// use rpc_registry::cli::call::split_method;
/// assert_eq!(split_method("calc.v1.Calc.add").unwrap(), ("calc.v1.Calc", "add"));
/// assert!(split_method("add").is_err() && split_method("Calc.").is_err());
/// ```
pub fn split_method(text: &str) -> Result<(&str, &str), CallError> {
    match text.rsplit_once('.') {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => {
            Ok((service, method))
        }
        _ => Err(CallError::MethodName(text.to_owned())),
    }
}

/// Checks that `text` is a JSON object, as a call's arguments are (`{}` for a method without any).
///
/// ```
/// use rpc_registry::cli::call::check_arguments;
/// assert!(check_arguments(r#"{"a": 2, "b": 3}"#).is_ok());
/// assert_eq!(
///     check_arguments("[2, 3]").unwrap_err().to_string(),
///     "expected the arguments as a JSON object keyed by their names ('{\"a\": 2, \"b\": 3}'), got an array"
/// );
/// ```
pub fn check_arguments(text: &str) -> Result<(), CallError> {
    let got = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(_)) => return Ok(()),
        Ok(serde_json::Value::Array(_)) => "an array".to_owned(),
        Ok(serde_json::Value::String(_)) => "a string".to_owned(),
        Ok(serde_json::Value::Number(_)) => "a number".to_owned(),
        Ok(serde_json::Value::Bool(_)) => "a boolean".to_owned(),
        Ok(serde_json::Value::Null) => "null".to_owned(),
        Err(e) => format!("text that is not JSON ({e})"),
    };
    Err(CallError::Arguments(got))
}

/// `rpc-registry call SERVICE.METHOD JSON`: calls `method` (`SERVICE.METHOD`) of the service `target` reaches
/// with `args` (a JSON object), and prints to `out` the value as JSON, or the method's own error as
/// `{"error": TYPE, "detail": JSON}` (`TYPE` is `null` for a service that does not name it). Fails with a
/// [`CallError`]: of the command line before anything is sent, or the status of the describe or the call.
pub async fn call(
    target: &Target,
    method: &str,
    args: &str,
    out: &mut impl Write,
) -> Result<Answered, CallError> {
    let (service, name) = split_method(method)?;
    check_arguments(args)?;
    let reached = reach(target, Some(service)).await?;
    let description = find_method(&reached, service, name).await?;
    let info = MethodInfo::intern(service, name, description.idempotent)
        .map_err(|e| CallError::MethodName(format!("{method} ({e})")))?;
    let answer = reached
        .client()
        .call_json(info, args.as_bytes(), &reached.options())
        .await
        .map_err(CallError::Failed)?;
    let (text, answered) = match answer {
        JsonAnswer::Value(json) => (shown(&json)?, Answered::Value),
        JsonAnswer::AppError(json) => {
            let error = serde_json::to_string(&description.error).unwrap_or_default();
            let detail = std::str::from_utf8(&json).unwrap_or("");
            let both = format!(r#"{{"error": {error}, "detail": {detail}}}"#);
            (shown(both.as_bytes())?, Answered::AppError)
        }
    };
    writeln!(out, "{text}")?;
    out.flush()?;
    Ok(answered)
}

/// The description of `service.name`, through the server's `rpc.Reflection`: refused if the service or the
/// method is not there, or if the method streams.
async fn find_method(
    reached: &Reached,
    service: &str,
    name: &str,
) -> Result<MethodDescription, CallError> {
    let description = super::describe::fetch(reached, service).await?;
    let Some(method) = description.method(name) else {
        return Err(CallError::NoMethod {
            service: service.to_owned(),
            method: name.to_owned(),
            methods: description
                .methods
                .iter()
                .map(|m| m.name.to_string())
                .collect(),
        });
    };
    match stream_kind(method.streaming) {
        None => Ok(method.clone()),
        Some(kind) => Err(CallError::Streaming {
            service: service.to_owned(),
            method: name.to_owned(),
            kind,
        }),
    }
}

/// How a method streams, as `describe` tags it; `None` for a unary method.
pub(super) fn stream_kind(streaming: Streaming) -> Option<&'static str> {
    match streaming {
        Streaming::Unary => None,
        Streaming::Server => Some("server stream"),
        Streaming::Client => Some("client stream"),
        Streaming::Bidirectional => Some("bidirectional stream"),
    }
}

/// The server's JSON laid out for the terminal; JSON that does not parse is the server's fault (`internal`).
fn shown(json: &[u8]) -> Result<String, CallError> {
    pretty_json(json).map_err(|e| {
        CallError::failed(
            Status::Internal,
            format!("the server answered with a payload that is not JSON: {e}"),
        )
    })
}
