//! Semaphores on one Redis instance (docs/contract.md, Semaphores; Redis).
//!
//! Layout, for semaphore `N` (all under the reserved `tenure:` prefix, so no lock name or
//! write target can reach them):
//!
//! | key / channel | what |
//! |---|---|
//! | `tenure:semaphore:N` | SET of the holders' random values |
//! | `tenure:semaphore:N:<value>` | one held permit: value = `<value>`, `PX` = the session TTL |
//! | `tenure:semaphore:N:permits` | the permit count the holders use |
//! | `tenure:semaphore:N:fence` | the fencing counter (no TTL; `INCR`ed per grant) |
//! | `tenure:released:tenure:semaphore:N:<value>` | published when a permit is released |
//!
//! A permit is a key of its own, held exactly like a lock: the session's renewal extends it
//! while its value is still ours (so a crashed holder's permit expires with its session's
//! TTL, C6, and one deleted by someone else is noticed at the next renewal, C7a); release is
//! compare-and-delete (C8); guarded writes compare it (C10). One script counts the live
//! holders (dropping members whose permit key has expired), checks the recorded count, and
//! takes a permit only if fewer than `permits` are live; so at most `permits` are ever held.
//!
//! Waiting is **not FIFO** (unlike the mutex on one instance, which queues): waiters wake on a release message
//! (a pattern subscription to the semaphore's release channels) or at the soonest holder's
//! expiry, and race; whoever's script arrives first wins. Redlock refuses semaphores: a permit
//! taken on a majority of independent masters that each admit `permits` holders does not bound
//! the holders by `permits` (3 masters, 3 permits: four grants on two masters each fit).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use futures_util::{FutureExt, StreamExt};
use redis::aio::PubSubStream;
use redis::Script;

use super::node::Node;
use super::redlock::Nodes;
use super::scripts::{check_name, RESERVED_PREFIX};
use super::session::RedisSession;
use crate::backend::Grant;
use crate::retry::{jitter, with_backoff, ATTEMPTS};
use crate::waiting::{self, Waiting};
use crate::{Error, Result};

/// The set of holders of semaphore `name`; its permit keys and counters start with it.
fn holders_key(name: &str) -> String {
    format!("{RESERVED_PREFIX}semaphore:{name}")
}

/// `KEYS = [holders, permit, count, fence]`, `ARGV = [value, permits, ttl ms, permit key
/// prefix]`. Counts the live holders (dropping members whose permit key is gone), then:
/// → `{1, token}` taken (also when the permit is already ours: a retry after a lost answer,
/// with a fresh token); `{0, live, soonest pttl}` every permit taken (`-1`: none expires);
/// `{2, recorded}` the live holders use another count.
static ACQUIRE_PERMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local live, soonest = 0, -1
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= ARGV[1] then
    local ttl = redis.call('PTTL', ARGV[4] .. m)
    if ttl == -2 then
      redis.call('SREM', KEYS[1], m)
    else
      live = live + 1
      if ttl >= 0 and (soonest < 0 or ttl < soonest) then soonest = ttl end
    end
  end
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return {1, redis.call('INCR', KEYS[4]), 0}
end
local recorded = redis.call('GET', KEYS[3])
if live > 0 and recorded and recorded ~= ARGV[2] then
  return {2, tonumber(recorded) or 0, 0}
end
if live >= tonumber(ARGV[2]) then return {0, live, soonest} end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2])
return {1, redis.call('INCR', KEYS[4]), 0}
",
    )
});

/// Deletes a permit that may have been written, in the background unless disarmed (C5: an
/// acquisition dropped while its script was in flight).
struct PermitCleanup {
    nodes: Arc<Nodes>,
    key: String,
    value: String,
    armed: bool,
}

impl Drop for PermitCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (nodes, key, value) = (self.nodes.clone(), self.key.clone(), self.value.clone());
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(%key, "no runtime to clean up an interrupted permit; its TTL will");
            return;
        };
        rt.spawn(async move {
            if let Err(e) = with_backoff(ATTEMPTS, || nodes.release(&key, &value)).await {
                tracing::warn!(%key, error = %e, "could not clean up an interrupted permit; its TTL will");
            }
        });
    }
}

/// Takes one of `permits` permits of semaphore `name` on `session`'s one instance.
pub(super) async fn acquire(
    session: &RedisSession,
    name: &str,
    permits: u32,
    value: String,
    wait: bool,
) -> Result<Grant> {
    check_name(name)?;
    let nodes = &session.nodes;
    let [node] = nodes.nodes.as_slice() else {
        return Err(Error::Unsupported {
            backend: "redlock",
            what: "semaphores",
            advice: "a permit held on a majority of independent masters that each admit the count does not bound the holders by it; use redis://, etcd:// or zk://",
        });
    };
    if let Some(reason) = session.liveness.reason() {
        return Err(Error::SessionLost { reason });
    }
    let holders = holders_key(name);
    let prefix = format!("{holders}:");
    let key = format!("{prefix}{value}");
    let (count, fence) = (format!("{holders}:permits"), format!("{holders}:fence"));
    let mut inv = ACQUIRE_PERMIT.prepare_invoke();
    inv.key(&holders)
        .key(&key)
        .key(&count)
        .key(&fence)
        .arg(&value)
        .arg(permits)
        .arg(session.ttl.as_millis().max(1) as u64)
        .arg(&prefix);
    let mut pending = PermitCleanup {
        nodes: nodes.clone(),
        key: key.clone(),
        value: value.clone(),
        armed: false,
    };
    // Subscribed only once every permit turns out to be taken, then tried again at once, so a
    // release between the first attempt and the subscription is not missed.
    let mut waiter: Option<Option<PubSubStream>> = None;
    let mut backoff = Duration::from_millis(50);
    loop {
        pending.armed = true;
        let answer = with_backoff(ATTEMPTS, || {
            node.script::<(i64, i64, i64)>("acquire permit", &inv)
        });
        let (verdict, n, soonest) = match answer.await {
            Ok(a) => a,
            Err(e) => {
                if e.is_permission() {
                    pending.armed = false;
                }
                return Err(e);
            }
        };
        match verdict {
            1 => {
                pending.armed = false;
                return Ok(session.hold(&key, value, n as u64));
            }
            2 => {
                pending.armed = false;
                return Err(Error::PermitsDisagree {
                    name: name.to_string(),
                    permits,
                    recorded: u32::try_from(n).unwrap_or(0),
                    holder: count,
                });
            }
            _ => pending.armed = false,
        }
        if !wait {
            return Err(Error::Locked {
                name: name.to_string(),
                holder: None,
            });
        }
        waiting::note(Waiting::Queued { ahead: None });
        let Some(stream) = &mut waiter else {
            waiter = Some(subscribe(node, &prefix).await);
            continue;
        };
        let fallback = if soonest >= 0 {
            let p = Duration::from_millis(soonest as u64);
            p + jitter(p / 20 + Duration::from_millis(4))
        } else {
            let d = jitter(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(2));
            d
        };
        tokio::select! {
            () = released(stream, fallback) => {}
            reason = session.liveness.lost() => return Err(Error::SessionLost { reason }),
        }
    }
}

/// Waits for a release message on `stream`, or `fallback`.
async fn released(stream: &mut Option<PubSubStream>, fallback: Duration) {
    let Some(s) = stream else {
        tokio::time::sleep(fallback).await;
        return;
    };
    tokio::select! {
        msg = s.next() => {
            if msg.is_none() {
                tracing::debug!("permit release subscription closed; falling back to expiry wake-ups");
                *stream = None;
                return;
            }
            // One retry covers every release buffered so far.
            while let Some(Some(_)) = s.next().now_or_never() {}
        }
        () = tokio::time::sleep(fallback) => {}
    }
}

/// A glob pattern matching exactly the strings that start with `literal`.
fn prefix_pattern(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len() + 1);
    for c in literal.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('*');
    out
}

/// Subscribes to every release channel of the permits under `prefix` (our release and renewal
/// scripts publish on `tenure:released:<permit key>`); `None` falls back to expiry wake-ups.
async fn subscribe(node: &Node, prefix: &str) -> Option<PubSubStream> {
    let pattern = prefix_pattern(&super::scripts::release_channel(prefix));
    let mut pubsub = match node.pubsub().await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "cannot subscribe; falling back to expiry wake-ups");
            return None;
        }
    };
    match tokio::time::timeout(node.timeout, pubsub.psubscribe(&pattern)).await {
        Ok(Ok(())) => Some(pubsub.into_on_message()),
        other => {
            tracing::debug!(?other, "cannot subscribe; falling back to expiry wake-ups");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_the_prefix_literally() {
        assert_eq!(prefix_pattern("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\*");
        assert_eq!(holders_key("jobs"), "tenure:semaphore:jobs");
    }
}
