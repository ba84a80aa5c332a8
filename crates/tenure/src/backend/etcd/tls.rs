//! `etcds://`: TLS options for etcd-client (rustls with ring) and telling which side of a
//! failed handshake is at fault.

use std::time::Duration;

use etcd_client::{Certificate, Identity, TlsOptions};

use crate::security::{classify_tls, Security};
use crate::{Cause, Error, Result};

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

/// The TLS problem behind `e`, if it is one, as [`Error::Tls`] (with `e` as its source);
/// else `e` back.
pub(super) fn diagnose(
    endpoint: &str,
    security: &Security,
    e: etcd_client::Error,
) -> std::result::Result<Error, etcd_client::Error> {
    let detail = chain(&e);
    match classify_tls(&detail, security.client_cert.is_some()) {
        Some(problem) => Ok(Error::Tls {
            endpoint: endpoint.to_string(),
            problem,
            detail,
            source: Some(Cause::new(e)),
        }),
        None => Err(e),
    }
}
