//! Prefix invalidation as a `bytea` range: `key >= prefix AND key < successor(prefix)`.

/// The smallest byte string greater than every string starting with `prefix`, or `None` when
/// there is none (the prefix is empty or all `0xff` bytes): then the range has no upper bound.
///
/// Trailing `0xff` bytes are dropped and the last remaining byte is incremented, so
/// `b"ab"` → `b"ac"` and `b"a\xff"` → `b"b"`.
pub(crate) fn successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut s = prefix.to_vec();
    while let Some(&last) = s.last() {
        if last == 0xff {
            s.pop();
        } else {
            let n = s.len() - 1;
            s[n] = last + 1;
            return Some(s);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successors() {
        assert_eq!(successor(b"ab").as_deref(), Some(&b"ac"[..]));
        assert_eq!(successor(b"a\xff").as_deref(), Some(&b"b"[..]));
        assert_eq!(successor(b"a\xff\xff").as_deref(), Some(&b"b"[..]));
        assert_eq!(successor(b"a*").as_deref(), Some(&b"a+"[..]));
        assert_eq!(successor(b"\xff\xff"), None);
        assert_eq!(successor(b""), None);
        // Every key starting with the prefix sorts below the successor, byte-wise.
        let p = "ключ:".as_bytes();
        let s = successor(p).unwrap();
        for k in ["ключ:", "ключ:a", "ключ:\u{10ffff}"] {
            assert!(k.as_bytes() >= p && k.as_bytes() < &s[..], "{k}");
        }
        assert!("ключа".as_bytes() >= &s[..] || !"ключа".as_bytes().starts_with(p));
    }
}
