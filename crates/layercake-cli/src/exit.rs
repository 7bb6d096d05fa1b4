//! Exit codes and the error a command ends with.

use std::fmt;

/// Everything went as asked.
pub(crate) const OK: u8 = 0;
/// A tier or an operation failed (unreachable server, timeout, refused write, …).
pub(crate) const FAILED: u8 = 1;
/// Bad usage: invalid arguments or configuration, or a destructive command without `--yes`.
pub(crate) const USAGE: u8 = 2;
/// The key is in no tier.
pub(crate) const NOT_FOUND: u8 = 3;
/// The command found something to look at: drift between tiers, doctor warnings.
pub(crate) const FINDINGS: u8 = 4;

/// A command's failure: a message for stderr and an exit code.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: USAGE,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A library error: a configuration error is bad usage, anything else a failure.
impl From<layercake::Error> for Failure {
    fn from(e: layercake::Error) -> Failure {
        let code = if e.kind() == layercake::ErrorKind::Config
            || e.kind() == layercake::ErrorKind::InvalidKey
        {
            USAGE
        } else {
            FAILED
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

/// The result of a command: the exit code it chose.
pub(crate) type Outcome = Result<u8, Failure>;
