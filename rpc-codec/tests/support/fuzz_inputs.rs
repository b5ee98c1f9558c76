//! The inputs kept for a fuzz target, as the replay tests of rpc-codec, rpc-core and rpc-registry list them (each
//! includes this file by path, so `CARGO_MANIFEST_DIR` is the including crate's).

use std::path::{Path, PathBuf};

/// The files of `dir` (relative to the including crate), `.keep` aside, sorted; anything else than a file fails
/// the test.
pub(crate) fn listed(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let entry = entry.unwrap();
        if entry.file_name() == ".keep" {
            continue;
        }
        let path = entry.path();
        assert!(
            entry.file_type().unwrap().is_file(),
            "{} is not a file: a fuzz folder holds inputs only",
            path.display()
        );
        files.push(path);
    }
    files.sort();
    files
}
