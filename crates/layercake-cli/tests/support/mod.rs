//! What the CLI tests share: a per-test environment (own namespace, Redis prefix, PostgreSQL
//! table and directory), running the built binary with a bound, and a library instance on the
//! same configuration.

#![allow(dead_code, reason = "each test file uses part of the helpers")]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use layercake::Cache;
use layercake::config::{CacheConfig, Tiers};
use layercake_testkit::services::{require_postgres, require_redis, unique_id};

/// The longest a CLI run may take before the test fails.
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// What one CLI run printed and how it ended.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// stdout as JSON, or a panic showing both streams.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A test's own cache environment.
pub(crate) struct Env {
    pub(crate) vars: Vec<(String, String)>,
    pub(crate) dir: tempfile::TempDir,
    pub(crate) table: Option<String>,
}

impl Env {
    /// Redis, PostgreSQL (table `layercake_cli.t_<id>`) and a temp directory, in a namespace
    /// and Redis prefix of this test's own.
    pub(crate) fn full() -> Env {
        let id = unique_id("t");
        let table = format!("layercake_cli.{id}");
        let dir = tempfile::tempdir().expect("temp dir");
        let vars = vec![
            ("LAYERCAKE_NAME".to_owned(), format!("cli-{id}")),
            ("LAYERCAKE_NAMESPACE".to_owned(), format!("ns{id}")),
            ("LAYERCAKE_REDIS_URL".to_owned(), require_redis()),
            ("LAYERCAKE_POSTGRES_URL".to_owned(), require_postgres()),
            ("LAYERCAKE_POSTGRES_TABLE".to_owned(), table.clone()),
            (
                "LAYERCAKE_FILE_DIR".to_owned(),
                dir.path().display().to_string(),
            ),
            ("LAYERCAKE_BACKPLANE_CHANNEL".to_owned(), format!("bp-{id}")),
        ];
        Env {
            vars,
            dir,
            table: Some(table),
        }
    }

    /// Memory and files only.
    pub(crate) fn files_only() -> Env {
        let id = unique_id("t");
        let dir = tempfile::tempdir().expect("temp dir");
        let vars = vec![
            ("LAYERCAKE_NAMESPACE".to_owned(), format!("ns{id}")),
            (
                "LAYERCAKE_FILE_DIR".to_owned(),
                dir.path().display().to_string(),
            ),
        ];
        Env {
            vars,
            dir,
            table: None,
        }
    }

    /// Set (or replace) a variable.
    pub(crate) fn set(&mut self, name: &str, value: impl Into<String>) {
        self.vars.retain(|(k, _)| k != name);
        self.vars.push((name.to_owned(), value.into()));
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn namespace_prefix(&self) -> String {
        format!(
            "{}:v1:",
            self.get("LAYERCAKE_NAMESPACE").unwrap_or("default")
        )
    }

    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The configuration a service with this environment reads.
    pub(crate) fn config(&self) -> CacheConfig {
        CacheConfig::from_vars(self.vars.clone()).expect("valid configuration")
    }

    /// A running instance: its tiers (to look at its memory tier) and its cache.
    pub(crate) async fn instance(&self) -> (Tiers, Cache) {
        let c = self.config();
        let tiers = c.connect().await.expect("connect the configured tiers");
        let cache = tiers.cache(&c).expect("build the cache");
        (tiers, cache)
    }

    /// Run the built `layercake` binary with only this environment, bounded by `RUN_LIMIT`.
    pub(crate) fn run(&self, args: &[&str]) -> Run {
        let mut child = Command::new(env!("CARGO_BIN_EXE_layercake"))
            .args(args)
            .env_clear()
            .envs(self.vars.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the layercake binary starts");
        let deadline = Instant::now() + RUN_LIMIT;
        loop {
            match child.try_wait().expect("wait for layercake") {
                Some(_) => break,
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("layercake {args:?} ran longer than {RUN_LIMIT:?}");
                }
                None => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        let out = child.wait_with_output().expect("collect the output");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Run and expect exit code `code`, showing the output when it differs.
    pub(crate) fn run_expect(&self, args: &[&str], code: i32) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, code,
            "layercake {args:?} exited {} (expected {code})\nstdout:\n{}\nstderr:\n{}",
            r.code, r.stdout, r.stderr
        );
        r
    }

    /// Remove what the test left: its Redis keys, its PostgreSQL table.
    pub(crate) async fn cleanup(&self, tiers: &Tiers, cache: &Cache) {
        let _ = cache.clear().await;
        cache.shutdown().await;
        if let (Some(pg), Some(table)) = (&tiers.postgres, &self.table) {
            let (schema, name) = table.split_once('.').expect("schema.table");
            if let Ok(client) = pg.pool().get().await {
                let _ = client
                    .batch_execute(&format!("DROP TABLE IF EXISTS \"{schema}\".\"{name}\""))
                    .await;
                let _ = client
                    .execute(
                        &format!(
                            "DELETE FROM \"{schema}\".layercake_migrations WHERE table_name = $1"
                        ),
                        &[&name],
                    )
                    .await;
            }
        }
    }
}

/// Wait up to 10 s for `cond`, polling (a bound for a loaded machine, not a speed claim).
pub(crate) async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
