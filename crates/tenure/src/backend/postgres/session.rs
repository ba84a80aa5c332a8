//! A PostgreSQL session: a control connection probed every TTL/3, and one connection per lock
//! held or waited for (see the module docs of `backend/postgres` for why).

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::Row;

use super::conn::Conn;
use super::{key, pooled, sql, Shared};
use crate::backend::lease::{safety_margin, spawn_keep_alive, Renewer};
use crate::backend::{Grant, RwMode, SessionBackend};
use crate::liveness::{Liveness, LostReason};
use crate::retry::while_alive;
use crate::waiting::{self, Waiting};
use crate::{Error, Result, Write};

/// Idle lock connections a session keeps for its next locks.
const IDLE_KEPT: usize = 2;

/// Probes one connection: `SELECT 1` answered means the server process, and every lock it
/// holds, was alive when the probe was sent.
struct Prober {
    conn: Conn,
    ttl: Duration,
}

#[async_trait]
impl Renewer for Prober {
    async fn renew(&mut self) -> Result<Option<Duration>> {
        match self.conn.client.query_typed(sql::PROBE, &[]).await {
            Ok(_) => Ok(Some(self.ttl)),
            // A connection that ended fires lost() through its watcher, with the reason.
            Err(e) => Err(Error::Transient {
                op: "probe",
                message: e.to_string(),
                source: None,
            }),
        }
    }
}

/// A lock connection holding a grant.
struct Holding {
    conn: Conn,
    /// The advisory key; for a permit, its slot's (`key::slot_key`).
    key: i64,
    kind: Kind,
    tasks: [AbortHandle; 2],
}

impl Drop for Holding {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// What a lock connection holds, and so how it is released.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A mutex: `UNLOCK`.
    Mutex,
    /// A read/write lock's grant, released with `UNLOCK_RW` (it may hold the shared lock, or
    /// both after a downgrade abandoned midway).
    Rw,
    /// A semaphore's permit slot (a two-`int4` key): `SEM_UNLOCK`.
    Permit,
}

/// The longest pause between two tries of the permit slots by the head of a semaphore's
/// line (it starts at `SLOT_POLL_FIRST` and doubles); also bounded by TTL/10.
const SLOT_POLL_MAX: Duration = Duration::from_millis(50);
const SLOT_POLL_FIRST: Duration = Duration::from_millis(2);

/// What the session's tasks share.
#[derive(Default)]
struct Conns {
    idle: StdMutex<Vec<Conn>>,
    held: StdMutex<HashMap<u64, Holding>>,
    /// Set once the session ended: every connection is closed, none is kept.
    ended: std::sync::atomic::AtomicBool,
    /// Set by `abandon`: connections are closed when the server would drop them, not when the
    /// lost signal fires.
    abandoned: std::sync::atomic::AtomicBool,
}

impl Conns {
    fn give_back(&self, conn: Conn) {
        if self.ended.load(std::sync::atomic::Ordering::SeqCst) || conn.is_ended() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < IDLE_KEPT {
            idle.push(conn);
        }
    }

    fn take_idle(&self) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(c) = idle.pop() {
            if !c.is_ended() {
                return Some(c);
            }
        }
        None
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Holding>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes every connection (the server releases whatever they held).
    fn close_all(&self) {
        self.ended.store(true, std::sync::atomic::Ordering::SeqCst);
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).clear();
        let held: Vec<Holding> = self.held().drain().map(|(_, h)| h).collect();
        drop(held);
    }
}

/// A lock connection between taking it and a grant or a definite "not granted": if the
/// acquisition ends meanwhile (dropped, failed, session lost), the connection may be waiting
/// in the server's queue or may hold the lock, so the server is asked to cancel the wait, the
/// connection's locks are released, and it is closed (C5).
struct Pending {
    conn: Option<Conn>,
    armed: bool,
    shared: Arc<Shared>,
    conns: Arc<Conns>,
}

impl Pending {
    fn conn(&self) -> Result<&Conn> {
        self.conn.as_ref().ok_or_else(|| Error::Store {
            op: "lock",
            message: "no connection".into(),
            source: None,
        })
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.armed {
            self.conns.give_back(conn);
            return;
        }
        let shared = self.shared.clone();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("no runtime to cancel an abandoned lock wait; closing its connection");
            return;
        };
        rt.spawn(withdraw(shared, conn));
    }
}

/// Cancels whatever `conn` runs (a wait in the lock queue) and releases what it may have been
/// granted, then closes it. A cancel request can overtake the statement it is meant for (it
/// travels on a connection of its own) and then cancels nothing, so it is sent again until the
/// connection answers the release queued behind the wait.
async fn withdraw(shared: Arc<Shared>, conn: Conn) {
    let release = conn.client.query_typed(sql::UNLOCK_ALL, &[]);
    tokio::pin!(release);
    let mut pause = Duration::from_millis(50);
    for _ in 0..120 {
        if conn.is_ended() {
            return;
        }
        if let Err(e) = shared.endpoint.cancel(&conn).await {
            tracing::debug!(error = %e, "cancel request");
        }
        tokio::select! {
            _ = &mut release => return,
            () = conn.ended() => return,
            () = tokio::time::sleep(pause) => {}
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
    tracing::warn!(
        pid = conn.pid,
        "an abandoned lock wait did not end; closing its connection, and the server will drop it when the wait ends"
    );
}

/// The session as a [`SessionBackend`].
pub(crate) struct PgSession {
    shared: Arc<Shared>,
    control: StdMutex<Option<Conn>>,
    id: u64,
    ttl: Duration,
    setup: String,
    liveness: Liveness,
    keep_alive: AbortHandle,
    conns: Arc<Conns>,
}

impl PgSession {
    pub(crate) fn start(
        shared: Arc<Shared>,
        control: Conn,
        ttl: Duration,
        liveness: Liveness,
        sent: Instant,
        setup: String,
    ) -> Arc<PgSession> {
        let keep_alive = spawn_keep_alive(
            Prober {
                conn: control.clone(),
                ttl,
            },
            liveness.clone(),
            ttl,
            sent,
            "postgres",
        );
        let conns = Arc::new(Conns::default());
        // The control connection's end is the session's; the session's end closes every lock
        // connection, so that nothing outlives the lost signal on the server.
        tokio::spawn({
            let (control, liveness, conns) = (control.clone(), liveness.clone(), conns.clone());
            async move {
                tokio::select! {
                    () = control.ended() => liveness.lose(LostReason::LeaseExpired),
                    _ = liveness.lost() => {}
                }
                if !conns.abandoned.load(std::sync::atomic::Ordering::SeqCst) {
                    conns.close_all();
                }
            }
        });
        Arc::new(PgSession {
            shared,
            id: u64::try_from(control.pid).unwrap_or_default(),
            control: StdMutex::new(Some(control)),
            ttl,
            setup,
            liveness,
            keep_alive,
            conns,
        })
    }

    async fn lock_conn(&self) -> Result<Conn> {
        if let Some(c) = self.conns.take_idle() {
            return Ok(c);
        }
        self.shared.endpoint.open("tenure lock", &self.setup).await
    }

    fn check_pid(conn: &Conn, row: &Row) -> Result<()> {
        let pid: i32 = row.try_get(row.len() - 1).unwrap_or_default();
        if pid == conn.pid {
            Ok(())
        } else {
            Err(pooled())
        }
    }

    fn one_row(rows: Vec<Row>, op: &'static str) -> Result<Row> {
        rows.into_iter().next().ok_or_else(|| Error::Store {
            op,
            message: "no row in the answer".into(),
            source: None,
        })
    }

    async fn run(
        &self,
        conn: &Conn,
        op: &'static str,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
        bounded: bool,
    ) -> Result<Row> {
        let fut = conn.client.query_typed(sql, params);
        let rows = if bounded {
            let timeout = self.shared.endpoint.timeout;
            match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Error::Transient {
                        op,
                        message: format!("no answer within {timeout:?}"),
                        source: None,
                    })
                }
            }
        } else {
            fut.await
        };
        Self::one_row(rows.map_err(|e| self.shared.endpoint.map(op, e))?, op)
    }

    /// One attempt: try, then (if `wait`) wait in the server's queue; the holding connection,
    /// the token and the send instant of the statement that confirmed it.
    async fn attempt(
        &self,
        name: &str,
        key: i64,
        value: &str,
        wait: bool,
        mode: RwMode,
    ) -> Result<(Conn, u64, Instant)> {
        if let Some(reason) = self.liveness.reason() {
            return Err(Error::SessionLost { reason });
        }
        let mut pending = Pending {
            conn: Some(self.lock_conn().await?),
            armed: false,
            shared: self.shared.clone(),
            conns: self.conns.clone(),
        };
        let conn = pending.conn()?.clone();
        let sent = Instant::now();
        pending.armed = true;
        let try_params: [(&(dyn ToSql + Sync), Type); 2] =
            [(&key, Type::INT8), (&value, Type::TEXT)];
        let (try_sql, wait_sql) = match mode {
            RwMode::Write => (sql::TRY_LOCK, sql::LOCK),
            RwMode::Read => (sql::TRY_LOCK_SHARED, sql::LOCK_SHARED),
        };
        let (tried, named) = tokio::join!(
            self.run(&conn, "lock", try_sql, &try_params, true),
            self.shared.record_name(name, key)
        );
        if let Err(e) = named {
            tracing::warn!(%name, error = %e, "could not record the lock's name for status");
        }
        let row = tried?;
        Self::check_pid(&conn, &row)?;
        if let Some(token) = row.get::<_, Option<i64>>(0) {
            pending.conn = None;
            return Ok((conn, token as u64, sent));
        }
        // Not granted: pg_try_advisory_lock took nothing.
        pending.armed = false;
        let holder = row
            .get::<_, Option<i32>>(1)
            .map(|pid| format!("{name}/{pid}"));
        if !wait {
            return Err(Error::Locked {
                name: name.to_string(),
                holder,
            });
        }
        waiting::note(Waiting::Queued { ahead: holder });
        pending.armed = true;
        let lock_params: [(&(dyn ToSql + Sync), Type); 1] = [(&key, Type::INT8)];
        let waited = tokio::select! {
            r = self.run(&conn, "lock", wait_sql, &lock_params, false) => r,
            reason = self.liveness.lost() => return Err(Error::SessionLost { reason }),
        };
        waited?;
        let sent = Instant::now();
        let row = self
            .run(&conn, "lock", sql::TOKEN, &[(&value, Type::TEXT)], true)
            .await?;
        Self::check_pid(&conn, &row)?;
        let token: i64 = row.get(0);
        pending.conn = None;
        Ok((conn, token as u64, sent))
    }

    /// One attempt at a permit of semaphore `name` (docs: `backend/postgres`, Semaphores):
    /// the queue key `<name>/locks` (tried, then waited for in the server's queue), the
    /// permit count checked and recorded, then every slot tried in one statement, again every
    /// poll interval while none is free (only the head of the line polls); the statement that
    /// takes a slot also takes the token and releases the queue key. All on one connection,
    /// which then holds the slot alone.
    async fn attempt_permit(
        &self,
        name: &str,
        permits: u32,
        value: &str,
        wait: bool,
    ) -> Result<(Conn, u64, Instant, i64)> {
        if let Some(reason) = self.liveness.reason() {
            return Err(Error::SessionLost { reason });
        }
        let queue_name = format!("{name}/{}", crate::backend::semaphore::LOCKS);
        let queue = key::advisory_key(&queue_name);
        let tag = key::semaphore_tag(name);
        let permits_i32 = i32::try_from(permits).unwrap_or(i32::MAX);
        let mut pending = Pending {
            conn: Some(self.lock_conn().await?),
            armed: false,
            shared: self.shared.clone(),
            conns: self.conns.clone(),
        };
        let conn = pending.conn()?.clone();
        pending.armed = true;
        let queue_param: [(&(dyn ToSql + Sync), Type); 1] = [(&queue, Type::INT8)];
        let (tried, named) = tokio::join!(
            self.run(&conn, "lock", sql::SEM_TRY_QUEUE, &queue_param, true),
            self.shared.record_name(&queue_name, queue)
        );
        if let Err(e) = named {
            tracing::warn!(%name, error = %e, "could not record the semaphore's name for status");
        }
        let row = tried?;
        Self::check_pid(&conn, &row)?;
        if !row.get::<_, bool>(0) {
            pending.armed = false;
            if !wait {
                return Err(Error::Locked {
                    name: name.to_string(),
                    holder: None,
                });
            }
            waiting::note(Waiting::Queued { ahead: None });
            pending.armed = true;
            let waited = tokio::select! {
                r = self.run(&conn, "lock", sql::LOCK, &queue_param, false) => r,
                reason = self.liveness.lost() => return Err(Error::SessionLost { reason }),
            };
            waited?;
        }
        // Holding the queue key: no other acquisition of the name is past this point.
        let unsigned_tag = i64::from(tag as u32);
        let row = self
            .run(
                &conn,
                "lock",
                sql::SEM_RECORD,
                &[
                    (&name, Type::TEXT),
                    (&unsigned_tag, Type::INT8),
                    (&permits_i32, Type::INT4),
                ],
                true,
            )
            .await?;
        Self::check_pid(&conn, &row)?;
        let recorded: Option<i32> = row.get(0);
        let holder: Option<i32> = row.get(1);
        if let (Some(recorded), Some(holder)) = (recorded, holder) {
            if recorded != permits_i32 {
                self.leave_queue(&conn, &mut pending).await?;
                return Err(Error::PermitsDisagree {
                    name: name.to_string(),
                    permits,
                    recorded: u32::try_from(recorded).unwrap_or_default(),
                    holder: format!("{name}/{}/{holder}", crate::backend::semaphore::LEASES),
                });
            }
        }
        let slot_params: [(&(dyn ToSql + Sync), Type); 4] = [
            (&tag, Type::INT4),
            (&permits_i32, Type::INT4),
            (&value, Type::TEXT),
            (&queue, Type::INT8),
        ];
        let mut pause = SLOT_POLL_FIRST;
        let cap = SLOT_POLL_MAX.min(self.ttl / 10);
        loop {
            let sent = Instant::now();
            let rows = {
                let fut = conn.client.query_typed(sql::SEM_TRY_SLOT, &slot_params);
                match tokio::time::timeout(self.shared.endpoint.timeout, fut).await {
                    Ok(r) => r.map_err(|e| self.shared.endpoint.map("lock", e))?,
                    Err(_) => {
                        return Err(Error::Transient {
                            op: "lock",
                            message: format!("no answer within {:?}", self.shared.endpoint.timeout),
                            source: None,
                        })
                    }
                }
            };
            if let Some(row) = rows.into_iter().next() {
                Self::check_pid(&conn, &row)?;
                let slot: i32 = row.get(0);
                let token: i64 = row.get(1);
                pending.conn = None;
                return Ok((conn, token as u64, sent, key::slot_key(tag, slot)));
            }
            if !wait {
                self.leave_queue(&conn, &mut pending).await?;
                return Err(Error::Locked {
                    name: name.to_string(),
                    holder: None,
                });
            }
            // Every slot taken: the head of the line polls, herd-free (every other waiter
            // waits in the server's queue for the queue key), and a slot freed by a holder's
            // crash, which nobody is told of, is found as soon as one freed by a release.
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                reason = self.liveness.lost() => return Err(Error::SessionLost { reason }),
            }
            pause = (pause * 2).min(cap);
        }
    }

    /// Releases the queue key (the only thing the connection holds here); on success the
    /// connection goes back to the idle ones, else `Pending` withdraws it.
    async fn leave_queue(&self, conn: &Conn, pending: &mut Pending) -> Result<()> {
        self.run(conn, "unlock", sql::UNLOCK_ALL, &[], true).await?;
        pending.armed = false;
        Ok(())
    }

    fn grant(
        &self,
        name: &str,
        key: i64,
        kind: Kind,
        (conn, token, sent): (Conn, u64, Instant),
    ) -> Grant {
        let liveness = self.liveness.renewed_child();
        let keep_alive = spawn_keep_alive(
            Prober {
                conn: conn.clone(),
                ttl: self.ttl,
            },
            liveness.clone(),
            self.ttl,
            sent,
            "postgres",
        );
        // The connection's end is the lock's: the server has released it.
        let watcher = tokio::spawn({
            let (conn, liveness) = (conn.clone(), liveness.clone());
            async move {
                tokio::select! {
                    () = conn.ended() => liveness.lose(LostReason::EntryDeleted),
                    _ = liveness.lost() => {}
                }
            }
        })
        .abort_handle();
        let pid = conn.pid;
        let holding = Holding {
            conn,
            key,
            kind,
            tasks: [keep_alive, watcher],
        };
        if self.liveness.is_lost() {
            // The session ended meanwhile: the lock must not outlive it.
            drop(holding);
        } else {
            self.conns.held().insert(token, holding);
        }
        Grant {
            key: format!("{name}/{pid}"),
            token,
            liveness,
            watch: None,
            _permit: None,
            in_flight: None,
        }
    }
}

impl Drop for PgSession {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

#[async_trait]
impl SessionBackend for PgSession {
    fn id(&self) -> u64 {
        self.id
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    async fn acquire(
        &self,
        name: &str,
        value: &[u8],
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        let key = key::advisory_key(name);
        let value = String::from_utf8_lossy(value).into_owned();
        // A fault of the server or the connection is retried on another connection while the
        // session lives (C11): a connection that failed holds nothing once it is closed.
        let held = while_alive(&self.liveness, || {
            self.attempt(name, key, &value, wait, RwMode::Write)
        })
        .await?;
        let mut grant = self.grant(name, key, Kind::Mutex, held);
        grant._permit = Some(permit);
        Ok(grant)
    }

    /// A reader holds the name's key shared (`pg_advisory_lock_shared`), a writer exclusive:
    /// the key of the mutex of that name, so a mutex holder is a writer (rw7), and so is a
    /// peer's `pg_advisory_lock`. Fairness, tokens and cancellation are the mutex's (see
    /// `sql::TRY_LOCK_SHARED`, `sql::LOCK_SHARED`).
    async fn acquire_rw(
        &self,
        name: &str,
        mode: RwMode,
        value: &[u8],
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        let key = key::advisory_key(name);
        let value = String::from_utf8_lossy(value).into_owned();
        let held = while_alive(&self.liveness, || {
            self.attempt(name, key, &value, wait, mode)
        })
        .await?;
        let mut grant = self.grant(name, key, Kind::Rw, held);
        grant._permit = Some(permit);
        Ok(grant)
    }

    async fn downgrade(&self, grant: &Grant) -> Result<bool> {
        if grant.liveness.is_lost() {
            return Ok(false);
        }
        let Some((conn, key)) = self
            .conns
            .held()
            .get(&grant.token)
            .map(|h| (h.conn.clone(), h.key))
        else {
            return Ok(false);
        };
        // Not retried: a statement without an answer may have been applied, so the connection
        // is closed instead (which releases the lock; `Held` reports the error).
        let answer = self
            .run(
                &conn,
                "downgrade",
                sql::DOWNGRADE,
                &[(&key, Type::INT8)],
                true,
            )
            .await;
        match answer {
            Ok(row) if row.get::<_, bool>(0) => Ok(true),
            Ok(_) => {
                self.conns.held().remove(&grant.token);
                grant.liveness.lose(LostReason::EntryDeleted);
                Ok(false)
            }
            Err(_) if conn.is_ended() => {
                self.conns.held().remove(&grant.token);
                grant.liveness.lose(LostReason::EntryDeleted);
                Ok(false)
            }
            Err(e) => {
                self.conns.held().remove(&grant.token);
                grant.liveness.lose(LostReason::EntryDeleted);
                Err(e)
            }
        }
    }

    async fn release(&self, grant: &Grant) -> Result<()> {
        let lost = |reason: Option<LostReason>| Error::LockLost {
            key: grant.key.clone(),
            reason: reason.unwrap_or(LostReason::EntryDeleted),
        };
        let Some(holding) = self.conns.held().remove(&grant.token) else {
            return Err(lost(grant.liveness.reason()));
        };
        if let Some(reason) = grant.liveness.reason() {
            return Err(lost(Some(reason)));
        }
        let conn = holding.conn.clone();
        let key = holding.key;
        let kind = holding.kind;
        drop(holding);
        let answer = match kind {
            Kind::Mutex => {
                self.run(&conn, "unlock", sql::UNLOCK, &[(&key, Type::INT8)], true)
                    .await
            }
            Kind::Rw => {
                self.run(&conn, "unlock", sql::UNLOCK_RW, &[(&key, Type::INT8)], true)
                    .await
            }
            Kind::Permit => {
                let (tag, slot) = ((key >> 32) as i32, key as i32);
                self.run(
                    &conn,
                    "unlock",
                    sql::SEM_UNLOCK,
                    &[(&tag, Type::INT4), (&slot, Type::INT4)],
                    true,
                )
                .await
            }
        };
        match answer {
            Ok(row) if row.get::<_, bool>(0) => {
                self.conns.give_back(conn);
                Ok(())
            }
            Ok(_) => {
                grant.liveness.lose(LostReason::EntryDeleted);
                Err(lost(None))
            }
            // The connection ended before the release: the server had released the lock.
            Err(_) if conn.is_ended() => {
                grant.liveness.lose(LostReason::EntryDeleted);
                Err(lost(None))
            }
            // No answer in time, or an error on a live connection: the connection is closed
            // (dropped here), which releases the lock on the server; nothing to retry.
            Err(e) => {
                tracing::debug!(error = %e, "unlock failed; closing the lock's connection instead");
                Ok(())
            }
        }
    }

    async fn guarded_write(&self, grant: &Grant, ops: &[Write]) -> Result<bool> {
        if grant.liveness.is_lost() {
            return Ok(false);
        }
        let Some((conn, key, kind)) = self
            .conns
            .held()
            .get(&grant.token)
            .map(|h| (h.conn.clone(), h.key, h.kind))
        else {
            return Ok(false);
        };
        if conn.is_ended() {
            return Ok(false);
        }
        let (del, keys, values) = super::fold(ops);
        let guarded = if kind == Kind::Permit {
            sql::GUARDED_WRITE_PERMIT
        } else {
            sql::GUARDED_WRITE
        };
        let answer = self
            .run(
                &conn,
                "guarded write",
                guarded,
                &[
                    (&del, Type::TEXT_ARRAY),
                    (&keys, Type::TEXT_ARRAY),
                    (&values, Type::BYTEA_ARRAY),
                    (&key, Type::INT8),
                ],
                true,
            )
            .await;
        match answer {
            Ok(row) => {
                let held: bool = row.get(0);
                if !held {
                    grant.liveness.lose(LostReason::EntryDeleted);
                }
                Ok(held)
            }
            Err(e) if conn.is_ended() => {
                grant.liveness.lose(LostReason::EntryDeleted);
                Err(Error::Transient {
                    op: "guarded write",
                    message: format!(
                        "the holding connection ended during the write, so the lock is gone; the write was applied only if it committed before ({e})"
                    ),
                    source: None,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// A permit is a slot `(tag, i)` of the name's two-`int4` advisory keys held by a lock
    /// connection of its own (see `attempt_permit`; docs: `backend/postgres`, Semaphores).
    /// Each acquisition waits on its own connection in the server's queue, so the
    /// session's in-process queue (`_local`) is not needed to order them.
    async fn acquire_permit(
        &self,
        name: &str,
        permits: u32,
        value: &[u8],
        wait: bool,
        _local: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Grant> {
        let value = String::from_utf8_lossy(value).into_owned();
        let (conn, token, sent, key) = while_alive(&self.liveness, || {
            self.attempt_permit(name, permits, &value, wait)
        })
        .await?;
        let leases = format!("{name}/{}", crate::backend::semaphore::LEASES);
        Ok(self.grant(&leases, key, Kind::Permit, (conn, token, sent)))
    }

    async fn proclaim(&self, _grant: &Grant, _value: &[u8]) -> Result<bool> {
        Err(super::elections_unsupported())
    }

    async fn put_ephemeral(&self, _key: &str, _value: &[u8]) -> Result<bool> {
        Err(Error::Unsupported {
            backend: "postgres",
            what: "ephemeral keys",
            advice: "PostgreSQL deletes no row when a connection dies (only advisory locks go with it), and has no ordered prefix watch; use etcd:// or zk:// for service registration",
        })
    }

    async fn close(&self) -> Result<()> {
        self.keep_alive.abort();
        self.liveness.lose(LostReason::SessionClosed);
        self.conns.close_all();
        // Dropping the last handle of the control connection ends it.
        let control = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(control);
        Ok(())
    }

    fn abandon(&self) {
        self.conns
            .abandoned
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.keep_alive.abort();
        for h in self.conns.held().values() {
            h.tasks[0].abort();
        }
        // As a frozen process: nothing is confirmed any more, so the local deadline fires; the
        // server drops the connections about one TTL after it last heard from us (the
        // keepalive settings of `session_setup`), modelled here by closing them one safety
        // margin after the deadline.
        let (liveness, conns, margin) = (
            self.liveness.clone(),
            self.conns.clone(),
            safety_margin(self.ttl),
        );
        let control = self
            .control
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        tokio::spawn(async move {
            liveness.lost().await;
            tokio::time::sleep(margin).await;
            conns.close_all();
            drop(control);
        });
    }
}
