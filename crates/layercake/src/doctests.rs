//! Doc tests of the Markdown documentation: every Rust program of `docs/` and of the
//! READMEs runs with `cargo test -p layercake --doc --all-features` (the backend crates'
//! READMEs are their crates' docs and run with theirs), so a guide cannot be wrong in a way
//! the tests do not see.
//!
//! - Programs that need Redis or PostgreSQL run against `REDIS_URL` / `DATABASE_URL`, else the
//!   local defaults (`redis://127.0.0.1:6379`, `postgres://postgres@127.0.0.1:5432/test`);
//!   `cargo xtask test` finds or starts both and exports the variables. The production
//!   guide's Cluster program runs against `REDIS_CLUSTER_NODES` (a throwaway cluster that
//!   `cargo xtask test` starts) and says so and stops when it is not set.
//! - Each program uses names no other program or test uses (Redis key prefix, PostgreSQL
//!   table, backplane channel, directory), and none calls `clear()`. Where a second run of the
//!   same program at the same moment could disturb it (another `cargo test --doc` against the
//!   same servers), the names or keys carry the process id: every program passes when two
//!   copies of it run at once.
//! - The only snippets that do not run are marked `ignore` or `no_run` with the reason next to
//!   them: OpenTelemetry exporters from crates the workspace does not depend on
//!   (`docs/observability.md`), and the TLS configuration of the Redis README, which needs a
//!   TLS server and certificate files (the Redis crate's `tests/tls.rs` makes the same calls).
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

#[doc = include_str!("../../../docs/guides/tune-hit-ratios.md")]
struct TuneHitRatios;

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

#[doc = include_str!("../../../docs/decisions/0007-coalesced-gets.md")]
struct Decision0007CoalescedGets;

#[doc = include_str!("../../../docs/decisions/0008-auto-recovery.md")]
struct Decision0008AutoRecovery;

#[doc = include_str!("../../../docs/decisions/0009-file-tier-segments.md")]
struct Decision0009FileTierSegments;

#[doc = include_str!("../../../docs/reliability.md")]
struct Reliability;

#[doc = include_str!("../../../docs/benchmarks.md")]
struct Benchmarks;
