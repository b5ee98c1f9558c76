//! The service's description for reflection (`rpc_core::reflect`): a `static` built from the macro's view of the
//! trait, with doc comments, argument names, and types printed as written (`Result<Answer, CalcError>`, not
//! the token stream's `Result < Answer , CalcError >`).

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};
use syn::{Attribute, Expr, Lit, Meta, Type};

use crate::ast::{Method, Output, Service};

/// `fn description(&self)` of the skeleton's `rpc_core::Service` impl, returning a `static`.
pub(crate) fn description_fn(service: &Service<'_>) -> TokenStream {
    let name = &service.name;
    let docs = docs(&service.item.attrs);
    let methods = service.methods.iter().map(method);
    quote! {
        fn description(&self) -> ::core::option::Option<&'static ::rpc_core::reflect::ServiceDescription> {
            static DESCRIPTION: ::rpc_core::reflect::ServiceDescription = ::rpc_core::reflect::ServiceDescription {
                name: ::std::borrow::Cow::Borrowed(#name),
                docs: ::std::borrow::Cow::Borrowed(#docs),
                methods: ::std::borrow::Cow::Borrowed(&[#(#methods),*]),
            };
            ::core::option::Option::Some(&DESCRIPTION)
        }
    }
}

fn method(m: &Method<'_>) -> TokenStream {
    let name = &m.name;
    let id = m.id;
    let docs = docs(&m.item.attrs);
    let idempotent = m.idempotent;
    let args = m.args.iter().map(|a| {
        let name = syn::ext::IdentExt::unraw(a.ident).to_string();
        let ty = type_text(a.ty);
        quote! {
            ::rpc_core::reflect::ArgDescription {
                name: ::std::borrow::Cow::Borrowed(#name),
                ty: ::std::borrow::Cow::Borrowed(#ty),
            }
        }
    });
    let returns = match &m.output {
        Output::Stream(items) => format!("impl Stream<Item = {}>", type_text(items.ty)),
        _ => match &m.sig().output {
            syn::ReturnType::Default => String::from("()"),
            syn::ReturnType::Type(_, ty) => type_text(ty),
        },
    };
    let (value, error) = match &m.output {
        Output::Unit => (String::from("()"), None),
        Output::Value(ty, _) => (type_text(ty), None),
        Output::Result { ok, err } => (type_text(ok.0), Some(type_text(err.0))),
        Output::Alias(ty) => (type_text(ty), None),
        Output::Stream(items) => (type_text(items.ty), None),
    };
    let error = match error {
        Some(e) => quote!(::core::option::Option::Some(::std::borrow::Cow::Borrowed(#e))),
        None => quote!(::core::option::Option::None),
    };
    let streaming = syn::Ident::new(
        m.stream_kind().unwrap_or("Unary"),
        proc_macro2::Span::call_site(),
    );
    quote! {
        ::rpc_core::reflect::MethodDescription {
            name: ::std::borrow::Cow::Borrowed(#name),
            id: #id,
            docs: ::std::borrow::Cow::Borrowed(#docs),
            args: ::std::borrow::Cow::Borrowed(&[#(#args),*]),
            returns: ::std::borrow::Cow::Borrowed(#returns),
            value: ::std::borrow::Cow::Borrowed(#value),
            error: #error,
            idempotent: #idempotent,
            streaming: ::rpc_core::reflect::Streaming::#streaming,
        }
    }
}

/// The doc comment of `attrs`, one line per `///` line, the one space after `///` taken off.
fn docs(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter_map(|attr| match &attr.meta {
            Meta::NameValue(nv) if nv.path.is_ident("doc") => match &nv.value {
                Expr::Lit(lit) => match &lit.lit {
                    Lit::Str(s) => Some(s.value()),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_owned()
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// `ty` as a person writes it: no space inside `<>`, `::`, `&`, `()` or `[]`, one after a comma.
pub(crate) fn type_text(ty: &Type) -> String {
    let spaced = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(spaced.len());
    let tokens: Vec<&str> = spaced.split(' ').collect();
    for (i, token) in tokens.iter().enumerate() {
        let next = tokens.get(i + 1).copied().unwrap_or("");
        out.push_str(token);
        let glue = matches!(*token, "<" | "::" | "&" | "(" | "[" | "'" | "#")
            || matches!(next, "<" | ">" | "::" | "," | ")" | "]" | ";" | "")
            // `Fn(u32)`: a path before its parentheses.
            || next.starts_with('(')
                && token.chars().all(|c| c.is_alphanumeric() || c == '_')
                && !matches!(*token, "dyn" | "impl" | "mut" | "fn");
        if !glue {
            out.push(' ');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_print_as_written() {
        let cases = [
            ("Result < Answer , CalcError >", "Result<Answer, CalcError>"),
            ("Vec<u8>", "Vec<u8>"),
            (
                "std :: collections :: HashMap<String, Vec<(u32, i64)>>",
                "std::collections::HashMap<String, Vec<(u32, i64)>>",
            ),
            ("Option<&'static str>", "Option<&'static str>"),
            ("[u8; 4]", "[u8; 4]"),
            ("()", "()"),
            ("Box<dyn Fn(u32) -> u32>", "Box<dyn Fn(u32) -> u32>"),
        ];
        for (written, printed) in cases {
            let ty: Type = syn::parse_str(written).unwrap();
            assert_eq!(type_text(&ty), printed, "{written}");
        }
    }
}
