//! `etcds://`: TLS options for etcd-client (rustls with ring) and telling which side of a
//! failed handshake is at fault.

use std::time::Duration;

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::error::TlsProblem;
use crate::security::Security;
use crate::{Error, Result};

/// The TLS options of `security`: CA bundle, client identity, server name.
pub(super) fn options(security: &Security, timeout: Duration) -> Result<TlsOptions> {
    let files = security.tls_files()?;
    let mut tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(files.ca))
        .timeout(timeout);
    if let Some((cert, key)) = files.identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    if let Some(name) = &security.server_name {
        tls = tls.domain_name(name.clone());
    }
    Ok(tls)
}

/// The error and all its causes as one line (the TLS library's words are deep inside).
fn chain(e: &etcd_client::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The TLS problem behind `e`, if it is one, as [`Error::Tls`].
pub(super) fn diagnose(
    endpoint: &str,
    security: &Security,
    e: &etcd_client::Error,
) -> Option<Error> {
    let detail = chain(e);
    let problem = classify(&detail, security.client_cert.is_some())?;
    Some(Error::Tls {
        endpoint: endpoint.to_string(),
        problem,
        detail,
    })
}

/// Reads rustls's messages: "invalid peer certificate: ..." is about the server's
/// certificate; "received fatal alert: ..." is the server refusing ours (or the handshake).
fn classify(detail: &str, sent_cert: bool) -> Option<TlsProblem> {
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
    let closed = detail.contains("connection closed") || detail.contains("reset by peer");
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
    fn tells_the_side_at_fault() {
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
            ("tcp connect error: Connection refused", false, None),
        ];
        for (detail, sent, want) in cases {
            assert_eq!(classify(detail, sent), want, "{detail}");
        }
    }
}
