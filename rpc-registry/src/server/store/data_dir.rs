//! The registry's data directory ([`crate::RegistryConfig::data_dir`]): what it keeps there (rules, operators'
//! weights) is written a whole file at a time, to a temporary file that is synced, then renamed over the old one,
//! and the directory synced: a crash leaves the old file or the new one, never half of either.

use std::io::Write;
use std::path::Path;

/// Writes `bytes` as `dir/name` atomically (see the module), creating `dir` if needed.
pub(crate) fn write_whole(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.tmp"));
    {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&temporary, &path)?;
    std::fs::File::open(dir)?.sync_all()
}
