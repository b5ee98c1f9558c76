//! `ClientConfig`: every limit and timing of a client, each with its default.

use core::time::Duration;

/// Default of [`ClientConfig::default_deadline`]: 10 s.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(10);
/// Default of [`ClientConfig::connect_timeout`]: 3 s.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Default of [`ClientConfig::backoff_min`]: 50 ms.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(50);
/// Default of [`ClientConfig::backoff_max`]: 5 s.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// Default of [`ClientConfig::max_pending_output`]: 4 MiB.
pub const DEFAULT_MAX_PENDING_OUTPUT: usize = 4 * 1024 * 1024;
/// Default of [`ClientConfig::max_retries`]: 2.
pub const DEFAULT_MAX_RETRIES: u32 = 2;
/// Default of [`ClientConfig::retry_backoff`]: 10 ms.
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// A client's limits and timings.
///
/// ```
/// use std::time::Duration;
/// let config = rpc_core::ClientConfig {
///     default_deadline: Duration::from_secs(2),
///     ..Default::default()
/// };
/// assert_eq!(config.connect_timeout, Duration::from_secs(3));
/// ```
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Deadline of a call that sets none. Default 10 s ([`DEFAULT_DEADLINE`]).
    pub default_deadline: Duration,
    /// Longest wait for a connection to be made. Default 3 s ([`DEFAULT_CONNECT_TIMEOUT`]).
    pub connect_timeout: Duration,
    /// Wait after the first failed connection attempt; it doubles with each further failure. Default 50 ms
    /// ([`DEFAULT_BACKOFF_MIN`]).
    pub backoff_min: Duration,
    /// Longest wait between connection attempts. Default 5 s ([`DEFAULT_BACKOFF_MAX`]).
    pub backoff_max: Duration,
    /// Bytes of requests queued for a connection beyond which a new call waits for the writer, until its
    /// deadline (then it fails `DeadlineExceeded`, certainly not sent). Default 4 MiB
    /// ([`DEFAULT_MAX_PENDING_OUTPUT`]).
    pub max_pending_output: usize,
    /// Frame limits; see [`rpc_codec::Config`] (default 16 MiB frames).
    pub codec: rpc_codec::Config,
    /// A balanced client's retries of one call on other instances. Default 2 ([`DEFAULT_MAX_RETRIES`]), so
    /// at most 3 attempts.
    pub max_retries: u32,
    /// Wait before a balanced client's first retry; it doubles for each further one, less up to half at
    /// random. Default 10 ms ([`DEFAULT_RETRY_BACKOFF`]).
    pub retry_backoff: Duration,
    /// Which failures of an `#[idempotent]` method's call a balanced client retries (a call that certainly
    /// did not run is retried whatever its status). Default `Unavailable` ([`super::layer::RetryOn`]).
    pub retry_on: super::layer::RetryOn,
    /// The budget all retries and hedged attempts of a balanced client share: 20% of its calls plus 10 a
    /// second by default ([`super::layer::RetryBudgetConfig`]).
    pub retry_budget: super::layer::RetryBudgetConfig,
    /// How long one attempt of a balanced client may take before it is abandoned (the server is told to stop)
    /// and, for an `#[idempotent]` method, tried on another instance; `None` (the default): an attempt may take
    /// the call's whole deadline.
    pub attempt_timeout: Option<Duration>,
    /// Hedging of a balanced client's `#[idempotent]` calls ([`super::layer::HedgeConfig`]); `None` (the
    /// default): no hedging.
    pub hedge: Option<super::layer::HedgeConfig>,
    /// How a balanced client ejects failing, slow or stalled instances
    /// ([`crate::balance::OutlierConfig`]); on by default.
    pub outliers: crate::balance::OutlierConfig,
    /// TLS for every connection (feature `tls`); `None` (the default) connects in the clear. The handshake
    /// counts against `connect_timeout`.
    #[cfg(feature = "tls")]
    pub tls: Option<crate::tls::ClientTls>,
    /// Where the client counts its calls, connections and bytes (see [`crate::Metrics`]); `None` (the
    /// default) counts nothing.
    pub metrics: Option<crate::Metrics>,
    /// The user's tower layers around every call (see [`ClientConfig::layer`]); none by default.
    pub layers: super::layer::Layers,
    /// The encodings the client offers and compresses requests with (protocol 1.1), and the smallest request it
    /// compresses. Default: none ([`crate::CompressionConfig::off`]), so that calls are those of protocol 1.0
    /// and pay nothing. Responses are decompressed within the smaller of `codec.max_decoded_len` and
    /// `codec.max_frame_len`.
    pub compression: crate::CompressionConfig,
    /// Bytes of a server's items that one stream may have in flight to this client before it reads them
    /// (protocol 1.1; each item counts its payload plus 28). Default 256 KiB
    /// ([`crate::stream::DEFAULT_STREAM_WINDOW`]); less than 64 KiB ([`crate::stream::INITIAL_CREDIT`])
    /// counts as 64 KiB. A stream whose consumer stops reading holds at most this plus one item.
    pub stream_window: u64,
}

impl Default for ClientConfig {
    fn default() -> ClientConfig {
        ClientConfig {
            default_deadline: DEFAULT_DEADLINE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
            max_pending_output: DEFAULT_MAX_PENDING_OUTPUT,
            codec: rpc_codec::Config::default(),
            max_retries: DEFAULT_MAX_RETRIES,
            retry_backoff: DEFAULT_RETRY_BACKOFF,
            retry_on: super::layer::RetryOn::default(),
            retry_budget: super::layer::RetryBudgetConfig::default(),
            attempt_timeout: None,
            hedge: None,
            outliers: crate::balance::OutlierConfig::default(),
            #[cfg(feature = "tls")]
            tls: None,
            metrics: None,
            layers: super::layer::Layers::default(),
            compression: crate::CompressionConfig::off(),
            stream_window: crate::stream::DEFAULT_STREAM_WINDOW,
        }
    }
}

impl ClientConfig {
    /// Puts `layer` around every call of the clients made with this configuration: a tower
    /// [`Layer`](tower_layer::Layer) of services of [`Request`](super::layer::Request) to
    /// [`Response`](super::layer::Response), inside the client's tracing and metrics and outside its retries
    /// (see [`super::layer`]); the first added sees the call first. A layer's error fails the call
    /// ([`super::layer::error_of`]).
    ///
    /// ```
    /// use std::time::Duration;
    /// let config = rpc_core::ClientConfig::default()
    ///     .layer(tower::timeout::TimeoutLayer::new(Duration::from_millis(200)));
    /// # let _ = config;
    /// ```
    pub fn layer<L>(mut self, layer: L) -> ClientConfig
    where
        L: tower_layer::Layer<super::layer::Stack> + Send + Sync + 'static,
        L::Service: tower_service::Service<super::layer::Request, Response = super::layer::Response>
            + Clone
            + Send
            + Sync
            + 'static,
        <L::Service as tower_service::Service<super::layer::Request>>::Error:
            Into<super::layer::BoxError>,
        <L::Service as tower_service::Service<super::layer::Request>>::Future: Send + 'static,
    {
        self.layers.push(layer);
        self
    }

    /// The wait after `failures` consecutive failed attempts: `backoff_min` doubled per failure, capped at
    /// `backoff_max`, less up to a quarter at random so that many clients do not retry in step.
    pub(crate) fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        let base = self
            .backoff_min
            .saturating_mul(1 << doublings)
            .min(self.backoff_max);
        base - base.mul_f64(crate::random::fraction() / 4.0)
    }

    /// The wait before retry number `retry` (1, 2, ...): `retry_backoff` doubled per retry, less up to half at
    /// random.
    pub(crate) fn retry_pause(&self, retry: u32) -> Duration {
        let base = self
            .retry_backoff
            .saturating_mul(1 << retry.saturating_sub(1).min(16));
        base - base.mul_f64(crate::random::fraction() / 2.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_at_most_a_quarter_off() {
        let c = ClientConfig::default();
        for (failures, base_ms) in [
            (1u32, 50u64),
            (2, 100),
            (3, 200),
            (7, 3200),
            (8, 5000),
            (30, 5000),
        ] {
            let base = Duration::from_millis(base_ms);
            for _ in 0..20 {
                let b = c.backoff(failures);
                assert!(
                    b <= base && b >= base.mul_f64(0.75),
                    "{failures} failures: {b:?} vs {base:?}"
                );
            }
        }
    }
}
