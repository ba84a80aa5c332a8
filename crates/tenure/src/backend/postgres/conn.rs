//! One PostgreSQL connection: opened over TCP (and TLS), its server process id, the signal
//! that it ended, cancelling its running statement, and the mapping of PostgreSQL's errors to
//! ours (C11).

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, NoTls};

use super::tls::Tls;
use crate::error::TlsProblem;
use crate::security::classify_tls;
use crate::{Cause, Error, Result, Secret};

/// Everything needed to open one more connection to the server.
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) db: String,
    pub(crate) password: Option<Secret>,
    pub(crate) tls: Option<Tls>,
    /// Bound on connecting and on one request.
    pub(crate) timeout: Duration,
}

impl Endpoint {
    /// `host:port`, for messages.
    pub(crate) fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    fn config(&self, application_name: &str) -> Config {
        let mut c = Config::new();
        c.user(&self.user)
            .dbname(&self.db)
            .application_name(application_name);
        if let Some(pw) = &self.password {
            c.password(pw.expose());
        }
        c
    }

    async fn tcp(&self) -> Result<TcpStream> {
        let addr = (self.host.as_str(), self.port);
        let stream = match tokio::time::timeout(self.timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(Error::Transient {
                    op: "connect",
                    message: format!("{}: {e}", self.addr()),
                    source: Some(Cause::new(e)),
                })
            }
            Err(_) => {
                return Err(Error::Transient {
                    op: "connect",
                    message: format!("{}: no answer within {:?}", self.addr(), self.timeout),
                    source: None,
                })
            }
        };
        // Lock requests are tiny; Nagle would hold a release back behind the previous packet.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }

    /// Opens one connection and starts driving it; `session_setup` is run first, in the same
    /// round trip as reading the server process id.
    pub(crate) async fn open(&self, application_name: &str, session_setup: &str) -> Result<Conn> {
        let config = self.config(application_name);
        let (ended_tx, ended) = watch::channel(false);
        let client = match &self.tls {
            None => {
                let (client, connection) = self
                    .bounded(config.connect_raw(self.tcp().await?, NoTls))
                    .await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "postgres connection ended");
                    }
                    let _ = ended_tx.send(true);
                });
                client
            }
            Some(tls) => {
                let (client, connection) = self
                    .bounded(config.connect_raw(self.tcp().await?, tls.clone()))
                    .await?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "postgres connection ended");
                    }
                    let _ = ended_tx.send(true);
                });
                client
            }
        };
        let sql = format!("{session_setup}SELECT pg_backend_pid()");
        let answer = tokio::time::timeout(self.timeout, client.simple_query(&sql)).await;
        let messages = match answer {
            Ok(r) => r.map_err(|e| self.map("connect", e))?,
            Err(_) => return Err(self.no_answer("connect")),
        };
        let pid = messages
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0)?.parse::<i32>().ok(),
                _ => None,
            })
            .ok_or_else(|| Error::Store {
                op: "connect",
                message: "the server did not say its process id".into(),
                source: None,
            })?;
        Ok(Conn {
            client: Arc::new(client),
            pid,
            ended,
        })
    }

    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r.map_err(|e| self.map("connect", e)),
            Err(_) => Err(self.no_answer("connect")),
        }
    }

    fn no_answer(&self, op: &'static str) -> Error {
        Error::Transient {
            op,
            message: format!("{}: no answer within {:?}", self.addr(), self.timeout),
            source: None,
        }
    }

    /// [`map_err`], with this endpoint's TLS context.
    pub(crate) fn map(&self, op: &'static str, e: tokio_postgres::Error) -> Error {
        map_err(op, e, &self.addr(), self.tls.as_ref().map(|t| t.sent_cert))
    }

    /// Asks the server to cancel whatever `conn` is running now (a waiting
    /// `pg_advisory_lock`), over a connection of its own, as PostgreSQL's protocol requires.
    pub(crate) async fn cancel(&self, conn: &Conn) -> Result<()> {
        let token = conn.client.cancel_token();
        let stream = self.tcp().await?;
        let sent = match &self.tls {
            None => token.cancel_query_raw(stream, NoTls).await,
            Some(tls) => token.cancel_query_raw(stream, tls.clone()).await,
        };
        sent.map_err(|e| self.map("cancel", e))
    }
}

/// One open connection.
#[derive(Clone)]
pub(crate) struct Conn {
    pub(crate) client: Arc<Client>,
    /// The server process behind it (`pg_backend_pid()`), which `pg_locks` names as holder.
    pub(crate) pid: i32,
    ended: watch::Receiver<bool>,
}

impl Conn {
    /// Resolves once the connection has ended (closed by either side or broken).
    pub(crate) async fn ended(&self) {
        let mut rx = self.ended.clone();
        let _ = rx.wait_for(|ended| *ended).await;
    }

    pub(crate) fn is_ended(&self) -> bool {
        *self.ended.borrow() || self.client.is_closed()
    }
}

/// The error and all its causes as one line (rustls's words are deep inside).
fn chain(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let more = c.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        cause = c.source();
    }
    text
}

/// What an error means to us, decided before the error is moved into its [`Cause`].
enum Kind {
    Auth,
    NoPassword,
    Permission,
    Tls(TlsProblem),
    Transient,
    Store,
}

fn classify(e: &tokio_postgres::Error, message: &str, sent_cert: Option<bool>) -> Kind {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD {
            return Kind::Auth;
        }
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
            // pg_hba.conf's `clientcert=verify-full` (or `cert`) without an acceptable one.
            return match sent_cert {
                Some(sent) if db.message().contains("certificate") => Kind::Tls(if sent {
                    TlsProblem::ClientCertificateRejected
                } else {
                    TlsProblem::ClientCertificateRequired
                }),
                _ => Kind::Auth,
            };
        }
        if *code == SqlState::INSUFFICIENT_PRIVILEGE {
            return Kind::Permission;
        }
        let transient = code.code().starts_with("08")
            || [
                SqlState::ADMIN_SHUTDOWN,
                SqlState::CRASH_SHUTDOWN,
                SqlState::CANNOT_CONNECT_NOW,
                SqlState::TOO_MANY_CONNECTIONS,
                SqlState::T_R_SERIALIZATION_FAILURE,
                SqlState::T_R_DEADLOCK_DETECTED,
            ]
            .contains(code);
        return if transient {
            Kind::Transient
        } else {
            Kind::Store
        };
    }
    if let Some(sent) = sent_cert {
        if let Some(problem) = classify_tls(message, sent) {
            return Kind::Tls(problem);
        }
        // The server answered the TLS request with "no": it does not speak TLS.
        if message.contains("server does not support TLS") {
            return Kind::Tls(TlsProblem::Handshake);
        }
    }
    if message.contains("password missing") {
        return Kind::NoPassword;
    }
    Kind::Transient
}

/// Maps a tokio-postgres error: refused credentials → [`Error::AuthFailed`]; a lack of
/// privilege → [`Error::PermissionDenied`]; a refused TLS handshake or a client certificate
/// the server requires → [`Error::Tls`]; a broken or closed connection, a server shutting
/// down, starting or out of connection slots, a serialization failure → [`Error::Transient`];
/// anything else → [`Error::Store`]. The client's error is kept as the source. PostgreSQL
/// never echoes the password.
pub(crate) fn map_err(
    op: &'static str,
    e: tokio_postgres::Error,
    endpoint: &str,
    sent_cert: Option<bool>,
) -> Error {
    let message = chain(&e);
    let kind = classify(&e, &message, sent_cert);
    let source = Some(Cause::new(e));
    match kind {
        Kind::Auth => Error::AuthFailed { message, source },
        Kind::NoPassword => Error::AuthFailed {
            message: format!(
                "{message}: the server asks for a password; give it with TENURE_PASSWORD, --password-file or Builder::password"
            ),
            source,
        },
        Kind::Permission => Error::PermissionDenied { message, source },
        Kind::Tls(problem) => Error::Tls {
            endpoint: endpoint.to_string(),
            problem,
            detail: message,
            source,
        },
        Kind::Transient => Error::Transient {
            op,
            message,
            source,
        },
        Kind::Store => Error::Store {
            op,
            message,
            source,
        },
    }
}
