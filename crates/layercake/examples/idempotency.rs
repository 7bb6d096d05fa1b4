//! Idempotency records: reserve, complete, replay.
//!
//! ```sh
//! cargo run -p layercake --features file --example idempotency
//! ```
//!
//! A payment endpoint receives requests carrying an `Idempotency-Key`. The first request with a
//! key runs the charge; duplicates that arrive while it runs wait for it instead of charging
//! again (single flight: the record is *reserved* by the running load); retries after it
//! finished get the stored response (*replay*); a retry that reuses the key for a different
//! body is refused. Records live in the `idempotency` namespace (1 hour) on memory + file.
//!
//! Within one process, single flight is the reservation. Several instances sharing Redis or
//! PostgreSQL see completed records through those tiers; to also serialize a duplicate that
//! reaches another instance *while* the first charge runs, give the cache a distributed lock
//! (`CacheBuilder::distributed_lock` with a Redis backend) — see the "idempotency records"
//! guide for what that lock does and does not guarantee.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use layercake::file::{FileBackend, FileConfig};
use layercake::{Cache, HashedKeys, MemoryBackend, Namespace, NamespaceTable, Source};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct PaymentRequest {
    account: String,
    amount_cents: u64,
}

/// What is stored under the idempotency key: the request's fingerprint and the response.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    fingerprint: String,
    status: u16,
    body: String,
}

#[derive(Debug, PartialEq)]
enum Reply {
    Charged(String),
    Replayed(String),
    Conflict,
}

struct Payments {
    records: Cache,
    charges: Arc<AtomicU32>,
}

impl Payments {
    async fn handle(&self, idempotency_key: &str, req: PaymentRequest) -> layercake::Result<Reply> {
        // The canonical JSON of the request identifies its content whatever the field order.
        let fingerprint =
            String::from_utf8_lossy(&layercake::core::canonical_json(&req)?).into_owned();
        let charges = self.charges.clone();
        let fp = fingerprint.clone();
        let record = self
            .records
            .get_or_compute(idempotency_key, move || async move {
                // The side effect that must happen once.
                let n = charges.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok::<_, std::io::Error>(Record {
                    fingerprint: fp,
                    status: 201,
                    body: format!(
                        "charge #{n}: {} cents from {}",
                        req.amount_cents, req.account
                    ),
                })
            })
            .await?;
        if record.value.fingerprint != fingerprint {
            return Ok(Reply::Conflict);
        }
        Ok(match record.source {
            Source::Computed => Reply::Charged(record.value.body.clone()),
            _ => Reply::Replayed(record.value.body.clone()),
        })
    }
}

#[tokio::main]
async fn main() -> layercake::Result<()> {
    // The file tier's directory: one of this run's own under the system's temporary directory.
    let dir = std::env::temp_dir().join(format!("layercake-idempotency-{}", std::process::id()));
    let records = Cache::builder("payments")
        .tier(MemoryBackend::with_max_bytes(8 << 20)?)
        .tier(FileBackend::open(FileConfig::new(&dir)).await?)
        .keys(HashedKeys::new(Namespace::new("idempotency", 1)?))
        .policy(NamespaceTable::ai_defaults()) // idempotency: 1 h, no jitter
        .build()?;
    let api = Arc::new(Payments {
        records,
        charges: Arc::new(AtomicU32::new(0)),
    });
    let req = PaymentRequest {
        account: "acct-42".into(),
        amount_cents: 1999,
    };

    // Reserve: three duplicates arrive together; one charges, two wait for it.
    let mut dups = Vec::new();
    for _ in 0..3 {
        let api = api.clone();
        let req = req.clone();
        dups.push(tokio::spawn(
            async move { api.handle("key-123", req).await },
        ));
    }
    for d in dups {
        let reply = d
            .await
            .map_err(|e| layercake::Error::loader("task").with_source(e))??;
        println!("concurrent duplicate -> {reply:?}");
    }
    // Replay: a retry later gets the stored response.
    println!(
        "later retry         -> {:?}",
        api.handle("key-123", req.clone()).await?
    );
    // Conflict: same key, different body.
    let other = PaymentRequest {
        account: "acct-42".into(),
        amount_cents: 5,
    };
    println!(
        "key reused          -> {:?}",
        api.handle("key-123", other).await?
    );
    println!("charges made: {}", api.charges.load(Ordering::SeqCst));
    assert_eq!(api.charges.load(Ordering::SeqCst), 1, "exactly one charge");
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
