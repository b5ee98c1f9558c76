//! Reflection: what a service says of itself. `#[service]` writes a [`ServiceDescription`] of each trait (its
//! doc comments, each method's arguments with their names and types as written, its result, its application
//! error, whether it is idempotent and how it streams); the built-in `rpc.Reflection` service
//! ([`crate::server::reflection`]) answers it to tools, so that a caller in any language, the CLI's `describe`
//! and `call`, and the registry's dashboard learn the methods of a live server.
//!
//! The same types serve both ends: a skeleton's description is `'static` and borrowed; one that came over the
//! wire is owned.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A service: its name on the wire, its doc comment and its methods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceDescription {
    /// The name on the wire (`#[service(name = ...)]`, or the trait's).
    pub name: Cow<'static, str>,
    /// The trait's doc comment, one line per line.
    pub docs: Cow<'static, str>,
    /// The methods, in the trait's order.
    pub methods: Cow<'static, [MethodDescription]>,
}

/// A method of a service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodDescription {
    /// The method's name (without `r#`).
    pub name: Cow<'static, str>,
    /// Its id on the wire: FNV-1a of `"Service.method"`.
    pub id: u32,
    /// Its doc comment.
    pub docs: Cow<'static, str>,
    /// Its arguments after `&self`, in order.
    pub args: Cow<'static, [ArgDescription]>,
    /// What it returns, as written in the trait (`Result<Answer, CalcError>`; `()` for nothing).
    pub returns: Cow<'static, str>,
    /// The type of its value: `returns`, or the `Ok` type of a `Result`, or a stream's item type.
    pub value: Cow<'static, str>,
    /// The type of the application's error of a method returning `Result<T, E>`: `E`.
    pub error: Option<Cow<'static, str>>,
    /// Marked `#[idempotent]`: safe to call twice, so clients and gateways may retry it.
    pub idempotent: bool,
    /// How it streams.
    pub streaming: Streaming,
}

/// One argument of a method.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgDescription {
    /// Its name, the key of its value in a call in JSON.
    pub name: Cow<'static, str>,
    /// Its type, as written.
    pub ty: Cow<'static, str>,
}

/// How a method streams (protocol 1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Streaming {
    /// One request, one answer: callable in JSON.
    Unary,
    /// It returns a stream of items.
    Server,
    /// It takes a stream of items, and answers once.
    Client,
    /// Both.
    Bidirectional,
}

impl ServiceDescription {
    /// The method named `name`.
    pub fn method(&self, name: &str) -> Option<&MethodDescription> {
        self.methods.iter().find(|m| m.name == name)
    }
}

impl MethodDescription {
    /// The method as a line of a listing: `div(a: i64, b: i64) -> Result<i64, CalcError>`.
    pub fn signature(&self) -> String {
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| format!("{}: {}", a.name, a.ty))
            .collect();
        format!("{}({}) -> {}", self.name, args.join(", "), self.returns)
    }
}
