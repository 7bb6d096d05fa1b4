#![doc = include_str!("../README.md")]

mod backend;
mod config;

pub use backend::MemoryBackend;
pub use config::MemoryConfig;
