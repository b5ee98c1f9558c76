//! The macro's attributes: `#[service(name = "...")]` on the trait, and `#[idempotent]` on a method.

use syn::parse::{Parse, ParseStream};
use syn::{Attribute, LitStr, Token};

use crate::errors::Errors;

/// Arguments of `#[service(...)]`.
#[derive(Default)]
pub(crate) struct ServiceArgs {
    /// `name = "..."`: the service's name on the wire, which method ids are derived from.
    pub name: Option<String>,
}

impl Parse for ServiceArgs {
    fn parse(input: ParseStream<'_>) -> syn::Result<ServiceArgs> {
        let mut args = ServiceArgs::default();
        while !input.is_empty() {
            let key: syn::Ident = input.parse()?;
            if key != "name" {
                return Err(syn::Error::new_spanned(
                    &key,
                    format!("unknown #[service] argument `{key}` (expected `name = \"...\"`)"),
                ));
            }
            input.parse::<Token![=]>()?;
            let value: LitStr = input.parse()?;
            let name = value.value();
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '.') {
                return Err(syn::Error::new_spanned(
                    &value,
                    "a service name is not empty and has no whitespace or `.` (it is joined to method names by `.`)",
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
