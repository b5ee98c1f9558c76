//! The services a server serves, by method id: built once when the server starts, read by every request.

use std::collections::HashMap;
use std::sync::Arc;

use super::service::Service;
use crate::ids::IdMap;

/// Services by the ids of their methods.
pub(crate) struct Registry {
    by_id: IdMap<u32, Arc<dyn Service>>,
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
        let mut by_id: IdMap<u32, Arc<dyn Service>> = IdMap::default();
        let mut names: HashMap<&'static str, ()> = HashMap::new();
        for service in services {
            if names.insert(service.name(), ()).is_some() {
                return Err(super::BuildError::DuplicateService {
                    name: service.name(),
                });
            }
            for method in service.methods() {
                if let Some(other) = by_id.get(&method.id) {
                    let other = other.methods().iter().find(|m| m.id == method.id);
                    return Err(super::BuildError::MethodIdCollision {
                        id: method.id,
                        first: other.map_or_else(String::new, ToString::to_string),
                        second: method.to_string(),
                    });
                }
                by_id.insert(method.id, Arc::clone(&service));
            }
        }
        Ok(Registry { by_id })
    }

    /// The service that has a method with this id.
    pub(crate) fn service(&self, method_id: u32) -> Option<&dyn Service> {
        self.by_id.get(&method_id).map(|s| &**s)
    }
}
