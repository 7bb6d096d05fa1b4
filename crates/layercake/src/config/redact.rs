//! Redaction of connection strings for display: a password never reaches a log or a terminal.

/// The connection string with every password replaced by `***`.
///
/// Handles URLs (`scheme://user:password@host/…`, and `password=` / `pass=` query
/// parameters) and PostgreSQL key/value strings (`host=… password=…`).
///
/// ```
/// use layercake::config::redact;
/// assert_eq!(redact("redis://app:s3cret@cache:6379/0"), "redis://app:***@cache:6379/0");
/// assert_eq!(redact("postgres://u:p@db/app?sslmode=require"), "postgres://u:***@db/app?sslmode=require");
/// assert_eq!(redact("host=db user=app password=s3cret"), "host=db user=app password=***");
/// assert_eq!(redact("redis://cache:6379"), "redis://cache:6379");
/// ```
pub fn redact(conn: &str) -> String {
    match conn.split_once("://") {
        Some((scheme, rest)) => redact_url(scheme, rest),
        None => redact_key_values(conn),
    }
}

fn redact_url(scheme: &str, rest: &str) -> String {
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(auth_end);
    let authority = match authority.rsplit_once('@') {
        // Some Redis clients read a lone `user@` as a password: mask it there too.
        Some((userinfo, host)) if userinfo.contains(':') || scheme.starts_with("redis") => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{user}:***@{host}")
        }
        Some(_) => authority.to_owned(),
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|kv| match kv.split_once('=') {
                    Some((k, _)) if is_secret_name(k) => format!("{k}=***"),
                    _ => kv.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

fn is_secret_name(k: &str) -> bool {
    let k = k.trim().to_ascii_lowercase();
    k == "password" || k == "pass" || k == "passwd" || k.ends_with("password")
}

/// `key=value` pairs separated by spaces; a value may be single-quoted (with `\'` escapes).
fn redact_key_values(conn: &str) -> String {
    let mut out = String::with_capacity(conn.len());
    let mut rest = conn;
    while let Some(eq) = rest.find('=') {
        let (key_part, after) = rest.split_at(eq);
        out.push_str(key_part);
        out.push('=');
        let after = &after[1..];
        let key = key_part.rsplit(char::is_whitespace).next().unwrap_or("");
        // Find the end of the value.
        let end = if let Some(quoted) = after.strip_prefix('\'') {
            let mut i = 0;
            let b = quoted.as_bytes();
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            (i + 2).min(after.len())
        } else {
            after.find(char::is_whitespace).unwrap_or(after.len())
        };
        if is_secret_name(key) {
            out.push_str("***");
        } else {
            out.push_str(&after[..end]);
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn no_password_form_survives() {
        for (conn, shown) in [
            ("redis://:pw@h:1", "redis://:***@h:1"),
            ("rediss://u:a:b@h/2", "rediss://u:***@h/2"),
            ("redis://tokenonly@h", "redis://tokenonly:***@h"),
            (
                "postgres://u@h/db?password=pw&sslmode=disable",
                "postgres://u@h/db?password=***&sslmode=disable",
            ),
            (
                "host=h password='p w\\'x' user=u",
                "host=h password=*** user=u",
            ),
            ("host=h dbname=x", "host=h dbname=x"),
        ] {
            let r = redact(conn);
            assert_eq!(r, shown, "{conn}");
            assert!(!r.contains("pw") && !r.contains("p w"), "{r}");
        }
    }
}
