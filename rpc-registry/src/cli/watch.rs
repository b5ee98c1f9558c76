//! The `rpc-registry watch SERVICE` runner: prints the instances of a service, then each change as it happens,
//! one time-stamped line each, flushed at once. It long-polls the registry's `watch_changes` method, so that a
//! removal says why the instance left (`watch` of a registry that does not have it yet, without the reason);
//! when the registry goes away it says so, retries with a doubling pause, and resumes when the registry is
//! back. Every line is escaped and cut (see [`super::escape()`]).

use std::io::Write;
use std::pin::pin;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rpc_core::{RpcError, Status};

use super::escape::{field, line};
use super::{CliError, Options, Tracker, connect};
use crate::api::{RegistryClient, Watched};
use crate::client::discovery::DEFAULT_WARM_UP;

/// Default of [`WatchConfig::wait`]: 30 s.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// Default of [`WatchConfig::backoff_min`]: 100 ms.
pub const DEFAULT_BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Default of [`WatchConfig::backoff_max`]: 5 s.
pub const DEFAULT_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// How `watch` polls and retries.
#[derive(Clone, Debug)]
pub struct WatchConfig {
    /// How long one watch call waits for a change before the registry answers unchanged (the registry caps it).
    /// Default 30 s ([`DEFAULT_WAIT`]).
    pub wait: Duration,
    /// After the registry restarts, how long instances it does not know yet are kept, while they register
    /// again (see [`Tracker`]). Default 3 s ([`crate::client::discovery::DEFAULT_WARM_UP`]), the registry's default TTL.
    pub warm_up: Duration,
    /// The pause after the registry first fails to answer; it doubles with each further failure. Default
    /// 100 ms ([`DEFAULT_BACKOFF_MIN`]).
    pub backoff_min: Duration,
    /// The longest pause between two attempts. Default 5 s ([`DEFAULT_BACKOFF_MAX`]).
    pub backoff_max: Duration,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            wait: DEFAULT_WAIT,
            warm_up: DEFAULT_WARM_UP,
            backoff_min: DEFAULT_BACKOFF_MIN,
            backoff_max: DEFAULT_BACKOFF_MAX,
        }
    }
}

impl WatchConfig {
    /// The pause after `failures` consecutive failures (1, 2, ...).
    fn backoff(&self, failures: u32) -> Duration {
        self.backoff_min
            .saturating_mul(1 << failures.saturating_sub(1).min(20))
            .min(self.backoff_max)
    }
}

/// `rpc-registry watch SERVICE`: prints to `out` the instances of `service` (a `+` line each), then each change
/// as it happens (`+`, `-` with why the instance left, `~`, see [`super::Change`]), each line after a time stamp
/// and flushed at once;
/// says on `err` when there is no instance yet, when the registry goes away, and when it is back. Runs until
/// `shutdown` completes, then returns `Ok`. Fails if the registry does not answer the first call within
/// `options.timeout`, or if `out` cannot be written.
pub async fn watch(
    options: &Options,
    service: &str,
    config: &WatchConfig,
    out: &mut impl Write,
    err: &mut impl Write,
    shutdown: impl Future<Output = ()>,
) -> Result<(), CliError> {
    let registry = connect(options).await?;
    let mut shutdown = pin!(shutdown);
    let mut tracker = Tracker::new(config.warm_up);
    let mut failures = 0u32;
    // Whether the registry answers `watch_changes`; one that answers `Unimplemented` (an older registry) is
    // watched with `watch`, whose removals come without their reason.
    let mut with_reasons = true;
    loop {
        // The first call asks for the instances as they are, without waiting.
        let wait = match tracker.started() {
            true => tracker.wait(config.wait, Instant::now()),
            false => Duration::ZERO,
        };
        let stub = registry.with_deadline(wait + options.timeout);
        let call = poll(&stub, with_reasons, service, &tracker, wait);
        let answer = tokio::select! {
            () = &mut shutdown => return Ok(()),
            answer = call => answer,
        };
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) if with_reasons && e.code() == Status::Unimplemented => {
                with_reasons = false;
                continue;
            }
            Err(e) if !tracker.started() => return Err(CliError::registry(options, e)),
            Err(e) => {
                failures = failures.saturating_add(1);
                let pause = config.backoff(failures);
                if failures == 1 {
                    writeln!(
                        err,
                        "{} lost the registry at {}: {}; retrying, with pauses doubling up to {}",
                        format_timestamp(SystemTime::now()),
                        field(&options.registry),
                        line(&e.to_string()),
                        super::format_age(config.backoff_max),
                    )?;
                }
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let now = format_timestamp(SystemTime::now());
        if failures > 0 {
            writeln!(
                err,
                "{now} the registry at {} is back",
                field(&options.registry)
            )?;
            failures = 0;
        }
        if tracker.is_restart(&answer.snapshot) {
            writeln!(
                err,
                "{now} the registry restarted: instances not registered again within {} show as removed",
                super::format_age(config.warm_up),
            )?;
        }
        let first = !tracker.started();
        for change in tracker.update(answer, Instant::now()) {
            writeln!(out, "{now} {}", line(&change.to_string()))?;
            out.flush()?;
        }
        if first && tracker.instances().is_empty() {
            writeln!(
                err,
                "{now} no instance of {} is registered with the registry at {} yet; waiting",
                field(service),
                field(&options.registry)
            )?;
        }
    }
}

/// One long poll of `service` from where `tracker` stands, waiting at most `wait` for a change: `watch_changes`
/// if `with_reasons`, else `watch` (whose answer has no removals).
async fn poll(
    stub: &RegistryClient,
    with_reasons: bool,
    service: &str,
    tracker: &Tracker,
    wait: Duration,
) -> Result<Watched, RpcError> {
    let (service, epoch, since) = (service.to_owned(), tracker.epoch(), tracker.revision());
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    match with_reasons {
        true => stub.watch_changes(service, epoch, since, wait_ms).await,
        false => stub
            .watch(service, epoch, since, wait_ms)
            .await
            .map(Watched::from),
    }
}

/// `time` as a UTC time stamp to the millisecond, `2023-11-14T22:13:20.123Z`; times before 1970 read as 1970.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
/// assert_eq!(rpc_registry::cli::format_timestamp(t), "2023-11-14T22:13:20.123Z");
/// ```
pub fn format_timestamp(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60,
        since.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_stamps_are_utc_dates_and_times_to_the_millisecond() {
        for (ms, text) in [
            (0, "1970-01-01T00:00:00.000Z"),
            (951_782_400_000, "2000-02-29T00:00:00.000Z"),
            (951_868_799_999, "2000-02-29T23:59:59.999Z"),
            (1_700_000_000_123, "2023-11-14T22:13:20.123Z"),
            (4_107_542_400_000, "2100-03-01T00:00:00.000Z"),
        ] {
            assert_eq!(
                format_timestamp(UNIX_EPOCH + Duration::from_millis(ms)),
                text
            );
        }
        let before_1970 = UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(format_timestamp(before_1970), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn the_retry_pause_doubles_up_to_its_cap() {
        let config = WatchConfig::default();
        let pauses: Vec<u64> = (1..=8)
            .map(|n| config.backoff(n).as_millis() as u64)
            .collect();
        assert_eq!(pauses, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(config.backoff(u32::MAX), DEFAULT_BACKOFF_MAX);
    }
}
