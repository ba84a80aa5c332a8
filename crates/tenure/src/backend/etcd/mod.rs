//! The etcd v3 backend, wire-compatible with Go's `clientv3/concurrency` (v3.5 semantics):
//! a lock or election named `N` is the key prefix `N/`, each session's entry is
//! `N/<lease id in lowercase hex>`, and the owner is the entry with the lowest create revision.

mod deep;
mod keep_alive;
mod members;
mod observe;
mod session;
mod tls;
mod watch;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use etcd_client::{ConnectOptions, GetOptions};
use tokio::time::Instant;

use self::deep::DeepQueues;
use self::keep_alive::{EtcdRenewer, KeepAliveHub};
use self::members::{Members, ATTEMPT_TIMEOUT};
use self::session::EtcdSession;
use self::watch::WatchHub;
use super::heads::Heads;
use super::lease::spawn_keep_alive;
use super::queue::QueueSession;
use super::{Backend, SessionBackend};
use crate::liveness::Liveness;
use crate::retry::with_backoff;
use crate::retry::ATTEMPTS;
use crate::security::Security;
use crate::{Cause, Error, Result, Write};

// gRPC status codes (stable on the wire). etcd's own errors and their codes are listed in its
// `api/v3rpc/rpctypes/error.go`; 3.4 and 3.5 use the same codes.
const CANCELLED: i32 = 1;
const INVALID_ARGUMENT: i32 = 3;
const DEADLINE_EXCEEDED: i32 = 4;
const NOT_FOUND: i32 = 5;
const PERMISSION_DENIED: i32 = 7;
const RESOURCE_EXHAUSTED: i32 = 8;
const FAILED_PRECONDITION: i32 = 9;
const ABORTED: i32 = 10;
const UNAVAILABLE: i32 = 14;
const UNAUTHENTICATED: i32 = 16;

const AUTH_DISABLED: &str =
    "credentials were given but etcd has authentication disabled; drop them or enable auth";

/// The gRPC status code etcd answered with, if it answered with one.
fn grpc_code(e: &etcd_client::Error) -> Option<i32> {
    match e {
        etcd_client::Error::GRpcStatus(s) => Some(i32::from(s.code())),
        _ => None,
    }
}

/// Maps an etcd client error to ours, keeping retryable faults apart (C11), with `e` as the
/// source. etcd's "no leader", "leader changed", "request timed out" and "server stopped" are
/// all `Unavailable`, so they need no words of their own.
pub(super) fn map_err(op: &'static str, e: etcd_client::Error) -> Error {
    use etcd_client::Error as E;
    let message = e.to_string();
    let code = grpc_code(&e);
    let transient = match &e {
        E::GRpcStatus(s) => match i32::from(s.code()) {
            CANCELLED | DEADLINE_EXCEEDED | RESOURCE_EXHAUSTED | ABORTED | UNAVAILABLE => true,
            // Made on our side from a broken connection (a member killed mid-request: reset,
            // broken pipe), with that error as its source; the server never answered (C14).
            _ if std::error::Error::source(s).is_some() => true,
            // etcd's errors without a gRPC code of their own (sent as Unknown): a proposal
            // raft dropped, as it does while leadership moves, was not applied (C14).
            // So is its "too many requests" (applying has fallen behind committing), which a
            // lease grant answers as Unknown too (seen opening 10,000 sessions at once).
            _ => {
                s.message().contains("raft proposal dropped")
                    || s.message().contains("too many requests")
            }
        },
        E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => true,
        _ => false,
    };
    let source = Some(Cause::new(e));
    match code {
        // etcd's only Unauthenticated: a token it no longer accepts.
        Some(UNAUTHENTICATED) => Error::AuthFailed {
            message: format!("etcd no longer accepts our auth token ({message})"),
            source,
        },
        Some(PERMISSION_DENIED) => Error::PermissionDenied { message, source },
        // These codes are shared: a wrong user or password and an empty user name are two of
        // etcd's many InvalidArguments, "authentication is not enabled" one of its many
        // FailedPreconditions; only the (stable) message tells them apart.
        Some(INVALID_ARGUMENT) if message.contains("authentication failed") => Error::AuthFailed {
            message: format!("etcd refused the user name or password ({message})"),
            source,
        },
        Some(INVALID_ARGUMENT) if message.contains("user name is empty") => Error::AuthFailed {
            message: format!(
                "etcd has authentication enabled and no credentials were given ({message})"
            ),
            source,
        },
        Some(FAILED_PRECONDITION) if message.contains("authentication is not enabled") => {
            Error::InvalidOption {
                option: "credentials",
                reason: AUTH_DISABLED.into(),
                source,
            }
        }
        _ if transient => Error::Transient {
            op,
            message,
            source,
        },
        _ => Error::Store {
            op,
            message,
            source,
        },
    }
}

/// Whether `e` is etcd saying it has no such lease (expired or revoked): its only NotFound
/// outside the member API, which we never call.
pub(super) fn is_lease_not_found(e: &Error) -> bool {
    let Error::Store {
        source: Some(cause),
        ..
    } = e
    else {
        return false;
    };
    cause
        .downcast_ref::<etcd_client::Error>()
        .and_then(grpc_code)
        == Some(NOT_FOUND)
}

/// The store revision a response was answered at (0 if etcd sent no header).
pub(super) fn revision(header: Option<&etcd_client::ResponseHeader>) -> i64 {
    header.map_or(0, |h| h.revision())
}

/// `etcd://` as a [`Backend`].
pub(crate) struct EtcdBackend {
    members: Arc<Members>,
    watch: WatchHub,
    /// A few keep-alive streams, each lease renewed on one chosen by its ID: etcd answers a
    /// stream's renewals one after another, and under a heavy write load each waits for the
    /// applied index (etcd 3.4, 10,000 sessions on one stream: renewals went unanswered for
    /// the 20 s a 60 s TTL allows, "waiting for the applied index took too long").
    keep_alive: Vec<Arc<KeepAliveHub>>,
    /// Queue entries known to have been first, shared by this client's sessions.
    heads: Arc<Heads>,
    /// Queues this client last saw deep (`deep.rs`).
    deep: Arc<DeepQueues>,
}

/// How many keep-alive streams a client spreads its leases over (opened as leases need them).
const KEEP_ALIVE_STREAMS: u64 = 8;

impl EtcdBackend {
    /// Connects to `endpoints` (over TLS if `tls`) with the options of `security`, and
    /// proves with one cheap read that the cluster answers and accepts us. Members that do not
    /// answer are passed over (C14): only when none did within `timeout` is the cluster
    /// [`Error::Unreachable`].
    pub(crate) async fn connect(
        endpoints: &[String],
        tls: bool,
        security: &Security,
        timeout: Duration,
    ) -> Result<Self> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(timeout.min(ATTEMPT_TIMEOUT))
            .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
            .with_require_leader(true);
        if let Some((user, password)) = security.user_and_password()? {
            // Simple tokens expire (`--auth-token-ttl`, 5 min); renew them on refusal.
            opts = opts
                .with_user(user, password.expose())
                .with_auto_token_refresh(true);
        }
        let scheme = if tls {
            opts = opts.with_tls(tls::options(security, timeout)?);
            "https"
        } else if security.wants_tls() {
            return Err(crate::security::invalid(
                "tls",
                "TLS options were given for a plaintext etcd:// URL; use etcds://",
            ));
        } else {
            "http"
        };
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        let members = Arc::new(Members::new(urls, opts));
        probe(&members, endpoints, tls, security, timeout).await?;
        let watch = WatchHub::spawn(members.clone());
        let keep_alive = (0..KEEP_ALIVE_STREAMS)
            .map(|_| KeepAliveHub::new(members.clone()))
            .collect();
        Ok(EtcdBackend {
            members,
            watch,
            keep_alive,
            heads: Arc::default(),
            deep: Arc::default(),
        })
    }
}

/// One cheap read on every member at once, again until one answers or `timeout` passes; the
/// first to answer becomes the preferred member, so a client whose first endpoint is down or
/// stopped starts at the speed of the fastest one (C14). A user whose roles do not cover the
/// key is refused it, yet was authenticated: that is an answer.
async fn probe(
    members: &Members,
    endpoints: &[String],
    tls: bool,
    security: &Security,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = format!("no answer within {timeout:?}");
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::Unreachable {
                endpoint: endpoints.join(","),
                reason: last,
                source: None,
            });
        }
        let reads = (0..members.len()).map(|i| {
            Box::pin(async move {
                let member = members.member_at(i).await?;
                let mut kv = member.client.kv_client();
                let read = kv.get("\0", Some(GetOptions::new().with_count_only()));
                match tokio::time::timeout(ATTEMPT_TIMEOUT, read).await {
                    Ok(Ok(_)) => Ok(i),
                    Ok(Err(e)) => match connect_error(endpoints, tls, security, e) {
                        Error::PermissionDenied { .. } => Ok(i),
                        other => Err(other),
                    },
                    Err(_) => Err(Error::Unreachable {
                        endpoint: endpoints[i].clone(),
                        reason: format!("no answer within {ATTEMPT_TIMEOUT:?}"),
                        source: None,
                    }),
                }
            })
        });
        match tokio::time::timeout(left, futures_util::future::select_ok(reads)).await {
            Ok(Ok((first, _))) => {
                members.prefer(first);
                return Ok(());
            }
            Ok(Err(Error::Unreachable { reason, .. })) => last = reason,
            Ok(Err(e)) if e.is_transient() => last = e.to_string(),
            Ok(Err(e)) => return Err(e),
            Err(_) => continue,
        }
        tokio::time::sleep(crate::retry::jitter(Duration::from_millis(100)).min(left)).await;
    }
}

/// A failed connect or first read: a TLS problem, an auth refusal, or unreachable.
fn connect_error(
    endpoints: &[String],
    tls: bool,
    security: &Security,
    e: etcd_client::Error,
) -> Error {
    let endpoint = endpoints.join(",");
    let e = if tls {
        match tls::diagnose(&endpoint, security, e) {
            Ok(err) => return err,
            Err(e) => e,
        }
    } else {
        e
    };
    match map_err("connect", e) {
        Error::Transient {
            message, source, ..
        } => Error::Unreachable {
            endpoint,
            reason: message,
            source,
        },
        other => other,
    }
}

impl EtcdBackend {
    fn keep_alive_for(&self, lease: i64) -> Arc<KeepAliveHub> {
        let i = (lease as u64 % KEEP_ALIVE_STREAMS) as usize;
        self.keep_alive[i].clone()
    }
}

#[async_trait]
impl Backend for EtcdBackend {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn is_registered(&self, kv: &super::observe::Kv) -> bool {
        super::observe::leased_key(kv)
    }

    fn ttl_range(&self) -> (Duration, Duration) {
        (Duration::from_secs(1), Duration::from_secs(24 * 3600))
    }

    async fn open_session(&self, ttl: Duration) -> Result<Arc<dyn SessionBackend>> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let mut granted_at = Instant::now();
        // A lease granted by an attempt whose answer was lost holds nothing and runs out. The
        // lease that was answered started no earlier than its own attempt was sent.
        let grant = with_backoff(ATTEMPTS, || {
            granted_at = Instant::now();
            self.members.call("lease grant", |c| async move {
                c.lease_client().grant(secs as i64, None).await
            })
        })
        .await?;
        let granted = Duration::from_secs(grant.ttl().max(1) as u64);
        let liveness = Liveness::new();
        let renewer = EtcdRenewer::new(self.keep_alive_for(grant.id()), grant.id());
        let keep_alive = spawn_keep_alive(renewer, liveness.clone(), granted, granted_at, "etcd");
        let session = EtcdSession::new(
            self.members.clone(),
            self.watch.clone(),
            self.heads.clone(),
            self.deep.clone(),
            grant.id(),
            liveness,
            keep_alive,
        );
        Ok(Arc::new(QueueSession(Arc::new(session))))
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let resp = with_backoff(ATTEMPTS, || {
            self.members
                .call("get", |c| async move { c.kv_client().get(key, None).await })
        })
        .await?;
        Ok(resp.kvs().first().map(|kv| kv.value().to_vec()))
    }

    async fn write(&self, ops: &[Write]) -> Result<()> {
        let txn = || etcd_client::Txn::new().and_then(session::txn_ops(ops));
        // Unguarded writes set absolute values, so a repeat after a lost answer is harmless.
        with_backoff(ATTEMPTS, || {
            self.members
                .call("write", |c| async move { c.kv_client().txn(txn()).await })
        })
        .await
        .map(|_| ())
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<super::observe::Kv>> {
        with_backoff(ATTEMPTS, || observe::entries(&self.members, prefix))
            .await
            .map(|(kvs, _)| kvs)
    }

    async fn lease_ttl(&self, lease: u64) -> Result<Option<Duration>> {
        let resp = with_backoff(ATTEMPTS, || {
            self.members.call("lease ttl", |c| async move {
                c.lease_client().time_to_live(lease as i64, None).await
            })
        })
        .await?;
        Ok(u64::try_from(resp.ttl()).ok().map(Duration::from_secs))
    }

    async fn watch_prefix(&self, prefix: &str) -> Result<super::observe::PrefixWatch> {
        with_backoff(ATTEMPTS, || observe::watch_prefix(&self.members, prefix)).await
    }
}

#[cfg(test)]
mod tests {
    use tonic::{Code, Status};

    use super::*;

    fn from_etcd(code: Code, message: &str) -> Error {
        map_err(
            "op",
            etcd_client::Error::GRpcStatus(Status::new(code, message)),
        )
    }

    #[test]
    fn errors_are_told_by_grpc_code_and_keep_their_cause() {
        // etcd's messages (api/v3rpc/rpctypes/error.go) with their codes.
        for (code, message) in [
            (Code::Unavailable, "etcdserver: no leader"),
            (Code::Unavailable, "etcdserver: leader changed"),
            (Code::Unavailable, "etcdserver: request timed out"),
            (Code::ResourceExhausted, "etcdserver: too many requests"),
            // Seen on a 3-member cluster while leadership moved (it exited 69 before).
            (Code::Unknown, "raft proposal dropped"),
            // Answered to lease grants while applying lagged (10,000 sessions opened at once).
            (Code::Unknown, "etcdserver: too many requests"),
        ] {
            let e = from_etcd(code, message);
            assert!(e.is_transient(), "{message}: {e:?}");
        }
        let gone = from_etcd(Code::NotFound, "etcdserver: requested lease not found");
        assert!(matches!(gone, Error::Store { .. }) && is_lease_not_found(&gone));
        let store = from_etcd(Code::InvalidArgument, "etcdserver: key is not provided");
        assert!(matches!(store, Error::Store { .. }) && !is_lease_not_found(&store));
        for message in [
            "etcdserver: authentication failed, invalid user ID or password",
            "etcdserver: user name is empty",
        ] {
            let e = from_etcd(Code::InvalidArgument, message);
            assert!(matches!(e, Error::AuthFailed { .. }), "{message}: {e:?}");
        }
        let token = from_etcd(Code::Unauthenticated, "etcdserver: invalid auth token");
        assert!(matches!(token, Error::AuthFailed { .. }), "{token:?}");
        let denied = from_etcd(Code::PermissionDenied, "etcdserver: permission denied");
        assert!(
            matches!(denied, Error::PermissionDenied { .. }),
            "{denied:?}"
        );
        let disabled = from_etcd(
            Code::FailedPrecondition,
            "etcdserver: authentication is not enabled",
        );
        assert!(
            matches!(
                disabled,
                Error::InvalidOption {
                    option: "credentials",
                    ..
                }
            ),
            "{disabled:?}"
        );

        let source =
            std::error::Error::source(&denied).and_then(|s| s.downcast_ref::<etcd_client::Error>());
        let code = source.and_then(grpc_code);
        assert_eq!(code, Some(PERMISSION_DENIED), "{denied:?}");
        assert!(denied.to_string().contains("etcdserver: permission denied"));
    }
}
