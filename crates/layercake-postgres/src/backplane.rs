//! [`PostgresBackplane`]: cross-instance invalidation over LISTEN/NOTIFY.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use futures::StreamExt as _;
use layercake_core::backplane::{
    Backplane, BackplaneEvent, InstanceId, MAX_MESSAGE_BYTES, Message, Target,
};
use layercake_core::{Error, ErrorKind, Result};
use tokio::sync::{broadcast, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls, Notification};

use crate::config::PostgresBackplaneConfig;
use crate::error::{self, BACKEND};
use crate::ident;

/// The fixed part of an encoded [`Message`] (magic, version, code, entry version, origin,
/// length), in bytes.
const MESSAGE_OVERHEAD: usize = 30;

#[derive(Debug, Default)]
struct State {
    connected: AtomicBool,
    dropped: AtomicU64,
    reconnects: AtomicU64,
    listener_pid: AtomicI32,
}

/// A [`Backplane`] on PostgreSQL LISTEN/NOTIFY, for deployments without Redis.
///
/// - `publish` sends [`Message::encode_text`] (base64) with `SELECT pg_notify($1, $2)` on a
///   small pool; PostgreSQL delivers it to every listening session after the sending
///   transaction commits (each publish is its own transaction);
/// - a message too large for the 4096-byte message limit is widened, never dropped: a long
///   `Key` or `Prefix` is sent as `Prefix` of its first bytes (cut at a character boundary),
///   which removes at least the same entries; a long `Tag` is sent as `All`;
/// - one dedicated connection LISTENs; a task receives notifications and fans them out to
///   every subscriber through a broadcast channel; own messages (same [`InstanceId`]) are
///   filtered, malformed payloads dropped and counted;
/// - the LISTEN connection is checked by a heartbeat; when lost, subscribers get
///   [`BackplaneEvent::Disconnected`], the task reconnects with exponential backoff and sends
///   [`BackplaneEvent::Reconnected`] once LISTEN is re-established;
/// - dropping the backplane (or [`shutdown`](Self::shutdown)) stops the task.
pub struct PostgresBackplane {
    instance: InstanceId,
    channel: String,
    pool: Pool,
    /// Where it connects (`host:port`, no credentials), for errors.
    endpoint: String,
    operation_timeout: Duration,
    state: Arc<State>,
    events: broadcast::Sender<BackplaneEvent>,
    stop: watch::Sender<bool>,
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl PostgresBackplane {
    /// Start listening; returns once LISTEN is established, or at once, disconnected, when
    /// the server cannot be reached (see
    /// [`with_require_server`](PostgresBackplaneConfig::with_require_server)); fails with
    /// `Unavailable` when the server refuses (with its own message), and with `Timeout` when
    /// LISTEN is not established within the connect and operation timeouts.
    pub async fn connect(config: PostgresBackplaneConfig) -> Result<PostgresBackplane> {
        ident::validate("channel", &config.channel, ident::MAX_IDENT_LEN)?;
        let manager = Manager::from_config(
            config.effective_pg(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(2)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.operation_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.operation_timeout))
            .build()
            .map_err(|e| error::config(format!("cannot build the connection pool: {e}")))?;
        let state = Arc::new(State::default());
        let (events, _) = broadcast::channel(config.capacity);
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = oneshot::channel();
        let listener = Listener {
            config: config.clone(),
            state: Arc::clone(&state),
            events: events.clone(),
            stop: stop_rx,
            ready: Some(ready_tx),
        };
        let task = tokio::spawn(listener.run());
        let first = config.connect_timeout + config.operation_timeout * 2;
        let established = tokio::time::timeout(first, ready_rx).await;
        let backplane = PostgresBackplane {
            instance: config.instance,
            channel: config.channel,
            pool,
            endpoint: error::endpoint(&config.pg),
            operation_timeout: config.operation_timeout,
            state,
            events,
            stop,
            task: std::sync::Mutex::new(Some(task)),
        };
        match established {
            Ok(Ok(Ok(()))) => Ok(backplane),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(Error::unavailable("the listener stopped").with_backend(BACKEND)),
            Err(_) => Err(error::timeout("LISTEN", first)),
        }
    }

    /// The backend process id of the LISTEN connection, if connected (for diagnostics).
    pub fn listener_pid(&self) -> Option<i32> {
        match self.state.listener_pid.load(Ordering::Relaxed) {
            0 => None,
            p => Some(p),
        }
    }

    /// The channel name.
    pub fn channel(&self) -> &str {
        &self.channel
    }

    /// Stop the listener task (also done on drop). Idempotent.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
        let handle = match self.task.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle {
            h.abort();
        }
        self.state.connected.store(false, Ordering::Relaxed);
    }
}

/// The text to NOTIFY for `message`, widened when it is too large (see [`PostgresBackplane`]).
fn payload(message: &Message) -> Result<String> {
    match message.encode_text() {
        Ok(t) => Ok(t),
        Err(e) if e.kind() == ErrorKind::TooLarge => widen(message).encode_text(),
        Err(e) => Err(e),
    }
}

fn widen(message: &Message) -> Message {
    let max = MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD;
    let target = match &message.target {
        Target::Key(s) | Target::Prefix(s) => {
            let mut cut = max.min(s.len());
            while !s.is_char_boundary(cut) {
                cut -= 1;
            }
            Target::Prefix(s[..cut].to_owned())
        }
        _ => Target::All,
    };
    Message {
        target,
        version: message.version,
        origin: message.origin,
    }
}

impl Drop for PostgresBackplane {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for PostgresBackplane {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackplane")
            .field("instance", &self.instance)
            .field("channel", &self.channel)
            .field("state", &self.state)
            .finish()
    }
}

#[async_trait]
impl Backplane for PostgresBackplane {
    fn kind(&self) -> &'static str {
        BACKEND
    }

    fn instance(&self) -> InstanceId {
        self.instance
    }

    async fn publish(&self, message: &Message) -> Result<()> {
        let text = payload(message).map_err(|e| e.with_backend(BACKEND))?;
        let channel = self.channel.as_str();
        let send = async {
            let client = self
                .pool
                .get()
                .await
                .map_err(|e| error::pool("NOTIFY", e, &self.endpoint))?;
            let st = client
                .prepare_cached("SELECT pg_notify($1, $2)")
                .await
                .map_err(|e| error::pg("NOTIFY", e))?;
            match client.execute(&st, &[&channel, &text]).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    if !e.is_closed() && e.as_db_error().is_none() {
                        drop(deadpool_postgres::Object::take(client));
                    }
                    Err(error::pg("NOTIFY", e))
                }
            }
        };
        match tokio::time::timeout(self.operation_timeout, send).await {
            Ok(r) => r,
            Err(_) => Err(error::timeout("NOTIFY", self.operation_timeout)),
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<BackplaneEvent> {
        self.events.subscribe()
    }

    fn is_connected(&self) -> bool {
        self.state.connected.load(Ordering::Relaxed)
    }

    fn dropped(&self) -> u64 {
        self.state.dropped.load(Ordering::Relaxed)
    }

    fn reconnects(&self) -> u64 {
        self.state.reconnects.load(Ordering::Relaxed)
    }
}

/// How a LISTEN session ended.
enum End {
    /// Asked to stop.
    Stopped,
    /// The connection was lost or could not be established; `established` says whether
    /// LISTEN had succeeded first.
    Lost { established: bool, error: Error },
}

struct Listener {
    config: PostgresBackplaneConfig,
    state: Arc<State>,
    events: broadcast::Sender<BackplaneEvent>,
    stop: watch::Receiver<bool>,
    ready: Option<oneshot::Sender<Result<()>>>,
}

impl Listener {
    async fn run(mut self) {
        let mut ever = false;
        let mut backoff = self.config.backoff_min;
        loop {
            match self.session(ever).await {
                End::Stopped => return,
                End::Lost { established, error } => {
                    if established {
                        ever = true;
                        backoff = self.config.backoff_min;
                    }
                    if self.state.connected.swap(false, Ordering::Relaxed) {
                        self.state.listener_pid.store(0, Ordering::Relaxed);
                        let _ = self.events.send(BackplaneEvent::Disconnected);
                        #[cfg(feature = "tracing")]
                        tracing::warn!(target: "layercake", channel = %self.config.channel, error.kind = error.kind().as_str(), "postgres backplane disconnected: reconnecting; local copies are capped meanwhile");
                    }
                    if !ever && let Some(r) = self.ready.take() {
                        if self.config.require_server || !error.is_temporary() {
                            // Report the first failure to `connect`, which gives up.
                            let _ = r.send(Err(error));
                            return;
                        }
                        // Start disconnected: `connect` returns, and the first LISTEN
                        // established is announced as a reconnection (messages published
                        // meanwhile were missed).
                        let _ = r.send(Ok(()));
                        ever = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = self.stop.changed() => return,
            }
            backoff = (backoff * 2).min(self.config.backoff_max);
        }
    }

    fn deliver(&self, n: &Notification) {
        match Message::decode_text(n.payload()) {
            Ok(m) if m.origin == self.config.instance => {}
            Ok(m) => {
                let _ = self.events.send(BackplaneEvent::Message(m));
            }
            Err(_) => {
                self.state.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    async fn session(&mut self, ever: bool) -> End {
        let cfg = &self.config;
        let lost = |e: Error| End::Lost {
            established: false,
            error: e,
        };
        let pg = cfg.effective_pg();
        let connect = tokio::time::timeout(cfg.connect_timeout, pg.connect(NoTls));
        let (client, mut connection) = match connect.await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return lost(error::connect(
                    "LISTEN connect",
                    e,
                    &error::endpoint(&cfg.pg),
                ));
            }
            Err(_) => return lost(error::timeout("LISTEN connect", cfg.connect_timeout)),
        };
        // Drive the connection in its own task; notifications come back through a channel,
        // and its end (the connection failed or closed) closes the channel.
        let (tx, mut rx) = mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            let mut messages = futures::stream::poll_fn(move |cx| connection.poll_message(cx));
            while let Some(Ok(m)) = messages.next().await {
                if let AsyncMessage::Notification(n) = m
                    && tx.send(n).is_err()
                {
                    return;
                }
            }
        });
        let _abort = AbortOnDrop(driver);
        let listen = format!("LISTEN {}", ident::quote(&cfg.channel));
        let setup = async {
            client.batch_execute(&listen).await?;
            client
                .query_one("SELECT pg_backend_pid()", &[])
                .await?
                .try_get::<_, i32>(0)
        };
        let pid = match tokio::time::timeout(cfg.operation_timeout, setup).await {
            Ok(Ok(pid)) => pid,
            Ok(Err(e)) => return lost(error::pg("LISTEN", e)),
            Err(_) => return lost(error::timeout("LISTEN", cfg.operation_timeout)),
        };
        self.state.listener_pid.store(pid, Ordering::Relaxed);
        self.state.connected.store(true, Ordering::Relaxed);
        if ever {
            self.state.reconnects.fetch_add(1, Ordering::Relaxed);
            let _ = self.events.send(BackplaneEvent::Reconnected);
            #[cfg(feature = "tracing")]
            tracing::info!(target: "layercake", channel = %cfg.channel, "postgres backplane reconnected: local tiers dropped");
        }
        if let Some(r) = self.ready.take() {
            let _ = r.send(Ok(()));
        }
        let lost = |e: Error| End::Lost {
            established: true,
            error: e,
        };
        let mut heartbeat = tokio::time::interval(self.config.heartbeat);
        heartbeat.tick().await;
        loop {
            tokio::select! {
                n = rx.recv() => match n {
                    Some(n) => self.deliver(&n),
                    None => return lost(Error::unavailable("LISTEN connection closed").with_backend(BACKEND)),
                },
                _ = heartbeat.tick() => {
                    let op = self.config.operation_timeout;
                    match tokio::time::timeout(op, client.simple_query("")).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return lost(error::pg("LISTEN heartbeat", e)),
                        Err(_) => return lost(error::timeout("LISTEN heartbeat", op)),
                    }
                }
                _ = self.stop.changed() => return End::Stopped,
            }
        }
    }
}

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_targets_are_widened() {
        let origin = InstanceId([7; 16]);
        let key = "é".repeat(3000);
        let m = Message {
            target: Target::Key(key.clone()),
            version: 3,
            origin,
        };
        let text = payload(&m).unwrap();
        assert!(text.len() < 8000);
        let back = Message::decode_text(&text).unwrap();
        match back.target {
            Target::Prefix(p) => {
                assert!(key.starts_with(&p));
                assert!(p.len() <= MAX_MESSAGE_BYTES - MESSAGE_OVERHEAD && p.len() > 4000);
            }
            other => panic!("expected a prefix, got {other:?}"),
        }
        let m = Message {
            target: Target::Tag("t".repeat(5000)),
            version: 0,
            origin,
        };
        assert_eq!(
            Message::decode_text(&payload(&m).unwrap()).unwrap().target,
            Target::All
        );
        let small = Message {
            target: Target::Key("k".into()),
            version: 1,
            origin,
        };
        assert_eq!(
            Message::decode_text(&payload(&small).unwrap()).unwrap(),
            small
        );
    }
}
