//! SQL identifiers: the one place names are validated and quoted.

use layercake_core::{Error, Result};

/// PostgreSQL truncates identifiers longer than this many bytes (`NAMEDATALEN - 1`).
pub(crate) const MAX_IDENT_LEN: usize = 63;

/// Validate an identifier: 1..=`max` bytes, no control characters (NUL included).
///
/// Any other character is allowed: the name is always quoted with [`quote`].
pub(crate) fn validate(what: &str, name: &str, max: usize) -> Result<()> {
    if name.is_empty() {
        return Err(Error::config(format!("the {what} name is empty")).with_backend("postgres"));
    }
    if name.len() > max {
        return Err(Error::config(format!(
            "the {what} name is {} bytes, the limit is {max}",
            name.len()
        ))
        .with_backend("postgres"));
    }
    if name.chars().any(char::is_control) {
        return Err(
            Error::config(format!("the {what} name contains a control character"))
                .with_backend("postgres"),
        );
    }
    Ok(())
}

/// Quote an identifier for SQL text: wrapped in double quotes, inner quotes doubled.
///
/// Every schema, table, index and channel name reaches SQL through this function; values
/// never do (they are bound parameters).
pub(crate) fn quote(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_validates() {
        assert_eq!(quote("cache"), "\"cache\"");
        assert_eq!(
            quote("a\"; DROP TABLE x; --"),
            "\"a\"\"; DROP TABLE x; --\""
        );
        assert_eq!(quote("Ключ"), "\"Ключ\"");
        assert!(validate("table", "ok_name", 48).is_ok());
        assert!(validate("table", "", 48).is_err());
        assert!(validate("table", &"x".repeat(49), 48).is_err());
        assert!(validate("table", "a\0b", 48).is_err());
        assert!(validate("table", "new\nline", 48).is_err());
    }
}
