//! The `#[service]` attribute of the rpc framework: turns an annotated trait into a client stub and a server
//! skeleton. Use it through `rpc_core::service`, which re-exports it; the generated code names `rpc_core`.
//!
//! # Layout
//! A pipeline, each step in its own file:
//! - `attr`: the attribute's arguments (`#[service(name = "...", codec = Type)]`) and method attributes
//!   (`#[idempotent]`).
//! - `ast`: syn's trait turned into the macro's own view of a service, keeping the original tokens for spans.
//! - `valid`: semantic checks; every problem becomes an error on the offending tokens, all gathered (`errors`).
//! - `expand`: the generated trait, `<Trait>Client` and `<Trait>Server`.
//! - `describe`: the service's description for reflection (`rpc_core::reflect`), from the same view.
//! - `fallback`: what is emitted instead when there are errors, so that users see those errors and few others.

use proc_macro::TokenStream;

mod ast;
mod attr;
mod describe;
mod errors;
mod expand;
mod fallback;
mod valid;

/// Turns a trait of `async fn name(&self, arg: A, ...) -> T` methods into an RPC service.
///
/// `#[service(name = "calc.v1.Calc")]` sets the service's name on the wire, `Service` or gRPC's
/// `package.Service` (default: the trait's name); a method's id is the FNV-1a hash of `"{name}.{method}"`
/// (`calc.v1.Calc.add`), the method's name without `r#`. `#[service(codec = rpc_core::codec::Json)]` carries
/// every argument, result and application error of the service in that payload codec (any
/// `rpc_core::codec::PayloadCodec` with `Default`; `Json` needs rpc-core's feature `json`) instead of bincode;
/// client and server must declare the same. `#[idempotent]` on a method lets a client retry it after
/// `Unavailable`.
///
/// # What it generates
/// For `trait Calc`, beside the trait itself (whose methods become `fn ... -> impl Future + Send`, so that
/// implementations may still be written as `async fn`):
/// - `CalcClient`: one method per trait method, same name and arguments, returning `Result<T, RpcError>`;
///   `Clone`, `Debug` and `rpc_core::Stub` (`SERVICE`, `METHODS`, `from_parts`, `client`, `options`, `new`,
///   `connect`, `connect_unix`, `discover`, `discover_with`, `with_deadline`, `with_metadata`); and inherent
///   shortcuts to the `Stub` items `SERVICE`, `METHODS`, `new`, `connect`, `connect_unix` (unix only),
///   `discover`, `discover_with`, `with_deadline`, `with_metadata` and `client`, each left out when a method
///   of the trait has its name (reach it as `<CalcClient as Stub>::connect(addr)`).
/// - `CalcServer<S>`: `new(service)`, `from_arc(arc)`, `Clone`, and `rpc_core::Service` (`name`, `methods`,
///   `dispatch`, `description`), which calls `S`'s methods by their full path. It decodes each call's arguments
///   in bincode, or, for a call in JSON (protocol 1.2), from an object keyed by the argument names (without
///   `r#`), and answers each call in the format it came in. `description` is what reflection
///   (`rpc.Reflection`) tells callers: the trait's and each method's doc comments, each argument's name and
///   type as written, the result, the application error's type, `#[idempotent]`, and how the method streams.
///
/// So any method name works. As with any type, `client.into(..)` (and `try_into`) on a value finds the prelude
/// trait's by-value method before an inherent `into(&self, ..)`: write `CalcClient::into(&client, ..)`.
///
/// # Types
/// Arguments and results are owned values that implement `serde::Serialize`, `serde::Deserialize` and `Send`
/// (a missing trait is reported on the type). A result written `Result<U, E>` sends `E` as the application's
/// error, apart from transport errors; so does a result named `Result` with one argument (`io::Result<U>`, a
/// crate's `type Result<T> = ...`), which must be a `core::result::Result`. A result that is a `Result` under
/// another name is refused: its error would travel as a value.
///
/// An argument or result written `Vec<u8>` (or `std::vec::Vec<u8>`) or `Bytes` (`bytes::Bytes`) travels as
/// bytes: one length and one copy, the same bytes on the wire as a sequence of `u8`, which serde would encode
/// element by element (several times slower for large buffers). Inside your own types, mark such fields
/// `#[serde(with = "serde_bytes")]` or use `serde_bytes::ByteBuf`. A type of your own written `Bytes` is
/// refused; write it by another path (`self::Bytes`) to send it through its own serde implementation.
///
/// See `rpc_core` for a complete example.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let item: syn::ItemTrait = match syn::parse(input.clone()) {
        Ok(item) => item,
        Err(_) => {
            let input = proc_macro2::TokenStream::from(input);
            let err =
                syn::Error::new_spanned(&input, "#[service] goes on a trait").to_compile_error();
            return quote::quote!(#err #input).into();
        }
    };
    let args: attr::ServiceArgs = match syn::parse(args) {
        Ok(args) => args,
        Err(e) => return fallback::expand(&item, e).into(),
    };
    let mut errors = errors::Errors::default();
    let service = ast::Service::from_syn(&item, &args, &mut errors);
    valid::check(&service, &mut errors);
    match errors.finish() {
        Ok(()) => expand::expand(&service).into(),
        Err(e) => fallback::expand(&item, e).into(),
    }
}
