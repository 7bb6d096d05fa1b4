#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod error;
mod fill;
mod index;
mod inspect;
mod layout;
mod report;
mod store;

pub use backend::FileBackend;
pub use config::{Durability, FileConfig};
pub use inspect::{DirUsage, inspect_dir};
pub use report::{FileStats, SweepReport};
