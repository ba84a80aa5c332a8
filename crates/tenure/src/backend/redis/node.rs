//! One Redis server: a lazily (re)opened multiplexed connection (plain TCP, or TLS over rustls
//! for `rediss://`), per-request timeouts, and the mapping of Redis errors to ours (C11).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{
    AsyncConnectionConfig, Client, ClientTlsConfig, ConnectionAddr, ErrorKind, FromRedisValue,
    IntoConnectionInfo, RedisConnectionInfo, RedisError, ServerErrorKind, TlsCertificates,
};
use tokio::sync::Mutex;

use crate::security::{classify_tls, TlsFiles};
use crate::url::RedisNode;
use crate::{Cause, Error, Result, Secret};

/// Maps a Redis client error: connection trouble → [`Error::Transient`], refused credentials
/// (`WRONGPASS`, `NOAUTH`) → [`Error::AuthFailed`], a command or key outside the user's ACL
/// (`NOPERM`) → [`Error::PermissionDenied`], anything else → [`Error::Store`]. Neither of the
/// last three is retried. Redis never echoes the password, so the message is safe to show.
/// Told by the client's error kind, or by the server's error code (the reply's first word)
/// where the client has no kind for it; `e` is kept as the source.
pub(crate) fn map_err(op: &'static str, e: &RedisError) -> Error {
    let message = e.to_string();
    let source = Some(Cause::new(e.clone()));
    if matches!(e.kind(), ErrorKind::Server(ServerErrorKind::NoPerm)) {
        return Error::PermissionDenied { message, source };
    }
    // The client has no kind for NOAUTH and WRONGPASS: they arrive as extension errors whose
    // code is the server's.
    let refused = matches!(e.code(), Some("NOAUTH" | "WRONGPASS"));
    if matches!(e.kind(), ErrorKind::AuthenticationFailed) || refused {
        return Error::AuthFailed { message, source };
    }
    let transient = e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || matches!(
            e.kind(),
            ErrorKind::Io
                | ErrorKind::Server(
                    ServerErrorKind::BusyLoading
                        | ServerErrorKind::TryAgain
                        | ServerErrorKind::MasterDown
                        | ServerErrorKind::ReadOnly
                )
        );
    if transient {
        Error::Transient {
            op,
            message,
            source,
        }
    } else {
        Error::Store {
            op,
            message,
            source,
        }
    }
}

/// The error and all its causes as one line (rustls's words are deep inside).
fn chain(e: &RedisError) -> String {
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

/// How one server is reached: credentials and, for `rediss://`, TLS.
pub(crate) struct Access<'a> {
    /// ACL user (`None`: the `default` user, as with `requirepass`).
    pub(crate) user: Option<&'a str>,
    /// Password for `AUTH`.
    pub(crate) password: Option<&'a Secret>,
    /// CA bundle and client identity, for `rediss://`.
    pub(crate) tls: Option<&'a TlsFiles>,
    /// The name the server's certificate must carry, if not the URL's host.
    pub(crate) server_name: Option<&'a str>,
}

/// Resolves every host to one fixed address: with [`crate::Builder::tls_server_name`], the
/// client is told to connect to that name (so rustls verifies it) and this sends the TCP
/// connection to the URL's host instead.
#[derive(Clone)]
struct FixedAddr {
    host: String,
    port: u16,
}

impl redis::io::AsyncDNSResolver for FixedAddr {
    fn resolve<'a, 'b: 'a>(
        &'a self,
        _host: &'b str,
        _port: u16,
    ) -> redis::RedisFuture<'a, Box<dyn Iterator<Item = SocketAddr> + Send + 'a>> {
        Box::pin(async move {
            let addrs = tokio::net::lookup_host((self.host.as_str(), self.port)).await?;
            Ok(Box::new(addrs) as Box<dyn Iterator<Item = SocketAddr> + Send>)
        })
    }
}

/// One server and its shared connection.
pub(crate) struct Node {
    client: Client,
    /// `host:port`, for messages.
    pub(crate) addr: String,
    /// The database number, for keyspace notification channels.
    pub(crate) db: u32,
    conn: Mutex<Option<MultiplexedConnection>>,
    /// Whether the current connection has answered a request: until then, a failure over TLS
    /// may be the handshake's (under TLS 1.3 a refused client certificate shows up only at the
    /// first read), and is diagnosed as [`Error::Tls`].
    proven: AtomicBool,
    /// `rediss://`.
    tls: bool,
    /// Whether we present a client certificate (mutual TLS).
    sent_cert: bool,
    /// Where TCP connects when the TLS server name differs from the URL's host.
    fixed: Option<FixedAddr>,
    /// Bound on one request (and on connecting).
    pub(crate) timeout: Duration,
    /// The subscriber connection all waiters share.
    pub(crate) subscriber: super::subscriber::Subscriber,
}

fn host_port(node: &RedisNode) -> Result<(String, u16)> {
    let bad = || Error::InvalidUrl {
        url: format!("{node:?}"),
        reason: format!("{:?} is not HOST:PORT", node.addr),
    };
    let (host, port) = node.addr.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    Ok((host.to_string(), port))
}

impl Node {
    /// A node for `spec`, reached with `access`; connects on first use.
    pub(crate) fn new(spec: &RedisNode, access: &Access<'_>, timeout: Duration) -> Result<Self> {
        let (host, port) = host_port(spec)?;
        let mut redis = RedisConnectionInfo::default().set_db(i64::from(spec.db));
        let user = access.user.or(spec.user.as_deref());
        if let Some(user) = user {
            redis = redis.set_username(user);
        }
        match (access.password, &spec.password) {
            (Some(p), _) => redis = redis.set_password(p.expose()),
            (None, Some(p)) => redis = redis.set_password(p),
            (None, None) => {}
        }
        let tls = match (spec.tls, access.tls) {
            (false, _) => None,
            (true, Some(files)) => Some(files),
            (true, None) => {
                return Err(crate::security::invalid(
                    "tls",
                    "rediss:// needs a CA bundle (internal: TLS files were not loaded)",
                ))
            }
        };
        let mut fixed = None;
        let client = match tls {
            None => {
                let info = ConnectionAddr::Tcp(host, port)
                    .into_connection_info()
                    .map_err(|e| map_err("connect", &e))?
                    .set_redis_settings(redis);
                Client::open(info).map_err(|e| map_err("connect", &e))?
            }
            Some(files) => {
                let name = match access.server_name {
                    Some(name) => {
                        fixed = Some(FixedAddr {
                            host: host.clone(),
                            port,
                        });
                        name.to_string()
                    }
                    None => host,
                };
                let info = ConnectionAddr::TcpTls {
                    host: name,
                    port,
                    insecure: false,
                    tls_params: None,
                }
                .into_connection_info()
                .map_err(|e| map_err("connect", &e))?
                .set_redis_settings(redis);
                let certs = TlsCertificates {
                    client_tls: files.identity.as_ref().map(|(cert, key)| ClientTlsConfig {
                        client_cert: cert.clone(),
                        client_key: key.clone(),
                    }),
                    root_cert: Some(files.ca.clone()),
                };
                Client::build_with_tls(info, certs).map_err(|e| {
                    crate::security::invalid(
                        "tls",
                        format!("unusable CA bundle, client certificate or key: {e}"),
                    )
                })?
            }
        };
        Ok(Node {
            client,
            addr: spec.addr.clone(),
            db: spec.db,
            conn: Mutex::new(None),
            proven: AtomicBool::new(false),
            tls: spec.tls,
            sent_cert: tls.is_some_and(|f| f.identity.is_some()),
            fixed,
            timeout,
            subscriber: Default::default(),
        })
    }

    /// Maps `e` as [`map_err`] does, but as [`Error::Tls`] when it is a TLS failure on a
    /// connection that has not answered yet.
    fn map(&self, op: &'static str, e: &RedisError) -> Error {
        if self.tls && !self.proven.load(Ordering::Relaxed) {
            let detail = chain(e);
            if let Some(problem) = classify_tls(&detail, self.sent_cert) {
                return Error::Tls {
                    endpoint: self.addr.clone(),
                    problem,
                    detail,
                    source: Some(Cause::new(e.clone())),
                };
            }
        }
        map_err(op, e)
    }

    fn config(&self) -> AsyncConnectionConfig {
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        match &self.fixed {
            Some(fixed) => cfg.set_dns_resolver(fixed.clone()),
            None => cfg,
        }
    }

    async fn conn(&self) -> Result<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let cfg = self.config();
        let connecting = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg);
        let c = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.unreachable_if_io(self.map("connect", &e))),
            Err(_) => return Err(self.no_answer("connect")),
        };
        self.proven.store(false, Ordering::Relaxed);
        *slot = Some(c.clone());
        Ok(c)
    }

    fn unreachable_if_io(&self, e: Error) -> Error {
        match e {
            Error::Transient {
                message, source, ..
            } => Error::Unreachable {
                endpoint: self.addr.clone(),
                reason: message,
                source,
            },
            other => other,
        }
    }

    fn no_answer(&self, op: &'static str) -> Error {
        Error::Transient {
            op,
            message: format!("{} gave no answer within {:?}", self.addr, self.timeout),
            source: None,
        }
    }

    /// Forgets a connection that failed, so the next request reconnects.
    async fn reset(&self) {
        *self.conn.lock().await = None;
    }

    /// Sends one command (or script invocation, through `cmd`) and decodes the answer.
    pub(crate) async fn run<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &redis::Cmd,
    ) -> Result<T> {
        let mut c = self.conn().await?;
        let answer = tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut c)).await;
        self.settle(op, answer).await
    }

    /// Runs a script (EVALSHA, loading it on NOSCRIPT).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut c = self.conn().await?;
        let answer = tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut c)).await;
        self.settle(op, answer).await
    }

    /// Maps one answer (or its absence within the timeout); a connection that failed, timed
    /// out or broke TLS is dropped so that the next request opens a fresh one.
    async fn settle<T>(
        &self,
        op: &'static str,
        answer: std::result::Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T> {
        match answer {
            Ok(Ok(v)) => {
                self.proven.store(true, Ordering::Relaxed);
                Ok(v)
            }
            Ok(Err(e)) => {
                let err = self.map(op, &e);
                if err.is_transient() || matches!(err, Error::Tls { .. }) {
                    self.reset().await;
                }
                Err(err)
            }
            Err(_) => {
                self.reset().await;
                Err(self.no_answer(op))
            }
        }
    }

    /// A subscriber connection (see [`super::subscriber`], which keeps one per server). With a TLS server name other than the URL's host
    /// there is none (the redis crate resolves a subscriber's host itself, which would not
    /// reach the server): waiters then wake by polling, as on any subscribe failure.
    pub(crate) async fn pubsub(&self) -> Result<PubSub> {
        if self.fixed.is_some() {
            return Err(Error::Unsupported {
                backend: "redis",
                what: "pub/sub wake-ups with tls_server_name",
                advice: "waiters poll instead; connect by the name the certificate carries to get pub/sub wake-ups",
            });
        }
        match tokio::time::timeout(self.timeout, self.client.get_async_pubsub()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(self.map("subscribe", &e)),
            Err(_) => Err(self.no_answer("subscribe")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_told_by_kind_and_code_and_keep_their_cause() {
        let noperm = RedisError::from((ErrorKind::Server(ServerErrorKind::NoPerm), "no perm"));
        assert!(matches!(
            map_err("get", &noperm),
            Error::PermissionDenied { .. }
        ));
        for code in ["NOAUTH", "WRONGPASS"] {
            let refused = redis::make_extension_error(code.into(), Some("refused".into()));
            let e = map_err("auth", &refused);
            assert!(matches!(e, Error::AuthFailed { .. }), "{code}: {e:?}");
        }
        let wrongtype = redis::make_extension_error("WRONGTYPE".into(), None);
        assert!(matches!(map_err("get", &wrongtype), Error::Store { .. }));
        let loading =
            RedisError::from((ErrorKind::Server(ServerErrorKind::BusyLoading), "loading"));
        let e = map_err("get", &loading);
        assert!(e.is_transient(), "{e:?}");
        let source = std::error::Error::source(&e).and_then(|s| s.downcast_ref::<RedisError>());
        assert_eq!(source.map(RedisError::kind), Some(loading.kind()), "{e:?}");
    }
}
