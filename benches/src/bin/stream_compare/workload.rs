//! What is measured: the systems (this framework, tonic's server streaming, raw TCP) and the cases (small items
//! on one stream, small items on many streams of one connection, large items on one stream, a consumer that
//! stops reading), with each case's size of item, count of streams, and the systems that take part in it.

use std::fmt;

/// A system measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum System {
    /// This framework's server streams (protocol 1.1).
    Rpc,
    /// tonic's server streaming over one HTTP/2 connection.
    Tonic,
    /// Raw tokio TCP, length-prefixed chunks: the floor. One stream per connection, so not in the case of many
    /// streams, and it has no consumer to stall.
    Raw,
}

impl System {
    pub(crate) const ALL: [System; 3] = [System::Rpc, System::Tonic, System::Raw];

    pub(crate) fn name(self) -> &'static str {
        match self {
            System::Rpc => "rpc",
            System::Tonic => "tonic",
            System::Raw => "raw",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<System, String> {
        System::ALL
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| format!("unknown system `{name}`; expected rpc, tonic or raw"))
    }
}

/// The size of the small items: 32 bytes.
pub(crate) const SMALL: u32 = 32;
/// The size of the large items: 64 KiB.
pub(crate) const LARGE: u32 = 64 * 1024;

/// A case of the benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Case {
    /// 32-byte items on one server stream: items per second.
    Small,
    /// 32-byte items on many concurrent streams of one connection: items per second, all streams together.
    Concurrent,
    /// 64 KiB items on one server stream: bytes per second.
    Large,
    /// A stream of 64 KiB items whose consumer never reads: memory and items made.
    Stall,
}

impl Case {
    pub(crate) const ALL: [Case; 4] = [Case::Small, Case::Concurrent, Case::Large, Case::Stall];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Case::Small => "small",
            Case::Concurrent => "concurrent",
            Case::Large => "large",
            Case::Stall => "stall",
        }
    }

    pub(crate) fn parse(name: &str) -> Result<Case, String> {
        Case::ALL
            .into_iter()
            .find(|c| c.name() == name)
            .ok_or_else(|| {
                format!("unknown case `{name}`; expected small, concurrent, large or stall")
            })
    }

    /// The size of its items.
    pub(crate) fn size(self) -> u32 {
        match self {
            Case::Small | Case::Concurrent => SMALL,
            Case::Large | Case::Stall => LARGE,
        }
    }

    /// Whether `system` takes part.
    pub(crate) fn has(self, system: System) -> bool {
        match self {
            Case::Small | Case::Large => true,
            Case::Concurrent | Case::Stall => system != System::Raw,
        }
    }
}

/// One measured run's shape: a case with its count of items and of streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Workload {
    pub(crate) case: Case,
    /// Items in all, over every stream.
    pub(crate) items: u64,
    /// Streams open at once on one connection.
    pub(crate) streams: usize,
}

impl Workload {
    /// The size of its items.
    pub(crate) fn size(&self) -> u32 {
        self.case.size()
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = match self.size() {
            s if s >= 1024 => format!("{} KiB", s / 1024),
            s => format!("{s} B"),
        };
        let streams = match self.streams {
            1 => String::from("1 stream"),
            n => format!("{n} streams"),
        };
        write!(f, "{size} x {} on {streams}", self.items)
    }
}

/// The bytes of an item of `size` bytes, the same in every system: a pattern, not zeros.
pub(crate) fn block(size: u32) -> Vec<u8> {
    (0..size)
        .map(|i| (i.wrapping_mul(31) ^ 0x5a) as u8)
        .collect()
}
