//! In-process L1 tier for layercake on quick_cache, bounded by bytes.
