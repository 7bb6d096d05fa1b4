//! A small TCP fault proxy: put a [`FaultProxy`] between a tier and its server and switch its
//! [`Mode`] at run time to add latency, blackhole, reset, refuse or truncate traffic.
//!
//! ```no_run
//! # async fn demo() -> Result<(), layercake_testkit::server::FixtureError> {
//! use std::time::Duration;
//! use layercake_testkit::proxy::{FaultProxy, Mode};
//! use layercake_testkit::server::RedisServer;
//!
//! let redis = RedisServer::start().await?;
//! let proxy = FaultProxy::start(redis.addr()).await?;
//! let url = format!("redis://{}", proxy.addr()); // give this to the tier
//! proxy.set_mode(Mode::Latency(Duration::from_millis(50)));
//! proxy.set_mode(Mode::Blackhole); // calls now hang until their timeout
//! proxy.set_mode(Mode::Pass);
//! # Ok(()) }
//! ```

mod connection;
mod listener;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::FixtureError;

/// What a [`FaultProxy`] does with traffic; switch it with [`FaultProxy::set_mode`].
///
/// - Open connections see a change at once: each direction of each connection checks the mode
///   before and after every chunk and while it waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// Forward bytes both ways unchanged.
    #[default]
    Pass,
    /// Forward, delaying each chunk by this much in each direction (a request/response round trip
    /// gets at least twice the delay).
    Latency(Duration),
    /// Accept connections and send nothing: bytes from either side are read and discarded, the
    /// upstream is not dialled for new connections. Callers hang until their own timeout.
    Blackhole,
    /// Close new and open connections abruptly with a TCP RST (`SO_LINGER` 0): callers see
    /// "connection reset" (or EOF).
    Reset,
    /// Stop accepting: the listening socket is closed, so connects are refused; open connections
    /// keep passing. Switching to another mode listens again on the same address.
    Refuse,
    /// Pass at most this many bytes downstream (server → client) per connection, then close it
    /// (FIN). Counted from when the connection opened or, for open connections, from the switch
    /// to this mode; upstream bytes pass unchanged.
    TruncateAfter(usize),
}

/// Counters shared by the tasks of a proxy.
#[derive(Debug, Default)]
struct Stats {
    open: AtomicUsize,
    accepted: AtomicU64,
    upstream_bytes: AtomicU64,
    downstream_bytes: AtomicU64,
}

/// A TCP proxy on a free loopback port that forwards to one upstream address and injects the
/// faults of its current [`Mode`] (initially [`Mode::Pass`]).
///
/// - One task accepts; one task per connection pumps both directions. The upstream is dialled per
///   accepted connection (within 5 s); when that fails the client connection is closed.
/// - Dropping the proxy aborts every task, which closes every socket.
/// - Must be started and used inside a Tokio runtime.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    mode: watch::Sender<Mode>,
    stats: Arc<Stats>,
    accept: JoinHandle<()>,
}

impl FaultProxy {
    /// Listens on a free `127.0.0.1` port and forwards to `upstream`.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(upstream: SocketAddr) -> Result<Self, FixtureError> {
        let listener = listener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| FixtureError::io("binding the fault proxy to 127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| FixtureError::io("reading the fault proxy's address", e))?;
        let (mode, rx) = watch::channel(Mode::Pass);
        let stats = Arc::new(Stats::default());
        let accept = tokio::spawn(listener::run(
            listener,
            addr,
            upstream,
            rx,
            Arc::clone(&stats),
        ));
        Ok(Self {
            addr,
            upstream,
            mode,
            stats,
            accept,
        })
    }

    /// The address clients connect to (`127.0.0.1:<port>`), the same in every mode.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address traffic is forwarded to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches the mode; open connections follow at once.
    pub fn set_mode(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        *self.mode.borrow()
    }

    /// Client connections open right now.
    pub fn connections(&self) -> usize {
        self.stats.open.load(Ordering::SeqCst)
    }

    /// Client connections accepted since the start (including those reset or blackholed).
    pub fn accepted(&self) -> u64 {
        self.stats.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded client → server since the start.
    pub fn upstream_bytes(&self) -> u64 {
        self.stats.upstream_bytes.load(Ordering::SeqCst)
    }

    /// Bytes forwarded server → client since the start.
    pub fn downstream_bytes(&self) -> u64 {
        self.stats.downstream_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept task owns the connection tasks (a JoinSet): aborting it aborts them all.
        self.accept.abort();
    }
}

#[cfg(test)]
mod fault {
    use std::io::ErrorKind;
    use std::time::Instant;

    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::{TcpListener, TcpStream};

    use super::*;

    const SHORT: Duration = Duration::from_millis(300);
    const LONG: Duration = Duration::from_secs(5);

    /// An echo server; returns its address and a counter of accepted connections.
    async fn echo_server() -> (SocketAddr, Arc<AtomicUsize>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let (mut r, mut w) = stream.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        (addr, accepted, task)
    }

    async fn setup() -> (FaultProxy, Arc<AtomicUsize>, JoinHandle<()>) {
        let (upstream, accepted, task) = echo_server().await;
        let proxy = FaultProxy::start(upstream).await.unwrap();
        assert_eq!(proxy.upstream(), upstream);
        (proxy, accepted, task)
    }

    /// Writes `msg` and reads the echo of the same length, bounded by `LONG`.
    async fn round_trip(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
        stream.write_all(msg).await.unwrap();
        let mut back = vec![0_u8; msg.len()];
        tokio::time::timeout(LONG, stream.read_exact(&mut back))
            .await
            .unwrap()
            .unwrap();
        back
    }

    /// Polls `cond` every 10 ms for up to `LONG`.
    async fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + LONG;
        while Instant::now() < deadline {
            if cond() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cond()
    }

    /// Reads until EOF or error, bounded by `LONG`: the bytes and how it ended.
    async fn read_to_end(stream: &mut TcpStream) -> (Vec<u8>, std::io::Result<()>) {
        let mut got = Vec::new();
        let mut buf = [0_u8; 1024];
        loop {
            match tokio::time::timeout(LONG, stream.read(&mut buf))
                .await
                .unwrap()
            {
                Ok(0) => return (got, Ok(())),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => return (got, Err(e)),
            }
        }
    }

    /// EOF or "connection reset": how an abruptly closed connection may look.
    fn closed_abruptly(end: &std::io::Result<()>) -> bool {
        match end {
            Ok(()) => true,
            Err(e) => e.kind() == ErrorKind::ConnectionReset,
        }
    }

    #[tokio::test]
    async fn pass_forwards_and_counts() {
        let (proxy, accepted, _echo) = setup().await;
        assert_eq!(proxy.mode(), Mode::Pass);
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut conn, b"hello").await, b"hello");
        assert_eq!(
            round_trip(&mut conn, &[7_u8; 100_000]).await,
            vec![7_u8; 100_000]
        );
        assert_eq!(proxy.connections(), 1);
        assert_eq!(proxy.accepted(), 1);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(proxy.upstream_bytes(), 100_005);
        assert_eq!(proxy.downstream_bytes(), 100_005);
        drop(conn);
        assert!(eventually(|| proxy.connections() == 0).await);
    }

    #[tokio::test]
    async fn latency_delays_each_direction() {
        let (proxy, _, _echo) = setup().await;
        let delay = Duration::from_millis(100);
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");

        proxy.set_mode(Mode::Latency(delay));
        // An open connection follows the switch…
        let t = Instant::now();
        assert_eq!(round_trip(&mut open, b"b").await, b"b");
        assert!(
            t.elapsed() >= 2 * delay,
            "round trip took {:?}",
            t.elapsed()
        );
        // …and so does a new one.
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        let t = Instant::now();
        assert_eq!(round_trip(&mut new, b"c").await, b"c");
        assert!(
            t.elapsed() >= 2 * delay,
            "round trip took {:?}",
            t.elapsed()
        );

        proxy.set_mode(Mode::Pass);
        assert_eq!(round_trip(&mut open, b"d").await, b"d");
    }

    #[tokio::test]
    async fn blackhole_sends_nothing() {
        let (proxy, accepted, _echo) = setup().await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");

        proxy.set_mode(Mode::Blackhole);
        open.write_all(b"lost").await.unwrap();
        let mut buf = [0_u8; 16];
        assert!(
            tokio::time::timeout(SHORT, open.read(&mut buf))
                .await
                .is_err()
        );
        // A new connection is accepted but never dialled upstream, and gets nothing.
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        new.write_all(b"ping").await.unwrap();
        assert!(
            tokio::time::timeout(SHORT, new.read(&mut buf))
                .await
                .is_err()
        );
        assert!(eventually(|| proxy.accepted() == 2).await);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        // Back to pass: what was sent meanwhile is gone, new bytes flow again.
        proxy.set_mode(Mode::Pass);
        assert_eq!(round_trip(&mut open, b"after").await, b"after");
        assert_eq!(round_trip(&mut new, b"late").await, b"late");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn reset_closes_open_and_new_connections() {
        let (proxy, accepted, _echo) = setup().await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");

        proxy.set_mode(Mode::Reset);
        let (got, end) = read_to_end(&mut open).await;
        assert!(got.is_empty());
        assert!(closed_abruptly(&end), "{end:?}");
        assert!(
            matches!(&end, Err(e) if e.kind() == ErrorKind::ConnectionReset),
            "{end:?}"
        );

        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        let (got, end) = read_to_end(&mut new).await;
        assert!(got.is_empty());
        assert!(closed_abruptly(&end), "{end:?}");
        assert!(eventually(|| proxy.connections() == 0).await);
        assert_eq!(accepted.load(Ordering::SeqCst), 1);

        proxy.set_mode(Mode::Pass);
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut again, b"b").await, b"b");
    }

    #[tokio::test]
    async fn refuse_stops_accepting_and_keeps_open_connections() {
        let (proxy, _, _echo) = setup().await;
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");

        proxy.set_mode(Mode::Refuse);
        // The accept task closes the listener as soon as it sees the switch; a connect racing
        // with the close may be accepted or reset by the kernel instead.
        let deadline = Instant::now() + LONG;
        loop {
            match TcpStream::connect(proxy.addr()).await {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => break,
                _ if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                other => panic!("not refusing after {LONG:?}: {other:?}"),
            }
        }
        // Refused from now on.
        for _ in 0..3 {
            let e = TcpStream::connect(proxy.addr()).await.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        }
        assert_eq!(round_trip(&mut open, b"still").await, b"still");

        proxy.set_mode(Mode::Pass);
        let deadline = Instant::now() + LONG;
        let mut again = loop {
            match TcpStream::connect(proxy.addr()).await {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("not listening again after {LONG:?}: {e}"),
            }
        };
        assert_eq!(round_trip(&mut again, b"b").await, b"b");
    }

    #[tokio::test]
    async fn truncate_delivers_exactly_n_bytes() {
        let (proxy, _, _echo) = setup().await;
        let msg: Vec<u8> = (0..100_u8).collect();

        proxy.set_mode(Mode::TruncateAfter(10));
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        new.write_all(&msg).await.unwrap();
        let (got, end) = read_to_end(&mut new).await;
        assert_eq!(got, &msg[..10]);
        assert!(end.is_ok(), "a truncated connection ends with FIN: {end:?}");

        // An open connection counts from the switch.
        proxy.set_mode(Mode::Pass);
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, &msg).await, msg);
        proxy.set_mode(Mode::TruncateAfter(30));
        // Let the pumps see the switch before the bytes arrive.
        tokio::time::sleep(Duration::from_millis(50)).await;
        open.write_all(&msg).await.unwrap();
        let (got, end) = read_to_end(&mut open).await;
        assert_eq!(got, &msg[..30]);
        assert!(end.is_ok(), "{end:?}");
        assert_eq!(proxy.downstream_bytes(), 10 + 100 + 30);
    }

    #[tokio::test]
    async fn unreachable_upstream_closes_the_client() {
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let proxy = FaultProxy::start(dead).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        let (got, end) = read_to_end(&mut conn).await;
        assert!(got.is_empty());
        assert!(closed_abruptly(&end), "{end:?}");
    }

    #[tokio::test]
    async fn drop_closes_everything() {
        let (proxy, _, _echo) = setup().await;
        let addr = proxy.addr();
        let mut open = TcpStream::connect(addr).await.unwrap();
        assert_eq!(round_trip(&mut open, b"a").await, b"a");
        proxy.set_mode(Mode::Blackhole);
        drop(proxy);
        let (got, end) = read_to_end(&mut open).await;
        assert!(got.is_empty());
        assert!(closed_abruptly(&end), "{end:?}");
        let deadline = Instant::now() + LONG;
        while TcpStream::connect(addr).await.is_ok() {
            assert!(Instant::now() < deadline, "still listening after drop");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn fronts_a_throwaway_redis() {
        let mut redis = crate::server::RedisServer::start().await.unwrap();
        let proxy = FaultProxy::start(redis.addr()).await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip_reply(&mut conn).await, b"+PONG\r\n");

        proxy.set_mode(Mode::Blackhole);
        conn.write_all(b"PING\r\n").await.unwrap();
        let mut buf = [0_u8; 16];
        assert!(
            tokio::time::timeout(SHORT, conn.read(&mut buf))
                .await
                .is_err()
        );

        // Killed behind a passing proxy: connects are accepted, then closed.
        proxy.set_mode(Mode::Pass);
        redis.kill().await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        let (got, end) = read_to_end(&mut conn).await;
        assert!(got.is_empty());
        assert!(closed_abruptly(&end), "{end:?}");

        redis.restart().await.unwrap();
        let mut conn = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip_reply(&mut conn).await, b"+PONG\r\n");
    }

    /// `PING` → the 7-byte `+PONG` reply, bounded by `LONG`.
    async fn round_trip_reply(conn: &mut TcpStream) -> Vec<u8> {
        conn.write_all(b"PING\r\n").await.unwrap();
        let mut reply = vec![0_u8; 7];
        tokio::time::timeout(LONG, conn.read_exact(&mut reply))
            .await
            .unwrap()
            .unwrap();
        reply
    }
}
