//! What a registered service says of itself: its [`ServiceDescription`] (methods, argument names and types,
//! docs, idempotency, streaming), asked of one live instance with `rpc.Reflection.describe`, each attempt within
//! [`RegistryConfig::describe_timeout`](crate::RegistryConfig::describe_timeout), at most
//! [`MAX_DESCRIBE_TRIES`] instances in turn. Descriptions are kept by service, instance address and
//! incarnation (a restarted instance may serve another version), at most
//! [`RegistryConfig::max_descriptions`](crate::RegistryConfig::max_descriptions), the oldest dropped first.
//! `GET /v1/services/{name}/methods` answers them, and the gateway looks its methods up in them. An instance's
//! refusal is quoted short and escaped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::reflect::ServiceDescription;
use rpc_core::server::reflection::ReflectionClient;
use rpc_core::{Client, ClientConfig};
use tokio::sync::Semaphore;

use crate::api::Instance;
use crate::server::config::RegistryConfig;
use crate::server::service::{Shared, shown};

/// Most instances asked for one description before the registry gives up: 3.
pub(crate) const MAX_DESCRIBE_TRIES: usize = 3;

/// Most instances being asked for a description at once, all services together: 16. More wait for their turn,
/// so that many readers of services nobody described yet cost a queue, not a connection each.
pub(crate) const MAX_DESCRIBES_AT_ONCE: usize = 16;

/// Largest answer to `describe` the registry reads, in bytes: 1 MiB (a frame past it fails the attempt). A
/// description is names and types; one this large is not one.
pub(crate) const MAX_DESCRIPTION_LEN: u32 = 1 << 20;

/// A description kept: of which service, by which instance address and incarnation.
type Key = (String, String, u64);

/// The descriptions kept, and the order they came in.
#[derive(Debug, Default)]
struct Kept {
    by_instance: HashMap<Key, Arc<ServiceDescription>>,
    order: VecDeque<Key>,
}

/// The registry's descriptions of registered services, kept, and asked for as needed.
#[derive(Debug)]
pub(crate) struct Describer {
    timeout: Duration,
    max: usize,
    kept: Mutex<Kept>,
    asking: Semaphore,
}

/// Why a service has no description.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DescribeError {
    /// No instance of the service is registered.
    #[error("no instances of service {service} are registered")]
    NotRegistered {
        /// The service, as quoted.
        service: String,
    },
    /// Instances are registered, and none that was asked described the service.
    #[error("no instance of service {service} described it: {}", .tried.join("; "))]
    NoAnswer {
        /// The service, as quoted.
        service: String,
        /// Each instance asked, and what it answered.
        tried: Vec<String>,
    },
}

impl Describer {
    /// The describer `config` asks for.
    pub(crate) fn new(config: &RegistryConfig) -> Describer {
        Describer {
            timeout: config.describe_timeout,
            max: config.max_descriptions,
            kept: Mutex::default(),
            asking: Semaphore::new(MAX_DESCRIBES_AT_ONCE),
        }
    }

    /// The description of `service`: one kept of a registered instance, or else one asked of an instance.
    pub(crate) async fn describe(
        &self,
        shared: &Shared,
        service: &str,
    ) -> Result<Arc<ServiceDescription>, DescribeError> {
        let instances = shared.instances(service).instances;
        if instances.is_empty() {
            return Err(DescribeError::NotRegistered {
                service: format!("`{}`", shown(service)),
            });
        }
        if let Some(found) = self.kept(service, &instances) {
            return Ok(found);
        }
        let _turn = self.asking.acquire().await;
        // Another request may have asked while this one waited.
        if let Some(found) = self.kept(service, &instances) {
            return Ok(found);
        }
        let mut tried = Vec::new();
        for instance in instances.iter().take(MAX_DESCRIBE_TRIES) {
            match self.ask(service, &instance.address).await {
                Ok(description) => {
                    let description = Arc::new(description);
                    self.keep(service, instance, Arc::clone(&description));
                    return Ok(description);
                }
                Err(why) => tried.push(format!("{}: {why}", shown(&instance.address))),
            }
        }
        Err(DescribeError::NoAnswer {
            service: format!("`{}`", shown(service)),
            tried,
        })
    }

    /// A description kept of one of `instances` of `service`.
    fn kept(&self, service: &str, instances: &[Instance]) -> Option<Arc<ServiceDescription>> {
        let kept = rpc_core::sync::lock(&self.kept);
        instances.iter().find_map(|i| {
            let key = (service.to_owned(), i.address.clone(), i.incarnation);
            kept.by_instance.get(&key).cloned()
        })
    }

    /// Keeps `description`, given by `instance` of `service`, dropping the oldest kept past the limit.
    fn keep(&self, service: &str, instance: &Instance, description: Arc<ServiceDescription>) {
        if self.max == 0 {
            return;
        }
        let key = (
            service.to_owned(),
            instance.address.clone(),
            instance.incarnation,
        );
        let mut kept = rpc_core::sync::lock(&self.kept);
        if kept.by_instance.insert(key.clone(), description).is_none() {
            kept.order.push_back(key);
        }
        while kept.order.len() > self.max {
            if let Some(oldest) = kept.order.pop_front() {
                kept.by_instance.remove(&oldest);
            }
        }
    }

    /// Asks the instance at `address` to describe `service`, within the timeout; why not, quoted short.
    async fn ask(&self, service: &str, address: &str) -> Result<ServiceDescription, String> {
        let config = ClientConfig {
            default_deadline: self.timeout,
            connect_timeout: self.timeout,
            max_retries: 0,
            codec: rpc_core::codec::Config {
                max_frame_len: MAX_DESCRIPTION_LEN,
                max_decoded_len: 4 * MAX_DESCRIPTION_LEN as usize,
                ..rpc_core::codec::Config::default()
            },
            ..ClientConfig::default()
        };
        let asked = async {
            let client = Client::lazy_with(address, config).await?;
            ReflectionClient::new(client)
                .describe(service.to_owned())
                .await
        };
        match tokio::time::timeout(self.timeout, asked).await {
            Err(_) => Err(format!("no answer within {:?}", self.timeout)),
            Ok(Err(e)) => Err(format!(
                "{}: {}",
                rpc_core::http::answer::status_code_name(e.code()),
                shown(e.message())
            )),
            Ok(Ok(Err(refused))) => Err(format!("refused: {}", shown(&refused))),
            Ok(Ok(Ok(description))) if description.name != service => Err(format!(
                "described service {} instead",
                shown(&description.name)
            )),
            Ok(Ok(Ok(description))) => Ok(description),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::BTreeMap;

    use super::*;

    fn instance(address: &str, incarnation: u64) -> Instance {
        Instance {
            service: String::from("Calc"),
            address: address.to_owned(),
            weight: 1,
            metadata: BTreeMap::new(),
            lease: 1,
            incarnation,
        }
    }

    fn description(docs: &'static str) -> Arc<ServiceDescription> {
        Arc::new(ServiceDescription {
            name: Cow::Borrowed("Calc"),
            docs: Cow::Borrowed(docs),
            methods: Cow::Borrowed(&[]),
        })
    }

    #[test]
    fn descriptions_are_kept_by_incarnation_and_the_oldest_dropped_past_the_limit() {
        let describer = Describer::new(&RegistryConfig {
            max_descriptions: 2,
            ..RegistryConfig::default()
        });
        let (a1, a2, b) = (instance("a:1", 1), instance("a:1", 2), instance("b:1", 1));
        describer.keep("Calc", &a1, description("first"));
        let found = describer.kept("Calc", std::slice::from_ref(&a1)).unwrap();
        assert_eq!(&*found.docs, "first");
        assert!(
            describer.kept("Calc", std::slice::from_ref(&a2)).is_none(),
            "a restarted instance is asked again"
        );
        assert!(describer.kept("Other", std::slice::from_ref(&a1)).is_none());
        describer.keep("Calc", &a2, description("second"));
        describer.keep("Calc", &b, description("third"));
        assert!(describer.kept("Calc", &[a1]).is_none(), "the oldest went");
        let found = describer.kept("Calc", &[a2, b]).unwrap();
        assert_eq!(&*found.docs, "second");
    }

    #[test]
    fn errors_say_what_was_expected_and_what_came() {
        let none = DescribeError::NotRegistered {
            service: String::from("`Nope`"),
        };
        assert_eq!(
            none.to_string(),
            "no instances of service `Nope` are registered"
        );
        let failed = DescribeError::NoAnswer {
            service: String::from("`Calc`"),
            tried: vec![
                String::from("a:1: unavailable: refused"),
                String::from("b:1: no answer within 2s"),
            ],
        };
        assert_eq!(
            failed.to_string(),
            "no instance of service `Calc` described it: a:1: unavailable: refused; b:1: no answer within 2s"
        );
    }
}
