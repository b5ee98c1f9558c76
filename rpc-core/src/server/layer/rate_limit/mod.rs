//! [`RateLimit`]: a token bucket per method and per caller. Each caller of a limited method starts with a
//! full burst; a call takes a token; tokens come back at the method's rate. A call that finds no token is
//! refused at once with `ResourceExhausted` and a retry-after of the time until one is back (its handler never
//! sees it). The buckets of all connections are shared, and bounded: at most
//! [`RateLimitConfig::max_callers`] of them.
//!
//! Who the caller is, first found first: the name an [`super::Authorize`] layer before this one found (its
//! token's name, else its client certificate's); else the first name of the client's verified certificate
//! (mutual TLS); else the value of the metadata entry [`RateLimitConfig::caller_key`], if set (for callers
//! behind a trusted proxy that names them: a caller may set any value); else the peer's IP address (all the
//! connections of one host share a bucket; all those over Unix sockets, one).

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_codec::Status;
use tokio::time::Instant;
use tower_layer::Layer;
use tower_service::Service;

use super::super::request::Request;
use super::super::response::Response;
use super::BoxError;
use super::only::Either;
use super::per_method::PerMethod;
use crate::method::MethodInfo;
use crate::transport::PeerAddr;

/// The most buckets tracked at once (one per caller and method it calls), unless configured: ten thousand,
/// well under a megabyte.
pub const DEFAULT_MAX_CALLERS: usize = 10_000;
/// The most shards the buckets are split over, each behind its own lock, so that calls of different callers
/// seldom wait for each other.
const SHARDS: usize = 16;
/// The fewest buckets a shard holds when there are several: a small cap is one shard.
const MIN_PER_SHARD: usize = 64;
/// A shard full of buckets not yet refilled forgets the longest idle eighth at once, so that each of the next
/// new callers finds room without a scan.
const EVICT_DIVISOR: usize = 8;
/// The wait when a rate lets no token come back (a rate of 0): an hour, the most a retry-after says.
const NEVER: Duration = Duration::from_secs(3600);

/// A rate: `per_second` tokens come back each second, up to `burst` (at least 1).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// Tokens back per second; 0 (or anything not a positive number): none come back.
    pub per_second: f64,
    /// The most tokens a caller holds: the calls it may make at once after a pause.
    pub burst: u32,
}

impl Rate {
    /// `per_second` calls a second, in bursts of up to one second's worth (at least 1).
    pub fn per_second(per_second: f64) -> Rate {
        let burst = match per_second.is_finite() && per_second > 1.0 {
            true => per_second.ceil().min(f64::from(u32::MAX)) as u32,
            false => 1,
        };
        Rate { per_second, burst }
    }

    /// This rate, in bursts of up to `burst` calls.
    pub fn with_burst(self, burst: u32) -> Rate {
        Rate { burst, ..self }
    }

    /// Tokens back per second, 0 for a rate that is not a positive number.
    fn refill(&self) -> f64 {
        match self.per_second.is_finite() && self.per_second > 0.0 {
            true => self.per_second,
            false => 0.0,
        }
    }

    fn burst(&self) -> f64 {
        f64::from(self.burst.max(1))
    }
}

/// The settings of a [`RateLimit`].
#[derive(Clone, Debug, PartialEq)]
pub struct RateLimitConfig {
    /// Each method's rate, per caller; `None`: no limit. Default: `None` for every method.
    pub rates: PerMethod<Option<Rate>>,
    /// The metadata entry that names a caller that neither an authorization layer nor a client certificate
    /// named (see the module's order). Default: `None` (such callers are told apart by IP address).
    pub caller_key: Option<String>,
    /// The most buckets tracked at once, one per caller and method (at least 1). A bucket refilled to its
    /// burst is forgotten first (it is as a new one); then those idle longest, whose callers get a full burst
    /// again. Default: [`DEFAULT_MAX_CALLERS`].
    pub max_callers: usize,
}

impl Default for RateLimitConfig {
    fn default() -> RateLimitConfig {
        RateLimitConfig {
            rates: PerMethod::new(None),
            caller_key: None,
            max_callers: DEFAULT_MAX_CALLERS,
        }
    }
}

/// The rate limit layer. Its clones share the buckets. Calls it refuses are counted by the server's metrics
/// as `ResourceExhausted`.
///
/// ```
/// use rpc_core::server::layer::{PerMethod, Rate, RateLimit, RateLimitConfig};
///
/// // Each caller: 100 calls/s of any method in bursts of 100, but Calc.slow 2/s in bursts of 5.
/// let limit = RateLimit::new(RateLimitConfig {
///     rates: PerMethod::new(Some(Rate::per_second(100.0)))
///         .method("Calc.slow", Some(Rate::per_second(2.0).with_burst(5))),
///     ..RateLimitConfig::default()
/// });
/// # let _ = rpc_core::Server::builder().layer(limit.clone());
/// assert_eq!(limit.tracked(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct RateLimit {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: RateLimitConfig,
    /// Keys the hash of a caller's identity, so that no caller can choose identities that collide.
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
}

/// Buckets by method id and the keyed hash of the caller's identity.
#[derive(Debug, Default)]
struct Shard {
    buckets: HashMap<(u32, u64), Bucket>,
}

/// A caller's tokens for a method.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    /// When `tokens` was counted.
    at: Instant,
}

/// A token may be short of 1 by rounding only.
const EPSILON: f64 = 1e-9;

impl Bucket {
    fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket {
            tokens: rate.burst(),
            at: now,
        }
    }

    /// The tokens at `now`.
    fn tokens(&self, rate: Rate, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        (self.tokens + elapsed * rate.refill()).min(rate.burst())
    }

    /// Takes a token at `now`, or says how long until one is back.
    fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.tokens = self.tokens(rate, now);
        self.at = now;
        if self.tokens >= 1.0 - EPSILON {
            self.tokens = (self.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let refill = rate.refill();
        if refill == 0.0 {
            return Err(NEVER);
        }
        // Whole milliseconds, rounded up: a caller back after that finds its token.
        // (Less a nanosecond, so that rounding never adds a millisecond.)
        let ms = ((1.0 - self.tokens) / refill * 1000.0 - 1e-6)
            .ceil()
            .max(1.0);
        Err(Duration::from_millis(
            ms.min(NEVER.as_millis() as f64) as u64
        ))
    }
}

impl Shard {
    /// Room for one more bucket, at most `cap` in all.
    fn make_room(&mut self, cap: usize, rates: &PerMethod<Option<Rate>>, now: Instant) {
        // A bucket refilled to its burst is as a new one: forgetting it changes nothing.
        self.buckets
            .retain(|(id, _), bucket| match rates.get_id(*id) {
                Some(rate) => bucket.tokens(*rate, now) < rate.burst() - EPSILON,
                None => false,
            });
        if self.buckets.len() < cap {
            return;
        }
        let evict = self.buckets.len() + 1 - cap + cap / EVICT_DIVISOR;
        let mut idle: Vec<(Instant, (u32, u64))> =
            self.buckets.iter().map(|(key, b)| (b.at, *key)).collect();
        let evict = evict.min(idle.len());
        if evict > 0 {
            idle.select_nth_unstable(evict - 1);
        }
        for (_, key) in &idle[..evict] {
            self.buckets.remove(key);
        }
        tracing::debug!(
            evicted = evict,
            cap,
            "rate limit: buckets at their cap; the longest idle are forgotten"
        );
    }
}

impl RateLimit {
    /// A limit as `config` says.
    pub fn new(config: RateLimitConfig) -> RateLimit {
        let max = config.max_callers.max(1);
        let shards = (max / MIN_PER_SHARD).clamp(1, SHARDS);
        RateLimit {
            shared: Arc::new(Shared {
                hasher: RandomState::new(),
                shards: (0..shards).map(|_| Mutex::default()).collect(),
                per_shard: (max / shards).max(1),
                config,
            }),
        }
    }

    /// `rate` for every method, per caller.
    pub fn per_method(rate: Rate) -> RateLimit {
        RateLimit::new(RateLimitConfig {
            rates: PerMethod::new(Some(rate)),
            ..RateLimitConfig::default()
        })
    }

    /// The buckets tracked now (callers, counted once per method they called).
    pub fn tracked(&self) -> usize {
        self.shared
            .shards
            .iter()
            .map(|shard| crate::sync::lock(shard).buckets.len())
            .sum()
    }
}

impl Shared {
    /// Takes a token of `identity`'s bucket for `method` at `now`, or says how long until one is back.
    fn take(
        &self,
        method: &MethodInfo,
        rate: Rate,
        identity: &Identity<'_>,
        now: Instant,
    ) -> Result<(), Duration> {
        let caller = self.hasher.hash_one(identity);
        let key = (method.id, caller);
        // The hash's high bits pick the shard (the map uses its own hash of the key).
        let shard = &self.shards[(caller >> 32) as usize % self.shards.len()];
        let mut shard = crate::sync::lock(shard);
        if !shard.buckets.contains_key(&key) && shard.buckets.len() >= self.per_shard {
            shard.make_room(self.per_shard, &self.config.rates, now);
        }
        shard
            .buckets
            .entry(key)
            .or_insert_with(|| Bucket::full(rate, now))
            .take(rate, now)
    }
}

/// Who a call comes from, as the rate limit tells callers apart (see the module's order).
#[derive(Debug, Hash, PartialEq, Eq)]
enum Identity<'a> {
    Token(&'a str),
    Certificate(&'a str),
    Metadata(&'a [u8]),
    Ip(IpAddr),
    Local,
    Unknown,
}

impl<'a> Identity<'a> {
    fn of(request: &'a Request, caller_key: Option<&str>) -> Identity<'a> {
        if let Some(caller) = request.caller() {
            if let Some(token) = &caller.token {
                return Identity::Token(token);
            }
            if let Some(name) = caller.certificates.first() {
                return Identity::Certificate(name);
            }
        }
        if let Some(name) = request.peer().client_names().first() {
            return Identity::Certificate(name);
        }
        if let Some(value) = caller_key.and_then(|key| request.metadata().get(key)) {
            return Identity::Metadata(value);
        }
        match request.peer().addr() {
            Some(PeerAddr::Tcp(addr)) => Identity::Ip(addr.ip()),
            Some(_) => Identity::Local,
            None => Identity::Unknown,
        }
    }
}

impl std::fmt::Display for Identity<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names and values are the peer's text: escaped, and cut.
        let quoted = |f: &mut std::fmt::Formatter<'_>, text: &str| {
            for c in text.chars().take(64) {
                match crate::text::must_escape(c) {
                    true => write!(f, "{}", c.escape_unicode())?,
                    false => write!(f, "{c}")?,
                }
            }
            Ok(())
        };
        match self {
            Identity::Token(name) => write!(f, "token {name}"),
            Identity::Certificate(name) => {
                f.write_str("client certificate ")?;
                quoted(f, name)
            }
            Identity::Metadata(value) => {
                f.write_str("caller ")?;
                quoted(f, &String::from_utf8_lossy(value))
            }
            Identity::Ip(ip) => write!(f, "{ip}"),
            Identity::Local => f.write_str("a local caller (Unix socket)"),
            Identity::Unknown => f.write_str("a caller of unknown address"),
        }
    }
}

impl<S> Layer<S> for RateLimit {
    type Service = RateLimited<S>;

    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service of [`RateLimit`] (one per connection).
#[derive(Clone, Debug)]
pub struct RateLimited<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> Service<Request> for RateLimited<S>
where
    S: Service<Request, Response = Response>,
    S::Error: Into<BoxError>,
{
    type Response = Response;
    type Error = BoxError;
    type Future = Either<std::future::Ready<Result<Response, BoxError>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let method = request.method();
        let Some(rate) = *self.shared.config.rates.get(method) else {
            return Either::Right {
                future: self.inner.call(request),
            };
        };
        let identity = Identity::of(&request, self.shared.config.caller_key.as_deref());
        match self.shared.take(method, rate, &identity, Instant::now()) {
            Ok(()) => Either::Right {
                future: self.inner.call(request),
            },
            Err(wait) => {
                tracing::debug!(%method, caller = %identity, ?wait, "rate limit: call refused");
                let message = format!(
                    "{method} allows {} calls/s per caller in bursts of {}; {identity} is over it: a token is \
                     back in {} ms",
                    rate.per_second,
                    rate.burst.max(1),
                    wait.as_millis()
                );
                let refused =
                    Response::error(Status::ResourceExhausted, message).with_retry_after(wait);
                Either::Left {
                    future: std::future::ready(Ok(refused)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
