//! A tiered cache for Rust services: memory, Redis, PostgreSQL and file tiers composed in code.
