//! Connection security shared by every backend: TLS files, the TLS server name and
//! user/password credentials, set on [`crate::Builder`] and read by each backend's connector.

use std::path::{Path, PathBuf};

use crate::error::{Cause, TlsProblem};
use crate::{Error, Result};

/// A password or other secret. Its `Debug` and `Display` print `***`, so it cannot leak into
/// logs, error messages or `{:?}` output by accident; [`Secret::expose`] is the one way out.
///
/// ```
/// let secret = tenure::Secret::new("hunter2");
/// assert_eq!(format!("{secret} {secret:?}"), "*** ***");
/// assert_eq!(secret.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    ///
    /// ```
    /// let secret = tenure::Secret::new(std::env::var("TENURE_PASSWORD").unwrap_or_default());
    /// let builder = tenure::Tenure::builder("etcd://127.0.0.1:2379").user("app1").password(secret);
    /// ```
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for handing to the store's client. Never log it.
    ///
    /// ```
    /// let secret = tenure::Secret::new("hunter2");
    /// assert_eq!(secret.expose(), "hunter2");
    /// ```
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_string())
    }
}

/// Where the password comes from: given, or read from a file when connecting.
#[cfg_attr(
    not(any(
        feature = "etcd",
        feature = "zookeeper",
        feature = "redis",
        feature = "postgres"
    )),
    allow(dead_code)
)]
#[derive(Debug, Clone)]
pub(crate) enum PasswordSource {
    Value(Secret),
    File(PathBuf),
}

/// The security options of one [`crate::Builder`], backend-agnostic. Each connector takes what
/// its store supports and refuses (with [`Error::InvalidOption`]) what it cannot honour.
#[derive(Debug, Clone, Default)]
pub(crate) struct Security {
    /// PEM file of the CA(s) that signed the server's certificate.
    pub(crate) ca_file: Option<PathBuf>,
    /// PEM files of our client certificate and its private key (mutual TLS).
    pub(crate) client_cert: Option<(PathBuf, PathBuf)>,
    /// The name the server's certificate must carry, if not the host of the URL.
    pub(crate) server_name: Option<String>,
    /// User name for the store's authentication.
    pub(crate) user: Option<String>,
    /// Password for the store's authentication.
    pub(crate) password: Option<PasswordSource>,
}

/// PEM contents read from the files of [`Security`], ready for a TLS client.
#[cfg_attr(
    not(any(feature = "etcd", feature = "redis", feature = "postgres")),
    allow(dead_code)
)]
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    /// The CA bundle (PEM).
    pub(crate) ca: Vec<u8>,
    /// Client certificate and key (PEM), for mutual TLS.
    pub(crate) identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// System CA bundles tried, in order, when no CA file is given.
#[cfg_attr(
    not(any(feature = "etcd", feature = "redis", feature = "postgres")),
    allow(dead_code)
)]
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

impl Security {
    /// Whether any TLS option was set (a connector without TLS refuses them).
    pub(crate) fn wants_tls(&self) -> bool {
        self.ca_file.is_some() || self.client_cert.is_some() || self.server_name.is_some()
    }

    /// The password, read from its file if it comes from one.
    #[cfg_attr(
        not(any(
            feature = "etcd",
            feature = "zookeeper",
            feature = "redis",
            feature = "postgres"
        )),
        allow(dead_code)
    )]
    pub(crate) fn password(&self) -> Result<Option<Secret>> {
        match &self.password {
            None => Ok(None),
            Some(PasswordSource::Value(s)) => Ok(Some(s.clone())),
            Some(PasswordSource::File(path)) => read_password_file(path).map(Some),
        }
    }

    /// User and password, both or neither; a password without a user is refused, for stores
    /// whose authentication needs a user (etcd, ZooKeeper digest).
    #[cfg_attr(not(any(feature = "etcd", feature = "zookeeper")), allow(dead_code))]
    pub(crate) fn user_and_password(&self) -> Result<Option<(String, Secret)>> {
        match (&self.user, self.password()?) {
            (None, None) => Ok(None),
            (Some(user), Some(password)) => Ok(Some((user.clone(), password))),
            (Some(_), None) => Err(invalid(
                "credentials",
                "a user name was given without a password",
            )),
            (None, Some(_)) => Err(invalid(
                "credentials",
                "a password was given without a user name",
            )),
        }
    }

    /// Reads the CA bundle (or the system's) and the client certificate and key.
    #[cfg_attr(
        not(any(feature = "etcd", feature = "redis", feature = "postgres")),
        allow(dead_code)
    )]
    pub(crate) fn tls_files(&self) -> Result<TlsFiles> {
        let ca = match &self.ca_file {
            Some(path) => read_file("ca_file", path)?,
            None => system_ca()?,
        };
        let identity = match &self.client_cert {
            None => None,
            Some((cert, key)) => Some((
                read_file("client_cert", cert)?,
                read_file("client_key", key)?,
            )),
        };
        Ok(TlsFiles { ca, identity })
    }
}

pub(crate) fn invalid(option: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidOption {
        option,
        reason: reason.into(),
        source: None,
    }
}

/// A file named by `option` that could not be read, keeping the I/O error as the source.
#[cfg_attr(
    not(any(
        feature = "etcd",
        feature = "zookeeper",
        feature = "redis",
        feature = "postgres"
    )),
    allow(dead_code)
)]
fn unreadable(option: &'static str, path: &Path, e: std::io::Error) -> Error {
    Error::InvalidOption {
        option,
        reason: format!("cannot read {}: {e}", path.display()),
        source: Some(Cause::new(e)),
    }
}

#[cfg_attr(
    not(any(feature = "etcd", feature = "redis", feature = "postgres")),
    allow(dead_code)
)]
fn read_file(option: &'static str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| unreadable(option, path, e))
}

#[cfg_attr(
    not(any(feature = "etcd", feature = "redis", feature = "postgres")),
    allow(dead_code)
)]
fn system_ca() -> Result<Vec<u8>> {
    SYSTEM_CA_BUNDLES
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or_else(|| {
            invalid(
                "ca_file",
                "no CA file given and no system CA bundle found; set Builder::ca_file",
            )
        })
}

/// The first line of `path`, without its line ending: the usual shape of a password file.
#[cfg_attr(
    not(any(
        feature = "etcd",
        feature = "zookeeper",
        feature = "redis",
        feature = "postgres"
    )),
    allow(dead_code)
)]
fn read_password_file(path: &Path) -> Result<Secret> {
    let text = std::fs::read_to_string(path).map_err(|e| unreadable("password_file", path, e))?;
    let line = text.lines().next().unwrap_or_default();
    if line.is_empty() {
        return Err(invalid(
            "password_file",
            format!(
                "{} is empty; its first line is the password",
                path.display()
            ),
        ));
    }
    Ok(Secret::new(line))
}

#[cfg_attr(
    not(any(feature = "etcd", feature = "redis", feature = "postgres")),
    allow(dead_code)
)]
/// Which side of a failed TLS handshake is at fault, from rustls's messages (the error and
/// its causes as one line); `None` when `detail` is not about TLS. Shared by every backend on
/// rustls (etcd, Redis). Reads rustls's messages: "invalid peer certificate: ..." is about the server's
/// certificate; "received fatal alert: ..." is the server refusing ours (or the handshake).
pub(crate) fn classify_tls(detail: &str, sent_cert: bool) -> Option<TlsProblem> {
    if detail.contains("invalid peer certificate") {
        let wrong_name =
            detail.contains("NotValidForName") || detail.contains("not valid for name");
        return Some(if wrong_name {
            TlsProblem::ServerNameMismatch
        } else {
            TlsProblem::UntrustedServerCertificate
        });
    }
    const CERT_ALERTS: [&str; 5] = [
        "CertificateRequired",
        "BadCertificate",
        "UnknownCA",
        "CertificateUnknown",
        "UnsupportedCertificate",
    ];
    let alert = detail.contains("received fatal alert");
    if alert && CERT_ALERTS.iter().any(|a| detail.contains(a)) {
        return Some(if sent_cert {
            TlsProblem::ClientCertificateRejected
        } else {
            TlsProblem::ClientCertificateRequired
        });
    }
    // Under TLS 1.3 the client finishes its side of the handshake before the server checks
    // the client's certificate; a server that refuses may close before its alert is read.
    // Which of these the client sees depends on timing: reading (closed, reset) or writing
    // its first request (broken pipe) when the server hangs up.
    let closed = ["connection closed", "reset by peer", "broken pipe"]
        .iter()
        .any(|c| detail.contains(c));
    if closed && !sent_cert {
        return Some(TlsProblem::ClientCertificateRequired);
    }
    const HANDSHAKE: [&str; 4] = [
        "received fatal alert",
        "InvalidContentType",
        "CorruptMessage",
        "peer is incompatible",
    ];
    HANDSHAKE
        .iter()
        .any(|h| detail.contains(h))
        .then_some(TlsProblem::Handshake)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("pa55word");
        assert_eq!(format!("{s}|{s:?}|{:?}", Some(&s)), "***|***|Some(***)");
        let sec = Security {
            user: Some("u".into()),
            password: Some(PasswordSource::Value(s)),
            ..Default::default()
        };
        assert!(!format!("{sec:?}").contains("pa55word"));
    }

    #[test]
    fn password_file_first_line_without_line_ending() {
        let path = std::env::temp_dir().join(format!("tenure-pw-{:08x}", fastrand::u32(..)));
        std::fs::write(&path, "s3cret \r\nignored\n").expect("write temp file");
        let sec = Security {
            user: Some("u".into()),
            password: Some(PasswordSource::File(path.clone())),
            ..Default::default()
        };
        let got = sec.user_and_password();
        let _ = std::fs::remove_file(&path);
        let (user, pw) = got.expect("read").expect("some");
        assert_eq!((user.as_str(), pw.expose()), ("u", "s3cret "));
    }

    #[test]
    fn unusable_options_are_typed_errors() {
        let missing = Security {
            user: Some("u".into()),
            password: Some(PasswordSource::File("/nonexistent/pw".into())),
            ..Default::default()
        };
        assert!(matches!(
            missing.user_and_password(),
            Err(Error::InvalidOption {
                option: "password_file",
                ..
            })
        ));
        let no_user = Security {
            password: Some(PasswordSource::Value("x".into())),
            ..Default::default()
        };
        assert!(matches!(
            no_user.user_and_password(),
            Err(Error::InvalidOption {
                option: "credentials",
                ..
            })
        ));
        let bad_ca = Security {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..Default::default()
        };
        assert!(matches!(
            bad_ca.tls_files(),
            Err(Error::InvalidOption {
                option: "ca_file",
                ..
            })
        ));
    }

    #[test]
    fn tls_failures_tell_the_side_at_fault() {
        let cases = [
            (
                "invalid peer certificate: UnknownIssuer",
                false,
                Some(TlsProblem::UntrustedServerCertificate),
            ),
            (
                "invalid peer certificate: certificate not valid for name \"x\"",
                false,
                Some(TlsProblem::ServerNameMismatch),
            ),
            (
                "received fatal alert: CertificateRequired",
                false,
                Some(TlsProblem::ClientCertificateRequired),
            ),
            (
                "received fatal alert: BadCertificate",
                false,
                Some(TlsProblem::ClientCertificateRequired),
            ),
            (
                "received fatal alert: UnknownCA",
                true,
                Some(TlsProblem::ClientCertificateRejected),
            ),
            (
                "received fatal alert: ProtocolVersion",
                true,
                Some(TlsProblem::Handshake),
            ),
            (
                "hyper::Error(Canceled, \"connection closed\")",
                false,
                Some(TlsProblem::ClientCertificateRequired),
            ),
            (
                "hyper::Error(Io, Custom { kind: BrokenPipe, error: \"stream closed because of a broken pipe\" })",
                false,
                Some(TlsProblem::ClientCertificateRequired),
            ),
            ("tcp connect error: Connection refused", false, None),
        ];
        for (detail, sent, want) in cases {
            assert_eq!(classify_tls(detail, sent), want, "{detail}");
        }
    }
}
