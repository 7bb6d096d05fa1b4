//! The SQL text of every statement, built once from the quoted table name.
//!
//! Only identifiers are spliced in (through [`ident::quote`](crate::ident::quote)); every
//! value is a bound parameter.

use crate::ident::quote;

/// Statements of one cache table.
#[derive(Debug)]
pub(crate) struct Sql {
    /// `"schema"."table"`.
    pub(crate) table: String,
    pub(crate) get: String,
    pub(crate) get_many: String,
    pub(crate) upsert: String,
    pub(crate) upsert_many: String,
    pub(crate) delete: String,
    pub(crate) delete_if_value: String,
    pub(crate) delete_many: String,
    pub(crate) delete_range: String,
    pub(crate) delete_from: String,
    pub(crate) delete_tag: String,
    pub(crate) keys_range: String,
    pub(crate) keys_from: String,
    pub(crate) clear: String,
    pub(crate) reap: String,
    /// Conditional fill: `$1` key, `$2` envelope, `$3` expiry, `$4` tags, `$5` now, `$6`
    /// version (8 bytes big-endian), `$7` tags as bytes. Returns `(tombstoned, stored)`.
    pub(crate) fill: String,
    /// Undo of a fill a tombstone committed meanwhile refuses: `$1` key, `$2` the envelope
    /// written, `$3` now, `$4` version, `$5` tags as bytes.
    pub(crate) fill_recheck: String,
    /// Record a tombstone: `$1` kind, `$2` selector bytes, `$3` version, `$4` expiry, `$5` now.
    pub(crate) tomb_upsert: String,
    pub(crate) tomb_clear: String,
    pub(crate) tomb_reap: String,
}

/// The per-key version of the envelope in column `col`, as 8 big-endian bytes (the envelope
/// stores it little-endian at offset 32): a `bytea` that compares like the unsigned number.
fn version_be(col: &str) -> String {
    (33..=40)
        .rev()
        .map(|i| format!("substring({col} from {i} for 1)"))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// A live tombstone (alias `m`) at or above version `ver` of the key `key` or of a prefix of
/// it, or of one of the tags `tags` (bytes).
fn refusing(tomb: &str, key: &str, now: &str, ver: &str, tags: &str) -> String {
    format!(
        "SELECT 1 FROM {tomb} m WHERE m.expires_at > {now} AND m.version >= {ver} AND (\
         (m.kind = 0 AND m.sel = {key}) \
         OR (m.kind = 1 AND substring({key} from 1 for length(m.sel)) = m.sel) \
         OR (m.kind = 2 AND m.sel = ANY({tags})))"
    )
}

impl Sql {
    pub(crate) fn new(schema: &str, table: &str) -> Sql {
        let t = format!("{}.{}", quote(schema), quote(table));
        let tomb = format!(
            "{}.{}",
            quote(schema),
            quote(&crate::schema::tomb_table(table))
        );
        let refused_fill = refusing(&tomb, "$1::bytea", "$5::int8", "$6::bytea", "$7::bytea[]");
        let refused_recheck = refusing(&tomb, "$1::bytea", "$3::int8", "$4::bytea", "$5::bytea[]");
        let set = "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                   expires_at = EXCLUDED.expires_at, tags = EXCLUDED.tags";
        Sql {
            get: format!("SELECT value FROM {t} WHERE key = $1 AND expires_at > $2"),
            get_many: format!(
                "SELECT key, value FROM {t} WHERE key = ANY($1::bytea[]) AND expires_at > $2"
            ),
            upsert: format!(
                "INSERT INTO {t} (key, value, expires_at, tags) VALUES ($1, $2, $3, $4) {set}"
            ),
            // Tags are jagged, so they travel flattened in $4 with a start index ($5) and a
            // count ($6) per row; a slice with lower > upper bound is the empty array.
            upsert_many: format!(
                "INSERT INTO {t} (key, value, expires_at, tags) \
                 SELECT u.k, u.v, u.e, COALESCE(($4::text[])[u.s : u.s + u.n - 1], '{{}}'::text[]) \
                 FROM UNNEST($1::bytea[], $2::bytea[], $3::int8[], $5::int4[], $6::int4[]) \
                 AS u(k, v, e, s, n) {set}"
            ),
            delete: format!("DELETE FROM {t} WHERE key = $1"),
            delete_if_value: format!("DELETE FROM {t} WHERE key = $1 AND value = $2"),
            delete_many: format!("DELETE FROM {t} WHERE key = ANY($1::bytea[])"),
            delete_range: format!("DELETE FROM {t} WHERE key >= $1 AND key < $2"),
            delete_from: format!("DELETE FROM {t} WHERE key >= $1"),
            delete_tag: format!("DELETE FROM {t} WHERE tags @> ARRAY[$1::text]"),
            keys_range: format!(
                "SELECT key FROM {t} WHERE key >= $1 AND key < $2 AND expires_at > $3 LIMIT $4"
            ),
            keys_from: format!("SELECT key FROM {t} WHERE key >= $1 AND expires_at > $2 LIMIT $3"),
            clear: format!("DELETE FROM {t}"),
            // ctid = ANY(ARRAY(…)) plans as a TID scan; SKIP LOCKED lets the reapers of
            // several instances share the work instead of queueing on the same rows.
            reap: format!(
                "DELETE FROM {t} WHERE ctid = ANY(ARRAY(SELECT ctid FROM {t} \
                 WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)) AND expires_at <= $1"
            ),
            fill: format!(
                "WITH refused AS ({refused_fill} LIMIT 1), \
                 ins AS (INSERT INTO {t} AS t (key, value, expires_at, tags) \
                 SELECT $1::bytea, $2::bytea, $3::int8, $4::text[] \
                 WHERE NOT EXISTS (SELECT 1 FROM refused) \
                 ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value, \
                 expires_at = EXCLUDED.expires_at, tags = EXCLUDED.tags \
                 WHERE t.expires_at <= $5 OR ({v}) < $6 RETURNING 1) \
                 SELECT EXISTS (SELECT 1 FROM refused), EXISTS (SELECT 1 FROM ins)",
                v = version_be("t.value")
            ),
            fill_recheck: format!(
                "DELETE FROM {t} WHERE key = $1 AND value = $2 AND EXISTS ({refused_recheck})"
            ),
            tomb_upsert: format!(
                "INSERT INTO {tomb} AS m (kind, sel, version, expires_at) \
                 VALUES ($1::int2, $2::bytea, $3::bytea, $4::int8) \
                 ON CONFLICT (kind, sel) DO UPDATE SET \
                 version = CASE WHEN m.expires_at > $5 \
                 THEN GREATEST(m.version, EXCLUDED.version) ELSE EXCLUDED.version END, \
                 expires_at = CASE WHEN m.expires_at > $5 \
                 THEN GREATEST(m.expires_at, EXCLUDED.expires_at) ELSE EXCLUDED.expires_at END"
            ),
            tomb_clear: format!("DELETE FROM {tomb}"),
            tomb_reap: format!("DELETE FROM {tomb} WHERE expires_at <= $1"),
            table: t,
        }
    }
}
