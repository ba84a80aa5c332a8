//! A Redis session: client-side, since Redis has no leases.
//!
//! A session is a heartbeat key `tenure:session:<id hex>` (`PX` = TTL) plus the locks it holds,
//! each with `PX` = TTL. One renewal script per session every TTL/3 extends the heartbeat and
//! every lock whose value is still ours (compare-and-extend), so the cost is one round trip per
//! session whatever it holds. A confirmed renewal moves the local deadline to its send instant
//! plus TTL − drift − safety margin (C7b); a lock found deleted or taken over fires that
//! grant's `lost()` (C7a, at the next renewal at the latest). Deleting the heartbeat key is this
//! backend's "revoke": the next renewal releases every lock of the session and reports the
//! session lost.
//!
//! An unlock takes its lock out of renewal before it sends the release, so a release that is
//! refused, unanswered or abandoned (its future dropped) can never be extended by the
//! session: the guard's background release retries it, and at worst it expires one TTL later.

use std::collections::HashMap;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::OwnedMutexGuard;
use tokio::task::AbortHandle;

use super::redlock::{drift, Attempt, Nodes};
use super::scripts::{check_name, heartbeat_value, session_key, EPHEMERAL_MARK, GUARDED_WRITE};
use super::waiting::{Waiter, Wake};
use crate::backend::lease::Renewer;
use crate::backend::{Grant, SessionBackend};
use crate::liveness::{Liveness, LostReason};
use crate::retry::with_backoff;
use crate::retry::ATTEMPTS;
use crate::waiting::{self, Waiting};
use crate::{Error, Result, Write};

/// A held lock, as the session's renewal sees it.
struct RenewedLock {
    token: u64,
    value: String,
    liveness: Liveness,
    /// An unlock has begun: renewal no longer extends the lock, but the value stays known
    /// until the store has answered, so that a retried release (the guard's background one,
    /// after an `unlock()` was dropped or failed transiently) can still compare-and-delete.
    releasing: bool,
}

/// The locks a session holds, by key.
#[derive(Default)]
pub(crate) struct Registry(StdMutex<HashMap<String, RenewedLock>>);

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, RenewedLock>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn value_of(&self, key: &str, token: u64) -> Option<String> {
        self.lock()
            .get(key)
            .filter(|h| h.token == token)
            .map(|h| h.value.clone())
    }

    /// Takes the lock out of renewal *before* any release request is sent, and returns its
    /// value: whatever happens to the release from here on (answered, refused, or its future
    /// dropped), renewal can no longer keep the lock alive, so at worst it expires within
    /// one TTL (docs/contract.md, C13).
    pub(super) fn start_release(&self, key: &str, token: u64) -> Option<String> {
        let mut map = self.lock();
        let held = map.get_mut(key).filter(|h| h.token == token)?;
        held.releasing = true;
        Some(held.value.clone())
    }

    pub(super) fn remove(&self, key: &str, token: u64) {
        let mut map = self.lock();
        if map.get(key).is_some_and(|h| h.token == token) {
            map.remove(key);
        }
    }

    /// Registers a held lock key for renewal (a read/write lock's writer key).
    pub(super) fn insert(&self, key: &str, value: String, token: u64, liveness: Liveness) {
        let held = RenewedLock {
            token,
            value,
            liveness,
            releasing: false,
        };
        self.lock().insert(key.to_string(), held);
    }

    /// Registers session `id`'s ephemeral key `key` for renewal, unless the session holds a
    /// lock of that name. `Some(had)`: registered, and whether it already was.
    pub(super) fn insert_ephemeral(&self, key: &str, id: u64, liveness: Liveness) -> Option<bool> {
        let mark = super::ephemeral::renewal_mark(id);
        let mut map = self.lock();
        match map.get(key) {
            Some(h) if h.value != mark => None,
            had => {
                let had = had.is_some();
                let held = RenewedLock {
                    token: 0,
                    value: mark,
                    liveness,
                    releasing: false,
                };
                map.insert(key.to_string(), held);
                Some(had)
            }
        }
    }

    /// The locks to renew: every lock held, except those being released.
    fn renewing(&self) -> Vec<(String, String, u64, Liveness)> {
        self.lock()
            .iter()
            .filter(|(_, h)| !h.releasing)
            .map(|(k, h)| (k.clone(), h.value.clone(), h.token, h.liveness.clone()))
            .collect()
    }

    /// Every lock of the session with its value, including those being released.
    fn all(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .map(|(k, h)| (k.clone(), h.value.clone()))
            .collect()
    }
}

/// One renewal round for a whole session.
pub(crate) struct SessionRenewer {
    pub(crate) nodes: Arc<Nodes>,
    pub(crate) id: u64,
    pub(crate) ttl: Duration,
    pub(crate) registry: Arc<Registry>,
}

#[async_trait]
impl Renewer for SessionRenewer {
    async fn renew(&mut self) -> Result<Option<Duration>> {
        let held = self.registry.renewing();
        let pairs: Vec<(String, String)> = held
            .iter()
            .map(|(k, v, _, _)| (k.clone(), v.clone()))
            .collect();
        let r = self
            .nodes
            .renew(&session_key(self.id), &pairs, self.ttl)
            .await?;
        match r.session {
            Some(true) => {}
            Some(false) => return Ok(None),
            None => return Err(undecided()),
        }
        let mut unknown = false;
        let mut reassert = Vec::new();
        for ((key, value, token, liveness), verdict) in held.iter().zip(r.grants) {
            match verdict {
                Some(true) => reassert.push((key.as_str(), value.as_str(), *token)),
                // An ephemeral key deleted or taken over: nothing holds it, and it stays
                // registered (renewal only extends it while its owner entry is ours).
                Some(false) if value.starts_with(EPHEMERAL_MARK) => {}
                Some(false) => {
                    liveness.lose(LostReason::EntryDeleted);
                    self.registry.remove(key, *token);
                }
                None => unknown = true,
            }
        }
        if !r.missing.is_empty() {
            // Redlock: a master restarted empty, or was down when the session opened. Without
            // its heartbeat there, every renewal would give up our locks on it, and the session
            // would survive no second fault.
            self.nodes
                .repair(
                    &r.missing,
                    &session_key(self.id),
                    &heartbeat_value(self.id, self.ttl.as_millis() as u64),
                    &reassert,
                    self.ttl,
                )
                .await;
        }
        if unknown {
            return Err(undecided());
        }
        Ok(Some(self.ttl.saturating_sub(drift(self.ttl))))
    }
}

fn undecided() -> Error {
    Error::Transient {
        op: "renew",
        message: "no majority of Redlock masters confirmed or denied the renewal".into(),
        source: None,
    }
}

/// Refuses writes to the layout's own keys (see [`check_name`]).
pub(crate) fn check_targets(ops: &[Write]) -> Result<()> {
    ops.iter().try_for_each(|op| match op {
        Write::Put { key, .. } | Write::Delete { key } => check_name(key),
    })
}

/// A random value for one acquisition: the session id, then 64 random bits, in hex.
fn new_value(session: u64) -> String {
    format!("{session:016x}{:016x}", fastrand::u64(..))
}

/// The session as a [`SessionBackend`].
pub(crate) struct RedisSession {
    pub(crate) id: u64,
    pub(crate) nodes: Arc<Nodes>,
    pub(crate) ttl: Duration,
    pub(crate) liveness: Liveness,
    pub(crate) registry: Arc<Registry>,
    pub(crate) keep_alive: AbortHandle,
    /// Read/write lock holds (see `rwlock.rs`).
    pub(crate) rw: super::rwlock::RwHolds,
}

impl Drop for RedisSession {
    fn drop(&mut self) {
        self.keep_alive.abort();
    }
}

/// Deletes a possibly-written lock, or withdraws a queued wait, in the background unless
/// disarmed (C5: a `lock()` dropped while its SET was in flight or while it waited), then lets
/// the next local waiter in.
struct InterruptedAcquire {
    nodes: Arc<Nodes>,
    name: String,
    value: String,
    armed: bool,
    permit: Option<OwnedMutexGuard<()>>,
}

impl Drop for InterruptedAcquire {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (nodes, name, value) = (self.nodes.clone(), self.name.clone(), self.value.clone());
        let permit = self.permit.take();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%name, "no runtime to clean up an interrupted lock; its TTL will");
            return;
        };
        rt.spawn(async move {
            if let Err(e) = with_backoff(ATTEMPTS, || nodes.release(&name, &value)).await {
                tracing::warn!(%name, error = %e, "could not clean up an interrupted lock; its TTL will");
            }
            drop(permit);
        });
    }
}

impl RedisSession {
    fn grant(
        &self,
        name: &str,
        value: String,
        token: u64,
        interrupted: &mut InterruptedAcquire,
    ) -> Grant {
        interrupted.armed = false;
        let liveness = self.liveness.child();
        self.registry.lock().insert(
            name.to_string(),
            RenewedLock {
                token,
                value,
                liveness: liveness.clone(),
                releasing: false,
            },
        );
        Grant {
            key: name.to_string(),
            token,
            liveness,
            watch: None,
            _permit: interrupted.permit.take(),
            in_flight: None,
        }
    }

    /// A grant for `key` holding `value`, registered for renewal like a lock (a semaphore's
    /// permit key: `backend/redis/semaphore.rs`).
    pub(super) fn hold(&self, key: &str, value: String, token: u64) -> Grant {
        let liveness = self.liveness.child();
        let held = RenewedLock {
            token,
            value,
            liveness: liveness.clone(),
            releasing: false,
        };
        self.registry.lock().insert(key.to_string(), held);
        Grant {
            key: key.to_string(),
            token,
            liveness,
            watch: None,
            _permit: None,
            in_flight: None,
        }
    }

    fn locked(name: &str) -> Error {
        Error::Locked {
            name: name.to_string(),
            holder: Some(name.to_string()),
        }
    }
}

#[async_trait]
impl SessionBackend for RedisSession {
    fn id(&self) -> u64 {
        self.id
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    // The holder's value (`Mutex::with_value`) is not recorded: the lock key's value is the
    // random owner token that release compares, as redis-py and redsync do on the same key.
    async fn acquire(
        &self,
        name: &str,
        _value: &[u8],
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        check_name(name)?;
        if let Some(reason) = self.liveness.reason() {
            return Err(Error::SessionLost { reason });
        }
        let value = new_value(self.id);
        let mut interrupted = InterruptedAcquire {
            nodes: self.nodes.clone(),
            name: name.to_string(),
            value: value.clone(),
            armed: false,
            permit: Some(permit),
        };
        // Subscribed only once the lock turns out to be held, then tried again at once, so a
        // release between the first attempt and the subscription is not missed, and an
        // uncontended lock() costs one round trip. A queued waiter whose session's channel for
        // this lock is still subscribed joins it before the attempt instead (no request), and
        // needs no second try.
        let queued = self.nodes.queued();
        let own = queued.then_some(value.as_str());
        let mut waiter: Option<Waiter> = if queued && wait {
            Waiter::join(&self.nodes, name, own)
        } else {
            None
        };
        loop {
            interrupted.armed = true;
            let attempt = match with_backoff(ATTEMPTS, || async {
                if queued {
                    self.nodes
                        .acquire_queued(name, &value, self.ttl, wait)
                        .await
                } else {
                    self.nodes.acquire(name, &value, self.ttl).await
                }
            })
            .await
            {
                Ok(attempt) => attempt,
                Err(e) => {
                    // Refused by the ACL (NOPERM on the declared keys) or the credentials:
                    // the script never ran, so there is nothing to clean up, and the local
                    // queue is free at once for the next caller.
                    if e.is_permission() {
                        interrupted.armed = false;
                    }
                    return Err(e);
                }
            };
            let (retry_in, clean) = match attempt {
                Attempt::Granted(token) => {
                    return Ok(self.grant(name, value, token, &mut interrupted))
                }
                Attempt::Held { retry_in, clean } => (retry_in, clean),
            };
            interrupted.armed = !clean;
            if !wait {
                return Err(Self::locked(name));
            }
            waiting::note(Waiting::Queued {
                ahead: Some(name.to_string()),
            });
            let Some(waiter) = &mut waiter else {
                waiter = Some(Waiter::subscribe(&self.nodes, name, own).await);
                continue;
            };
            tokio::select! {
                woken = waiter.wait(retry_in) => {
                    // Handed over by the release (scripts::HAND_OVER): the lock is ours.
                    // Still armed until granted, so that an abandoned wait releases it (C5).
                    if let Wake::Granted(token) = woken {
                        return Ok(self.grant(name, value, token, &mut interrupted));
                    }
                }
                reason = self.liveness.lost() => return Err(Error::SessionLost { reason }),
            }
        }
    }

    // As for a lock, the holder's value is not recorded: a permit key's value is its random
    // owner token. The in-process queue is not needed: every permit has a key of its own.
    async fn acquire_permit(
        &self,
        name: &str,
        permits: u32,
        _value: &[u8],
        wait: bool,
        _local: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Grant> {
        super::semaphore::acquire(self, name, permits, new_value(self.id), wait).await
    }

    async fn acquire_rw(
        &self,
        name: &str,
        mode: crate::backend::RwMode,
        _value: &[u8],
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        self.acquire_rw_redis(name, mode, wait, permit).await
    }

    async fn downgrade(&self, grant: &Grant) -> Result<bool> {
        self.downgrade_redis(grant).await
    }

    async fn release(&self, grant: &Grant) -> Result<()> {
        if let Some(done) = self.release_rw(grant).await {
            return done;
        }
        let lost = grant.liveness.reason();
        let Some(value) = self.registry.start_release(&grant.key, grant.token) else {
            return Err(Error::LockLost {
                key: grant.key.clone(),
                reason: lost.unwrap_or(LostReason::EntryDeleted),
            });
        };
        let removed = with_backoff(ATTEMPTS, || self.nodes.release(&grant.key, &value)).await;
        match &removed {
            // Kept (out of renewal) for the retry that follows a transient failure.
            Err(e) if e.is_transient() => {}
            _ => self.registry.remove(&grant.key, grant.token),
        }
        let removed = removed?;
        match (lost, removed) {
            (Some(reason), _) => Err(Error::LockLost {
                key: grant.key.clone(),
                reason,
            }),
            (None, false) => {
                grant.liveness.lose(LostReason::EntryDeleted);
                Err(Error::LockLost {
                    key: grant.key.clone(),
                    reason: LostReason::EntryDeleted,
                })
            }
            (None, true) => Ok(()),
        }
    }

    async fn guarded_write(&self, grant: &Grant, ops: &[Write]) -> Result<bool> {
        if let Some(done) = self.guarded_write_rw(grant, ops).await {
            return done;
        }
        check_targets(ops)?;
        if grant.liveness.is_lost() {
            return Ok(false);
        }
        let Some(value) = self.registry.value_of(&grant.key, grant.token) else {
            return Ok(false);
        };
        let [node] = self.nodes.nodes.as_slice() else {
            return Err(Error::Unsupported {
                backend: "redlock",
                what: "guarded writes",
                advice: "Redlock's masters are independent stores with no atomic write across them; pass the fencing token to the resource you protect, or use redis:// or etcd://",
            });
        };
        let mut inv = GUARDED_WRITE.prepare_invoke();
        inv.key(&grant.key).arg(&value);
        for op in ops {
            match op {
                Write::Put { key, value } => inv.key(key).arg("P").arg(value.as_slice()),
                Write::Delete { key } => inv.key(key).arg("D").arg(""),
            };
        }
        let applied =
            with_backoff(ATTEMPTS, || node.script::<i64>("guarded write", &inv)).await? == 1;
        if !applied {
            grant.liveness.lose(LostReason::EntryDeleted);
        }
        Ok(applied)
    }

    async fn proclaim(&self, _grant: &Grant, _value: &[u8]) -> Result<bool> {
        Err(super::elections_unsupported())
    }

    // Registered for renewal before the put is sent, so that a put abandoned after it was
    // applied (C5) still lives exactly as long as the session (see `ephemeral.rs`).
    async fn put_ephemeral(&self, key: &str, value: &[u8]) -> Result<bool> {
        check_name(key)?;
        let [node] = self.nodes.nodes.as_slice() else {
            return Err(super::ephemeral::redlock_refuses("ephemeral keys"));
        };
        let Some(had) = self
            .registry
            .insert_ephemeral(key, self.id, self.liveness.child())
        else {
            return Ok(false);
        };
        let put = super::ephemeral::put(node, self.id, key, value).await;
        if !had && !matches!(put, Ok(true)) {
            self.registry.remove(key, 0);
        }
        put
    }

    async fn close(&self) -> Result<()> {
        self.keep_alive.abort();
        self.liveness.lose(LostReason::SessionClosed);
        self.close_rw().await;
        let key = session_key(self.id);
        let del = redis::cmd("DEL").arg(&key).clone();
        self.nodes.majority::<i64>("close", &del).await?;
        // With the heartbeat gone, one renewal round releases (and publishes) every lock.
        let pairs = self.registry.all();
        self.nodes.renew(&key, &pairs, self.ttl).await?;
        self.registry.lock().clear();
        Ok(())
    }

    fn abandon(&self) {
        self.keep_alive.abort();
    }
}
