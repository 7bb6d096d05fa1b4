//! The one error type of layercake, with a kind, a temporary flag and tier context.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

/// Result alias used across layercake.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong, coarsely. New kinds may be added, so match with a wildcard arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The backend's server cannot be reached or refused the operation (connection refused,
    /// reset, pool exhausted).
    Unavailable,
    /// The operation did not finish within its configured timeout.
    Timeout,
    /// The tier's circuit breaker is open; the tier was not asked.
    CircuitOpen,
    /// A value could not be encoded or decoded by the codec.
    Codec,
    /// Stored bytes are not a valid envelope (truncated, wrong magic, bad checksum, wrong key).
    Corrupt,
    /// A key broke one of the key rules (see [`KeyRule`](crate::KeyRule)).
    InvalidKey,
    /// A value or key is over a configured size limit.
    TooLarge,
    /// The configuration is invalid (detected at build time).
    Config,
    /// The backend does not support the operation (see [`Capability`](crate::Capability)).
    Unsupported,
    /// The caller's loader failed, panicked or was cancelled.
    Loader,
}

impl ErrorKind {
    /// A stable lower-case name, used in metrics attributes and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::CircuitOpen => "circuit_open",
            ErrorKind::Codec => "codec",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::InvalidKey => "invalid_key",
            ErrorKind::TooLarge => "too_large",
            ErrorKind::Config => "config",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::Loader => "loader",
        }
    }

    /// Whether errors of this kind are temporary by default (a retry later may succeed).
    pub fn default_temporary(self) -> bool {
        matches!(
            self,
            ErrorKind::Unavailable | ErrorKind::Timeout | ErrorKind::CircuitOpen
        )
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error of every layercake operation.
///
/// Contract:
/// - carries a [`ErrorKind`], a temporary flag, and, when it came from a tier, the tier name
///   and backend kind (`"redis"`, `"postgres"`, …);
/// - is `Clone` (the source is shared), so one failure can be handed to every waiter of a
///   single-flight call;
/// - never contains secrets: messages are written by layercake and sources are client errors,
///   which never see passwords from layercake's `Debug` output.
#[derive(Clone)]
pub struct Error {
    inner: Box<Inner>,
}

#[derive(Clone)]
struct Inner {
    kind: ErrorKind,
    temporary: bool,
    message: Cow<'static, str>,
    tier: Option<Arc<str>>,
    backend: Option<&'static str>,
    source: Option<Arc<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a message; temporary per [`ErrorKind::default_temporary`].
    pub fn new(kind: ErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Error {
            inner: Box::new(Inner {
                kind,
                temporary: kind.default_temporary(),
                message: message.into(),
                tier: None,
                backend: None,
                source: None,
            }),
        }
    }

    /// Shorthand for [`ErrorKind::Unavailable`].
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unavailable, message)
    }
    /// Shorthand for [`ErrorKind::Timeout`].
    pub fn timeout(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Timeout, message)
    }
    /// Shorthand for [`ErrorKind::Corrupt`].
    pub fn corrupt(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Corrupt, message)
    }
    /// Shorthand for [`ErrorKind::Codec`].
    pub fn codec(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Codec, message)
    }
    /// Shorthand for [`ErrorKind::Config`].
    pub fn config(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    /// Shorthand for [`ErrorKind::TooLarge`].
    pub fn too_large(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::TooLarge, message)
    }
    /// Shorthand for [`ErrorKind::Unsupported`].
    pub fn unsupported(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Unsupported, message)
    }
    /// Shorthand for [`ErrorKind::Loader`].
    pub fn loader(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorKind::Loader, message)
    }

    /// Attach the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.inner.source = Some(Arc::new(source));
        self
    }

    /// Attach an already shared cause.
    pub fn with_shared_source(mut self, source: Arc<dyn std::error::Error + Send + Sync>) -> Self {
        self.inner.source = Some(source);
        self
    }

    /// Override whether the error is temporary.
    pub fn with_temporary(mut self, temporary: bool) -> Self {
        self.inner.temporary = temporary;
        self
    }

    /// Record the tier name (as configured in the cache) the error came from.
    pub fn with_tier(mut self, tier: impl Into<Arc<str>>) -> Self {
        self.inner.tier = Some(tier.into());
        self
    }

    /// Record the backend kind (`"memory"`, `"redis"`, `"postgres"`, `"file"`, …).
    pub fn with_backend(mut self, backend: &'static str) -> Self {
        self.inner.backend = Some(backend);
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.inner.kind
    }
    /// Whether retrying later may succeed.
    pub fn is_temporary(&self) -> bool {
        self.inner.temporary
    }
    /// The message, without tier context or source.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
    /// The tier the error came from, if any.
    pub fn tier(&self) -> Option<&str> {
        self.inner.tier.as_deref()
    }
    /// The backend kind the error came from, if any.
    pub fn backend(&self) -> Option<&'static str> {
        self.inner.backend
    }

    /// The loader's own error, typed: `Some(&e)` when this is a [`ErrorKind::Loader`] error
    /// whose cause is an `E` (the error the loader returned, kept as the source).
    ///
    /// A loader that returned a `String` or `&str` has no type to get back (they are boxed
    /// as a private message type): return an error type to use this.
    ///
    /// ```
    /// use layercake_core::Error;
    /// let io = std::io::Error::new(std::io::ErrorKind::NotFound, "upstream 404");
    /// let e = Error::loader("the loader failed").with_source(io);
    /// let back = e.loader_error::<std::io::Error>().unwrap();
    /// assert_eq!(back.kind(), std::io::ErrorKind::NotFound);
    /// assert!(e.loader_error::<std::fmt::Error>().is_none());
    /// ```
    pub fn loader_error<E: std::error::Error + 'static>(&self) -> Option<&E> {
        if self.inner.kind != ErrorKind::Loader {
            return None;
        }
        self.source_as::<E>()
    }

    /// The direct cause as an `E`, whatever the kind (e.g. a backend's client error).
    pub fn source_as<E: std::error::Error + 'static>(&self) -> Option<&E> {
        let src: &(dyn std::error::Error + 'static) = self.inner.source.as_deref()?;
        src.downcast_ref::<E>()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner.kind)?;
        match (&self.inner.tier, self.inner.backend) {
            (Some(t), Some(b)) => write!(f, " (tier {t}, {b})")?,
            (Some(t), None) => write!(f, " (tier {t})")?,
            (None, Some(b)) => write!(f, " ({b})")?,
            (None, None) => {}
        }
        write!(f, ": {}", self.inner.message)?;
        if let Some(src) = &self.inner.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.inner.kind)
            .field("temporary", &self.inner.temporary)
            .field("message", &self.inner.message)
            .field("tier", &self.inner.tier)
            .field("backend", &self.inner.backend)
            .field("source", &self.inner.source.as_ref().map(|s| s.to_string()))
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_kind_tier_and_backend() {
        let e = Error::timeout("GET took longer than 50ms")
            .with_tier("l2")
            .with_backend("redis");
        assert_eq!(
            e.to_string(),
            "timeout (tier l2, redis): GET took longer than 50ms"
        );
        assert!(e.is_temporary());
        assert_eq!(e.kind(), ErrorKind::Timeout);
        let c = e.clone();
        assert_eq!(c.tier(), Some("l2"));
    }

    #[test]
    fn permanent_kinds_are_not_temporary() {
        assert!(!Error::corrupt("x").is_temporary());
        assert!(!Error::config("x").is_temporary());
        assert!(Error::unavailable("x").is_temporary());
        assert!(!Error::unavailable("x").with_temporary(false).is_temporary());
    }

    #[test]
    fn source_is_kept_and_shown() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = Error::unavailable("connect").with_source(io);
        assert!(std::error::Error::source(&e).is_some());
        assert!(e.to_string().ends_with("connect: refused"));
    }
}
