//! TLS for `rediss://`: the rustls crypto provider, and the CA / client certificates of
//! [`RedisConfig`].
//!
//! rustls needs a process-wide crypto provider, and redis-rs builds its TLS configuration with
//! the process default — which panics when none is installed. So before any TLS connection:
//! - an application that installed a provider (`CryptoProvider::install_default`) keeps it;
//! - else, with the `tls-ring` feature (on by default), ring is installed as the default;
//! - else the connection fails with a `Config` error saying what to do, never a panic.

use layercake_core::{Error, Result};
use redis::{ClientTlsConfig, TlsCertificates};

use crate::config::RedisConfig;
use crate::error::BACKEND;

/// Whether `url` asks for TLS.
pub(crate) fn is_tls(url: &str) -> bool {
    url.starts_with("rediss://")
}

/// Make sure a rustls crypto provider is installed for the process (see the module docs).
pub(crate) fn ensure_crypto_provider() -> Result<()> {
    if rustls::crypto::CryptoProvider::get_default().is_some() {
        return Ok(());
    }
    #[cfg(feature = "tls-ring")]
    {
        // Another thread may install one between the check and here: either way one is set.
        let _ = ring_provider().install_default();
        Ok(())
    }
    #[cfg(not(feature = "tls-ring"))]
    {
        Err(Error::config(
            "rediss:// needs a rustls crypto provider: enable the `tls-ring` feature of \
             layercake-redis, or install one at start-up with \
             rustls::crypto::CryptoProvider::install_default",
        )
        .with_backend(BACKEND))
    }
}

/// rustls's ring provider.
#[cfg(feature = "tls-ring")]
#[allow(
    deprecated,
    reason = "rustls 0.23.48 deprecates the ring provider (no post-quantum key exchange) but \
              keeps it; the lowest rustls these crates accept does not, so `expect` would fail \
              there. An application that wants post-quantum key exchange installs aws-lc-rs."
)]
fn ring_provider() -> rustls::crypto::CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// The certificates of `cfg` for redis-rs, when it has any (`None`: the system's roots and no
/// client certificate).
pub(crate) fn certificates(cfg: &RedisConfig) -> Option<TlsCertificates> {
    if cfg.tls_root_ca.is_none() && cfg.tls_client_auth.is_none() {
        return None;
    }
    Some(TlsCertificates {
        client_tls: cfg
            .tls_client_auth
            .as_ref()
            .map(|(cert, key)| ClientTlsConfig {
                client_cert: cert.clone(),
                client_key: key.clone(),
            }),
        root_cert: cfg.tls_root_ca.clone(),
    })
}

/// Check the TLS settings of `cfg` against its URLs.
pub(crate) fn validate(cfg: &RedisConfig) -> Result<()> {
    let has_certs = cfg.tls_root_ca.is_some() || cfg.tls_client_auth.is_some();
    if has_certs && !cfg.nodes().iter().all(|u| is_tls(u)) {
        return Err(Error::config(
            "a TLS CA or client certificate is configured, but the redis URL does not start \
             with rediss://",
        )
        .with_backend(BACKEND));
    }
    Ok(())
}
