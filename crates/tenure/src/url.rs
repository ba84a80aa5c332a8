//! Backend URLs: `mem://`, `etcd://`/`etcds://`, `zk://`, `redis://`/`rediss://`,
//! `redlock://` and `postgres://`/`postgresql://` (see [`VALID_FORMS`]), parsed without
//! touching the network.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
//! // A malformed URL fails at once, before any connection is tried.
//! let err = tenure::Tenure::connect("etcd://").await.unwrap_err();
//! assert!(matches!(err, tenure::Error::InvalidUrl { .. }), "{err}");
//! # Ok(()) }
//! ```

use crate::{Error, Result};

/// The URL forms [`crate::Tenure::connect`] understands, quoted in every URL error.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> tenure::Result<()> {
/// let err = tenure::Tenure::connect("http://127.0.0.1:2379").await.unwrap_err();
/// assert!(err.to_string().contains(tenure::url::VALID_FORMS));
/// # Ok(()) }
/// ```
pub const VALID_FORMS: &str = "mem://[NAME] (embedded, in-process), \
etcd://HOST:PORT[,HOST:PORT...] (etcd v3), etcds://HOST:PORT[,...] (etcd over TLS), \
zk://HOST:PORT[,...][/CHROOT] (ZooKeeper), redis://[USER:PASSWORD@]HOST:PORT[/DB], \
redlock://HOST:PORT,HOST:PORT,... (Redis, Redlock), \
postgres://USER@HOST:PORT/DB[?sslmode=disable|require|verify-ca|verify-full] (Postgres, also postgresql://)";

/// A parsed backend location.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// In-process store; the same name in one process means the same store.
    Mem { name: String },
    /// etcd v3 cluster endpoints as `host:port`.
    Etcd { endpoints: Vec<String>, tls: bool },
    /// ZooKeeper ensemble as `host:port`, with an optional chroot path (`/app`).
    Zk {
        hosts: Vec<String>,
        chroot: Option<String>,
    },
    /// One Redis instance.
    Redis(RedisNode),
    /// Independent Redis masters for Redlock.
    Redlock { nodes: Vec<RedisNode> },
    /// One PostgreSQL server.
    Postgres(PgTarget),
}

/// How `sslmode` asks for TLS on `postgres://` (libpq's names; `prefer` and `allow` are
/// refused: a lock service must know whether it is encrypted).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plaintext.
    Disable,
    /// TLS, the server's certificate verified against the CA, its name not checked
    /// (`require` and `verify-ca`, as libpq's `require` does when it has a root certificate).
    Require,
    /// TLS, certificate verified and naming the host (or `tls_server_name`).
    VerifyFull,
}

/// One PostgreSQL server: `host:port`, role, database, `sslmode` if given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PgTarget {
    pub host: String,
    pub port: u16,
    pub user: Option<String>,
    pub db: Option<String>,
    pub sslmode: Option<SslMode>,
}

/// One Redis server: `host:port`, database, optional ACL credentials, TLS.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisNode {
    pub addr: String,
    pub db: u32,
    pub user: Option<String>,
    pub password: Option<String>,
    pub tls: bool,
}

impl std::fmt::Debug for RedisNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let auth = match (&self.user, &self.password) {
            (_, Some(_)) => format!("{}:***@", self.user.as_deref().unwrap_or_default()),
            (Some(u), None) => format!("{u}@"),
            (None, None) => String::new(),
        };
        write!(f, "{scheme}://{auth}{}/{}", self.addr, self.db)
    }
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Mem { name } => write!(f, "mem://{name}"),
            Target::Etcd { endpoints, tls } => {
                let scheme = if *tls { "etcds" } else { "etcd" };
                write!(f, "{scheme}://{}", endpoints.join(","))
            }
            Target::Zk { hosts, chroot } => {
                write!(
                    f,
                    "zk://{}{}",
                    hosts.join(","),
                    chroot.as_deref().unwrap_or("")
                )
            }
            Target::Redis(node) => write!(f, "{node:?}"),
            Target::Postgres(t) => write!(
                f,
                "postgres://{}{}:{}/{}",
                t.user
                    .as_deref()
                    .map(|u| format!("{u}@"))
                    .unwrap_or_default(),
                t.host,
                t.port,
                t.db.as_deref().unwrap_or_default()
            ),
            Target::Redlock { nodes } => {
                let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
                write!(f, "redlock://{}", addrs.join(","))
            }
        }
    }
}

/// Replaces a password in `user:password@host` with `***`, so URLs can be logged.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    match rest.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{hosts}")
        }
        None => url.to_string(),
    }
}

/// Quotes `part` of `url` for an error message, unless it comes from the credentials that
/// [`redact`] hides: a password may contain the `,` or `/` that host lists are split at, and
/// no piece of it may surface as, say, a "bad port".
fn quote(url: &str, part: &str) -> String {
    let shown = url.rsplit_once('@').map_or(url, |(_, after)| after);
    if shown.contains(part) {
        format!("{part:?}")
    } else {
        "(part of the credentials, not shown)".to_string()
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> Error {
    Error::InvalidUrl {
        url: redact(url),
        reason: reason.into(),
    }
}

/// Parses a backend URL into a [`Target`].
pub(crate) fn parse(url: &str) -> Result<Target> {
    let trimmed = url.trim();
    let (scheme, rest) = trimmed
        .split_once("://")
        .ok_or_else(|| invalid(url, "missing scheme (expected SCHEME://...)"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "mem" => parse_mem(url, rest),
        "etcd" => parse_etcd(url, rest, false),
        "etcds" => parse_etcd(url, rest, true),
        "zk" => parse_zk(url, rest),
        "redis" => parse_redis(url, rest, false).map(Target::Redis),
        "rediss" => parse_redis(url, rest, true).map(Target::Redis),
        "redlock" => parse_redlock(url, rest),
        "postgres" | "postgresql" => parse_postgres(url, rest).map(Target::Postgres),
        "" => Err(invalid(url, "empty scheme")),
        other => Err(invalid(url, format!("unknown scheme {other:?}"))),
    }
}

fn parse_mem(url: &str, rest: &str) -> Result<Target> {
    let name = rest.trim_end_matches('/');
    if name.contains(['/', '?', '#', '@']) || name.chars().any(char::is_control) {
        return Err(invalid(url, "a mem:// store name is one plain word"));
    }
    Ok(Target::Mem {
        name: name.to_string(),
    })
}

fn parse_etcd(url: &str, rest: &str, tls: bool) -> Result<Target> {
    let hosts = rest.trim_end_matches('/');
    if hosts.contains(['/', '?', '#']) {
        return Err(invalid(url, "etcd URLs take no path or query"));
    }
    if hosts.contains('@') {
        return Err(invalid(
            url,
            "credentials in etcd URLs are not supported; pass them as options",
        ));
    }
    let endpoints = hosts
        .split(',')
        .map(|hp| parse_host_port(url, hp.trim(), 2379))
        .collect::<Result<Vec<_>>>()?;
    Ok(Target::Etcd { endpoints, tls })
}

fn parse_zk(url: &str, rest: &str) -> Result<Target> {
    let (hosts, chroot) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(&rest[i..])),
        None => (rest, None),
    };
    if hosts.contains(['?', '#', '@']) {
        return Err(invalid(url, "zk URLs take no query or credentials"));
    }
    let hosts = hosts
        .split(',')
        .map(|hp| parse_host_port(url, hp.trim(), 2181))
        .collect::<Result<Vec<_>>>()?;
    let chroot = match chroot.map(|c| c.trim_end_matches('/')) {
        None | Some("") => None,
        Some(c)
            if c.split('/')
                .skip(1)
                .any(|seg| seg.is_empty() || seg == "." || seg == "..") =>
        {
            return Err(invalid(url, format!("bad chroot path {}", quote(url, c))));
        }
        Some(c) => Some(c.to_string()),
    };
    Ok(Target::Zk { hosts, chroot })
}

fn parse_redis(url: &str, rest: &str, tls: bool) -> Result<RedisNode> {
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    let (user, password) = match userinfo.map(|u| u.split_once(':').unwrap_or((u, ""))) {
        None => (None, None),
        Some((u, p)) => (
            Some(u.to_string()).filter(|u| !u.is_empty()),
            Some(p.to_string()).filter(|p| !p.is_empty()),
        ),
    };
    let (addr, db) = match rest.split_once('/') {
        Some((a, d)) => (a, d.trim_end_matches('/')),
        None => (rest, ""),
    };
    if addr.contains([',', '?', '#']) {
        return Err(invalid(
            url,
            "a redis URL names one server; use redlock:// for several",
        ));
    }
    let db = match db {
        "" => 0,
        d => d
            .parse::<u32>()
            .map_err(|_| invalid(url, format!("bad database number {}", quote(url, d))))?,
    };
    Ok(RedisNode {
        addr: parse_host_port(url, addr.trim(), 6379)?,
        db,
        user,
        password,
        tls,
    })
}

fn parse_redlock(url: &str, rest: &str) -> Result<Target> {
    let nodes = rest
        .trim_end_matches('/')
        .split(',')
        .map(|n| parse_redis(url, n.trim(), false))
        .collect::<Result<Vec<_>>>()?;
    if nodes.len() < 3 || nodes.len() % 2 == 0 {
        return Err(invalid(
            url,
            format!(
                "Redlock needs an odd number of independent masters, at least 3 (got {})",
                nodes.len()
            ),
        ));
    }
    Ok(Target::Redlock { nodes })
}

/// `USER@HOST:PORT/DB?sslmode=MODE`. A password in the URL is refused: URLs end up on command
/// lines and in logs; it comes from the Builder (`TENURE_PASSWORD`, `--password-file`).
fn parse_postgres(url: &str, rest: &str) -> Result<PgTarget> {
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let (userinfo, rest) = match rest.rsplit_once('@') {
        Some((u, r)) => (Some(u), r),
        None => (None, rest),
    };
    if userinfo.is_some_and(|u| u.contains(':')) {
        return Err(invalid(
            url,
            "a password in a postgres:// URL is not accepted; give it with TENURE_PASSWORD, --password-file or Builder::password",
        ));
    }
    let user = userinfo.filter(|u| !u.is_empty()).map(str::to_string);
    let (addr, db) = match rest.split_once('/') {
        Some((a, d)) => (a, d.trim_end_matches('/')),
        None => (rest, ""),
    };
    if addr.contains([',', '#']) {
        return Err(invalid(url, "a postgres URL names one server"));
    }
    if db.contains(['/', '#']) || db.chars().any(char::is_control) {
        return Err(invalid(
            url,
            format!("bad database name {}", quote(url, db)),
        ));
    }
    let hp = parse_host_port(url, addr.trim(), 5432)?;
    let (host, port) = hp
        .rsplit_once(':')
        .and_then(|(h, p)| {
            Some((
                h.trim_start_matches('[').trim_end_matches(']'),
                p.parse().ok()?,
            ))
        })
        .ok_or_else(|| invalid(url, "bad host or port"))?;
    let mut sslmode = None;
    for pair in query
        .unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
    {
        let mode = match pair.split_once('=') {
            Some(("sslmode", "disable")) => SslMode::Disable,
            Some(("sslmode", "require" | "verify-ca")) => SslMode::Require,
            Some(("sslmode", "verify-full")) => SslMode::VerifyFull,
            Some(("sslmode", other)) => {
                return Err(invalid(
                    url,
                    format!(
                        "sslmode {} is not accepted; use disable, require, verify-ca or verify-full",
                        quote(url, other)
                    ),
                ))
            }
            _ => {
                return Err(invalid(
                    url,
                    format!(
                        "unknown parameter {} (only sslmode is accepted; TLS files and credentials are options)",
                        quote(url, pair)
                    ),
                ))
            }
        };
        sslmode = Some(mode);
    }
    Ok(PgTarget {
        host: host.to_string(),
        port,
        user,
        db: Some(db.to_string()).filter(|d| !d.is_empty()),
        sslmode,
    })
}

/// Validates `host[:port]` (or `[v6]:port`), filling in `default_port`.
pub(crate) fn parse_host_port(url: &str, hp: &str, default_port: u16) -> Result<String> {
    if hp.is_empty() {
        return Err(invalid(url, "empty host"));
    }
    let (host, port) = if let Some(v6) = hp.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid(url, format!("unclosed '[' in {}", quote(url, hp))))?;
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            let reason = format!("bad IPv6 address {}", quote(url, addr));
            return Err(invalid(url, reason));
        }
        // Anything after the `]` but a port would otherwise be dropped without a word.
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(|| {
                invalid(url, format!("{} after ']' is not :PORT", quote(url, after)))
            })?),
        };
        (format!("[{addr}]"), port)
    } else {
        let (host, port) = match hp.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hp, None),
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c));
        if !valid_host {
            return Err(invalid(url, format!("bad host {}", quote(url, host))));
        }
        (host.to_string(), port)
    };
    // Digits only: `u16::from_str` would also take a sign (`+80`).
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|n| *n != 0 && p.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| invalid(url, format!("bad port {} (1-65535)", quote(url, p))))?,
    };
    Ok(format!("{host}:{port}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_valid_forms() {
        assert_eq!(
            parse("mem://").unwrap(),
            Target::Mem {
                name: String::new()
            }
        );
        assert_eq!(
            parse("etcd://a:1,b").unwrap(),
            Target::Etcd {
                endpoints: vec!["a:1".into(), "b:2379".into()],
                tls: false
            }
        );
        assert_eq!(
            parse("etcds://[::1]:2379").unwrap(),
            Target::Etcd {
                endpoints: vec!["[::1]:2379".into()],
                tls: true
            }
        );
    }

    #[test]
    fn rejects_malformed_urls_with_the_valid_forms() {
        for bad in [
            "",
            "localhost:2379",
            "http://x",
            "etcd://",
            "etcd://a:b",
            "etcd://a:0",
            "etcd://a:99999",
            "etcd://a,,b",
            "etcd://a/path",
            "etcd://a b",
            "etcds://[::1",
            "mem://a/b",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("etcd://HOST:PORT"), "{err}");
        }
    }

    #[test]
    fn parses_zk_and_redis() {
        assert_eq!(
            parse("zk://a:1,b/app/x").unwrap(),
            Target::Zk {
                hosts: vec!["a:1".into(), "b:2181".into()],
                chroot: Some("/app/x".into())
            }
        );
        let Target::Redis(n) = parse("redis://u:pw@h:7/3").unwrap() else {
            panic!("not redis")
        };
        assert_eq!(
            (
                n.addr.as_str(),
                n.db,
                n.user.as_deref(),
                n.password.as_deref()
            ),
            ("h:7", 3, Some("u"), Some("pw"))
        );
        assert!(!format!("{n:?}").contains("pw"));
        assert!(
            matches!(parse("redlock://a,b,c").unwrap(), Target::Redlock { nodes } if nodes.len() == 3)
        );
        for bad in [
            "zk://a//b",
            "zk://a/..",
            "redis://h/x",
            "redis://a,b",
            "redlock://a,b",
            "rediss://h:0",
        ] {
            assert!(matches!(parse(bad), Err(Error::InvalidUrl { .. })), "{bad}");
        }
    }

    #[test]
    fn parses_postgres() {
        let Target::Postgres(t) =
            parse("postgresql://app@db.internal/locks?sslmode=verify-full").unwrap()
        else {
            panic!("not postgres")
        };
        assert_eq!(
            (t.host.as_str(), t.port, t.user.as_deref(), t.db.as_deref()),
            ("db.internal", 5432, Some("app"), Some("locks"))
        );
        assert_eq!(t.sslmode, Some(SslMode::VerifyFull));
        let Target::Postgres(t) = parse("postgres://[::1]:6543").unwrap() else {
            panic!("not postgres")
        };
        assert_eq!(
            (t.host.as_str(), t.port, t.user, t.db),
            ("::1", 6543, None, None)
        );
        for bad in [
            "postgres://u:secret@h/db",
            "postgres://h/db?sslmode=prefer",
            "postgres://h/db?password=x",
            "postgres://a,b/db",
            "postgres://h:0/db",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}");
            assert!(!err.to_string().contains("secret"), "{err}");
        }
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0".to_string()
        );
        let err = parse("etcd://u:secret@h").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
