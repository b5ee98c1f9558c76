//! Code generation: the trait itself (methods become `fn ... -> impl Future + Send`), the client stub
//! `<Trait>Client` and the server skeleton `<Trait>Server`. Generated code names everything by absolute path
//! (`::rpc_core::...`, `::core::...`, `::std::...`), so it compiles under `#![no_implicit_prelude]`.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{Method, Output, Service};

pub(crate) fn expand(service: &Service<'_>) -> TokenStream {
    let the_trait = expand_trait(service);
    let client = expand_client(service);
    let server = expand_server(service);
    quote! {
        #the_trait
        #client
        #server
    }
}

/// The type a method resolves to, as written (`()` when it returns nothing).
fn return_type(m: &Method<'_>) -> TokenStream {
    match &m.sig().output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    }
}

fn expand_trait(service: &Service<'_>) -> TokenStream {
    let item = service.item;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let ident = &item.ident;
    let methods = service.methods.iter().map(|m| {
        let attrs = &m.attrs;
        let name = m.ident();
        let args = m.args.iter().map(|a| {
            let (i, t) = (a.ident, a.ty);
            quote!(#i: #t)
        });
        let ret = return_type(m);
        let span = m.sig().span();
        quote_spanned! {span=>
            #(#attrs)*
            fn #name(&self, #(#args),*)
                -> impl ::core::future::Future<Output = #ret> + ::core::marker::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #ident: ::core::marker::Send + ::core::marker::Sync + 'static {
            #(#methods)*
        }
    }
}

fn expand_client(service: &Service<'_>) -> TokenStream {
    let vis = &service.item.vis;
    let ident = &service.item.ident;
    let client = format_ident!("{}Client", ident);
    let name = &service.name;
    let infos = service.methods.iter().map(|m| {
        let method = m.ident().to_string();
        let id = m.id;
        let idempotent = m.idempotent;
        quote! {
            ::rpc_core::MethodInfo {
                service: #name,
                name: #method,
                id: #id,
                idempotent: #idempotent,
            }
        }
    });
    let doc = format!(
        "Client of the `{name}` service: one method per method of [`{ident}`], each returning \
         `Result<T, RpcError>`. Cheap to clone; clones share the connection."
    );
    let methods = service.methods.iter().enumerate().map(|(index, m)| {
        let attrs = &m.attrs;
        let name = m.ident();
        let params = m.args.iter().map(|a| {
            let (i, t) = (a.ident, a.ty);
            quote!(#i: #t)
        });
        let arg_names: Vec<_> = m.args.iter().map(|a| a.ident).collect();
        let args_tuple = quote!((#(#arg_names,)*));
        let (ret, call) = match &m.output {
            Output::Result { ok, err } => (
                quote!(::core::result::Result<#ok, #err>),
                quote!(self.client.call_fallible::<_, #ok, #err>(&Self::METHODS[#index], &#args_tuple, &self.options)),
            ),
            Output::Unit => (
                quote!(()),
                quote!(self.client.call::<_, ()>(&Self::METHODS[#index], &#args_tuple, &self.options)),
            ),
            Output::Value(ty) => (
                quote!(#ty),
                quote!(self.client.call::<_, #ty>(&Self::METHODS[#index], &#args_tuple, &self.options)),
            ),
        };
        quote! {
            #(#attrs)*
            pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#ret, ::rpc_core::RpcError> {
                #call.await
            }
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(::core::clone::Clone, ::core::fmt::Debug)]
        #vis struct #client {
            client: ::rpc_core::Client,
            options: ::rpc_core::CallOptions,
        }

        impl #client {
            /// The service's name on the wire.
            pub const SERVICE: &'static str = #name;
            /// The service's methods, with their method ids.
            pub const METHODS: &'static [::rpc_core::MethodInfo] = &[#(#infos),*];

            /// A stub calling through `client`.
            pub fn new(client: ::rpc_core::Client) -> Self {
                Self { client, options: <::rpc_core::CallOptions as ::core::default::Default>::default() }
            }

            /// Connects to a server at `addr` with the default client configuration.
            pub async fn connect(
                addr: impl ::rpc_core::ToSocketAddrs,
            ) -> ::core::result::Result<Self, ::rpc_core::RpcError> {
                ::core::result::Result::Ok(Self::new(::rpc_core::Client::connect(addr).await?))
            }

            /// A stub whose calls are spread over the instances of `service` that `discovery` knows (with
            /// `rpc-registry`: smooth weighted round-robin over the registered instances, kept up to date), with
            /// the default client configuration. Calls that could not run are retried on other instances.
            pub fn discover(discovery: impl ::rpc_core::balance::Discover, service: &str) -> Self {
                Self::discover_with(
                    discovery,
                    service,
                    <::rpc_core::ClientConfig as ::core::default::Default>::default(),
                )
            }

            /// Like `discover`, with `config` for the connections to the instances (TLS, deadlines, retries).
            pub fn discover_with(
                discovery: impl ::rpc_core::balance::Discover,
                service: &str,
                config: ::rpc_core::ClientConfig,
            ) -> Self {
                Self::new(::rpc_core::Client::balanced(discovery.balancer(service), config))
            }

            /// This stub with a deadline for each call: the time allowed from the call's start, sent to the
            /// server as its budget.
            pub fn with_deadline(&self, deadline: ::core::time::Duration) -> Self {
                Self {
                    client: <::rpc_core::Client as ::core::clone::Clone>::clone(&self.client),
                    options: <::rpc_core::CallOptions as ::core::clone::Clone>::clone(&self.options).deadline(deadline),
                }
            }

            /// This stub with metadata sent with each call (a trace id, an auth token).
            pub fn with_metadata(&self, metadata: ::rpc_core::Metadata) -> Self {
                Self {
                    client: <::rpc_core::Client as ::core::clone::Clone>::clone(&self.client),
                    options: <::rpc_core::CallOptions as ::core::clone::Clone>::clone(&self.options).metadata(metadata),
                }
            }

            /// The underlying client.
            pub fn client(&self) -> &::rpc_core::Client {
                &self.client
            }

            #(#methods)*
        }
    }
}

fn expand_server(service: &Service<'_>) -> TokenStream {
    let vis = &service.item.vis;
    let ident = &service.item.ident;
    let client = format_ident!("{}Client", ident);
    let server = format_ident!("{}Server", ident);
    let doc = format!(
        "Server skeleton of the `{}` service: serves any `impl {ident}`; add it to an `rpc_core::Server`.",
        service.name
    );
    // The skeleton's own locals get mixed-site hygiene, so that no argument name can shadow them (a method
    // argument called `call` or `service`, say).
    let call = Ident::new("call", Span::mixed_site());
    let service_local = Ident::new("service", Span::mixed_site());
    let args = Ident::new("args", Span::mixed_site());
    let error = Ident::new("error", Span::mixed_site());
    let arms = service.methods.iter().enumerate().map(|(index, m)| {
        let id = m.id;
        let name = m.ident();
        let arg_names: Vec<_> = m.args.iter().map(|a| a.ident).collect();
        let arg_types: Vec<_> = m.args.iter().map(|a| a.ty).collect();
        let spawn = match m.output {
            Output::Result { .. } => quote!(spawn_fallible),
            _ => quote!(spawn),
        };
        quote! {
            #id => {
                let (#(#arg_names,)*) = match #call.decode::<(#(#arg_types,)*)>() {
                    ::core::result::Result::Ok(#args) => #args,
                    ::core::result::Result::Err(#error) => {
                        return #call.invalid_argument(&#client::METHODS[#index], #error)
                    }
                };
                let #service_local = <::std::sync::Arc<S> as ::core::clone::Clone>::clone(&self.service);
                #call.#spawn(&#client::METHODS[#index], async move { #service_local.#name(#(#arg_names),*).await })
            }
        }
    });
    quote! {
        #[doc = #doc]
        #vis struct #server<S> {
            service: ::std::sync::Arc<S>,
        }

        impl<S: #ident> #server<S> {
            /// Serves `service`.
            pub fn new(service: S) -> Self {
                Self { service: ::std::sync::Arc::new(service) }
            }

            /// Serves a service value that is shared elsewhere too.
            pub fn from_arc(service: ::std::sync::Arc<S>) -> Self {
                Self { service }
            }
        }

        impl<S> ::core::clone::Clone for #server<S> {
            fn clone(&self) -> Self {
                Self { service: <::std::sync::Arc<S> as ::core::clone::Clone>::clone(&self.service) }
            }
        }

        impl<S: #ident> ::rpc_core::Service for #server<S> {
            fn name(&self) -> &'static str {
                #client::SERVICE
            }

            fn methods(&self) -> &'static [::rpc_core::MethodInfo] {
                #client::METHODS
            }

            fn dispatch(&self, #call: ::rpc_core::server::Call<'_>) -> ::rpc_core::server::Dispatched {
                match #call.method_id() {
                    #(#arms)*
                    _ => #call.unimplemented(),
                }
            }
        }
    }
}
