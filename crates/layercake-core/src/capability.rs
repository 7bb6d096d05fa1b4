//! [`Capability`]: what a backend does natively, and [`Reach`]: who sees its entries.

/// What a backend supports natively; the conformance suite selects its cases by it, and the
/// composer uses it to choose code paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capability {
    /// `get_many` / `set_many` / `delete_many` are single round trips, not loops.
    pub native_bulk: bool,
    /// `invalidate(Selector::Prefix)` is supported.
    pub prefix_invalidation: bool,
    /// `invalidate(Selector::Tag)` is supported.
    pub tag_invalidation: bool,
    /// `clear` is supported.
    pub clear: bool,
    /// `keys_with_prefix` is supported.
    pub list_keys: bool,
    /// Expiry is judged with the backend's [`Clock`](crate::Clock), so a manual clock expires
    /// entries. False when the server expires them by its own time (Redis `PX`).
    pub clock_driven_expiry: bool,
    /// Entries are stored as envelope bytes (so stored bytes can be corrupted and must be
    /// checked on read). False for the in-process memory tier, which keeps entries as values.
    pub stores_bytes: bool,
    /// Several processes see the same entries (what the conformance suite checks); the
    /// composer goes by [`reach`](Capability::reach).
    pub shared: bool,
    /// Who sees the backend's entries: this process, this host, or every instance. The
    /// composer derives a tier's defaults from it, never from the backend's kind name:
    /// an in-process tier gets no timeouts and no circuit breaker (it does no I/O) and may be
    /// read on the synchronous L1 path; host-local and shared tiers get the default read and
    /// write timeouts and a breaker; backplane messages drop copies in in-process and
    /// host-local tiers, never in shared ones. [`Capability::MINIMAL`] says
    /// [`Reach::Shared`], the safe assumption for a backend that talks to a server.
    pub reach: Reach,
    /// Entries survive a restart of the process.
    pub durable: bool,
    /// The largest value (envelope) the backend accepts, if bounded.
    pub max_value_bytes: Option<usize>,
    /// `get` bounds itself: every call returns (a value, a miss, or a `Timeout` /
    /// `Unavailable` error) within this duration. The composer then arms no timer of its own
    /// around a tier's `get` when the tier's read timeout is not shorter (one timer per read,
    /// not two). `None`: unbounded, the composer's timer applies.
    pub get_timeout: Option<std::time::Duration>,
    /// `set` bounds itself: every call returns (`Ok`, or a `Timeout` / `Unavailable` error)
    /// within this duration, tags included. The composer then arms no timer of its own around
    /// a tier's `set` when the tier's write timeout is not shorter (one timer per write, not
    /// two). `None`: unbounded, the composer's timer applies.
    pub set_timeout: Option<std::time::Duration>,
    /// `fill`, `delete_with` and `invalidate_with` are the backend's own: a fill checks
    /// versions and tombstones and writes atomically against every writer of the storage the
    /// backend shares ([`shared`](Capability::shared) or not), and removals keep tombstones.
    /// False: the [`Backend`](crate::Backend) defaults apply (a best-effort
    /// get-compare-set; removals keep no tombstone).
    pub conditional_fill: bool,
}

impl Capability {
    /// No optional capability: only `get`, `set`, `delete`.
    pub const MINIMAL: Capability = Capability {
        native_bulk: false,
        prefix_invalidation: false,
        tag_invalidation: false,
        clear: false,
        list_keys: false,
        clock_driven_expiry: false,
        stores_bytes: true,
        shared: false,
        reach: Reach::Shared,
        durable: false,
        max_value_bytes: None,
        get_timeout: None,
        set_timeout: None,
        conditional_fill: false,
    };
}

impl Default for Capability {
    fn default() -> Self {
        Self::MINIMAL
    }
}

/// Who sees a backend's entries; see [`Capability::reach`].
///
/// Ordered from the narrowest to the widest, so a composite backend reports the widest reach
/// of its parts (`max`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Reach {
    /// Only this process (an in-memory map): no I/O, nothing to time out; other instances
    /// keep their own copies, which the backplane drops on a change.
    InProcess,
    /// Every process on this host (a local directory): I/O that can stall; other hosts keep
    /// their own copies, which the backplane drops on a change.
    HostLocal,
    /// Every instance (a network server such as Redis or PostgreSQL): written once, seen by
    /// all. The default for a backend that does not say.
    #[default]
    Shared,
}
