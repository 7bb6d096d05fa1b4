#![doc = include_str!("../README.md")]
// docs.rs builds with `--cfg docsrs` on nightly: every item behind a feature shows its badge.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod backplane;
mod config;
mod error;
mod fill;
mod ident;
mod inspect;
mod prefix;
mod ready;
mod reaper;
mod schema;
mod shared;
mod sql;
mod startup;

pub use backend::PostgresBackend;
pub use backplane::PostgresBackplane;
pub use config::{
    MAX_TABLE_NAME_LEN, PostgresBackplaneConfig, PostgresConfig, ReaperConfig, Recycling, TableKind,
};

pub use inspect::TableInfo;
/// Re-exported so users configure connections with the same tokio-postgres version.
pub use tokio_postgres;
