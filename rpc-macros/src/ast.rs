//! The macro's own view of a service trait: each method's arguments, result shape and attributes, with the
//! original syn nodes kept for error spans. Building it reports what cannot be represented at all (a non-method
//! item, a pattern argument, a missing `&self`); `valid.rs` checks the rest.

use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, Pat, PathArguments, ReturnType, Signature,
    TraitItem, TraitItemFn, Type,
};

use crate::attr::{self, ServiceArgs};
use crate::errors::Errors;

/// A service trait.
pub(crate) struct Service<'a> {
    /// The trait as written.
    pub item: &'a ItemTrait,
    /// The name on the wire: `#[service(name = "...")]`, or the trait's name.
    pub name: String,
    pub methods: Vec<Method<'a>>,
}

/// One method of the trait.
pub(crate) struct Method<'a> {
    pub item: &'a TraitItemFn,
    /// Attributes passed through to the generated trait and client method (docs, lints).
    pub attrs: Vec<&'a Attribute>,
    /// Marked `#[idempotent]`: the client may retry it after `Unavailable`.
    pub idempotent: bool,
    pub args: Vec<Arg<'a>>,
    pub output: Output<'a>,
    /// `fnv1a("Service.method")`.
    pub id: u32,
}

/// One argument after `&self`.
pub(crate) struct Arg<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
}

/// What a method returns.
pub(crate) enum Output<'a> {
    /// Nothing: `()`.
    Unit,
    /// A value sent as the response payload.
    Value(&'a Type),
    /// `Result<ok, err>`: `Ok` is the response payload, `Err` the application error (flag `APP_ERROR`).
    Result { ok: &'a Type, err: &'a Type },
}

impl Method<'_> {
    pub(crate) fn sig(&self) -> &Signature {
        &self.item.sig
    }

    pub(crate) fn ident(&self) -> &Ident {
        &self.item.sig.ident
    }
}

impl<'a> Service<'a> {
    /// Builds the view, or reports every item that has no place in it.
    pub(crate) fn from_syn(
        item: &'a ItemTrait,
        args: &ServiceArgs,
        errors: &mut Errors,
    ) -> Service<'a> {
        let name = args.name.clone().unwrap_or_else(|| item.ident.to_string());
        let mut methods = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(f) => {
                    if let Some(m) = Method::from_syn(&name, f, errors) {
                        methods.push(m);
                    }
                }
                other => errors.push(syn::Error::new_spanned(
                    other,
                    "a #[service] trait may only contain methods (`async fn name(&self, ...) -> T;`)",
                )),
            }
        }
        Service {
            item,
            name,
            methods,
        }
    }
}

impl<'a> Method<'a> {
    fn from_syn(service: &str, item: &'a TraitItemFn, errors: &mut Errors) -> Option<Method<'a>> {
        let sig = &item.sig;
        let mut inputs = sig.inputs.iter();
        match inputs.next() {
            Some(FnArg::Receiver(r))
                if r.reference.is_some() && r.mutability.is_none() && r.colon_token.is_none() => {}
            Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_some() => errors
                .push(syn::Error::new_spanned(
                    r,
                    "RPC methods take `&self`, not `&mut self`: calls run concurrently",
                )),
            Some(FnArg::Receiver(r)) => errors.push(syn::Error::new_spanned(
                r,
                "RPC methods take `&self`: the server shares one service value among all calls",
            )),
            _ => errors.push(syn::Error::new(
                sig.paren_token.span.join(),
                "RPC methods take `&self` as their first argument",
            )),
        }
        let mut args = Vec::new();
        for input in inputs {
            let FnArg::Typed(pt) = input else { continue };
            match &*pt.pat {
                Pat::Ident(pi) if pi.by_ref.is_none() && pi.subpat.is_none() => args.push(Arg {
                    ident: &pi.ident,
                    ty: &pt.ty,
                }),
                other => errors.push(syn::Error::new_spanned(
                    other,
                    "RPC arguments must be plain names (`name: Type`), not patterns",
                )),
            }
        }
        let (attrs, idempotent) = attr::method_attrs(&item.attrs, errors);
        Some(Method {
            item,
            attrs,
            idempotent,
            args,
            output: Output::of(&sig.output),
            id: method_id(service, &sig.ident.to_string()),
        })
    }
}

impl<'a> Output<'a> {
    fn of(ret: &'a ReturnType) -> Output<'a> {
        let ty = match ret {
            ReturnType::Default => return Output::Unit,
            ReturnType::Type(_, ty) => &**ty,
        };
        if let Type::Tuple(t) = ty
            && t.elems.is_empty()
        {
            return Output::Unit;
        }
        if let Some((ok, err)) = result_args(ty) {
            return Output::Result { ok, err };
        }
        Output::Value(ty)
    }
}

/// `Result<T, E>` (or `std::result::Result<T, E>`, ...) written out: its two type arguments.
fn result_args(ty: &Type) -> Option<(&Type, &Type)> {
    let Type::Path(tp) = ty else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let last = tp.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(ab) = &last.arguments else {
        return None;
    };
    let mut types = ab.args.iter().filter_map(|a| match a {
        GenericArgument::Type(t) => Some(t),
        _ => None,
    });
    let (ok, err) = (types.next()?, types.next()?);
    if types.next().is_some() || ab.args.len() != 2 {
        return None;
    }
    Some((ok, err))
}

/// FNV-1a (32-bit) of `"{service}.{method}"`: the method id of `docs/PROTOCOL.md` section 7.1. Kept in step
/// with `rpc_codec::method_id` by a test in rpc-core.
pub(crate) fn method_id(service: &str, method: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in service
        .bytes()
        .chain(std::iter::once(b'.'))
        .chain(method.bytes())
    {
        hash ^= u32::from(b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}
