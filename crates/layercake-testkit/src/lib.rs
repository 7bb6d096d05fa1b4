//! Conformance suite, fault-injecting backends and service fixtures for layercake.
