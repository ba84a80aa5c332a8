//! One Redis server: a lazily (re)opened multiplexed connection, per-request timeouts, and the
//! mapping of Redis errors to ours (C11).

use std::time::Duration;

use redis::aio::{MultiplexedConnection, PubSub};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ErrorKind, FromRedisValue, IntoConnectionInfo,
    RedisConnectionInfo, RedisError, ServerErrorKind,
};
use tokio::sync::Mutex;

use crate::url::RedisNode;
use crate::{Error, Result};

/// Maps a Redis client error: connection trouble → [`Error::Transient`], refused credentials
/// or ACLs → [`Error::PermissionDenied`], anything else → [`Error::Store`].
pub(crate) fn map_err(op: &'static str, e: &RedisError) -> Error {
    let message = e.to_string();
    let code = e.code().unwrap_or_default();
    if matches!(e.kind(), ErrorKind::AuthenticationFailed)
        || matches!(code, "NOAUTH" | "WRONGPASS" | "NOPERM")
    {
        return Error::PermissionDenied { message };
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
        Error::Transient { op, message }
    } else {
        Error::Store { op, message }
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
    /// Bound on one request (and on connecting).
    pub(crate) timeout: Duration,
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
    /// A node for `spec`; connects on first use.
    pub(crate) fn new(spec: &RedisNode, timeout: Duration) -> Result<Self> {
        if spec.tls {
            return Err(Error::Unsupported {
                backend: "redis",
                what: "TLS (rediss://)",
                advice: "TLS for Redis is not available in this version yet; use redis:// on a trusted network or a local TLS tunnel",
            });
        }
        let (host, port) = host_port(spec)?;
        let mut redis = RedisConnectionInfo::default().set_db(i64::from(spec.db));
        if let Some(user) = &spec.user {
            redis = redis.set_username(user);
        }
        if let Some(password) = &spec.password {
            redis = redis.set_password(password);
        }
        let info = ConnectionAddr::Tcp(host, port)
            .into_connection_info()
            .map_err(|e| map_err("connect", &e))?
            .set_redis_settings(redis);
        let client = Client::open(info).map_err(|e| map_err("connect", &e))?;
        Ok(Node {
            client,
            addr: spec.addr.clone(),
            db: spec.db,
            conn: Mutex::new(None),
            timeout,
        })
    }

    async fn conn(&self) -> Result<MultiplexedConnection> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        let cfg = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connecting = self
            .client
            .get_multiplexed_async_connection_with_config(&cfg);
        let c = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(self.unreachable_if_io(map_err("connect", &e))),
            Err(_) => return Err(self.no_answer("connect")),
        };
        *slot = Some(c.clone());
        Ok(c)
    }

    fn unreachable_if_io(&self, e: Error) -> Error {
        match e {
            Error::Transient { message, .. } => Error::Unreachable {
                endpoint: self.addr.clone(),
                reason: message,
            },
            other => other,
        }
    }

    fn no_answer(&self, op: &'static str) -> Error {
        Error::Transient {
            op,
            message: format!("{} gave no answer within {:?}", self.addr, self.timeout),
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
        match tokio::time::timeout(self.timeout, cmd.query_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let err = map_err(op, &e);
                if err.is_transient() {
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

    /// Runs a script (EVALSHA, loading it on NOSCRIPT).
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        inv: &redis::ScriptInvocation<'_>,
    ) -> Result<T> {
        let mut c = self.conn().await?;
        match tokio::time::timeout(self.timeout, inv.invoke_async::<T>(&mut c)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                let err = map_err(op, &e);
                if err.is_transient() {
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

    /// A dedicated subscriber connection.
    pub(crate) async fn pubsub(&self) -> Result<PubSub> {
        match tokio::time::timeout(self.timeout, self.client.get_async_pubsub()).await {
            Ok(Ok(p)) => Ok(p),
            Ok(Err(e)) => Err(map_err("subscribe", &e)),
            Err(_) => Err(self.no_answer("subscribe")),
        }
    }
}
