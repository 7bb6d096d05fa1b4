//! The accept loop of a [`FaultProxy`](super::FaultProxy): listens while the mode is not
//! [`Mode::Refuse`], and owns the connection tasks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{Mode, Stats, connection};

/// How long to wait before binding again when the address is still taken, or after an accept
/// error (too many open files, …).
const RETRY: Duration = Duration::from_millis(20);

/// A listener on `addr` with `SO_REUSEADDR`, so that it can listen again on its port while
/// connections accepted earlier are still open.
pub(super) fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts until aborted; each connection gets its own task in a [`JoinSet`], so that aborting
/// this task aborts them all.
pub(super) async fn run(
    first: TcpListener,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut rx: watch::Receiver<Mode>,
    stats: Arc<Stats>,
) {
    let mut tasks = JoinSet::new();
    let mut listener = Some(first);
    loop {
        let refuse = *rx.borrow_and_update() == Mode::Refuse;
        match (&listener, refuse) {
            (Some(_), true) => {
                // Closing the listening socket makes the kernel refuse connects (and reset those
                // waiting in the backlog).
                listener = None;
            }
            (None, true) => tokio::select! {
                changed = rx.changed() => if changed.is_err() { return },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            },
            (None, false) => match bind(addr) {
                Ok(l) => listener = Some(l),
                Err(_) => tokio::select! {
                    () = tokio::time::sleep(RETRY) => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                },
            },
            (Some(l), false) => tokio::select! {
                accepted = l.accept() => match accepted {
                    Ok((stream, _)) => {
                        stats.accepted.fetch_add(1, Ordering::SeqCst);
                        tasks.spawn(connection::serve(stream, upstream, rx.clone(), Arc::clone(&stats)));
                    }
                    Err(_) => tokio::time::sleep(RETRY).await,
                },
                changed = rx.changed() => if changed.is_err() { return },
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            },
        }
    }
}
