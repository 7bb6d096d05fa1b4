//! [`SweepReport`] and [`FileStats`]: what a directory walk found, and the backend's size.

/// What a directory walk (the scan at open, or a sweep) found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct SweepReport {
    /// The sweep did not run because another process held the sweep lock.
    pub skipped: bool,
    /// Entry files seen.
    pub files: usize,
    /// Files whose header, key and tags were read into the index (unknown to this process).
    pub indexed: usize,
    /// Expired entry files removed.
    pub expired_removed: usize,
    /// Garbled, truncated or foreign entry files removed (also counted in
    /// `Backend::corrupt_reads`).
    pub corrupt_removed: usize,
    /// Temp files removed (left by crashed writers).
    pub temp_files_removed: usize,
    /// Index records dropped because their file was gone (removed by another process).
    pub vanished: usize,
    /// Entries evicted to get back within the byte bound.
    pub evicted: usize,
    /// Entries indexed after the walk.
    pub entries: usize,
    /// Bytes indexed after the walk.
    pub bytes: u64,
}

/// A snapshot of a [`FileBackend`](crate::FileBackend)'s index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct FileStats {
    /// Entries this process knows of.
    pub entries: usize,
    /// Sum of their file sizes, bytes.
    pub bytes: u64,
    /// The configured bound, bytes.
    pub max_bytes: u64,
    /// Corrupt copies removed since open (as `Backend::corrupt_reads`).
    pub corrupt_reads: u64,
}
