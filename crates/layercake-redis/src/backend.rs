//! [`RedisBackend`]: the L2 tier.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use layercake_core::envelope;
use layercake_core::{
    Backend, Capability, Entry, EnvelopeLimits, Error, ErrorKind, FillOutcome, Key, Result,
    Selector, Tombstone, async_trait,
};
use redis::{Cmd, Value};

use crate::coalesce::{Coalescer, Route};
use crate::config::RedisConfig;
use crate::conn::{Node, Redis};
use crate::error::BACKEND;
use crate::keys::{Layout, tag_section_bound, tags_from_head};

/// An entry's envelope as one command argument, written into the command's own buffer (its
/// size already checked by [`envelope::measure`]).
struct EnvelopeArg<'a> {
    key: &'a Key,
    entry: &'a Entry,
    limits: &'a EnvelopeLimits,
}

impl redis::ToRedisArgs for EnvelopeArg<'_> {
    fn write_redis_args<W>(&self, out: &mut W)
    where
        W: ?Sized + redis::RedisWrite,
    {
        let mut w = out.writer_for_next_arg();
        // Measured before (the limits hold), and writing into the command's buffer cannot fail.
        let _ = envelope::encode_into(self.key, self.entry, self.limits, &mut w);
    }
}

/// The Redis tier: entries as envelope bytes under a per-cache key prefix, expired by Redis
/// itself (`SET … PX`).
///
/// Contract (beyond [`Backend`]'s):
/// - every call is bounded by [`operation_timeout`](RedisConfig::operation_timeout) per
///   command (pool checkout included) and fails with `Unavailable` or `Timeout` when Redis is
///   down or frozen, never waiting longer;
/// - after a Redis restart, calls succeed again without rebuilding the backend;
/// - `set` stores the entry for its *remaining* lifetime (`retain_until` minus the configured
///   clock's now); an entry already past it is deleted instead;
/// - tagged entries are indexed in one set per tag; `invalidate(Tag(t))` removes only members
///   whose stored envelope still carries `t`;
/// - stored bytes that are not a valid envelope for the key are a miss, are `UNLINK`ed, and
///   counted in [`corrupt_reads`](Backend::corrupt_reads);
/// - fills are conditional ([`Capability::conditional_fill`]): one Lua script per fill
///   compares the key's tombstone and stored version and writes, atomically, on a standalone
///   server and on a cluster (the tombstone shares the entry's slot); selector tombstones are
///   checked in the same script on a standalone server, before and after the write on a
///   cluster (a refused fill may be visible for a few milliseconds there before it removes
///   itself). Tombstones expire by the server's clock.
///
/// ```no_run
/// use layercake_core::{Backend, Entry, Key, Timestamp};
/// use layercake_redis::{RedisBackend, RedisConfig};
/// use std::time::Duration;
/// # async fn run() -> layercake_core::Result<()> {
/// let l2 = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:6379").with_cache_name("docs")).await?;
/// let key = Key::new("greeting")?;
/// l2.set(&key, &Entry::new(&b"hello"[..], Timestamp(0), Duration::from_secs(60))).await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    redis: Redis,
    /// Joins concurrent `GET`s into `MGET`s (`None`: off, or cluster mode).
    coalescer: Option<Arc<Coalescer>>,
    layout: Layout,
    config: RedisConfig,
    corrupt: AtomicU64,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.inner.config)
            .field("corrupt_reads", &self.corrupt_reads())
            .field("coalesced_gets", &self.coalesced_gets())
            .finish()
    }
}

impl RedisBackend {
    /// Connect as configured, with one attempt bounded by the connect and operation timeouts.
    ///
    /// - fails with `Config` for an invalid configuration, and with `Unavailable` for wrong
    ///   credentials or an address that is not a Redis server;
    /// - when Redis cannot be reached (refused, timed out), returns a backend that connects in
    ///   the background (backoff from 50 ms doubling to 1 s) and fails every call with
    ///   `Unavailable` until Redis answers; with
    ///   [`require_server`](RedisConfig::require_server) it fails instead.
    pub async fn connect(config: RedisConfig) -> Result<RedisBackend> {
        let redis = Redis::connect(&config).await?;
        let direct_max = config.lone_gets_before_coalescing();
        let coalescer = (config.coalesce_gets && !redis.is_cluster()).then(|| {
            Arc::new(Coalescer::new(
                redis.clone(),
                Layout::new(&config.key_prefix),
                config.batch_size,
                config.operation_timeout,
                direct_max,
            ))
        });
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                redis,
                coalescer,
                layout: Layout::new(&config.key_prefix),
                config,
                corrupt: AtomicU64::new(0),
            }),
        })
    }

    /// Whether Redis has answered: `false` only for a backend built while Redis could not be
    /// reached, until it first answers (see [`RedisConfig::require_server`]).
    pub fn is_connected(&self) -> bool {
        self.inner.redis.is_connected()
    }

    /// The configuration (its `Debug` hides passwords).
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// How many `GET`s so far were answered as part of an `MGET` that joined concurrent ones
    /// (see [`RedisConfig::coalesce_gets`]); 0 when coalescing is off.
    pub fn coalesced_gets(&self) -> u64 {
        self.inner.coalescer.as_ref().map_or(0, |c| c.coalesced())
    }

    /// The key prefix of this cache.
    pub fn key_prefix(&self) -> &str {
        self.inner.layout.prefix()
    }

    pub(crate) fn redis(&self) -> &Redis {
        &self.inner.redis
    }

    pub(crate) fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    pub(crate) fn lock_key(&self, key: &Key) -> String {
        self.inner.layout.lock(key)
    }

    /// Decode stored bytes: `Err` when they are not a valid envelope for `key` (corrupt),
    /// `Ok(None)` when the entry is past `retain_until` by our clock (Redis expires by its own
    /// clock; a skew must never return what our clock says is gone).
    fn decode(&self, key: &Key, bytes: Vec<u8>) -> Result<Option<Entry>> {
        let entry = envelope::decode_owned(key, bytes, &self.inner.config.limits)?;
        Ok(entry
            .is_retained(self.inner.config.clock.now())
            .then_some(entry))
    }

    /// A lone `GET` of `key`, due by `deadline`.
    async fn get_alone(
        &self,
        key: &Key,
        deadline: tokio::time::Instant,
    ) -> Result<Option<Vec<u8>>> {
        let mut c = Cmd::with_capacity(2, 3 + self.inner.layout.entry_len(key));
        c.arg("GET").arg(self.inner.layout.entry_arg(key));
        self.inner.redis.cmd_until("GET", &c, deadline).await
    }

    /// [`heal`](Self::heal) one key, given up at `deadline` (the bytes stay and the next read
    /// reports them again). Boxed: the rare path stays out of `get`'s future.
    async fn heal_until(&self, deadline: tokio::time::Instant, redis_key: String) {
        let heal = Box::pin(self.heal(vec![redis_key]));
        let _ = tokio::time::timeout_at(deadline, heal).await;
    }

    async fn heal(&self, redis_keys: Vec<String>) {
        if redis_keys.is_empty() {
            return;
        }
        self.inner
            .corrupt
            .fetch_add(redis_keys.len() as u64, Ordering::Relaxed);
        let mut c = redis::cmd("UNLINK");
        c.arg(&redis_keys);
        // Best effort: a failed removal leaves bytes that the next read reports again.
        let _ = self.inner.redis.cmd::<()>("UNLINK", &c).await;
    }

    /// The command that writes `entry`'s own key (`SET … PX`), with the milliseconds it has
    /// left; `UNLINK` and `None` for an entry with none left.
    fn entry_cmd(&self, key: &Key, entry: &Entry) -> Result<(Cmd, Option<u64>)> {
        let layout = &self.inner.layout;
        let ttl = entry.remaining(self.inner.config.clock.now());
        let ms = ttl.as_millis().min(i64::MAX as u128) as u64;
        if ms == 0 {
            let mut c = Cmd::with_capacity(2, 6 + layout.entry_len(key));
            c.arg("UNLINK").arg(layout.entry_arg(key));
            return Ok((c, None));
        }
        let limits = &self.inner.config.limits;
        let size = envelope::measure(key, entry, limits).map_err(|e| e.with_backend(BACKEND))?;
        // Sized up front, and the envelope written straight into it: the command's buffer is
        // written once, not grown argument by argument, and the payload copied once.
        let mut c = Cmd::with_capacity(5, 3 + layout.entry_len(key) + size + 2 + 20);
        c.arg("SET")
            .arg(layout.entry_arg(key))
            .arg(EnvelopeArg { key, entry, limits })
            .arg("PX")
            .arg(ms);
        Ok((c, Some(ms)))
    }

    /// The commands that write `entry` (or remove an expired one), each with its routing key.
    fn write_cmds(&self, key: &Key, entry: &Entry, out: &mut Vec<(String, Cmd)>) -> Result<()> {
        let (c, ms) = self.entry_cmd(key, entry)?;
        out.push((self.inner.layout.entry(key), c));
        let Some(ms) = ms else { return Ok(()) };
        for t in entry.tags.iter() {
            let tk = self.inner.layout.tag(t);
            let mut sadd = redis::cmd("SADD");
            sadd.arg(&tk).arg(key.as_str());
            out.push((tk.clone(), sadd));
            // A new set has no TTL: NX gives it one; GT extends it to the latest member's.
            let mut nx = redis::cmd("PEXPIRE");
            nx.arg(&tk).arg(ms).arg("NX");
            out.push((tk.clone(), nx));
            let mut gt = redis::cmd("PEXPIRE");
            gt.arg(&tk).arg(ms).arg("GT");
            out.push((tk, gt));
        }
        Ok(())
    }

    async fn unlink(&self, redis_keys: &[String]) -> Result<()> {
        for chunk in redis_keys.chunks(self.inner.config.batch_size) {
            let mut c = redis::cmd("UNLINK");
            c.arg(chunk);
            self.inner.redis.cmd::<()>("UNLINK", &c).await?;
        }
        Ok(())
    }

    async fn invalidate_prefix(&self, user_prefix: &str) -> Result<()> {
        if user_prefix.chars().any(char::is_control) {
            // No key contains a control character: nothing can match.
            return Ok(());
        }
        let pattern = self.inner.layout.scan_pattern(user_prefix);
        for node in self.scan_nodes().await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, mut keys) = self.scan_step(node.as_ref(), cursor, &pattern).await?;
                if !user_prefix.is_empty() {
                    // Tombstones of keys under the prefix stay (they refuse older fills).
                    keys.retain(|k| self.inner.layout.is_entry(k));
                }
                self.unlink(&keys).await?;
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The nodes a `SCAN` must visit: every primary of a cluster, or the one server (`None`).
    async fn scan_nodes(&self) -> Result<Vec<Option<Node>>> {
        let redis = &self.inner.redis;
        if redis.is_cluster() {
            Ok(redis.primaries().await?.into_iter().map(Some).collect())
        } else {
            Ok(vec![None])
        }
    }

    /// One `SCAN` step on a node (or the one server).
    async fn scan_step(
        &self,
        node: Option<&Node>,
        cursor: u64,
        pattern: &str,
    ) -> Result<(u64, Vec<String>)> {
        let cmd = self.scan_cmd(cursor, pattern);
        match node {
            Some(n) => self.inner.redis.cmd_on("SCAN", n, &cmd).await,
            None => self.inner.redis.cmd("SCAN", &cmd).await,
        }
    }

    /// Up to `limit` entry keys starting with `user_prefix` (tag indexes and locks, whose
    /// names hold a control character, are not keys and are skipped).
    async fn list_keys(&self, user_prefix: &str, limit: usize) -> Result<Vec<Key>> {
        let mut out = Vec::new();
        if user_prefix.chars().any(char::is_control) || limit == 0 {
            return Ok(out);
        }
        let pattern = self.inner.layout.scan_pattern(user_prefix);
        let prefix_len = self.inner.layout.prefix().len();
        for node in self.scan_nodes().await? {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys) = self.scan_step(node.as_ref(), cursor, &pattern).await?;
                for k in keys {
                    if let Some(key) = k.get(prefix_len..).and_then(|t| Key::new(t).ok()) {
                        out.push(key);
                        if out.len() >= limit {
                            return Ok(out);
                        }
                    }
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn scan_cmd(&self, cursor: u64, pattern: &str) -> Cmd {
        let mut c = redis::cmd("SCAN");
        c.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(self.inner.config.batch_size);
        c
    }

    async fn invalidate_tag(&self, tag: &str) -> Result<()> {
        let tk = self.inner.layout.tag(tag);
        let redis = &self.inner.redis;
        let limits = &self.inner.config.limits;
        let mut cursor: u64 = 0;
        loop {
            let mut scan = redis::cmd("SSCAN");
            scan.arg(&tk)
                .arg(cursor)
                .arg("COUNT")
                .arg(self.inner.config.batch_size);
            let (next, mut members): (u64, Vec<String>) = redis.cmd("SSCAN", &scan).await?;
            members.sort_unstable();
            members.dedup();
            if !members.is_empty() {
                // Read only header, key and tags of each member to check it still has the tag.
                let reads = members
                    .iter()
                    .map(|m| {
                        let rk = self.inner.layout.entry_str(m);
                        let mut c = redis::cmd("GETRANGE");
                        c.arg(&rk)
                            .arg(0)
                            .arg(tag_section_bound(m.len(), limits).saturating_sub(1));
                        (rk, c)
                    })
                    .collect();
                let heads = redis.batch("GETRANGE", reads).await?;
                let mut doomed = Vec::new();
                for (m, head) in members.iter().zip(heads) {
                    let head = match head {
                        Value::BulkString(b) => b,
                        _ => Vec::new(),
                    };
                    if head.is_empty() {
                        continue; // gone already
                    }
                    match tags_from_head(m, &head, limits) {
                        Ok(tags) if !tags.iter().any(|t| t == tag) => {} // re-set without it
                        _ => doomed.push(self.inner.layout.entry_str(m)),
                    }
                }
                self.unlink(&doomed).await?;
                let mut srem = redis::cmd("SREM");
                srem.arg(&tk).arg(&members);
                redis.cmd::<()>("SREM", &srem).await?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn capability(&self) -> Capability {
        let mut c = Capability::MINIMAL;
        c.native_bulk = true;
        c.prefix_invalidation = true;
        c.tag_invalidation = true;
        c.clear = true;
        c.list_keys = true;
        c.clock_driven_expiry = false;
        c.stores_bytes = true;
        c.shared = true;
        c.reach = layercake_core::Reach::Shared;
        c.durable = false;
        c.max_value_bytes = Some(512 * 1024 * 1024);
        c.get_timeout = Some(self.inner.config.operation_timeout);
        // A `set` is one command or one pipeline (in a cluster, one per slot, sent together),
        // each due by one operation timeout from the call's start.
        c.set_timeout = Some(self.inner.config.operation_timeout);
        c.conditional_fill = true;
        c
    }

    async fn get(&self, key: &Key) -> Result<Option<Entry>> {
        // The whole call, healing included, stays within one operation timeout
        // (`Capability::get_timeout`).
        let deadline = tokio::time::Instant::now() + self.inner.config.operation_timeout;
        let fetched = match &self.inner.coalescer {
            Some(co) => match co.route() {
                Route::Direct(_in_flight) => self.get_alone(key, deadline).await,
                Route::Join => co.join(key, deadline).await,
            },
            None => self.get_alone(key, deadline).await,
        };
        let bytes = match fetched {
            Ok(b) => b,
            // A key of another type under our prefix is corruption too.
            Err(e) if e.kind() == ErrorKind::Corrupt => {
                self.heal_until(deadline, self.inner.layout.entry(key))
                    .await;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let Some(bytes) = bytes else { return Ok(None) };
        match self.decode(key, bytes) {
            Ok(entry) => Ok(entry),
            Err(_) => {
                self.heal_until(deadline, self.inner.layout.entry(key))
                    .await;
                Ok(None)
            }
        }
    }

    async fn set(&self, key: &Key, entry: &Entry) -> Result<()> {
        if entry.tags.is_empty() {
            // One command: no routing key, no list of commands.
            let (c, _) = self.entry_cmd(key, entry)?;
            return self.inner.redis.cmd::<()>("SET", &c).await;
        }
        let mut cmds = Vec::with_capacity(1 + 3 * entry.tags.len());
        self.write_cmds(key, entry, &mut cmds)?;
        if cmds.len() == 1 {
            let (_, c) = &cmds[0];
            return self.inner.redis.cmd::<()>("SET", c).await;
        }
        self.inner.redis.batch("SET", cmds).await.map(|_| ())
    }

    async fn delete(&self, key: &Key) -> Result<()> {
        let mut c = redis::cmd("UNLINK");
        c.arg(self.inner.layout.entry(key));
        self.inner.redis.cmd::<()>("UNLINK", &c).await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Entry>>> {
        let mut out = Vec::with_capacity(keys.len());
        let mut corrupt = Vec::new();
        for chunk in keys.chunks(self.inner.config.batch_size) {
            let rks: Vec<String> = chunk.iter().map(|k| self.inner.layout.entry(k)).collect();
            let mut c = redis::cmd("MGET");
            c.arg(&rks);
            let vals: Vec<Option<Vec<u8>>> = self.inner.redis.cmd("MGET", &c).await?;
            if vals.len() != chunk.len() {
                return Err(Error::corrupt(format!(
                    "MGET of {} keys returned {} values",
                    chunk.len(),
                    vals.len()
                ))
                .with_backend(BACKEND));
            }
            for ((k, rk), v) in chunk.iter().zip(rks).zip(vals) {
                match v {
                    None => out.push(None),
                    Some(b) => match self.decode(k, b) {
                        Ok(e) => out.push(e),
                        Err(_) => {
                            corrupt.push(rk);
                            out.push(None);
                        }
                    },
                }
            }
        }
        corrupt.sort_unstable();
        corrupt.dedup();
        self.heal(corrupt).await;
        Ok(out)
    }

    async fn set_many(&self, items: &[(Key, Entry)]) -> Result<()> {
        for chunk in items.chunks(self.inner.config.batch_size) {
            let mut cmds = Vec::with_capacity(chunk.len());
            for (k, e) in chunk {
                self.write_cmds(k, e, &mut cmds)?;
            }
            self.inner.redis.batch("SET", cmds).await?;
        }
        Ok(())
    }

    async fn delete_many(&self, keys: &[Key]) -> Result<()> {
        let rks: Vec<String> = keys.iter().map(|k| self.inner.layout.entry(k)).collect();
        self.unlink(&rks).await
    }

    async fn invalidate(&self, selector: &Selector) -> Result<()> {
        match selector {
            Selector::Prefix(p) => self.invalidate_prefix(p).await,
            Selector::Tag(t) => self.invalidate_tag(t).await,
            other => Err(Error::unsupported(format!(
                "redis backend cannot invalidate by {other:?}"
            ))
            .with_backend(BACKEND)),
        }
    }

    async fn keys_with_prefix(&self, prefix: &str, limit: usize) -> Result<Vec<Key>> {
        self.list_keys(prefix, limit).await
    }

    async fn fill(&self, key: &Key, entry: &Entry) -> Result<FillOutcome> {
        self.fill_entry(key, entry).await
    }

    async fn fill_many(&self, items: &[(Key, Entry)]) -> Result<Vec<FillOutcome>> {
        self.fill_entries(items).await
    }

    async fn delete_with(&self, key: &Key, tombstone: Tombstone) -> Result<()> {
        self.delete_with_tombstone(key, tombstone).await
    }

    async fn invalidate_with(&self, selector: &Selector, tombstone: Tombstone) -> Result<()> {
        self.invalidate_with_tombstone(selector, tombstone).await
    }

    async fn clear(&self) -> Result<()> {
        // The empty user prefix: every entry and every tag index under the cache prefix.
        self.invalidate_prefix("").await
    }

    async fn health(&self) -> Result<()> {
        self.inner
            .redis
            .cmd::<()>("PING", &redis::cmd("PING"))
            .await
    }

    fn corrupt_reads(&self) -> u64 {
        self.inner.corrupt.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The futures of `get` and `set` are boxed on every call (the `Backend` trait is
    /// object-safe). glibc serves allocations up to 1 032 bytes from a per-thread cache and
    /// larger ones from a shared arena under a lock; the pool mode's checkout once made both
    /// futures larger than that (1 272 and 1 360 bytes) in every mode.
    #[tokio::test]
    async fn hot_path_futures_fit_the_allocators_thread_cache() {
        // Nothing listens on port 1: the backend connects in the background, never used.
        let b = RedisBackend::connect(RedisConfig::new("redis://127.0.0.1:1"))
            .await
            .expect("a backend that connects in the background");
        let key = Key::new("k").expect("a valid key");
        let entry = Entry::new(
            layercake_core::Bytes::from_static(b"v"),
            b.inner.config.clock.now(),
            std::time::Duration::from_secs(5),
        );
        let get = Backend::get(&b, &key);
        let get_size = size_of_val(&*get);
        drop(get);
        let set = Backend::set(&b, &key, &entry);
        let set_size = size_of_val(&*set);
        drop(set);
        assert!(
            get_size <= 1016 && set_size <= 1016,
            "boxed futures: get {get_size} bytes, set {set_size} bytes (at most 1016 each)"
        );
    }
}
