//! The services a server serves, by method id: built once when the server starts, read by every request.

use std::collections::HashMap;
use std::sync::Arc;

use super::service::Service;
use crate::ids::IdMap;
use crate::method::MethodInfo;

/// A method and its service.
pub(crate) struct Entry {
    pub(crate) service: Arc<dyn Service>,
    pub(crate) method: &'static MethodInfo,
    /// How the method streams, if it does.
    pub(crate) stream: Option<crate::stream::Kind>,
}

/// Services by the ids of their methods.
pub(crate) struct Registry {
    by_id: IdMap<u32, Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("methods", &self.by_id.len())
            .finish()
    }
}

impl Registry {
    /// The registry of `services`, or the first two methods that share an id or two services that share a name.
    pub(crate) fn new(services: Vec<Arc<dyn Service>>) -> Result<Registry, super::BuildError> {
        let mut by_id: IdMap<u32, Entry> = IdMap::default();
        let mut names: HashMap<&'static str, ()> = HashMap::new();
        for service in services {
            if names.insert(service.name(), ()).is_some() {
                return Err(super::BuildError::DuplicateService {
                    name: service.name(),
                });
            }
            for method in service.methods() {
                if let Some(other) = by_id.get(&method.id) {
                    return Err(super::BuildError::MethodIdCollision {
                        id: method.id,
                        first: other.method.to_string(),
                        second: method.to_string(),
                    });
                }
                let entry = Entry {
                    stream: service.stream_kind(method.id),
                    service: Arc::clone(&service),
                    method,
                };
                by_id.insert(method.id, entry);
            }
        }
        Ok(Registry { by_id })
    }

    /// The method with this id and its service.
    pub(crate) fn method(&self, method_id: u32) -> Option<&Entry> {
        self.by_id.get(&method_id)
    }

    /// Whether a service of this name is served.
    #[cfg(feature = "http")]
    pub(crate) fn serves(&self, service: &str) -> bool {
        self.by_id.values().any(|e| e.method.service == service)
    }

    /// Every method served.
    pub(crate) fn methods(&self) -> impl Iterator<Item = &'static MethodInfo> + '_ {
        self.by_id.values().map(|e| e.method)
    }
}
