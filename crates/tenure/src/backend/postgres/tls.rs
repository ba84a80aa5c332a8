//! TLS for `postgres://` over rustls with the *ring* provider (the one `etcds://` and
//! `rediss://` use): tokio-postgres's TLS traits implemented over tokio-rustls, so the server
//! name checked can be `tls_server_name` and `sslmode=require` can check the chain without the
//! name.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_postgres::tls::{ChannelBinding, TlsConnect};

use crate::security::{invalid, TlsFiles};
use crate::Result;

/// The TLS side of one server: its client configuration and the name to verify.
#[derive(Clone)]
pub(crate) struct Tls {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    /// Whether we present a client certificate (for telling refusals apart).
    pub(crate) sent_cert: bool,
}

impl Tls {
    /// `verify_name`: `sslmode=verify-full` (else `require`: chain only).
    pub(crate) fn new(files: &TlsFiles, server_name: &str, verify_name: bool) -> Result<Tls> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&files.ca) {
            let cert =
                cert.map_err(|e| invalid("ca_file", format!("not PEM certificates: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid("ca_file", format!("unusable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(invalid("ca_file", "no certificate in the CA file"));
        }
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| invalid("ca_file", format!("unusable CA certificates: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = if verify_name {
            webpki
        } else {
            Arc::new(ChainOnly(webpki))
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("tls", format!("rustls: {e}")))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match &files.identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let chain = CertificateDer::pem_slice_iter(cert)
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| invalid("client_cert", format!("not a PEM certificate: {e}")))?;
                let key = PrivateKeyDer::from_pem_slice(key)
                    .map_err(|e| invalid("client_cert", format!("not a PEM private key: {e}")))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    invalid("client_cert", format!("unusable certificate or key: {e}"))
                })?
            }
        };
        let name = ServerName::try_from(server_name.to_string())
            .map_err(|e| invalid("tls_server_name", format!("{server_name:?}: {e}")))?;
        Ok(Tls {
            config: Arc::new(config),
            name,
            sent_cert: files.identity.is_some(),
        })
    }
}

/// `sslmode=require`/`verify-ca`: the chain must lead to the CA; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

impl TlsConnect<TcpStream> for Tls {
    type Stream = TlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TlsStream>> + Send>>;

    fn connect(self, stream: TcpStream) -> Self::Future {
        let connector = tokio_rustls::TlsConnector::from(self.config);
        Box::pin(async move {
            let s = connector.connect(self.name, stream).await?;
            Ok(TlsStream(Box::new(s)))
        })
    }
}

/// The encrypted stream. Without channel binding: SCRAM-SHA-256 authenticates as it does
/// without TLS (tokio-postgres's default `channel_binding=prefer` falls back to it).
pub(crate) struct TlsStream(Box<tokio_rustls::client::TlsStream<TcpStream>>);

impl AsyncRead for TlsStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl tokio_postgres::tls::TlsStream for TlsStream {
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}
