//! Process plumbing shared by the server fixtures: free ports, signals sent with the `kill`
//! program (no `unsafe`), the children of a pid from `/proc`, bounded waits and log tails.

use std::io::{Read as _, Seek as _, SeekFrom};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::FixtureError;

/// How often the waits below look again.
const POLL: Duration = Duration::from_millis(10);

/// A signal the fixtures send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// Polite shutdown (Redis).
    Term,
    /// Fast shutdown (PostgreSQL).
    Int,
    /// Immediate death.
    Kill,
    /// Freeze.
    Stop,
    /// Thaw.
    Cont,
}

impl Signal {
    fn flag(self) -> &'static str {
        match self {
            Self::Term => "-TERM",
            Self::Int => "-INT",
            Self::Kill => "-KILL",
            Self::Stop => "-STOP",
            Self::Cont => "-CONT",
        }
    }
}

/// A loopback port nothing listens on right now: bind `127.0.0.1:0`, read the port, let go.
pub(crate) fn free_port() -> Result<u16, FixtureError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| FixtureError::io("binding 127.0.0.1:0 to find a free port", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| FixtureError::io("reading the port of 127.0.0.1:0", e))?
        .port();
    Ok(port)
}

/// Sends `sig` to `pid` with the `kill` program; an error when the process is gone or `kill`
/// fails.
pub(crate) fn signal(pid: u32, sig: Signal) -> Result<(), FixtureError> {
    let out = Command::new("kill")
        .arg(sig.flag())
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| FixtureError::io("running `kill` (package procps)", e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FixtureError::failed(
            format!("kill {} {pid}", sig.flag()),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        ))
    }
}

/// Sends `sig` to each of `pids`, ignoring those that exited meanwhile.
pub(crate) fn signal_all(pids: &[u32], sig: Signal) {
    if pids.is_empty() {
        return;
    }
    // One `kill` for all: its exit status only says that some pid was gone, which is expected.
    let _ = Command::new("kill")
        .arg(sig.flag())
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The `(ppid, state)` of `pid` from `/proc/<pid>/stat`, `None` when it does not exist.
fn stat(pid: u32) -> Option<(u32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`: comm may hold spaces and parentheses, so split after the last `)`.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// The live (not zombie) processes whose parent is `parent`, from `/proc/*/stat`.
pub(crate) fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| matches!(stat(pid), Some((ppid, state)) if ppid == parent && state != 'Z'))
        .collect()
}

/// The state letter of `pid` (`R`, `S`, `T` when stopped, `Z`, …), `None` when it does not
/// exist.
#[cfg(test)]
pub(crate) fn state(pid: u32) -> Option<char> {
    stat(pid).map(|(_, state)| state)
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    matches!(stat(pid), Some((_, state)) if state != 'Z')
}

/// Waits (asynchronously, polling) until each of `pids` that still lives is stopped (`T`, after
/// SIGSTOP) or, with `stopped` false, running again; whether that happened within `timeout`.
///
/// - A signal is delivered asynchronously: `kill` returns before the target has stopped.
pub(crate) async fn wait_stopped(pids: &[u32], stopped: bool, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let done = pids.iter().all(|&pid| match stat(pid) {
            None | Some((_, 'Z' | 'X')) => true,
            Some((_, state)) => (state == 'T') == stopped,
        });
        if done {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// [`wait_stopped`] for `Drop` and other non-async code: blocks the thread.
pub(crate) fn wait_stopped_blocking(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        match stat(pid) {
            None | Some((_, 'T' | 'Z' | 'X')) => return true,
            Some(_) if Instant::now() >= deadline => return false,
            Some(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

/// Waits (asynchronously, polling) until `pids` are gone or `timeout` passes; whether they are.
pub(crate) async fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !pids.iter().any(|&p| alive(p)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits (asynchronously, polling) until `child` exits or `timeout` passes.
pub(crate) async fn wait_exit(
    child: &mut Child,
    timeout: Duration,
) -> Result<Option<ExitStatus>, FixtureError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| FixtureError::io("waiting for a server", e))?
        {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// SIGKILLs `child` and reaps it, blocking at most `timeout` (for `Drop`, outside async code).
pub(crate) fn kill_and_reap_blocking(child: &mut Child, timeout: Duration) {
    let _ = child.kill();
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(None) => std::thread::sleep(POLL),
            _ => return,
        }
    }
}

/// The size of `path` now, so that [`log_since`] can show what a launch wrote.
pub(crate) fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// The last `lines` lines `path` got after byte `offset`, for error messages.
pub(crate) fn log_since(path: &Path, offset: u64, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path) {
        let mut bytes = Vec::new();
        if file.seek(SeekFrom::Start(offset)).is_ok() && file.read_to_end(&mut bytes).is_ok() {
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    let all: Vec<&str> = text.lines().collect();
    let tail = &all[all.len().saturating_sub(lines)..];
    if tail.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        format!("last lines of {}:\n{}", path.display(), tail.join("\n"))
    }
}

/// Opens `path` for appending, as a child's stdout or stderr.
pub(crate) fn log_stdio(path: &Path) -> Result<Stdio, FixtureError> {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map(Stdio::from)
        .map_err(|e| FixtureError::io(format!("opening {}", path.display()), e))
}

/// Maps a spawn error: "not found" becomes [`FixtureError::NotFound`] with `hint`.
pub(crate) fn spawn_error(program: &str, hint: &str, e: std::io::Error) -> FixtureError {
    if e.kind() == std::io::ErrorKind::NotFound {
        FixtureError::NotFound {
            program: program.to_owned(),
            hint: hint.to_owned(),
        }
    } else {
        FixtureError::io(format!("starting {program}"), e)
    }
}

/// Whether this process runs as root (the owner of `/proc/self` is the effective uid).
pub(crate) fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
