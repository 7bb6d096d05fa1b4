//! `rediss://` against a TLS-only `redis-server` started by the test, with a CA, a server and a
//! client certificate generated here (rcgen): round trips in both connection modes and over the
//! backplane, client certificates, and clear errors — never a panic — for an unknown CA, a
//! missing client certificate, and a plaintext URL at the TLS port.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a panic is a test failure"
)]

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use layercake_core::backplane::{Backplane, BackplaneEvent, Message, Target};
use layercake_core::{Backend, Clock, Entry, ErrorKind, Key, SystemClock};
use layercake_redis::{
    ConnectionMode, RedisBackend, RedisBackplane, RedisBackplaneConfig, RedisConfig,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use support::unique_prefix;

/// Bound on any connection attempt of these tests.
const LIMIT: Duration = Duration::from_secs(10);

/// PEM texts of a test PKI: a CA, a server certificate for `127.0.0.1` and `localhost`, and a
/// client certificate, all signed by the CA.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn generate() -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "layercake test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf = |names: Vec<String>, cn: &str| {
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, cn);
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert, server_key) = leaf(
            vec!["127.0.0.1".to_owned(), "localhost".to_owned()],
            "redis test server",
        );
        let (client_cert, client_key) = leaf(Vec::new(), "layercake test client");
        Pki {
            ca: ca.pem(),
            server_cert,
            server_key,
            client_cert,
            client_key,
        }
    }
}

/// A TLS-only `redis-server` (`--port 0 --tls-port P`) on a free loopback port; killed on drop.
struct TlsServer {
    port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl TlsServer {
    /// Start it; `auth_clients` is `tls-auth-clients` (`yes`: a client certificate is required).
    fn start(pki: &Pki, auth_clients: &str) -> TlsServer {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.to_str().unwrap().to_owned()
        };
        let ca = write("ca.crt", &pki.ca);
        let cert = write("server.crt", &pki.server_cert);
        let key = write("server.key", &pki.server_key);
        let port = support::free_port(false);
        let child = Command::new("redis-server")
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--tls-cert-file", &cert, "--tls-key-file", &key])
            .args([
                "--tls-ca-cert-file",
                &ca,
                "--tls-auth-clients",
                auth_clients,
            ])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (apt-get install redis-server)");
        let server = TlsServer {
            port,
            child,
            _dir: dir,
        };
        server.wait_listening(dir_hint(server._dir.path()));
        server
    }

    fn wait_listening(&self, hint: String) {
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(15),
                "the TLS redis-server did not listen within 15 s ({hint}); does this \
                 redis-server support TLS (built with BUILD_TLS=yes)?"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
}

fn dir_hint(dir: &Path) -> String {
    format!("working directory {}", dir.display())
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn config(url: String, mode: ConnectionMode) -> RedisConfig {
    RedisConfig::new(url)
        .with_key_prefix(unique_prefix("tls"))
        .with_mode(mode)
        .with_connect_timeout(Duration::from_secs(2))
        .with_operation_timeout(Duration::from_secs(2))
        // The pool opens its connections (TLS handshakes) at once: room for a loaded machine.
        .with_pool_wait_timeout(Duration::from_secs(2))
        .with_require_server(true)
}

async fn connect(cfg: RedisConfig) -> layercake_core::Result<RedisBackend> {
    tokio::time::timeout(LIMIT, RedisBackend::connect(cfg))
        .await
        .expect("connect must give up within its timeouts")
}

async fn round_trip(backend: &RedisBackend) {
    let key = Key::new("over-tls").unwrap();
    let entry = Entry::new(
        &b"secret payload"[..],
        SystemClock.now(),
        Duration::from_secs(60),
    );
    backend.set(&key, &entry).await.unwrap();
    assert_eq!(backend.get(&key).await.unwrap(), Some(entry));
    backend.delete(&key).await.unwrap();
    assert_eq!(backend.get(&key).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_round_trips_with_the_configured_ca() {
    let pki = Pki::generate();
    let server = TlsServer::start(&pki, "no");
    for mode in [ConnectionMode::Multiplexed, ConnectionMode::Pool] {
        let backend = connect(config(server.url(), mode).with_tls_root_ca(pki.ca.clone()))
            .await
            .unwrap();
        round_trip(&backend).await;
    }

    // The backplane subscribes and publishes over TLS too.
    let cfg = config(server.url(), ConnectionMode::Multiplexed).with_tls_root_ca(pki.ca.clone());
    let channel = unique_prefix("tls-channel");
    let a = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(channel.clone()))
        .await
        .unwrap();
    let b = RedisBackplane::connect(&cfg, RedisBackplaneConfig::new(channel))
        .await
        .unwrap();
    assert!(a.is_connected() && b.is_connected());
    let mut events = b.subscribe();
    let message = Message {
        target: Target::Key("k".into()),
        version: 1,
        origin: a.instance(),
    };
    a.publish(&message).await.unwrap();
    let got = tokio::time::timeout(LIMIT, events.recv())
        .await
        .expect("the message arrives within the bound")
        .unwrap();
    assert!(matches!(got, BackplaneEvent::Message(m) if m == message));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_are_presented_when_required() {
    let pki = Pki::generate();
    let server = TlsServer::start(&pki, "yes");
    let cfg = config(server.url(), ConnectionMode::Multiplexed).with_tls_root_ca(pki.ca.clone());
    let err = connect(cfg.clone()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains(&format!("127.0.0.1:{}", server.port)),
        "{shown}"
    );
    let with_cert = cfg.with_tls_client_auth(pki.client_cert.clone(), pki.client_key.clone());
    assert!(!format!("{with_cert:?}").contains("PRIVATE KEY"));
    let backend = connect(with_cert).await.unwrap();
    round_trip(&backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_mistakes_are_clear_errors_not_panics() {
    let pki = Pki::generate();
    let server = TlsServer::start(&pki, "no");

    // The system's roots do not know the test CA: a certificate error, permanent.
    let err = connect(config(server.url(), ConnectionMode::Multiplexed))
        .await
        .unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{shown}");
    assert!(!err.is_temporary(), "{shown}");
    assert!(
        shown.starts_with(&format!(
            "unavailable (redis): the TLS handshake with redis at 127.0.0.1:{} failed",
            server.port
        )),
        "{shown}"
    );
    // The same without `require_server`: still a failure at connect (waiting will not help).
    let err = connect(config(server.url(), ConnectionMode::Multiplexed).with_require_server(false))
        .await
        .unwrap_err();
    assert!(!err.is_temporary(), "{err}");

    // A plaintext URL at the TLS port.
    let plain = format!("redis://127.0.0.1:{}", server.port);
    let err = connect(config(plain, ConnectionMode::Multiplexed))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a TLS-only Redis needs a rediss:// URL"),
        "{err}"
    );

    // Certificates with a plaintext URL: a configuration error before any connection.
    let err = connect(
        config(
            format!("redis://127.0.0.1:{}", server.port),
            ConnectionMode::Multiplexed,
        )
        .with_tls_root_ca(pki.ca.clone()),
    )
    .await
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config, "{err}");

    // A CA that is not PEM: a clear error.
    let err = connect(
        config(server.url(), ConnectionMode::Multiplexed).with_tls_root_ca("not a certificate"),
    )
    .await
    .unwrap_err();
    assert!(!err.is_temporary(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rediss_at_a_plaintext_port_times_out_with_a_hint() {
    // A plaintext Redis reads a TLS hello as an unfinished inline command and never answers:
    // the attempt ends at the connect timeout, and the error says what else it may be.
    let server = support::Server::start();
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let err = connect(
        config(url, ConnectionMode::Multiplexed).with_connect_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    let shown = err.to_string();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{shown}");
    assert_eq!(
        shown,
        format!(
            "timeout (redis): connecting to redis at 127.0.0.1:{} did not finish within 300 ms \
             (a rediss:// URL at a plaintext Redis port also ends like this)",
            server.port
        )
    );
}
