//! Files only their owner may read (keys, TLS material, demo credentials).

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to a temp file created with mode 0600, syncs it and renames it over `path`:
/// the secret is never readable by others, and a crash never leaves half a file. The error
/// names the file that failed.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), (PathBuf, std::io::Error)> {
    let temp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&temp).map_err(|e| (temp.clone(), e))?;
    file.write_all(bytes).map_err(|e| (temp.clone(), e))?;
    file.sync_all().map_err(|e| (temp.clone(), e))?;
    std::fs::rename(&temp, path).map_err(|e| (path.to_owned(), e))
}
