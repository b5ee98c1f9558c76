//! [`Down`]: how a policy skips an instance it could not reach, for [`DEFAULT_DOWN_FOR`] unless configured:
//! while others are eligible it picks none that is down, and it tries one anyway when none is left. Every
//! policy of this folder keeps one per instance.

use std::time::Duration;

use tokio::time::Instant;

/// How long a policy skips an instance it could not reach, unless configured: 1 s.
pub const DEFAULT_DOWN_FOR: Duration = Duration::from_secs(1);

/// Whether, and until when, an instance is skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Down(Option<Instant>);

impl Down {
    /// Whether the instance is skipped at `now`.
    pub(crate) fn at(self, now: Instant) -> bool {
        self.0.is_some_and(|until| now < until)
    }

    /// Whether the instance was marked down (and not cleared since), even if that has run out.
    #[cfg(test)]
    pub(crate) fn is_marked(self) -> bool {
        self.0.is_some()
    }

    /// It could not be reached at `now`: skipped for `down_for`. Whether it was not down already.
    pub(crate) fn unreachable(&mut self, now: Instant, down_for: Duration) -> bool {
        let newly = !self.at(now);
        self.0 = Some(now + down_for);
        newly
    }

    /// It answered: no longer skipped. Whether it had been marked down.
    pub(crate) fn answered(&mut self) -> bool {
        self.0.take().is_some()
    }
}
