//! Ephemeral keys and prefix watches on one Redis instance (`Session::put_ephemeral`,
//! `Tenure::watch_prefix`).
//!
//! **A key lives with its session's heartbeat.** `K` is a plain Redis key holding the value, so
//! `GET K` (and `Tenure::read`) sees it, set with the heartbeat's remaining `PTTL`: the two
//! expire at the same instant, and the session's one renewal script extends both at once
//! (`scripts::RENEW`, which tells an ephemeral key's entry by its [`EPHEMERAL_MARK`] value).
//! So a crashed process's keys go with its heartbeat, within the TTL, and no second renewal
//! loop runs; a clean close deletes the heartbeat and then, in the same round that releases the
//! session's locks, every key it owns. Who owns `K` is in the hash `tenure:ephemeral:owners`
//! (not in the value, which is the caller's): a put is refused while `K` exists and is not
//! ours, as etcd refuses a key on another lease and ZooKeeper an existing node.
//!
//! **Watching needs no server configuration.** Keyspace notifications would report expiries,
//! but they are off by default and often cannot be turned on (managed Redis), and pub/sub alone
//! says nothing about a key that simply expired. So every change is made by one of our scripts,
//! which publishes it on `tenure:ephemeral:K` in the same atomic step, numbered by the counter
//! `tenure:ephemeral:seq`; and every key is in the sorted set `tenure:ephemeral` (all scores 0,
//! so a prefix is one `ZRANGEBYLEX`), which gives the initial listing. A watcher subscribes
//! to the prefix's channel pattern *first*, then lists (the listing carries the counter), and
//! drops messages numbered at or below it: none is missed between the two, none applied twice,
//! and, as one instance runs scripts one at a time, the rest arrive in the store's order. An
//! expiry publishes nothing by itself, so each watcher remembers when each key it reported
//! would expire (its `PTTL`, which every put and listing carries) and sweeps the prefix then:
//! the sweep script deletes the index entry of every key that is gone and publishes its delete
//! (the first sweeper does it once, for every watcher), and returns the others' new `PTTL`s.
//! A crashed owner's key is thus reported deleted within its TTL, and a watcher of a quiet
//! prefix costs one script per key per two thirds of a TTL at most. Pub/sub does lose messages
//! across a reconnect, silently; the watcher then ends with [`Error::ObserveEnded`] rather than
//! go on with a gap (watching again lists afresh).
//!
//! The index and owner entries of a crashed owner's key are removed by the first sweep that
//! covers it (a watch or `status` of a prefix above it) or the next put of that key, not by
//! the expiry itself; with nobody watching they linger (a name and an id each). A background
//! sweep of the whole index from renewals was left out: under an ACL that confines a user to
//! its prefix, touching other users' keys would fail the renewal script itself.
//!
//! Every step is safe to repeat after an unanswered first attempt (docs/contract.md, C13): a
//! re-put by the owner finds its own key (and publishes nothing when the value is unchanged),
//! and a sweep only deletes what is already gone.
//!
//! **Redlock** refuses both: its masters are independent, so a key put on a majority has no
//! single order of changes to watch (each master's channel orders only its own), and a watcher
//! merging them could report a delete on one master before the put on another.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

use futures_util::StreamExt;
use redis::Script;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::node::Node;
use super::redlock::Nodes;
use super::scripts::{
    ephemeral_channel, session_key, EPHEMERAL_INDEX, EPHEMERAL_MARK, EPHEMERAL_OWNERS,
    EPHEMERAL_SEQ, FORGET,
};
use crate::backend::observe::{Change, Kv, PrefixWatch};
use crate::liveness::LostReason;
use crate::retry::{with_backoff, ATTEMPTS};
use crate::{Error, Result};

/// `KEYS = [key, heartbeat, index, owners, seq]`, `ARGV = [value, session id hex]` → 1 put,
/// 0 refused (`key` exists and is not ours), −1 the session's heartbeat is gone. The key gets
/// the heartbeat's `PTTL`. A key whose owner entry outlived it (expired, not yet swept) is
/// first forgotten, so watchers see its delete before the new put.
static PUT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{FORGET}
local key, value, sid = KEYS[1], ARGV[1], ARGV[2]
local pttl = redis.call('PTTL', KEYS[2])
if pttl <= 0 then return -1 end
local owner = redis.call('HGET', KEYS[4], key)
if redis.call('EXISTS', key) == 1 then
  if owner ~= sid then return 0 end
  if redis.call('GET', key) == value then
    redis.call('PEXPIRE', key, pttl)
    return 1
  end
elseif owner then
  forget(key)
end
redis.call('SET', key, value, 'PX', pttl)
redis.call('HSET', KEYS[4], key, sid)
redis.call('ZADD', KEYS[3], 0, key)
local seq = redis.call('INCR', KEYS[5])
redis.call('PUBLISH', 'tenure:ephemeral:' .. key, seq .. ' P ' .. pttl .. ' ' .. value)
return 1
"
    ))
});

/// `KEYS = [index, owners, seq]`, `ARGV = [lex min, lex max]` → `{seq, (key, value, pttl,
/// owner)…}` for every ephemeral key in the range that exists; the index and owner entries of
/// those that are gone are deleted and their deletes published first. `seq` is the counter
/// after that: every change numbered above it comes after this listing.
static SWEEP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        r"{FORGET}
local out = {{'0'}}
for _, key in ipairs(redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2])) do
  local owner = redis.call('HGET', KEYS[2], key)
  local value = redis.call('GET', key)
  if owner and value then
    out[#out + 1] = key
    out[#out + 1] = value
    out[#out + 1] = tostring(redis.call('PTTL', key))
    out[#out + 1] = owner
  else
    forget(key)
  end
end
out[1] = redis.call('GET', KEYS[3]) or '0'
return out
"
    ))
});

/// How long a watcher waits to look at a key again whose `PTTL` says it never expires (it was
/// overwritten by a plain write).
const NO_EXPIRY_RECHECK: Duration = Duration::from_secs(2);

/// The renewal value of an ephemeral key of session `id` (see [`EPHEMERAL_MARK`]).
pub(crate) fn renewal_mark(id: u64) -> String {
    format!("{EPHEMERAL_MARK}{}", owner_id(id))
}

/// How the owners hash names session `id`: its 16 hex digits, the start of its heartbeat's
/// value and of every value it queues with.
fn owner_id(id: u64) -> String {
    format!("{id:016x}")
}

/// Why Redlock refuses ephemeral keys and watches.
pub(crate) fn redlock_refuses(what: &'static str) -> Error {
    Error::Unsupported {
        backend: "redlock",
        what,
        advice: "Redlock's masters are independent stores: a key put on a majority has no single order of puts and deletes a watcher could follow, nor a single expiry; use one redis:// instance, etcd:// or zk:// for service registration",
    }
}

/// Puts `key` = `value` for session `id` on the single instance `node`. `Ok(false)`: the key
/// exists and is not this session's.
pub(crate) async fn put(node: &Node, id: u64, key: &str, value: &[u8]) -> Result<bool> {
    let mut inv = PUT.prepare_invoke();
    inv.key(key)
        .key(session_key(id))
        .key(EPHEMERAL_INDEX)
        .key(EPHEMERAL_OWNERS)
        .key(EPHEMERAL_SEQ)
        .arg(value)
        .arg(owner_id(id));
    match with_backoff(ATTEMPTS, || node.script::<i64>("put ephemeral", &inv)).await? {
        1 => Ok(true),
        0 => Ok(false),
        _ => Err(Error::SessionLost {
            reason: LostReason::LeaseExpired,
        }),
    }
}

/// One key a sweep found.
struct Found {
    kv: Kv,
    pttl: i64,
}

/// The lexicographic range of the keys that start with `prefix`. Keys are UTF-8, in which
/// the byte 0xff never occurs, so `prefix` + 0xff is above every key under it.
fn lex_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        return (b"-".to_vec(), b"+".to_vec());
    }
    let min = [b"[", prefix.as_bytes()].concat();
    let max = [b"(", prefix.as_bytes(), &[0xff]].concat();
    (min, max)
}

/// Runs the sweep script over `prefix`: the counter, and the keys there.
async fn sweep(node: &Node, prefix: &str) -> Result<(u64, Vec<Found>)> {
    let (min, max) = lex_range(prefix);
    let mut inv = SWEEP.prepare_invoke();
    inv.key(EPHEMERAL_INDEX)
        .key(EPHEMERAL_OWNERS)
        .key(EPHEMERAL_SEQ)
        .arg(min)
        .arg(max);
    let out = with_backoff(ATTEMPTS, || node.script::<Vec<Vec<u8>>>("sweep", &inv)).await?;
    let bad = || Error::Store {
        op: "sweep",
        message: "unexpected answer from the ephemeral-key sweep script".into(),
        source: None,
    };
    let (seq, rest) = out.split_first().ok_or_else(bad)?;
    let seq = number(seq).ok_or_else(bad)?;
    let mut found = Vec::new();
    for entry in rest.chunks(4) {
        let [key, value, pttl, owner] = entry else {
            return Err(bad());
        };
        let key = String::from_utf8(key.clone()).map_err(|_| bad())?;
        let lease = std::str::from_utf8(owner)
            .ok()
            .and_then(|o| u64::from_str_radix(o, 16).ok())
            .ok_or_else(bad)?;
        found.push(Found {
            kv: Kv {
                key,
                value: value.clone(),
                create_rev: 0,
                lease,
            },
            pttl: number(pttl).ok_or_else(bad)?,
        });
    }
    Ok((seq as u64, found))
}

fn number(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// The ephemeral keys under `prefix` now (for `status`), each with its session as `lease`.
pub(crate) async fn list(node: &Node, prefix: &str) -> Result<Vec<Kv>> {
    Ok(sweep(node, prefix)
        .await?
        .1
        .into_iter()
        .map(|f| f.kv)
        .collect())
}

/// The remaining TTL of session `id`'s heartbeat.
pub(crate) async fn session_ttl(node: &Node, id: u64) -> Result<Option<Duration>> {
    let pttl = redis::cmd("PTTL").arg(session_key(id)).clone();
    let ms: i64 = with_backoff(ATTEMPTS, || node.run("pttl", &pttl)).await?;
    Ok((ms > 0).then(|| Duration::from_millis(ms as u64)))
}

/// `s` with the glob characters of a pattern subscription escaped.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// One published change: its number, and the change with the key's `PTTL` for a put.
fn parse(channel: &str, payload: &[u8]) -> Option<(u64, Change, Option<i64>)> {
    let key = channel.strip_prefix(&ephemeral_channel(""))?.to_string();
    let mut parts = payload.splitn(4, |b| *b == b' ');
    let seq = number(parts.next()?)? as u64;
    match parts.next()? {
        b"D" => Some((seq, Change::Delete(key), None)),
        b"P" => {
            let pttl = number(parts.next()?)?;
            let value = parts.next().unwrap_or_default().to_vec();
            let kv = Kv {
                key,
                value,
                create_rev: seq as i64,
                lease: 0,
            };
            Some((seq, Change::Put(kv), Some(pttl)))
        }
        _ => None,
    }
}

/// When to look at a key again whose `PTTL` was `pttl` just now.
fn deadline(pttl: i64) -> Instant {
    let wait = if pttl < 0 {
        NO_EXPIRY_RECHECK
    } else {
        Duration::from_millis(pttl as u64 + 1)
    };
    Instant::now() + wait
}

/// Subscribes to `prefix`'s changes, lists it, and follows it in a task of its own (see the
/// module docs).
pub(crate) async fn watch(nodes: Arc<Nodes>, prefix: &str) -> Result<PrefixWatch> {
    let Some(node) = nodes.nodes.first() else {
        return Err(redlock_refuses("watching keys under a prefix"));
    };
    let mut pubsub = node.pubsub().await.map_err(|e| match e {
        // A watch, unlike a waiter, has no polling to fall back on.
        Error::Unsupported { .. } => Error::Unsupported {
            backend: "redis",
            what: "watching keys under a prefix with tls_server_name",
            advice: "a watch needs a subscriber connection, which the redis crate opens by the URL's host; connect by the name the server's certificate carries",
        },
        e => e,
    })?;
    let pattern = format!("{}{}*", ephemeral_channel(""), glob_escape(prefix));
    match tokio::time::timeout(node.timeout, pubsub.psubscribe(&pattern)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(super::node::map_err("subscribe", &e)),
        Err(_) => {
            return Err(Error::Transient {
                op: "subscribe",
                message: format!("{} gave no answer within {:?}", node.addr, node.timeout),
                source: None,
            })
        }
    }
    let messages = pubsub.into_on_message();
    let (listed, found) = sweep(node, prefix).await?;
    let mut present = HashMap::new();
    let mut initial = Vec::new();
    for f in found {
        present.insert(f.kv.key.clone(), deadline(f.pttl));
        initial.push(f.kv);
    }
    let (tx, changes) = mpsc::unbounded_channel();
    let follower = Follower {
        nodes: nodes.clone(),
        prefix: prefix.to_string(),
        listed,
        present,
        orphans: HashMap::new(),
        tx,
    };
    tokio::spawn(follower.run(messages));
    Ok(PrefixWatch { initial, changes })
}

/// One watcher's task.
struct Follower {
    nodes: Arc<Nodes>,
    prefix: String,
    /// The counter at the initial listing: changes numbered at or below it are in it.
    listed: u64,
    /// The keys reported present, and when each is to be looked at again.
    present: HashMap<String, Instant>,
    /// Keys a sweep found gone whose published delete has not arrived yet, with the sweep
    /// count at which that was noticed.
    orphans: HashMap<String, u32>,
    tx: mpsc::UnboundedSender<Result<Change>>,
}

impl Follower {
    async fn run(mut self, mut messages: redis::aio::PubSubStream) {
        let mut sweeps = 0u32;
        loop {
            let next = self.present.values().min().copied();
            tokio::select! {
                () = self.tx.closed() => return,
                msg = messages.next() => {
                    let Some(msg) = msg else {
                        let reason = "the Redis subscription closed (a reconnect may have lost messages); watch again";
                        self.end(reason.into());
                        return;
                    };
                    let Some((seq, change, pttl)) =
                        parse(msg.get_channel_name(), msg.get_payload_bytes())
                    else {
                        continue;
                    };
                    if seq > self.listed {
                        self.apply(change, pttl);
                    }
                }
                () = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {
                    sweeps += 1;
                    if let Err(e) = self.resweep(sweeps).await {
                        self.end(e.to_string());
                        return;
                    }
                }
            }
        }
    }

    fn apply(&mut self, change: Change, pttl: Option<i64>) {
        match &change {
            Change::Put(kv) => {
                self.orphans.remove(&kv.key);
                self.present
                    .insert(kv.key.clone(), deadline(pttl.unwrap_or(-1)));
            }
            Change::Delete(key) => {
                self.orphans.remove(key);
                if self.present.remove(key).is_none() {
                    return;
                }
            }
        }
        let _ = self.tx.send(Ok(change));
    }

    /// Sweeps the prefix: keys gone get their deletes published (and come back as messages);
    /// the others get their new deadlines. A key gone whose delete does not arrive by the next
    /// sweep after (deleted outside our scripts) is reported deleted here.
    async fn resweep(&mut self, sweeps: u32) -> Result<()> {
        let Some(node) = self.nodes.nodes.first() else {
            return Ok(());
        };
        let (_, found) = sweep(node, &self.prefix).await?;
        let mut seen: HashMap<String, i64> =
            found.into_iter().map(|f| (f.kv.key, f.pttl)).collect();
        let keys: Vec<String> = self.present.keys().cloned().collect();
        for key in keys {
            if let Some(pttl) = seen.remove(&key) {
                self.orphans.remove(&key);
                self.present.insert(key, deadline(pttl));
                continue;
            }
            match self.orphans.get(&key) {
                Some(at) if *at < sweeps => self.apply(Change::Delete(key), None),
                Some(_) => {}
                None => {
                    self.orphans.insert(key.clone(), sweeps);
                    self.present.insert(key, deadline(0) + NO_EXPIRY_RECHECK);
                }
            }
        }
        Ok(())
    }

    fn end(&self, reason: String) {
        let _ = self.tx.send(Err(Error::ObserveEnded {
            name: self.prefix.clone(),
            reason,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lex_range_covers_exactly_the_prefix() {
        let (min, max) = lex_range("a/");
        for key in ["a/", "a/b", "a/\u{10ffff}"] {
            assert!(
                key.as_bytes() >= &min[1..] && key.as_bytes() < &max[1..],
                "{key}"
            );
        }
        for key in ["a", "a0", "b/"] {
            assert!(
                key.as_bytes() < &min[1..] || key.as_bytes() >= &max[1..],
                "{key}"
            );
        }
        assert_eq!(lex_range(""), (b"-".to_vec(), b"+".to_vec()));
    }

    #[test]
    fn messages_parse_and_globs_are_escaped() {
        let (seq, change, pttl) = parse("tenure:ephemeral:s/a", b"7 P 1500 10.0.0.5 x").unwrap();
        assert_eq!((seq, pttl), (7, Some(1500)));
        assert!(matches!(change, Change::Put(kv) if kv.key == "s/a" && kv.value == b"10.0.0.5 x"));
        let (seq, change, _) = parse("tenure:ephemeral:s/a", b"8 D").unwrap();
        assert!(seq == 8 && matches!(change, Change::Delete(k) if k == "s/a"));
        assert!(parse("tenure:ephemeral:s/a", b"x D").is_none());
        assert_eq!(glob_escape("a*b?[c]\\"), "a\\*b\\?\\[c\\]\\\\");
    }
}
