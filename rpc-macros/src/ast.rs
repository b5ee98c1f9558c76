//! The macro's own view of a service trait: each method's arguments, result shape and attributes, with the
//! original syn nodes kept for error spans, and how each type travels (through serde, or as bytes). Building it
//! reports what cannot be represented at all (a non-method item, a pattern argument, a missing `&self`);
//! `valid.rs` checks the rest.

use syn::ext::IdentExt;
use syn::{
    Attribute, FnArg, GenericArgument, Ident, ItemTrait, Pat, Path, PathArguments, ReturnType,
    Signature, TraitItem, TraitItemFn, Type,
};

use crate::attr::{self, ServiceArgs};
use crate::errors::Errors;

/// A service trait.
pub(crate) struct Service<'a> {
    /// The trait as written.
    pub item: &'a ItemTrait,
    /// The name on the wire: `#[service(name = "...")]`, or the trait's name.
    pub name: String,
    /// The payload codec: `#[service(codec = Type)]`, or `None` for bincode.
    pub codec: Option<syn::Type>,
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
    /// The method's name on the wire: its identifier without `r#`.
    pub name: String,
    /// `fnv1a("Service.method")`.
    pub id: u32,
}

/// One argument after `&self`.
pub(crate) struct Arg<'a> {
    pub ident: &'a Ident,
    pub ty: &'a Type,
    pub wire: Wire,
    /// Written `Streaming<T>`: the client's stream of items (protocol 1.1).
    pub stream: Option<Items<'a>>,
}

/// The items of a stream: their type, and whether it is `Result<U, E>` (an `Err` item is the application's
/// error, flag `APP_ERROR`).
#[derive(Clone, Copy)]
pub(crate) struct Items<'a> {
    pub ty: &'a Type,
    pub fallible: bool,
}

impl<'a> Items<'a> {
    fn of(ty: &'a Type) -> Items<'a> {
        Items {
            ty,
            fallible: matches!(result_args(ty).as_deref(), Some([_, _])),
        }
    }
}

/// How a value of an argument or result type is encoded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wire {
    /// Through its own `Serialize` and `Deserialize`.
    Serde,
    /// Written `Vec<u8>` or `Bytes`: as serde's bytes, one length and one copy (the same bytes on the wire as
    /// a sequence of `u8`).
    Bytes,
}

/// What a method returns.
pub(crate) enum Output<'a> {
    /// Nothing: `()`.
    Unit,
    /// A value sent as the response payload.
    Value(&'a Type, Wire),
    /// `Result<ok, err>`: `Ok` is the response payload, `Err` the application error (flag `APP_ERROR`).
    Result {
        ok: (&'a Type, Wire),
        err: (&'a Type, Wire),
    },
    /// A type named `Result` with one argument (`io::Result<T>`, a crate's `type Result<T> = ...`): a `Result`
    /// whose two types the type system finds (`rpc_core::__private::StdResult`).
    Alias(&'a Type),
    /// `impl Stream<Item = T>`: a stream of items (protocol 1.1).
    Stream(Items<'a>),
}

impl Method<'_> {
    pub(crate) fn sig(&self) -> &Signature {
        &self.item.sig
    }

    pub(crate) fn ident(&self) -> &Ident {
        &self.item.sig.ident
    }

    /// The argument that is the client's stream, with its index, if there is one.
    pub(crate) fn sends(&self) -> Option<(usize, &Arg<'_>, Items<'_>)> {
        self.args
            .iter()
            .enumerate()
            .find_map(|(i, a)| Some((i, a, a.stream?)))
    }

    /// How the method streams, if it does: `Server`, `Client` or `Bidirectional`.
    pub(crate) fn stream_kind(&self) -> Option<&'static str> {
        match (
            self.sends().is_some(),
            matches!(self.output, Output::Stream(_)),
        ) {
            (false, false) => None,
            (false, true) => Some("Server"),
            (true, false) => Some("Client"),
            (true, true) => Some("Bidirectional"),
        }
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
            codec: args.codec.clone(),
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
                    wire: Wire::of(&pt.ty),
                    stream: streaming_item(&pt.ty).map(Items::of),
                }),
                other => errors.push(syn::Error::new_spanned(
                    other,
                    "RPC arguments must be plain names (`name: Type`), not patterns",
                )),
            }
        }
        let (attrs, idempotent) = attr::method_attrs(&item.attrs, errors);
        let name = sig.ident.unraw().to_string();
        Some(Method {
            item,
            attrs,
            idempotent,
            args,
            output: Output::of(&sig.output),
            id: method_id(service, &name),
            name,
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
        if let Some(item) = stream_item(ty) {
            return Output::Stream(Items::of(item));
        }
        match result_args(ty).as_deref() {
            Some([ok, err]) => Output::Result {
                ok: (ok, Wire::of(ok)),
                err: (err, Wire::of(err)),
            },
            Some([_]) => Output::Alias(ty),
            _ => Output::Value(ty, Wire::of(ty)),
        }
    }
}

impl Wire {
    /// `Bytes` for a type written `Vec<u8>` (`std::vec::Vec<u8>`, ...) or `Bytes` (`bytes::Bytes`, ...).
    pub(crate) fn of(ty: &Type) -> Wire {
        let Some(path) = plain_path(ty) else {
            return Wire::Serde;
        };
        let mut segments = path.segments.iter().rev();
        let Some(last) = segments.next() else {
            return Wire::Serde;
        };
        let module = segments.next().map(|s| &s.ident);
        let of_u8 = match &last.arguments {
            PathArguments::AngleBracketed(ab) if ab.args.len() == 1 => matches!(
                ab.args.first(),
                Some(GenericArgument::Type(t)) if plain_path(t).is_some_and(|p| p.is_ident("u8"))
            ),
            _ => false,
        };
        let vec = last.ident == "Vec" && of_u8 && module.is_none_or(|m| m == "vec");
        let bytes = last.ident == "Bytes"
            && last.arguments.is_none()
            && module.is_none_or(|m| m == "bytes");
        if vec || bytes {
            Wire::Bytes
        } else {
            Wire::Serde
        }
    }
}

/// The path of a type that is one (`a::b::C<...>`, not `<T as Trait>::C`), seen through invisible groups and
/// parentheses.
fn plain_path(ty: &Type) -> Option<&Path> {
    match ty {
        Type::Path(tp) if tp.qself.is_none() => Some(&tp.path),
        Type::Group(g) => plain_path(&g.elem),
        Type::Paren(p) => plain_path(&p.elem),
        _ => None,
    }
}

/// `T` of a type written `Streaming<T>` (`rpc_core::Streaming<T>`, ...).
fn streaming_item(ty: &Type) -> Option<&Type> {
    let last = plain_path(ty)?.segments.last()?;
    if last.ident != "Streaming" {
        return None;
    }
    match &last.arguments {
        PathArguments::AngleBracketed(ab) if ab.args.len() == 1 => match ab.args.first() {
            Some(GenericArgument::Type(t)) => Some(t),
            _ => None,
        },
        _ => None,
    }
}

/// `T` of a type written `impl Stream<Item = T>` (with any other bounds, such as `Send + 'static`).
pub(crate) fn stream_item(ty: &Type) -> Option<&Type> {
    let Type::ImplTrait(it) = ty else {
        return None;
    };
    it.bounds.iter().find_map(|bound| {
        let syn::TypeParamBound::Trait(t) = bound else {
            return None;
        };
        let last = t.path.segments.last()?;
        if last.ident != "Stream" {
            return None;
        }
        let PathArguments::AngleBracketed(ab) = &last.arguments else {
            return None;
        };
        ab.args.iter().find_map(|a| match a {
            GenericArgument::AssocType(at) if at.ident == "Item" => Some(&at.ty),
            _ => None,
        })
    })
}

/// The type arguments of a type named `Result` (`Result<T, E>`, `std::result::Result<T, E>`, `io::Result<T>`,
/// ...), when it has only type arguments.
fn result_args(ty: &Type) -> Option<Vec<&Type>> {
    let last = plain_path(ty)?.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(ab) = &last.arguments else {
        return None;
    };
    ab.args
        .iter()
        .map(|a| match a {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        })
        .collect()
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
