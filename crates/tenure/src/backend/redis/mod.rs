//! The Redis backend: one instance (`redis://[user:password@]host:port[/db]`, or
//! `rediss://…` over TLS) or Redlock over independent masters (`redlock://h1:p1,h2:p2,h3:p3`).
//!
//! **TLS** (`rediss://`, for `redis-server --tls-port`): rustls with the *ring* provider, the
//! same one `etcds://` uses (no second crypto provider, no OpenSSL). The server certificate is
//! verified against [`crate::Builder::ca_file`] (default: the system's CA bundle) and must name
//! the URL's host, or [`crate::Builder::tls_server_name`] when connecting by address to a
//! certificate that carries a DNS name. [`crate::Builder::client_cert`] presents a client
//! certificate, for servers with `tls-auth-clients yes`. Failures are [`Error::Tls`] with a
//! [`crate::TlsProblem`]: `UntrustedServerCertificate`, `ServerNameMismatch`,
//! `ClientCertificateRequired` (under TLS 1.3 the server's refusal arrives with the first
//! reply, and is diagnosed there), `ClientCertificateRejected` or `Handshake`. TLS options on
//! a plaintext `redis://` URL are refused ([`Error::InvalidOption`]), never ignored; Redlock
//! speaks plaintext in this version. With `tls_server_name`, waiters wake by polling rather
//! than pub/sub (the redis crate's subscriber connection cannot be pointed at another host).
//!
//! **Authentication** (`AUTH`, Redis 6 ACLs): a user and password from the URL
//! (`redis://app1:pw@host`; a password alone, `redis://:pw@host`, is the `default` user's, as
//! with `requirepass`) or from the Builder ([`crate::Builder::credentials`],
//! [`crate::Builder::password_file`], which keeps it off command lines) — one or the other:
//! both is [`Error::InvalidOption`]. A wrong password, an unknown or disabled user, or none
//! given to a server that requires one is [`Error::AuthFailed`] from `connect`; a command or
//! key outside the user's ACL (`NOPERM`) is [`Error::PermissionDenied`], surfaced at once and
//! never retried. Passwords live in [`crate::Secret`]s and redacted URLs; Redis never echoes
//! them. A user confined to a prefix needs, beside its keys (`~app1:*`, which covers each
//! lock's `:fence` counter), the session heartbeat keys, its locks' waiter queues
//! (`tenure:queue:<name>`), its release and wake-up channels, for ephemeral keys the shared
//! index, owner and counter keys and its keys' channels, and these
//! commands (scripts' inner commands are checked too):
//!
//! ```text
//! ACL SETUSER app1 on >pw resetkeys ~app1:* ~tenure:session:* ~tenure:queue:app1:*
//!     ~tenure:ephemeral ~tenure:ephemeral:owners ~tenure:ephemeral:seq
//!     resetchannels &tenure:released:app1:* &tenure:wake:app1:* &tenure:ephemeral:app1:*
//!     -@all +ping +select +get +set +del +incr +pttl +pexpire +exists +publish
//!     +rpush +lpop +lrem +lindex +lpos +hget +hset +hdel +zadd +zrem +zrangebylex
//!     +subscribe +unsubscribe +psubscribe +punsubscribe +eval +evalsha +script|load
//! ```
//!
//! Watching a prefix is a pattern subscription to `tenure:ephemeral:<prefix>*`, which Redis
//! checks *literally* against the user's channel patterns: the rule above lets app1 watch
//! `app1:`; to watch `app1:services/` add `&tenure:ephemeral:app1:services/*` as well. The
//! index and owner entries are shared by all users (as the heartbeat keys are), but the
//! scripts read and write only keys under the prefix or key they are given.
//!
//! (`+config|get` as well lets `connect` check the eviction policy; see below.)
//!
//! Such a user cannot take, release or extend a lock outside its prefix. It can touch other
//! sessions' heartbeat keys (random 64-bit ids it is not told); deleting one makes that
//! session's next renewal give up its locks, as a revoked lease would.
//!
//! **Layout** (see [`scripts`] for the exact scripts): the lock name `N` *is* the Redis key,
//! as in the redis.io single-instance pattern, so redis-py's `Lock(N)` and redsync exclude us
//! and we exclude them. Acquire = `SET N <random> NX PX <ttl>` plus `INCR N:fence` in one
//! script; release = compare-and-delete that publishes on `tenure:released:N` and hands the
//! lock over to the head of N's waiter queue (see [`waiting`]); renewal =
//! compare-and-extend, every TTL/3, for all locks of a session at once (see [`session`]).
//!
//! **Fencing tokens (C2)** come from `INCR N:fence`, a key without expiry. On one primary they
//! strictly increase across *our* holders of `N` (holders using redis-py or redsync get none,
//! and do not advance it). They survive restarts only with persistence (`appendonly yes`), and
//! not a fail-over to a replica that had not received the last `INCR` — Redis replication is
//! asynchronous, so a promoted replica can also have lost the lock itself. Under Redlock see
//! [`redlock`]: the token is the largest counter of the granting majority, written back to it.
//!
//! **Eviction** can reset them too: under `maxmemory-policy allkeys-lru` (or any `allkeys-*`)
//! a full server may evict `N:fence`, which has no TTL, and the next acquire counts from 1
//! again, so a token can repeat one already handed out and a fenced resource would refuse the
//! new holder (or, having forgotten too, accept a stale one). A `volatile-*` policy is no way
//! out: it evicts keys with a TTL, which are the held locks themselves, so another client
//! could take a lock whose holder hears of it only at its next renewal. Run lock servers with
//! `noeviction` (Redis's default). `connect` asks each server (`CONFIG GET maxmemory-policy`,
//! alongside its `PING`) and logs a warning for any other policy; a server or user that
//! refuses `CONFIG` is simply not checked.
//!
//! **Reserved names.** `N:fence` is lock `N`'s counter and `tenure:session:<id>` a session's
//! heartbeat, so names ending in `:fence` or starting with `tenure:` are refused as lock names
//! and write targets ([`Error::InvalidName`]); any other name's keys can never meet them.
//!
//! **Where Redis is weaker than etcd, plainly:** waiting is FIFO only among Tenure clients
//! on one instance (redis-py's `Lock` and redsync do not queue and can take a free lock ahead
//! of our waiters), and not at all on Redlock (C3 is exempt there; see [`waiting`]); a lock deleted by someone else is noticed at the next renewal (within TTL/3),
//! not at once; guarded writes (C10) are a script on one instance (not available on Redlock);
//! and the lost signal can only be as truthful as Redis's own expiry clock.
//!
//! **Ephemeral keys and prefix watches** (one instance; Redlock refuses them): see
//! [`ephemeral`] for why they live with the heartbeat and how a watch sees expiries without
//! keyspace notifications. `status` lists them, and only them: locks have no index.
//!
//! **Elections are not offered** ([`Error::Unsupported`]). A leader key with `SET NX` and
//! renewal would give "at most one leader" as well as our mutex does, but not the rest of the
//! election contract: Redis has no revision-ordered watch, so `observe()` could only be built
//! on pub/sub, which drops messages across reconnects silently (it could neither promise "never
//! out of order" nor end with an error instead of silence), and `leader()` read from one
//! instance can be stale after an asynchronous fail-over. Use etcd or ZooKeeper for elections.

mod ephemeral;
mod node;
mod redlock;
pub(crate) mod rwlock;
pub(crate) mod scripts;
mod semaphore;
mod session;
mod subscriber;
mod waiting;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use self::node::{Access, Node};
use self::redlock::{drift, Nodes};
use self::scripts::{heartbeat_value, session_key, WRITE};
use self::session::{check_targets, RedisSession, Registry, SessionRenewer};
use super::lease::spawn_keep_alive;
use super::{observe, Backend, SessionBackend};
use crate::liveness::Liveness;
use crate::security::{invalid, Security};
use crate::url::RedisNode;
use crate::{Error, Result, Write};

/// Longest one request to a single instance may take before it counts as a transient fault.
const OP_TIMEOUT: Duration = Duration::from_secs(5);
/// Per-master request timeout under Redlock: short, so a dead master costs little.
const REDLOCK_NODE_TIMEOUT: Duration = Duration::from_millis(500);

/// Why elections (and anything built on them) are refused.
pub(crate) fn elections_unsupported() -> Error {
    Error::Unsupported {
        backend: "redis",
        what: "leader election",
        advice: "Redis has no ordered watch and replicates asynchronously, so leader() and observe() could report a stale or out-of-order leader; use etcd:// or zk:// for elections (a Redis mutex is fine for mutual exclusion)",
    }
}

/// Connects to one Redis server, or to independent masters for Redlock, and checks that
/// enough of them answer (all of one; a majority of Redlock's) and accept our credentials.
pub(crate) async fn connect(
    specs: &[RedisNode],
    redlock: bool,
    security: &Security,
    timeout: Duration,
) -> Result<Arc<dyn Backend>> {
    let per_node = if redlock {
        timeout.min(REDLOCK_NODE_TIMEOUT)
    } else {
        timeout.min(OP_TIMEOUT)
    };
    let password = security.password()?;
    let from_builder = security.user.is_some() || password.is_some();
    if from_builder
        && specs
            .iter()
            .any(|s| s.user.is_some() || s.password.is_some())
    {
        return Err(invalid(
            "credentials",
            "credentials were given both in the URL and to the Builder; give them in one place (the Builder's password_file keeps them off the command line)",
        ));
    }
    if security.user.is_some() && password.is_none() {
        return Err(invalid(
            "credentials",
            "a user name was given without a password",
        ));
    }
    let tls = specs.iter().any(|s| s.tls);
    if security.wants_tls() && !tls {
        return Err(invalid(
            "tls",
            if redlock {
                "TLS options were given for redlock://, which speaks plaintext to every master in this version"
            } else {
                "TLS options were given for a plaintext redis:// URL; use rediss://"
            },
        ));
    }
    let files = if tls {
        Some(security.tls_files()?)
    } else {
        None
    };
    let access = Access {
        user: security.user.as_deref(),
        password: password.as_ref(),
        tls: files.as_ref(),
        server_name: security.server_name.as_deref(),
    };
    let nodes = specs
        .iter()
        .map(|s| Node::new(s, &access, per_node))
        .collect::<Result<Vec<_>>>()?;
    if nodes.is_empty() {
        return Err(Error::InvalidUrl {
            url: "redis://".into(),
            reason: "no Redis server given".into(),
        });
    }
    let nodes = Arc::new(Nodes { nodes });
    let ping = redis::cmd("PING").clone();
    // Asked alongside the PING, so that it costs no extra wait.
    let (answered, ()) = tokio::join!(
        nodes.majority::<String>("connect", &ping),
        warn_if_evicting(&nodes)
    );
    match answered {
        Ok(_) => {}
        Err(Error::Transient {
            message, source, ..
        }) => {
            return Err(Error::Unreachable {
                endpoint: specs
                    .iter()
                    .map(|s| s.addr.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
                reason: message,
                source,
            })
        }
        Err(e) => return Err(e),
    }
    Ok(Arc::new(RedisBackend { nodes, redlock }))
}

/// What a `maxmemory-policy` other than `noeviction` may do to locks, if anything.
fn eviction_risk(policy: &str) -> Option<&'static str> {
    if policy.starts_with("allkeys-") {
        Some("may evict fencing counters (`<name>:fence`, kept without a TTL), after which tokens restart at 1 and can repeat an earlier holder's")
    } else if policy.starts_with("volatile-") {
        Some("may evict held locks (keys with a TTL), after which another client can take a lock its holder still believes it holds, until the next renewal")
    } else {
        None
    }
}

/// Warns when a server's `maxmemory-policy` may evict what locks rest on (see
/// [`eviction_risk`]). Best effort: a server or ACL user that refuses `CONFIG GET` is not
/// checked, and nothing fails.
async fn warn_if_evicting(nodes: &Nodes) {
    let get = redis::cmd("CONFIG")
        .arg("GET")
        .arg("maxmemory-policy")
        .clone();
    let answers = futures_util::future::join_all(
        nodes
            .nodes
            .iter()
            .map(|n| n.run::<Vec<String>>("config", &get)),
    )
    .await;
    for (node, answer) in nodes.nodes.iter().zip(answers) {
        match answer.as_deref() {
            Ok([_, policy]) => {
                if let Some(risk) = eviction_risk(policy) {
                    tracing::warn!(
                        server = %node.addr,
                        %policy,
                        "maxmemory-policy {policy} {risk}; run lock servers with maxmemory-policy noeviction"
                    );
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(server = %node.addr, error = %e, "cannot read maxmemory-policy")
            }
        }
    }
}

/// `redis://` or `redlock://` as a [`Backend`].
pub(crate) struct RedisBackend {
    nodes: Arc<Nodes>,
    redlock: bool,
}

fn ops_args(ops: &[Write]) -> redis::ScriptInvocation<'static> {
    let mut inv = WRITE.prepare_invoke();
    for op in ops {
        match op {
            Write::Put { key, value } => inv.key(key).arg("P").arg(value.as_slice()),
            Write::Delete { key } => inv.key(key).arg("D").arg(""),
        };
    }
    inv
}

#[async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        if self.redlock {
            "redlock"
        } else {
            "redis"
        }
    }

    fn ttl_range(&self) -> (Duration, Duration) {
        (Duration::from_secs(1), Duration::from_secs(24 * 3600))
    }

    fn elections(&self) -> Result<()> {
        Err(elections_unsupported())
    }

    async fn open_session(&self, ttl: Duration) -> Result<Arc<dyn SessionBackend>> {
        let id = fastrand::u64(1..);
        let sent = Instant::now();
        let set = redis::cmd("SET")
            .arg(session_key(id))
            .arg(heartbeat_value(id, ttl.as_millis() as u64))
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .clone();
        self.nodes.majority::<String>("session", &set).await?;
        let liveness = Liveness::new();
        let registry = Arc::new(Registry::default());
        let renewer = SessionRenewer {
            nodes: self.nodes.clone(),
            id,
            ttl,
            registry: registry.clone(),
        };
        let valid = ttl.saturating_sub(drift(ttl));
        let keep_alive = spawn_keep_alive(renewer, liveness.clone(), valid, sent, self.kind());
        Ok(Arc::new(RedisSession {
            id,
            nodes: self.nodes.clone(),
            ttl,
            liveness,
            registry,
            keep_alive,
            rw: Default::default(),
        }))
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let get = redis::cmd("GET").arg(key).clone();
        let answers = self.nodes.majority::<Option<Vec<u8>>>("get", &get).await?;
        // One instance: its answer. Redlock: the value a majority of masters agree on.
        let quorum = self.nodes.quorum();
        for a in &answers {
            if answers.iter().filter(|b| *b == a).count() >= quorum {
                return Ok(a.clone());
            }
        }
        Err(Error::Store {
            op: "get",
            message: format!("no majority of Redlock masters agree on the value of {key:?}"),
            source: None,
        })
    }

    async fn write(&self, ops: &[Write]) -> Result<()> {
        check_targets(ops)?;
        // One write is a plain SET or DEL: the store's own floor in benchmarks.
        if let [op] = ops {
            let cmd = match op {
                Write::Put { key, value } => {
                    redis::cmd("SET").arg(key).arg(value.as_slice()).clone()
                }
                Write::Delete { key } => redis::cmd("DEL").arg(key).clone(),
            };
            return self
                .nodes
                .majority::<redis::Value>("write", &cmd)
                .await
                .map(|_| ());
        }
        let inv = ops_args(ops);
        let results = self.nodes.all(|n| n.script::<i64>("write", &inv)).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        if ok >= self.nodes.quorum() {
            return Ok(());
        }
        match results.into_iter().find_map(|r| r.err()) {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn entries(&self, _prefix: &str) -> Result<Vec<observe::Kv>> {
        Err(Error::Unsupported {
            backend: "redis",
            what: "listing holders and waiters under a prefix",
            advice: "Redis cannot list keys under a prefix in order; inspect a lock with `redis-cli GET <name>`, `redis-cli PTTL <name>` and its waiters with `redis-cli LRANGE tenure:queue:<name> 0 -1`",
        })
    }

    async fn watch_prefix(&self, _prefix: &str) -> Result<observe::PrefixWatch> {
        Err(elections_unsupported())
    }

    // Only ephemeral keys can be listed (see `ephemeral.rs`): locks have no index.
    async fn entries_under(&self, prefix: &str) -> Result<Vec<observe::Kv>> {
        match self.nodes.nodes.as_slice() {
            [node] if !self.redlock => ephemeral::list(node, prefix).await,
            _ => self.entries(prefix).await,
        }
    }

    fn is_registered(&self, kv: &observe::Kv) -> bool {
        kv.lease != 0
    }

    async fn lease_ttl(&self, lease: u64) -> Result<Option<std::time::Duration>> {
        match self.nodes.nodes.as_slice() {
            [node] if lease != 0 && !self.redlock => ephemeral::session_ttl(node, lease).await,
            _ => Ok(None),
        }
    }

    async fn watch_keys(&self, prefix: &str) -> Result<observe::PrefixWatch> {
        if self.redlock {
            return Err(ephemeral::redlock_refuses("watching keys under a prefix"));
        }
        ephemeral::watch(self.nodes.clone(), prefix).await
    }
}
