//! Doc tests of the Markdown documentation: every Rust snippet of `docs/` and of the top-level
//! README runs (or, when marked `no_run` because it needs Redis or PostgreSQL, compiles) with
//! `cargo test -p layercake --doc --all-features`.
//!
//! Compiled only under `cfg(doctest)`; each item carries one document as its docs. Items whose
//! snippets use a backend module (`layercake::file`, `layercake::redis`, …) are gated on that
//! feature, so `cargo test -p layercake --doc` without features still passes.
#![allow(dead_code, reason = "the items only carry documents as their docs")]

#[cfg(feature = "file")]
#[doc = include_str!("../../../README.md")]
struct Readme;

#[cfg(feature = "file")]
#[doc = include_str!("../README.md")]
struct CrateReadme;

#[doc = include_str!("../../../docs/README.md")]
struct DocsMap;

#[doc = include_str!("../../../docs/architecture.md")]
struct Architecture;

#[doc = include_str!("../../../docs/concepts.md")]
struct Concepts;

#[cfg(all(feature = "redis", feature = "postgres", feature = "file"))]
#[doc = include_str!("../../../docs/guides/compose-a-hierarchy.md")]
struct ComposeAHierarchy;

#[cfg(feature = "file")]
#[doc = include_str!("../../../docs/guides/choose-policies.md")]
struct ChoosePolicies;

#[doc = include_str!("../../../docs/guides/llm-and-embeddings.md")]
struct LlmAndEmbeddings;

#[cfg(feature = "redis")]
#[doc = include_str!("../../../docs/guides/idempotency.md")]
struct Idempotency;

#[cfg(all(feature = "redis", feature = "postgres"))]
#[doc = include_str!("../../../docs/guides/coherent-instances.md")]
struct CoherentInstances;

#[cfg(all(feature = "redis", feature = "postgres", feature = "file"))]
#[doc = include_str!("../../../docs/guides/production.md")]
struct Production;

#[doc = include_str!("../../../docs/guides/add-a-backend.md")]
struct AddABackend;

#[cfg(feature = "config")]
#[doc = include_str!("../../../docs/guides/operate-with-the-cli.md")]
struct OperateWithTheCli;

#[doc = include_str!("../../../docs/decisions/0001-async-trait.md")]
struct Decision0001AsyncTrait;

#[doc = include_str!("../../../docs/decisions/0005-envelope-format.md")]
struct Decision0005EnvelopeFormat;

// Documents owned by other parts of the project, doc-tested the same way.

#[cfg(feature = "otel")]
#[doc = include_str!("../../../docs/observability.md")]
struct Observability;

#[doc = include_str!("../../../docs/decisions/0002-redis-connection-mode.md")]
struct Decision0002RedisConnectionMode;

#[doc = include_str!("../../../docs/decisions/0003-file-tier-io.md")]
struct Decision0003FileTierIo;

#[doc = include_str!("../../../docs/decisions/0004-postgres-table.md")]
struct Decision0004PostgresTable;

#[doc = include_str!("../../../docs/decisions/0006-metric-names.md")]
struct Decision0006MetricNames;
