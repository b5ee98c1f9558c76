//! A client spread over the instances of a service: a [`Balancer`] picks the instance of each call (its
//! policy sees the call's method and metadata, and hears its outcome and latency), each instance has its own
//! direct client, and a call that could not be served is tried again on another instance when its retry layer
//! (`layer/retry.rs`) allows.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rpc_codec::Status;
use tokio::time::Instant;

use super::ClientConfig;
use super::connection::Reply;
use super::direct::{Direct, Target};
use super::layer::retry::Retry;
use crate::balance::{Balancer, CallInfo, Outcome};
use crate::error::RpcError;
use crate::payload::Payload;

/// The instances' clients and the balancer that chooses among them.
pub(crate) struct Balanced {
    balancer: Balancer,
    pub(crate) config: ClientConfig,
    /// One direct client per instance address, made on first use.
    pool: Mutex<HashMap<Arc<str>, Arc<Direct>>>,
}

impl std::fmt::Debug for Balanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let instances = self.pool.lock().map(|p| p.len()).unwrap_or(0);
        f.debug_struct("Balanced")
            .field("instances_contacted", &instances)
            .finish_non_exhaustive()
    }
}

impl Balanced {
    pub(crate) fn new(balancer: Balancer, config: ClientConfig) -> Balanced {
        Balanced {
            balancer,
            config,
            pool: Mutex::new(HashMap::new()),
        }
    }

    fn client_for(&self, address: &Arc<str>) -> Arc<Direct> {
        let mut pool = crate::sync::lock(&self.pool);
        let direct = pool.entry(Arc::clone(address)).or_insert_with(|| {
            let target = match address.parse() {
                Ok(addr) => Target::Resolved(vec![addr]),
                Err(_) => Target::Name(address.to_string()),
            };
            Arc::new(Direct::new(target, self.config.clone()))
        });
        Arc::clone(direct)
    }

    pub(crate) async fn round_trip<P: Payload + ?Sized>(
        &self,
        call: CallInfo<'_>,
        args: &P,
        deadline: Instant,
        now: Instant,
        span: Option<&tracing::Span>,
    ) -> Result<Reply, RpcError> {
        let (method, metadata) = (call.method, call.metadata);
        let mut now = now;
        let mut tried: Vec<Arc<str>> = Vec::new();
        let mut last_error = None;
        let mut retry = Retry::new(&self.config, method, deadline);
        while let Some(picked) = self.balancer.pick(&call, &tried) {
            let address = Arc::clone(picked.address());
            // Dropped with this future before the reply, `picked` reports the call as cancelled.
            let result = self
                .client_for(&address)
                .round_trip(method, args, metadata, deadline, now, span)
                .await;
            let error = match result {
                Ok(reply) => {
                    picked.finish(Outcome::Success);
                    return Ok(reply);
                }
                Err(e) => e,
            };
            picked.finish(outcome_of(&error));
            let Some(pause) = retry.after(&error) else {
                return Err(error);
            };
            tried.push(address);
            last_error = Some(error);
            tokio::time::sleep(pause).await;
            now = Instant::now();
        }
        Err(last_error.unwrap_or_else(|| {
            let message = format!("no instance of {} is available", method.service);
            RpcError::not_processed(Status::Unavailable, message)
        }))
    }
}

/// What an error says about the instance that returned it.
fn outcome_of(error: &RpcError) -> Outcome {
    match error.code() {
        Status::Unavailable => Outcome::Unreachable,
        Status::DeadlineExceeded
        | Status::Internal
        | Status::ResourceExhausted
        | Status::Unknown => Outcome::Failure,
        // The instance answered; the call itself was wrong.
        _ => Outcome::Success,
    }
}
