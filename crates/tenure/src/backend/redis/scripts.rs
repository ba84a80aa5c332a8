//! The Lua scripts, each one atomic on one Redis server.
//!
//! Layout (the lock name `N` is the Redis key itself, as in redis-py's `Lock(N)` and redsync):
//!
//! | key / channel | what |
//! |---|---|
//! | `N` | the lock: value = the holder's random token, `PX` = the session TTL |
//! | `N:fence` | the fencing counter (no TTL; `INCR`ed by every acquire of ours) |
//! | `tenure:released:N` | channel our release script publishes on |
//! | `tenure:session:<id hex>` | a session's heartbeat key (`PX` = the session TTL) |
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

/// A session's heartbeat key.
pub(crate) fn session_key(id: u64) -> String {
    format!("{RESERVED_PREFIX}session:{id:016x}")
}

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

/// Compare-and-delete: `KEYS = [lock]`, `ARGV = [value, channel]` → 1 if deleted (and a
/// message published on `channel`), 0 if the key is not ours.
pub(crate) static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], 'released')
  return 1
end
return 0
",
    )
});

/// One renewal of a whole session: `KEYS = [session, lock…]`,
/// `ARGV = [ttl ms, value…, channel…]` (one value and one channel per lock).
/// Extends the session key and every lock still ours; `{1, ok…}` per key. When the session
/// key is gone (revoked or expired) nothing is extended, every lock still ours is deleted
/// (as a lease revocation would), and the answer is `{0}`.
pub(crate) static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local n = #KEYS - 1
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then
  for i = 1, n do
    if redis.call('GET', KEYS[i + 1]) == ARGV[i + 1] then
      redis.call('DEL', KEYS[i + 1])
      redis.call('PUBLISH', ARGV[i + 1 + n], 'released')
    end
  end
  return {0}
end
local out = {1}
for i = 1, n do
  if redis.call('GET', KEYS[i + 1]) == ARGV[i + 1] then
    redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
    out[i + 1] = 1
  else
    out[i + 1] = 0
  end
end
return out
",
    )
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
}
