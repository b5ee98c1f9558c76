//! The macro's attributes: `#[service(name = "...", codec = Type)]` on the trait (a service name, possibly
//! package-qualified; the payload codec, bincode unless named), and `#[idempotent]` on a method.

use syn::parse::{Parse, ParseStream};
use syn::{Attribute, LitStr, Token};

use crate::errors::Errors;

/// Arguments of `#[service(...)]`.
#[derive(Default)]
pub(crate) struct ServiceArgs {
    /// `name = "..."`: the service's name on the wire, which method ids are derived from.
    pub name: Option<String>,
    /// `codec = Type`: the payload codec of every argument and result (a `rpc_core::codec::PayloadCodec` with
    /// `Default`), bincode unless named.
    pub codec: Option<syn::Type>,
}

impl Parse for ServiceArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<ServiceArgs> {
        let mut args = ServiceArgs::default();
        while !input.is_empty() {
            let key: syn::Ident = input.parse()?;
            if key == "codec" {
                input.parse::<Token![=]>()?;
                let codec: syn::Type = input.parse()?;
                if args.codec.replace(codec).is_some() {
                    return Err(syn::Error::new_spanned(&key, "`codec` is given twice"));
                }
                if !input.is_empty() {
                    input.parse::<Token![,]>()?;
                }
                continue;
            }
            if key != "name" {
                return Err(syn::Error::new_spanned(
                    &key,
                    format!(
                        "unknown #[service] argument `{key}` (expected `name = \"...\"` or `codec = Type`)"
                    ),
                ));
            }
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            let name = value.value();
            if let Some(problem) = name_problem(&name) {
                return Err(syn::Error::new_spanned(
                    &value,
                    format!(
                        "a service name is `Service` or `package.Service` (gRPC's form, e.g. `calc.v1.Calc`): \
                         segments joined by `.`, none empty, no whitespace or control characters; `{}` {problem}",
                        name.escape_debug()
                    ),
                ));
            }
            if args.name.replace(name).is_some() {
                return Err(syn::Error::new_spanned(&key, "`name` is given twice"));
            }
            if !input.is_empty() {
                input.parse::<Token![,]>()?;
            }
        }
        Ok(args)
    }
}

/// What is wrong with a service name, if anything. A name is one or more non-empty segments joined by `.`
/// (`Calc`, `calc.v1.Calc`); method ids hash `"{name}.{method}"`.
fn name_problem(name: &str) -> Option<&'static str> {
    if name.is_empty() {
        Some("is empty")
    } else if name.split('.').any(str::is_empty) {
        Some("has an empty segment")
    } else if name.contains(char::is_whitespace) {
        Some("has whitespace")
    } else if name.contains(char::is_control) {
        Some("has a control character")
    } else {
        None
    }
}

/// Splits a method's attributes into ours and the ones to pass through; returns the latter and whether the
/// method is `#[idempotent]`.
pub(crate) fn method_attrs<'a>(
    attrs: &'a [Attribute],
    errors: &mut Errors,
) -> (Vec<&'a Attribute>, bool) {
    let mut keep = Vec::new();
    let mut idempotent = false;
    for a in attrs {
        if a.path().is_ident("idempotent") {
            if let Err(e) = a.meta.require_path_only() {
                errors.push(syn::Error::new(
                    e.span(),
                    "`#[idempotent]` takes no arguments",
                ));
            }
            idempotent = true;
        } else {
            keep.push(a);
        }
    }
    (keep, idempotent)
}
