//! `rpc.Reflection`: the service every server answers unless told not to ([`crate::ServerBuilder::reflection`]),
//! which says what the server serves: the names of its services, and each one's description
//! ([`crate::reflect::ServiceDescription`]: methods, argument names and types, docs, idempotency, streaming).
//! The CLI's `describe` and `call`, the registry's dashboard and gateway, and callers in other languages read
//! it. It is an ordinary `#[service]`, so the server's layers (authorization among them) apply to it.

use std::borrow::Cow;
use std::sync::Arc;

use crate::reflect::{MethodDescription, ServiceDescription, Streaming};

/// What a server serves, as its services describe themselves.
#[crate::service(name = "rpc.Reflection")]
pub trait Reflection {
    /// The names of the services the server serves, this one included.
    #[idempotent]
    async fn services(&self) -> Vec<String>;

    /// The description of `service`; `Err` names the services served when it is not one of them.
    #[idempotent]
    async fn describe(&self, service: String) -> Result<ServiceDescription, String>;
}

/// The server's answers: every service's description, made once when the server is built.
#[derive(Clone, Debug, Default)]
pub(crate) struct Reflector {
    services: Arc<[ServiceDescription]>,
}

impl Reflector {
    /// The reflection of `services`, and of itself.
    pub(crate) fn of(services: &[Arc<dyn crate::Service>]) -> ReflectionServer<Reflector> {
        let own = crate::Service::description(&ReflectionServer::new(Reflector::default()));
        let mut all: Vec<ServiceDescription> = services.iter().map(|s| describe(&**s)).collect();
        all.extend(own.cloned());
        ReflectionServer::new(Reflector {
            services: all.into(),
        })
    }
}

/// What `service` says of itself; for a service written by hand without a description, its methods' names and
/// ids alone.
fn describe(service: &dyn crate::Service) -> ServiceDescription {
    if let Some(description) = service.description() {
        return description.clone();
    }
    let methods: Vec<MethodDescription> = service
        .methods()
        .iter()
        .map(|m| MethodDescription {
            name: Cow::Borrowed(m.name),
            id: m.id,
            docs: Cow::Borrowed(""),
            args: Cow::Borrowed(&[]),
            returns: Cow::Borrowed("?"),
            value: Cow::Borrowed("?"),
            error: None,
            idempotent: m.idempotent,
            streaming: match service.stream_kind(m.id) {
                None => Streaming::Unary,
                Some(crate::stream::Kind::Server) => Streaming::Server,
                Some(crate::stream::Kind::Client) => Streaming::Client,
                Some(crate::stream::Kind::Bidirectional) => Streaming::Bidirectional,
            },
        })
        .collect();
    ServiceDescription {
        name: Cow::Owned(service.name().to_owned()),
        docs: Cow::Borrowed("(written by hand: no description of its arguments)"),
        methods: methods.into(),
    }
}

impl Reflection for Reflector {
    async fn services(&self) -> Vec<String> {
        self.services.iter().map(|s| s.name.to_string()).collect()
    }

    async fn describe(&self, service: String) -> Result<ServiceDescription, String> {
        match self.services.iter().find(|s| s.name == service) {
            Some(description) => Ok(description.clone()),
            None => Err(format!(
                "no service \"{}\" on this server; it serves {}",
                crate::text::quoted(&service, 128),
                self.services
                    .iter()
                    .map(|s| s.name.as_ref())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}
