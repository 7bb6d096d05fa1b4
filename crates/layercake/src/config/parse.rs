//! Text forms of the configuration's values: durations (`250ms`, `30s`, `5m`, `2h`, `7d`),
//! byte sizes (`512KiB`, `64MiB`, `1GiB`, `10MB`) and namespace TTL lists
//! (`catalog=24h,search=1h`).

use std::time::Duration;

use layercake_core::{Error, Result};

/// Parse a duration: a whole number followed by `ms`, `s`, `m`, `h` or `d`; a bare number is
/// seconds.
pub(crate) fn duration(var: &str, text: &str) -> Result<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::config(format!(
            "{var}={text:?} is not a duration: write a whole number with ms, s, m, h or d \
             (e.g. 250ms, 30s, 5m, 24h, 7d)"
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1_000).ok_or_else(bad)?,
        "m" => n.checked_mul(60_000).ok_or_else(bad)?,
        "h" => n.checked_mul(3_600_000).ok_or_else(bad)?,
        "d" => n.checked_mul(86_400_000).ok_or_else(bad)?,
        _ => return Err(bad()),
    };
    Ok(Duration::from_millis(ms))
}

/// Parse a byte size: a whole number, optionally followed by `B`, `KiB`, `MiB`, `GiB`
/// (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000); case-insensitive.
pub(crate) fn bytes(var: &str, text: &str) -> Result<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || {
        Error::config(format!(
            "{var}={text:?} is not a size: write a whole number of bytes, optionally with \
             KiB, MiB, GiB, KB, MB or GB (e.g. 64MiB)"
        ))
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        _ => return Err(bad()),
    };
    n.checked_mul(mult).ok_or_else(bad)
}

/// Parse `namespace=duration` pairs separated by commas (spaces allowed).
pub(crate) fn namespace_ttls(var: &str, text: &str) -> Result<Vec<(String, Duration)>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (ns, ttl) = item.split_once('=').ok_or_else(|| {
            Error::config(format!(
                "{var}: {item:?} is not namespace=duration (e.g. catalog=24h,search=1h)"
            ))
        })?;
        out.push((ns.trim().to_owned(), duration(var, ttl)?));
    }
    Ok(out)
}

/// Write a duration the way [`duration`] reads it, in the largest unit that divides it.
pub(crate) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000u128),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms != 0 && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Write a byte count the way [`bytes`] reads it, in the largest binary unit that divides it.
pub(crate) fn format_bytes(n: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if n != 0 && n.is_multiple_of(size) {
            return format!("{}{unit}", n / size);
        }
    }
    format!("{n}B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("X", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("X", "30").unwrap(), Duration::from_secs(30));
        assert_eq!(duration("X", " 5m ").unwrap(), Duration::from_secs(300));
        assert_eq!(
            duration("X", "7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        let e = duration("LAYERCAKE_TTL", "5 minutes").unwrap_err();
        assert!(e.message().contains("LAYERCAKE_TTL=\"5 minutes\""), "{e}");
        assert!(duration("X", "-1s").is_err());
        assert!(duration("X", "99999999999999999999d").is_err());
        for d in ["250ms", "30s", "5m", "2h", "7d"] {
            assert_eq!(format_duration(duration("X", d).unwrap()), d);
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(bytes("X", "64MiB").unwrap(), 64 << 20);
        assert_eq!(bytes("X", "64mib").unwrap(), 64 << 20);
        assert_eq!(bytes("X", "10MB").unwrap(), 10_000_000);
        assert_eq!(bytes("X", "4096").unwrap(), 4096);
        assert!(bytes("X", "lots").is_err());
        assert!(bytes("X", "99999999999GiB").is_err());
        assert_eq!(format_bytes(1 << 30), "1GiB");
        assert_eq!(format_bytes(1000), "1000B");
    }

    #[test]
    fn ttl_lists() {
        let v = namespace_ttls("X", "catalog=24h, search = 1h,").unwrap();
        assert_eq!(
            v,
            vec![
                ("catalog".to_owned(), Duration::from_secs(86_400)),
                ("search".to_owned(), Duration::from_secs(3_600)),
            ]
        );
        assert!(namespace_ttls("X", "catalog").is_err());
    }
}
