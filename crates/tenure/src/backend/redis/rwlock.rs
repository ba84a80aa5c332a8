//! Read/write locks on one Redis instance (`redis://`; Redlock refuses them).
//!
//! Layout, for lock `N` (all under the reserved prefix, so no lock name or write target can
//! meet them; see [`super::scripts::check_name`]):
//!
//! | key | what |
//! |---|---|
//! | `tenure:rw:N:writer` | the writer: value = its random token, `PX` = the session TTL, renewed with the session's other locks |
//! | `tenure:rw:N:readers` | hash: reader's random value → its fencing token; no TTL |
//! | `tenure:rw:N:waiting` | sorted set of waiters, `R<value>` or `W<value>`, scored by arrival (a fencing-counter value) |
//! | `tenure:rw:N:fence` | the fencing counter, `INCR`ed by every grant, readers and writers alike |
//! | `tenure:released:tenure:rw:N:writer` | channel every release and downgrade publishes on |
//!
//! A value starts with its session's id (16 hex digits), so every acquire first drops the
//! readers and waiters whose session heartbeat `tenure:session:<id>` is gone: a dead reader is
//! reclaimed when its session's heartbeat expires, not per reader.
//!
//! **Fairness: arrival order, as on the queue stores.** A waiter that is not granted at once
//! stands in the waiting set (`R<value>` or `W<value>`, scored by arrival). A reader is granted
//! when no writer holds and no writer waits ahead of it (a newcomer: no writer waits at all);
//! a writer when nobody holds and nobody waits ahead of it. So readers arriving behind a
//! waiting writer wait behind it (no writer starvation), readers ahead of it share, and writers
//! go in turn. Waiters wake on the release channel (and the writer key's keyspace events, where
//! enabled), with a fallback at the holder's expiry or the soonest reader heartbeat's, and
//! every waiter re-checks: not herd-free, as Redis waiting never is (C3).
//!
//! Downgrade is one script: the writer key is deleted and the same value enters the readers'
//! hash with the same token, atomically, so there is no moment unheld; waiting writers stay
//! waiting (now for the readers), and new readers are still refused while they wait.
//!
//! A reader deleted by someone else is noticed at its next guarded write or release, not by
//! renewal (readers are not keys of their own).

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex as StdMutex};
use std::time::Duration;

use redis::Script;
use tokio::sync::OwnedMutexGuard;

use super::scripts::{check_name, release_channel, RESERVED_PREFIX};
use super::session::{check_targets, RedisSession};
use super::waiting::Waiter;
use crate::backend::{Grant, RwMode};
use crate::liveness::LostReason;
use crate::retry::{with_backoff, ATTEMPTS};
use crate::waiting::{self, Waiting};
use crate::{Error, Result, Write};

/// The keys of read/write lock `name`.
pub(crate) struct RwKeys {
    pub(crate) writer: String,
    pub(crate) readers: String,
    pub(crate) waiting: String,
    pub(crate) fence: String,
}

impl RwKeys {
    pub(crate) fn of(name: &str) -> RwKeys {
        let base = format!("{RESERVED_PREFIX}rw:{name}");
        RwKeys {
            writer: format!("{base}:writer"),
            readers: format!("{base}:readers"),
            waiting: format!("{base}:waiting"),
            fence: format!("{base}:fence"),
        }
    }

    /// The channel releases and downgrades publish on (the waiters' wake-up).
    fn channel(&self) -> String {
        release_channel(&self.writer)
    }
}

/// `KEYS = [writer, readers, waiting, fence]`, `ARGV = [R|W, value, ttl ms, wait 1|0,
/// session key prefix]` → `{1, token}` when granted; `{0, ms}` when not, with when to look
/// again at the latest (the holder's expiry, or the soonest reader heartbeat's; −1: unknown).
///
/// Waiters stand in the waiting set as `R<value>` or `W<value>`, scored by arrival. A reader
/// is granted when no writer holds and no writer waits ahead of it (any waiting writer, for
/// one not in the set yet); a writer when nobody holds and nobody waits ahead of it. A waiter
/// (`wait` 1) that is not granted enters the set once. Finding our own value held (a retry
/// after a lost answer) counts as granted, with a fresh token.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local writer, readers, waiting, fence = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local mode, value, ttl, wait, sp = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
for _, r in ipairs(redis.call('HKEYS', readers)) do
  if redis.call('EXISTS', sp .. string.sub(r, 1, 16)) == 0 then redis.call('HDEL', readers, r) end
end
for _, w in ipairs(redis.call('ZRANGE', waiting, 0, -1)) do
  if redis.call('EXISTS', sp .. string.sub(w, 2, 17)) == 0 then redis.call('ZREM', waiting, w) end
end
local function wake_in()
  local p = redis.call('PTTL', writer)
  if p >= 0 then return p end
  local soonest = -1
  for _, r in ipairs(redis.call('HKEYS', readers)) do
    local q = redis.call('PTTL', sp .. string.sub(r, 1, 16))
    if q >= 0 and (soonest < 0 or q < soonest) then soonest = q end
  end
  return soonest
end
local me = mode .. value
-- Whether a waiter ahead of us keeps us out: any writer for a reader, anyone for a writer.
local blocked = false
for _, w in ipairs(redis.call('ZRANGE', waiting, 0, -1)) do
  if w == me then break end
  if mode == 'W' or string.sub(w, 1, 1) == 'W' then blocked = true; break end
end
if mode == 'R' then
  if redis.call('HEXISTS', readers, value) == 1
    or (not blocked and redis.call('EXISTS', writer) == 0) then
    local t = redis.call('INCR', fence)
    redis.call('HSET', readers, value, t)
    redis.call('ZREM', waiting, me)
    return {1, t}
  end
else
  if redis.call('GET', writer) == value then
    redis.call('PEXPIRE', writer, ttl)
    return {1, redis.call('INCR', fence)}
  end
  if not blocked and redis.call('EXISTS', writer) == 0 and redis.call('HLEN', readers) == 0 then
    redis.call('SET', writer, value, 'PX', ttl)
    redis.call('ZREM', waiting, me)
    return {1, redis.call('INCR', fence)}
  end
end
if wait == '1' and not redis.call('ZSCORE', waiting, me) then
  redis.call('ZADD', waiting, redis.call('INCR', fence), me)
end
return {0, wake_in()}
",
    )
});

/// `KEYS = [writer, readers, waiting]`, `ARGV = [value, channel]`: removes this value as the
/// writer, a reader or a waiter, publishing if anything went. → 1 if it held.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]); held = 1 end
if redis.call('HDEL', KEYS[2], ARGV[1]) == 1 then held = 1 end
local waited = redis.call('ZREM', KEYS[3], 'R' .. ARGV[1], 'W' .. ARGV[1])
if held == 1 or waited > 0 then redis.call('PUBLISH', ARGV[2], 'released') end
return held
",
    )
});

/// `KEYS = [writer, readers]`, `ARGV = [value, token, channel]`: the writer becomes a reader
/// with the same token, atomically. → 1 if done (or done already), 0 if not the writer.
static DOWNGRADE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  if redis.call('HGET', KEYS[2], ARGV[1]) == ARGV[2] then return 1 end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[3], 'downgraded')
return 1
",
    )
});

/// `KEYS = [writer, readers, target…]`, `ARGV = [value, (op, payload)…]`: applies the writes
/// only while `value` is the writer or a reader. → 1 if applied, 0 if not held.
static GUARDED_WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0 then
  return 0
end
for i = 3, #KEYS do
  if ARGV[2 * i - 4] == 'P' then
    redis.call('SET', KEYS[i], ARGV[2 * i - 3])
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
",
    )
});

/// One read/write hold of a session.
struct RwHold {
    name: String,
    value: String,
    mode: RwMode,
}

/// A session's read/write holds, by grant key and token.
#[derive(Default)]
pub(crate) struct RwHolds(StdMutex<HashMap<(String, u64), RwHold>>);

impl RwHolds {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), RwHold>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, grant: &Grant) -> Option<(String, String, RwMode)> {
        self.lock()
            .get(&(grant.key.clone(), grant.token))
            .map(|h| (h.name.clone(), h.value.clone(), h.mode))
    }

    /// Every hold, for the session's close.
    fn all(&self) -> Vec<(String, String)> {
        self.lock()
            .values()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect()
    }
}

/// Withdraws an interrupted acquisition (C5) in the background unless disarmed.
struct RwWithdrawal<'a> {
    session: &'a RedisSession,
    name: String,
    value: String,
    armed: bool,
    permit: Option<OwnedMutexGuard<()>>,
}

impl Drop for RwWithdrawal<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (nodes, name, value) = (
            self.session.nodes.clone(),
            self.name.clone(),
            self.value.clone(),
        );
        let permit = self.permit.take();
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%name, "no runtime to withdraw a read/write waiter; its session will");
            return;
        };
        rt.spawn(async move {
            let keys = RwKeys::of(&name);
            let mut inv = RELEASE.prepare_invoke();
            inv.key(&keys.writer)
                .key(&keys.readers)
                .key(&keys.waiting)
                .arg(&value)
                .arg(keys.channel());
            let [node] = nodes.nodes.as_slice() else {
                return;
            };
            if let Err(e) = with_backoff(ATTEMPTS, || node.script::<i64>("withdraw", &inv)).await {
                tracing::warn!(%name, error = %e, "could not withdraw a read/write waiter; its session's end will");
            }
            drop(permit);
        });
    }
}

/// Why Redlock has no read/write locks.
fn redlock_unsupported() -> Error {
    Error::Unsupported {
        backend: "redlock",
        what: "read/write locks",
        advice: "a reader set kept on independent masters has no majority rule that keeps a writer out once a master restarts empty (readers are not keys with a TTL of their own, so Redlock's repair cannot restore them); use redis:// (one instance), etcd:// or zk://",
    }
}

impl RedisSession {
    fn single(&self) -> Result<&super::node::Node> {
        match self.nodes.nodes.as_slice() {
            [node] => Ok(node),
            _ => Err(redlock_unsupported()),
        }
    }

    pub(crate) async fn acquire_rw_redis(
        &self,
        name: &str,
        mode: RwMode,
        wait: bool,
        permit: OwnedMutexGuard<()>,
    ) -> Result<Grant> {
        check_name(name)?;
        let node = self.single()?;
        if let Some(reason) = self.liveness.reason() {
            return Err(Error::SessionLost { reason });
        }
        let keys = RwKeys::of(name);
        let value = format!("{:016x}{:016x}", self.id, fastrand::u64(..));
        let mut inv = ACQUIRE.prepare_invoke();
        inv.key(&keys.writer)
            .key(&keys.readers)
            .key(&keys.waiting)
            .key(&keys.fence)
            .arg(if mode == RwMode::Read { "R" } else { "W" })
            .arg(&value)
            .arg(self.ttl.as_millis() as u64)
            .arg(if wait { "1" } else { "0" })
            .arg(format!("{RESERVED_PREFIX}session:"));
        let mut pending = RwWithdrawal {
            session: self,
            name: name.to_string(),
            value: value.clone(),
            armed: false,
            permit: Some(permit),
        };
        let mut waiter: Option<Waiter> = None;
        loop {
            pending.armed = true;
            let (granted, n): (i64, i64) =
                match with_backoff(ATTEMPTS, || node.script("rw lock", &inv)).await {
                    Ok(answer) => answer,
                    Err(e) => {
                        if e.is_permission() {
                            pending.armed = false;
                        }
                        return Err(e);
                    }
                };
            if granted == 1 {
                pending.armed = false;
                return Ok(self.rw_grant(name, &keys, value, n as u64, mode, &mut pending));
            }
            if !wait {
                // A try never enters the waiting set: nothing of ours is left. Who is in the
                // way (a writer, readers, or waiters ahead) is not one key here.
                pending.armed = false;
                return Err(Error::Locked {
                    name: name.to_string(),
                    holder: None,
                });
            }
            waiting::note(Waiting::Queued {
                ahead: Some(keys.writer.clone()),
            });
            let Some(w) = &mut waiter else {
                waiter = Some(Waiter::subscribe(&self.nodes, &keys.writer, None).await);
                continue;
            };
            let retry_in = u64::try_from(n).ok().map(Duration::from_millis);
            tokio::select! {
                _ = w.wait(retry_in) => {}
                reason = self.liveness.lost() => return Err(Error::SessionLost { reason }),
            }
        }
    }

    fn rw_grant(
        &self,
        name: &str,
        keys: &RwKeys,
        value: String,
        token: u64,
        mode: RwMode,
        pending: &mut RwWithdrawal<'_>,
    ) -> Grant {
        let liveness = self.liveness.child();
        let key = match mode {
            RwMode::Write => keys.writer.clone(),
            RwMode::Read => keys.readers.clone(),
        };
        if mode == RwMode::Write {
            // The writer key has a TTL: the session's renewal extends it like a mutex's.
            self.registry
                .insert(&key, value.clone(), token, liveness.clone());
        }
        self.rw.lock().insert(
            (key.clone(), token),
            RwHold {
                name: name.to_string(),
                value,
                mode,
            },
        );
        Grant {
            key,
            token,
            liveness,
            watch: None,
            _permit: pending.permit.take(),
            in_flight: None,
        }
    }

    /// Releases a read/write hold; `None` if `grant` is not one (a mutex's).
    pub(crate) async fn release_rw(&self, grant: &Grant) -> Option<Result<()>> {
        let (name, value, mode) = self.rw.get(grant)?;
        Some(self.release_rw_hold(grant, &name, &value, mode).await)
    }

    async fn release_rw_hold(
        &self,
        grant: &Grant,
        name: &str,
        value: &str,
        mode: RwMode,
    ) -> Result<()> {
        let lost = grant.liveness.reason();
        if mode == RwMode::Write {
            // Out of renewal before the release is sent (docs/contract.md, C13).
            let _ = self.registry.start_release(&grant.key, grant.token);
        }
        let node = self.single()?;
        let keys = RwKeys::of(name);
        let mut inv = RELEASE.prepare_invoke();
        inv.key(&keys.writer)
            .key(&keys.readers)
            .key(&keys.waiting)
            .arg(value)
            .arg(keys.channel());
        let mut tries = 0;
        let removed = with_backoff(ATTEMPTS, || {
            tries += 1;
            node.script::<i64>("rw unlock", &inv)
        })
        .await;
        if matches!(&removed, Err(e) if e.is_transient()) {
            return removed.map(|_| ());
        }
        self.rw.lock().remove(&(grant.key.clone(), grant.token));
        self.registry.remove(&grant.key, grant.token);
        // After an unanswered attempt, "already gone" is most likely our own release (C13).
        let removed = removed? == 1 || tries > 1;
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

    /// Guarded writes of a read/write hold; `None` if `grant` is not one.
    pub(crate) async fn guarded_write_rw(
        &self,
        grant: &Grant,
        ops: &[Write],
    ) -> Option<Result<bool>> {
        let (name, value, _) = self.rw.get(grant)?;
        Some(self.guarded_write_hold(grant, &name, &value, ops).await)
    }

    async fn guarded_write_hold(
        &self,
        grant: &Grant,
        name: &str,
        value: &str,
        ops: &[Write],
    ) -> Result<bool> {
        check_targets(ops)?;
        if grant.liveness.is_lost() {
            return Ok(false);
        }
        let node = self.single()?;
        let keys = RwKeys::of(name);
        let mut inv = GUARDED_WRITE.prepare_invoke();
        inv.key(&keys.writer).key(&keys.readers).arg(value);
        for op in ops {
            match op {
                Write::Put { key, value } => inv.key(key).arg("P").arg(value.as_slice()),
                Write::Delete { key } => inv.key(key).arg("D").arg(""),
            };
        }
        let applied = with_backoff(ATTEMPTS, || node.script::<i64>("guarded write", &inv)).await?;
        if applied != 1 {
            grant.liveness.lose(LostReason::EntryDeleted);
        }
        Ok(applied == 1)
    }

    pub(crate) async fn downgrade_redis(&self, grant: &Grant) -> Result<bool> {
        let Some((name, value, RwMode::Write)) = self.rw.get(grant) else {
            return Ok(false);
        };
        if grant.liveness.is_lost() {
            return Ok(false);
        }
        let node = self.single()?;
        let keys = RwKeys::of(&name);
        // Out of renewal first: once downgraded, the writer key is gone, and a renewal that
        // still looked for it would report the hold lost.
        let _ = self.registry.start_release(&grant.key, grant.token);
        let mut inv = DOWNGRADE.prepare_invoke();
        inv.key(&keys.writer)
            .key(&keys.readers)
            .arg(&value)
            .arg(grant.token)
            .arg(keys.channel());
        let done = with_backoff(ATTEMPTS, || node.script::<i64>("downgrade", &inv)).await;
        match done {
            Ok(1) => {
                self.registry.remove(&grant.key, grant.token);
                if let Some(hold) = self.rw.lock().get_mut(&(grant.key.clone(), grant.token)) {
                    hold.mode = RwMode::Read;
                }
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Releases every read/write hold at the session's close (readers have no TTL of their
    /// own: without this they would wait for the next acquirer to find the heartbeat gone).
    pub(crate) async fn close_rw(&self) {
        let Ok(node) = self.single() else {
            return;
        };
        for (name, value) in self.rw.all() {
            let keys = RwKeys::of(&name);
            let mut inv = RELEASE.prepare_invoke();
            inv.key(&keys.writer)
                .key(&keys.readers)
                .key(&keys.waiting)
                .arg(&value)
                .arg(keys.channel());
            if let Err(e) = node.script::<i64>("rw unlock", &inv).await {
                tracing::debug!(%name, error = %e, "release at close; the heartbeat's end will");
            }
        }
        self.rw.lock().clear();
    }
}
