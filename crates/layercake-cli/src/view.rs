//! One tier's copy of a key, as a table row or JSON.

use layercake::{Codec, Entry, Format, Timestamp};
use serde_json::{Value, json};

use crate::output;

/// What one tier answered for a key.
pub(crate) enum Copy {
    /// The tier holds a copy (fresh or stale).
    Present(Entry),
    /// The tier holds none.
    Absent,
    /// The tier could not be read.
    Failed(String),
}

impl Copy {
    pub(crate) fn from_result(r: layercake::Result<Option<Entry>>) -> Copy {
        match r {
            Ok(Some(e)) => Copy::Present(e),
            Ok(None) => Copy::Absent,
            Err(e) => Copy::Failed(e.to_string()),
        }
    }

    pub(crate) fn entry(&self) -> Option<&Entry> {
        match self {
            Copy::Present(e) => Some(e),
            _ => None,
        }
    }
}

/// The remaining life until `t`, as signed milliseconds (negative when past).
fn ms_until(t: Timestamp, now: Timestamp) -> i64 {
    if t >= now {
        i64::try_from(t.0 - now.0).unwrap_or(i64::MAX)
    } else {
        -i64::try_from(now.0 - t.0).unwrap_or(i64::MAX)
    }
}

/// JSON of an entry's metadata at `now`.
pub(crate) fn entry_json(e: &Entry, now: Timestamp) -> Value {
    json!({
        "created": output::time(e.created_at),
        "created_ms": e.created_at.0,
        "expires": output::time(e.expires_at),
        "expires_ms": e.expires_at.0,
        "fresh": e.is_fresh(now),
        "remaining_ms": ms_until(e.expires_at, now),
        "stale_until": e.stale_until.map(output::time),
        "stale_until_ms": e.stale_until.map(|t| t.0),
        "retained_ms": ms_until(e.retain_until(), now),
        "size": e.value.len(),
        "codec": e.format.as_str(),
        "compression": e.compression.as_str(),
        "version": e.version,
        "tags": e.tags.iter().collect::<Vec<_>>(),
        "negative": e.is_negative(),
    })
}

/// JSON of a tier's answer.
pub(crate) fn copy_json(tier: &str, c: &Copy, now: Timestamp) -> Value {
    match c {
        Copy::Present(e) => {
            let mut v = entry_json(e, now);
            v["tier"] = json!(tier);
            v["present"] = json!(true);
            v
        }
        Copy::Absent => json!({"tier": tier, "present": false}),
        Copy::Failed(msg) => json!({"tier": tier, "present": null, "error": msg}),
    }
}

/// `42.0s`, or `stale 3.1s` past expiry within the stale window.
pub(crate) fn life(e: &Entry, now: Timestamp) -> String {
    if e.is_fresh(now) {
        output::duration(e.fresh_remaining(now))
    } else {
        format!("stale, gone in {}", output::duration(e.remaining(now)))
    }
}

/// Table columns of a tier's answer: PRESENT, CREATED, EXPIRES IN, STALE UNTIL, SIZE,
/// CODEC, VERSION, TAGS.
pub(crate) fn copy_row(tier: &str, c: &Copy, now: Timestamp) -> Vec<String> {
    match c {
        Copy::Present(e) => vec![
            tier.to_owned(),
            if e.is_negative() {
                "yes (not-found marker)"
            } else {
                "yes"
            }
            .to_owned(),
            output::time(e.created_at),
            life(e, now),
            e.stale_until.map_or_else(|| "-".to_owned(), output::time),
            output::bytes(e.value.len() as u64),
            codec_text(e),
            e.version.to_string(),
            if e.tags.is_empty() {
                "-".to_owned()
            } else {
                e.tags.join(",")
            },
        ],
        Copy::Absent => vec![tier.to_owned(), "no".to_owned()],
        Copy::Failed(m) => vec![tier.to_owned(), format!("error: {m}")],
    }
}

/// `json`, `msgpack+zstd`, …
pub(crate) fn codec_text(e: &Entry) -> String {
    match e.compression {
        layercake::Compression::None => e.format.as_str().to_owned(),
        c => format!("{}+{}", e.format.as_str(), c.as_str()),
    }
}

/// The payload as JSON where the format allows: JSON and MessagePack decode to their value,
/// raw bytes show as text when they are UTF-8; postcard is not self-describing.
pub(crate) fn decode(e: &Entry) -> Result<Value, String> {
    if e.is_negative() {
        return Ok(Value::Null);
    }
    let codec = Codec::json();
    match e.format {
        Format::Json | Format::MessagePack => codec
            .decode::<Value>(&e.value, e.format, e.compression)
            .map_err(|err| err.to_string()),
        Format::Raw => {
            let bytes = codec
                .decompress(&e.value, e.compression)
                .map_err(|err| err.to_string())?;
            match std::str::from_utf8(&bytes) {
                Ok(s) => Ok(Value::String(s.to_owned())),
                Err(_) => Err(format!("{} raw bytes, not UTF-8 text", bytes.len())),
            }
        }
        other => Err(format!(
            "a {} payload is not self-describing: it cannot be shown without its Rust type",
            other.as_str()
        )),
    }
}
