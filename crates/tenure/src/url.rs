//! Backend URLs: `mem://`, `etcd://h1:2379,h2:2379`, and the forms of later backends.

use crate::{Error, Result};

/// The URL forms [`crate::Tenure::connect`] understands, quoted in every URL error.
pub const VALID_FORMS: &str = "mem://[NAME] (embedded, in-process), \
etcd://HOST:PORT[,HOST:PORT...] (etcd v3), etcds://HOST:PORT[,...] (etcd over TLS), \
zk://HOST:PORT[,...][/CHROOT] (ZooKeeper), redis://[USER:PASSWORD@]HOST:PORT[/DB], \
redlock://HOST:PORT,HOST:PORT,... (Redis, Redlock)";

/// A parsed backend location.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// In-process store; the same name in one process means the same store.
    Mem { name: String },
    /// etcd v3 cluster endpoints as `host:port`.
    Etcd { endpoints: Vec<String>, tls: bool },
    /// Recognised, but not compiled or not available in this build.
    Other { scheme: String },
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Mem { name } => write!(f, "mem://{name}"),
            Target::Etcd { endpoints, tls } => {
                let scheme = if *tls { "etcds" } else { "etcd" };
                write!(f, "{scheme}://{}", endpoints.join(","))
            }
            Target::Other { scheme } => write!(f, "{scheme}://…"),
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
        s @ ("zk" | "redis" | "rediss" | "redlock") => Ok(Target::Other {
            scheme: s.to_string(),
        }),
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

/// Validates `host[:port]` (or `[v6]:port`), filling in `default_port`.
pub(crate) fn parse_host_port(url: &str, hp: &str, default_port: u16) -> Result<String> {
    if hp.is_empty() {
        return Err(invalid(url, "empty host"));
    }
    let (host, port) = if let Some(v6) = hp.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| invalid(url, format!("unclosed '[' in {hp:?}")))?;
        (format!("[{addr}]"), after.strip_prefix(':'))
    } else {
        match hp.split_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (hp.to_string(), None),
        }
    };
    let valid_host = |h: &str| {
        !h.is_empty()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c))
    };
    if !valid_host(&host) {
        return Err(invalid(url, format!("bad host {host:?}")));
    }
    let port = match port {
        None => default_port,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| invalid(url, format!("bad port {p:?} (1-65535)")))?,
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
    fn redacts_passwords() {
        assert_eq!(
            redact("redis://u:secret@h:1/0"),
            "redis://u:***@h:1/0".to_string()
        );
        let err = parse("etcd://u:secret@h").unwrap_err();
        assert!(!err.to_string().contains("secret"));
    }
}
