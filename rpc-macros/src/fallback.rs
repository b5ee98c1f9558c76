//! What `#[service]` emits when the trait has errors: the errors, plus the trait as written (without our own
//! attributes, without repeated methods, pattern arguments made `_`, so that rustc adds no errors of its own)
//! and empty `<Trait>Client` and `<Trait>Server` types, so that code using them reports the real problem rather
//! than a cascade of "cannot find type" errors.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use std::collections::HashSet;

use syn::{FnArg, ItemTrait, Pat, TraitItem};

pub(crate) fn expand(item: &ItemTrait, error: syn::Error) -> TokenStream {
    let mut item = item.clone();
    let mut names = HashSet::new();
    item.items.retain(|trait_item| match trait_item {
        TraitItem::Fn(f) => names.insert(f.sig.ident.to_string()),
        _ => true,
    });
    for trait_item in &mut item.items {
        if let TraitItem::Fn(f) = trait_item {
            f.attrs.retain(|a| !a.path().is_ident("idempotent"));
            for input in &mut f.sig.inputs {
                if let FnArg::Typed(pt) = input
                    && !matches!(&*pt.pat, Pat::Ident(_) | Pat::Wild(_))
                {
                    *pt.pat = Pat::Wild(syn::PatWild {
                        attrs: Vec::new(),
                        underscore_token: Default::default(),
                    });
                }
            }
        }
    }
    let vis = &item.vis;
    let client = format_ident!("{}Client", item.ident);
    let server = format_ident!("{}Server", item.ident);
    let error = error.to_compile_error();
    quote! {
        #error
        #item
        #[allow(dead_code)]
        #vis struct #client;
        #[allow(dead_code)]
        #vis struct #server<S>(::core::marker::PhantomData<S>);
    }
}
