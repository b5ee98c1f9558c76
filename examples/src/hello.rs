//! The `Greeter` service: the smallest complete service, with one plain method and one that can fail with an
//! error of the application's own.

use rpc_core::{Context, service};
use serde::{Deserialize, Serialize};

/// Why [`Greeter::greet_all`] refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GreetError {
    /// No names were given.
    NobodyToGreet,
    /// More names than the greeter will take at once.
    TooMany {
        /// How many came.
        got: usize,
        /// The most it takes.
        max: usize,
    },
}

impl std::fmt::Display for GreetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GreetError::NobodyToGreet => f.write_str("nobody to greet"),
            GreetError::TooMany { got, max } => write!(f, "{got} names, more than {max}"),
        }
    }
}

/// Greets people.
#[service]
pub trait Greeter {
    /// A greeting for `name`.
    async fn hello(&self, name: String) -> String;
    /// A greeting for each name, or why not.
    async fn greet_all(&self, names: Vec<String>) -> Result<Vec<String>, GreetError>;
}

/// The server's implementation.
#[derive(Clone, Debug, Default)]
pub struct Greetings;

/// The most names [`Greetings`] greets at once.
pub const MAX_NAMES: usize = 100;

impl Greeter for Greetings {
    async fn hello(&self, name: String) -> String {
        // Call metadata, such as a trace id, is readable through the call context.
        match Context::current().and_then(|c| c.metadata().get_str("trace-id").map(str::to_owned)) {
            Some(trace) => format!("hello, {name} (trace {trace})"),
            None => format!("hello, {name}"),
        }
    }

    async fn greet_all(&self, names: Vec<String>) -> Result<Vec<String>, GreetError> {
        if names.is_empty() {
            return Err(GreetError::NobodyToGreet);
        }
        if names.len() > MAX_NAMES {
            return Err(GreetError::TooMany {
                got: names.len(),
                max: MAX_NAMES,
            });
        }
        Ok(names.into_iter().map(|n| format!("hello, {n}")).collect())
    }
}
