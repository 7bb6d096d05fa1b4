//! Conditional fills and tombstones on PostgreSQL.
//!
//! - Tombstones are rows of `<table>_tomb`: kind (0 key, 1 prefix, 2 tag), selector bytes,
//!   version (8 bytes big-endian, so `bytea` order is the numbers' order) and expiry (ms, by
//!   the configured clock, like entries).
//! - A fill is one statement: `INSERT … SELECT … WHERE NOT EXISTS (live tombstone at or above
//!   the version) ON CONFLICT (key) DO UPDATE … WHERE the stored row has expired OR its
//!   envelope's version is lower`. The row lock of `ON CONFLICT` orders it against writes of
//!   the same key.
//! - A tombstone committed while the fill's statement ran is not in its snapshot. So the fill
//!   sends a second statement in the same pipeline (one round trip), run after the first
//!   commits: it deletes the row just written if a live tombstone now refuses it. A removal
//!   records its tombstone (committed) before it deletes: if the fill's second statement ran
//!   before that commit, the fill's row was committed before the removal's `DELETE` started,
//!   which then deletes it; otherwise the second statement sees the tombstone. Either way no
//!   refused row survives; it may be visible for the time between the two statements.

use std::sync::atomic::Ordering;

use layercake_core::{Entry, Error, FillOutcome, Key, Result, Selector, Timestamp, Tombstone};

use tokio_postgres::types::ToSql;

use crate::shared::{Shared, run};

/// Statement parameters.
type Params<'a> = [&'a (dyn ToSql + Sync)];
use crate::error::{self, BACKEND};

/// Milliseconds as PostgreSQL `bigint`, saturating.
fn ms(t: Timestamp) -> i64 {
    i64::try_from(t.0).unwrap_or(i64::MAX)
}

impl Shared {
    /// Write `bytes` (the envelope of `entry`, already judged retained and within limits)
    /// unless a newer entry or a live tombstone refuses it.
    pub(crate) async fn fill(
        &self,
        key: &Key,
        entry: &Entry,
        bytes: Vec<u8>,
    ) -> Result<FillOutcome> {
        let now = ms(self.clock.now());
        let k = key.as_bytes();
        let exp = ms(entry.retain_until());
        let tags: Vec<&str> = entry.tags.iter().map(String::as_str).collect();
        let tag_bytes: Vec<&[u8]> = entry.tags.iter().map(|t| t.as_bytes()).collect();
        let version = entry.version.to_be_bytes();
        let ver = &version[..];
        let (fill, recheck) = (&self.sql.fill, &self.sql.fill_recheck);
        let fill_params: &Params = &[&k, &bytes, &exp, &tags, &now, &ver, &tag_bytes];
        let recheck_params: &Params = &[&k, &bytes, &now, &ver, &tag_bytes];
        let (tombstoned, stored, undone) = run!(self, "fill", |c| async {
            let st = c.prepare_cached(fill).await?;
            let re = c.prepare_cached(recheck).await?;
            // Polled in this order, so sent in this order on the connection.
            let (row, undone) = futures::try_join!(
                c.query_one(&st, fill_params),
                c.execute(&re, recheck_params),
            )?;
            Ok::<_, tokio_postgres::Error>((
                row.try_get::<_, bool>(0)?,
                row.try_get::<_, bool>(1)?,
                undone,
            ))
        })?;
        Ok(if tombstoned || undone > 0 {
            FillOutcome::Tombstoned
        } else if stored {
            FillOutcome::Stored
        } else {
            FillOutcome::KeptNewer
        })
    }

    /// Record a key tombstone, then delete the key's row (one round trip, two statements).
    pub(crate) async fn delete_with(&self, key: &Key, t: Tombstone) -> Result<()> {
        let now_ts = self.clock.now();
        let (now, exp) = (ms(now_ts), ms(now_ts.plus(t.ttl)));
        let k = key.as_bytes();
        let version = t.version.to_be_bytes();
        let ver = &version[..];
        let kind: i16 = 0;
        let (upsert, delete) = (&self.sql.tomb_upsert, &self.sql.delete);
        let record = !t.ttl.is_zero();
        let up_params: &Params = &[&kind, &k, &ver, &exp, &now];
        let del_params: &Params = &[&k];
        run!(self, "delete_with", |c| async {
            let del = c.prepare_cached(delete).await?;
            if !record {
                return c.execute(&del, del_params).await.map(|_| ());
            }
            let up = c.prepare_cached(upsert).await?;
            futures::try_join!(c.execute(&up, up_params), c.execute(&del, del_params)).map(|_| ())
        })
    }

    /// Record a selector tombstone (the removal follows, as `invalidate`).
    pub(crate) async fn record_selector(&self, selector: &Selector, t: Tombstone) -> Result<()> {
        let (kind, sel): (i16, &[u8]) = match selector {
            Selector::Prefix(p) => (1, p.as_bytes()),
            Selector::Tag(tag) => (2, tag.as_bytes()),
            _ => return Ok(()),
        };
        if t.ttl.is_zero() {
            return Ok(());
        }
        let now_ts = self.clock.now();
        let (now, exp) = (ms(now_ts), ms(now_ts.plus(t.ttl)));
        let version = t.version.to_be_bytes();
        let ver = &version[..];
        let upsert = &self.sql.tomb_upsert;
        let params: &Params = &[&kind, &sel, &ver, &exp, &now];
        run!(self, "invalidate_with", |c| async {
            let up = c.prepare_cached(upsert).await?;
            c.execute(&up, params).await
        })?;
        Ok(())
    }

    /// Delete every tombstone (part of `clear`).
    pub(crate) async fn clear_tombstones(&self) -> Result<()> {
        let sql = &self.sql.tomb_clear;
        run!(self, "clear", |c| async {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[]).await
        })?;
        Ok(())
    }

    /// Delete expired tombstones (a reaper pass); returns how many.
    pub(crate) async fn reap_tombstones(&self) -> Result<u64> {
        let now = ms(self.clock.now());
        let sql = &self.sql.tomb_reap;
        run!(self, "reap", |c| async {
            let st = c.prepare_cached(sql).await?;
            c.execute(&st, &[&now]).await
        })
    }
}
