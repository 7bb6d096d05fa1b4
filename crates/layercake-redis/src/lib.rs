#![doc = include_str!("../README.md")]
// docs.rs builds with `--cfg docsrs` on nightly: every item behind a feature shows its badge.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod backplane;
mod coalesce;
mod config;
mod conn;
mod error;
mod fill;
mod inspect;
mod keys;
mod lease;
mod lock;
mod managed;
mod pool;
mod tls;

pub use backend::RedisBackend;
pub use backplane::RedisBackplane;
pub use config::{ConnectionMode, RedisBackplaneConfig, RedisConfig, redact_url};
pub use inspect::{RedisServerInfo, ServerTtl};
pub use keys::escape_glob;
