//! The `#[service]` attribute of the rpc framework: turns an annotated trait into a client stub and a server
//! skeleton. Use it through `rpc_core::service`, which re-exports it; the generated code names `rpc_core`.
//!
//! # Layout
//! A pipeline, each step in its own file:
//! - `attr`: the attribute's arguments (`#[service(name = "...")]`) and method attributes (`#[idempotent]`).
//! - `ast`: syn's trait turned into the macro's own view of a service, keeping the original tokens for spans.
//! - `valid`: semantic checks; every problem becomes an error on the offending tokens, all gathered (`errors`).
//! - `expand`: the generated trait, `<Trait>Client` and `<Trait>Server`.
//! - `fallback`: what is emitted instead when there are errors, so that users see those errors and few others.

use proc_macro::TokenStream;

mod ast;
mod attr;
mod errors;
mod expand;
mod fallback;
mod valid;

/// Turns a trait of `async fn name(&self, arg: A, ...) -> T` methods into an RPC service.
///
/// For `trait Calc` it generates, beside the trait (whose methods become `fn ... -> impl Future + Send`, so
/// that implementations may still be written as `async fn`):
/// - `CalcClient`: one method per trait method, same name and arguments, returning `Result<T, RpcError>`;
/// - `CalcServer<S>`: the skeleton that serves any `S: Calc`.
///
/// A method returning `Result<U, E>` (written out as `Result`) sends `E` as the application's error, apart
/// from transport errors. `#[service(name = "calc.v1.Calc")]` sets the name method ids are derived from
/// (default: the trait's name); `#[idempotent]` on a method lets a client retry it after `Unavailable`.
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
