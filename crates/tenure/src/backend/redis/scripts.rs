//! The Lua scripts, each one atomic on one Redis server.
//!
//! Layout (the lock name `N` is the Redis key itself, as in redis-py's `Lock(N)` and redsync):
//!
//! | key / channel | what |
//! |---|---|
//! | `N` | the lock: value = the holder's random token, `PX` = the session TTL |
//! | `N:fence` | the fencing counter (no TTL; `INCR`ed by every acquire of ours) |
//! | `tenure:released:N` | channel our release script publishes on (Redlock's waiters listen) |
//! | `tenure:session:<id hex>` | a session's heartbeat key (`PX` = the session TTL), value `<id hex>:<TTL ms>` |
//! | `tenure:queue:N` | one instance only: the list of waiters' values, in arrival order |
//! | `tenure:wake:N:<id hex>` | the channel of session `<id hex>`'s waiter for `N` (one at a time): `<value> <token>` when the lock was handed over to it, `<value>` to look again |
//! | `K` | an ephemeral key (`Session::put_ephemeral`): its value, `PX` = its session's heartbeat's |
//! | `tenure:ephemeral` | sorted set of every ephemeral key (all scores 0, listed by lex range) |
//! | `tenure:ephemeral:owners` | hash: ephemeral key → its session's id (16 hex digits) |
//! | `tenure:ephemeral:seq` | counter: one number per put or delete of an ephemeral key |
//! | `tenure:ephemeral:K` | channel: each put (`<seq> P <pttl> <value>`) and delete (`<seq> D`) of `K` |
//!
//! A waiter's value starts with its session id (16 hex digits), so whoever looks at the queue
//! can tell a waiter whose session heartbeat is gone (its process crashed) and drop it, and
//! finds in the heartbeat the TTL to hand the lock over with.
//!
//! So that no lock can land on another lock's counter or on a heartbeat, names ending in
//! [`FENCE_SUFFIX`] or starting with [`RESERVED_PREFIX`] are refused as lock names and as write
//! targets ([`check_name`]): every other name's counter ends in the suffix, and every other
//! name's key and counter lie outside the prefix. (The lock key itself stays the bare name, as
//! redis-py and redsync expect; moving the counter instead would restart every existing
//! lock's tokens from 1.)

use std::sync::LazyLock;

use redis::Script;

use crate::{Error, Result};

/// What [`fence_key`] appends to a lock name.
pub(crate) const FENCE_SUFFIX: &str = ":fence";
/// The prefix of the keys and channels that are ours rather than a lock's.
pub(crate) const RESERVED_PREFIX: &str = "tenure:";

/// Refuses a lock name or write target that is, or could be, one of the layout's own keys:
/// a fencing counter (`…:fence`) or a session heartbeat (`tenure:…`).
pub(crate) fn check_name(name: &str) -> Result<()> {
    let reason = if name.ends_with(FENCE_SUFFIX) {
        format!("names ending in {FENCE_SUFFIX:?} are reserved on Redis: `N{FENCE_SUFFIX}` is lock N's fencing counter; choose another suffix")
    } else if name.starts_with(RESERVED_PREFIX) {
        format!("names starting with {RESERVED_PREFIX:?} are reserved on Redis for session heartbeats and release channels; choose another prefix")
    } else {
        return Ok(());
    };
    Err(Error::InvalidName {
        name: name.chars().take(64).collect(),
        reason,
    })
}

/// The fencing counter beside lock `name`.
pub(crate) fn fence_key(name: &str) -> String {
    format!("{name}{FENCE_SUFFIX}")
}

/// The channel our release script publishes on when lock `name` is released.
pub(crate) fn release_channel(name: &str) -> String {
    format!("{RESERVED_PREFIX}released:{name}")
}

/// The queue of waiters for lock `name` (one instance only; see [`ACQUIRE_QUEUED`]).
pub(crate) fn queue_key(name: &str) -> String {
    format!("{RESERVED_PREFIX}queue:{name}")
}

/// The channel a queued waiter (value `value`) of lock `name` is woken on: its session's
/// (the value's first 16 hex digits), so that the session's next wait for the lock can keep
/// the subscription (a session has one waiter per lock in the store at a time: C9's local
/// queue).
pub(crate) fn wake_channel(name: &str, value: &str) -> String {
    let session = value.get(..16).unwrap_or(value);
    format!("{RESERVED_PREFIX}wake:{name}:{session}")
}

/// A session's heartbeat value: its id and its TTL in ms, which a release hands the lock over
/// to the session's waiter with.
pub(crate) fn heartbeat_value(id: u64, ttl_ms: u64) -> String {
    format!("{id:016x}:{ttl_ms}")
}

/// A session's heartbeat key.
pub(crate) fn session_key(id: u64) -> String {
    format!("{RESERVED_PREFIX}session:{id:016x}")
}

/// The sorted set that indexes every ephemeral key (see `ephemeral.rs`).
pub(crate) const EPHEMERAL_INDEX: &str = "tenure:ephemeral";
/// The hash of ephemeral key → owning session id.
pub(crate) const EPHEMERAL_OWNERS: &str = "tenure:ephemeral:owners";
/// The counter that numbers ephemeral puts and deletes.
pub(crate) const EPHEMERAL_SEQ: &str = "tenure:ephemeral:seq";
/// What a renewal's value for an ephemeral key starts with (lock values are hex): the rest is
/// the session id, which the key's owner entry must hold.
pub(crate) const EPHEMERAL_MARK: char = '~';

/// The channel the puts and deletes of ephemeral key `key` are published on.
pub(crate) fn ephemeral_channel(key: &str) -> String {
    format!("{EPHEMERAL_INDEX}:{key}")
}

/// Lua: `forget(key)` deletes ephemeral key `key` with its index and owner entries and
/// publishes its delete; `owned(key, mark)` says whether the owner entry is the session's
/// whose renewal value is `mark`. Only called for keys in the index or owned, so that every
/// delete is published once.
pub(crate) const FORGET: &str = r"
local function forget(key)
  redis.call('DEL', key)
  redis.call('HDEL', 'tenure:ephemeral:owners', key)
  redis.call('ZREM', 'tenure:ephemeral', key)
  local seq = redis.call('INCR', 'tenure:ephemeral:seq')
  redis.call('PUBLISH', 'tenure:ephemeral:' .. key, seq .. ' D')
end
local function owned(key, mark)
  return redis.call('HGET', 'tenure:ephemeral:owners', key) == string.sub(mark, 2)
end
";

/// `KEYS = [lock, fence]`, `ARGV = [value, ttl ms]` → `{1, token}` when acquired,
/// `{0, pttl}` when held by someone else (`pttl` −1: no expiry). Finding our own value (a
/// retry after an answer was lost) counts as acquired, with a fresh token.
pub(crate) static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {1, redis.call('INCR', KEYS[2])}
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {1, redis.call('INCR', KEYS[2])}
end
return {0, redis.call('PTTL', KEYS[1])}
",
    )
});

/// Redlock only: `KEYS = [lock, fence]`, `ARGV = [value, token]`: while we hold the lock on
/// this master, raise its fencing counter to at least `token`. → 1 if held, else 0.
pub(crate) static RAISE_FENCE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local now = tonumber(redis.call('GET', KEYS[2]) or '0')
if now < tonumber(ARGV[2]) then redis.call('SET', KEYS[2], ARGV[2]) end
return 1
",
    )
});

/// Lua: hands free lock `lock` over to the first live waiter of queue `q`: drops the dead
/// waiters at its head (their session heartbeat is gone: crashed), then sets the lock to the
/// head's value with its session's TTL, takes it off the queue, counts a fencing token and
/// publishes `<value> <token>` on its channel; the woken waiter holds the lock with that token
/// and asks nothing more. A head whose heartbeat carries no TTL (an older client) is only told
/// to look (`<value>`). Stops, handing nothing, at `skip` (the caller's own value). Returns the
/// head (or nil) and whether the lock was handed over.
const HAND_OVER: &str = r"
local function hand_over(lock, q, skip)
  local head = redis.call('LINDEX', q, 0)
  while head and head ~= skip do
    local session = string.sub(head, 1, 16)
    local beat = redis.call('GET', 'tenure:session:' .. session)
    if beat then
      local channel = 'tenure:wake:' .. lock .. ':' .. session
      local ttl = string.match(beat, ':(%d+)$')
      if not ttl then
        redis.call('PUBLISH', channel, head)
        return head, false
      end
      redis.call('SET', lock, head, 'PX', ttl)
      redis.call('LPOP', q)
      redis.call('PUBLISH', channel, head .. ' ' .. redis.call('INCR', lock .. ':fence'))
      return head, true
    end
    redis.call('LPOP', q)
    head = redis.call('LINDEX', q, 0)
  end
  return head, false
end
";

/// Fair acquire on one instance (docs/contract.md, C3): `KEYS = [lock, fence, queue]`,
/// `ARGV = [value, ttl ms, wait (1/0)]` → `{1, token}` when acquired, `{0, ms}` when not,
/// `ms` being how long until the caller should look again unwoken (the holder's PTTL, −1: no
/// expiry; or, when the lock is free for a head waiter of an older client to take, the PTTL of
/// that waiter's heartbeat, after which it counts as crashed). The lock is granted only when
/// free and the queue, once dead waiters are dropped from its head, is empty or starts with
/// `value`; a free lock with another live waiter first is handed over to it (`hand_over`: its
/// wake-up may have been lost, or the lock expired). A refused caller with `wait` is appended
/// to the queue unless already in it; without `wait` nothing of its own is written (C4).
/// Idempotent per value (C13): finding our own value on the lock counts as acquired, and a
/// retried enqueue finds its entry.
pub(crate) static ACQUIRE_QUEUED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{HAND_OVER}
local lock, fence, q, value, ttl = KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2]
local current = redis.call('GET', lock)
if current == value then
  redis.call('PEXPIRE', lock, ttl)
  redis.call('LREM', q, 0, value)
  return {{1, redis.call('INCR', fence)}}
end
local head, handed = nil, false
if not current then
  head, handed = hand_over(lock, q, value)
  if not head or head == value then
    redis.call('SET', lock, value, 'PX', ttl)
    if head then redis.call('LPOP', q) end
    return {{1, redis.call('INCR', fence)}}
  end
end
if ARGV[3] == '1' and not redis.call('LPOS', q, value) then
  redis.call('RPUSH', q, value)
end
if current or handed then return {{0, redis.call('PTTL', lock)}} end
-- Free, and an older client's head waiter's to take: look again when its heartbeat would
-- expire.
return {{0, redis.call('PTTL', 'tenure:session:' .. string.sub(head, 1, 16))}}
"
    ))
});

/// Compare-and-delete, or withdraw from the queue: `KEYS = [lock, queue]` (a mutex) or
/// `[lock]` (a key that has no queue: a semaphore's permit), `ARGV = [value, channel]` → 1 if
/// the lock was ours and is deleted (and a message published on `channel`, for Redlock's
/// waiters), else 0, and `value` is taken out of the queue (an interrupted wait, C5; a wait
/// interrupted after the lock was handed over to it finds it ours and releases it). Either
/// way, a free lock is handed over to the queue's first live waiter (`hand_over`) — only that
/// one is woken.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{HAND_OVER}
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  released = 1
elseif KEYS[2] then
  redis.call('LREM', KEYS[2], 0, ARGV[1])
end
if KEYS[2] and (released == 1 or redis.call('EXISTS', KEYS[1]) == 0) then
  hand_over(KEYS[1], KEYS[2], false)
end
return released
"
    ))
});

/// One renewal of a whole session: `KEYS = [session, lock…]`,
/// `ARGV = [ttl ms, value…, channel…]` (one value and one channel per lock).
/// Extends the session key and every lock still ours; `{1, ok…}` per key. When the session
/// key is gone (revoked or expired) nothing is extended, every lock still ours is deleted
/// (as a lease revocation would) and handed over to its queue's first live waiter (a
/// mutex's: a key under the reserved prefix is a semaphore permit, which has no queue), and
/// the answer is `{0}`.
/// A value starting with [`EPHEMERAL_MARK`] is an ephemeral key's (its channel argument is
/// unused): it is ours while its owner entry names our session; extended if so, and deleted
/// with its session, its delete published either way (also when it expired unrenewed).
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{HAND_OVER}{FORGET}
local n = #KEYS - 1
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then
  for i = 1, n do
    if string.sub(ARGV[i + 1], 1, 1) == '~' then
      if owned(KEYS[i + 1], ARGV[i + 1]) then forget(KEYS[i + 1]) end
    elseif redis.call('GET', KEYS[i + 1]) == ARGV[i + 1] then
      redis.call('DEL', KEYS[i + 1])
      redis.call('PUBLISH', ARGV[i + 1 + n], 'released')
      if string.sub(KEYS[i + 1], 1, 7) ~= 'tenure:' then
        hand_over(KEYS[i + 1], 'tenure:queue:' .. KEYS[i + 1], false)
      end
    end
  end
  return {{0}}
end
local out = {{1}}
for i = 1, n do
  if string.sub(ARGV[i + 1], 1, 1) == '~' then
    out[i + 1] = 0
    if owned(KEYS[i + 1], ARGV[i + 1]) then
      if redis.call('PEXPIRE', KEYS[i + 1], ARGV[1]) == 1 then
        out[i + 1] = 1
      else
        forget(KEYS[i + 1])
      end
    end
  elseif redis.call('GET', KEYS[i + 1]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
    out[i + 1] = 1
  else
    out[i + 1] = 0
  end
end
return out
"
    ))
});

/// Redlock only, after a majority confirmed a renewal: puts a session back on a master that
/// answered it had no session key (restarted empty, or down when the session opened).
/// `KEYS = [session, lock, fence, lock, fence…]`, `ARGV = [ttl ms, session value,
/// (value, token)…]` for the locks a majority confirmed. Re-creates the heartbeat; takes each
/// lock only if it is free here (`NX`: someone may have taken this master's copy meanwhile,
/// and then it stays theirs; either way nobody gains a majority, since ours holds elsewhere);
/// raises each fencing counter to at least our token (counters only go up, so this is safe
/// whoever holds the lock). → per lock 1 if ours here now, else 0.
pub(crate) static REPAIR: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[1])
local out = {}
for i = 1, (#KEYS - 1) / 2 do
  local lock, fence = KEYS[2 * i], KEYS[2 * i + 1]
  local value, token = ARGV[2 * i + 1], tonumber(ARGV[2 * i + 2])
  if redis.call('SET', lock, value, 'NX', 'PX', ARGV[1]) or redis.call('GET', lock) == value then
    out[i] = 1
  else
    out[i] = 0
  end
  if tonumber(redis.call('GET', fence) or '0') < token then
    redis.call('SET', fence, token)
  end
end
return out
",
    )
});

/// Guarded writes (C10): `KEYS = [lock, target…]`, `ARGV = [value, (op, payload)…]` with op
/// `P` (SET target payload) or `D` (DEL target). Applies them all only if the lock holds
/// `value`. → 1 if applied, 0 if not held.
pub(crate) static GUARDED_WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #KEYS do
  if ARGV[2 * i - 2] == 'P' then
    redis.call('SET', KEYS[i], ARGV[2 * i - 1])
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
",
    )
});

/// Unguarded atomic writes: `KEYS = [target…]`, `ARGV = [(op, payload)…]` as in
/// [`GUARDED_WRITE`].
pub(crate) static WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
for i = 1, #KEYS do
  if ARGV[2 * i - 1] == 'P' then
    redis.call('SET', KEYS[i], ARGV[2 * i])
  else
    redis.call('DEL', KEYS[i])
  end
end
return 1
",
    )
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_keys_are_reserved_and_lock_names_are_not() {
        for name in ["jobs", "a:b", "x:fenced", "fence", "my-tenure:x", "tenure"] {
            check_name(name).unwrap();
            assert!(check_name(&fence_key(name)).is_err(), "{name}");
        }
        assert!(check_name(&session_key(7)).is_err());
        assert!(check_name("tenure:anything").is_err());
    }

    /// The scripts build queue, wake and heartbeat names in Lua; they must be these.
    #[test]
    fn lua_names_match_the_layout() {
        assert_eq!(queue_key("a"), "tenure:queue:a");
        assert_eq!(
            wake_channel("a", "00000000000000070123456789abcdef"),
            "tenure:wake:a:0000000000000007"
        );
        assert_eq!(
            session_key(1),
            format!("tenure:session:{}", session_value_hex(1))
        );
    }

    fn session_value_hex(id: u64) -> String {
        format!("{id:016x}")
    }
}
