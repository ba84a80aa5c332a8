//! The PostgreSQL backend (`postgres://USER@HOST:PORT/DB`, also `postgresql://`): session-level
//! advisory locks, released by the server the moment the connection that holds them ends.
//!
//! **Connections.** A session is one connection of its own (its *control* connection, whose
//! server process id is [`crate::Session::id`]), probed every TTL/3. Each lock the session
//! holds or waits for lives on one more connection of the session, taken from the session's
//! idle connections or opened when none is idle, and given back when the lock is released: a
//! `pg_advisory_lock` that waits blocks its connection, and on a connection shared with
//! anything else a wait would hold up the probe (and the session would be lost at its local
//! deadline) or the release of another lock of the session (which could deadlock with the
//! holder being waited for). So a session holding N locks at once uses N + 1 connections, and
//! one that locks one name at a time uses two; `max_connections` must allow for it.
//!
//! **Liveness (C7).** Every connection that holds a lock is probed every TTL/3 (`SELECT 1`)
//! with the local deadline of the other backends (the send instant of the last answered probe,
//! plus TTL, minus a margin), and the end of the connection itself (closed by the server, by
//! `pg_terminate_backend`, by a restart, or broken) fires `lost()` at once, since the server
//! has then released the lock. The control connection does the same for the session: when it
//! ends, the session is lost and every lock connection of the session is closed. Each
//! connection asks the server (`tcp_keepalives_*`, `tcp_user_timeout`) to drop it after about
//! one TTL without hearing from us, so that a holder whose machine dies or is cut off is
//! released after about the TTL (C6), never before its own deadline fired.
//!
//! **Waiting (C3).** A waiter waits in the server's own lock queue (`pg_advisory_lock`).
//! PostgreSQL grants a released lock to the waiters in the order they asked for it: a request
//! that conflicts with a waiter queued before it also waits (it does not barge past the
//! queue), and the release wakes only the first waiter (exclusive requests). Exceptions: the
//! deadlock detector may reorder a queue to break a deadlock, and a connection that already
//! holds the key is granted again at once (reentrant) — which Tenure never does, since each
//! lock has its connection. A cancelled `lock()` asks the server to cancel the wait (the
//! protocol's CancelRequest, on a connection of its own) and then releases whatever the
//! connection may have been granted meanwhile (`pg_advisory_unlock_all`); if anything fails the
//! connection is closed, which releases everything on it (C5). `try_lock` is one round trip
//! (`pg_try_advisory_lock`), and never jumps a queue: PostgreSQL grants a release to the
//! first waiter within the release itself, so there is no moment when a key is free while
//! someone waits.
//!
//! **Keys.** See [`key`]: a name maps to the key sqlx's `PgAdvisoryLock::new(name)` uses, and
//! `advisory:<i64>` names a key directly, for `psql` and other peers.
//!
//! **What Tenure keeps**, created on first use (at `connect`) in the first schema of the
//! role's `search_path`:
//!
//! ```sql
//! CREATE SEQUENCE tenure_fence;                                          -- fencing tokens
//! CREATE TABLE tenure_kv (key text PRIMARY KEY, value bytea NOT NULL);   -- Tenure::read/write, guarded writes
//! CREATE TABLE tenure_names (key bigint PRIMARY KEY, name text NOT NULL); -- names for `tenure status`
//! CREATE TABLE tenure_semaphores (name text PRIMARY KEY, tag bigint NOT NULL, permits integer NOT NULL);
//!                                            -- each semaphore's permit count and tag
//! ```
//!
//! A role that may not create them gets [`Error::PermissionDenied`] naming this SQL; create
//! them once as their owner and grant `USAGE, UPDATE` on the sequence and `SELECT, INSERT,
//! UPDATE, DELETE` on the tables. Key `6172891846722127361` is reserved (the transaction lock
//! under which they are created).
//!
//! **Fencing tokens (C2)** are `nextval('tenure_fence')`, taken in the same statement as
//! `pg_try_advisory_lock` when it grants, or right after `pg_advisory_lock` returns: always
//! while holding, so a later holder's token is larger. One sequence serves every name; tokens
//! increase across names too. Sequences are never rolled back, and survive a crash
//! (PostgreSQL logs them ahead and flushes that before the token's transaction commits).
//!
//! **Guarded writes (C10)** run in one statement on the holding connection that writes to
//! `tenure_kv` only if `pg_locks` shows that connection holding the key.
//!
//! **Listing (C15)** reads `pg_locks` (every advisory lock of the database, Tenure's or not),
//! `pg_stat_activity` (a Tenure holder's `application_name` is `<token> <value>`, truncated to
//! 63 bytes, non-ASCII shown as `?`) and `tenure_names`. A key Tenure never named is listed as
//! `advisory:<key>`. The holder lease's TTL is not reported.
//!
//! **Poolers.** Session-level advisory locks belong to the server connection; behind PgBouncer
//! in `pool_mode=transaction` (or `statement`) consecutive statements may run on different
//! server connections, and a lock would be released, or held for someone else, without
//! notice. `connect` opens two connections at once and checks that they are two server
//! processes, and that a session setting survives from one transaction to the next; every lock
//! statement checks it runs on the process the connection started on. Either failing is
//! [`Error::Unsupported`] naming the fix (connect directly, or use `pool_mode=session`).
//!
//! **Read/write locks** are the name's key held shared (readers, `pg_advisory_lock_shared`) or
//! exclusive (writers, the mutex's `pg_advisory_lock`), one connection per hold as for a
//! mutex. PostgreSQL queues a shared request behind a conflicting exclusive one queued before
//! it, so writers are not starved and readers that arrive together share. Downgrade takes the
//! shared lock on the holding connection and then releases the exclusive one, in one
//! statement (`sql::DOWNGRADE` says why no writer gets in). Release of a read/write hold is
//! `pg_advisory_unlock_all()`, whatever mode the connection holds.
//!
//! **Semaphores.** Semaphore `N` of `P` permits is P *permit slots*, the two-`int4` advisory
//! keys `(tag, 0)` … `(tag, P - 1)` with `tag` = `key::semaphore_tag(N)` (the low 32 bits
//! of the key of `N#semaphore`): the two-`int4` key space is separate from the one-`bigint`
//! space of mutexes, read/write locks and sqlx, so no slot is any lock's key. A permit is a
//! slot held by a lock connection of its own, so a crashed holder's permit frees at once with
//! its connection, and liveness, cancellation and release are the mutex's. Waiters line up on
//! the *queue key*, the one-`bigint` key of `N/locks` (the shared recipe's internal lock),
//! taken with `pg_try_advisory_lock` and else waited for with `pg_advisory_lock`, so they are
//! served in the server's queue order and only the head of the line is ever awake. The head
//! (holding the queue key) checks and records the count (`sql::SEM_RECORD`: a count recorded
//! in `tenure_semaphores` that differs while a slot of the tag is held is
//! [`Error::PermitsDisagree`]), then tries every slot in one statement (`sql::SEM_TRY_SLOT`:
//! `pg_try_advisory_lock(tag, i)` for i in 0..P, stopping at the first granted, and only then
//! the token and the release of the queue key). When every slot is taken it tries again after
//! 2 ms, doubling up to 50 ms (and at most TTL/10): it polls, because PostgreSQL tells nobody
//! when a crashed holder's slot frees, so a `NOTIFY` on release would still need this poll,
//! and the poll costs one statement per interval for the whole line, never one per waiter.
//! `try_acquire` tries the queue key and the slots without waiting and releases the queue key
//! if no slot was free, so it never jumps the line. A permit's key is `N/leases/<pid>`; two
//! names whose tags collide share slots, which lets fewer holders in, never more.
//!
//! **Elections are not offered** ([`Error::Unsupported`]): a leader could be an advisory lock
//! and its value a row, but PostgreSQL tells nobody when a connection ends — `LISTEN/NOTIFY`
//! has no notice for a leader whose connection died — so `observe()` could only poll, and would
//! report a leader that is already gone until the next poll.

mod conn;
pub(crate) mod key;
mod session;
pub(crate) mod sql;
mod tls;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::time::Instant;
use tokio_postgres::types::{ToSql, Type};

use self::conn::{Conn, Endpoint};
use self::session::PgSession;
use super::{observe, Backend, SessionBackend};
use crate::liveness::Liveness;
use crate::retry::{with_backoff, ATTEMPTS};
use crate::security::{invalid, Security};
use crate::url::{PgTarget, SslMode};
use crate::{Error, Result, Write};

/// Why elections are refused.
pub(crate) fn elections_unsupported() -> Error {
    Error::Unsupported {
        backend: "postgres",
        what: "leader election",
        advice: "PostgreSQL sends no notice when a leader's connection ends (LISTEN/NOTIFY cannot), so observe() could only poll and would report a leader already gone; use etcd:// or zk:// for elections (a PostgreSQL mutex is fine for mutual exclusion)",
    }
}

/// Why a connection through a transaction pooler is refused.
pub(crate) fn pooled() -> Error {
    Error::Unsupported {
        backend: "postgres",
        what: "a connection whose statements may run on different server processes (PgBouncer pool_mode=transaction or statement)",
        advice: "session-level advisory locks would be released or shared without notice; connect to PostgreSQL directly, or through PgBouncer with pool_mode=session",
    }
}

/// The server-side settings of every connection: drop us after about `ttl` without a word
/// from us (so a dead or cut-off holder is released after about the TTL, not after the
/// kernel's two hours), never sooner than our own deadline fires.
fn session_setup(ttl: Duration) -> String {
    let secs = ttl.as_secs().max(1);
    format!(
        "SET tcp_keepalives_idle = {}; SET tcp_keepalives_interval = {}; \
         SET tcp_keepalives_count = 5; SET tcp_user_timeout = {};",
        (secs / 2).max(1),
        (secs / 10).max(1),
        ttl.as_millis().max(1000)
    )
}

/// What every session of one [`PgBackend`] shares.
pub(crate) struct Shared {
    pub(crate) endpoint: Endpoint,
    /// For reads, writes, names and listing; reopened when it ends.
    conn: Mutex<Option<Conn>>,
    /// Names recorded in `tenure_names` by this process.
    named: StdMutex<HashSet<i64>>,
}

impl Shared {
    /// The shared connection, reopened if it ended.
    async fn conn(&self) -> Result<Conn> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref().filter(|c| !c.is_ended()) {
            return Ok(c.clone());
        }
        let c = self.endpoint.open("tenure", "").await?;
        *slot = Some(c.clone());
        Ok(c)
    }

    /// Runs one statement on the shared connection, retrying transient faults (every
    /// statement sent this way is safe to repeat).
    async fn query(
        &self,
        op: &'static str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        with_backoff(ATTEMPTS, || async {
            let c = self.conn().await?;
            let timeout = self.endpoint.timeout;
            match tokio::time::timeout(timeout, c.client.query_typed(sql, params)).await {
                Ok(r) => r.map_err(|e| self.endpoint.map(op, e)),
                Err(_) => Err(Error::Transient {
                    op,
                    message: format!("no answer within {timeout:?}"),
                    source: None,
                }),
            }
        })
        .await
    }

    /// Records `name` for `status`, once per name and process. Names of the form
    /// `advisory:<key>` are listed as such without it.
    pub(crate) async fn record_name(&self, name: &str, key: i64) -> Result<()> {
        if key::numeric(name).is_some() || self.lock_named().contains(&key) {
            return Ok(());
        }
        let recorded = self
            .query(
                "name",
                sql::NAME,
                &[(&key, Type::INT8), (&name, Type::TEXT)],
            )
            .await;
        // Tried once per name and process either way: a role that may not insert there would
        // otherwise pay a failed statement on every lock.
        self.lock_named().insert(key);
        recorded.map(|_| ())
    }

    fn lock_named(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.named.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Connects, checks the connection is session-stable, and creates what Tenure keeps if it is
/// missing.
pub(crate) async fn connect(
    target: &PgTarget,
    security: &Security,
    timeout: Duration,
) -> Result<Arc<dyn Backend>> {
    let user =
        match (&target.user, &security.user) {
            (Some(_), Some(_)) => return Err(invalid(
                "credentials",
                "a user name was given both in the URL and to the Builder; give it in one place",
            )),
            (Some(u), None) | (None, Some(u)) => u.clone(),
            (None, None) => {
                return Err(invalid(
                    "credentials",
                    "no user name: give it in the URL (postgres://USER@HOST/DB) or to the Builder",
                ))
            }
        };
    let mode = match target.sslmode {
        Some(mode) => mode,
        None if security.wants_tls() => SslMode::VerifyFull,
        None => SslMode::Disable,
    };
    let tls =
        match mode {
            SslMode::Disable if security.wants_tls() => return Err(invalid(
                "tls",
                "TLS options were given with sslmode=disable; use sslmode=require or verify-full",
            )),
            SslMode::Disable => None,
            SslMode::Require | SslMode::VerifyFull => {
                let name = security.server_name.as_deref().unwrap_or(&target.host);
                Some(tls::Tls::new(
                    &security.tls_files()?,
                    name,
                    mode == SslMode::VerifyFull,
                )?)
            }
        };
    let endpoint = Endpoint {
        host: target.host.clone(),
        port: target.port,
        db: target.db.clone().unwrap_or_else(|| user.clone()),
        user,
        password: security.password()?,
        tls,
        timeout,
    };
    let addr = endpoint.addr();
    let unreachable = |e: Error| match e {
        Error::Transient {
            message, source, ..
        } => Error::Unreachable {
            endpoint: addr.clone(),
            reason: message,
            source,
        },
        e => e,
    };
    let first = endpoint.open("tenure", "").await.map_err(&unreachable)?;
    check_session_stable(&endpoint, &first).await?;
    ensure_schema(&endpoint, &first).await?;
    Ok(Arc::new(PgBackend {
        shared: Arc::new(Shared {
            endpoint,
            conn: Mutex::new(Some(first)),
            named: StdMutex::default(),
        }),
    }))
}

/// Whether `c` is a server process of its own for as long as it lives: a setting made in one
/// transaction must be there in the next, on the same process, and a second connection opened
/// in between must be another process. Behind PgBouncer's `pool_mode=transaction` (or
/// `statement`) the second client is given the server connection the first just returned (its
/// default reuse is last-in, first-out), so the process ids match, or a later transaction of
/// the first lands elsewhere and the setting is gone.
async fn check_session_stable(endpoint: &Endpoint, c: &Conn) -> Result<()> {
    let mark = format!("{:016x}", fastrand::u64(..));
    let set = format!(
        "SELECT pg_backend_pid()::text, set_config('tenure.session_check', '{mark}', false)"
    );
    let get = "SELECT pg_backend_pid()::text, current_setting('tenure.session_check', true)";
    let own = c.pid.to_string();
    let first = first_row(endpoint, c, &set).await?;
    let other = endpoint.open("tenure", "").await?;
    let shared_process = other.pid == c.pid;
    drop(other);
    let second = first_row(endpoint, c, get).await?;
    let stable = !shared_process
        && first.as_ref().is_some_and(|(pid, _)| *pid == own)
        && second == Some((own, mark));
    if stable {
        Ok(())
    } else {
        Err(pooled())
    }
}

/// The first two columns of the first row of a simple query, as text.
async fn first_row(endpoint: &Endpoint, c: &Conn, sql: &str) -> Result<Option<(String, String)>> {
    let messages = c
        .client
        .simple_query(sql)
        .await
        .map_err(|e| endpoint.map("connect", e))?;
    Ok(messages.into_iter().find_map(|m| match m {
        tokio_postgres::SimpleQueryMessage::Row(r) => Some((
            r.get(0).unwrap_or_default().to_string(),
            r.get(1).unwrap_or_default().to_string(),
        )),
        _ => None,
    }))
}

/// Creates the sequence and tables if they are missing.
async fn ensure_schema(endpoint: &Endpoint, c: &Conn) -> Result<()> {
    let present = c
        .client
        .query_typed(sql::SCHEMA_PRESENT, &[])
        .await
        .map_err(|e| endpoint.map("connect", e))?;
    if present.first().and_then(|r| r.get::<_, Option<bool>>(0)) == Some(true) {
        return Ok(());
    }
    match c.client.batch_execute(sql::SCHEMA).await {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = c.client.batch_execute("ROLLBACK").await;
            match endpoint.map("connect", e) {
                Error::PermissionDenied { message, source } => Err(Error::PermissionDenied {
                    message: format!(
                        "{message}: this role may not create the objects Tenure keeps; create them once as their owner: \
                         CREATE SEQUENCE tenure_fence; CREATE TABLE tenure_kv (key text PRIMARY KEY, value bytea NOT NULL); \
                         CREATE TABLE tenure_names (key bigint PRIMARY KEY, name text NOT NULL); \
                         CREATE TABLE tenure_semaphores (name text PRIMARY KEY, tag bigint NOT NULL, permits integer NOT NULL); \
                         and grant USAGE, UPDATE on the sequence and SELECT, INSERT, UPDATE, DELETE on the tables"
                    ),
                    source,
                }),
                e => Err(e),
            }
        }
    }
}

/// `postgres://` as a [`Backend`].
pub(crate) struct PgBackend {
    shared: Arc<Shared>,
}

/// The final state of each key written by `ops`, in order: deletes and puts, disjoint.
pub(crate) fn fold(ops: &[Write]) -> (Vec<String>, Vec<String>, Vec<Vec<u8>>) {
    let mut last: BTreeMap<&str, Option<&[u8]>> = BTreeMap::new();
    for op in ops {
        match op {
            Write::Put { key, value } => last.insert(key, Some(value)),
            Write::Delete { key } => last.insert(key, None),
        };
    }
    let (mut del, mut keys, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for (k, v) in last {
        match v {
            Some(v) => {
                keys.push(k.to_string());
                values.push(v.to_vec());
            }
            None => del.push(k.to_string()),
        }
    }
    (del, keys, values)
}

/// Splits a `pg_stat_activity.application_name` of a Tenure holder into token and value.
fn holder_info(app: &str) -> (u64, Vec<u8>) {
    match app.split_once(' ') {
        Some((t, v)) if t.parse::<u64>().is_ok() => (t.parse().unwrap_or(0), v.as_bytes().to_vec()),
        _ => (0, app.as_bytes().to_vec()),
    }
}

#[async_trait]
impl Backend for PgBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn ttl_range(&self) -> (Duration, Duration) {
        (Duration::from_secs(1), Duration::from_secs(24 * 3600))
    }

    fn elections(&self) -> Result<()> {
        Err(elections_unsupported())
    }

    async fn open_session(&self, ttl: Duration) -> Result<Arc<dyn SessionBackend>> {
        let setup = session_setup(ttl);
        let mut sent = Instant::now();
        // A connection that failed to open holds nothing: opening again is safe (C13).
        let control = with_backoff(ATTEMPTS, || {
            sent = Instant::now();
            self.shared.endpoint.open("tenure session", &setup)
        })
        .await?;
        let liveness = Liveness::new();
        Ok(PgSession::start(
            self.shared.clone(),
            control,
            ttl,
            liveness,
            sent,
            setup,
        ))
    }

    async fn read(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let rows = self
            .shared
            .query("read", sql::READ, &[(&key, Type::TEXT)])
            .await?;
        Ok(rows.first().map(|r| r.get::<_, Vec<u8>>(0)))
    }

    async fn write(&self, ops: &[Write]) -> Result<()> {
        let (del, keys, values) = fold(ops);
        self.shared
            .query(
                "write",
                sql::WRITE,
                &[
                    (&del, Type::TEXT_ARRAY),
                    (&keys, Type::TEXT_ARRAY),
                    (&values, Type::BYTEA_ARRAY),
                ],
            )
            .await
            .map(|_| ())
    }

    async fn entries(&self, prefix: &str) -> Result<Vec<observe::Kv>> {
        let rows = self.shared.query("status", sql::LOCKS, &[]).await?;
        let mut out = Vec::new();
        let mut waiting: i64 = 0;
        for r in rows {
            let key: i64 = r.get(0);
            let pid: i32 = r.get(1);
            let granted: bool = r.get(2);
            let app: Option<String> = r.get(3);
            let name: Option<String> = r.get(4);
            let name = name.unwrap_or_else(|| format!("{}{key}", key::NUMERIC_PREFIX));
            if !name.starts_with(prefix) {
                continue;
            }
            let (token, value) = if granted {
                holder_info(app.as_deref().unwrap_or_default())
            } else {
                (0, Vec::new())
            };
            // The holder sorts first (`observe::first` takes the lowest), waiters after it.
            let create_rev = if granted {
                i64::try_from(token)
                    .unwrap_or(i64::MAX)
                    .min(i64::MAX - 1_000_000)
            } else {
                waiting += 1;
                i64::MAX - 1_000_000 + waiting
            };
            out.push(observe::Kv {
                key: format!("{name}/{pid}"),
                value,
                create_rev,
                lease: u64::try_from(pid).unwrap_or(1).max(1),
            });
        }
        // Permit slots, as the shared recipe lays them out (`<name>/leases/…`, recording the
        // count), so `status` shows a semaphore as one row; its queue key is listed above as
        // `<name>/locks/<pid>`, its line.
        let rows = self.shared.query("status", sql::PERMITS, &[]).await?;
        for r in rows {
            let name: String = r.get(0);
            let permits: i32 = r.get(1);
            let pid: i32 = r.get(2);
            let app: Option<String> = r.get(3);
            if !name.starts_with(prefix) {
                continue;
            }
            let (token, value) = holder_info(app.as_deref().unwrap_or_default());
            out.push(observe::Kv {
                key: format!("{name}/{}/{pid}", super::semaphore::LEASES),
                value: super::semaphore::record(u32::try_from(permits).unwrap_or(0), &value),
                create_rev: i64::try_from(token).unwrap_or(i64::MAX),
                lease: u64::try_from(pid).unwrap_or(1).max(1),
            });
        }
        Ok(out)
    }

    async fn watch_prefix(&self, _prefix: &str) -> Result<observe::PrefixWatch> {
        Err(elections_unsupported())
    }
}
