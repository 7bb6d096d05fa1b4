//! [`LocalBackplane`]: an in-process backplane for composer tests, whose connection a test can
//! drop and restore.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use async_trait::async_trait;
use layercake_core::backplane::{Backplane, BackplaneEvent, InstanceId, Message};
use layercake_core::{Error, Result};
use parking_lot::Mutex;
use tokio::sync::broadcast;

/// The shared medium several [`LocalBackplane`]s publish on (one per "cluster" of instances).
#[derive(Debug, Clone, Default)]
pub struct LocalBus {
    members: Arc<Mutex<Vec<Arc<Member>>>>,
}

#[derive(Debug)]
struct Member {
    id: InstanceId,
    tx: broadcast::Sender<BackplaneEvent>,
    connected: AtomicBool,
    reconnects: AtomicU64,
}

impl LocalBus {
    /// A new, empty bus.
    pub fn new() -> LocalBus {
        LocalBus::default()
    }

    /// A backplane for one more instance on this bus.
    pub fn join(&self) -> LocalBackplane {
        let (tx, _) = broadcast::channel(1024);
        let member = Arc::new(Member {
            id: InstanceId::generate(),
            tx,
            connected: AtomicBool::new(true),
            reconnects: AtomicU64::new(0),
        });
        self.members.lock().push(member.clone());
        LocalBackplane {
            bus: self.clone(),
            member,
        }
    }
}

/// One instance's end of a [`LocalBus`].
///
/// - `publish` delivers to every other connected member (in order), and fails while this
///   member is disconnected;
/// - [`disconnect`](LocalBackplane::disconnect) sends `Disconnected` to this member's
///   subscribers and stops delivery to it; [`reconnect`](LocalBackplane::reconnect) sends
///   `Reconnected` (messages published meanwhile are lost, as with a real transport).
#[derive(Debug, Clone)]
pub struct LocalBackplane {
    bus: LocalBus,
    member: Arc<Member>,
}

impl LocalBackplane {
    /// Drop this member's connection.
    pub fn disconnect(&self) {
        if self.member.connected.swap(false, Ordering::SeqCst) {
            let _ = self.member.tx.send(BackplaneEvent::Disconnected);
        }
    }

    /// Restore this member's connection.
    pub fn reconnect(&self) {
        if !self.member.connected.swap(true, Ordering::SeqCst) {
            self.member.reconnects.fetch_add(1, Ordering::SeqCst);
            let _ = self.member.tx.send(BackplaneEvent::Reconnected);
        }
    }
}

#[async_trait]
impl Backplane for LocalBackplane {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn instance(&self) -> InstanceId {
        self.member.id
    }

    async fn publish(&self, message: &Message) -> Result<()> {
        if !self.member.connected.load(Ordering::SeqCst) {
            return Err(Error::unavailable("local backplane disconnected"));
        }
        // Round-trip through the wire format, as a real transport does.
        let decoded = Message::decode(&message.encode()?)?;
        for m in self.bus.members.lock().iter() {
            if m.id != self.member.id && m.connected.load(Ordering::SeqCst) {
                let _ = m.tx.send(BackplaneEvent::Message(decoded.clone()));
            }
        }
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<BackplaneEvent> {
        self.member.tx.subscribe()
    }

    fn is_connected(&self) -> bool {
        self.member.connected.load(Ordering::SeqCst)
    }

    fn dropped(&self) -> u64 {
        0
    }

    fn reconnects(&self) -> u64 {
        self.member.reconnects.load(Ordering::SeqCst)
    }
}
