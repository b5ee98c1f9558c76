//! Code generation: the trait itself (methods become `fn ... -> impl Future + Send`), the client stub
//! `<Trait>Client` and the server skeleton `<Trait>Server`. Generated code names everything by absolute path
//! (`::rpc_core::...`, `::core::...`, `::std::...`) and calls the service's methods by fully qualified path, so
//! it compiles under `#![no_implicit_prelude]` and whatever the methods are called. Each argument and result
//! type goes through a probe of `rpc_core::__private` spanned on the type's tokens (see there why).

use proc_macro2::{Ident, Span, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::Type;
use syn::spanned::Spanned;

use crate::ast::{Items, Method, Output, Service, Wire};

/// The inherent items of `<Trait>Client` besides its methods, each a shortcut to the `rpc_core::Stub` item of
/// the same name, and left out when a method of the service has that name.
pub(crate) const CLIENT_ITEMS: [&str; 11] = [
    "SERVICE",
    "METHODS",
    "new",
    "connect",
    "connect_unix",
    "discover",
    "discover_with",
    "with_deadline",
    "with_metadata",
    "with_hash_key",
    "client",
];

pub(crate) fn expand(service: &Service<'_>) -> TokenStream {
    let the_trait = expand_trait(service);
    let checks = expand_checks(service);
    let client = expand_client(service);
    let server = expand_server(service);
    quote! {
        #the_trait
        #checks
        #client
        #server
    }
}

/// The type a method resolves to, as written (`()` when it returns nothing); a stream as one the server's task
/// can send (`Send`; it may borrow the service).
fn return_type(m: &Method<'_>) -> TokenStream {
    if let Output::Stream(items) = &m.output {
        let item = items.ty;
        return quote!(impl ::rpc_core::Stream<Item = #item> + ::core::marker::Send);
    }
    match &m.sig().output {
        syn::ReturnType::Default => quote!(()),
        syn::ReturnType::Type(_, ty) => quote!(#ty),
    }
}

/// The payload codec of the service, as a value.
fn codec_value(service: &Service<'_>) -> TokenStream {
    match &service.codec {
        None => quote!(::rpc_core::codec::Bincode),
        Some(codec) => quote!(<#codec as ::core::default::Default>::default()),
    }
}

/// The codec of a stream's items (protocol 1.1): `Result` items with the application's error apart.
fn items_codec(service: &Service<'_>, items: &Items<'_>) -> TokenStream {
    let codec = codec_value(service);
    match items.fallible {
        false => quote!(::rpc_core::stream::Plain(#codec)),
        true => quote!(::rpc_core::stream::Fallible(#codec)),
    }
}

/// The codec of the one answer of a method that takes a stream.
fn answer_codec(service: &Service<'_>, output: &Output<'_>) -> TokenStream {
    let codec = codec_value(service);
    match output {
        Output::Result { .. } => quote!(::rpc_core::stream::Fallible(#codec)),
        _ => quote!(::rpc_core::stream::Plain(#codec)),
    }
}

/// The client method of a method that streams: it opens the stream and returns it (or, for a method that takes
/// a stream and returns a value, awaits that value).
fn client_stream_method(service: &Service<'_>, m: &Method<'_>, index: usize) -> TokenStream {
    let attrs = &m.attrs;
    let name = m.ident();
    let args = Ident::new("args", Span::mixed_site());
    let streaming = Ident::new("streaming", Span::mixed_site());
    let params = m.args.iter().map(|a| {
        let (i, t) = (a.ident, a.ty);
        match &a.stream {
            Some(items) => {
                let item = items.ty;
                quote!(#i: impl ::rpc_core::Stream<Item = #item> + ::core::marker::Send + 'static)
            }
            None => quote!(#i: #t),
        }
    });
    let wire_args = m
        .args
        .iter()
        .filter(|a| a.stream.is_none())
        .map(|a| to_wire(a.ty, a.wire, a.ident));
    let codec = codec_value(service);
    let (ret, receiving) = match &m.output {
        Output::Stream(items) => {
            let item = items.ty;
            (
                quote!(::rpc_core::Streaming<#item>),
                items_codec(service, items),
            )
        }
        Output::Unit => (quote!(()), answer_codec(service, &m.output)),
        Output::Result { ok, err } => {
            let (ok, err) = (ok.0, err.0);
            (
                quote!(::core::result::Result<#ok, #err>),
                answer_codec(service, &m.output),
            )
        }
        Output::Value(ty, _) | Output::Alias(ty) => (quote!(#ty), answer_codec(service, &m.output)),
    };
    let common = quote! {
        &self.client, &#codec, &<Self as ::rpc_core::Stub>::METHODS[#index], &#args, #receiving
    };
    let open = match m.sends() {
        None => quote!(::rpc_core::Client::open_stream(#common, &self.options).await?),
        Some((_, arg, items)) => {
            let (ident, sending) = (arg.ident, items_codec(service, &items));
            quote! {
                ::rpc_core::Client::open_stream_sending(#common, #ident, #sending, &self.options).await?
            }
        }
    };
    let finish = match &m.output {
        Output::Stream(_) => quote!(::core::result::Result::Ok(#streaming)),
        _ => quote!(::rpc_core::Streaming::answer(#streaming).await),
    };
    quote! {
        #(#attrs)*
        pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#ret, ::rpc_core::RpcError> {
            let #args = (#(#wire_args,)*);
            let #streaming = #open;
            #finish
        }
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

/// A plain result type must not be a `Result` under another name (its `Err` would go back as a value).
fn expand_checks(service: &Service<'_>) -> TokenStream {
    let checks = service.methods.iter().filter_map(|m| match m.output {
        Output::Value(ty, Wire::Serde) => {
            let span = ty.span();
            Some(quote_spanned! {span=>
                const _: () = {
                    #[allow(unused_imports)]
                    use ::rpc_core::__private::NotAResult as _;
                    <::rpc_core::__private::Plain<#ty>>::CHECK
                };
            })
        }
        _ => None,
    });
    quote!(#(#checks)*)
}

/// The probe of `ty`, spanned on the type, taking `flow` (`Val(value)` or `Back(wire)`).
fn travel(ty: &Type, wire: Wire, flow: TokenStream) -> TokenStream {
    let span = ty.span();
    match wire {
        Wire::Serde => quote_spanned! {span=>
            ::rpc_core::__private::RpcType::<#ty>::new().travel(#flow)
        },
        Wire::Bytes => quote_spanned! {span=>
            ::rpc_core::__private::RpcBytes::<#ty>::new().travel(#flow)
        },
    }
}

/// `value`, of type `ty`, in its wire form.
fn to_wire(ty: &Type, wire: Wire, value: &Ident) -> TokenStream {
    travel(ty, wire, quote!(::rpc_core::__private::Val(#value)))
}

/// The value of type `ty` whose wire form `value` is.
fn from_wire(ty: &Type, wire: Wire, value: &Ident) -> TokenStream {
    travel(ty, wire, quote!(::rpc_core::__private::Back(#value)))
}

/// The probe of a result type named `Result` with one argument, spanned on the type, taking `flow`.
fn travel_alias(ty: &Type, flow: TokenStream) -> TokenStream {
    let span = ty.span();
    quote_spanned! {span=>
        ::rpc_core::__private::RpcResult::<#ty>::new().travel(#flow)
    }
}

fn expand_client(service: &Service<'_>) -> TokenStream {
    let vis = &service.item.vis;
    let ident = &service.item.ident;
    let client = format_ident!("{}Client", ident);
    let name = &service.name;
    let infos = service.methods.iter().map(|m| {
        let method = &m.name;
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
         `Result<T, RpcError>`. Cheap to clone; clones share the connection. Its constructors and options are \
         those of `rpc_core::Stub`."
    );
    let taken = |item: &str| service.methods.iter().any(|m| m.name == item);
    let shortcuts = CLIENT_ITEMS
        .iter()
        .filter(|item| !taken(item))
        .map(|item| client_shortcut(item));
    let args = Ident::new("args", Span::mixed_site());
    let value = Ident::new("value", Span::mixed_site());
    let error = Ident::new("error", Span::mixed_site());
    let failed = Ident::new("failed", Span::mixed_site());
    let methods = service.methods.iter().enumerate().map(|(index, m)| {
        if m.stream_kind().is_some() {
            return client_stream_method(service, m, index);
        }
        let attrs = &m.attrs;
        let name = m.ident();
        let params = m.args.iter().map(|a| {
            let (i, t) = (a.ident, a.ty);
            quote!(#i: #t)
        });
        let wire_args = m.args.iter().map(|a| to_wire(a.ty, a.wire, a.ident));
        let common = quote! {
            &self.client, &<Self as ::rpc_core::Stub>::METHODS[#index], &#args, &self.options
        };
        // With a codec of its own, the service's calls go through the `_with` entry points, with that codec.
        let (call_fn, call_unit, call_fallible_fn, common) = match &service.codec {
            None => (
                quote!(call),
                quote!(call::<_, ()>),
                quote!(call_fallible),
                common,
            ),
            Some(codec) => (
                quote!(call_with),
                quote!(call_with::<_, _, ()>),
                quote!(call_fallible_with),
                quote! {
                    &self.client, &<#codec as ::core::default::Default>::default(),
                    &<Self as ::rpc_core::Stub>::METHODS[#index], &#args, &self.options
                },
            ),
        };
        // The probes of the result tell `call` what to decode.
        let (ret, call) = match &m.output {
            Output::Unit => (
                quote!(()),
                quote!(::rpc_core::Client::#call_unit(#common).await),
            ),
            Output::Value(ty, wire) => {
                let back = from_wire(ty, *wire, &value);
                (
                    quote!(#ty),
                    quote! {
                        match ::rpc_core::Client::#call_fn(#common).await {
                            ::core::result::Result::Ok(#value) => ::core::result::Result::Ok(#back),
                            ::core::result::Result::Err(#failed) => ::core::result::Result::Err(#failed),
                        }
                    },
                )
            }
            Output::Result { ok, err } => {
                let ok_back = from_wire(ok.0, ok.1, &value);
                let err_back = from_wire(err.0, err.1, &error);
                let (ok_ty, err_ty) = (ok.0, err.0);
                (
                    quote!(::core::result::Result<#ok_ty, #err_ty>),
                    quote! {
                        match ::rpc_core::Client::#call_fallible_fn(#common).await {
                            ::core::result::Result::Ok(::core::result::Result::Ok(#value)) => {
                                ::core::result::Result::Ok(::core::result::Result::Ok(#ok_back))
                            }
                            ::core::result::Result::Ok(::core::result::Result::Err(#error)) => {
                                ::core::result::Result::Ok(::core::result::Result::Err(#err_back))
                            }
                            ::core::result::Result::Err(#failed) => ::core::result::Result::Err(#failed),
                        }
                    },
                )
            }
            Output::Alias(ty) => {
                let back = travel_alias(ty, quote!(::rpc_core::__private::Back(#value)));
                (
                    quote!(#ty),
                    quote! {
                        match ::rpc_core::Client::#call_fallible_fn(#common).await {
                            ::core::result::Result::Ok(#value) => ::core::result::Result::Ok(#back),
                            ::core::result::Result::Err(#failed) => ::core::result::Result::Err(#failed),
                        }
                    },
                )
            }
            Output::Stream(_) => unreachable!("streaming methods are expanded apart"),
        };
        quote! {
            #(#attrs)*
            pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#ret, ::rpc_core::RpcError> {
                let #args = (#(#wire_args,)*);
                #call
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

        impl ::rpc_core::Stub for #client {
            const SERVICE: &'static str = #name;
            const METHODS: &'static [::rpc_core::MethodInfo] = &[#(#infos),*];

            fn from_parts(client: ::rpc_core::Client, options: ::rpc_core::CallOptions) -> Self {
                Self { client, options }
            }

            fn client(&self) -> &::rpc_core::Client {
                &self.client
            }

            fn options(&self) -> &::rpc_core::CallOptions {
                &self.options
            }
        }

        impl #client {
            #(#shortcuts)*

            #(#methods)*
        }
    }
}

/// The inherent shortcut `item` of a client to its `rpc_core::Stub` item.
fn client_shortcut(item: &str) -> TokenStream {
    match item {
        "SERVICE" => quote! {
            /// The service's name on the wire (`rpc_core::Stub::SERVICE`).
            pub const SERVICE: &'static str = <Self as ::rpc_core::Stub>::SERVICE;
        },
        "METHODS" => quote! {
            /// The service's methods, with their method ids (`rpc_core::Stub::METHODS`).
            pub const METHODS: &'static [::rpc_core::MethodInfo] = <Self as ::rpc_core::Stub>::METHODS;
        },
        "new" => quote! {
            /// A stub calling through `client` (`rpc_core::Stub::new`).
            pub fn new(client: ::rpc_core::Client) -> Self {
                <Self as ::rpc_core::Stub>::new(client)
            }
        },
        "connect" => quote! {
            /// Connects to a server at `addr` with the default client configuration (`rpc_core::Stub::connect`).
            pub async fn connect(
                addr: impl ::rpc_core::ToSocketAddrs,
            ) -> ::core::result::Result<Self, ::rpc_core::RpcError> {
                <Self as ::rpc_core::Stub>::connect(addr).await
            }
        },
        "connect_unix" => quote! {
            /// Connects to a server listening on the Unix domain socket at `path`, with the default client
            /// configuration (`rpc_core::Stub::connect_unix`; unix only).
            #[cfg(unix)]
            pub async fn connect_unix(
                path: impl ::core::convert::AsRef<::std::path::Path>,
            ) -> ::core::result::Result<Self, ::rpc_core::RpcError> {
                <Self as ::rpc_core::Stub>::connect_unix(path).await
            }
        },
        "discover" => quote! {
            /// A stub whose calls are spread over the instances of `service` that `discovery` knows, with the
            /// default client configuration (`rpc_core::Stub::discover`).
            pub fn discover(discovery: impl ::rpc_core::balance::Discover, service: &str) -> Self {
                <Self as ::rpc_core::Stub>::discover(discovery, service)
            }
        },
        "discover_with" => quote! {
            /// Like `discover`, with `config` for the connections to the instances
            /// (`rpc_core::Stub::discover_with`).
            pub fn discover_with(
                discovery: impl ::rpc_core::balance::Discover,
                service: &str,
                config: ::rpc_core::ClientConfig,
            ) -> Self {
                <Self as ::rpc_core::Stub>::discover_with(discovery, service, config)
            }
        },
        "with_deadline" => quote! {
            /// This stub with a deadline for each call, sent to the server as its budget
            /// (`rpc_core::Stub::with_deadline`).
            pub fn with_deadline(&self, deadline: ::core::time::Duration) -> Self {
                <Self as ::rpc_core::Stub>::with_deadline(self, deadline)
            }
        },
        "with_metadata" => quote! {
            /// This stub with `metadata` merged by key into what it sends with each call
            /// (`rpc_core::Stub::with_metadata`).
            pub fn with_metadata(&self, metadata: ::rpc_core::Metadata) -> Self {
                <Self as ::rpc_core::Stub>::with_metadata(self, metadata)
            }
        },
        "with_hash_key" => quote! {
            /// This stub with `key` as the key of each call, which a hashing balancing policy maps to an
            /// instance (`rpc_core::Stub::with_hash_key`).
            pub fn with_hash_key(&self, key: impl ::core::convert::AsRef<[u8]>) -> Self {
                <Self as ::rpc_core::Stub>::with_hash_key(self, key)
            }
        },
        "client" => quote! {
            /// The underlying client (`rpc_core::Stub::client`).
            pub fn client(&self) -> &::rpc_core::Client {
                <Self as ::rpc_core::Stub>::client(self)
            }
        },
        other => unreachable!("`{other}` is not in CLIENT_ITEMS"),
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
    // The skeleton's own locals get mixed-site hygiene, so that nothing of the user's can shadow them.
    let call = Ident::new("call", Span::mixed_site());
    let service_local = Ident::new("service", Span::mixed_site());
    let decoded = Ident::new("decoded", Span::mixed_site());
    let error = Ident::new("error", Span::mixed_site());
    let out = Ident::new("out", Span::mixed_site());
    let value = Ident::new("value", Span::mixed_site());
    let methods = quote!(<#client as ::rpc_core::Stub>::METHODS);
    let arms = service.methods.iter().enumerate().map(|(index, m)| {
        let id = m.id;
        let name = m.ident();
        let locals: Vec<_> = (0..m.args.len())
            .map(|i| Ident::new(&format!("arg{i}"), Span::mixed_site()))
            .collect();
        // The probes of the arguments tell `decode` what to decode; the client's stream, if any, is not in the
        // payload but read from the call.
        let passed: Vec<_> = m
            .args
            .iter()
            .zip(&locals)
            .map(|(a, local)| match a.stream {
                Some(_) => quote!(#local),
                None => from_wire(a.ty, a.wire, local),
            })
            .collect();
        let decoded_locals: Vec<_> = m
            .args
            .iter()
            .zip(&locals)
            .filter(|(a, _)| a.stream.is_none())
            .map(|(_, local)| local)
            .collect();
        let incoming = m.sends().map(|(i, _, items)| {
            let local = &locals[i];
            let codec = items_codec(service, &items);
            quote! {
                let #local = match ::rpc_core::server::Call::incoming(&#call, #codec) {
                    ::core::result::Result::Ok(#local) => #local,
                    ::core::result::Result::Err(#error) => return #error,
                };
            }
        });
        let (spawn, answer) = match &m.output {
            Output::Unit => (quote!(spawn), quote!(#out)),
            Output::Value(ty, wire) => (quote!(spawn), to_wire(ty, *wire, &out)),
            Output::Result { ok, err } => {
                let ok = to_wire(ok.0, ok.1, &value);
                let err = to_wire(err.0, err.1, &error);
                (
                    quote!(spawn_fallible),
                    quote! {
                        match #out {
                            ::core::result::Result::Ok(#value) => ::core::result::Result::Ok(#ok),
                            ::core::result::Result::Err(#error) => ::core::result::Result::Err(#err),
                        }
                    },
                )
            }
            Output::Alias(ty) => (
                quote!(spawn_fallible),
                travel_alias(ty, quote!(::rpc_core::__private::Val(#out))),
            ),
            Output::Stream(_) => (quote!(spawn_stream), quote!(#out)),
        };
        // With a codec of its own, the service decodes and answers through the `_with` entry points.
        // The names of the arguments in the payload: a call in JSON (protocol 1.2) has them as its keys.
        let names: Vec<String> = m
            .args
            .iter()
            .filter(|a| a.stream.is_none())
            .map(|a| syn::ext::IdentExt::unraw(a.ident).to_string())
            .collect();
        let (spawn, codec_arg, decode) = match &service.codec {
            None => (
                spawn,
                quote!(),
                quote!(::rpc_core::server::Call::decode_named(&#call, &[#(#names),*])),
            ),
            Some(codec) => (
                format_ident!("{}_with", spawn.to_string()).into_token_stream(),
                quote!(<#codec as ::core::default::Default>::default(),),
                quote! {
                    ::rpc_core::server::Call::decode_named_with(
                        &#call,
                        &<#codec as ::core::default::Default>::default(),
                        &[#(#names),*],
                    )
                },
            ),
        };
        let start = match &m.output {
            Output::Stream(items) => {
                let codec = items_codec(service, items);
                let sink = Ident::new("sink", Span::mixed_site());
                quote! {
                    ::rpc_core::server::Call::spawn_stream(
                        #call,
                        #codec,
                        &#methods[#index],
                        move |#sink| async move {
                            let #out = <S as #ident>::#name(&*#service_local, #(#passed),*).await;
                            #sink.send(#out).await
                        },
                    )
                }
            }
            _ => quote! {
                #call.#spawn(#codec_arg &#methods[#index], async move {
                    let #out = <S as #ident>::#name(&*#service_local, #(#passed),*).await;
                    #answer
                })
            },
        };
        quote! {
            #id => {
                let (#(#decoded_locals,)*) = match #decode {
                    ::core::result::Result::Ok(#decoded) => #decoded,
                    ::core::result::Result::Err(#error) => {
                        return #call.invalid_argument(&#methods[#index], #error)
                    }
                };
                #incoming
                let #service_local = <::std::sync::Arc<S> as ::core::clone::Clone>::clone(&self.service);
                #start
            }
        }
    });
    let streaming: Vec<_> = service
        .methods
        .iter()
        .filter_map(|m| {
            let kind = Ident::new(m.stream_kind()?, Span::call_site());
            let id = m.id;
            Some(quote!(#id => ::core::option::Option::Some(::rpc_core::stream::Kind::#kind),))
        })
        .collect();
    let description = crate::describe::description_fn(service);
    let stream_kind = (!streaming.is_empty()).then(|| {
        quote! {
            fn stream_kind(&self, method_id: u32) -> ::core::option::Option<::rpc_core::stream::Kind> {
                match method_id {
                    #(#streaming)*
                    _ => ::core::option::Option::None,
                }
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
                <#client as ::rpc_core::Stub>::SERVICE
            }

            fn methods(&self) -> &'static [::rpc_core::MethodInfo] {
                #methods
            }

            fn dispatch(&self, #call: ::rpc_core::server::Call<'_>) -> ::rpc_core::server::Dispatched {
                match #call.method_id() {
                    #(#arms)*
                    _ => #call.unimplemented(),
                }
            }

            #stream_kind

            #description
        }
    }
}
