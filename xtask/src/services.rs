//! `cargo xtask services`: find or start the Redis and PostgreSQL servers the tests need.
//!
//! The search order, for each service on its own (tests talk to real servers, never mocks):
//!
//! 1. the URL in `REDIS_URL` / `DATABASE_URL` when set; it must answer, or we fail;
//! 2. the local default (`redis://127.0.0.1:6379`, `postgres://postgres@127.0.0.1:5432/test`)
//!    when it answers;
//! 3. a server xtask started earlier under `target/services/` that still answers;
//! 4. a new server started from the machine's binaries under `target/services/`, installing the
//!    binaries with `apt-get` first when they are missing and that is allowed
//!    (`LAYERCAKE_INSTALL=1` or `CI=true`, running as root);
//! 5. `docker compose -f tests/compose.yml up -d` when a Docker engine answers.
//!
//! `LAYERCAKE_SERVICES` narrows the search: `auto` (the default, all of the above), `external`
//! (1–2 only), `native` (3–4 only, ignoring the URLs and the defaults) and `docker` (5 only).
//!
//! `down` stops only what xtask started: the pids in its pidfiles and its compose services.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Subcommand;
use xshell::{Cmd, Shell, cmd};

use crate::{Result, env_flag, project_root, target_dir};

/// What `cargo xtask services` should do.
#[derive(Debug, Clone, Copy, Subcommand)]
pub(crate) enum Action {
    /// Find the services, starting them when none answer, and print the URLs to use.
    Up,
    /// Stop the servers xtask started (and only those).
    Down,
    /// Print the state of each service without starting anything.
    Status,
}

/// The URLs of a Redis and a PostgreSQL server that answer.
#[derive(Debug, Clone)]
pub(crate) struct Endpoints {
    /// Value for `REDIS_URL`.
    pub(crate) redis_url: String,
    /// Value for `DATABASE_URL`.
    pub(crate) database_url: String,
}

/// Runs one `cargo xtask services` action.
pub(crate) fn run(sh: &Shell, action: Action) -> Result<()> {
    match action {
        Action::Up => {
            let endpoints = ensure(sh)?;
            println!("\nexport REDIS_URL={}", endpoints.redis_url);
            println!("export DATABASE_URL={}", endpoints.database_url);
            Ok(())
        }
        Action::Down => down(sh),
        Action::Status => status(sh),
    }
}

/// Which sources of services the search may use (`LAYERCAKE_SERVICES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Every source, in the documented order.
    Auto,
    /// Only `REDIS_URL`/`DATABASE_URL` and the local defaults; never start anything.
    External,
    /// Only servers started by xtask from the machine's binaries under `target/services`.
    Native,
    /// Only `docker compose` with `tests/compose.yml`.
    Docker,
}

impl Mode {
    /// Reads the mode from `LAYERCAKE_SERVICES`.
    fn from_env() -> Result<Self> {
        let value = std::env::var("LAYERCAKE_SERVICES").unwrap_or_default();
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => Ok(Self::Auto),
            "external" => Ok(Self::External),
            "native" => Ok(Self::Native),
            "docker" => Ok(Self::Docker),
            other => Err(format!(
                "LAYERCAKE_SERVICES={other:?} is not one of: auto, external, native, docker"
            )
            .into()),
        }
    }

    /// The value of `LAYERCAKE_SERVICES` that selects this mode.
    fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::External => "external",
            Self::Native => "native",
            Self::Docker => "docker",
        }
    }

    /// Whether URLs from the environment and the local defaults may be used.
    fn uses_external(self) -> bool {
        matches!(self, Self::Auto | Self::External)
    }

    /// Whether xtask may start servers from the machine's binaries.
    fn uses_native(self) -> bool {
        matches!(self, Self::Auto | Self::Native)
    }

    /// Whether xtask may use `docker compose`.
    fn uses_docker(self) -> bool {
        matches!(self, Self::Auto | Self::Docker)
    }
}

/// The two services the tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Redis (L2 and the pub/sub backplane).
    Redis,
    /// PostgreSQL (L3 and the LISTEN/NOTIFY backplane).
    Postgres,
}

impl Kind {
    /// Both kinds, in the order they are handled and printed.
    const ALL: [Kind; 2] = [Kind::Redis, Kind::Postgres];

    /// Short name used in messages and paths.
    fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Postgres => "postgres",
        }
    }

    /// The environment variable holding this service's URL.
    fn env_var(self) -> &'static str {
        match self {
            Self::Redis => "REDIS_URL",
            Self::Postgres => "DATABASE_URL",
        }
    }

    /// The URL of the local default server.
    fn default_url(self) -> &'static str {
        match self {
            Self::Redis => "redis://127.0.0.1:6379",
            Self::Postgres => "postgres://postgres@127.0.0.1:5432/test",
        }
    }

    /// The port of the local default server.
    fn default_port(self) -> u16 {
        match self {
            Self::Redis => 6379,
            Self::Postgres => 5432,
        }
    }

    /// The Debian package that provides the server binaries.
    fn apt_package(self) -> &'static str {
        match self {
            Self::Redis => "redis-server",
            Self::Postgres => "postgresql",
        }
    }

    /// The main server binary, as looked up on the machine.
    fn server_binary(self) -> &'static str {
        match self {
            Self::Redis => "redis-server",
            Self::Postgres => "initdb",
        }
    }

    /// The name of the process (`/proc/<pid>/comm`) that a pidfile of ours must point to.
    fn process_name(self) -> &'static str {
        match self {
            Self::Redis => "redis-server",
            Self::Postgres => "postgres",
        }
    }

    /// xtask's state directory for this service: `target/services/<name>`.
    fn state_dir(self) -> PathBuf {
        services_dir().join(self.name())
    }

    /// File holding the URL of the server xtask started.
    fn url_file(self) -> PathBuf {
        self.state_dir().join("url")
    }

    /// The pidfile of the server xtask started.
    fn pid_file(self) -> PathBuf {
        match self {
            Self::Redis => self.state_dir().join("redis.pid"),
            Self::Postgres => self.state_dir().join("data").join("postmaster.pid"),
        }
    }

    /// Checks that a server answers at `url`; the error says why not.
    fn probe(self, sh: &Shell, url: &str) -> Result<(), String> {
        match self {
            Self::Redis => probe_redis(url),
            Self::Postgres => probe_postgres(sh, url),
        }
    }
}

/// `target/services`, where xtask keeps the servers it starts.
fn services_dir() -> PathBuf {
    target_dir().join("services")
}

/// Marker listing the compose services xtask started with `docker compose`.
fn compose_marker() -> PathBuf {
    services_dir().join("compose.started")
}

/// `tests/compose.yml`.
fn compose_file() -> PathBuf {
    project_root().join("tests").join("compose.yml")
}

/// Finds (or starts) both services and returns their URLs; prints what it uses.
pub(crate) fn ensure(sh: &Shell) -> Result<Endpoints> {
    let mode = Mode::from_env()?;
    if mode != Mode::Auto {
        println!("services: LAYERCAKE_SERVICES={}", mode.as_str());
    }
    let mut urls = Vec::new();
    let mut failures = Vec::new();
    for kind in Kind::ALL {
        match ensure_one(sh, kind, mode) {
            Ok(url) => urls.push(url),
            Err(err) => failures.push(err.to_string()),
        }
    }
    if !failures.is_empty() {
        return Err(failures.join("\n\n").into());
    }
    let database_url = urls.pop().unwrap_or_default();
    let redis_url = urls.pop().unwrap_or_default();
    Ok(Endpoints {
        redis_url,
        database_url,
    })
}

/// Finds or starts one service and returns its URL.
fn ensure_one(sh: &Shell, kind: Kind, mode: Mode) -> Result<String> {
    let name = kind.name();
    let var = kind.env_var();
    let mut tried: Vec<String> = Vec::new();

    // 1. The URL the user gave us: it must answer.
    if let Some(url) = env_url(kind) {
        if mode.uses_external() {
            return match kind.probe(sh, &url) {
                Ok(()) => {
                    println!("{name}: using {url} ({var})");
                    Ok(url)
                }
                Err(why) => Err(format!(
                    "{name}: {var}={url} is set but not usable: {why}\n  \
                     Start the server it points to, fix {var}, or unset it to let xtask find or \
                     start one."
                )
                .into()),
            };
        }
        println!(
            "{name}: ignoring {var}={url} because LAYERCAKE_SERVICES={}",
            mode.as_str()
        );
    }

    // 2. The local default.
    if mode.uses_external() {
        let url = kind.default_url();
        match kind.probe(sh, url) {
            Ok(()) => {
                println!("{name}: using {url} (local default)");
                return Ok(url.to_owned());
            }
            Err(why) => tried.push(format!("local default {url}: {why}")),
        }
    }

    // 3 and 4. A server of our own from the machine's binaries.
    if mode.uses_native() {
        if let Some(own) = own_server(sh, kind) {
            println!(
                "{name}: using {} (started earlier by xtask, pid {}; stop with `cargo xtask \
                 services down`)",
                own.url, own.pid
            );
            return Ok(own.url);
        }
        match native_binaries(sh, kind) {
            Ok(bins) => match start_native(sh, kind, &bins) {
                Ok(own) => {
                    println!(
                        "{name}: using {} (started by xtask under {}, pid {}; stop with \
                         `cargo xtask services down`)",
                        own.url,
                        kind.state_dir().display(),
                        own.pid
                    );
                    return Ok(own.url);
                }
                Err(err) => tried.push(format!("starting {name} from {}: {err}", bins.describe())),
            },
            Err(why) => tried.push(why),
        }
    }

    // 5. Docker.
    if mode.uses_docker() {
        match docker_available(sh) {
            Ok(()) => match compose_up(sh, kind) {
                Ok(url) => {
                    println!(
                        "{name}: using {url} (docker compose, tests/compose.yml; stop with \
                         `cargo xtask services down`)"
                    );
                    return Ok(url);
                }
                Err(err) => tried.push(format!("docker compose: {err}")),
            },
            Err(why) => tried.push(why),
        }
    }

    Err(no_service_message(kind, mode, &tried).into())
}

/// The multi-line message printed when no server could be found or started.
fn no_service_message(kind: Kind, mode: Mode, tried: &[String]) -> String {
    let name = kind.name();
    let var = kind.env_var();
    let pkg = kind.apt_package();
    let native = if lookup_binaries(kind).is_some() && !mode.uses_native() {
        format!(
            "let xtask start its own {name} from the installed binaries: unset \
             LAYERCAKE_SERVICES or set it to native;"
        )
    } else if lookup_binaries(kind).is_some() {
        format!(
            "fix what stopped xtask from starting its own {name} (above; logs under {});",
            kind.state_dir().display()
        )
    } else {
        format!(
            "install the binaries and let xtask start its own under target/services:\n         \
             sudo apt-get install -y {pkg}   (or run xtask as root with LAYERCAKE_INSTALL=1)"
        )
    };
    let mut msg = format!("{name}: no server found and none could be started");
    if mode != Mode::Auto {
        let _ = write!(msg, " (LAYERCAKE_SERVICES={})", mode.as_str());
    }
    msg.push_str(".\n  Tried:\n");
    for t in tried {
        let _ = writeln!(msg, "    - {t}");
    }
    let _ = write!(
        msg,
        "  Any one of these fixes it:\n    \
         1. point {var} at a running server (or run one at {default});\n    \
         2. {native}\n    \
         3. start a Docker engine; xtask then runs `docker compose -f tests/compose.yml up -d`.",
        default = kind.default_url(),
    );
    msg
}

/// The URL in the service's environment variable, when set and not empty.
fn env_url(kind: Kind) -> Option<String> {
    std::env::var(kind.env_var())
        .ok()
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

// ---------------------------------------------------------------------------------------------
// Probes
// ---------------------------------------------------------------------------------------------

/// The parts of a `scheme://user:password@host:port/...` URL that a probe needs.
#[derive(Debug, Default, PartialEq, Eq)]
struct UrlParts {
    /// The scheme, lower case, without `://`.
    scheme: String,
    /// The user name, percent-decoded.
    user: Option<String>,
    /// The password, percent-decoded.
    password: Option<String>,
    /// The host (without brackets for IPv6).
    host: String,
    /// The port, or the default port when the URL has none.
    port: u16,
}

/// Parses the authority part of a URL; `None` when it is not of the `scheme://` form.
fn parse_url(url: &str, default_port: u16) -> Option<UrlParts> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (Some(percent_decode(u)), Some(percent_decode(p))),
            None => (Some(percent_decode(info)), None),
        },
        None => (None, None),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        let port = after.strip_prefix(':').unwrap_or("");
        (host.to_owned(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), p),
            None => (hostport.to_owned(), ""),
        }
    };
    let port = if port.is_empty() {
        default_port
    } else {
        port.parse().ok()?
    };
    Some(UrlParts {
        scheme: scheme.to_ascii_lowercase(),
        user: user.filter(|u| !u.is_empty()),
        password,
        host: if host.is_empty() {
            "127.0.0.1".to_owned()
        } else {
            host
        },
        port,
    })
}

/// Decodes `%XX` escapes (as in URL user names and passwords).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How long a probe waits to connect or for an answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Opens a TCP connection to `host:port` with [`PROBE_TIMEOUT`].
fn tcp_connect(host: &str, port: u16) -> Result<TcpStream, String> {
    let addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}:{port}: {e}"))?
        .collect();
    let mut last = format!("no address for {host}:{port}");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) {
            Ok(stream) => {
                let _ = stream.set_read_timeout(Some(PROBE_TIMEOUT));
                let _ = stream.set_write_timeout(Some(PROBE_TIMEOUT));
                return Ok(stream);
            }
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Encodes a command as a RESP array of bulk strings.
fn resp_command(args: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads one `\r\n`-terminated reply line.
fn read_line(stream: &mut TcpStream) -> Result<String, String> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while !line.ends_with(b"\r\n") && line.len() < 512 {
        match stream.read(&mut byte) {
            Ok(0) => break,
            Ok(_) => line.push(byte[0]),
            Err(e) => return Err(format!("no answer: {e}")),
        }
    }
    Ok(String::from_utf8_lossy(&line).trim_end().to_owned())
}

/// Checks that Redis answers `PING` with `+PONG` (after `AUTH` when the URL has a password).
pub(crate) fn probe_redis(url: &str) -> Result<(), String> {
    let parts = parse_url(url, 6379).ok_or_else(|| format!("cannot parse {url:?}"))?;
    let mut stream = tcp_connect(&parts.host, parts.port)?;
    if parts.scheme == "rediss" {
        // TLS: a TCP connection is as far as a probe without a TLS library can go.
        return Ok(());
    }
    if let Some(password) = &parts.password {
        let auth = match &parts.user {
            Some(user) => resp_command(&["AUTH", user, password]),
            None => resp_command(&["AUTH", password]),
        };
        stream.write_all(&auth).map_err(|e| format!("write: {e}"))?;
        let reply = read_line(&mut stream)?;
        if !reply.starts_with("+OK") {
            return Err(format!("AUTH answered {reply:?}"));
        }
    }
    stream
        .write_all(b"PING\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let reply = read_line(&mut stream)?;
    if reply.starts_with("+PONG") {
        Ok(())
    } else if reply.is_empty() {
        Err("connection closed without an answer to PING".to_owned())
    } else {
        Err(format!("PING answered {reply:?}, not +PONG"))
    }
}

/// Checks that PostgreSQL answers at `url`: `pg_isready` (or a TCP connection when it is not
/// installed), then a `SELECT 1` through `psql` when it is installed, so a missing database or a
/// refused login shows here rather than in the tests.
fn probe_postgres(sh: &Shell, url: &str) -> Result<(), String> {
    if let Some(pg_isready) = find_pg_tool("pg_isready") {
        let out = sh
            .cmd(&pg_isready)
            .args(["-t", "3", "-d", url])
            .quiet()
            .ignore_status()
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            return Err(format!("pg_isready: {text}"));
        }
    } else {
        let parts = parse_url(url, 5432).ok_or_else(|| format!("cannot parse {url:?}"))?;
        tcp_connect(&parts.host, parts.port)?;
    }
    if let Some(psql) = find_pg_tool("psql") {
        let out = sh
            .cmd(&psql)
            .args(["-X", "-w", "-At", "-c", "SELECT 1", "-d", url])
            .env("PGCONNECT_TIMEOUT", "3")
            .quiet()
            .ignore_status()
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            return Err(format!("the server answers but psql cannot log in: {text}"));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Binaries
// ---------------------------------------------------------------------------------------------

/// Whether `path` is an executable file.
fn is_executable(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        path.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        path.is_file()
    }
}

/// Looks `name` up in `PATH`, then in `extra` directories.
pub(crate) fn find_binary(name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

/// `/usr/lib/postgresql/<version>/bin`, newest version first.
fn postgres_lib_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| {
                    let version = e.file_name().to_str()?.parse::<u32>().ok()?;
                    Some((version, e.path().join("bin")))
                })
                .collect()
        })
        .unwrap_or_default();
    dirs.sort_by_key(|d| std::cmp::Reverse(d.0));
    dirs.into_iter().map(|(_, d)| d).collect()
}

/// Finds a PostgreSQL tool in `PATH` or under `/usr/lib/postgresql/*/bin`.
fn find_pg_tool(name: &str) -> Option<PathBuf> {
    find_binary(name, &postgres_lib_dirs())
}

/// The binaries needed to run one service natively.
#[derive(Debug)]
enum Binaries {
    /// `redis-server`.
    Redis {
        /// Path of `redis-server`.
        server: PathBuf,
    },
    /// `initdb`, `pg_ctl` and `createdb` from one PostgreSQL installation.
    Postgres {
        /// Path of `initdb`.
        initdb: PathBuf,
        /// Path of `pg_ctl`.
        pg_ctl: PathBuf,
        /// Path of `createdb`.
        createdb: PathBuf,
    },
}

impl Binaries {
    /// Where the binaries are, for messages.
    fn describe(&self) -> String {
        match self {
            Self::Redis { server } => server.display().to_string(),
            Self::Postgres { initdb, .. } => initdb
                .parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        }
    }
}

/// Finds the binaries for `kind`, without installing anything.
fn lookup_binaries(kind: Kind) -> Option<Binaries> {
    match kind {
        Kind::Redis => find_binary("redis-server", &[PathBuf::from("/usr/sbin")])
            .map(|server| Binaries::Redis { server }),
        Kind::Postgres => {
            let initdb = find_pg_tool("initdb")?;
            // Follow symlinks such as /usr/local/bin/initdb -> /usr/lib/postgresql/15/bin/initdb.
            let initdb = std::fs::canonicalize(&initdb).unwrap_or(initdb);
            // Prefer the tools next to initdb, so that all come from one version.
            let sibling = |name: &str| {
                initdb
                    .parent()
                    .map(|d| d.join(name))
                    .filter(|p| is_executable(p))
                    .or_else(|| find_pg_tool(name))
            };
            Some(Binaries::Postgres {
                pg_ctl: sibling("pg_ctl")?,
                createdb: sibling("createdb")?,
                initdb,
            })
        }
    }
}

/// Finds the binaries for `kind`, installing them with apt-get when missing and allowed.
fn native_binaries(sh: &Shell, kind: Kind) -> Result<Binaries, String> {
    if let Some(bins) = lookup_binaries(kind) {
        return Ok(bins);
    }
    let pkg = kind.apt_package();
    let binary = kind.server_binary();
    let apt = find_binary("apt-get", &[]);
    let root = is_root(sh);
    let allowed = env_flag("LAYERCAKE_INSTALL") || env_flag("CI");
    match (apt, root, allowed) {
        (Some(apt), true, true) => {
            println!(
                "{}: {binary} not found; installing {pkg} with apt-get",
                kind.name()
            );
            let installed = cmd!(sh, "{apt} update")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .run()
                .and_then(|()| {
                    cmd!(sh, "{apt} install -y --no-install-recommends {pkg}")
                        .env("DEBIAN_FRONTEND", "noninteractive")
                        .run()
                });
            if let Err(e) = installed {
                return Err(format!(
                    "{binary} not found and `apt-get install {pkg}` failed: {e}"
                ));
            }
            lookup_binaries(kind)
                .ok_or_else(|| format!("installed {pkg} but still cannot find {binary}"))
        }
        (Some(_), true, false) => {
            println!(
                "{}: {binary} not found. Install it with `apt-get install -y {pkg}`, or set \
                 LAYERCAKE_INSTALL=1 to let xtask do it.",
                kind.name()
            );
            Err(format!(
                "{binary} not found (not installing: set LAYERCAKE_INSTALL=1 to allow \
                 `apt-get install -y {pkg}`)"
            ))
        }
        (Some(_), false, _) => Err(format!(
            "{binary} not found (install it with `sudo apt-get install -y {pkg}`)"
        )),
        (None, _, _) => Err(format!(
            "{binary} not found and there is no apt-get here: install {pkg} with the system \
             package manager"
        )),
    }
}

/// Whether xtask runs as root (`id -u` is 0).
fn is_root(sh: &Shell) -> bool {
    cmd!(sh, "id -u")
        .quiet()
        .ignore_stderr()
        .read()
        .map(|uid| uid.trim() == "0")
        .unwrap_or(false)
}

// ---------------------------------------------------------------------------------------------
// Servers started by xtask
// ---------------------------------------------------------------------------------------------

/// A server xtask started: its URL and its pid.
#[derive(Debug)]
struct OwnServer {
    /// URL that reaches it.
    url: String,
    /// Pid from its pidfile.
    pid: u32,
}

/// Reads the first line of a pidfile as a pid.
fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Whether `pid` is a live process running `kind`'s server.
fn is_our_process(sh: &Shell, kind: Kind, pid: u32) -> bool {
    let comm = PathBuf::from(format!("/proc/{pid}/comm"));
    if Path::new("/proc/self").exists() {
        // A zombie keeps its name until it is reaped, so check the state too.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next());
        return !matches!(state, None | Some('Z' | 'X'))
            && std::fs::read_to_string(comm)
                .map(|c| c.trim().starts_with(kind.process_name()))
                .unwrap_or(false);
    }
    let pid = pid.to_string();
    cmd!(sh, "kill -0 {pid}")
        .quiet()
        .ignore_stderr()
        .run()
        .is_ok()
}

/// The server xtask started earlier for `kind`, when it still runs and answers.
fn own_server(sh: &Shell, kind: Kind) -> Option<OwnServer> {
    let pid = read_pid(&kind.pid_file())?;
    let url = std::fs::read_to_string(kind.url_file()).ok()?;
    let url = url.trim().to_owned();
    if !is_our_process(sh, kind, pid) || kind.probe(sh, &url).is_err() {
        return None;
    }
    Some(OwnServer { url, pid })
}

/// Whether nothing listens on `127.0.0.1:port`.
pub(crate) fn port_is_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A port that is free on 127.0.0.1 now: the default when free, else one the kernel picks.
fn pick_port(default: u16) -> Result<u16> {
    if port_is_free(default) {
        return Ok(default);
    }
    let listener = TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// Polls `check` until it succeeds or `timeout` passes; returns the last error.
pub(crate) fn wait_for(
    timeout: Duration,
    mut check: impl FnMut() -> Result<(), String>,
) -> Result<()> {
    let start = Instant::now();
    loop {
        match check() {
            Ok(()) => return Ok(()),
            Err(why) if start.elapsed() >= timeout => {
                return Err(format!("not ready after {}s: {why}", timeout.as_secs()).into());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(250)),
        }
    }
}

/// Starts `kind` from `bins` under `target/services/<kind>`.
fn start_native(sh: &Shell, kind: Kind, bins: &Binaries) -> Result<OwnServer> {
    let dir = kind.state_dir();
    std::fs::create_dir_all(&dir)?;
    let _ = std::fs::remove_file(kind.url_file());
    let port = pick_port(kind.default_port())?;
    let url = match bins {
        Binaries::Redis { server } => start_redis(sh, server, &dir, port)?,
        Binaries::Postgres {
            initdb,
            pg_ctl,
            createdb,
        } => start_postgres(sh, initdb, pg_ctl, createdb, &dir, port)?,
    };
    std::fs::write(kind.url_file(), format!("{url}\n"))?;
    let pid = read_pid(&kind.pid_file()).ok_or("the server wrote no pidfile")?;
    Ok(OwnServer { url, pid })
}

/// Starts a throwaway `redis-server` (no persistence, daemonized, pidfile in `dir`).
fn start_redis(sh: &Shell, server: &Path, dir: &Path, port: u16) -> Result<String> {
    let pidfile = dir.join("redis.pid");
    let logfile = dir.join("redis.log");
    let _ = std::fs::remove_file(&pidfile);
    let port_s = port.to_string();
    println!("redis: starting {} on 127.0.0.1:{port}", server.display());
    cmd!(
        sh,
        "{server} --bind 127.0.0.1 --port {port_s} --save '' --appendonly no --daemonize yes
            --pidfile {pidfile} --logfile {logfile} --dir {dir}"
    )
    .quiet()
    .run()?;
    let url = format!("redis://127.0.0.1:{port}");
    wait_for(Duration::from_secs(15), || {
        if !pidfile.exists() {
            return Err("no pidfile yet".to_owned());
        }
        probe_redis(&url)
    })
    .map_err(|e| format!("{e} (log: {})", logfile.display()))?;
    Ok(url)
}

/// Builds a command that runs `program` as the `postgres` user when xtask runs as root
/// (initdb and postgres refuse to run as root), else as ourselves.
fn pg_cmd<'a>(
    sh: &'a Shell,
    as_postgres: bool,
    program: &Path,
    args: &[String],
) -> Result<Cmd<'a>> {
    if !as_postgres {
        return Ok(sh.cmd(program).args(args));
    }
    if let Some(runuser) = find_binary("runuser", &[PathBuf::from("/usr/sbin"), "/sbin".into()]) {
        return Ok(sh
            .cmd(runuser)
            .args(["-u", "postgres", "--"])
            .arg(program)
            .args(args));
    }
    if let Some(su) = find_binary("su", &[PathBuf::from("/bin")]) {
        let mut line = shell_quote(&program.display().to_string());
        for arg in args {
            line.push(' ');
            line.push_str(&shell_quote(arg));
        }
        return Ok(sh
            .cmd(su)
            .args(["postgres", "-s", "/bin/sh", "-c"])
            .arg(line));
    }
    Err(
        "running as root, and neither runuser nor su is there to run PostgreSQL as `postgres`"
            .into(),
    )
}

/// Quotes `s` for `sh -c`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Starts a throwaway PostgreSQL cluster in `dir/data` (trust auth, 127.0.0.1 only, no
/// durability) and creates the database `test`.
fn start_postgres(
    sh: &Shell,
    initdb: &Path,
    pg_ctl: &Path,
    createdb: &Path,
    dir: &Path,
    port: u16,
) -> Result<String> {
    let data = dir.join("data");
    let log = dir.join("postgres.log");
    let as_postgres = is_root(sh);
    if as_postgres {
        let exists = cmd!(sh, "id -u postgres")
            .quiet()
            .ignore_stderr()
            .read()
            .is_ok();
        if !exists {
            return Err(
                "running as root and there is no `postgres` user to run PostgreSQL as \
                        (initdb refuses root): create one with `useradd --system postgres` or \
                        run xtask as a normal user"
                    .into(),
            );
        }
    }
    let chown = |path: &Path| -> Result<()> {
        if as_postgres {
            cmd!(sh, "chown -R postgres: {path}").quiet().run()?;
        }
        Ok(())
    };

    if !data.join("PG_VERSION").exists() {
        let _ = std::fs::remove_dir_all(&data);
        std::fs::create_dir_all(&data)?;
        chown(dir)?;
        println!("postgres: initdb {}", data.display());
        let args: Vec<String> = vec![
            "-D".into(),
            data.display().to_string(),
            "-U".into(),
            "postgres".into(),
            "--auth=trust".into(),
            "-E".into(),
            "UTF8".into(),
            "--locale=C".into(),
            "--no-sync".into(),
        ];
        pg_cmd(sh, as_postgres, initdb, &args)?
            .quiet()
            .output()
            .map_err(|e| {
                format!(
                    "initdb failed: {e}\n  (when running as root, the postgres user must be able to \
                     reach {})",
                    data.display()
                )
            })?;
        let conf = data.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str("\n# added by cargo xtask services\ninclude_if_exists = 'layercake.conf'\n");
        std::fs::write(&conf, text)?;
    }

    // Settings for this start: port, loopback only, no unix socket, no durability.
    std::fs::write(
        data.join("layercake.conf"),
        format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = ''\n\
             max_connections = 200\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\n"
        ),
    )?;
    chown(dir)?;

    println!(
        "postgres: starting {} on 127.0.0.1:{port}",
        pg_ctl.display()
    );
    let args: Vec<String> = vec![
        "-D".into(),
        data.display().to_string(),
        "-l".into(),
        log.display().to_string(),
        "-w".into(),
        "-t".into(),
        "60".into(),
        "start".into(),
    ];
    pg_cmd(sh, as_postgres, pg_ctl, &args)?
        .quiet()
        .ignore_stdout()
        .run()
        .map_err(|e| format!("pg_ctl start failed: {e} (log: {})", log.display()))?;

    let port_s = port.to_string();
    let out = cmd!(sh, "{createdb} -h 127.0.0.1 -p {port_s} -U postgres test")
        .quiet()
        .ignore_status()
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && !stderr.contains("already exists") {
        return Err(format!("createdb test failed: {}", stderr.trim()).into());
    }
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    wait_for(Duration::from_secs(15), || probe_postgres(sh, &url))?;
    Ok(url)
}

/// Stops the server xtask started for `kind`, if any; says what it did.
fn stop_native(sh: &Shell, kind: Kind) -> Result<()> {
    let name = kind.name();
    let pidfile = kind.pid_file();
    let Some(pid) = read_pid(&pidfile) else {
        println!("{name}: no server started by xtask");
        let _ = std::fs::remove_file(kind.url_file());
        return Ok(());
    };
    if !is_our_process(sh, kind, pid) {
        println!(
            "{name}: pidfile {} names pid {pid}, which is not a running {}; cleaning up",
            pidfile.display(),
            kind.process_name()
        );
        if kind == Kind::Redis {
            let _ = std::fs::remove_file(&pidfile);
        }
        let _ = std::fs::remove_file(kind.url_file());
        return Ok(());
    }
    match (kind, lookup_binaries(kind)) {
        (Kind::Postgres, Some(Binaries::Postgres { pg_ctl, .. })) => {
            let data = kind.state_dir().join("data");
            let args: Vec<String> = vec![
                "-D".into(),
                data.display().to_string(),
                "-m".into(),
                "fast".into(),
                "-w".into(),
                "stop".into(),
            ];
            pg_cmd(sh, is_root(sh), &pg_ctl, &args)?
                .quiet()
                .ignore_stdout()
                .run()?;
        }
        _ => {
            let pid_s = pid.to_string();
            cmd!(sh, "kill -TERM {pid_s}").quiet().run()?;
            wait_for(Duration::from_secs(15), || {
                if is_our_process(sh, kind, pid) {
                    Err(format!("pid {pid} still running"))
                } else {
                    Ok(())
                }
            })?;
            if kind == Kind::Redis {
                let _ = std::fs::remove_file(&pidfile);
            }
        }
    }
    let _ = std::fs::remove_file(kind.url_file());
    println!("{name}: stopped the server xtask started (pid {pid})");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------------------------

/// Whether a Docker engine answers (`docker info`); the error says why not.
fn docker_available(sh: &Shell) -> Result<(), String> {
    let Some(docker) = find_binary("docker", &[]) else {
        return Err("docker: not installed".to_owned());
    };
    let ok = cmd!(sh, "{docker} info")
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
    if ok {
        Ok(())
    } else {
        Err("docker: installed, but `docker info` fails (no engine running?)".to_owned())
    }
}

/// `docker compose -f tests/compose.yml up -d <service>`, then waits for the local default.
fn compose_up(sh: &Shell, kind: Kind) -> Result<String> {
    let file = compose_file();
    let service = kind.name();
    let port = kind.default_port();
    if !port_is_free(port) {
        return Err(format!(
            "port {port} is taken by something that does not answer as {service}; free it first"
        )
        .into());
    }
    println!("{service}: docker compose -f tests/compose.yml up -d {service}");
    cmd!(sh, "docker compose -f {file} up -d {service}").run()?;
    std::fs::create_dir_all(services_dir())?;
    let marker = compose_marker();
    let mut started = std::fs::read_to_string(&marker).unwrap_or_default();
    if !started.lines().any(|l| l == service) {
        started.push_str(service);
        started.push('\n');
        std::fs::write(&marker, started)?;
    }
    let url = kind.default_url();
    wait_for(Duration::from_secs(90), || kind.probe(sh, url))?;
    Ok(url.to_owned())
}

/// Stops the compose services xtask started, if any.
fn compose_down(sh: &Shell) -> Result<()> {
    let marker = compose_marker();
    let Ok(started) = std::fs::read_to_string(&marker) else {
        return Ok(());
    };
    let services: Vec<&str> = started.lines().filter(|l| !l.is_empty()).collect();
    if !services.is_empty() {
        let names = services.join(", ");
        let file = compose_file();
        cmd!(
            sh,
            "docker compose -f {file} rm --stop --force -v {services...}"
        )
        .run()?;
        println!("docker: stopped {names}");
    }
    std::fs::remove_file(marker)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// down and status
// ---------------------------------------------------------------------------------------------

/// Stops everything xtask started, and nothing else.
fn down(sh: &Shell) -> Result<()> {
    let mut errors = Vec::new();
    for kind in Kind::ALL {
        if let Err(e) = stop_native(sh, kind) {
            errors.push(format!("{}: {e}", kind.name()));
        }
    }
    if let Err(e) = compose_down(sh) {
        errors.push(format!("docker: {e}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("\n").into())
    }
}

/// Prints, for each service, every source and whether it answers.
fn status(sh: &Shell) -> Result<()> {
    let mode = Mode::from_env()?;
    println!("mode: LAYERCAKE_SERVICES={}", mode.as_str());
    let docker = docker_available(sh);
    let compose_started = std::fs::read_to_string(compose_marker()).unwrap_or_default();
    for kind in Kind::ALL {
        let name = kind.name();
        println!("\n{name}:");
        let answer = |url: &str| match kind.probe(sh, url) {
            Ok(()) => (true, "answers".to_owned()),
            Err(why) => (false, format!("does not answer ({why})")),
        };
        let row = |label: &str, text: &str| println!("  {label:<17} {text}");

        let env = env_url(kind).map(|url| {
            let (ok, text) = answer(&url);
            row(kind.env_var(), &format!("{url}: {text}"));
            (url, ok)
        });
        if env.is_none() {
            row(kind.env_var(), "not set");
        }
        let (default_ok, text) = answer(kind.default_url());
        row("local default", &format!("{}: {text}", kind.default_url()));
        let own = match read_pid(&kind.pid_file()) {
            Some(pid) if is_our_process(sh, kind, pid) => {
                let url = std::fs::read_to_string(kind.url_file()).unwrap_or_default();
                let url = url.trim().to_owned();
                let (ok, text) = answer(&url);
                row("started by xtask", &format!("pid {pid}, {url}: {text}"));
                ok.then_some(url)
            }
            Some(pid) => {
                row(
                    "started by xtask",
                    &format!("stale pidfile (pid {pid} is gone)"),
                );
                None
            }
            None => {
                row("started by xtask", "none");
                None
            }
        };
        let bins = lookup_binaries(kind);
        match &bins {
            Some(bins) => row("binaries", &bins.describe()),
            None => row(
                "binaries",
                &format!(
                    "{} not found (apt-get install -y {})",
                    kind.server_binary(),
                    kind.apt_package()
                ),
            ),
        }
        let in_compose = compose_started.lines().any(|l| l == name);
        match &docker {
            Ok(()) if in_compose => row("docker", "engine running; started by xtask"),
            Ok(()) => row("docker", "engine running"),
            Err(why) => row("docker", why.trim_start_matches("docker: ")),
        }

        let verdict = match (&env, mode) {
            (Some((url, true)), m) if m.uses_external() => format!("use {url}"),
            (Some((_, false)), m) if m.uses_external() => {
                format!("fail: {} does not answer", kind.env_var())
            }
            _ if mode.uses_external() && default_ok => format!("use {}", kind.default_url()),
            _ if mode.uses_native() && own.is_some() => {
                format!("use {}", own.unwrap_or_default())
            }
            _ if mode.uses_native() && bins.is_some() => {
                "start a server of its own under target/services".to_owned()
            }
            _ if mode.uses_docker() && docker.is_ok() => "start it with docker compose".to_owned(),
            _ => "fail: no server, no binaries, no Docker engine".to_owned(),
        };
        row("`services up`", &format!("would {verdict}"));
    }
    Ok(())
}

/// Unit tests of the URL and RESP helpers.
#[cfg(test)]
mod tests {
    use super::*;

    /// URLs with passwords, default ports, IPv6 hosts, and non-URLs.
    #[test]
    fn parses_urls() {
        let p = parse_url("redis://:s%40cret@localhost:6380/0", 6379);
        assert_eq!(
            p,
            Some(UrlParts {
                scheme: "redis".into(),
                user: None,
                password: Some("s@cret".into()),
                host: "localhost".into(),
                port: 6380,
            })
        );
        let p = parse_url("postgres://postgres@127.0.0.1/test?sslmode=disable", 5432);
        assert_eq!(p.as_ref().map(|p| p.port), Some(5432));
        assert_eq!(p.and_then(|p| p.user), Some("postgres".into()));
        let p = parse_url("redis://[::1]:7000", 6379);
        assert_eq!(p.map(|p| (p.host, p.port)), Some(("::1".into(), 7000)));
        assert_eq!(parse_url("host=localhost", 5432), None);
    }

    /// A command becomes a RESP array of bulk strings.
    #[test]
    fn encodes_resp() {
        assert_eq!(
            resp_command(&["AUTH", "pw"]),
            b"*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n".to_vec()
        );
    }
}
