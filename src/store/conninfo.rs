//! A PostgreSQL connection string in either of libpq's forms, checked when the server starts,
//! shown without its password, and completed with the settings that bound every database call.
//!
//! libpq takes a URI (`postgres://u@h1:5432,h2:5432/db?target_session_attrs=read-write`) or
//! keyword/value pairs (`host=h1,h2 port=5432,5432 dbname=db target_session_attrs=read-write`);
//! both reach the pool and the change listener unchanged, so several hosts and
//! `target_session_attrs` work in either (libpq follows the writable host). The keyword form is
//! parsed here as libpq parses it (32.1.1.1 of the PostgreSQL manual: `keyword = value`, values
//! unquoted or in single quotes with `\'` and `\\`), so that a typo is refused at start, naming the
//! keyword, rather than taken for an SQLite file name.

use std::fmt::Write as _;
use std::time::Duration;

/// The keywords libpq 15 to 17 know (the manual's 34.1.2 "Parameter Key Words").
const KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "require_auth",
    "channel_binding",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "sslnegotiation",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslcertmode",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "gssdelegation",
    "service",
    "target_session_attrs",
    "load_balance_hosts",
];

/// A PostgreSQL connection string as the operator gave it.
#[derive(Clone, PartialEq, Eq)]
pub struct Conninfo {
    text: String,
    form: Form,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// `postgres://…` or `postgresql://…`.
    Uri,
    /// `keyword=value …`.
    Keywords,
}

impl Conninfo {
    /// A URI is taken as it is (libpq reports its mistakes when it connects, naming the host it
    /// could not reach); keyword/value text must parse, with known keywords only.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Self {
                text: text.to_string(),
                form: Form::Uri,
            });
        }
        let pairs = keyword_pairs(text)?;
        if !pairs
            .iter()
            .any(|(key, _)| matches!(*key, "host" | "hostaddr" | "dbname" | "service"))
        {
            return Err(
                "a libpq connection string needs host, hostaddr, dbname or service".to_string(),
            );
        }
        Ok(Self {
            text: text.to_string(),
            form: Form::Keywords,
        })
    }

    /// The connection string as given (it may hold a password: never log it).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `text` is meant as keyword/value pairs rather than a file path: it has `=`.
    pub fn looks_like_keywords(text: &str) -> bool {
        text.contains('=')
    }

    /// The connection string with `settings` added, each unless the operator set it already.
    pub fn with_settings(&self, settings: &[(&str, String)]) -> String {
        let mut text = self.text.clone();
        let given = self.keys();
        let missing = settings.iter().filter(|(key, _)| !given.contains(key));
        match self.form {
            Form::Uri => {
                let mut separator = if text.contains('?') { '&' } else { '?' };
                for (key, value) in missing {
                    let _ = write!(text, "{separator}{key}={value}");
                    separator = '&';
                }
            }
            Form::Keywords => {
                for (key, value) in missing {
                    let _ = write!(text, " {key}={value}");
                }
            }
        }
        text
    }

    /// The hosts named, with their ports (5432 unless given; one port for all or one per host),
    /// Unix-socket directories left out: what [`unresolvable_hosts`] checks.
    pub fn hosts(&self) -> Vec<(String, u16)> {
        let (hosts, ports): (Vec<String>, Vec<String>) = match self.form {
            Form::Uri => {
                let rest = self.text.split_once("://").map_or("", |(_, rest)| rest);
                let authority = &rest[..rest.find(['/', '?']).unwrap_or(rest.len())];
                let hosts = authority
                    .rsplit_once('@')
                    .map_or(authority, |(_, hosts)| hosts);
                hosts
                    .split(',')
                    .filter(|entry| !entry.is_empty())
                    .map(|entry| match entry.rsplit_once(':') {
                        Some((host, port)) if !port.contains(']') => {
                            (host.to_string(), port.to_string())
                        }
                        _ => (entry.to_string(), String::new()),
                    })
                    .unzip()
            }
            Form::Keywords => {
                let pairs = keyword_pairs(&self.text).unwrap_or_default();
                let value = |key: &str| {
                    pairs
                        .iter()
                        .find(|(name, _)| *name == key)
                        .map(|(_, value)| value.clone())
                        .unwrap_or_default()
                };
                let split =
                    |text: String| -> Vec<String> { text.split(',').map(str::to_string).collect() };
                (split(value("host")), split(value("port")))
            }
        };
        hosts
            .iter()
            .enumerate()
            .filter(|(_, host)| !host.is_empty() && !host.starts_with('/'))
            .map(|(at, host)| {
                let port = ports.get(at).or(ports.first()).map(String::as_str);
                let port = port.and_then(|port| port.parse().ok()).unwrap_or(5432);
                (host.trim_matches(['[', ']']).to_string(), port)
            })
            .collect()
    }

    /// The keywords the operator set (for a URI, its query parameters).
    fn keys(&self) -> Vec<&str> {
        match self.form {
            Form::Uri => self
                .text
                .split_once('?')
                .map(|(_, query)| {
                    query
                        .split('&')
                        .filter_map(|pair| pair.split('=').next())
                        .collect()
                })
                .unwrap_or_default(),
            Form::Keywords => keyword_pairs(&self.text)
                .map(|pairs| pairs.into_iter().map(|(key, _)| key).collect())
                .unwrap_or_default(),
        }
    }
}

/// The hosts of `conninfo` whose names do not resolve, with the reason: with several hosts libpq
/// silently skips such a one (a typo would only show at the failover that needs it), so the start
/// names each.
pub(super) fn unresolvable_hosts(conninfo: &Conninfo) -> Vec<(String, String)> {
    use std::net::ToSocketAddrs;
    conninfo
        .hosts()
        .into_iter()
        .filter_map(
            |(host, port)| match (host.as_str(), port).to_socket_addrs() {
                Ok(mut addresses) => addresses
                    .next()
                    .is_none()
                    .then(|| (host, "no address".to_string())),
                Err(error) => Some((host, error.to_string())),
            },
        )
        .collect()
}

/// The settings every pooled connection gets, from `--db-timeout-ms`: no TCP send may stay
/// unacknowledged longer than the timeout (`tcp_user_timeout`), an idle connection to a host that
/// vanished is found by keepalives within about the timeout, and connecting gives up after it
/// (libpq counts whole seconds, at least 2). The statement timeout is set per session
/// (`PgManager::connect`), because `options` may be the operator's.
pub(super) fn bounded_by(timeout: Duration) -> Vec<(&'static str, String)> {
    let millis = timeout.as_millis().max(1);
    let half_secs = (timeout.as_secs() / 2).max(1);
    vec![
        ("connect_timeout", timeout.as_secs().max(2).to_string()),
        ("keepalives", "1".to_string()),
        ("keepalives_idle", half_secs.to_string()),
        ("keepalives_interval", "1".to_string()),
        ("keepalives_count", half_secs.to_string()),
        ("tcp_user_timeout", millis.to_string()),
    ]
}

/// The keyword/value pairs of libpq's keyword form, or what is wrong with them (naming the
/// keyword, never a value: a value may be a password).
fn keyword_pairs(text: &str) -> Result<Vec<(&str, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let key = &rest[..end];
        if key.is_empty() {
            return Err("a libpq connection string has an empty keyword".to_string());
        }
        if !KEYWORDS.contains(&key) {
            return Err(
                if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    format!("unknown libpq connection keyword \"{key}\"")
                } else {
                    "expected postgres://…, a libpq connection string (host=… dbname=…), \
                 sqlite://PATH or a file path"
                        .to_string()
                },
            );
        }
        rest = rest[end..].trim_start();
        rest = rest
            .strip_prefix('=')
            .ok_or_else(|| format!("libpq connection keyword \"{key}\" has no \"=\""))?
            .trim_start();
        let (value, after) = keyword_value(rest)
            .ok_or_else(|| format!("the value of \"{key}\" has an unterminated quote"))?;
        pairs.push((key, value));
        rest = after.trim_start();
    }
    if pairs.is_empty() {
        return Err("an empty libpq connection string".to_string());
    }
    Ok(pairs)
}

/// One value and the text after it: unquoted up to whitespace, or single-quoted; `\` escapes the
/// next character in both. `None` for an unterminated quote.
fn keyword_value(text: &str) -> Option<(String, &str)> {
    let mut value = String::new();
    let quoted = text.starts_with('\'');
    let mut chars = text.char_indices().skip(usize::from(quoted));
    while let Some((at, c)) = chars.next() {
        match c {
            '\\' => value.push(chars.next()?.1),
            '\'' if quoted => return Some((value, &text[at + 1..])),
            c if !quoted && c.is_whitespace() => return Some((value, &text[at..])),
            c => value.push(c),
        }
    }
    (!quoted).then_some((value, ""))
}

/// Shows the connection string without its password, so it can be logged.
impl std::fmt::Debug for Conninfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.form {
            Form::Uri => f.write_str(&redact_uri_password(&self.text)),
            Form::Keywords => {
                let pairs = keyword_pairs(&self.text).unwrap_or_default();
                let shown: Vec<String> = pairs
                    .iter()
                    .map(|(key, value)| match *key {
                        "password" | "sslpassword" => format!("{key}=<redacted>"),
                        _ if value.is_empty() || value.contains([' ', '\'', '\\']) => {
                            format!(
                                "{key}='{}'",
                                value.replace('\\', "\\\\").replace('\'', "\\'")
                            )
                        }
                        _ => format!("{key}={value}"),
                    })
                    .collect();
                f.write_str(&shown.join(" "))
            }
        }
    }
}

fn redact_uri_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "postgres://<unparsable>".into();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let tail = tail.split('?').next().unwrap_or_default();
    // libpq ends the user part at the last `@` before the path, whatever precedes it (a `?` in a
    // password included), so that is where everything before the host is cut off.
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let plain = !user.is_empty()
                && user
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-%".contains(&b));
            let user = if plain { user } else { "<redacted>" };
            let host = host.split('?').next().unwrap_or_default();
            format!("{scheme}://{user}:<redacted>@{host}{tail}")
        }
        None => format!(
            "{scheme}://{}{tail}",
            authority.split('?').next().unwrap_or_default()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_strings_parse_as_libpq_does() {
        let pairs = keyword_pairs(
            "host=h1,h2 port = 5432,5432  dbname='my db' password='it\\'s' \
             target_session_attrs=read-write user=a\\ b",
        )
        .unwrap();
        assert_eq!(
            pairs,
            [
                ("host", "h1,h2".to_string()),
                ("port", "5432,5432".to_string()),
                ("dbname", "my db".to_string()),
                ("password", "it's".to_string()),
                ("target_session_attrs", "read-write".to_string()),
                ("user", "a b".to_string()),
            ]
        );
        assert_eq!(
            keyword_pairs("dbname=''").unwrap(),
            [("dbname", String::new())]
        );
    }

    #[test]
    fn bad_keyword_strings_are_refused_naming_the_keyword_never_a_value() {
        for (text, named) in [
            ("host=h dbnme=x", "\"dbnme\""),
            ("host=h dbname", "\"dbname\" has no"),
            (
                "host=h password='secret",
                "\"password\" has an unterminated quote",
            ),
            ("=h", "empty keyword"),
            ("   ", "empty"),
        ] {
            let error = keyword_pairs(text).unwrap_err();
            assert!(error.contains(named), "{text}: {error}");
            assert!(!error.contains("secret"), "{error}");
        }
        let error = Conninfo::parse("port=5432 user=u").unwrap_err();
        assert!(error.contains("needs host"), "{error}");
        let error = Conninfo::parse("data/tw=1.db").unwrap_err();
        assert!(error.contains("expected postgres://"), "{error}");
    }

    #[test]
    fn settings_are_added_unless_given() {
        let settings = [
            ("tcp_user_timeout", "5000".to_string()),
            ("keepalives", "1".to_string()),
        ];
        let uri = Conninfo::parse("postgres://u@h1,h2/db?tcp_user_timeout=900").unwrap();
        assert_eq!(
            uri.with_settings(&settings),
            "postgres://u@h1,h2/db?tcp_user_timeout=900&keepalives=1"
        );
        let bare = Conninfo::parse("postgres://u@h/db").unwrap();
        assert_eq!(
            bare.with_settings(&settings),
            "postgres://u@h/db?tcp_user_timeout=5000&keepalives=1"
        );
        let keywords = Conninfo::parse("host=h dbname=db keepalives=0").unwrap();
        assert_eq!(
            keywords.with_settings(&settings),
            "host=h dbname=db keepalives=0 tcp_user_timeout=5000"
        );
    }

    #[test]
    fn hosts_are_read_from_both_forms() {
        let hosts = |text: &str| Conninfo::parse(text).unwrap().hosts();
        assert_eq!(
            hosts("postgres://u:p@h1:5433,h2/db?target_session_attrs=read-write"),
            [("h1".to_string(), 5433), ("h2".to_string(), 5432)]
        );
        assert_eq!(
            hosts("postgresql://[::1]:5434,h2:5435/db"),
            [("::1".to_string(), 5434), ("h2".to_string(), 5435)]
        );
        assert_eq!(
            hosts("host=h1,h2 port=5433 dbname=db"),
            [("h1".to_string(), 5433), ("h2".to_string(), 5433)]
        );
        assert_eq!(
            hosts("host=/run/postgresql,h2 port=5432,5434 dbname=db"),
            [("h2".to_string(), 5434)]
        );
        assert_eq!(hosts("postgres:///db"), []);
        let unresolvable = unresolvable_hosts(
            &Conninfo::parse("host=127.0.0.1,nosuchhost.invalid dbname=db").unwrap(),
        );
        assert_eq!(unresolvable.len(), 1, "{unresolvable:?}");
        assert_eq!(unresolvable[0].0, "nosuchhost.invalid");
    }

    #[test]
    fn passwords_are_never_shown() {
        let keywords = Conninfo::parse("host=h dbname='a b' password='s3 cret' user=u").unwrap();
        assert_eq!(
            format!("{keywords:?}"),
            "host=h dbname='a b' password=<redacted> user=u"
        );
        let uri = Conninfo::parse("postgres://u:s3cret@h:5432/db?sslmode=require").unwrap();
        assert_eq!(format!("{uri:?}"), "postgres://u:<redacted>@h:5432/db");
    }

    #[test]
    fn the_bounds_follow_the_timeout() {
        let bounds = bounded_by(Duration::from_millis(5_000));
        let get = |key: &str| {
            bounds
                .iter()
                .find(|(name, _)| *name == key)
                .map(|(_, value)| value.clone())
                .unwrap()
        };
        assert_eq!(get("tcp_user_timeout"), "5000");
        assert_eq!(get("connect_timeout"), "5");
        assert_eq!(get("keepalives_idle"), "2");
        assert_eq!(get("keepalives_count"), "2");
        let short = bounded_by(Duration::from_millis(300));
        assert!(short.contains(&("connect_timeout", "2".to_string())));
        assert!(short.contains(&("keepalives_idle", "1".to_string())));
    }
}
