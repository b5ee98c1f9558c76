//! The process's open-file limit, which bounds the connections a registry can hold: [`raise_open_file_limit`]
//! lifts the soft limit to the hard one at start (as servers do; the usual soft default of 1,024 would cap a
//! registry at about a thousand instances), and [`connections_that_fit`] says how many connections the limit
//! leaves room for, so that the server's connection cap refuses at once instead of leaving connections waiting
//! in the listen backlog for a descriptor.

/// Descriptors a registry keeps for other things than its RPC connections: its listeners, the connections of
/// its HTTP port (dashboards, `/metrics`, `/healthz`), the runtime's own, and one more connection accepted
/// past the cap so that it can be refused with go-away: 512.
pub const RESERVED_FILES: u64 = 512;

/// What [`raise_open_file_limit`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    /// The soft limit before.
    pub was: u64,
    /// The soft limit now.
    pub now: u64,
    /// The hard limit (the most the soft limit may be raised to without privileges).
    pub hard: u64,
}

impl std::fmt::Display for OpenFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.now > self.was {
            write!(
                f,
                "open-file limit raised from {} to {} (the hard limit)",
                self.was, self.now
            )
        } else {
            write!(f, "open-file limit {} (hard limit {})", self.now, self.hard)
        }
    }
}

/// Raises the soft limit of open files (`RLIMIT_NOFILE`) to the hard limit, and says what it was and is. On
/// systems without such limits it reports `u64::MAX` for all three. An unbounded hard limit is not taken
/// literally (some systems refuse it as a soft limit): the soft limit is raised to 1,048,576 at most then.
pub fn raise_open_file_limit() -> std::io::Result<OpenFiles> {
    #[cfg(unix)]
    {
        use nix::sys::resource::{RLIM_INFINITY, Resource, getrlimit, setrlimit};
        let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(std::io::Error::from)?;
        let target = if hard == RLIM_INFINITY {
            soft.max(1 << 20)
        } else {
            hard
        };
        let now = if target > soft {
            setrlimit(Resource::RLIMIT_NOFILE, target, hard).map_err(std::io::Error::from)?;
            target
        } else {
            soft
        };
        // `rlim_t` is not `u64` everywhere.
        #[allow(clippy::useless_conversion)]
        let as_u64 = |n| u64::try_from(n).unwrap_or(u64::MAX);
        Ok(OpenFiles {
            was: as_u64(soft),
            now: as_u64(now),
            hard: as_u64(hard),
        })
    }
    #[cfg(not(unix))]
    {
        Ok(OpenFiles {
            was: u64::MAX,
            now: u64::MAX,
            hard: u64::MAX,
        })
    }
}

/// How many connections fit in `limit` open files, [`RESERVED_FILES`] kept aside (at least 1).
pub fn connections_that_fit(limit: u64) -> usize {
    usize::try_from(limit.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_one_and_connections_leave_room() {
        let files = raise_open_file_limit().unwrap();
        assert!(files.now >= files.was);
        assert!(files.now <= files.hard);
        // Raising again changes nothing.
        assert_eq!(raise_open_file_limit().unwrap().now, files.now);
        assert_eq!(connections_that_fit(1024), 512);
        assert_eq!(connections_that_fit(100), 1);
        assert!(connections_that_fit(u64::MAX) > 1 << 30);
    }
}
