//! What a registered service says of itself: its [`ServiceDescription`] (methods, argument names and types,
//! docs, idempotency, streaming), asked of one live instance with `rpc.Reflection.describe`, each attempt within
//! [`RegistryConfig::describe_timeout`](crate::RegistryConfig::describe_timeout) and holding one of
//! [`MAX_DESCRIBES_AT_ONCE`] turns, at most [`MAX_DESCRIBE_TRIES`] instances in turn, starting with the next
//! instance each time so that one broken instance is not always asked first. Descriptions are kept by service,
//! instance address and incarnation (a restarted instance may serve another version), at most
//! [`RegistryConfig::max_descriptions`](crate::RegistryConfig::max_descriptions), the oldest dropped first; an
//! instance that could not describe is not asked again for [`FAILURE_KEPT`], as many failures kept as
//! descriptions. A description of more than [`MAX_DESCRIBED_METHODS`] methods is refused. `GET
//! /v1/services/{name}/methods` answers them, and the gateway looks its methods up in them. An instance's
//! refusal is quoted short and escaped.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rpc_core::reflect::ServiceDescription;
use rpc_core::server::reflection::ReflectionClient;
use rpc_core::{Client, ClientConfig};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::api::Instance;
use crate::server::config::RegistryConfig;
use crate::server::service::{Shared, shown};

/// Most instances asked for one description before the registry gives up: 3.
pub(crate) const MAX_DESCRIBE_TRIES: usize = 3;

/// Most instances being asked for a description at once, all services together: 16. Each attempt takes a turn
/// and gives it back when it ends, so that many readers of services nobody described yet cost a queue, not a
/// connection each, and a broken service holds one turn at a time, not three attempts' worth.
pub(crate) const MAX_DESCRIBES_AT_ONCE: usize = 16;

/// Largest answer to `describe` the registry reads, in bytes: 1 MiB (a frame past it fails the attempt). A
/// description is names and types; one this large is not one.
pub(crate) const MAX_DESCRIPTION_LEN: u32 = 1 << 20;

/// Most methods of one description: 1,024; one with more is refused. The gateway interns the methods it calls
/// for the process's life (`rpc_core::MethodInfo::intern`, 65,536 in all), so one service must not be able to
/// take them all.
pub(crate) const MAX_DESCRIBED_METHODS: usize = 1024;

/// How long an instance that could not describe its service is not asked again: 5 s (its incarnation
/// changing, a restart, asks again at once). Requests for a broken service meanwhile are answered the failure
/// kept.
pub(crate) const FAILURE_KEPT: Duration = Duration::from_secs(5);

/// A description kept: of which service, by which instance address and incarnation.
type Key = (String, String, u64);

/// The descriptions and failures kept, and the order they came in.
#[derive(Debug, Default)]
struct Kept {
    by_instance: HashMap<Key, Arc<ServiceDescription>>,
    order: VecDeque<Key>,
    /// Why an instance did not describe, and when.
    failed: HashMap<Key, (Instant, String)>,
    failed_order: VecDeque<Key>,
}

/// The registry's descriptions of registered services, kept, and asked for as needed.
#[derive(Debug)]
pub(crate) struct Describer {
    timeout: Duration,
    max: usize,
    kept: Mutex<Kept>,
    asking: Semaphore,
    /// Where the next description starts among a service's instances.
    next: AtomicUsize,
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

/// The key of `instance` of `service`.
fn key(service: &str, instance: &Instance) -> Key {
    (
        service.to_owned(),
        instance.address.clone(),
        instance.incarnation,
    )
}

impl Describer {
    /// The describer `config` asks for.
    pub(crate) fn new(config: &RegistryConfig) -> Describer {
        Describer {
            timeout: config.describe_timeout,
            max: config.max_descriptions,
            kept: Mutex::default(),
            asking: Semaphore::new(MAX_DESCRIBES_AT_ONCE),
            next: AtomicUsize::new(0),
        }
    }

    /// The description of `service`: one kept of a registered instance, or else one asked of up to
    /// [`MAX_DESCRIBE_TRIES`] instances that did not fail lately, from the next in turn.
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
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut tried = Vec::new();
        let mut asked = 0;
        for instance in rotated(&instances, start) {
            if asked == MAX_DESCRIBE_TRIES {
                break;
            }
            if let Some(why) = self.failed(service, instance) {
                tried.push(format!("{}: {why}", shown(&instance.address)));
                continue;
            }
            asked += 1;
            let Ok(_turn) = self.asking.acquire().await else {
                break;
            };
            // Another request may have asked while this one waited.
            if let Some(found) = self.kept(service, &instances) {
                return Ok(found);
            }
            if let Some(why) = self.failed(service, instance) {
                tried.push(format!("{}: {why}", shown(&instance.address)));
                continue;
            }
            match self.ask(service, &instance.address).await {
                Ok(description) => {
                    let description = Arc::new(description);
                    self.keep(service, instance, Arc::clone(&description));
                    return Ok(description);
                }
                Err(why) => {
                    self.keep_failure(service, instance, &why);
                    tried.push(format!("{}: {why}", shown(&instance.address)));
                }
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
        instances
            .iter()
            .find_map(|i| kept.by_instance.get(&key(service, i)).cloned())
    }

    /// Why `instance` of `service` did not describe it, if it failed less than [`FAILURE_KEPT`] ago.
    fn failed(&self, service: &str, instance: &Instance) -> Option<String> {
        let kept = rpc_core::sync::lock(&self.kept);
        let (at, why) = kept.failed.get(&key(service, instance))?;
        let ago = at.elapsed();
        (ago < FAILURE_KEPT).then(|| format!("{why} (asked {} ms ago)", ago.as_millis()))
    }

    /// Keeps `description`, given by `instance` of `service`, dropping the oldest kept past the limit.
    fn keep(&self, service: &str, instance: &Instance, description: Arc<ServiceDescription>) {
        if self.max == 0 {
            return;
        }
        let key = key(service, instance);
        let mut kept = rpc_core::sync::lock(&self.kept);
        if kept.failed.remove(&key).is_some() {
            kept.failed_order.retain(|k| k != &key);
        }
        if kept.by_instance.insert(key.clone(), description).is_none() {
            kept.order.push_back(key);
        }
        while kept.order.len() > self.max {
            if let Some(oldest) = kept.order.pop_front() {
                kept.by_instance.remove(&oldest);
            }
        }
    }

    /// Keeps why `instance` of `service` did not describe it, dropping the oldest failure past the limit.
    fn keep_failure(&self, service: &str, instance: &Instance, why: &str) {
        if self.max == 0 {
            return;
        }
        let key = key(service, instance);
        let mut kept = rpc_core::sync::lock(&self.kept);
        let now = Instant::now();
        if kept
            .failed
            .insert(key.clone(), (now, why.to_owned()))
            .is_none()
        {
            kept.failed_order.push_back(key);
        }
        while kept.failed_order.len() > self.max {
            if let Some(oldest) = kept.failed_order.pop_front() {
                kept.failed.remove(&oldest);
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
            Ok(Ok(Ok(description))) if description.methods.len() > MAX_DESCRIBED_METHODS => {
                Err(format!(
                    "described {} methods, over the registry's limit of {MAX_DESCRIBED_METHODS}",
                    description.methods.len()
                ))
            }
            Ok(Ok(Ok(description))) => Ok(description),
        }
    }
}

/// `instances` from the one at `start` (modulo their count) round to the one before it.
fn rotated(instances: &[Instance], start: usize) -> impl Iterator<Item = &Instance> {
    let at = start % instances.len().max(1);
    instances[at..].iter().chain(&instances[..at])
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

    #[tokio::test(start_paused = true)]
    async fn a_failure_is_kept_for_its_time_by_incarnation_and_a_description_clears_it() {
        let describer = Describer::new(&RegistryConfig::default());
        let (a1, a2) = (instance("a:1", 1), instance("a:1", 2));
        describer.keep_failure("Calc", &a1, "unavailable: refused");
        let why = describer.failed("Calc", &a1).unwrap();
        assert!(why.starts_with("unavailable: refused (asked "), "{why}");
        assert!(
            describer.failed("Calc", &a2).is_none(),
            "a restart is asked"
        );
        assert!(describer.failed("Other", &a1).is_none());
        tokio::time::advance(FAILURE_KEPT).await;
        assert!(describer.failed("Calc", &a1).is_none(), "asked again after");
        describer.keep_failure("Calc", &a1, "unavailable: refused");
        describer.keep("Calc", &a1, description("came back"));
        assert!(describer.failed("Calc", &a1).is_none());
    }

    #[test]
    fn failures_kept_are_as_many_as_descriptions_at_most() {
        let describer = Describer::new(&RegistryConfig {
            max_descriptions: 2,
            ..RegistryConfig::default()
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _in = runtime.enter();
        for n in 0..5 {
            describer.keep_failure("Calc", &instance(&format!("a:{n}"), 1), "refused");
        }
        let kept = rpc_core::sync::lock(&describer.kept);
        assert_eq!((kept.failed.len(), kept.failed_order.len()), (2, 2));
        assert!(kept.failed.contains_key(&key("Calc", &instance("a:4", 1))));
    }

    #[test]
    fn each_description_starts_from_the_next_instance() {
        let instances: Vec<Instance> = (0..4).map(|n| instance(&format!("a:{n}"), 1)).collect();
        let order = |start| -> Vec<&str> {
            rotated(&instances, start)
                .map(|i| i.address.as_str())
                .collect()
        };
        assert_eq!(order(0), ["a:0", "a:1", "a:2", "a:3"]);
        assert_eq!(order(1), ["a:1", "a:2", "a:3", "a:0"]);
        assert_eq!(order(6), ["a:2", "a:3", "a:0", "a:1"]);
        assert_eq!(rotated(&[], 3).count(), 0);
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
