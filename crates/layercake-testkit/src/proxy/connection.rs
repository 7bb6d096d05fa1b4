//! One proxied connection: dial the upstream, then pump both directions, each following the
//! current [`Mode`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;

use super::{Mode, Stats};

/// How long dialling the upstream may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest chunk read at once.
const CHUNK: usize = 16 * 1024;

/// How a connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// A side closed or failed, or a truncation ended it: close with FIN.
    Close,
    /// [`Mode::Reset`]: close with RST.
    Reset,
}

/// Which way a pump moves bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Client → server.
    Up,
    /// Server → client.
    Down,
}

/// Counts an open connection while alive.
struct OpenGuard(Arc<Stats>);

impl OpenGuard {
    fn new(stats: Arc<Stats>) -> Self {
        stats.open.fetch_add(1, Ordering::SeqCst);
        Self(stats)
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one accepted client connection until it ends.
pub(super) async fn serve(
    mut client: TcpStream,
    upstream: SocketAddr,
    mut rx: watch::Receiver<Mode>,
    stats: Arc<Stats>,
) {
    let _open = OpenGuard::new(Arc::clone(&stats));
    let _ = client.set_nodelay(true);
    // Before dialling: a reset or blackholed connection never reaches the upstream.
    loop {
        let mode = *rx.borrow_and_update();
        match mode {
            Mode::Reset => return reset(&[&client]),
            Mode::Blackhole => {
                if !discard_until_change(&client, &mut rx).await {
                    return;
                }
            }
            _ => break,
        }
    }
    let Ok(Ok(mut server)) = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(upstream)).await
    else {
        return; // dropping the client closes it
    };
    let _ = server.set_nodelay(true);
    let up = Pump::new(Direction::Up, rx.clone(), &stats.upstream_bytes);
    let down = Pump::new(Direction::Down, rx, &stats.downstream_bytes);
    let end = tokio::select! {
        end = up.run(&client, &server) => end,
        end = down.run(&server, &client) => end,
    };
    match end {
        End::Reset => reset(&[&client, &server]),
        End::Close => {
            // FIN, after everything written; then the sockets close on drop.
            let _ = client.shutdown().await;
            let _ = server.shutdown().await;
        }
    }
}

/// Sets `SO_LINGER` 0, so that dropping the sockets sends RST.
#[allow(
    deprecated,
    reason = "a zero linger never blocks on drop; `set_zero_linger` needs tokio 1.50, above \
              the minimum version the crates declare; `allow`, not `expect`: `set_linger` is \
              deprecated only from tokio 1.50, so a user's older tokio would find the \
              expectation unfulfilled"
)]
fn reset(streams: &[&TcpStream]) {
    for s in streams {
        let _ = s.set_linger(Some(Duration::ZERO));
    }
}

/// Reads and discards from `src` until the mode changes (→ `true`) or `src` closes or the proxy
/// is gone (→ `false`).
async fn discard_until_change(src: &TcpStream, rx: &mut watch::Receiver<Mode>) -> bool {
    let mut buf = vec![0_u8; CHUNK];
    loop {
        tokio::select! {
            read = read_chunk(src, &mut buf) => match read {
                Ok(n) if n > 0 => {}
                _ => return false,
            },
            changed = rx.changed() => return changed.is_ok(),
        }
    }
}

/// One direction of a connection.
struct Pump<'a> {
    direction: Direction,
    rx: watch::Receiver<Mode>,
    bytes: &'a AtomicU64,
    /// The mode last seen, to notice a switch into [`Mode::TruncateAfter`].
    seen: Option<Mode>,
    /// Bytes still allowed downstream under [`Mode::TruncateAfter`].
    budget: Option<usize>,
}

impl<'a> Pump<'a> {
    fn new(direction: Direction, rx: watch::Receiver<Mode>, bytes: &'a AtomicU64) -> Self {
        Self {
            direction,
            rx,
            bytes,
            seen: None,
            budget: None,
        }
    }

    /// The current mode, restarting the truncation budget when it switched.
    fn observe(&mut self) -> Mode {
        let mode = *self.rx.borrow_and_update();
        if self.seen != Some(mode) {
            self.seen = Some(mode);
            self.budget = match mode {
                Mode::TruncateAfter(n) if self.direction == Direction::Down => Some(n),
                _ => None,
            };
        }
        mode
    }

    /// Moves bytes from `src` to `dst` until the connection ends.
    async fn run(mut self, src: &TcpStream, dst: &TcpStream) -> End {
        let mut buf = vec![0_u8; CHUNK];
        loop {
            match self.observe() {
                Mode::Reset => return End::Reset,
                Mode::Blackhole => {
                    if !discard_until_change(src, &mut self.rx).await {
                        return End::Close;
                    }
                    continue;
                }
                _ if self.budget == Some(0) => return End::Close,
                _ => {}
            }
            let n = tokio::select! {
                read = read_chunk(src, &mut buf) => match read {
                    Ok(n) if n > 0 => n,
                    _ => return End::Close,
                },
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        return End::Close;
                    }
                    continue;
                }
            };
            if let Mode::Latency(delay) = self.observe() {
                let wake = Instant::now() + delay;
                loop {
                    tokio::select! {
                        () = tokio::time::sleep_until(wake) => break,
                        changed = self.rx.changed() => {
                            if changed.is_err() {
                                return End::Close;
                            }
                            if *self.rx.borrow() == Mode::Reset {
                                return End::Reset;
                            }
                        }
                    }
                }
            }
            // The mode may have changed while reading or sleeping.
            match self.observe() {
                Mode::Reset => return End::Reset,
                Mode::Blackhole => continue, // the chunk is discarded
                _ => {}
            }
            let take = self.budget.map_or(n, |b| b.min(n));
            tokio::select! {
                written = write_all(dst, &buf[..take]) => if written.is_err() { return End::Close },
                () = until_reset(&mut self.rx) => return End::Reset,
            }
            self.bytes.fetch_add(take as u64, Ordering::SeqCst);
            if let Some(b) = self.budget.as_mut() {
                *b -= take;
            }
        }
    }
}

/// Resolves when the mode becomes [`Mode::Reset`]; never when the proxy is gone.
async fn until_reset(rx: &mut watch::Receiver<Mode>) {
    loop {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
        if *rx.borrow() == Mode::Reset {
            return;
        }
    }
}

/// Reads what is available from `src` (0 at EOF).
async fn read_chunk(src: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        src.readable().await?;
        match src.try_read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => return other,
        }
    }
}

/// Writes all of `bytes` to `dst`.
async fn write_all(dst: &TcpStream, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        dst.writable().await?;
        match dst.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
