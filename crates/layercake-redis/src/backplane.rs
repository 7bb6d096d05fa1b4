//! [`RedisBackplane`]: invalidation messages over Redis pub/sub.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use layercake_core::backplane::{Backplane, BackplaneEvent, InstanceId, Message};
use layercake_core::{Result, async_trait};
use redis::Client;
use redis::aio::{PubSubSink, PubSubStream};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::backend::RedisBackend;
use crate::config::{RedisBackplaneConfig, RedisConfig};
use crate::conn::{Redis, client, endpoint, uses_tls};
use crate::error::{BACKEND, connect_err_at, connect_timeout, map_err_at};

/// Invalidations between cache instances over Redis pub/sub.
///
/// Contract (beyond [`Backplane`]'s):
/// - `publish` sends `PUBLISH channel <Message::encode bytes>` through the normal connection
///   (bounded by the operation timeout);
/// - one dedicated subscriber connection per backplane, owned by a background task that
///   fans events out to every [`subscribe`](Backplane::subscribe)r through a
///   `tokio::sync::broadcast` channel;
/// - when that connection is lost (closed, killed, or not answering its keepalive PING) the
///   task sends [`BackplaneEvent::Disconnected`], resubscribes with exponential backoff, and
///   then sends [`BackplaneEvent::Reconnected`];
/// - messages from this instance are filtered out; malformed ones are dropped and counted;
/// - the task stops on [`shutdown`](RedisBackplane::shutdown) or when the backplane is
///   dropped.
pub struct RedisBackplane {
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

struct Shared {
    publisher: Redis,
    channel: String,
    instance: InstanceId,
    tx: broadcast::Sender<BackplaneEvent>,
    connected: AtomicBool,
    dropped: AtomicU64,
    reconnects: AtomicU64,
}

struct Subscriber {
    shared: Arc<Shared>,
    client: Client,
    /// Where the subscriber connects (`host:port`), for errors.
    addr: String,
    /// Whether it connects with TLS, for errors.
    tls: bool,
    config: RedisBackplaneConfig,
    connect_timeout: Duration,
    ping_timeout: Duration,
}

impl fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("channel", &self.shared.channel)
            .field("instance", &self.shared.instance)
            .field("connected", &self.is_connected())
            .field("dropped", &self.dropped())
            .field("reconnects", &self.reconnects())
            .finish()
    }
}

impl RedisBackplane {
    /// Connect a backplane with its own publishing connection (mode as configured) and its
    /// own subscriber connection.
    ///
    /// When Redis cannot be reached, the backplane starts disconnected
    /// ([`is_connected`](Backplane::is_connected) is `false`), subscribes in the background and
    /// sends [`BackplaneEvent::Reconnected`] once it has; with
    /// [`require_server`](RedisConfig::require_server) it fails instead (as it does for wrong
    /// credentials or an address that is not Redis).
    pub async fn connect(
        redis: &RedisConfig,
        config: RedisBackplaneConfig,
    ) -> Result<RedisBackplane> {
        let publisher = Redis::connect(redis).await?;
        Self::start(publisher, redis, config).await
    }

    /// A backplane publishing through `backend`'s connection, with its own subscriber
    /// connection.
    pub async fn for_backend(
        backend: &RedisBackend,
        config: RedisBackplaneConfig,
    ) -> Result<RedisBackplane> {
        Self::start(backend.redis().clone(), backend.config(), config).await
    }

    async fn start(
        publisher: Redis,
        redis: &RedisConfig,
        config: RedisBackplaneConfig,
    ) -> Result<RedisBackplane> {
        let (tx, _) = broadcast::channel(config.capacity.max(1));
        let shared = Arc::new(Shared {
            publisher,
            channel: config.channel.clone(),
            instance: config.instance,
            tx,
            connected: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        });
        let sub = Subscriber {
            shared: shared.clone(),
            client: client(redis)?,
            addr: endpoint(redis),
            tls: uses_tls(redis),
            config,
            connect_timeout: redis.connect_timeout,
            ping_timeout: redis.operation_timeout,
        };
        let first = match sub.subscribe().await {
            Ok(c) => {
                shared.connected.store(true, Ordering::SeqCst);
                Some(c)
            }
            Err(e) if redis.require_server || !e.is_temporary() => return Err(e),
            // Start disconnected; the task subscribes when Redis answers.
            Err(_) => None,
        };
        let task = tokio::spawn(sub.run(first));
        Ok(RedisBackplane { shared, task })
    }

    /// Stop the subscriber task (also done on drop). Publishing still works.
    pub fn shutdown(&self) {
        self.task.abort();
        self.shared.connected.store(false, Ordering::SeqCst);
    }

    /// The channel.
    pub fn channel(&self) -> &str {
        &self.shared.channel
    }
}

impl Drop for RedisBackplane {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    async fn subscribe(&self) -> Result<(PubSubSink, PubSubStream)> {
        let fut = async {
            let ps = self
                .client
                .get_async_pubsub()
                .await
                .map_err(|e| connect_err_at(e, &self.addr))?;
            let (mut sink, stream) = ps.split();
            sink.subscribe(&self.config.channel)
                .await
                .map_err(|e| map_err_at(e, &self.addr))?;
            Ok((sink, stream))
        };
        tokio::time::timeout(self.connect_timeout, fut)
            .await
            .map_err(|_| connect_timeout(&self.addr, self.connect_timeout, self.tls))?
    }

    async fn run(self, first: Option<(PubSubSink, PubSubStream)>) {
        let mut conn = first;
        loop {
            if let Some((sink, stream)) = conn.take() {
                self.pump(sink, stream).await;
                self.shared.connected.store(false, Ordering::SeqCst);
                let _ = self.shared.tx.send(BackplaneEvent::Disconnected);
                #[cfg(feature = "tracing")]
                tracing::warn!(target: "layercake", channel = %self.config.channel, "redis backplane disconnected: reconnecting; local copies are capped meanwhile");
            }
            let mut delay = self.config.reconnect_min_delay;
            loop {
                tokio::time::sleep(delay).await;
                if let Ok(c) = self.subscribe().await {
                    conn = Some(c);
                    break;
                }
                delay = (delay * 2).min(self.config.reconnect_max_delay);
            }
            self.shared.connected.store(true, Ordering::SeqCst);
            self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
            let _ = self.shared.tx.send(BackplaneEvent::Reconnected);
            #[cfg(feature = "tracing")]
            tracing::info!(target: "layercake", channel = %self.config.channel, "redis backplane reconnected: local tiers dropped");
        }
    }

    /// Deliver messages until the connection is lost.
    async fn pump(&self, mut sink: PubSubSink, mut stream: PubSubStream) {
        let mut keepalive = tokio::time::interval(self.config.keepalive);
        keepalive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        keepalive.tick().await;
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return };
                    self.deliver(msg.get_payload_bytes());
                }
                _ = keepalive.tick() => {
                    let ping = tokio::time::timeout(self.ping_timeout, sink.ping::<redis::Value>());
                    if !matches!(ping.await, Ok(Ok(_))) {
                        return;
                    }
                }
            }
        }
    }

    fn deliver(&self, payload: &[u8]) {
        match Message::decode(payload) {
            Ok(m) if m.origin == self.shared.instance => {}
            Ok(m) => {
                let _ = self.shared.tx.send(BackplaneEvent::Message(m));
            }
            Err(_) => {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

#[async_trait]
impl Backplane for RedisBackplane {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn instance(&self) -> InstanceId {
        self.shared.instance
    }

    async fn publish(&self, message: &Message) -> Result<()> {
        let bytes = message.encode().map_err(|e| e.with_backend(BACKEND))?;
        let mut c = redis::cmd("PUBLISH");
        c.arg(&self.shared.channel).arg(bytes);
        self.shared.publisher.cmd::<()>("PUBLISH", &c).await
    }

    fn subscribe(&self) -> broadcast::Receiver<BackplaneEvent> {
        self.shared.tx.subscribe()
    }

    fn is_connected(&self) -> bool {
        self.shared.connected.load(Ordering::SeqCst)
    }

    fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    fn reconnects(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }
}
