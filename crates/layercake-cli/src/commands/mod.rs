//! One module per subcommand.

pub(crate) mod config;
pub(crate) mod del;
pub(crate) mod doctor;
pub(crate) mod drift;
pub(crate) mod get;
pub(crate) mod inspect;
pub(crate) mod invalidate;
pub(crate) mod misses;
pub(crate) mod scan;
pub(crate) mod stats;
