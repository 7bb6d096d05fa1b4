//! [`Redis`]: one handle over the three connection modes, with the operation timeout, pool
//! checkout and error mapping applied to every command in one place.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, Weak};
use std::time::Duration;

use layercake_core::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo, Slot};
use redis::{
    AsyncConnectionConfig, Client, Cmd, ConnectionInfo, FromRedisValue, IntoConnectionInfo,
    Pipeline, RedisError, RedisResult, Value,
};
use tokio::time::Instant;

use crate::config::{ConnectionMode, RedisConfig};
use crate::error::{
    BACKEND, breaks_connection, connect_err_at, connect_timeout, is_connection_failure, map_err,
    map_err_at, map_pool_err, op_timeout,
};
use crate::lease::Lease;
use crate::managed::Managed;
use crate::pool::PoolManager;
use crate::tls;

#[derive(Clone)]
enum Conn {
    Managed(Arc<Managed>),
    /// The pool, and why its last connection attempt failed.
    Pool(bb8::Pool<PoolManager>, Arc<Mutex<Option<RedisError>>>),
    Cluster(ClusterConnection),
}

/// A cloneable handle that runs commands with the configured timeouts.
#[derive(Clone)]
pub(crate) struct Redis {
    link: Arc<Link>,
    /// Where it connects, for errors: `host:port` (or a socket path), comma-separated for
    /// cluster seeds; never credentials.
    addr: Arc<str>,
    /// Whether it talks to a cluster (keys of one pipeline must share a slot).
    cluster: bool,
    op_timeout: Duration,
    pool_wait: Duration,
    /// How many times a request that failed at the I/O level is sent again (time permitting).
    retries: u32,
}

#[derive(Clone, Copy)]
enum Req<'a> {
    Cmd(&'a Cmd),
    Pipe(&'a Pipeline),
}

impl Req<'_> {
    async fn send<T, C>(self, c: &mut C) -> RedisResult<T>
    where
        T: FromRedisValue,
        C: ConnectionLike + Send,
    {
        match self {
            Req::Cmd(cmd) => cmd.query_async(c).await,
            Req::Pipe(p) => p.query_async(c).await,
        }
    }
}

/// A Redis node address as the cluster reports it.
pub(crate) type Node = (String, u16);

/// The connection info for `url` with the configured credentials applied, and Nagle's
/// algorithm kept on (`TCP_NODELAY` off, said here rather than left to redis-rs's default): a
/// command written while an earlier one is unacknowledged leaves in one packet with the ones
/// after it, and 16 tasks setting 1 KiB values ran 1.26× faster than with `TCP_NODELAY`
/// (docs/decisions/0002-redis-connection-mode.md, amendment 4).
pub(crate) fn connection_info(cfg: &RedisConfig, url: &str) -> Result<ConnectionInfo> {
    let info = url.into_connection_info().map_err(map_err)?;
    let tcp = info.tcp_settings().clone().set_nodelay(false);
    let mut settings = info.redis_settings().clone();
    if let Some(u) = &cfg.username {
        settings = settings.set_username(u);
    }
    if let Some(p) = &cfg.password {
        settings = settings.set_password(p);
    }
    Ok(info.set_redis_settings(settings).set_tcp_settings(tcp))
}

/// Where `cfg` connects, for messages: `host:port` (or a socket path) of each configured node,
/// comma-separated; never credentials.
pub(crate) fn endpoint(cfg: &RedisConfig) -> String {
    cfg.nodes()
        .into_iter()
        .map(|u| match u.into_connection_info() {
            Ok(info) => info.addr().to_string(),
            Err(_) => crate::config::redact_url(u),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Open the connection of the configured mode (without the PING).
async fn open(cfg: &RedisConfig, addr: &str) -> Result<Conn> {
    Ok(match cfg.mode {
        ConnectionMode::Multiplexed => {
            let mc = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(cfg.connect_timeout))
                // One timer per request, the operation deadline in `run`: a second one
                // inside redis-rs cost ~5 % of the throughput at 64 in flight.
                .set_response_timeout(None)
                .set_number_of_retries(1)
                .set_min_delay(Duration::from_millis(10))
                .set_max_delay(cfg.reconnect_max_delay);
            let cl = client(cfg)?;
            let fut = cl.get_connection_manager_with_config(mc.clone());
            let m = tokio::time::timeout(cfg.connect_timeout, fut)
                .await
                .map_err(|_| connect_timeout(addr, cfg.connect_timeout, uses_tls(cfg)))?
                .map_err(|e| connect_err_at(e, addr))?;
            Conn::Managed(Arc::new(Managed::new(cl, mc, m)))
        }
        ConnectionMode::Pool => {
            let last_error = Arc::new(Mutex::new(None));
            let manager = PoolManager {
                client: client(cfg)?,
                config: AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(cfg.connect_timeout))
                    .set_response_timeout(None),
                last_error: last_error.clone(),
            };
            let pool = bb8::Pool::builder()
                .max_size(cfg.pool_max_size)
                .min_idle(Some(cfg.pool_max_size))
                .test_on_check_out(false)
                .connection_timeout(cfg.pool_wait_timeout)
                .build_unchecked(manager);
            Conn::Pool(pool, last_error)
        }
        ConnectionMode::Cluster => {
            let infos = cfg
                .nodes()
                .into_iter()
                .map(|u| connection_info(cfg, u))
                .collect::<Result<Vec<_>>>()?;
            let mut b = ClusterClientBuilder::new(infos)
                .connection_timeout(cfg.connect_timeout)
                .response_timeout(cfg.operation_timeout)
                .retries(2)
                .min_retry_wait(10)
                .max_retry_wait(cfg.reconnect_max_delay.as_millis() as u64);
            if let Some(u) = &cfg.username {
                b = b.username(u);
            }
            if let Some(p) = &cfg.password {
                b = b.password(p);
            }
            if uses_tls(cfg) {
                tls::ensure_crypto_provider()?;
            }
            if let Some(certs) = tls::certificates(cfg) {
                b = b.certs(certs);
            }
            let client = b.build().map_err(map_err)?;
            let c = tokio::time::timeout(cfg.connect_timeout, client.get_async_connection())
                .await
                .map_err(|_| connect_timeout(addr, cfg.connect_timeout, uses_tls(cfg)))?
                .map_err(|e| connect_err_at(e, addr))?;
            Conn::Cluster(c)
        }
    })
}

/// Connect `handle` in the background: attempts with exponential backoff until one succeeds
/// (its connection is then installed in `link`) or the handle is dropped (`link` is gone).
async fn connect_in_background(link: Weak<Link>, handle: Redis, cfg: RedisConfig) {
    // The task's own handle must not keep the link alive.
    let Redis {
        addr,
        cluster,
        op_timeout,
        pool_wait,
        retries,
        link: own,
    } = handle;
    drop(own);
    let mut delay = CONNECT_MIN_DELAY;
    loop {
        tokio::time::sleep(delay).await;
        let Some(live) = link.upgrade() else { return };
        let probe = Redis {
            link: live,
            addr: addr.clone(),
            cluster,
            op_timeout,
            pool_wait,
            retries,
        };
        match probe.establish(&cfg).await {
            Ok(conn) => {
                let _ = probe.link.conn.set(conn);
                return;
            }
            Err(e) => probe.link.set_last_error(e),
        }
        drop(probe);
        delay = (delay * 2).min(CONNECT_MAX_DELAY);
    }
}

/// Whether `cfg` connects with TLS.
pub(crate) fn uses_tls(cfg: &RedisConfig) -> bool {
    cfg.nodes().iter().any(|u| tls::is_tls(u))
}

/// A client for the first configured node (standalone URL or first cluster seed), with the
/// configured TLS certificates.
pub(crate) fn client(cfg: &RedisConfig) -> Result<Client> {
    let url = cfg.nodes().first().copied().unwrap_or(cfg.url.as_str());
    let info = connection_info(cfg, url)?;
    if tls::is_tls(url) {
        tls::ensure_crypto_provider()?;
    }
    match tls::certificates(cfg) {
        Some(certs) => Client::build_with_tls(info, certs).map_err(map_err),
        None => Client::open(info).map_err(map_err),
    }
}

/// The connection of a [`Redis`] handle, set once: at [`Redis::connect`] when the server
/// answered, else by the background connector when it first does.
struct Link {
    conn: OnceLock<Conn>,
    /// Why the last connection attempt failed, while not connected.
    last_error: Mutex<Option<Error>>,
}

impl Link {
    fn set_last_error(&self, e: Error) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e);
    }
}

/// First pause between background connection attempts (doubled up to [`CONNECT_MAX_DELAY`]).
const CONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest pause between background connection attempts: a server that comes up is used
/// within about this long (plus one connection attempt).
const CONNECT_MAX_DELAY: Duration = Duration::from_secs(1);

impl Redis {
    /// Connect as configured, and PING once, so that wrong credentials or an address that is
    /// not a Redis server fail here.
    ///
    /// When the server cannot be reached (refused, timed out) and
    /// [`require_server`](RedisConfig::require_server) is off, the handle is returned anyway,
    /// unconnected: its commands fail at once with `Unavailable` (naming the last connection
    /// error) while a background task connects with exponential backoff (50 ms doubling to
    /// 1 s), until the server answers or the handle is dropped.
    pub(crate) async fn connect(cfg: &RedisConfig) -> Result<Redis> {
        cfg.validate()?;
        let addr: Arc<str> = endpoint(cfg).into();
        let retries = match cfg.mode {
            // A failed connection is replaced by the manager's own reconnect: once is enough.
            ConnectionMode::Multiplexed => 1,
            // Each failed attempt discards one dead pooled connection (after a restart they all
            // are), so up to one per pooled connection.
            ConnectionMode::Pool => cfg.pool_max_size,
            // The cluster client retries by itself.
            ConnectionMode::Cluster => 0,
        };
        let r = Redis {
            link: Arc::new(Link {
                conn: OnceLock::new(),
                last_error: Mutex::new(None),
            }),
            addr,
            cluster: cfg.mode == ConnectionMode::Cluster,
            op_timeout: cfg.operation_timeout,
            pool_wait: cfg.pool_wait_timeout,
            retries,
        };
        match r.establish(cfg).await {
            Ok(conn) => {
                let _ = r.link.conn.set(conn);
            }
            Err(e) if cfg.require_server || !e.is_temporary() => return Err(e),
            Err(e) => {
                r.link.set_last_error(e);
                tokio::spawn(connect_in_background(
                    Arc::downgrade(&r.link),
                    r.clone(),
                    cfg.clone(),
                ));
            }
        }
        Ok(r)
    }

    /// One connection attempt: open the connection of the configured mode and PING on it.
    async fn establish(&self, cfg: &RedisConfig) -> Result<Conn> {
        let conn = open(cfg, &self.addr).await?;
        let ping = redis::cmd("PING");
        let deadline = Instant::now() + self.op_timeout;
        self.run_on::<()>(&conn, "PING", Req::Cmd(&ping), deadline)
            .await?;
        Ok(conn)
    }

    /// Whether it is connected (always, unless it was built while the server was down and the
    /// server has not answered since).
    pub(crate) fn is_connected(&self) -> bool {
        self.link.conn.get().is_some()
    }

    /// The connection, or the `Unavailable` error of a handle still connecting.
    fn conn(&self) -> Result<&Conn> {
        match self.link.conn.get() {
            Some(c) => Ok(c),
            None => Err(self.not_connected()),
        }
    }

    #[cold]
    fn not_connected(&self) -> Error {
        let last = self
            .link
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let e = Error::unavailable(format!(
            "redis at {} has not answered yet; connecting in the background",
            self.addr
        ))
        .with_backend(BACKEND);
        match last {
            Some(cause) => e.with_source(cause),
            None => e,
        }
    }

    /// Whether keys of one pipeline must share a slot.
    pub(crate) fn is_cluster(&self) -> bool {
        self.cluster
    }

    /// Run one command.
    pub(crate) async fn cmd<T: FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> Result<T> {
        self.run(op, Req::Cmd(cmd)).await
    }

    /// Run one command due by `deadline` (at most one operation timeout away), for a caller
    /// that bounds more than the command by the same deadline.
    pub(crate) async fn cmd_until<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
        deadline: Instant,
    ) -> Result<T> {
        self.run_until(op, Req::Cmd(cmd), deadline).await
    }

    /// Run one pipeline (standalone, or all of its keys on one slot).
    pub(crate) async fn pipe<T: FromRedisValue>(
        &self,
        op: &'static str,
        pipe: &Pipeline,
    ) -> Result<T> {
        self.run(op, Req::Pipe(pipe)).await
    }

    /// Run `req` within the operation timeout.
    ///
    /// - A request that failed at the I/O level (refused, reset, broken pipe, EOF, or a
    ///   connection attempt that timed out) is sent again, up to `retries` times, while the
    ///   deadline allows. Every command this crate sends is safe to repeat (GET, MGET, SET,
    ///   UNLINK, SADD, PEXPIRE, SCAN, PING, PUBLISH of an invalidation, EVAL
    ///   compare-and-delete; a repeated lock `SET NX` can only report "not acquired"). This is
    ///   what makes the first command after a Redis restart (or a freeze) succeed: the manager
    ///   hands that command the failure of its last reconnect attempt and only then
    ///   reconnects, and the retry waits for that reconnect. A request that
    ///   reached the deadline is not repeated: no time remains.
    /// - A request that timed out, or was abandoned at the deadline, breaks its connection
    ///   (see [`Lease`]): it is never used again. One cancelled by the caller earlier does not.
    async fn run<T: FromRedisValue>(&self, op: &'static str, req: Req<'_>) -> Result<T> {
        self.run_until(op, req, Instant::now() + self.op_timeout)
            .await
    }

    /// [`run`](Redis::run) with the deadline given.
    async fn run_until<T: FromRedisValue>(
        &self,
        op: &'static str,
        req: Req<'_>,
        deadline: Instant,
    ) -> Result<T> {
        self.run_on(self.conn()?, op, req, deadline).await
    }

    /// [`run_until`](Redis::run_until) on `conn`.
    async fn run_on<T: FromRedisValue>(
        &self,
        conn: &Conn,
        op: &'static str,
        req: Req<'_>,
        deadline: Instant,
    ) -> Result<T> {
        let fut = async {
            let mut left = self.retries;
            loop {
                match self.attempt(conn, req, deadline).await? {
                    Err(e)
                        if left > 0 && is_connection_failure(&e) && Instant::now() < deadline =>
                    {
                        left -= 1;
                    }
                    r => return r.map_err(|e| map_err_at(e, &self.addr)),
                }
            }
        };
        match tokio::time::timeout_at(deadline, fut).await {
            Ok(r) => r,
            Err(_) => Err(op_timeout(op, self.op_timeout)),
        }
    }

    /// Send `req` once. The outer error is a failure to get a connection (not retried).
    async fn attempt<T: FromRedisValue>(
        &self,
        conn: &Conn,
        req: Req<'_>,
        deadline: Instant,
    ) -> Result<RedisResult<T>> {
        match conn {
            Conn::Managed(m) => {
                let (mut manager, generation) = m.current()?;
                let lease = Lease::new(generation, deadline);
                let r = req.send(&mut manager).await;
                // Connection-level errors are the manager's to repair (it reconnects); a
                // timeout (a reconnect attempt's) is not, so the manager is replaced. A request
                // abandoned at the deadline breaks it through the lease's drop.
                lease.settle(matches!(&r, Err(e) if e.is_timeout()));
                Ok(r)
            }
            // Boxed: the pool's checkout future is most of the size of this one, and the
            // default (multiplexed) mode would otherwise carry it in every request's future
            // (the allocator serves small futures from its per-thread cache, large ones from
            // the shared arena).
            Conn::Pool(p, last_error) => {
                Box::pin(self.attempt_pooled(p, last_error, req, deadline)).await
            }
            Conn::Cluster(c) => Ok(req.send(&mut c.clone()).await),
        }
    }

    /// [`attempt`](Redis::attempt) on a connection checked out of the pool `p`.
    async fn attempt_pooled<T: FromRedisValue>(
        &self,
        p: &bb8::Pool<PoolManager>,
        last_error: &Mutex<Option<RedisError>>,
        req: Req<'_>,
        deadline: Instant,
    ) -> Result<RedisResult<T>> {
        let (mut conn, broken) = loop {
            let pc = p.get().await.map_err(|e| match e {
                // Waited because no connection could be opened: say why.
                bb8::RunError::TimedOut => match PoolManager::last_error(last_error) {
                    // Once connected, a failed reconnect is an outage (a server
                    // restarting may reset a handshake), whatever it looked like.
                    Some(cause) if self.is_connected() => {
                        connect_err_at(cause, &self.addr).with_temporary(true)
                    }
                    Some(cause) => connect_err_at(cause, &self.addr),
                    None => map_pool_err(e, self.pool_wait, &self.addr),
                },
                e => map_pool_err(e, self.pool_wait, &self.addr),
            })?;
            if pc.broken.load(Ordering::Relaxed) {
                // Returned as broken: bb8 drops it and opens a replacement.
                continue;
            }
            break (pc.conn.clone(), pc.broken.clone());
        };
        let lease = Lease::new(&*broken, deadline);
        let r = req.send(&mut conn).await;
        lease.settle(matches!(&r, Err(e) if breaks_connection(e)));
        Ok(r)
    }

    /// Run commands as pipelines: one in standalone mode, one per slot (concurrently) in
    /// cluster mode. Each command comes with the key that routes it. Returns one reply per
    /// command, in order.
    pub(crate) async fn batch(
        &self,
        op: &'static str,
        cmds: Vec<(String, Cmd)>,
    ) -> Result<Vec<Value>> {
        if cmds.is_empty() {
            return Ok(Vec::new());
        }
        if !self.is_cluster() {
            let mut p = redis::pipe();
            for (_, c) in cmds {
                p.add_command(c);
            }
            return self.pipe(op, &p).await;
        }
        let n = cmds.len();
        let mut groups: HashMap<Slot, (Pipeline, Vec<usize>)> = HashMap::new();
        for (i, (key, c)) in cmds.into_iter().enumerate() {
            let g = groups
                .entry(Slot::for_key(key.as_bytes()))
                .or_insert_with(|| (redis::pipe(), Vec::new()));
            g.0.add_command(c);
            g.1.push(i);
        }
        let replies =
            futures::future::try_join_all(groups.into_values().map(|(p, idx)| async move {
                let vals: Vec<Value> = self.pipe(op, &p).await?;
                Ok::<_, layercake_core::Error>((idx, vals))
            }))
            .await?;
        let mut out = vec![Value::Nil; n];
        for (idx, vals) in replies {
            for (i, v) in idx.into_iter().zip(vals) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    /// The primaries of the cluster (empty outside cluster mode).
    pub(crate) async fn primaries(&self) -> Result<Vec<Node>> {
        if !self.is_cluster() {
            return Ok(Vec::new());
        }
        let v: Value = self
            .cmd("CLUSTER SLOTS", redis::cmd("CLUSTER").arg("SLOTS"))
            .await?;
        let mut out: Vec<Node> = Vec::new();
        if let Value::Array(ranges) = v {
            for r in ranges {
                let Value::Array(parts) = r else { continue };
                let Some(Value::Array(node)) = parts.get(2) else {
                    continue;
                };
                let host = match node.first() {
                    Some(Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::SimpleString(s)) => s.clone(),
                    _ => continue,
                };
                let Some(Value::Int(port)) = node.get(1) else {
                    continue;
                };
                let n = (host, *port as u16);
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// Run one command on one cluster node.
    pub(crate) async fn cmd_on<T: FromRedisValue>(
        &self,
        op: &'static str,
        node: &Node,
        cmd: &Cmd,
    ) -> Result<T> {
        let Conn::Cluster(c) = self.conn()? else {
            return self.cmd(op, cmd).await;
        };
        let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
            host: node.0.clone(),
            port: node.1,
        });
        let fut = async {
            let v = c
                .clone()
                .route_command(cmd.clone(), routing)
                .await
                .map_err(|e| map_err_at(e, &format!("{}:{}", node.0, node.1)))?;
            T::from_redis_value(v).map_err(|e| map_err(e.into()))
        };
        match tokio::time::timeout(self.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(op_timeout(op, self.op_timeout)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_keep_nagles_algorithm_on() -> Result<()> {
        for url in ["redis://127.0.0.1:6379", "rediss://cache.example:6380/2"] {
            let cfg = RedisConfig::new(url).with_auth(None, "secret");
            let info = connection_info(&cfg, url)?;
            assert!(
                !info.tcp_settings().nodelay(),
                "{url}: TCP_NODELAY must stay off"
            );
            // The credentials are still applied beside it.
            assert_eq!(info.redis_settings().password(), Some("secret"));
        }
        Ok(())
    }
}
