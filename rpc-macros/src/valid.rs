//! Semantic checks of a service: what the trait may declare, what each method must look like, and that no two
//! methods share a name or a method id. Every problem is reported on the tokens that cause it.

use std::collections::HashMap;

use syn::{GenericArgument, PathArguments, ReturnType, Type};

use crate::ast::{Method, Output, Service};
use crate::errors::Errors;

/// Checks the service, adding every problem to `errors`.
pub(crate) fn check(service: &Service<'_>, errors: &mut Errors) {
    check_trait(service, errors);
    for method in &service.methods {
        check_method(method, errors);
    }
    check_unique(service, errors);
}

fn check_trait(service: &Service<'_>, errors: &mut Errors) {
    let item = service.item;
    if !item.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item.generics,
            "a #[service] trait cannot be generic: both ends must agree on every type",
        ));
    }
    if let Some(w) = &item.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            w,
            "a #[service] trait cannot have a `where` clause",
        ));
    }
    if !item.supertraits.is_empty() {
        errors.push(syn::Error::new_spanned(
            &item.supertraits,
            "a #[service] trait cannot declare supertraits (it gets `Send + Sync + 'static`)",
        ));
    }
    if let Some(u) = &item.unsafety {
        errors.push(syn::Error::new_spanned(
            u,
            "a #[service] trait cannot be `unsafe`",
        ));
    }
    if let Some(a) = &item.auto_token {
        errors.push(syn::Error::new_spanned(
            a,
            "a #[service] trait cannot be an auto trait",
        ));
    }
}

fn check_method(method: &Method<'_>, errors: &mut Errors) {
    let sig = method.sig();
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            format!(
                "RPC methods must be `async fn`: write `async fn {}`",
                sig.ident
            ),
        ));
    }
    if let Some(c) = &sig.constness {
        errors.push(syn::Error::new_spanned(c, "RPC methods cannot be `const`"));
    }
    if let Some(u) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(u, "RPC methods cannot be `unsafe`"));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "RPC methods cannot declare an ABI",
        ));
    }
    if let Some(v) = &sig.variadic {
        errors.push(syn::Error::new_spanned(v, "RPC methods cannot be variadic"));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "RPC methods cannot be generic: the server must know each argument's type",
        ));
    }
    if let Some(w) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            w,
            "RPC methods cannot have a `where` clause",
        ));
    }
    if let Some(body) = &method.item.default {
        errors.push(syn::Error::new_spanned(
            body,
            "RPC methods cannot have a default body in the trait; implement them in the `impl`",
        ));
    }
    for arg in &method.args {
        owned_type(arg.ty, "argument", errors);
    }
    for extra in method.args.iter().filter(|a| a.stream.is_some()).skip(1) {
        errors.push(syn::Error::new_spanned(
            extra.ty,
            "an RPC method takes one stream at most: send the items of both in one stream (an enum)",
        ));
    }
    match (&method.output, &sig.output) {
        (Output::Stream(items), _) => owned_type(items.ty, "stream item", errors),
        (Output::Alias(ty), _) if method.sends().is_some() => errors.push(syn::Error::new_spanned(
            ty,
            "a method that takes a stream returns `Result<T, E>` written in full (not a `Result` alias)",
        )),
        (_, ReturnType::Type(_, ty)) => owned_type(ty, "result", errors),
        (_, ReturnType::Default) => {}
    }
}

/// Reports what in `ty` cannot travel: borrowed data, `impl Trait`, trait objects, pointers, function types.
fn owned_type(ty: &Type, what: &str, errors: &mut Errors) {
    let problem = match ty {
        Type::Reference(_) => Some(format!(
            "an RPC {what} must be an owned type (the server decodes it into a fresh value): \
             use `String` for `&str`, `Vec<T>` for `&[T]`"
        )),
        Type::ImplTrait(_) => Some(format!(
            "an RPC {what} cannot be `impl Trait`: name a concrete type"
        )),
        Type::TraitObject(_) => Some(format!(
            "an RPC {what} cannot be a trait object: name a concrete type"
        )),
        Type::Ptr(_) | Type::BareFn(_) => {
            Some(format!("an RPC {what} must be a serializable value type"))
        }
        Type::Infer(_) => Some(format!(
            "an RPC {what} must have its type written out, not `_`"
        )),
        Type::Array(a) => return owned_type(&a.elem, what, errors),
        Type::Slice(s) => return owned_type(&s.elem, what, errors),
        Type::Paren(p) => return owned_type(&p.elem, what, errors),
        Type::Group(g) => return owned_type(&g.elem, what, errors),
        Type::Tuple(t) => {
            for elem in &t.elems {
                owned_type(elem, what, errors);
            }
            return;
        }
        Type::Path(p) => {
            for seg in &p.path.segments {
                if let PathArguments::AngleBracketed(ab) = &seg.arguments {
                    for arg in &ab.args {
                        match arg {
                            GenericArgument::Type(t) => owned_type(t, what, errors),
                            GenericArgument::Lifetime(l) if l.ident != "static" => {
                                errors.push(syn::Error::new_spanned(
                                    l,
                                    format!("an RPC {what} cannot borrow (lifetime `{l}`): use owned types"),
                                ));
                            }
                            _ => {}
                        }
                    }
                }
            }
            return;
        }
        _ => None,
    };
    if let Some(msg) = problem {
        errors.push(syn::Error::new_spanned(ty, msg));
    }
}

/// No two methods share a name or a method id; no method has id 0.
fn check_unique(service: &Service<'_>, errors: &mut Errors) {
    let mut by_name: HashMap<String, &Method<'_>> = HashMap::new();
    let mut by_id: HashMap<u32, &Method<'_>> = HashMap::new();
    for method in &service.methods {
        let name = &method.name;
        if by_name.insert(name.clone(), method).is_some() {
            errors.push(syn::Error::new_spanned(
                method.ident(),
                format!(
                    "method `{name}` is defined twice in service `{}`",
                    service.name
                ),
            ));
            continue;
        }
        if method.id == 0 {
            errors.push(syn::Error::new_spanned(
                method.ident(),
                format!(
                    "`{}.{name}` hashes to method id 0, which is reserved: rename the method",
                    service.name
                ),
            ));
        }
        if let Some(first) = by_id.insert(method.id, method) {
            errors.push(syn::Error::new_spanned(
                method.ident(),
                format!(
                    "method id collision: `{svc}.{name}` and `{svc}.{other}` both hash to {id:#010x}; \
                     rename one of them",
                    svc = service.name,
                    other = first.name,
                    id = method.id,
                ),
            ));
        }
    }
}
