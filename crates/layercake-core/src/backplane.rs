//! The backplane contract and its message format, shared by the Redis pub/sub and PostgreSQL
//! LISTEN/NOTIFY implementations.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use base64::Engine as _;
use tokio::sync::broadcast;

use crate::error::{Error, Result};

/// The largest encoded message accepted, bytes. Text encodings (base64) stay under
/// PostgreSQL's 8000-byte NOTIFY limit.
pub const MAX_MESSAGE_BYTES: usize = 4096;
const MAGIC: [u8; 2] = *b"LB";
const VERSION: u8 = 1;
const FIXED: usize = 2 + 1 + 1 + 8 + 16 + 2;

/// Identifies one cache instance, so it can ignore its own messages.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(pub [u8; 16]);

impl InstanceId {
    /// A new id, unique with overwhelming probability (hash of time, process id, address
    /// entropy and a counter).
    pub fn generate() -> InstanceId {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let mut h = blake3::Hasher::new();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        h.update(&now.as_nanos().to_le_bytes());
        h.update(&std::process::id().to_le_bytes());
        h.update(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        let local = 0u8;
        h.update(&(&local as *const u8 as usize).to_le_bytes());
        let mut id = [0u8; 16];
        id.copy_from_slice(&h.finalize().as_bytes()[..16]);
        InstanceId(id)
    }
}

impl fmt::Debug for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceId(")?;
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        write!(f, "…)")
    }
}

/// What an invalidation message targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Target {
    /// One key.
    Key(String),
    /// Every key starting with this text.
    Prefix(String),
    /// Every entry with this tag.
    Tag(String),
    /// Everything.
    All,
}

impl Target {
    fn code(&self) -> u8 {
        match self {
            Target::Key(_) => 1,
            Target::Prefix(_) => 2,
            Target::Tag(_) => 3,
            Target::All => 4,
        }
    }
    fn text(&self) -> &str {
        match self {
            Target::Key(s) | Target::Prefix(s) | Target::Tag(s) => s,
            Target::All => "",
        }
    }
}

/// An invalidation: after a set, delete or invalidation, other instances drop their L1 copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// What to drop.
    pub target: Target,
    /// The version written (0 for deletes and invalidations).
    pub version: u64,
    /// Who sent it.
    pub origin: InstanceId,
}

impl Message {
    /// Binary encoding: magic `LB`, version 1, target code, entry version, origin, text length
    /// and text. Errors with [`TooLarge`](crate::ErrorKind::TooLarge) over
    /// [`MAX_MESSAGE_BYTES`].
    ///
    /// ```
    /// use layercake_core::backplane::{InstanceId, Message, Target};
    /// let m = Message { target: Target::Tag("user:7".into()), version: 0, origin: InstanceId([1; 16]) };
    /// assert_eq!(Message::decode(&m.encode().unwrap()).unwrap(), m);
    /// assert_eq!(Message::decode_text(&m.encode_text().unwrap()).unwrap(), m);
    /// ```
    pub fn encode(&self) -> Result<Vec<u8>> {
        let text = self.target.text().as_bytes();
        if FIXED + text.len() > MAX_MESSAGE_BYTES {
            return Err(Error::too_large(format!(
                "backplane message of {} bytes over the limit {MAX_MESSAGE_BYTES}",
                FIXED + text.len()
            )));
        }
        let mut out = Vec::with_capacity(FIXED + text.len());
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.target.code());
        out.extend_from_slice(&self.version.to_le_bytes());
        out.extend_from_slice(&self.origin.0);
        out.extend_from_slice(&(text.len() as u16).to_le_bytes());
        out.extend_from_slice(text);
        Ok(out)
    }

    /// Decode; any malformed or oversized input is a [`Corrupt`](crate::ErrorKind::Corrupt)
    /// error, never a panic.
    pub fn decode(b: &[u8]) -> Result<Message> {
        if b.len() > MAX_MESSAGE_BYTES {
            return Err(Error::corrupt("backplane message over the size limit"));
        }
        if b.len() < FIXED {
            return Err(Error::corrupt("backplane message truncated"));
        }
        if b[0..2] != MAGIC {
            return Err(Error::corrupt("backplane message has wrong magic"));
        }
        if b[2] != VERSION {
            return Err(Error::corrupt(format!(
                "unsupported backplane message version {}",
                b[2]
            )));
        }
        let mut v = [0u8; 8];
        v.copy_from_slice(&b[4..12]);
        let mut origin = [0u8; 16];
        origin.copy_from_slice(&b[12..28]);
        let len = u16::from_le_bytes([b[28], b[29]]) as usize;
        if b.len() != FIXED + len {
            return Err(Error::corrupt("backplane message length mismatch"));
        }
        let text = std::str::from_utf8(&b[FIXED..])
            .map_err(|_| Error::corrupt("backplane message text is not UTF-8"))?
            .to_owned();
        let target = match (b[3], text.is_empty()) {
            (1, false) => Target::Key(text),
            (2, _) => Target::Prefix(text),
            (3, false) => Target::Tag(text),
            (4, true) => Target::All,
            (c, _) => {
                return Err(Error::corrupt(format!(
                    "unknown backplane target code {c} or bad text"
                )));
            }
        };
        Ok(Message {
            target,
            version: u64::from_le_bytes(v),
            origin: InstanceId(origin),
        })
    }

    /// The encoding as base64 text, for transports that carry text only (NOTIFY).
    pub fn encode_text(&self) -> Result<String> {
        Ok(base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.encode()?))
    }

    /// Decode [`encode_text`](Message::encode_text) output.
    pub fn decode_text(s: &str) -> Result<Message> {
        if s.len() > MAX_MESSAGE_BYTES * 4 / 3 + 4 {
            return Err(Error::corrupt("backplane message over the size limit"));
        }
        let b = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(s.trim_end_matches('='))
            .map_err(|_| Error::corrupt("backplane message is not base64"))?;
        Message::decode(&b)
    }
}

/// What a subscriber sees.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackplaneEvent {
    /// A message from another instance (own messages are filtered out by the implementation).
    Message(Message),
    /// The subscription was re-established after a loss: messages may have been missed, so
    /// in-process copies must be dropped.
    Reconnected,
    /// The subscription was lost; until [`Reconnected`](BackplaneEvent::Reconnected),
    /// in-process lifetimes should be capped.
    Disconnected,
}

/// Carries invalidations between instances.
///
/// Contract:
/// - `publish` sends a message to every other subscribed instance, or returns an error;
/// - subscribers receive every message published while they are connected, except their own
///   instance's;
/// - a lost subscription is reported as `Disconnected`, and its re-establishment as
///   `Reconnected` (a lagging receiver must treat `broadcast::error::RecvError::Lagged` as
///   a reconnect too: it missed messages);
/// - a malformed message is dropped and counted in [`dropped`](Backplane::dropped), never
///   delivered.
#[async_trait]
pub trait Backplane: Send + Sync + fmt::Debug + 'static {
    /// The transport: `"redis"` or `"postgres"` (bounded, for metrics).
    fn kind(&self) -> &'static str;
    /// This instance's id, stamped on published messages.
    fn instance(&self) -> InstanceId;
    /// Send a message.
    async fn publish(&self, message: &Message) -> Result<()>;
    /// Receive events from now on.
    fn subscribe(&self) -> broadcast::Receiver<BackplaneEvent>;
    /// Whether the subscription is currently established.
    fn is_connected(&self) -> bool;
    /// Malformed messages dropped since start.
    fn dropped(&self) -> u64;
    /// Reconnects since start.
    fn reconnects(&self) -> u64;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn round_trips_and_limits() {
        for t in [
            Target::Key("k".into()),
            Target::Prefix(String::new()),
            Target::Tag("t".into()),
            Target::All,
        ] {
            let m = Message {
                target: t,
                version: 9,
                origin: InstanceId::generate(),
            };
            assert_eq!(Message::decode(&m.encode().unwrap()).unwrap(), m);
        }
        let big = Message {
            target: Target::Key("x".repeat(5000)),
            version: 0,
            origin: InstanceId([0; 16]),
        };
        assert!(big.encode().is_err());
        let max = Message {
            target: Target::Prefix("é".repeat((MAX_MESSAGE_BYTES - FIXED) / 2)),
            version: u64::MAX,
            origin: InstanceId([0xff; 16]),
        };
        let text = max.encode_text().unwrap();
        assert!(text.len() < 8000, "fits a NOTIFY payload: {}", text.len());
        assert_eq!(Message::decode_text(&text).unwrap(), max);
        assert_ne!(InstanceId::generate(), InstanceId::generate());
    }

    proptest! {
        #[test]
        fn decoder_never_panics(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Message::decode(&b);
        }
        #[test]
        fn text_decoder_never_panics(s in ".{0,300}") {
            let _ = Message::decode_text(&s);
        }
    }
}
