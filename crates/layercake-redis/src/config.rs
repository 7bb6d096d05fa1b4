//! [`RedisConfig`]: where the Redis tier connects, how, and with which limits;
//! [`RedisBackplaneConfig`]: the pub/sub backplane's channel and reconnect behaviour.

use std::fmt;
use std::time::Duration;

use layercake_core::backplane::InstanceId;
use layercake_core::{EnvelopeLimits, Error, Result, SharedClock, system_clock};

use crate::error::BACKEND;

/// How the backend talks to Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ConnectionMode {
    /// One multiplexed, auto-reconnecting connection (redis-rs `ConnectionManager`): every
    /// concurrent request is pipelined on one socket. The default (see
    /// `docs/decisions/0002-redis-connection-mode.md`: fastest at 1 and at 64 in flight, fails
    /// fast while Redis is down, reconnects by itself). A connection on which a request timed
    /// out is replaced, and a request that failed at the I/O level is sent once more within
    /// its operation timeout.
    #[default]
    Multiplexed,
    /// A bb8 pool of up to [`pool_max_size`](RedisConfig::pool_max_size) multiplexed
    /// connections, checked out one request at a time, without a PING on checkout; a connection
    /// that saw a connection-level error or a timeout is discarded and replaced.
    Pool,
    /// Redis Cluster through redis-rs `cluster_async`, seeded by
    /// [`cluster_nodes`](RedisConfig::cluster_nodes) (or [`url`](RedisConfig::url) when empty).
    Cluster,
}

/// Configuration of a [`RedisBackend`](crate::RedisBackend).
///
/// Contract:
/// - every timeout is explicit and finite: `connect_timeout` bounds a connection attempt,
///   `pool_wait_timeout` a pool checkout, `operation_timeout` every command or pipeline as the
///   caller sees it (checkout included);
/// - `key_prefix` is non-empty and free of control characters; every key this backend writes
///   starts with it, and `clear` removes exactly the keys under it;
/// - `Debug` never prints a password: URL passwords are shown as `***`, and so is
///   [`password`](RedisConfig::password).
///
/// ```
/// use layercake_redis::{ConnectionMode, RedisConfig};
/// use std::time::Duration;
/// let cfg = RedisConfig::new("redis://app:s3cret@127.0.0.1:6379/0")
///     .with_cache_name("users")
///     .with_mode(ConnectionMode::Multiplexed)
///     .with_operation_timeout(Duration::from_millis(200));
/// assert_eq!(cfg.key_prefix, "lc:users:");
/// let shown = format!("{cfg:?}");
/// assert!(shown.contains("redis://app:***@127.0.0.1:6379/0"));
/// assert!(!shown.contains("s3cret"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct RedisConfig {
    /// `redis://[user[:password]@]host[:port][/db]` or `rediss://…` for TLS (standalone and
    /// pool modes; also the cluster seed when `cluster_nodes` is empty). Default
    /// `redis://127.0.0.1:6379`.
    pub url: String,
    /// Seed nodes of a cluster (same URL syntax), for [`ConnectionMode::Cluster`].
    pub cluster_nodes: Vec<String>,
    /// The connection mode. Default [`ConnectionMode::Multiplexed`].
    pub mode: ConnectionMode,
    /// Prefix of every key of this cache. Default `lc:default:`; see
    /// [`with_cache_name`](RedisConfig::with_cache_name).
    pub key_prefix: String,
    /// ACL user name, overriding the URL's.
    pub username: Option<String>,
    /// Password, overriding the URL's. Never printed.
    pub password: Option<String>,
    /// Bound on one connection attempt. Default 1 s.
    pub connect_timeout: Duration,
    /// Bound on one command or pipeline, as the caller sees it. Default 500 ms.
    pub operation_timeout: Duration,
    /// Bound on waiting for a pooled connection ([`ConnectionMode::Pool`]). Default 250 ms.
    pub pool_wait_timeout: Duration,
    /// Most connections in the pool ([`ConnectionMode::Pool`]). Default 8.
    pub pool_max_size: u32,
    /// Longest pause between reconnect attempts of the multiplexed connection. Default 100 ms.
    pub reconnect_max_delay: Duration,
    /// Keys per `SCAN` step, `UNLINK` batch and `MGET` chunk (coalesced `GET`s included).
    /// Default 500.
    pub batch_size: usize,
    /// Send concurrent single-key `GET`s together as one `MGET` once
    /// [`coalesce_after`](RedisConfig::coalesce_after) lone ones are in flight (multiplexed
    /// and pool modes; a cluster spreads keys over slots, so there it is off). At many
    /// requests in flight this costs the client far less per read; below that, each `GET` is
    /// sent at once. Default `true`.
    pub coalesce_gets: bool,
    /// With [`coalesce_gets`](RedisConfig::coalesce_gets), how many lone `GET`s may be in
    /// flight before further concurrent ones join an `MGET` (at least 1; 0 is a `Config`
    /// error). `None` (the default): 16 on a multiplexed connection, which pipelines lone
    /// commands and whose readers would otherwise queue behind a round trip; 1 in pool mode,
    /// where larger limits measured no faster (4, 8) or slower (16) at 64 requests in flight.
    pub coalesce_after: Option<usize>,
    /// The clock that turns an entry's `retain_until` into a `PX` lifetime. Default: system.
    pub clock: SharedClock,
    /// Envelope limits checked on encode and decode. Default [`EnvelopeLimits::default`].
    pub limits: EnvelopeLimits,
    /// Whether [`connect`](crate::RedisBackend::connect) fails when Redis cannot be reached.
    /// Default `false`: the backend (or backplane) is built anyway and connects in the
    /// background, its calls failing with `Unavailable` until Redis answers, so a service
    /// starts while Redis is down and a cache's circuit breaker skips the tier meanwhile.
    /// Wrong credentials, an invalid configuration and an address that is not a Redis server
    /// fail `connect` either way.
    pub require_server: bool,
    /// PEM of the CA certificate(s) that sign the server's certificate, instead of the
    /// system's roots (`rediss://` only). Set with
    /// [`with_tls_root_ca`](RedisConfig::with_tls_root_ca).
    pub(crate) tls_root_ca: Option<Vec<u8>>,
    /// PEM of the client certificate chain and of its private key, for servers that require
    /// client certificates (`rediss://` only). Never printed.
    pub(crate) tls_client_auth: Option<(Vec<u8>, Vec<u8>)>,
}

impl RedisConfig {
    /// Defaults, connecting to `url`.
    pub fn new(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: url.into(),
            ..RedisConfig::default()
        }
    }

    /// A cluster seeded by `nodes` ([`ConnectionMode::Cluster`]).
    pub fn cluster<I, S>(nodes: I) -> RedisConfig
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let nodes: Vec<String> = nodes.into_iter().map(Into::into).collect();
        RedisConfig {
            url: nodes.first().cloned().unwrap_or_default(),
            cluster_nodes: nodes,
            mode: ConnectionMode::Cluster,
            ..RedisConfig::default()
        }
    }

    /// Set the key prefix to `lc:{name}:`.
    pub fn with_cache_name(mut self, name: &str) -> Self {
        self.key_prefix = format!("lc:{name}:");
        self
    }

    /// Set the key prefix verbatim.
    pub fn with_key_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.key_prefix = prefix.into();
        self
    }

    /// Set the connection mode.
    pub fn with_mode(mut self, mode: ConnectionMode) -> Self {
        self.mode = mode;
        self
    }

    /// Set the ACL user and password (overriding the URL's).
    pub fn with_auth(mut self, username: Option<String>, password: impl Into<String>) -> Self {
        self.username = username;
        self.password = Some(password.into());
        self
    }

    /// Set the connect timeout.
    pub fn with_connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// Set the operation timeout.
    pub fn with_operation_timeout(mut self, d: Duration) -> Self {
        self.operation_timeout = d;
        self
    }

    /// Set the pool wait timeout.
    pub fn with_pool_wait_timeout(mut self, d: Duration) -> Self {
        self.pool_wait_timeout = d;
        self
    }

    /// Set the largest pool size.
    pub fn with_pool_max_size(mut self, n: u32) -> Self {
        self.pool_max_size = n;
        self
    }

    /// Turn the coalescing of concurrent `GET`s into `MGET`s on or off (see
    /// [`coalesce_gets`](RedisConfig::coalesce_gets)).
    pub fn with_coalesce_gets(mut self, on: bool) -> Self {
        self.coalesce_gets = on;
        self
    }

    /// Set how many lone `GET`s may be in flight before further concurrent ones are coalesced
    /// (see [`coalesce_after`](RedisConfig::coalesce_after)).
    ///
    /// ```
    /// use layercake_redis::RedisConfig;
    /// // Coalesce from the second concurrent GET on (the pool mode's default).
    /// let cfg = RedisConfig::new("redis://127.0.0.1:6379").with_coalesce_after(1);
    /// assert_eq!(cfg.coalesce_after, Some(1));
    /// ```
    pub fn with_coalesce_after(mut self, lone_gets: usize) -> Self {
        self.coalesce_after = Some(lone_gets);
        self
    }

    /// [`coalesce_after`](RedisConfig::coalesce_after), or its default for the mode.
    pub(crate) fn lone_gets_before_coalescing(&self) -> usize {
        self.coalesce_after.unwrap_or(match self.mode {
            ConnectionMode::Pool => 1,
            _ => crate::coalesce::DEFAULT_DIRECT_MAX,
        })
    }

    /// Fail [`connect`](crate::RedisBackend::connect) when Redis cannot be reached (`true`),
    /// or connect in the background (`false`, the default); see
    /// [`require_server`](RedisConfig::require_server).
    pub fn with_require_server(mut self, on: bool) -> Self {
        self.require_server = on;
        self
    }

    /// Trust the CA certificate(s) in `pem` (PEM text, one or more certificates) for the
    /// server's certificate, instead of the system's roots. `rediss://` URLs only; with a
    /// `redis://` URL, `connect` fails with a `Config` error.
    ///
    /// TLS uses rustls; its crypto provider is the application's if it installed one
    /// (`rustls::crypto::CryptoProvider::install_default`), else ring (feature `tls-ring`, on
    /// by default), installed at the first TLS connection.
    pub fn with_tls_root_ca(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.tls_root_ca = Some(pem.into());
        self
    }

    /// Present a client certificate: `cert_pem` is the certificate chain, `key_pem` its
    /// private key (PKCS#8, PKCS#1 or SEC1, in PEM), for servers that require client
    /// certificates (`tls-auth-clients yes`). `rediss://` URLs only. The key is never printed.
    pub fn with_tls_client_auth(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.tls_client_auth = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Set the clock.
    pub fn with_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Check the configuration; a problem is a [`Config`](layercake_core::ErrorKind::Config)
    /// error naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::config(m).with_backend(BACKEND));
        if self.key_prefix.is_empty() {
            return bad("key_prefix must not be empty (clear would remove every key)".into());
        }
        if self.key_prefix.chars().any(char::is_control) {
            return bad("key_prefix must not contain control characters".into());
        }
        for (name, d) in [
            ("connect_timeout", self.connect_timeout),
            ("operation_timeout", self.operation_timeout),
            ("pool_wait_timeout", self.pool_wait_timeout),
        ] {
            if d.is_zero() {
                return bad(format!("{name} must be greater than zero"));
            }
        }
        if self.pool_max_size == 0 {
            return bad("pool_max_size must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch_size must be at least 1".into());
        }
        if self.coalesce_after == Some(0) {
            return bad("coalesce_after must be at least 1".into());
        }
        let nodes = self.nodes();
        if nodes.is_empty() || nodes.iter().any(|u| u.is_empty()) {
            return bad("no redis URL configured".into());
        }
        for u in nodes {
            if !(u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("redis+unix://")
                || u.starts_with("unix://"))
            {
                return bad(format!(
                    "redis URL {} must start with redis://, rediss:// or unix://",
                    redact_url(u)
                ));
            }
        }
        crate::tls::validate(self)
    }

    /// The URLs to connect to: the cluster nodes in cluster mode (the URL if none), else the URL.
    pub(crate) fn nodes(&self) -> Vec<&str> {
        if self.mode == ConnectionMode::Cluster && !self.cluster_nodes.is_empty() {
            self.cluster_nodes.iter().map(String::as_str).collect()
        } else {
            vec![self.url.as_str()]
        }
    }
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: "redis://127.0.0.1:6379".to_owned(),
            cluster_nodes: Vec::new(),
            mode: ConnectionMode::default(),
            key_prefix: "lc:default:".to_owned(),
            username: None,
            password: None,
            connect_timeout: Duration::from_secs(1),
            operation_timeout: Duration::from_millis(500),
            pool_wait_timeout: Duration::from_millis(250),
            pool_max_size: 8,
            reconnect_max_delay: Duration::from_millis(100),
            batch_size: 500,
            coalesce_gets: true,
            coalesce_after: None,
            clock: system_clock(),
            limits: EnvelopeLimits::default(),
            require_server: false,
            tls_root_ca: None,
            tls_client_auth: None,
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("url", &redact_url(&self.url))
            .field(
                "cluster_nodes",
                &self
                    .cluster_nodes
                    .iter()
                    .map(|u| redact_url(u))
                    .collect::<Vec<_>>(),
            )
            .field("mode", &self.mode)
            .field("key_prefix", &self.key_prefix)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("connect_timeout", &self.connect_timeout)
            .field("operation_timeout", &self.operation_timeout)
            .field("pool_wait_timeout", &self.pool_wait_timeout)
            .field("pool_max_size", &self.pool_max_size)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("batch_size", &self.batch_size)
            .field("coalesce_gets", &self.coalesce_gets)
            .field("coalesce_after", &self.coalesce_after)
            .field("clock", &self.clock)
            .field("limits", &self.limits)
            .field("require_server", &self.require_server)
            .field(
                "tls_root_ca",
                &self
                    .tls_root_ca
                    .as_ref()
                    .map(|pem| format!("<{} bytes of PEM>", pem.len())),
            )
            .field(
                "tls_client_auth",
                &self
                    .tls_client_auth
                    .as_ref()
                    .map(|_| "<certificate and ***>"),
            )
            .finish()
    }
}

/// Configuration of a [`RedisBackplane`](crate::RedisBackplane).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisBackplaneConfig {
    /// The pub/sub channel. Default `layercake:backplane`.
    pub channel: String,
    /// This instance's id, stamped on published messages and filtered out on receipt.
    /// Default: a fresh [`InstanceId::generate`].
    pub instance: InstanceId,
    /// Events buffered per subscriber before it lags. Default 1024.
    pub capacity: usize,
    /// First pause between resubscribe attempts (doubled up to `reconnect_max_delay`).
    /// Default 50 ms.
    pub reconnect_min_delay: Duration,
    /// Longest pause between resubscribe attempts. Default 1 s.
    pub reconnect_max_delay: Duration,
    /// How often the subscriber connection is PINGed to notice a frozen or silently lost
    /// server. Default 1 s.
    pub keepalive: Duration,
}

impl RedisBackplaneConfig {
    /// Defaults on `channel`.
    pub fn new(channel: impl Into<String>) -> RedisBackplaneConfig {
        RedisBackplaneConfig {
            channel: channel.into(),
            ..RedisBackplaneConfig::default()
        }
    }

    /// Set the pub/sub channel.
    pub fn with_channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Set the instance id.
    pub fn with_instance(mut self, instance: InstanceId) -> Self {
        self.instance = instance;
        self
    }

    /// Set the number of events buffered per subscriber before it lags.
    pub fn with_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Set the resubscribe backoff: the first pause and the longest (doubling in between).
    pub fn with_reconnect_delays(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min_delay = min;
        self.reconnect_max_delay = max.max(min);
        self
    }

    /// Set how often the subscriber connection is PINGed.
    pub fn with_keepalive(mut self, every: Duration) -> Self {
        self.keepalive = every;
        self
    }
}

impl Default for RedisBackplaneConfig {
    fn default() -> Self {
        RedisBackplaneConfig {
            channel: "layercake:backplane".to_owned(),
            instance: InstanceId::generate(),
            capacity: 1024,
            reconnect_min_delay: Duration::from_millis(50),
            reconnect_max_delay: Duration::from_secs(1),
            keepalive: Duration::from_secs(1),
        }
    }
}

/// The URL with its password (if any) replaced by `***`.
///
/// ```
/// use layercake_redis::redact_url;
/// assert_eq!(redact_url("rediss://u:p%40ss@h:6380/1"), "rediss://u:***@h:6380/1");
/// assert_eq!(redact_url("redis://:pw@h"), "redis://:***@h");
/// assert_eq!(redact_url("redis://h:6379"), "redis://h:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // Not a URL we understand: show nothing that could be a secret.
        return if url.contains('@') {
            "***".to_owned()
        } else {
            url.to_owned()
        };
    };
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            let masked = if userinfo.contains(':') || !userinfo.is_empty() {
                format!("{user}:***")
            } else {
                String::new()
            };
            format!("{scheme}://{masked}@{host}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_every_password_form() {
        for (url, shown) in [
            ("redis://user:pw@host:1/0", "redis://user:***@host:1/0"),
            ("redis://pwonly@host", "redis://pwonly:***@host"),
            ("rediss://a:b:c@h?x=1", "rediss://a:***@h?x=1"),
            ("redis://h", "redis://h"),
        ] {
            assert_eq!(redact_url(url), shown);
        }
        let cfg =
            RedisConfig::cluster(["redis://:topsecret@n1:7000", "redis://:topsecret@n2:7000"])
                .with_auth(Some("app".into()), "alsosecret");
        let dbg = format!("{cfg:?}");
        assert!(
            !dbg.contains("topsecret") && !dbg.contains("alsosecret"),
            "{dbg}"
        );
        assert!(dbg.contains("Cluster"));
    }

    #[test]
    fn validation_names_the_field() {
        let e = RedisConfig::default()
            .with_key_prefix("")
            .validate()
            .unwrap_err();
        assert!(e.message().contains("key_prefix"));
        let e = RedisConfig::default()
            .with_operation_timeout(Duration::ZERO)
            .validate()
            .unwrap_err();
        assert!(e.message().contains("operation_timeout"));
        let e = RedisConfig::default()
            .with_coalesce_after(0)
            .validate()
            .unwrap_err();
        assert!(e.message().contains("coalesce_after"));
        let e = RedisConfig::new("http://x").validate().unwrap_err();
        assert!(e.message().contains("must start with"));
        assert!(RedisConfig::default().validate().is_ok());
    }
}
