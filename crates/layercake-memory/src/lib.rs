#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod fill;

pub use backend::MemoryBackend;
pub use config::MemoryConfig;
