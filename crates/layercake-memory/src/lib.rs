#![doc = include_str!("../README.md")]

mod backend;
mod config;
mod fill;
mod weight;

pub use backend::MemoryBackend;
pub use config::MemoryConfig;
