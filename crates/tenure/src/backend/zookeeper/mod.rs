//! The ZooKeeper backend (`zk://host:port[,host:port…][/chroot]`), laid out as Apache Curator
//! lays out its recipes, so that Curator services and we share one lock or election:
//!
//! - a name maps to the znode `/<name>` under the chroot (`jobs/nightly` = `/jobs/nightly`);
//! - a mutex is an InterProcessMutex: EPHEMERAL_SEQUENTIAL children `_c_<uuid>-lock-<seq>`
//!   under CONTAINER parents; the owner is the lowest sequence; each waiter watches only its
//!   predecessor; a create whose answer was lost is recovered by its `_c_<uuid>` prefix;
//!   node data = the holder's value (`Mutex::with_value`; Curator's is the holder's address);
//! - an election is a LeaderLatch: children `_c_<uuid>-latch-<seq>`, node data = value;
//! - the fencing token is the holder node's czxid (C2); guarded writes are a multi-op whose
//!   first operation checks that the holder node still exists (C10);
//! - the session lease is the ZooKeeper session; its negotiated timeout is the TTL. A
//!   Disconnected session is *suspended*; Expired, or the local deadline passing unconfirmed,
//!   is lost; a new session is never opened under a held guard (C7).
//!
//! With credentials ([`crate::Builder::credentials`]) every session authenticates with
//! ZooKeeper's digest scheme (`addAuth digest user:password`) and every node we create — the
//! chroot, the CONTAINER parents of a queue, the lock and election nodes, keys written — carries
//! the ACL *creator ALL, world READ*: anyone can list a queue and observe its leader, only
//! sessions with our identity can change it. ZooKeeper checks the permission to delete a node on
//! its *parent*, so "only the creator may delete this entry" can only be had by owning the
//! parent: queue parents are owned too, and a lock or election is therefore shared by the
//! sessions of one identity (the instances of one service) and refused, with
//! [`Error::PermissionDenied`], to other identities while its queue exists (Curator with a
//! creator-only `ACLProvider` behaves the same way; it applies that provider to parents).
//! Without credentials, nodes are open (`world:anyone ALL`), as before.
//!
//! Known limit: `observe()` re-lists after each (one-shot) child or data watch fires, so a
//! leader or value that lasted only between two re-lists can be missed; what it reports is
//! still never stale and in order.

mod layout;
mod observe;
mod ops;
mod session;
mod shared;
mod state;
mod tree;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use zookeeper_client as zk;

use self::session::ZkSession;
use super::queue::QueueSession;
use super::{Backend, SessionBackend};
use crate::liveness::LostReason;
use crate::security::{invalid, Security};
use crate::{Cause, Error, Result, Secret, Write};

/// Longest we wait for one request before calling it a transient fault (C11).
const OP_TIMEOUT: Duration = Duration::from_secs(5);

/// Session timeout of the backend's own client (reads, plain writes, observers).
const SHARED_SESSION_TIMEOUT: Duration = Duration::from_secs(10);

/// Maps a ZooKeeper client error to ours, keeping retryable faults apart (C11), with `e` as
/// the source. The client's error is ZooKeeper's error code (or its own connection fault), so
/// nothing here reads messages.
pub(super) fn map_err(op: &'static str, e: zk::Error) -> Error {
    use zk::Error as E;
    let source = Some(Cause::new(e.clone()));
    match e {
        // `Custom` comes only from the client's connection layer (no response within the
        // connection timeout, an I/O error, a writable server found): the request's outcome
        // is unknown, as with ConnectionLoss.
        E::ConnectionLoss
        | E::Timeout
        | E::Throttled
        | E::NoHosts
        | E::SessionMoved
        | E::Custom(_) => Error::Transient {
            op,
            message: e.to_string(),
            source,
        },
        E::SessionExpired => Error::SessionLost {
            reason: LostReason::LeaseExpired,
        },
        E::ClientClosed => Error::SessionLost {
            reason: LostReason::SessionClosed,
        },
        E::NoAuth => Error::PermissionDenied {
            message: format!(
                "ZooKeeper refused {op} (NoAuth): the node's ACL does not grant it to this \
                 session's identity; the node belongs to another user, or the password is wrong \
                 (ZooKeeper accepts any digest password and only fails the ACL checks after)"
            ),
            source,
        },
        E::AuthFailed => Error::AuthFailed {
            message: format!("ZooKeeper refused the session's authentication during {op}"),
            source,
        },
        other => Error::Store {
            op,
            message: other.to_string(),
            source,
        },
    }
}

/// The error for a watch ended by a terminal session state.
pub(super) fn state_err(state: zk::SessionState) -> Error {
    match state {
        zk::SessionState::Expired => Error::SessionLost {
            reason: LostReason::LeaseExpired,
        },
        zk::SessionState::AuthFailed => Error::AuthFailed {
            message: "ZooKeeper refused the session's authentication".into(),
            source: None,
        },
        zk::SessionState::Closed => Error::SessionLost {
            reason: LostReason::SessionClosed,
        },
        other => Error::Transient {
            op: "watch",
            message: format!("session {other}"),
            source: None,
        },
    }
}

/// Runs one request with [`OP_TIMEOUT`], mapping errors.
pub(super) async fn call<T>(
    op: &'static str,
    fut: impl std::future::Future<Output = std::result::Result<T, zk::Error>>,
) -> Result<T> {
    super::call_with(op, OP_TIMEOUT, fut, map_err).await
}

/// Like [`call`], with ZooKeeper's NoNode as `None`.
pub(super) async fn call_node<T>(
    op: &'static str,
    fut: impl std::future::Future<Output = std::result::Result<T, zk::Error>>,
) -> Result<Option<T>> {
    call(op, async {
        match fut.await {
            Ok(v) => Ok(Some(v)),
            Err(zk::Error::NoNode) => Ok(None),
            Err(e) => Err(e),
        }
    })
    .await
}

/// Digest credentials: ZooKeeper's `addAuth digest user:password`.
#[derive(Clone, Debug)]
pub(super) struct Digest {
    user: String,
    password: Secret,
}

impl Digest {
    /// The digest credentials of `security`, if any; TLS options are refused.
    fn from_security(security: &Security) -> Result<Option<Digest>> {
        if security.wants_tls() {
            return Err(invalid(
                "tls",
                "ZooKeeper TLS is not supported by this version of tenure; use a plaintext \
                 zk:// URL (on a trusted network or through a TLS tunnel), or the etcd backend",
            ));
        }
        let Some((user, password)) = security.user_and_password()? else {
            return Ok(None);
        };
        if user.is_empty() || user.contains(':') {
            return Err(invalid(
                "credentials",
                format!("ZooKeeper digest user {user:?} must be non-empty and contain no ':'"),
            ));
        }
        Ok(Some(Digest { user, password }))
    }
}

/// Lock and election nodes, their parents and written keys, with credentials: the creator's
/// identity may do anything, everyone may read (list a queue, observe its leader).
static OWNED: [zk::Acl; 2] = [
    zk::Acl::new_const(zk::Permission::ALL, "auth", ""),
    zk::Acl::new_const(zk::Permission::READ, "world", "anyone"),
];

/// Where the ensemble is: the connect string without chroot, the chroot, and the credentials.
#[derive(Clone, Debug)]
pub(super) struct Ensemble {
    hosts: String,
    chroot: Option<String>,
    auth: Option<Digest>,
}

impl Ensemble {
    /// Opens a session of `timeout` (detached: dropping the client does not close it).
    pub(super) async fn connect(&self, timeout: Duration, wait: Duration) -> Result<zk::Client> {
        let connector = zk::Client::connector()
            .with_session_timeout(timeout)
            .with_detached();
        self.connect_with(connector, wait).await
    }

    /// The ACLs of the nodes this ensemble's sessions create: owned with credentials, open
    /// without (an `auth` ACL needs an authenticated session).
    pub(super) fn acls(&self) -> zk::Acls<'static> {
        match self.auth {
            Some(_) => zk::Acls::new(&OWNED),
            None => zk::Acls::anyone_all(),
        }
    }

    async fn connect_with(&self, connector: zk::Connector, wait: Duration) -> Result<zk::Client> {
        let unreachable = |reason: String, source: Option<Cause>| Error::Unreachable {
            endpoint: format!("zk://{}", self.hosts),
            reason,
            source,
        };
        let connector = match &self.auth {
            None => connector,
            Some(d) => {
                let token = format!("{}:{}", d.user, d.password.expose());
                connector.with_auth("digest", token.as_bytes())
            }
        };
        let client = match tokio::time::timeout(wait, connector.connect(&self.hosts)).await {
            Ok(Ok(c)) => c,
            Ok(Err(zk::Error::AuthFailed)) => {
                let user = self.auth.as_ref().map(|d| d.user.as_str()).unwrap_or("");
                return Err(Error::AuthFailed {
                    message: format!(
                        "ZooKeeper at {} refused the session's authentication (digest user \
                         {user:?}; a server with zookeeper.enforce.auth.enabled also refuses \
                         sessions without credentials)",
                        self.hosts
                    ),
                    source: Some(Cause::new(zk::Error::AuthFailed)),
                });
            }
            Ok(Err(e)) => return Err(unreachable(e.to_string(), Some(Cause::new(e)))),
            Err(_) => return Err(unreachable(format!("no session within {wait:?}"), None)),
        };
        match &self.chroot {
            None => Ok(client),
            Some(root) => client.chroot(root.as_str()).map_err(|_| Error::InvalidUrl {
                url: format!("zk://{}{root}", self.hosts),
                reason: format!("bad chroot path {root:?}"),
            }),
        }
    }

    /// Closes a (detached) session from a second client attached to it: the only way to send
    /// CloseSession for it, which deletes its ephemeral nodes at once.
    pub(super) async fn close_session(&self, session: zk::SessionInfo, timeout: Duration) {
        let connector = zk::Client::connector()
            .with_session(session)
            .with_session_timeout(timeout);
        let Ok(client) = self.connect_with(connector, OP_TIMEOUT).await else {
            return; // Already expired or unreachable: the server ends it on its own.
        };
        let mut states = client.state_watcher();
        drop(client);
        let _ = tokio::time::timeout(OP_TIMEOUT, async {
            while !states.changed().await.is_terminated() {}
        })
        .await;
    }
}

/// `zk://` as a [`Backend`].
pub(crate) struct ZkBackend {
    ensemble: Ensemble,
    client: zk::Client,
    /// What its sessions share: queue listings on `client`, and known queue heads.
    shared: Arc<shared::Shared>,
}

/// Connects to a ZooKeeper ensemble, creating the chroot node if it is missing. With
/// credentials in `security`, sessions authenticate with them and the nodes they create are
/// owned (see the module docs); TLS options are refused.
pub(crate) async fn connect(
    hosts: &[String],
    chroot: Option<&str>,
    security: &Security,
    timeout: Duration,
) -> Result<Arc<dyn Backend>> {
    let plain = Ensemble {
        hosts: hosts.join(","),
        chroot: None,
        auth: Digest::from_security(security)?,
    };
    let root = plain.connect(SHARED_SESSION_TIMEOUT, timeout).await?;
    if let Some(path) = chroot.filter(|c| *c != "/") {
        let options = zk::CreateMode::Persistent.with_acls(plain.acls());
        // An existing chroot is used as it is (its parent may not let us create anything).
        let exists = call_node("check chroot", root.check_stat(path)).await?;
        let made = match exists.flatten() {
            Some(_) => Ok(()),
            None => call("create chroot", root.mkdir(path, &options)).await,
        };
        match made {
            Ok(()) => {}
            Err(Error::Store { message, .. }) => {
                return Err(Error::InvalidUrl {
                    url: format!("zk://{}{path}", plain.hosts),
                    reason: format!("cannot create the chroot node {path:?}: {message}"),
                })
            }
            Err(e) => return Err(e),
        }
    }
    let ensemble = Ensemble {
        hosts: plain.hosts,
        chroot: chroot.filter(|c| *c != "/").map(str::to_string),
        auth: plain.auth,
    };
    // The chroot is in place: close the probe session, open the one we keep.
    drop(root);
    let client = ensemble.connect(SHARED_SESSION_TIMEOUT, timeout).await?;
    let shared = shared::Shared::new(client.clone());
    Ok(Arc::new(ZkBackend {
        ensemble,
        client,
        shared,
    }))
}

#[async_trait]
impl Backend for ZkBackend {
    fn kind(&self) -> &'static str {
        "zk"
    }

    fn is_registered(&self, kv: &super::observe::Kv) -> bool {
        kv.lease != 0 && layout::sequence(layout::node_name(&kv.key)).is_none()
    }

    fn ttl_range(&self) -> (Duration, Duration) {
        // The server narrows it further (minSessionTimeout, maxSessionTimeout); the negotiated
        // timeout is the TTL the session then uses.
        (Duration::from_secs(1), Duration::from_secs(24 * 3600))
    }

    async fn open_session(&self, ttl: Duration) -> Result<Arc<dyn SessionBackend>> {
        let session = ZkSession::open(self.ensemble.clone(), ttl, self.shared.clone()).await?;
        Ok(Arc::new(QueueSession(session)))
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let path = layout::path_of(key)?;
        let got = call_node("get", self.client.get_data(&path)).await?;
        Ok(got.map(|(data, _)| data))
    }

    async fn write(&self, ops: &[Write]) -> Result<()> {
        let acls = self.ensemble.acls();
        ops::commit(&self.client, acls, None, ops).await.map(|_| ())
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<super::observe::Kv>> {
        let dir = layout::dir_of(prefix)?;
        observe::entries(&self.client, &dir).await
    }

    async fn entries_under(&self, prefix: &str) -> Result<Vec<super::observe::Kv>> {
        tree::entries_under(&self.client, prefix).await
    }

    fn rooted_names(&self) -> bool {
        true
    }

    async fn watch_prefix(&self, prefix: &str) -> Result<super::observe::PrefixWatch> {
        let dir = layout::dir_of(prefix)?;
        observe::watch_prefix(self.client.clone(), dir, observe::Watched::Queue).await
    }

    async fn watch_keys(&self, prefix: &str) -> Result<super::observe::PrefixWatch> {
        let dir = layout::dir_of(prefix)?;
        observe::watch_prefix(self.client.clone(), dir, observe::Watched::Keys).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_to_typed_variants() {
        for transient in [
            zk::Error::ConnectionLoss,
            zk::Error::Timeout,
            zk::Error::Throttled,
        ] {
            assert!(map_err("op", transient).is_transient());
        }
        assert!(matches!(
            map_err("op", zk::Error::SessionExpired),
            Error::SessionLost {
                reason: LostReason::LeaseExpired
            }
        ));
        let denied = map_err("unlock", zk::Error::NoAuth);
        assert!(
            matches!(denied, Error::PermissionDenied { .. }),
            "{denied:?}"
        );
        assert!(denied.to_string().contains("password is wrong"), "{denied}");
        let source = std::error::Error::source(&denied);
        assert_eq!(
            source.and_then(|s| s.downcast_ref::<zk::Error>()),
            Some(&zk::Error::NoAuth),
            "the client's error is the source: {denied:?}"
        );
        assert!(matches!(
            map_err("op", zk::Error::AuthFailed),
            Error::AuthFailed { .. }
        ));
        assert!(matches!(
            state_err(zk::SessionState::AuthFailed),
            Error::AuthFailed { .. }
        ));
        assert!(!denied.is_transient() && denied.is_permission());
        assert!(matches!(
            map_err("op", zk::Error::NotEmpty),
            Error::Store { .. }
        ));
    }

    #[tokio::test]
    async fn unreachable_ensemble_is_a_typed_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap_or(1);
        let res = connect(
            &[format!("127.0.0.1:{port}")],
            None,
            &Security::default(),
            Duration::from_millis(500),
        )
        .await;
        assert!(matches!(res, Err(Error::Unreachable { .. })), "{res:?}");
    }

    #[tokio::test]
    async fn unusable_security_options_are_refused_before_connecting() {
        use crate::security::PasswordSource;
        let tls = Security {
            ca_file: Some("ca.pem".into()),
            ..Default::default()
        };
        let colon = Security {
            user: Some("a:b".into()),
            password: Some(PasswordSource::Value("pw".into())),
            ..Default::default()
        };
        for (security, option) in [(tls, "tls"), (colon, "credentials")] {
            let res = connect(&["127.0.0.1:1".into()], None, &security, OP_TIMEOUT).await;
            assert!(
                matches!(&res, Err(Error::InvalidOption { option: o, .. }) if *o == option),
                "{res:?}"
            );
        }
    }
}

/// What the conformance suite's administrator needs: the layout, and a way to end any session
/// of this process from outside (ZooKeeper has no "revoke": one attaches to the session with
/// its id and password and closes it, as Curator's `KillSession` does).
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    use std::time::Duration;

    use zookeeper_client as zk;

    use super::{layout, Ensemble};

    use crate::liveness::Liveness;

    type Registry = Mutex<HashMap<u64, (Ensemble, zk::SessionInfo, Duration, Liveness)>>;

    fn registry() -> &'static Registry {
        static SESSIONS: OnceLock<Registry> = OnceLock::new();
        SESSIONS.get_or_init(Registry::default)
    }

    /// Remembers a session so that [`kill_session`] can end it.
    pub(super) fn register(
        ensemble: &Ensemble,
        info: &zk::SessionInfo,
        timeout: Duration,
        liveness: &Liveness,
    ) {
        let mut map = registry().lock().unwrap_or_else(|e| e.into_inner());
        let entry = (ensemble.clone(), info.clone(), timeout, liveness.clone());
        map.insert(info.id().0 as u64, entry);
    }

    /// Closes session `id` from a second connection, until its owner hears that it expired.
    /// (The owner's client reconnects to its session when the second connection takes it
    /// over; if that happens before the close lands, the close is repeated.)
    pub(crate) async fn kill_session(id: u64) {
        let found = registry()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
        let (ensemble, info, timeout, liveness) = found.expect("a session of this process");
        for _ in 0..20 {
            ensemble.close_session(info.clone(), timeout).await;
            let heard = tokio::time::timeout(Duration::from_secs(2), liveness.lost()).await;
            if heard.is_ok() {
                return;
            }
        }
        panic!("session {id:x} could not be killed");
    }

    /// The queue directory of a `<name>/` prefix.
    pub(crate) fn dir(prefix: &str) -> String {
        layout::dir_of(prefix).expect("a valid test name")
    }

    /// `children` of `dir` as full paths in queue order.
    pub(crate) fn ordered(dir: &str, children: Vec<String>) -> Vec<String> {
        layout::queue_order(children)
            .iter()
            .map(|c| layout::child(dir, c))
            .collect()
    }
}
