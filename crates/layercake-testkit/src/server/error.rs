//! [`FixtureError`]: why a throwaway server could not be started, signalled or stopped.

use std::fmt;
use std::time::Duration;

/// Why a fixture ([`RedisServer`](super::RedisServer), [`PostgresServer`](super::PostgresServer))
/// failed.
///
/// - Every message says what was attempted and, where it helps, how to fix it (which package to
///   install) and the tail of the server's log.
#[derive(Debug)]
#[non_exhaustive]
pub enum FixtureError {
    /// A program the fixture needs is not installed.
    NotFound {
        /// The program looked for (`redis-server`, `initdb`, …).
        program: String,
        /// How to get it.
        hint: String,
    },
    /// An operating-system call failed.
    Io {
        /// What was being done.
        context: String,
        /// The error the system returned.
        source: std::io::Error,
    },
    /// A program ran and failed, or a server exited or misbehaved.
    Failed {
        /// What was being done.
        context: String,
        /// What went wrong: exit status, output, the tail of the server log.
        detail: String,
    },
    /// A server did not reach the awaited state in time.
    Timeout {
        /// What was awaited.
        context: String,
        /// How long the fixture waited.
        waited: Duration,
        /// The tail of the server log, when there is one.
        detail: String,
    },
}

impl FixtureError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn failed(context: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::Failed {
            context: context.into(),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for FixtureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound { program, hint } => write!(f, "{program} not found: {hint}"),
            Self::Io { context, source } => write!(f, "{context}: {source}"),
            Self::Failed { context, detail } => write!(f, "{context}: {detail}"),
            Self::Timeout {
                context,
                waited,
                detail,
            } => {
                write!(f, "{context}: no success after {waited:?}")?;
                if !detail.is_empty() {
                    write!(f, "\n{detail}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for FixtureError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
