//! Secrets are not echoed: what the daemon shows of a command line, a URL
//! or a check's reason (`/status`, `status`, the page, `stigmer local
//! config`, `daemon.log`, spans) keeps its shape but not the values that
//! look like credentials:
//!
//! - a flag whose name has a word like `password`, `token`, `secret`,
//!   `key`, `auth` or `credential` in it keeps its name, not its value
//!   (`--db-password=***`, `--api-key ***`), and so does `NAME=value`;
//! - a URL keeps its scheme, host, path and user, not the password of its
//!   user info (`postgres://app:***@db/orders`), nor the values of query
//!   parameters with such names (`?token=***`).
//!
//! The values are replaced by [`MASK`]. It errs on the side of hiding:
//! `--ssl-key-file` is masked too.

/// What a hidden value is shown as.
pub const MASK: &str = "***";

/// Words that make a name a credential's (compared with each part of the
/// name split at `-`, `_`, `.`, and with the whole name).
const WORDS: &[&str] = &[
    "password",
    "passwd",
    "pass",
    "pwd",
    "secret",
    "token",
    "key",
    "apikey",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "cookie",
    "private",
    "signature",
];

/// Does `name` (a flag without its dashes, a variable, a query parameter)
/// look like it holds a credential?
pub fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    WORDS.contains(&lower.as_str())
        || lower.split(['-', '_', '.']).any(|part| {
            WORDS.contains(&part) || part.ends_with("password") || part.ends_with("token")
        })
}

/// A command line as it may be shown.
pub fn argv(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut hide_next = false;
    for a in args {
        if hide_next {
            hide_next = false;
            // `--token --other`: the next flag is not a value.
            if !a.starts_with('-') {
                out.push(MASK.to_string());
                continue;
            }
        }
        out.push(arg(a, &mut hide_next));
    }
    out
}

/// One argument as it may be shown; `hide_next` is set when it is a
/// credential flag whose value is the next argument.
fn arg(a: &str, hide_next: &mut bool) -> String {
    if let Some(flag) = a.strip_prefix("--").or_else(|| a.strip_prefix('-')) {
        match flag.split_once('=') {
            Some((name, _)) if secret_name(name) => {
                return format!("{}={MASK}", &a[..a.len() - flag.len() + name.len()]);
            }
            Some(_) => {}
            None if secret_name(flag) => {
                *hide_next = true;
                return a.to_string();
            }
            None => return a.to_string(),
        }
    } else if let Some((name, _)) = a.split_once('=')
        && !name.contains('/')
        && !name.contains(':')
        && secret_name(name)
    {
        return format!("{name}={MASK}");
    }
    text(a)
}

/// `value` of the variable (or key) `name` as it may be shown.
pub fn value(name: &str, value: &str) -> String {
    if secret_name(name) {
        MASK.to_string()
    } else {
        text(value)
    }
}

/// `s` with every URL in it masked (user info password, credential query
/// values).
pub fn text(s: &str) -> String {
    if !s.contains("://") {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find("://") {
        // The scheme is the run of URL scheme characters before "://".
        let scheme_start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |i| i + 1);
        let mut end = rest[at + 3..]
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | ')' | ','))
            .map_or(rest.len(), |i| at + 3 + i);
        // Punctuation that ends a sentence is not part of the URL
        // ("GET http://h/x: refused").
        while end > at + 3 && rest[..end].ends_with([':', '.', ';']) {
            end -= 1;
        }
        out.push_str(&rest[..scheme_start]);
        out.push_str(&url(&rest[scheme_start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// One URL (`scheme://[user[:password]@]host[/path][?query][#fragment]`)
/// as it may be shown.
pub fn url(u: &str) -> String {
    let Some((scheme, after)) = u.split_once("://") else {
        return u.to_string();
    };
    let authority_end = after.find(['/', '?', '#']).unwrap_or(after.len());
    let (authority, tail) = after.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{MASK}@{host}"),
            // A bare user info may itself be a token (`https://TOKEN@host`).
            None if userinfo.len() >= 20 => format!("{MASK}@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let (path, query) = match tail.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (tail, None),
    };
    let mut out = format!("{scheme}://{authority}{path}");
    if let Some(q) = query {
        let (q, fragment) = match q.split_once('#') {
            Some((q, f)) => (q, Some(f)),
            None => (q, None),
        };
        out.push('?');
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if secret_name(k) => format!("{k}={MASK}"),
                _ => pair.to_string(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
        if let Some(f) = fragment {
            out.push('#');
            out.push_str(f);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(args: &[&str]) -> Vec<String> {
        argv(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn credential_flags_keep_their_names_not_their_values() {
        assert_eq!(
            v(&[
                "api",
                "--db-password=hunter2",
                "--port",
                "80",
                "--api-key",
                "k1",
                "--token",
                "--verbose"
            ]),
            [
                "api",
                "--db-password=***",
                "--port",
                "80",
                "--api-key",
                "***",
                "--token",
                "--verbose"
            ]
        );
        assert_eq!(
            v(&["-secret=x", "SECRET_KEY=abc", "PATH=/bin"]),
            ["-secret=***", "SECRET_KEY=***", "PATH=/bin"]
        );
        assert_eq!(
            v(&["--monkey=1", "--keyspace", "k"]),
            ["--monkey=1", "--keyspace", "k"]
        );
    }

    #[test]
    fn urls_keep_their_shape_without_credentials() {
        assert_eq!(
            url("postgres://app:s3cret@db:5432/orders?sslmode=require&password=x#f"),
            "postgres://app:***@db:5432/orders?sslmode=require&password=***#f"
        );
        assert_eq!(
            url("http://127.0.0.1:8000/healthz?token=abc&x=1"),
            "http://127.0.0.1:8000/healthz?token=***&x=1"
        );
        assert_eq!(
            url("https://ghp_abcdefghijklmnopqrstuvwxyz@github.com/x"),
            "https://***@github.com/x"
        );
        assert_eq!(url("http://user@host/"), "http://user@host/");
        assert_eq!(
            text("GET http://h/x?access_token=t1: connection refused (see https://a:b@c)"),
            "GET http://h/x?access_token=***: connection refused (see https://a:***@c)"
        );
        assert_eq!(
            v(&["--db", "mysql://root:pw@localhost/db"]),
            ["--db", "mysql://root:***@localhost/db"]
        );
        assert_eq!(
            value("DATABASE_URL", "postgres://u:p@h/d"),
            "postgres://u:***@h/d"
        );
        assert_eq!(value("STRIPE_SECRET_KEY", "sk_live"), "***");
    }
}
