//! The file tier's errors as [`layercake_core::Error`]s, all tagged with the backend kind
//! `"file"`: I/O errors are `Unavailable` (a full disk said so in plain words), a cache path
//! that cannot be a directory or an invalid setting is `Config`.

use std::fs;
use std::io;
use std::path::Path;

use layercake_core::Error;

/// The backend kind, as reported in errors.
pub(crate) const BACKEND: &str = "file";

/// A configuration error.
pub(crate) fn config(msg: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::config(msg).with_backend(BACKEND)
}

/// An I/O error as a layercake error, with a clear message for a full disk.
pub(crate) fn io_error(doing: &str, e: io::Error) -> Error {
    let msg = match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => format!(
            "file tier: no space left on the device while {doing}; the entry was not stored \
             and entries already stored are unchanged"
        ),
        _ => format!("file tier: {doing} failed"),
    };
    Error::unavailable(msg).with_source(e).with_backend(BACKEND)
}

/// Why the cache directory could not be created, saying so when the path (or one of its
/// parents) is a file rather than a directory: `create_dir_all` reports that only as "File
/// exists" or "Not a directory".
pub(crate) fn dir_error(dir: &Path, e: io::Error) -> Error {
    let file = dir
        .ancestors()
        .find(|p| fs::metadata(p).is_ok_and(|md| !md.is_dir()));
    let msg = match file {
        Some(p) if p == dir => format!(
            "file tier: the cache path {} is a file, not a directory; give the path of a \
             directory (it is created if missing) or remove the file",
            dir.display()
        ),
        Some(p) => format!(
            "file tier: cannot create the cache directory {}: {} is a file, not a directory",
            dir.display(),
            p.display()
        ),
        None => return io_error(&format!("creating the directory {}", dir.display()), e),
    };
    Error::config(msg).with_source(e).with_backend(BACKEND)
}

/// A blocking file task that panicked or was cancelled.
pub(crate) fn blocking_failed(e: tokio::task::JoinError) -> Error {
    Error::unavailable(format!("file tier: a blocking file task failed: {e}")).with_backend(BACKEND)
}
