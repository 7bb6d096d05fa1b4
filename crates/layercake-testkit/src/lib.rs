//! Test support for layercake: the conformance suite every [`Backend`](layercake_core::Backend)
//! passes, fault-injecting and recording backends for composer tests, and fixtures for real
//! services (the shared Redis/PostgreSQL of the machine, throwaway servers for fault tests and a
//! TCP fault proxy, a tmpfs to fill).

pub mod conformance;
pub mod faulty;
pub mod local_backplane;
pub mod proxy;
pub mod recording;
pub mod server;
pub mod services;
pub mod tmpfs;
#[cfg(test)]
mod trait_defaults;
